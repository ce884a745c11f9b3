//! How a config text becomes a [`Config`]: interpolated, parsed as YAML, then the top level,
//! each source and each sink read on their own and the cross-key checks made, every error of
//! each step kept, so that one run of `validate` lists them all.
//!
//! The cross checks see every source and every sink's `inputs` as written, whether the rest of
//! the component could be read or not; one that would only repeat an error already found is
//! not made (without sources, no input is said to be unknown).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_norway::{Mapping, Value};

use super::errors::{from_value, lenient};
use super::{Config, ConfigError, Mode, RawConfig, interpolate, kubernetes};
use crate::metrics::Metrics;
use crate::sink::{SinkCommon, SinkConfig, SinkKind};
use crate::source::{SourceConfig, SourceKind};
use crate::transform::topology::{Graph, Node};
use crate::transform::{TransformConfig, TransformKind, UNMATCHED, log_to_metric};

/// See [`Config::from_yaml`].
pub(super) fn from_yaml(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
    base_dir: &Path,
) -> Result<Config, ConfigError> {
    let text = interpolate(text, &lookup)?;
    let document: Value =
        serde_norway::from_str(&text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
    let (raw, mut errors) = lenient::<RawConfig>("", document, &[]);
    let Some(mut raw) = raw else {
        return Err(
            ConfigError::all(errors).unwrap_or_else(|| ConfigError::Syntax("invalid".into()))
        );
    };
    let pods_root = base_dir.join(&raw.pods_root);
    let data_dir = base_dir.join(&raw.data_dir);
    if raw.mode == Mode::Daemonset && raw.sources.is_empty() {
        raw.sources.insert(
            kubernetes::DAEMONSET_SOURCE.to_owned(),
            kubernetes::preset_source(&pods_root),
        );
    }
    let identity = raw.kubernetes.clone().unwrap_or_default();
    let stamped = identity.stamped(raw.mode);
    let own_pod = match raw.mode {
        Mode::Daemonset => kubernetes::own_pod_exclude(&pods_root, &identity),
        Mode::Sidecar => None,
    };
    let names = Names {
        sources: raw.sources.keys().cloned().collect(),
        inputs: raw
            .sinks
            .iter()
            .map(|(name, value)| (name.clone(), inputs_of(value)))
            .collect(),
        transforms: raw
            .transforms
            .iter()
            .map(|(name, value)| (name.clone(), node_of(value)))
            .collect(),
    };
    let mut sources = BTreeMap::new();
    for (name, value) in raw.sources {
        match read_source(&format!("sources.{name}"), value, base_dir, &data_dir) {
            Ok(mut config) => {
                if let Some(tailed) = config.tailed_mut() {
                    tailed.kubernetes = stamped.clone();
                }
                if let SourceKind::File(file) = &mut config.kind
                    && let Some(glob) = &own_pod
                    && !file.exclude.contains(glob)
                {
                    file.exclude.push(glob.clone());
                }
                sources.insert(name, config);
            }
            Err(e) => errors.extend(e.flatten()),
        }
    }
    let mut transforms = BTreeMap::new();
    for (name, value) in raw.transforms {
        match read_transform(&name, value, base_dir) {
            Ok(config) => {
                transforms.insert(name, config);
            }
            Err(e) => errors.extend(e.flatten()),
        }
    }
    let mut sinks = BTreeMap::new();
    for (name, value) in raw.sinks {
        match read_sink(&format!("sinks.{name}"), value, base_dir) {
            Ok(config) => {
                sinks.insert(name, config);
            }
            Err(e) => errors.extend(e.flatten()),
        }
    }
    let config = Config {
        mode: raw.mode,
        pods_root,
        data_dir,
        sources,
        transforms,
        sinks,
        tests: raw.tests,
        api: raw.api,
        tap: raw.tap,
        kubernetes: raw.kubernetes,
        shutdown_delay_ms: raw.shutdown_delay_ms,
        shutdown_timeout_ms: raw.shutdown_timeout_ms,
        checkpoint_interval_ms: raw.checkpoint_interval_ms,
    };
    errors.extend(cross_checks(&config, &names));
    match ConfigError::all(errors) {
        Some(error) => Err(error),
        None => Ok(config),
    }
}

/// Every source the text has, every sink with its inputs and every transform as the graph
/// sees it, read or not.
struct Names {
    sources: BTreeSet<String>,
    inputs: BTreeMap<String, Vec<String>>,
    transforms: BTreeMap<String, Node>,
}

/// A transform as written, as far as the graph needs it: its inputs and outputs (a route's
/// names, as far as they are a mapping).
fn node_of(transform: &Value) -> Node {
    let outputs = match (
        transform.get("type").and_then(Value::as_str),
        transform.get("route").and_then(Value::as_mapping),
    ) {
        (Some("route"), Some(routes)) => routes
            .keys()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .chain([UNMATCHED.to_owned()])
            .collect(),
        _ => vec![String::new()],
    };
    Node {
        inputs: inputs_of(transform),
        outputs,
        may_end: transform.get("type").and_then(Value::as_str) == Some("log_to_metric"),
    }
}

/// The `inputs` of a sink as written, as far as they are a list of names.
fn inputs_of(sink: &Value) -> Vec<String> {
    sink.get("inputs")
        .and_then(Value::as_sequence)
        .map(|inputs| {
            inputs
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn is_component_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The checks across keys that a single key's type cannot express; `names` has every
/// component, whether it could be read or not.
fn cross_checks(config: &Config, names: &Names) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if names.sources.is_empty() {
        errors.push(ConfigError::invalid(
            "sources",
            "at least one source is needed",
        ));
    }
    if names.inputs.is_empty() {
        errors.push(ConfigError::invalid("sinks", "at least one sink is needed"));
    }
    for (key, value) in [
        ("shutdown_timeout_ms", config.shutdown_timeout_ms),
        ("checkpoint_interval_ms", config.checkpoint_interval_ms),
    ] {
        if value == 0 {
            errors.push(ConfigError::invalid(key, "must be at least 1"));
        }
    }
    if let (Some(api), Some(tap)) = (&config.api, &config.tap)
        && api.address.port() == tap.address.port()
        && api.address.port() != 0
    {
        errors.push(ConfigError::invalid(
            "tap.address",
            "must not be the API's port: the API may be exposed for probes, and taps show log content",
        ));
    }
    let sinks: Vec<&String> = names.inputs.keys().collect();
    let sources: Vec<&String> = names.sources.iter().collect();
    let transforms: Vec<&String> = names.transforms.keys().collect();
    for (kind, list) in [
        ("sources", sources),
        ("transforms", transforms),
        ("sinks", sinks),
    ] {
        for name in list.into_iter().filter(|name| !is_component_name(name)) {
            errors.push(ConfigError::invalid(
                format!("{kind}.{name}"),
                "names use only letters, digits, `_` and `-`",
            ));
        }
    }
    if names.sources.is_empty() {
        // Every input would be unknown: said once above.
        return errors;
    }
    errors.extend(derived_metric_names(config));
    let graph = Graph {
        sources: names.sources.clone(),
        transforms: names.transforms.clone(),
        sinks: names.inputs.clone(),
    };
    errors.extend(graph.check());
    errors
}

/// The names `log_to_metric` transforms serve metrics under: each once across all of them, and
/// none the agent's own.
fn derived_metric_names(config: &Config) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for (name, transform) in &config.transforms {
        let TransformKind::LogToMetric(metrics) = &transform.kind else {
            continue;
        };
        for metric in log_to_metric::metric_names(metrics) {
            let key = format!("transforms.{name}.metrics");
            if metric.starts_with("log_agent_") || metric.starts_with("process_") {
                errors.push(ConfigError::invalid(
                    &key,
                    format!("`{metric}`: names starting with `log_agent_` or `process_` are the agent's own"),
                ));
            } else if let Some(other) = seen.insert(metric.clone(), name)
                && other != name
            {
                errors.push(ConfigError::invalid(
                    &key,
                    format!("`{metric}` is served by the transform `{other}` already"),
                ));
            }
        }
    }
    errors
}

/// Splits a component's mapping into its `type` and the rest.
fn take_type(key: &str, value: Value, types: &[&str]) -> Result<(String, Mapping), ConfigError> {
    let Value::Mapping(mut map) = value else {
        return Err(ConfigError::invalid(
            key,
            "expected a mapping with a `type` key",
        ));
    };
    match map.remove("type") {
        Some(Value::String(kind)) => Ok((kind, map)),
        Some(_) => Err(ConfigError::invalid(
            format!("{key}.type"),
            format!("expected one of {}", types.join(", ")),
        )),
        None => Err(ConfigError::invalid(
            format!("{key}.type"),
            format!("missing (required): one of {}", types.join(", ")),
        )),
    }
}

fn read_source(
    key: &str,
    value: Value,
    base_dir: &Path,
    data_dir: &Path,
) -> Result<SourceConfig, ConfigError> {
    let (kind, rest) = take_type(key, value, crate::source::SOURCE_TYPES)?;
    let kind = SourceKind::from_parts(key, &kind, rest)?;
    let config = SourceConfig {
        kind,
        journal_tail: None,
    };
    config.resolve(key, base_dir, data_dir)
}

/// Reads transform `name`: its inputs and its type's settings, its programs compiled.
fn read_transform(
    name: &str,
    value: Value,
    base_dir: &Path,
) -> Result<TransformConfig, ConfigError> {
    let key = format!("transforms.{name}");
    let (kind, mut rest) = take_type(&key, value, TransformKind::TYPES)?;
    let inputs = rest.remove("inputs");
    let kind = TransformKind::from_parts(&key, &kind, rest);
    let inputs: Result<Vec<String>, ConfigError> = match inputs {
        None => Err(ConfigError::invalid(
            format!("{key}.inputs"),
            "missing (required): a list of sources or transforms",
        )),
        Some(value) => from_value(&format!("{key}.inputs"), value),
    };
    let (mut kind, inputs) = match (kind, inputs) {
        (Ok(kind), Ok(inputs)) => (kind, inputs),
        (kind, inputs) => {
            let errors = [kind.err(), inputs.err()]
                .into_iter()
                .flatten()
                .flat_map(ConfigError::flatten)
                .collect();
            return Err(
                ConfigError::all(errors).unwrap_or_else(|| ConfigError::invalid(&key, "invalid"))
            );
        }
    };
    if inputs.is_empty() {
        return Err(ConfigError::invalid(
            format!("{key}.inputs"),
            "at least one input is needed",
        ));
    }
    kind.resolve(base_dir);
    // Built once to check it (programs compile, settings in range); the agent builds its own.
    kind.build(&key, name, &Metrics::default())?;
    Ok(TransformConfig { inputs, kind })
}

/// Reads a sink: the settings every sink has and its type's own, each with all their errors.
fn read_sink(key: &str, value: Value, base_dir: &Path) -> Result<SinkConfig, ConfigError> {
    let (kind, mut rest) = take_type(key, value, SinkKind::TYPES)?;
    let mut common = Mapping::new();
    for field in SinkCommon::FIELDS {
        if let Some(v) = rest.remove(*field) {
            common.insert(Value::String((*field).to_owned()), v);
        }
    }
    let timeout_given = common
        .get("batch")
        .and_then(|batch| batch.get("timeout_ms"))
        .is_some();
    let common = from_value::<SinkCommon>(key, Value::Mapping(common))
        .and_then(|common| common.check(key).map(|()| common));
    let kind = SinkKind::from_parts(key, &kind, rest);
    match (common, kind) {
        (Ok(mut common), Ok(kind)) => {
            if !timeout_given {
                common.batch.timeout_ms = kind.default_batch().timeout_ms;
            }
            SinkConfig { common, kind }.resolve(key, base_dir)
        }
        (common, kind) => {
            let errors = [common.err(), kind.err()]
                .into_iter()
                .flatten()
                .flat_map(ConfigError::flatten)
                .collect();
            Err(ConfigError::all(errors).unwrap_or_else(|| ConfigError::invalid(key, "invalid")))
        }
    }
}
