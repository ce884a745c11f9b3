//! `mode:` how the agent is deployed in Kubernetes, and what `daemonset` presets.
//!
//! - `sidecar` (the default): the sources are the ones configured, usually the shared
//!   `emptyDir` the web container writes into.
//! - `daemonset`: one agent per node reads every container's log under `pods_root`
//!   (`/var/log/pods`). Without configured sources it presets source [`DAEMONSET_SOURCE`] over
//!   `<pods_root>/*/*/*.log` in the [`DAEMONSET_FORMAT`] format. In every file source it excludes
//!   the agent's own pod, named by the `POD_NAMESPACE` and `POD_NAME` environment variables (set
//!   from the Downward API), so the agent never ships its own logs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_norway::{Mapping, Value};

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

/// The glob of the agent's own pod's log files, when `POD_NAME` says which pod that is
/// (`POD_NAMESPACE` narrows it; without it, a pod of that name in any namespace).
pub(crate) fn own_pod_exclude(
    pods_root: &Path,
    lookup: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    let pod = lookup("POD_NAME").filter(|p| !p.is_empty())?;
    let namespace = lookup("POD_NAMESPACE")
        .filter(|n| !n.is_empty())
        .map_or_else(|| "*".to_owned(), |n| glob::Pattern::escape(&n));
    // Namespaces and pod names have no `_`, so `<ns>_<pod>_` is the prefix of this pod's
    // directories only (one per pod UID).
    Some(format!(
        "{}/{namespace}_{}_*/**",
        escaped(pods_root),
        glob::Pattern::escape(&pod)
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
            let lookup = |name: &str| match name {
                "POD_NAME" => pod.map(str::to_owned),
                "POD_NAMESPACE" => namespace.map(str::to_owned),
                _ => None,
            };
            let got = own_pod_exclude(Path::new("/pods"), lookup);
            assert_eq!(got.as_deref(), want, "{pod:?} {namespace:?}");
        }
    }

    #[test]
    fn the_exclude_matches_only_the_own_pods_files() {
        let lookup = |name: &str| match name {
            "POD_NAME" => Some("agent-x7".to_owned()),
            "POD_NAMESPACE" => Some("logging".to_owned()),
            _ => None,
        };
        let glob = own_pod_exclude(Path::new("/var/log/pods"), lookup).unwrap();
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
}
