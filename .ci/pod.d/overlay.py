"""The test overlay: a manifest as played, changed only where the test needs it (the sink
becomes a file on a host directory) or where podman 4.3 cannot play it as written, each change
noted so that the run prints it."""

import copy

import yaml

from pods import NODE, SINK_MOUNT, SINK_NAME


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
