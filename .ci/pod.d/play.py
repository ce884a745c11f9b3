#!/usr/bin/env python3
"""Plays the manifests of deploy/kubernetes/ with podman 4.3 and checks what the pods do.

Run by .ci/pod once the images `log-agent:0.1.0` and `simple-webapp` exist. Each scenario
plays a manifest through a test overlay (the sink becomes a file on a host directory, plus the
few changes podman 4.3 needs, each printed), sends requests to nginx on the pod's localhost
and compares every access-log line with what the agent shipped: nothing missing, nothing
extra, nothing repeated (but after a kill -9, where repeats are allowed and counted). Any
failed check stops the run: its message, then the agent's last log lines, exit status 1.

    python3 .ci/pod.d/play.py [sidecar] [native] [daemonset]   (all three by default)

(.ci/pod is the way in: it makes the images first.)
"""

import json
import os
import subprocess
import sys
import time
import uuid

import yaml

from overlay import daemonset_as_pod, native_as_classic, overlay
from pods import (
    AGENT_UID,
    CONTAINERS,
    Failure,
    NODE,
    PODS,
    Pod,
    WEB_IMAGE,
    WORK,
    check_api,
    log,
    note,
    podman,
    startup_time,
    state,
    stop_container,
    wait_for,
)
from shipped import (
    access_line_expect,
    cri_lines,
    cri_pieces,
    read_events,
    read_lines,
    shipped_exactly,
)


def secret():
    """The Secret the manifests mount (podman 4.3 mounts only a Kubernetes Secret document kept
    as a podman secret); the sink swap leaves its password unused."""
    podman("secret", "rm", "log-agent-kafka", check=False)
    path = WORK / "secret.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: log-agent-kafka\n"
        "data:\n  password: Y2ktdW51c2Vk\n"
    )
    podman("secret", "create", "log-agent-kafka", str(path))


def requests_in_log(path, prefixes):
    """The web container's CRI log holds one stdout line per request."""
    uris = [
        json.loads(m)["uri"].split("?")[0] for _, stream, m in cri_lines(path) if stream == "stdout"
    ]
    expected = [f"/{prefix}/{i}" for prefix, count in prefixes for i in range(1, count + 1)]
    if sorted(uris) != sorted(expected):
        raise Failure(
            f"the web container's log holds {len(uris)} access lines, expected {len(expected)}"
        )


def emptydir_lines(pod, prefixes):
    path = pod.volume_path("app-logs") / "access.log"

    def lines():
        return read_lines(path)

    got = lines()
    uris = [json.loads(text)["uri"] for _, text in got]
    expected = [f"/{prefix}/{i}" for prefix, count in prefixes for i in range(1, count + 1)]
    if sorted(uris) != sorted(expected) or any(
        json.loads(text)["status"] != 200 for _, text in got
    ):
        raise Failure(
            f"the emptyDir's access.log holds {len(got)} lines, expected {len(expected)} "
            "(one per request, status 200)"
        )
    return lines


def sidecar(report):
    log("sidecar: deploy/kubernetes/sidecar-pod.yaml")
    pod = Pod("simple-webapp", "sidecar-pod.yaml", "sidecar")
    notes = []
    docs = overlay(list(yaml.safe_load_all(pod.manifest.read_text())), pod.sink_dir, notes)
    pod.prepare(docs, notes, AGENT_UID)
    grace = pod.grace()
    started = time.monotonic()
    pod.play()
    pod.wait_ready()
    note(f"played and ready (/readyz 200) in {time.monotonic() - started:.1f} s")
    pod.confinement(AGENT_UID, ["/var/log/app", "/etc/log-agent", "/var/run/secrets/kafka"])
    file = "/var/log/app/access.log"
    expect = access_line_expect(pod.name, "simple-webapp")

    sent = [("a", 300)]
    pod.send("a", 300)
    lines_of = emptydir_lines(pod, sent)
    note("300 requests on the pod's localhost: 300 access-log lines in the emptyDir app-logs")
    shipped_exactly(pod, lines_of, file, expect, "running")
    check_api(pod, 300)
    report["sidecar_rss_kib"] = pod.rss()
    note("agent memory (KiB): " + ", ".join(f"{k} {v}" for k, v in report["sidecar_rss_kib"].items()))

    log("sidecar: the agent container alone stopped (SIGTERM) and started again")
    took = stop_container(pod.agent, grace)
    note(f"{pod.agent} exited 0 {took:.1f} s after SIGTERM (shutdown_delay_ms 5000 included)")
    pod.send("b", 200)
    sent.append(("b", 200))
    lines_of = emptydir_lines(pod, sent)
    note("200 requests while it was down")
    wall, process = startup_time(pod)
    report["startup_s"] = [wall, process]
    note(
        f"started again: /readyz 200 {wall * 1000:.0f} ms after `podman start`, "
        f"{process * 1000:.0f} ms after the process started"
    )
    shipped_exactly(pod, lines_of, file, expect, "resumed from its checkpoints")

    log("sidecar: the agent killed (SIGKILL) under load and started again")
    load = subprocess.Popen(
        ["podman", "exec", pod.web, "sh", "-c",
         "for i in $(seq 1 1000); do curl -s -o /dev/null http://localhost:8080/c/$i; done"],
    )
    wait_for("requests under way", lambda: len(lines_of()) >= 500 + 300, timeout=60)
    podman("kill", pod.agent)
    note(
        f"killed with {len(lines_of())} lines written and {len(read_events(pod.sink))} shipped "
        "(1,000 requests under way)"
    )
    pod.save_logs()
    if load.wait(timeout=300) != 0:
        raise Failure("the requests during the kill failed")
    sent.append(("c", 1000))
    lines_of = emptydir_lines(pod, sent)
    podman("start", pod.agent)
    pod.wait_ready()
    _, repeats = shipped_exactly(
        pod, lines_of, file, expect, "after kill -9 and a start", repeats_allowed=10**6
    )
    report["kill_repeats"] = repeats
    pod.repeats = repeats

    log("sidecar: the pod stopped (SIGTERM to both containers, grace period) and removed")
    pod.send("d", 500)
    sent.append(("d", 500))
    started = time.monotonic()
    podman("pod", "stop", "--time", str(grace), pod.name, timeout=grace + 60)
    took = time.monotonic() - started
    pod.save_logs()
    for container in (pod.agent, pod.web):
        _, code, _ = state(container)
        if code != 0:
            raise Failure(f"{container} exited {code} at the pod's stop, expected 0")
    note(f"pod stopped in {took:.1f} s (grace period {grace} s): both containers exited 0")
    lines_of = emptydir_lines(pod, sent)
    lines, _ = shipped_exactly(
        pod, lines_of, file, expect, "at the pod's stop", repeats_allowed=pod.repeats, timeout=5
    )
    report["sidecar_lines"] = len(lines)
    report["sidecar_stop_s"] = took
    podman("kube", "down", str(pod.played))
    if subprocess.run(["podman", "pod", "exists", pod.name], check=False).returncode == 0:
        raise Failure(f"pod {pod.name} still there after kube down")
    pod.remove()
    note("kube down: pod removed")


def native(report):
    log("native sidecar: deploy/kubernetes/native-sidecar-pod.yaml")
    pod = Pod("simple-webapp-native", "native-sidecar-pod.yaml", "native")
    notes = []
    docs = native_as_classic(list(yaml.safe_load_all(pod.manifest.read_text())), notes)
    docs = overlay(docs, pod.sink_dir, notes)
    pod.prepare(docs, notes, AGENT_UID)
    grace = pod.grace()
    file = "/var/log/app/access.log"
    expect = access_line_expect(pod.name, "simple-webapp")
    pod.play("--start=false")
    # The kubelet: the sidecar first; the web container once its startupProbe (/healthz, every
    # second, 30 failures allowed) passes.
    podman("start", pod.agent)
    probes = wait_for(
        f"{pod.agent}: the startupProbe /healthz",
        lambda: pod.get("/healthz")[0] == 200,
        timeout=30,
        interval=1.0,
    )
    assert probes
    if state(pod.web)[0] == "running":
        raise Failure(f"{pod.web} runs before the agent's startup probe passed")
    podman("start", pod.web)
    pod.wait_ready()
    note("agent started first; web started once its /healthz answered")
    pod.confinement(AGENT_UID, ["/var/log/app", "/etc/log-agent", "/var/run/secrets/kafka"])
    sent = [("a", 300)]
    pod.send("a", 300)
    lines_of = emptydir_lines(pod, sent)
    shipped_exactly(pod, lines_of, file, expect, "running")
    check_api(pod, 300)

    log("native sidecar: the agent container alone stopped and started again")
    stop_container(pod.agent, grace)
    pod.send("b", 200)
    sent.append(("b", 200))
    lines_of = emptydir_lines(pod, sent)
    podman("start", pod.agent)
    pod.wait_ready()
    shipped_exactly(pod, lines_of, file, expect, "resumed from its checkpoints")

    log("native sidecar: stopped in the kubelet's order (web, then the agent), removed")
    pod.send("d", 500)
    sent.append(("d", 500))
    started = time.monotonic()
    web_took = stop_container(pod.web, grace)
    if state(pod.agent)[0] != "running":
        raise Failure(f"{pod.agent} stopped with the web container")
    agent_took = stop_container(pod.agent, max(1, grace - int(web_took)))
    pod.save_logs()
    note(
        f"web exited 0 in {web_took:.1f} s, then the agent exited 0 in {agent_took:.1f} s "
        f"(grace period {grace} s, {time.monotonic() - started:.1f} s in all)"
    )
    lines_of = emptydir_lines(pod, sent)
    lines, _ = shipped_exactly(pod, lines_of, file, expect, "at the pod's stop", timeout=5)
    report["native_lines"] = len(lines)
    podman("pod", "stop", "--time", str(grace), pod.name)
    podman("kube", "down", str(pod.played))
    pod.remove()
    note("kube down: pod removed")


def daemonset(report):
    log("DaemonSet: deploy/kubernetes/daemonset.yaml, on this machine as its node")
    pod_name = f"log-agent-{uuid.uuid4().hex[:5]}"
    pod = Pod(pod_name, "daemonset.yaml", "daemonset")
    node = pod.dir / "node"
    pods_root = node / "var/log/pods"
    checkpoints = node / "var/lib/log-agent"
    subprocess.run(["rm", "-rf", str(node)], check=True)
    pods_root.mkdir(parents=True)
    notes = []
    docs = daemonset_as_pod(list(yaml.safe_load_all(pod.manifest.read_text())), pod_name, notes)
    docs = overlay(
        docs, pod.sink_dir, notes,
        host_paths={"/var/log/pods": str(pods_root), "/var/lib/log-agent": str(checkpoints)},
    )
    pod.prepare(docs, notes, 0)

    # A web pod on this node, its container's log where a kubelet keeps it (CRI format,
    # written by conmon): <pods_root>/<namespace>_<pod>_<uid>/<container>/<restarts>.log
    web_uid = str(uuid.uuid4())
    web_log_dir = pods_root / f"default_simple-webapp_{web_uid}" / "simple-webapp"
    web_log_dir.mkdir(parents=True)
    web_log = web_log_dir / "0.log"
    web = "ci-node-simple-webapp"
    podman("rm", "--force", "--ignore", web)
    CONTAINERS.append(web)
    podman(
        "run", "--detach", "--name", web, "--network", "none", "--log-driver", "k8s-file",
        "--log-opt", f"path={web_log}", WEB_IMAGE,
    )
    file = f"/var/log/pods/default_simple-webapp_{web_uid}/simple-webapp/0.log"

    def expect(event, line):
        offset, stream, message = line
        if event.get("message") != message or event.get("stream") != stream:
            return "message or stream"
        k8s = event.get("kubernetes", {})
        want = {
            "namespace": "default",
            "pod_name": "simple-webapp",
            "pod_uid": web_uid,
            "container_name": "simple-webapp",
            "restart_count": 0,
            "node_name": NODE,
        }
        if any(k8s.get(k) != v for k, v in want.items()):
            return f"kubernetes {k8s} != {want}"
        return None

    def lines_of():
        return cri_lines(web_log)

    def play():
        agent_uid = str(uuid.uuid4())
        own = pods_root / f"logging_{pod_name}_{agent_uid}" / "log-agent"
        own.mkdir(parents=True)
        pod.play("--log-driver", "k8s-file", "--log-opt", f"path={own / '0.log'}")
        pod.wait_ready()
        return own / "0.log"

    own_log = play()
    pod.confinement(0, ["/var/log/pods", "/etc/log-agent", "/var/run/secrets/kafka"])
    pod.send("a", 300, web=web)
    # Log lines of 20 KB: conmon writes them in pieces (P ... F), which the agent joins.
    pod.send("long", 3, web=web, query="?pad=" + "x" * 20000)
    shipped_exactly(pod, lines_of, file, expect, "running")
    requests_in_log(web_log, [("a", 300), ("long", 3)])
    check_api(pod, 303)
    own_lines = read_lines(own_log)
    if not own_lines:
        raise Failure(f"the agent's own container log {own_log} is empty")
    note(
        f"its own container log ({len(own_lines)} lines under {own_log.parent.parent.name}) "
        "is not read"
    )

    log("DaemonSet: the agent's pod replaced by a new one (checkpoints on the node)")
    grace = pod.grace()
    podman("pod", "stop", "--time", str(grace), pod.name, timeout=grace + 60)
    _, code, _ = state(pod.agent)
    if code != 0:
        raise Failure(f"{pod.agent} exited {code} at the pod's stop, expected 0")
    pod.save_logs()
    podman("kube", "down", str(pod.played))
    pod.send("b", 200, web=web)
    own_log = play()
    shipped_exactly(pod, lines_of, file, expect, "new pod, resumed")
    requests_in_log(web_log, [("a", 300), ("long", 3), ("b", 200)])

    log("DaemonSet: the pod stopped and removed")
    pod.send("d", 500, web=web)
    podman("pod", "stop", "--time", str(grace), pod.name, timeout=grace + 60)
    _, code, _ = state(pod.agent)
    if code != 0:
        raise Failure(f"{pod.agent} exited {code} at the pod's stop, expected 0")
    pod.save_logs()
    lines, _ = shipped_exactly(pod, lines_of, file, expect, "at the pod's stop", timeout=5)
    requests_in_log(web_log, [("a", 300), ("long", 3), ("b", 200), ("d", 500)])
    note(f"{cri_pieces(web_log)} pieces (P) written by conmon, joined into their lines")
    report["daemonset_lines"] = len(lines)
    events = read_events(pod.sink)
    if any(f"logging_{pod_name}_" in e["file"] for e in events):
        raise Failure("the agent shipped its own container log")
    podman("kube", "down", str(pod.played))
    pod.remove()
    podman("rm", "--force", web)
    note("kube down: pod removed")


SCENARIOS = {"sidecar": sidecar, "native": native, "daemonset": daemonset}


def main():
    names = sys.argv[1:] or list(SCENARIOS)
    WORK.mkdir(parents=True, exist_ok=True)
    report = {}
    current = None
    try:
        secret()
        for name in names:
            current = name
            SCENARIOS[name](report)
    except (Failure, subprocess.TimeoutExpired, AssertionError) as error:
        print(f"\nPOD TEST FAILED ({current}): {error}", file=sys.stderr, flush=True)
        for container in agent_containers():
            print(f"\n--- podman logs --tail 80 {container}", file=sys.stderr)
            print(
                podman("logs", "--tail", "80", container, check=False, stderr=subprocess.STDOUT),
                file=sys.stderr,
            )
        print(f"(played manifests and saved logs under {WORK})", file=sys.stderr)
        if os.environ.get("POD_KEEP"):
            print("POD_KEEP is set: the pods are left as they are", file=sys.stderr)
        else:
            cleanup()
        return 1
    cleanup()
    (WORK / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


def agent_containers():
    out = podman("ps", "--all", "--format", "{{.Names}}", check=False)
    return [n for n in out.split() if any(n == pod.agent for pod in PODS)]


def cleanup():
    for pod in PODS:
        pod.remove()
    for container in CONTAINERS:
        podman("rm", "--force", "--ignore", container, check=False)
    podman("secret", "rm", "log-agent-kafka", check=False)


if __name__ == "__main__":
    sys.exit(main())
