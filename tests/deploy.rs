//! The Kubernetes manifests under deploy/kubernetes: the agent config in each ConfigMap is one
//! the agent accepts with what its container sets, each pod gives the agent time to drain,
//! probes its API port without following sink health, each manifest says the oldest Kubernetes
//! it supports (what `.ci/lint` validates it on), and the image name is the same everywhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;

use log_agent::config::Mode;
use serde_norway::Value;

/// Every YAML document of every manifest, with the file it came from.
fn documents() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let mut documents = Vec::new();
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for part in text.split("\n---\n") {
            let value: Value =
                serde_norway::from_str(part).unwrap_or_else(|e| panic!("{name}: {e}"));
            documents.push((name.clone(), value));
        }
    }
    documents
}

/// The pod spec of a Pod or of a workload's template.
fn pod_spec(document: &Value) -> Option<&Value> {
    match document["kind"].as_str()? {
        "Pod" => Some(&document["spec"]),
        "DaemonSet" | "Deployment" => Some(&document["spec"]["template"]["spec"]),
        _ => None,
    }
}

#[test]
fn manifests_hold_valid_agent_configs_and_consistent_pods() {
    let documents = documents();
    // (file, mode of its agent config)
    let expected = [
        ("daemonset.yaml", Mode::Daemonset),
        ("native-sidecar-pod.yaml", Mode::Sidecar),
        ("sidecar-pod.yaml", Mode::Sidecar),
    ];
    for (file, mode) in expected {
        let in_file = || documents.iter().filter(|(f, _)| f == file).map(|(_, d)| d);
        let agent_yaml = in_file()
            .find_map(|d| d["data"]["agent.yaml"].as_str())
            .unwrap_or_else(|| panic!("{file}: no ConfigMap with agent.yaml"));
        let spec = in_file()
            .find_map(pod_spec)
            .unwrap_or_else(|| panic!("{file}: no pod"));
        let agent = ["containers", "initContainers"]
            .iter()
            .filter_map(|list| spec[*list].as_sequence())
            .flatten()
            .find(|c| c["name"].as_str() == Some("log-agent"))
            .unwrap_or_else(|| panic!("{file}: no log-agent container"));
        // Every `${VAR}` of the config is set by the container (the Downward API).
        let set: Vec<&str> = agent["env"]
            .as_sequence()
            .map(|env| env.iter().filter_map(|e| e["name"].as_str()).collect())
            .unwrap_or_default();
        let env = |name: &str| set.contains(&name).then(|| format!("{name}-value"));
        let config = log_agent::Config::from_yaml(agent_yaml, env, Path::new("/"))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(config.mode, mode, "{file}");
        assert_eq!(config.api.as_ref().unwrap().address.port(), 8686, "{file}");
        let identity = config
            .kubernetes
            .as_ref()
            .unwrap_or_else(|| panic!("{file}: no identity"));
        assert_eq!(
            identity.pod_name.as_deref(),
            Some("POD_NAME-value"),
            "{file}"
        );
        assert_eq!(
            identity.node_name.as_deref(),
            Some("NODE_NAME-value"),
            "{file}"
        );
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            assert_eq!(
                agent[probe]["httpGet"]["path"].as_str(),
                Some(path),
                "{file}: {probe}"
            );
            assert_eq!(
                agent[probe]["httpGet"]["port"].as_str(),
                Some("api"),
                "{file}: {probe}"
            );
        }
        assert_eq!(
            agent["ports"][0]["containerPort"].as_u64(),
            Some(8686),
            "{file}"
        );
        let security = &agent["securityContext"];
        assert_eq!(
            security["readOnlyRootFilesystem"].as_bool(),
            Some(true),
            "{file}"
        );
        assert_eq!(
            security["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "{file}"
        );
        assert_eq!(
            security["capabilities"]["drop"][0].as_str(),
            Some("ALL"),
            "{file}"
        );
        // The data_dir is a volume (the root filesystem is read-only).
        let mounts = agent["volumeMounts"].as_sequence().unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m["mountPath"].as_str() == config.data_dir.to_str()
                    && m["readOnly"].as_bool() != Some(true)),
            "{file}: data_dir is not a writable mount"
        );
        // The delay and the drain fit in the grace period; no preStop `sleep` (Kubernetes 1.30+
        // only), which the oldest supported version refuses.
        let grace_ms = spec["terminationGracePeriodSeconds"].as_u64().unwrap_or(30) * 1000;
        assert!(
            config.shutdown_delay_ms + config.shutdown_timeout_ms < grace_ms,
            "{file}: {} ms of delay + {} ms of drain do not fit in {grace_ms} ms",
            config.shutdown_delay_ms,
            config.shutdown_timeout_ms
        );
        assert!(
            agent["lifecycle"]["preStop"]["sleep"].is_null(),
            "{file}: preStop sleep needs Kubernetes 1.30"
        );
        // No literal secrets: the Kafka password is a mounted file.
        assert!(!agent_yaml.contains("sasl.password"), "{file}");
    }
    // A classic sidecar shares SIGTERM with the web container: it tails on while that one
    // writes its last lines.
    let classic = log_agent::Config::from_yaml(
        documents
            .iter()
            .filter(|(f, _)| f == "sidecar-pod.yaml")
            .find_map(|(_, d)| d["data"]["agent.yaml"].as_str())
            .unwrap(),
        |name| Some(format!("{name}-value")),
        Path::new("/"),
    )
    .unwrap();
    assert!(classic.shutdown_delay_ms >= 5000);
    let native = documents
        .iter()
        .filter(|(f, _)| f == "native-sidecar-pod.yaml")
        .find_map(|(_, d)| pod_spec(d))
        .unwrap();
    assert_eq!(
        native["initContainers"][0]["restartPolicy"].as_str(),
        Some("Always"),
        "the native sidecar is an init container that keeps running"
    );
}

/// `# Minimum Kubernetes version: X.Y` of a manifest.
fn minimum_version(text: &str) -> Option<(u32, u32)> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("# Minimum Kubernetes version: "))?;
    let version = line.split_whitespace().next()?;
    let (major, minor) = version.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[test]
fn each_manifest_says_the_oldest_kubernetes_it_supports() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    // (file, oldest version): the classic sidecar and the DaemonSet for every version the
    // validator knows; native sidecars are on by default from 1.29.
    let expected = [
        ("daemonset.yaml", (1, 25)),
        ("native-sidecar-pod.yaml", (1, 29)),
        ("sidecar-pod.yaml", (1, 25)),
    ];
    for (file, want) in expected {
        let text = fs::read_to_string(dir.join(file)).unwrap();
        assert_eq!(minimum_version(&text), Some(want), "{file}");
    }
    let lint = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/lint")).unwrap();
    assert!(
        lint.contains("# Minimum Kubernetes version:"),
        ".ci/lint validates each manifest on its oldest version"
    );
}

#[test]
fn the_image_has_one_name_everywhere() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let image = format!("log-agent:{}", env!("CARGO_PKG_VERSION"));
    let dockerfile = fs::read_to_string(root.join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(&format!("docker build -t {image} ")),
        "the Dockerfile's build command tags {image}"
    );
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("docker build -t {image} ")),
        "the README's build command tags {image}"
    );
    for (file, document) in documents() {
        if let Some(spec) = pod_spec(&document) {
            for list in ["containers", "initContainers"] {
                for container in spec[list].as_sequence().into_iter().flatten() {
                    if container["name"].as_str() == Some("log-agent") {
                        assert_eq!(container["image"].as_str(), Some(image.as_str()), "{file}");
                    }
                }
            }
        }
    }
}
