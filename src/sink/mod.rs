//! Sinks: where events go. One trait, [`Sink`], one file per sink, and one tagged enum,
//! [`SinkKind`], whose [`SinkKind::build`] is the registry of sink types.
//!
//! A sink only delivers batches and says whether a failure is worth retrying; buffering,
//! batching, retries, dead-lettering and acks are the pipeline's (see [`crate::pipeline`]).

mod blackhole;
pub mod delivery;
pub mod encoding;
mod file;
pub mod http;
mod kafka;
pub mod otlp;
pub mod secret;
mod stdout;
mod target;
pub mod template;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_norway::{Mapping, Value};

pub use blackhole::BlackholeSinkConfig;
pub use file::{FileSinkConfig, missing_directory};
pub use http::HttpSinkConfig;
pub use kafka::{Compression, KafkaSinkConfig};
pub use otlp::OtlpSinkConfig;
pub use stdout::StdoutSinkConfig;
pub use target::parse_target;

use self::delivery::{BatchConfig, BufferConfig, RetryConfig};
use crate::config::errors::{ConfigError, did_you_mean, from_value_with};
use crate::event::Batch;
use crate::health::SinkHealth;

/// A boxed future, as [`Sink`] methods return (the trait is used as `dyn Sink`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Worth trying again (connection refused, disk full, timeout...).
    #[error("{0}")]
    Retriable(String),
    /// Worth trying again, but not before `after`: the destination said when (HTTP
    /// `Retry-After`). The pipeline waits at least that long, up to `retry.max_backoff_ms`.
    #[error("{message}")]
    RetriableAfter {
        /// What went wrong.
        message: String,
        /// How long the destination asked to be left alone.
        after: Duration,
    },
    /// Will fail again whatever happens (rejected by the destination, encoding impossible...).
    #[error("{0}")]
    Permanent(String),
    /// The batch was delivered except for some events that the destination refused for good
    /// (for example the items of an Elasticsearch bulk request that failed mapping). The
    /// pipeline dead-letters just those events and acks the whole batch.
    #[error("{} of the batch's events rejected for good; the first: {}", .rejected.len(), .rejected.first().map_or("", |r| r.reason.as_str()))]
    Partial {
        /// Encoded bytes of the events that were delivered.
        bytes: u64,
        /// The refused events, by position in the batch ([`Batch::iter`] order).
        rejected: Vec<Rejected>,
    },
}

impl SinkError {
    /// The same error with `prefix` (which sink, where) before its message; a partial
    /// delivery's rejected events keep their own reasons.
    pub fn prefixed(self, prefix: &str) -> SinkError {
        match self {
            SinkError::Retriable(message) => SinkError::Retriable(format!("{prefix}: {message}")),
            SinkError::RetriableAfter { message, after } => SinkError::RetriableAfter {
                message: format!("{prefix}: {message}"),
                after,
            },
            SinkError::Permanent(message) => SinkError::Permanent(format!("{prefix}: {message}")),
            partial @ SinkError::Partial { .. } => partial,
        }
    }
}

/// An event of a batch that the destination refused for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Position of the event in [`Batch::iter`].
    pub index: usize,
    /// Why, as the destination put it.
    pub reason: String,
}

/// A destination for batches of events.
pub trait Sink: Send {
    /// Delivers every event of `batch`, returning the bytes written. `Ok` means the destination
    /// has them: the events are then acked and their files' checkpoints may pass them. After an
    /// error the pipeline may call again with the very same batch (a retry).
    fn deliver<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<u64, SinkError>>;

    /// Flushes what the sink holds, at shutdown.
    fn close(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }

    /// Asks the destination whether it is ready, where it has a way to say so. Called when the
    /// sink starts, and again while it is unhealthy with nothing in flight (so that readiness
    /// comes back without waiting for the next line); a failure is logged and does not stop
    /// the sink. A sink that has no way to ask (or nothing worth asking now) says
    /// [`Healthcheck::NotChecked`], which is never reported as a check that passed.
    fn healthcheck(&mut self) -> BoxFuture<'_, Result<Healthcheck, SinkError>> {
        Box::pin(async { Ok(Healthcheck::NotChecked) })
    }

    /// More instances of this sink, sharing its connections, so that one batch per instance
    /// can be in flight at once. The pipeline still acks batches in the order they were made.
    /// None by default: one batch at a time.
    fn replicas(&self) -> Vec<Box<dyn Sink>> {
        Vec::new()
    }
}

/// What a healthcheck found, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Healthcheck {
    /// The destination was asked and answered that it is ready.
    Passed,
    /// Nothing was asked: the sink has no way to, or no reason to now.
    NotChecked,
}

/// Failure to build a sink from its configuration.
#[derive(Debug, thiserror::Error)]
#[error("sink `{sink}`: {message}")]
pub struct BuildError {
    /// The sink's name.
    pub sink: String,
    /// What went wrong.
    pub message: String,
}

/// Settings every sink has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkCommon {
    /// Names of the sources whose events this sink receives.
    pub inputs: Vec<String>,
    /// How events are grouped into deliveries.
    #[serde(default)]
    pub batch: BatchConfig,
    /// How many events may wait for this sink, and what happens when that many do.
    #[serde(default)]
    pub buffer: BufferConfig,
    /// How failed deliveries are retried.
    #[serde(default)]
    pub retry: RetryConfig,
}

impl SinkCommon {
    /// The keys of a sink's mapping that belong here rather than to its type.
    pub const FIELDS: &'static [&'static str] = &["inputs", "batch", "buffer", "retry"];

    /// Checks the values; `key` is the sink's.
    pub fn check(&self, key: &str) -> Result<(), ConfigError> {
        if self.inputs.is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.inputs"),
                "at least one source is needed",
            ));
        }
        self.batch.check(key)?;
        self.buffer.check(key)?;
        self.retry.check(key)
    }
}

/// One sink of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SinkConfig {
    /// Settings every sink has.
    #[serde(flatten)]
    pub common: SinkCommon,
    /// The sink's type and its own settings.
    #[serde(flatten)]
    pub kind: SinkKind,
}

impl SinkConfig {
    /// Makes relative paths absolute from `base_dir`.
    pub fn resolve(mut self, _key: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        match &mut self.kind {
            SinkKind::File(file) => file.path = base_dir.join(&file.path),
            SinkKind::Http(http) => http.resolve_paths(base_dir),
            SinkKind::Otlp(otlp) => otlp.resolve_paths(base_dir),
            _ => {}
        }
        Ok(self)
    }
}

/// `batch.timeout_ms` of the sinks that write locally (see [`SinkKind::default_batch`]).
pub const LOCAL_BATCH_TIMEOUT_MS: u64 = 10;

/// The sink types, tagged by `type:`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkKind {
    /// Append to a file.
    File(FileSinkConfig),
    /// Write to the agent's standard output.
    Stdout(StdoutSinkConfig),
    /// Accept and discard (for tests and benchmarks).
    Blackhole(BlackholeSinkConfig),
    /// Produce to Kafka.
    Kafka(KafkaSinkConfig),
    /// Send to an HTTP endpoint (NDJSON, Elasticsearch bulk, Loki push).
    Http(HttpSinkConfig),
    /// Send OTLP log records to an OpenTelemetry receiver (gRPC or HTTP).
    Otlp(OtlpSinkConfig),
}

impl SinkKind {
    /// The type names, as `type:` spells them.
    pub const TYPES: &'static [&'static str] =
        &["file", "stdout", "blackhole", "kafka", "http", "otlp"];

    /// The `batch:` settings of a sink of this type whose configuration gives none (or gives
    /// some without `timeout_ms`, which then comes from here). A sink that writes on this
    /// machine (a file, stdout) gains nothing from holding a batch that is not full: one write
    /// more is cheap, while the wait delays every line at the end of a burst and its
    /// checkpoint. One that sends over the network waits [`BatchConfig`]'s default for fuller
    /// requests.
    pub fn default_batch(&self) -> BatchConfig {
        let network = BatchConfig::default();
        match self {
            SinkKind::File(_) | SinkKind::Stdout(_) | SinkKind::Blackhole(_) => BatchConfig {
                timeout_ms: LOCAL_BATCH_TIMEOUT_MS,
                ..network
            },
            SinkKind::Kafka(_) | SinkKind::Http(_) | SinkKind::Otlp(_) => network,
        }
    }

    /// Reads the settings of a sink of type `kind` found at `key`.
    pub fn from_parts(key: &str, kind: &str, rest: Mapping) -> Result<Self, ConfigError> {
        let rest = Value::Mapping(rest);
        // A typo of a key every sink has is told as such.
        let common = SinkCommon::FIELDS;
        match kind {
            "file" => Ok(SinkKind::File(from_value_with(key, rest, common)?)),
            "stdout" => Ok(SinkKind::Stdout(from_value_with(key, rest, common)?)),
            "blackhole" => Ok(SinkKind::Blackhole(from_value_with(key, rest, common)?)),
            "kafka" => {
                let config: KafkaSinkConfig = from_value_with(key, rest, common)?;
                config.check(key)?;
                Ok(SinkKind::Kafka(config))
            }
            "http" => {
                let config: HttpSinkConfig = from_value_with(key, rest, common)?;
                config.check(key)?;
                Ok(SinkKind::Http(config))
            }
            "otlp" => {
                let config: OtlpSinkConfig = from_value_with(key, rest, common)?;
                config.check(key)?;
                Ok(SinkKind::Otlp(config))
            }
            other => Err(ConfigError::invalid(
                format!("{key}.type"),
                format!(
                    "unknown sink type `{other}`, expected one of {}{}",
                    Self::TYPES.join(", "),
                    did_you_mean(other, Self::TYPES)
                ),
            )),
        }
    }

    /// Builds the sink named `name`, with the settings every sink has.
    /// `health` is the sink's readiness, which the pipeline sets from deliveries; a sink whose
    /// client knows more (Kafka: every broker down) reports it there too.
    pub fn build(
        &self,
        name: &str,
        common: &SinkCommon,
        health: &Arc<SinkHealth>,
    ) -> Result<Box<dyn Sink>, BuildError> {
        Ok(match self {
            SinkKind::Kafka(config) => Box::new(kafka::KafkaSink::new(
                name,
                config,
                common,
                Arc::clone(health),
            )?),
            SinkKind::File(config) => Box::new(file::FileSink::new(name, config.clone())),
            SinkKind::Stdout(config) => Box::new(stdout::StdoutSink::new(*config)),
            SinkKind::Blackhole(_) => Box::new(blackhole::BlackholeSink),
            SinkKind::Http(config) => Box::new(http::HttpSink::new(name, config)?),
            SinkKind::Otlp(config) => Box::new(otlp::OtlpSink::new(name, config)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    /// Prints (as `validate` does) a config with one sink of `sink_keys`.
    fn printed(sink_keys: &str) -> String {
        let yaml = format!(
            "sources:\n  app:\n    type: file\n    include: [/l/*.log]\nsinks:\n  out:\n    inputs: [app]\n{sink_keys}"
        );
        Config::from_yaml(&yaml, |_| None, std::path::Path::new("/"))
            .unwrap_or_else(|e| panic!("{e}\n{yaml}"))
            .to_yaml()
    }

    #[test]
    fn validate_prints_no_secret_table() {
        const KAFKA: &str = "    type: kafka\n    brokers: b:9092\n    topic: t\n";
        const HTTP: &str = "    type: http\n";
        const OTLP: &str = "    type: otlp\n";
        // (sink keys, secret never printed, what is printed in its place or beside it)
        let cases: &[(String, &str, &str)] = &[
            (
                format!("{KAFKA}    librdkafka_options: {{ sasl.password: hunter2 }}\n"),
                "hunter2",
                "sasl.password: <redacted>",
            ),
            (
                format!(
                    "{KAFKA}    librdkafka_options: {{ ssl.key.pem: '-----BEGIN PRIVATE KEY-----x' }}\n"
                ),
                "BEGIN PRIVATE KEY",
                "ssl.key.pem: <redacted>",
            ),
            (
                format!(
                    "{KAFKA}    librdkafka_options: {{ sasl.oauthbearer.config: 'clientId=a clientSecret=s3cr3t' }}\n"
                ),
                "s3cr3t",
                "sasl.oauthbearer.config: <redacted>",
            ),
            (
                format!(
                    "{KAFKA}    librdkafka_options: {{ ssl.keystore.password: ks-pass, sasl.oauthbearer.client.secret: cs }}\n"
                ),
                "ks-pass",
                "ssl.keystore.password: <redacted>",
            ),
            (
                format!(
                    "{KAFKA}    librdkafka_options: {{ sasl.jaas.config: 'password=\"jaas-pw\"' }}\n"
                ),
                "jaas-pw",
                "sasl.jaas.config: <redacted>",
            ),
            (
                format!(
                    "{KAFKA}    librdkafka_options: {{ security.protocol: SASL_SSL, sasl.username: me }}\n"
                ),
                "<none>",
                "sasl.username: me",
            ),
            (
                format!("{HTTP}    uri: https://collector/ingest?api_key=k3y&tenant=t1\n"),
                "k3y",
                "https://collector/ingest?api_key=redacted&tenant=redacted",
            ),
            (
                format!("{HTTP}    uri: https://user:pa55@collector/ingest\n"),
                "pa55",
                "https://redacted:redacted@collector/ingest",
            ),
            (
                format!(
                    "{HTTP}    uri: https://collector/ingest\n    headers: {{ X-Auth: x-auth-value }}\n"
                ),
                "x-auth-value",
                "X-Auth: <redacted>",
            ),
            (
                format!(
                    "{HTTP}    uri: https://collector/ingest\n    headers: {{ X-Custom-Thing: opaque-value }}\n"
                ),
                "opaque-value",
                "X-Custom-Thing: <redacted>",
            ),
            (
                format!(
                    "{HTTP}    uri: https://collector/ingest\n    headers: {{ X-Scope-OrgID: tenant-1, Content-Type: application/json }}\n"
                ),
                "<none>",
                "X-Scope-OrgID: tenant-1",
            ),
            (
                format!(
                    "{HTTP}    uri: https://es/_bulk\n    encoding: elasticsearch\n    healthcheck: {{ uri: 'https://es/_cluster/health?token=hc-t0k' }}\n"
                ),
                "hc-t0k",
                "token=redacted",
            ),
            (
                format!(
                    "{HTTP}    uri: https://es/_bulk\n    auth: {{ strategy: basic, user: elastic, password: basic-pw }}\n"
                ),
                "basic-pw",
                "user: elastic",
            ),
            (
                format!("{OTLP}    headers: {{ authorization: 'Bearer otlp-t0k' }}\n"),
                "otlp-t0k",
                "authorization: <redacted>",
            ),
            (
                format!("{OTLP}    endpoint: 'https://u:otlp-pw@c:4318/v1/logs?key=k'\n"),
                "otlp-pw",
                "https://redacted:redacted@c:4318/v1/logs?key=redacted",
            ),
        ];
        for (keys, secret, shown) in cases {
            let text = printed(keys);
            assert!(!text.contains(secret), "{secret} printed:\n{text}");
            assert!(text.contains(shown), "{shown} not printed:\n{text}");
        }
    }
}
