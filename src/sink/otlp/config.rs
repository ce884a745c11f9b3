//! Settings of a `type: otlp` sink and their checks.
//!
//! Defaults follow the OTLP exporter specification: gRPC to `localhost:4317`; HTTP to
//! `localhost:4318` with `/v1/logs` added when the endpoint names no path; no compression;
//! 10 s per request. Header values are secrets ([`crate::sink::secret`]), never printed.

use std::collections::BTreeMap;
use std::path::Path;

use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::config::errors::ConfigError;
use crate::sink::http::{
    MAX_IN_FLIGHT, TlsConfig, check_headers, check_tls, parse_http_uri, resolve_tls_paths,
};
use crate::sink::secret::{Secret, redacted_headers, redacted_uri};

/// Settings of a `type: otlp` sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpSinkConfig {
    /// Where the receiver listens, `http://` or `https://` (TLS). For gRPC the path is unused;
    /// for HTTP it is the full URL, `/v1/logs` being added when it has no path. By default
    /// `http://localhost:4317` (gRPC) or `http://localhost:4318/v1/logs` (HTTP).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "redacted_optional"
    )]
    pub endpoint: Option<String>,
    /// The transport and encoding.
    #[serde(default)]
    pub protocol: Protocol,
    /// Extra request headers (gRPC metadata): name -> value, `{ env: VAR }` or `{ file: PATH }`.
    #[serde(default, serialize_with = "redacted_headers")]
    pub headers: BTreeMap<String, Secret>,
    /// Compression of requests.
    #[serde(default)]
    pub compression: OtlpCompression,
    /// TLS: custom CA, client certificate (with an `https://` endpoint).
    #[serde(default)]
    pub tls: TlsConfig,
    /// Time allowed for one export request, connecting included.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Export requests (batches) in flight at once; batches are still acked in order.
    #[serde(default = "default_in_flight")]
    pub in_flight: usize,
    /// The parsed field whose value is a record's `body`; the other fields are attributes.
    /// A parsed event without it has all its fields as the body.
    #[serde(default = "default_body_field")]
    pub body_field: String,
    /// The parsed field that gives `severity_text` and `severity_number`.
    #[serde(default = "default_severity_field")]
    pub severity_field: String,
    /// Resource attributes added to every record's resource (`service.name`, say); they win
    /// over the pod attributes of the same name.
    #[serde(default)]
    pub resource: BTreeMap<String, String>,
}

fn default_body_field() -> String {
    "message".into()
}

fn default_severity_field() -> String {
    "level".into()
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// Exports at once by default: a receiver decodes one while the next is built and sent (the
/// Collector's exporters send up to 10 at once).
fn default_in_flight() -> usize {
    4
}

/// The OTLP transports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// gRPC, the `LogsService/Export` call.
    #[default]
    #[serde(rename = "grpc")]
    Grpc,
    /// HTTP `POST` of a protobuf `ExportLogsServiceRequest`.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// HTTP `POST` of the request as OTLP JSON.
    #[serde(rename = "http/json")]
    HttpJson,
}

/// Compression of export requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtlpCompression {
    /// As they are (the specification's default).
    #[default]
    None,
    /// gzip (`grpc-encoding` or `Content-Encoding: gzip`).
    Gzip,
    /// zstd.
    Zstd,
}

fn redacted_optional<S: serde::Serializer>(
    uri: &Option<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match uri {
        Some(uri) => redacted_uri(uri, serializer),
        None => serializer.serialize_none(),
    }
}

impl OtlpSinkConfig {
    /// A sink of `protocol` to `endpoint` with every other setting at its default (for
    /// `replay --to otlp://...`).
    pub fn new(endpoint: Option<String>, protocol: Protocol) -> Self {
        OtlpSinkConfig {
            endpoint,
            protocol,
            headers: BTreeMap::new(),
            compression: OtlpCompression::default(),
            tls: TlsConfig::default(),
            timeout_ms: default_timeout_ms(),
            in_flight: default_in_flight(),
            body_field: default_body_field(),
            severity_field: default_severity_field(),
            resource: BTreeMap::new(),
        }
    }

    /// The URL requests go to: the endpoint, or the default of the protocol; with `/v1/logs`
    /// for HTTP when the endpoint has no path.
    pub fn url(&self) -> Result<Url, String> {
        let (default, http) = match self.protocol {
            Protocol::Grpc => ("http://localhost:4317", false),
            Protocol::HttpProtobuf | Protocol::HttpJson => ("http://localhost:4318", true),
        };
        let mut url = parse_http_uri(self.endpoint.as_deref().unwrap_or(default))?;
        if http && matches!(url.path(), "" | "/") {
            url.set_path("/v1/logs");
        }
        Ok(url)
    }

    /// Checks the values; `key` is the sink's.
    pub fn check(&self, key: &str) -> Result<(), ConfigError> {
        self.url()
            .map_err(|e| ConfigError::invalid(format!("{key}.endpoint"), e))?;
        check_headers(key, &self.headers)?;
        check_tls(key, &self.tls)?;
        if self.timeout_ms == 0 {
            return Err(ConfigError::invalid(
                format!("{key}.timeout_ms"),
                "must be at least 1",
            ));
        }
        if !(1..=MAX_IN_FLIGHT).contains(&self.in_flight) {
            return Err(ConfigError::invalid(
                format!("{key}.in_flight"),
                format!("must be between 1 and {MAX_IN_FLIGHT}"),
            ));
        }
        for (field, name) in [
            (&self.body_field, "body_field"),
            (&self.severity_field, "severity_field"),
        ] {
            if field.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}.{name}"),
                    "a field name is needed",
                ));
            }
        }
        if let Some(name) = self.resource.keys().find(|k| k.is_empty()) {
            return Err(ConfigError::invalid(
                format!("{key}.resource.{name}"),
                "attribute names are not empty",
            ));
        }
        Ok(())
    }

    /// Makes relative file paths (TLS files, secret files) absolute from `base_dir`.
    pub fn resolve_paths(&mut self, base_dir: &Path) {
        resolve_tls_paths(&mut self.tls, base_dir);
        for secret in self.headers.values_mut() {
            secret.resolve_path(base_dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<OtlpSinkConfig, ConfigError> {
        let value: serde_norway::Value = serde_norway::from_str(yaml).unwrap();
        let config: OtlpSinkConfig = crate::config::errors::from_value("sinks.o", value)?;
        config.check("sinks.o")?;
        Ok(config)
    }

    #[test]
    fn urls_table() {
        // (settings, the URL requests go to)
        let cases = [
            ("{}", "http://localhost:4317/"),
            ("protocol: http/protobuf", "http://localhost:4318/v1/logs"),
            ("protocol: http/json", "http://localhost:4318/v1/logs"),
            (
                "{ protocol: http/protobuf, endpoint: 'https://c:443' }",
                "https://c/v1/logs",
            ),
            (
                "{ protocol: http/protobuf, endpoint: 'http://c:4318/otlp/v1/logs' }",
                "http://c:4318/otlp/v1/logs",
            ),
            (
                "endpoint: 'http://127.0.0.1:14317'",
                "http://127.0.0.1:14317/",
            ),
        ];
        for (yaml, want) in cases {
            let config = parse(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
            assert_eq!(config.url().unwrap().as_str(), want, "{yaml}");
        }
    }

    #[test]
    fn defaults() {
        let config = parse("{}").unwrap();
        assert_eq!(config.protocol, Protocol::Grpc);
        assert_eq!(config.compression, OtlpCompression::None);
        assert_eq!(config.timeout_ms, 10_000);
        assert_eq!(config.in_flight, 4);
        assert_eq!(config.body_field, "message");
        assert_eq!(config.severity_field, "level");
    }

    #[test]
    fn refusals_table() {
        // (settings, the key the error names)
        let cases = [
            ("endpoint: 'grpc://c:4317'", "sinks.o.endpoint"),
            ("protocol: http", "sinks.o.protocol"),
            ("compression: lz4", "sinks.o.compression"),
            ("timeout_ms: 0", "sinks.o.timeout_ms"),
            ("in_flight: 0", "sinks.o.in_flight"),
            ("body_field: ''", "sinks.o.body_field"),
            ("headers: { 'bad header': x }", "sinks.o.headers.bad header"),
            ("tls: { cert_file: /c.pem }", "sinks.o.tls"),
            ("endpont: 'http://c'", "sinks.o"),
        ];
        for (yaml, key) in cases {
            let error = parse(yaml)
                .err()
                .unwrap_or_else(|| panic!("{yaml}: accepted"));
            assert!(error.to_string().contains(key), "{yaml}: {error}");
        }
    }
}
