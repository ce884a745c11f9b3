//! Settings of a `type: kafka` sink, their checks, and how they are printed: the values of
//! `librdkafka_options` whose name speaks of a secret are never shown.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::errors::ConfigError;
use crate::sink::encoding::Encoding;
use crate::sink::secret::redacted_options;
use crate::sink::template::Template;

/// Compression codecs librdkafka is built with here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// snappy.
    Snappy,
    /// lz4.
    Lz4,
    /// zstd (the default).
    #[default]
    Zstd,
}

impl Compression {
    pub(super) fn as_librdkafka(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Settings of a `type: kafka` sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, `host:port[,host:port]`.
    pub brokers: String,
    /// Topic, a template: `{{ source }}`, `{{ file }}` or any top-level field of a parsed event.
    pub topic: String,
    /// Event field whose value is the message key; the event `id` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Compression codec.
    #[serde(default)]
    pub compression: Compression,
    /// `acks`: `all` (default), `1` or `0`.
    #[serde(default = "default_acks")]
    pub acks: String,
    /// Idempotent producer (no duplicates from librdkafka's own retries).
    #[serde(default = "default_true")]
    pub idempotence: bool,
    /// Message headers: header name -> event field.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How events are written in the message value.
    #[serde(default)]
    pub encoding: Encoding,
    /// File holding the SASL password (`sasl.password`), read at start; never printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_password_file: Option<PathBuf>,
    /// Any other librdkafka producer property (security.protocol, sasl.*, ssl.*...). Values of
    /// options whose name speaks of a password, secret, key, token, PEM, JAAS or OAuth config
    /// are redacted when the configuration is printed.
    #[serde(default, serialize_with = "redacted_options")]
    pub librdkafka_options: BTreeMap<String, String>,
}

fn default_acks() -> String {
    "all".into()
}

fn default_true() -> bool {
    true
}

impl KafkaSinkConfig {
    /// Checks the values; `key` is the sink's.
    pub fn check(&self, key: &str) -> Result<(), ConfigError> {
        if self.brokers.trim().is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.brokers"),
                "at least one broker is needed",
            ));
        }
        Template::parse(&self.topic)
            .map_err(|e| ConfigError::invalid(format!("{key}.topic"), e.to_string()))?;
        if !["all", "-1", "0", "1"].contains(&self.acks.as_str()) {
            return Err(ConfigError::invalid(
                format!("{key}.acks"),
                "expected all, 1 or 0",
            ));
        }
        if self.idempotence && self.acks != "all" && self.acks != "-1" {
            return Err(ConfigError::invalid(
                format!("{key}.acks"),
                "the idempotent producer needs acks: all",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_when_printed() {
        let yaml = "brokers: b:9092\ntopic: t\nlibrdkafka_options: { sasl.password: hunter2, sasl.username: me }\n";
        let config: KafkaSinkConfig = serde_norway::from_str(yaml).unwrap();
        config.check("sinks.k").unwrap();
        let printed = serde_norway::to_string(&config).unwrap();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(
            printed.contains("<redacted>") && printed.contains("me"),
            "{printed}"
        );
        let bad: KafkaSinkConfig =
            serde_norway::from_str("brokers: b\ntopic: t\nacks: \"1\"\n").unwrap();
        assert!(bad.check("sinks.k").is_err(), "idempotence needs acks all");
    }
}
