//! The one builder of agent configs for the tests: a data_dir, top-level settings, sources and
//! sinks, written out as the YAML an operator would write. Every test file builds its configs
//! here (directly or through [`config_yaml`] and [`one_sink_config`]) so that a change to the
//! config's shape is made once.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use log_agent::Config;

use super::World;

/// Settings that make tests quick: fast scans, short waits (the lines a file source gets from
/// [`AgentYaml::file_source`]).
pub const FAST: &str = "
    scan_interval_ms: 50
    rotate_wait_ms: 300";

/// An agent config being built: `data_dir` first, then top-level keys, `sources:` and `sinks:`.
///
/// Keys of a source or sink are given as YAML lines at any one indentation (nested lines
/// deeper), so that `"    format: json"` and `"format: json"` say the same: they are
/// re-indented under their section.
#[derive(Clone, Debug)]
pub struct AgentYaml {
    top: String,
    sources: String,
    transforms: String,
    sinks: String,
}

impl AgentYaml {
    /// A config with only `data_dir` set.
    pub fn new(data_dir: &Path) -> AgentYaml {
        AgentYaml {
            top: format!("data_dir: {}\n", data_dir.display()),
            sources: String::new(),
            transforms: String::new(),
            sinks: String::new(),
        }
    }

    /// Top-level lines (`checkpoint_interval_ms: 50`, `api: { address: ... }`), unindented.
    pub fn top(mut self, lines: &str) -> AgentYaml {
        push_lines(&mut self.top, lines, 0);
        self
    }

    /// A file source `name` over the globs `include`, with the [`FAST`] scan settings and
    /// `keys`.
    pub fn file_source(mut self, name: &str, include: &[&Path], keys: &str) -> AgentYaml {
        let _ = writeln!(
            self.sources,
            "  {name}:\n    type: file\n    include: [{}]{FAST}",
            quoted(include)
        );
        push_lines(&mut self.sources, keys, 4);
        self
    }

    /// A source `name` made of `keys` alone (its `type` and `include` among them): for the
    /// sources that must not take the [`FAST`] settings (a soak paced like production).
    pub fn source(mut self, name: &str, keys: &str) -> AgentYaml {
        let _ = writeln!(self.sources, "  {name}:");
        push_lines(&mut self.sources, keys, 4);
        self
    }

    /// A sink `name` of `sink_type` fed by `inputs`, with `keys` (its `path`, `uri`...).
    pub fn sink(mut self, name: &str, sink_type: &str, inputs: &[&str], keys: &str) -> AgentYaml {
        let _ = writeln!(
            self.sinks,
            "  {name}:\n    type: {sink_type}\n    inputs: [{}]",
            inputs.join(", ")
        );
        push_lines(&mut self.sinks, keys, 4);
        self
    }

    /// A transform `name` of `transform_type` taking `inputs`, with `keys` (its `source`,
    /// `route`...).
    pub fn transform(
        mut self,
        name: &str,
        transform_type: &str,
        inputs: &[&str],
        keys: &str,
    ) -> AgentYaml {
        let _ = writeln!(
            self.transforms,
            "  {name}:\n    type: {transform_type}\n    inputs: [{}]",
            inputs.join(", ")
        );
        push_lines(&mut self.transforms, keys, 4);
        self
    }

    /// A file sink `name` fed by `inputs` writing NDJSON to `path`, with `keys`.
    pub fn file_sink(self, name: &str, inputs: &[&str], path: &Path, keys: &str) -> AgentYaml {
        let keys = format!("path: {}\n{}", path.display(), dedent(keys));
        self.sink(name, "file", inputs, &keys)
    }

    /// Sinks given as YAML (what goes under `sinks:`), for tests that hand sink sections
    /// around as text.
    pub fn sinks_yaml(mut self, yaml: &str) -> AgentYaml {
        push_lines(&mut self.sinks, yaml, 2);
        self
    }

    /// The config's text.
    pub fn text(&self) -> String {
        let transforms = if self.transforms.is_empty() {
            String::new()
        } else {
            format!("transforms:\n{}", self.transforms)
        };
        format!(
            "{}sources:\n{}{transforms}sinks:\n{}",
            self.top, self.sources, self.sinks
        )
    }

    /// The config, parsed (see [`config`]).
    pub fn config(&self) -> Config {
        config(&self.text())
    }

    /// Writes the config's text to `path`; returns `path`.
    pub fn write(&self, path: &Path) -> PathBuf {
        fs::write(path, self.text()).unwrap();
        path.to_owned()
    }
}

/// The globs as a YAML flow list's items: each double-quoted.
fn quoted(include: &[&Path]) -> String {
    let items: Vec<String> = include
        .iter()
        .map(|p| format!("{:?}", p.to_str().unwrap()))
        .collect();
    items.join(", ")
}

/// `lines` without the indentation they all share (blank lines ignored).
pub fn dedent(lines: &str) -> String {
    let shared = lines
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out = String::new();
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        out.push_str(&line[shared..]);
        out.push('\n');
    }
    out
}

/// Appends `lines` to `into`, re-indented to `indent` spaces (see [`dedent`]).
fn push_lines(into: &mut String, lines: &str, indent: usize) {
    for line in dedent(lines).lines() {
        let _ = writeln!(into, "{:indent$}{line}", "");
    }
}

/// Parses a config text (no environment variables).
pub fn config(yaml: &str) -> Config {
    Config::from_yaml(yaml, |_| None, Path::new("/")).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// The standard test config: one file source `app` over `include` and one NDJSON file sink
/// `out` writing to `out`; `source_extra` and `sink_extra` are YAML lines added to each.
pub fn config_yaml(
    data_dir: &Path,
    include: &[&str],
    out: &Path,
    source_extra: &str,
    sink_extra: &str,
) -> String {
    let include: Vec<&Path> = include.iter().map(Path::new).collect();
    let sink_keys = format!(
        "batch: {{ max_events: 500, timeout_ms: 20 }}\n{}",
        dedent(sink_extra)
    );
    AgentYaml::new(data_dir)
        .top("checkpoint_interval_ms: 100\nshutdown_timeout_ms: 10000")
        .file_source("app", &include, source_extra)
        .file_sink("out", &["app"], out, &sink_keys)
        .text()
}

/// A config with source `app` over `logs/<glob>` and one sink `name` of type `sink_type` fed
/// by it; `sink_keys` are its other keys.
pub fn one_sink_config(
    world: &World,
    glob: &str,
    name: &str,
    sink_type: &str,
    sink_keys: &str,
) -> Config {
    world
        .app_yaml(glob)
        .top("shutdown_timeout_ms: 5000")
        .sink(name, sink_type, &["app"], sink_keys)
        .config()
}
