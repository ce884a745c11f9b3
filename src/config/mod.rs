//! The agent's configuration: YAML, `${VAR}` interpolated, every key checked.
//!
//! Loading goes text -> interpolation -> YAML document -> typed structs -> cross checks (inputs
//! name sources, every source feeds a sink, ...) ([`load`]). Unknown keys are rejected. Every
//! error of the file is reported, each naming the full path of its key
//! (`sinks.out.batch.max_events`) in the user's terms ([`errors`]). Sources and sinks are read
//! through their `type` key into the tagged enums of [`crate::source`] and [`crate::sink`],
//! which keeps the error path exact down to the variant's own keys.

pub mod errors;
pub mod host;
pub mod interpolate;
pub mod kubernetes;
mod load;
pub mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_norway::Value;

pub use errors::ConfigError;
pub use interpolate::{InterpolationError, interpolate};
pub use kubernetes::Mode;

use crate::sink::SinkConfig;
use crate::source::SourceConfig;
use crate::transform::TransformConfig;
use crate::transform::topology::{Branch, Graph, Node};
use crate::transform::unit_test::TransformTest;

/// Where the configuration is read from when neither `--config` nor `$LOG_AGENT_CONFIG` says.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/log-agent/agent.yaml";

/// The whole configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// How the agent is deployed: `sidecar` or `daemonset` (see [`kubernetes`]).
    pub mode: Mode,
    /// Where the kubelet writes container logs, read by `mode: daemonset`.
    pub pods_root: PathBuf,
    /// Where checkpoints (and dead-letter files) live.
    pub data_dir: PathBuf,
    /// Sources by name.
    pub sources: BTreeMap<String, SourceConfig>,
    /// Transforms by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub transforms: BTreeMap<String, TransformConfig>,
    /// Sinks by name.
    pub sinks: BTreeMap<String, SinkConfig>,
    /// Unit tests of the transforms, run by `log-agent test`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tests: Vec<TransformTest>,
    /// The HTTP API (`/healthz`, `/readyz`, `/metrics`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiConfig>,
    /// Live taps of events (`log-agent tap`), off unless given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tap: Option<TapConfig>,
    /// The agent's own pod, as the configuration names it (see [`kubernetes`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<kubernetes::Identity>,
    /// How long the agent keeps tailing after SIGTERM before it drains: a classic sidecar's
    /// web container gets SIGTERM at the same time, and may still write its last lines.
    pub shutdown_delay_ms: u64,
    /// How long SIGTERM may take to drain, deliver and checkpoint (after the delay).
    pub shutdown_timeout_ms: u64,
    /// The least time between two checkpoint writes: checkpoints follow deliveries, one write
    /// covering every delivery since the last (longer apart when a write costs more).
    pub checkpoint_interval_ms: u64,
}

/// The HTTP API's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on; loopback by default (`api: {}`), so that nothing outside the pod
    /// (or node) reaches it unless asked for (`0.0.0.0:8686` for kubelet probes).
    #[serde(default = "default_api_address")]
    pub address: SocketAddr,
}

/// Where live taps are served.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TapConfig {
    /// Address to listen on; loopback by default (`tap: {}`). Never the API's: that one may be
    /// exposed for probes, and taps show log content.
    #[serde(default = "default_tap_address")]
    pub address: SocketAddr,
}

fn default_tap_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8687))
}

fn default_api_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8686))
}

/// The top level as written, before sources and sinks are read by their `type`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    mode: Mode,
    #[serde(default = "kubernetes::default_pods_root")]
    pods_root: PathBuf,
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    #[serde(default)]
    sources: BTreeMap<String, Value>,
    #[serde(default)]
    transforms: BTreeMap<String, Value>,
    sinks: BTreeMap<String, Value>,
    #[serde(default)]
    tests: Vec<TransformTest>,
    #[serde(default)]
    api: Option<ApiConfig>,
    #[serde(default)]
    tap: Option<TapConfig>,
    #[serde(default)]
    kubernetes: Option<kubernetes::Identity>,
    #[serde(default)]
    shutdown_delay_ms: u64,
    #[serde(default = "default_shutdown_timeout_ms")]
    shutdown_timeout_ms: u64,
    #[serde(default = "default_checkpoint_interval_ms")]
    checkpoint_interval_ms: u64,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/log-agent")
}

fn default_shutdown_timeout_ms() -> u64 {
    20_000
}

fn default_checkpoint_interval_ms() -> u64 {
    100
}

impl Config {
    /// Reads, interpolates (from the process environment) and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_file_text(&text)
    }

    /// Interpolates (from the process environment) and checks the text of a config file;
    /// relative paths are taken from the current directory.
    pub fn from_file_text(text: &str) -> Result<Config, ConfigError> {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        Config::from_yaml(text, |name| std::env::var(name).ok(), &cwd)
    }

    /// Parses and checks a configuration text; relative paths are taken from `base_dir`.
    /// `lookup` gives the environment for `${VAR}`: nothing else is read from it. Every error
    /// of the text is reported.
    pub fn from_yaml(
        text: &str,
        lookup: impl Fn(&str) -> Option<String>,
        base_dir: &Path,
    ) -> Result<Config, ConfigError> {
        load::from_yaml(text, lookup, base_dir)
    }

    /// The configuration as YAML, as `validate` prints it.
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(self).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }

    /// The graph the components' `inputs` draw.
    pub fn graph(&self) -> Graph {
        Graph {
            sources: self.sources.keys().cloned().collect(),
            transforms: self
                .transforms
                .iter()
                .map(|(name, transform)| {
                    let node = Node {
                        inputs: transform.inputs.clone(),
                        outputs: transform.kind.outputs(),
                        may_end: transform.kind.may_end_a_path(),
                    };
                    (name.clone(), node)
                })
                .collect(),
            sinks: self
                .sinks
                .iter()
                .map(|(name, sink)| (name.clone(), sink.common.inputs.clone()))
                .collect(),
        }
    }

    /// Where `source`'s events go: the sinks that take it, and the transforms on the way to
    /// others.
    pub fn branches_of(&self, source: &str) -> Branch {
        self.graph().unfold(source)
    }
}

#[cfg(test)]
mod tests;
