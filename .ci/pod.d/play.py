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

import copy
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORK = Path(os.environ.get("POD_WORK", ROOT / "target" / "pod"))
MANIFESTS = ROOT / "deploy" / "kubernetes"
# podman's settings for this sandbox, as .ci/pod sets them.
os.environ.setdefault("CONTAINERS_CONF", str(ROOT / ".ci" / "pod.d" / "containers.conf"))
WEB_IMAGE = "localhost/simple-webapp:latest"
SINK_MOUNT = "/ci-sink"
SINK_NAME = "ci"
NODE = socket.gethostname()
AGENT_UID = 10001
# What this run made, removed when it fails (unless POD_KEEP is set) or ends.
PODS = []
CONTAINERS = []


class Failure(Exception):
    """A check that failed: what was expected and what was seen."""


def log(message):
    print(f"== {message}", flush=True)


def note(message):
    print(f"   {message}", flush=True)


def podman(*args, check=True, timeout=120, stderr=subprocess.PIPE):
    result = subprocess.run(
        ["podman", *args], stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise Failure(
            f"podman {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}"
        )
    return result.stdout


def wait_for(what, predicate, timeout=60.0, interval=0.2):
    """Polls predicate() until it returns something true; returns it, or fails naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise Failure(f"timed out after {timeout:.0f} s waiting for {what}")


def state(container):
    out = podman(
        "inspect", container, "--format", "{{.State.Status}} {{.State.ExitCode}} {{.State.Pid}}"
    ).split()
    return out[0], int(out[1]), int(out[2])


# ---------------------------------------------------------------------------------------------
# The test overlay


def swap_sink(agent_yaml):
    """The agent config with its `sinks:` section replaced by one file sink on SINK_MOUNT, fed by
    the same inputs; every other line is kept as written."""
    config = yaml.safe_load(agent_yaml)
    lines = agent_yaml.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("sinks:"))
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].strip() and lines[i][0] != " "),
        len(lines),
    )
    inputs = sorted({name for sink in config["sinks"].values() for name in sink["inputs"]})
    block = [
        "sinks:\n",
        f"  {SINK_NAME}:                                # .ci/pod: a file on a host directory\n",
        "    type: file\n",
        f"    inputs: [{', '.join(inputs)}]\n",
        f"    path: {SINK_MOUNT}/shipped.ndjson\n",
        "    encoding: json\n",
    ]
    swapped = "".join(lines[:start] + block + lines[end:])
    new = yaml.safe_load(swapped)
    rest = {k: v for k, v in config.items() if k != "sinks"}
    assert {k: v for k, v in new.items() if k != "sinks"} == rest, "only the sinks may change"
    return swapped


def overlay(docs, sink_dir, notes, namespace_default="default", host_paths=None):
    """Applies the test overlay to the documents of a manifest, in place.

    The sink: the ConfigMap's agent.yaml ships to a file in `sink_dir` (a hostPath mounted on
    the agent at SINK_MOUNT). What podman 4.3 cannot play, changed as little as possible:
    `ports` dropped (4.3 publishes every containerPort on the host, which `--network none`
    refuses), Downward API fields it does not know (metadata.namespace, spec.nodeName) set to
    the values a kubelet would give, probes dropped (4.3 would run them with curl from systemd
    timers), hostPaths moved under a scratch node root (`host_paths`).
    """
    for doc in docs:
        if doc.get("kind") == "ConfigMap" and "agent.yaml" in doc.get("data", {}):
            doc["data"]["agent.yaml"] = swap_sink(doc["data"]["agent.yaml"])
            notes.append(
                f"sink: the ConfigMap's sinks replaced by a file sink `{SINK_NAME}` at "
                f"{SINK_MOUNT}/shipped.ndjson (hostPath {sink_dir})"
            )
    for doc in docs:
        if doc.get("kind") != "Pod":
            continue
        spec = doc["spec"]
        namespace = doc["metadata"].get("namespace", namespace_default)
        dropped, probes = [], []
        for container in spec.get("initContainers", []) + spec["containers"]:
            if container.pop("ports", None):
                dropped.append(container["name"])
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if container.pop(probe, None):
                    probes.append(f"{container['name']}'s {probe}")
            for env in container.get("env", []):
                field = env.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
                value = {"metadata.namespace": namespace, "spec.nodeName": NODE}.get(field)
                if value is not None:
                    del env["valueFrom"]
                    env["value"] = value
                    notes.append(
                        f"podman 4.3: {container['name']}: env {env['name']} from {field} "
                        f"set to {value!r} (4.3 knows only metadata.name, metadata.uid, labels "
                        "and annotations)"
                    )
            if container["name"] == "log-agent":
                container["volumeMounts"].append({"name": "ci-sink", "mountPath": SINK_MOUNT})
        if dropped:
            notes.append(
                f"podman 4.3: `ports` of {', '.join(dropped)} dropped (4.3 publishes every "
                "containerPort on the host's 0.0.0.0, which --network none refuses; the "
                "probes' port `api` is 8686 either way)"
            )
        if probes:
            notes.append(
                f"podman 4.3: {', '.join(probes)} dropped (4.3 runs an httpGet probe as `curl` "
                "in the container, from a systemd timer: no systemd here, no curl nor shell in "
                "the image; this script asks /healthz and /readyz itself)"
            )
        spec["volumes"].append(
            {"name": "ci-sink", "hostPath": {"path": str(sink_dir), "type": "Directory"}}
        )
        for volume in spec["volumes"]:
            host_path = volume.get("hostPath")
            if host_path and host_paths and host_path["path"] in host_paths:
                moved = host_paths[host_path["path"]]
                notes.append(f"node: hostPath {host_path['path']} -> {moved}")
                host_path["path"] = moved
    return docs


def daemonset_as_pod(docs, pod_name, notes):
    """podman 4.3 plays no DaemonSet: its pod template becomes a Pod (as the DaemonSet
    controller would make for this node); the Namespace and ServiceAccount are ignored by 4.3."""
    out = []
    for doc in docs:
        if doc.get("kind") == "DaemonSet":
            template = doc["spec"]["template"]
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": pod_name,
                        "namespace": doc["metadata"]["namespace"],
                        "labels": template["metadata"].get("labels", {}),
                        "annotations": template["metadata"].get("annotations", {}),
                    },
                    "spec": copy.deepcopy(template["spec"]),
                }
            )
            notes.append(
                f"podman 4.3: the DaemonSet's pod template played as Pod {pod_name} "
                "(4.3 plays Pods, Deployments and PVCs only)"
            )
        else:
            out.append(doc)
    return out


def native_as_classic(docs, notes):
    """podman 4.3 runs init containers to completion before the others, so an init container
    with restartPolicy: Always blocks the pod: it becomes the first regular container, and the
    script starts and stops the containers in the kubelet's order itself."""
    for doc in docs:
        if doc.get("kind") != "Pod":
            continue
        spec = doc["spec"]
        sidecars = [c for c in spec.get("initContainers", []) if c.get("restartPolicy") == "Always"]
        for container in sidecars:
            spec["initContainers"].remove(container)
            del container["restartPolicy"]
        if not spec.get("initContainers"):
            spec.pop("initContainers", None)
        spec["containers"] = sidecars + spec["containers"]
        notes.append(
            "podman 4.3: the native sidecar (init container, restartPolicy: Always) played as the "
            "first regular container; the kubelet's start order (the web container once the "
            "agent's startupProbe passes) and stop order are done by this script"
        )
    return docs


# ---------------------------------------------------------------------------------------------
# What was written and what was shipped


def read_lines(path):
    """[(offset, text)] of the complete lines of a file."""
    data = Path(path).read_bytes() if Path(path).exists() else b""
    lines, offset = [], 0
    for raw in data.split(b"\n")[:-1]:
        lines.append((offset, raw.decode()))
        offset += len(raw) + 1
    return lines


def read_events(path):
    return [json.loads(line) for _, line in read_lines(path)]


def cri_lines(path):
    """[(offset, stream, message)] of a CRI log file (conmon's k8s-file: `time stream tag msg`),
    a line written in pieces (tag P, then F) joined, at the offset of its first piece."""
    out, pieces = [], {}
    for offset, line in read_lines(path):
        _time, stream, tag, message = line.split(" ", 3)
        first, text = pieces.pop(stream, (offset, ""))
        if tag == "P":
            pieces[stream] = (first, text + message)
        else:
            out.append((first, stream, text + message))
    return out


def cri_pieces(path):
    return sum(1 for _, line in read_lines(path) if line.split(" ", 3)[2] == "P")


def compare(lines, events, file, expect, repeats_allowed=0):
    """Every line is shipped, with its fields, under its offset; nothing else is; at most
    `repeats_allowed` events repeat an earlier one (same id). `expect(event, line)` returns a
    mismatch or None. Returns (shipped lines, repeats)."""
    by_offset = {}
    for event in events:
        if event.get("file") != file:
            raise Failure(f"an event of another file: {event.get('file')!r} (expected {file})")
        by_offset.setdefault(event["offset"], []).append(event)
    offsets = {line[0] for line in lines}
    extra = sorted(set(by_offset) - offsets)
    if extra:
        raise Failure(f"{len(extra)} events at offsets with no line, first {extra[:5]}")
    missing = [line[0] for line in lines if line[0] not in by_offset]
    repeats = 0
    for line in lines:
        shipped = by_offset.get(line[0], [])
        for event in shipped:
            mismatch = expect(event, line)
            if mismatch:
                raise Failure(f"line at offset {line[0]}: {mismatch}: {event}")
        if len({e["id"] for e in shipped}) > 1:
            raise Failure(f"line at offset {line[0]} shipped under several ids: {shipped}")
        repeats += max(0, len(shipped) - 1)
    if repeats > repeats_allowed:
        raise Failure(f"{repeats} lines shipped twice (allowed: {repeats_allowed})")
    return len(lines) - len(missing), repeats, missing


def access_line_expect(pod_name, container):
    def expect(event, line):
        fields = json.loads(line[1])
        for key, value in fields.items():
            if event.get(key) != value:
                return f"field {key}: {event.get(key)!r} != {value!r}"
        k8s = event.get("kubernetes", {})
        if k8s.get("pod_name") != pod_name or k8s.get("container_name") != container:
            return f"kubernetes identity {k8s}"
        if k8s.get("node_name") != NODE:
            return f"kubernetes.node_name {k8s.get('node_name')!r} != {NODE!r}"
        return None

    return expect


# ---------------------------------------------------------------------------------------------
# A played pod


class Pod:
    def __init__(self, name, manifest, scenario):
        self.name = name
        self.manifest = MANIFESTS / manifest
        self.dir = WORK / scenario
        self.sink_dir = self.dir / "sink"
        self.sink = self.sink_dir / "shipped.ndjson"
        self.played = self.dir / "played.yaml"
        self.agent = f"{name}-log-agent"
        self.web = f"{name}-simple-webapp"
        self.volumes = []
        self.repeats = 0
        PODS.append(self)

    def prepare(self, docs, notes, sink_owner):
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.sink_dir.exists():
            for child in self.sink_dir.iterdir():
                child.unlink()
        self.sink_dir.mkdir(exist_ok=True)
        os.chown(self.sink_dir, sink_owner, sink_owner)
        self.played.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        for message in notes:
            note(f"overlay: {message}")
        note(f"played: {self.played.relative_to(ROOT)}")
        for doc in docs:
            if doc.get("kind") == "Pod":
                for volume in doc["spec"]["volumes"]:
                    if "emptyDir" in volume or "configMap" in volume or "secret" in volume:
                        name = volume.get("configMap", {}).get("name") or volume.get(
                            "secret", {}
                        ).get("secretName") or volume["name"]
                        self.volumes.append(name)
        self.remove()

    def remove(self):
        """What an earlier run may have left: the pod and the volumes podman made for it
        (4.3 names an emptyDir after the volume, a ConfigMap or Secret volume after it)."""
        podman("pod", "rm", "--force", "--ignore", self.name, check=False)
        for volume in self.volumes:
            podman("volume", "rm", "--force", volume, check=False)

    def play(self, *extra):
        podman("kube", "play", "--network", "none", *extra, str(self.played), timeout=300)

    def grace(self):
        docs = list(yaml.safe_load_all(self.played.read_text()))
        pod = next(d for d in docs if d.get("kind") == "Pod")
        return int(pod["spec"].get("terminationGracePeriodSeconds", 30))

    def save_logs(self, container=None):
        container = container or self.agent
        logs = podman("logs", container, check=False, timeout=60, stderr=subprocess.STDOUT)
        with open(self.dir / f"{container}.log", "a") as f:
            f.write(logs)
        return logs

    def volume_path(self, name):
        return Path(podman("volume", "inspect", name, "--format", "{{.Mountpoint}}").strip())

    # requests and the API, from inside the pod's network namespace

    def in_pod(self, *command, timeout=120):
        """A command in the pod's network namespace: in its web container when that runs, else
        in a throwaway web container in the pod."""
        if subprocess.run(
            ["podman", "container", "exists", self.web], check=False
        ).returncode == 0 and state(self.web)[0] == "running":
            return subprocess.run(
                ["podman", "exec", self.web, *command],
                capture_output=True, text=True, timeout=timeout, check=False,
            )
        return subprocess.run(
            ["podman", "run", "--rm", "--pod", self.name, WEB_IMAGE, *command],
            capture_output=True, text=True, timeout=timeout, check=False,
        )

    def get(self, path, port=8686):
        """(status, body) of GET http://localhost:port/path inside the pod."""
        result = self.in_pod(
            "curl", "-s", "-m", "5", "-w", "\n%{http_code}", f"http://localhost:{port}{path}"
        )
        body, _, status = result.stdout.rpartition("\n")
        return int(status or 0), body

    def send(self, prefix, count, web=None, query=""):
        """`count` requests to nginx on the pod's localhost, /prefix/1 .. /prefix/count."""
        result = subprocess.run(
            ["podman", "exec", web or self.web, "curl", "-s", "-o", "/dev/null", "-m", "60",
             f"http://localhost:8080/{prefix}/[1-{count}]{query}"],
            capture_output=True, text=True, timeout=300, check=False,
        )
        if result.returncode != 0:
            raise Failure(f"curl in {web or self.web} exited {result.returncode}: {result.stderr}")

    def wait_ready(self, timeout=60):
        return wait_for(
            f"{self.agent}: /readyz 200 inside the pod",
            lambda: self.get("/readyz")[0] == 200,
            timeout=timeout,
            interval=0.1,
        )

    def confinement(self, uid, ro_mounts):
        """The agent's process as the kernel sees it: its user, capabilities and read-only
        mounts."""
        _, _, pid = state(self.agent)
        status = Path(f"/proc/{pid}/status").read_text()
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        uids = fields["Uid"].split()
        if set(uids) != {str(uid)}:
            raise Failure(f"{self.agent} runs as uids {uids}, expected {uid}")
        if int(fields["CapEff"], 16) != 0:
            raise Failure(f"{self.agent} has capabilities {fields['CapEff']}")
        if fields.get("NoNewPrivs", "0").strip() != "1":
            raise Failure(f"{self.agent}: no_new_privs is not set")
        mounts = {}
        for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
            parts = line.split()
            mounts[parts[4]] = parts[5].split(",")
        for path in ["/", *ro_mounts]:
            # /var/run is a link to /run in the image.
            seen = path.replace("/var/run/", "/run/", 1)
            if "ro" not in mounts.get(seen, []):
                raise Failure(f"{self.agent}: {path} is not mounted read-only: {mounts.get(seen)}")
        note(
            f"{self.agent}: uid {uid}, no capabilities, no_new_privs, read-only: "
            f"{', '.join(['/', *ro_mounts])}"
        )
        return pid

    def rss(self):
        _, _, pid = state(self.agent)
        status = Path(f"/proc/{pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return {k: int(fields[k].split()[0]) for k in ("VmRSS", "VmHWM", "RssAnon", "RssFile")}


def shipped_exactly(pod, lines_of, file, expect, what, repeats_allowed=0, timeout=60):
    """Waits until every line is shipped, then checks nothing else or twice was (waiting a
    little longer for late repeats)."""

    def done():
        lines = lines_of()
        count, repeats, _ = compare(lines, read_events(pod.sink), file, expect, repeats_allowed)
        return (lines, repeats) if count == len(lines) else None

    try:
        lines, _ = wait_for(f"every line shipped ({what})", done, timeout=timeout, interval=0.25)
    except Failure:
        lines = lines_of()
        count, repeats, missing = compare(
            lines, read_events(pod.sink), file, expect, repeats_allowed
        )
        raise Failure(
            f"{what}: {count} of {len(lines)} lines shipped after {timeout} s; first missing "
            f"offsets {missing[:5]}"
        ) from None
    time.sleep(1.0)
    count, repeats, _ = compare(lines, read_events(pod.sink), file, expect, repeats_allowed)
    note(
        f"{what}: {len(lines)} lines written, {count} shipped, {repeats} repeated, 0 missing, "
        "0 extra"
    )
    return lines, repeats


def stop_container(container, grace):
    started = time.monotonic()
    podman("stop", "--time", str(grace), container, timeout=grace + 60)
    took = time.monotonic() - started
    _, code, _ = state(container)
    if code != 0:
        raise Failure(f"{container} exited {code} after SIGTERM ({took:.1f} s), expected 0")
    return took


def startup_time(pod):
    """Starts the agent; returns the seconds from `podman start` and from the process's start to
    the first 200 of /readyz, polled every 10 ms from inside the pod."""
    poller = subprocess.Popen(
        ["podman", "exec", pod.web, "sh", "-c",
         "until curl -sf -o /dev/null http://localhost:8686/readyz; do sleep 0.01; done; "
         "date +%s.%N"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(0.3)
    before = time.time()
    podman("start", pod.agent)
    try:
        out, _ = poller.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        poller.kill()
        raise Failure(f"{pod.agent}: /readyz did not answer 200 within 60 s of its start")
    started = podman("inspect", pod.agent, "--format", "{{.State.StartedAt}}").strip()
    started_at = parse_time(started)
    ready = float(out.strip())
    return ready - before, ready - started_at


def parse_time(text):
    """Seconds since the epoch of podman's `2026-12-06 08:35:43.940309244 +0000 UTC`."""
    date, clock, zone = text.split()[:3]
    whole, _, fraction = clock.partition(".")
    base = datetime.strptime(f"{date} {whole} {zone}", "%Y-%m-%d %H:%M:%S %z").timestamp()
    return base + float(f"0.{fraction or 0}")


def check_api(pod, expect_events):
    status, body = pod.get("/healthz")
    if status != 200 or json.loads(body).get("status") != "ok":
        raise Failure(f"/healthz: {status} {body}")
    status, body = pod.get("/readyz")
    if status != 200:
        raise Failure(f"/readyz: {status} {body}")
    status, metrics = pod.get("/metrics")
    if status != 200:
        raise Failure(f"/metrics: {status}")
    samples = {}
    for line in metrics.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = value
    out = samples.get(f'log_agent_sink_events_out_total{{sink="{SINK_NAME}"}}')
    if out is None or int(float(out)) != expect_events:
        raise Failure(f"/metrics: sink {SINK_NAME} events out {out}, expected {expect_events}")
    if not any(name.startswith("log_agent_build_info{") for name in samples):
        raise Failure("/metrics: no log_agent_build_info")
    rss = int(float(samples.get("process_resident_memory_bytes", "0")))
    note(
        f"inside the pod: /healthz 200 ok, /readyz 200, /metrics: sink `{SINK_NAME}` "
        f"{int(float(out))} events out, {len(samples)} samples, RSS {rss / 2**20:.1f} MiB"
    )


# ---------------------------------------------------------------------------------------------
# The scenarios


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
