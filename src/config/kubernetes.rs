//! `mode:` how the agent is deployed in Kubernetes, and what `daemonset` presets.
//!
//! - `sidecar` (the default): the sources are the ones configured, usually the shared
//!   `emptyDir` the web container writes into.
//! - `daemonset`: one agent per node reads every container's log under `pods_root`
//!   (`/var/log/pods`). Without configured sources it presets source [`DAEMONSET_SOURCE`] over
//!   `<pods_root>/*/*/*.log` in the [`DAEMONSET_FORMAT`] format. In every file source it excludes
//!   the agent's own pod, as `kubernetes:` names it, so the agent never ships its own logs.
//!
//! `kubernetes:` names the agent's own pod ([`Identity`]), from what the manifest sets
//! (`${POD_NAME}` from the Downward API...): nothing is read from the environment unless the
//! configuration asks for it. In sidecar mode the agent's pod is the pod of the files, and every
//! key set is stamped on events; in daemonset mode only the node's name is (the pods are the
//! ones the paths name).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_norway::{Mapping, Value};

use crate::event::enrichment::PodIdentity;

/// `kubernetes:` the agent's own pod, as the configuration names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// The pod's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// The pod's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    /// The pod's UID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// The node the pod runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The container whose logs the agent reads (sidecar mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
}

impl Identity {
    /// The keys set (and not empty), in a fixed order.
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("pod_name", &self.pod_name),
            ("pod_namespace", &self.pod_namespace),
            ("pod_uid", &self.pod_uid),
            ("node_name", &self.node_name),
            ("container_name", &self.container_name),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key, value.as_deref().filter(|v| !v.is_empty())?)))
        .collect()
    }

    /// What events are stamped with in `mode`: every key set in sidecar mode, the node's name
    /// only in daemonset mode.
    pub fn stamped(&self, mode: Mode) -> PodIdentity {
        PodIdentity(
            self.pairs()
                .into_iter()
                .filter(|(key, _)| mode == Mode::Sidecar || *key == "node_name")
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .collect(),
        )
    }
}

/// How the agent is deployed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Beside the web container in its pod, reading the configured sources.
    #[default]
    Sidecar,
    /// One per node, reading every pod's container logs.
    Daemonset,
}

/// Name of the source `mode: daemonset` presets; sinks name it in their `inputs`.
pub const DAEMONSET_SOURCE: &str = "pods";

/// Format of the preset source: the kubelet writes container logs in the CRI format
/// (`<time> <stream> <P|F> <text>`), whose partial lines the `cri` format joins.
pub const DAEMONSET_FORMAT: &str = "cri";

/// Where the kubelet writes container logs.
pub const DEFAULT_PODS_ROOT: &str = "/var/log/pods";

/// The preset source's YAML: every container log file under `pods_root`.
pub(crate) fn preset_source(pods_root: &Path) -> Value {
    let include = format!("{}/*/*/*.log", escaped(pods_root));
    let mut source = Mapping::new();
    source.insert("type".into(), "file".into());
    source.insert("include".into(), Value::Sequence(vec![include.into()]));
    source.insert("format".into(), DAEMONSET_FORMAT.into());
    Value::Mapping(source)
}

/// The glob of the agent's own pod's log files, when `kubernetes.pod_name` says which pod that
/// is (`pod_namespace` narrows it; without it, a pod of that name in any namespace).
pub(crate) fn own_pod_exclude(pods_root: &Path, identity: &Identity) -> Option<String> {
    let pod = identity.pod_name.as_deref().filter(|p| !p.is_empty())?;
    let namespace = identity
        .pod_namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .map_or_else(|| "*".to_owned(), glob::Pattern::escape);
    // Namespaces and pod names have no `_`, so `<ns>_<pod>_` is the prefix of this pod's
    // directories only (one per pod UID).
    Some(format!(
        "{}/{namespace}_{}_*/**",
        escaped(pods_root),
        glob::Pattern::escape(pod)
    ))
}

fn escaped(path: &Path) -> String {
    glob::Pattern::escape(&path.to_string_lossy())
}

/// The default `pods_root`.
pub(crate) fn default_pods_root() -> PathBuf {
    PathBuf::from(DEFAULT_PODS_ROOT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_pod_exclude_table() {
        // (POD_NAME, POD_NAMESPACE, expected glob)
        let cases = [
            (None, Some("ns"), None),
            (Some(""), Some("ns"), None),
            (
                Some("agent-x7"),
                Some("logging"),
                Some("/pods/logging_agent-x7_*/**"),
            ),
            (Some("agent-x7"), None, Some("/pods/*_agent-x7_*/**")),
            (Some("agent-x7"), Some(""), Some("/pods/*_agent-x7_*/**")),
            (Some("a[1]"), Some("n"), Some("/pods/n_a[[]1[]]_*/**")),
        ];
        for (pod, namespace, want) in cases {
            let identity = Identity {
                pod_name: pod.map(str::to_owned),
                pod_namespace: namespace.map(str::to_owned),
                ..Identity::default()
            };
            let got = own_pod_exclude(Path::new("/pods"), &identity);
            assert_eq!(got.as_deref(), want, "{pod:?} {namespace:?}");
        }
    }

    #[test]
    fn the_exclude_matches_only_the_own_pods_files() {
        let identity = Identity {
            pod_name: Some("agent-x7".to_owned()),
            pod_namespace: Some("logging".to_owned()),
            ..Identity::default()
        };
        let glob = own_pod_exclude(Path::new("/var/log/pods"), &identity).unwrap();
        let pattern = glob::Pattern::new(&glob).unwrap();
        let cases = [
            (
                "/var/log/pods/logging_agent-x7_0f5c7d7e/log-agent/0.log",
                true,
            ),
            (
                "/var/log/pods/logging_agent-x7_0f5c7d7e/log-agent/1.log",
                true,
            ),
            (
                "/var/log/pods/logging_agent-x77_0f5c7d7e/log-agent/0.log",
                false,
            ),
            (
                "/var/log/pods/logging_agent-x_0f5c7d7e/log-agent/0.log",
                false,
            ),
            ("/var/log/pods/default_agent-x7_0f5c7d7e/web/0.log", false),
        ];
        for (path, excluded) in cases {
            assert_eq!(pattern.matches(path), excluded, "{path}");
        }
    }

    #[test]
    fn what_is_stamped_by_mode() {
        let identity = Identity {
            pod_name: Some("web-1".into()),
            pod_namespace: Some("shop".into()),
            pod_uid: Some(String::new()),
            node_name: Some("node-a".into()),
            container_name: Some("web".into()),
        };
        let pairs = |p: PodIdentity| -> Vec<String> {
            p.0.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
        };
        // (mode, stamped keys; an empty value is left out)
        let cases = [
            (
                Mode::Sidecar,
                vec![
                    "pod_name=web-1",
                    "pod_namespace=shop",
                    "node_name=node-a",
                    "container_name=web",
                ],
            ),
            (Mode::Daemonset, vec!["node_name=node-a"]),
        ];
        for (mode, want) in cases {
            assert_eq!(pairs(identity.stamped(mode)), want, "{mode:?}");
        }
        assert!(Identity::default().stamped(Mode::Sidecar).0.is_empty());
    }
}
