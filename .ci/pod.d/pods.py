"""What the pod checks share: where they work, podman, and a played pod (`Pod`): its
containers, requests and API calls from inside its network namespace, and how the kernel sees
its agent (user, capabilities, read-only mounts, memory)."""

import json
import os
import socket
import subprocess
import time
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
