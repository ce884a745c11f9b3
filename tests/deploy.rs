//! The Kubernetes manifests under deploy/kubernetes: the agent config in each ConfigMap is one
//! the agent accepts, and each pod gives the agent time to drain and probes its API port.
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
        let env = |name: &str| (name == "POD_NAME").then(|| "log-agent-x".to_owned());
        let config = log_agent::Config::from_yaml(agent_yaml, env, Path::new("/"))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(config.mode, mode, "{file}");
        assert_eq!(config.api.as_ref().unwrap().address.port(), 8686, "{file}");

        let spec = in_file()
            .find_map(pod_spec)
            .unwrap_or_else(|| panic!("{file}: no pod"));
        let agent = ["containers", "initContainers"]
            .iter()
            .filter_map(|list| spec[*list].as_sequence())
            .flatten()
            .find(|c| c["name"].as_str() == Some("log-agent"))
            .unwrap_or_else(|| panic!("{file}: no log-agent container"));
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
        // The drain (and the preStop sleep before it) fits in the grace period.
        let grace_ms = spec["terminationGracePeriodSeconds"].as_u64().unwrap_or(30) * 1000;
        let pre_stop_ms = agent["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .unwrap_or(0)
            * 1000;
        assert!(
            pre_stop_ms + config.shutdown_timeout_ms < grace_ms,
            "{file}: {pre_stop_ms} ms + {} ms of drain do not fit in {grace_ms} ms",
            config.shutdown_timeout_ms
        );
        // No literal secrets: the Kafka password is a mounted file.
        assert!(!agent_yaml.contains("sasl.password"), "{file}");
    }
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
