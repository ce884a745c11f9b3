//! Settings of a `type: http` sink and their checks.
//!
//! Secrets (header values, the basic-auth password, the bearer token) are given as a value, an
//! environment variable or a file ([`crate::sink::secret`]): read when the sink is built, never
//! shown in the printed configuration (`log-agent validate`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::config::errors::ConfigError;
use crate::config::interpolate::is_identifier;
use crate::sink::secret::{
    Secret, redact_uri, redacted_headers, redacted_optional_uri, redacted_uri,
};
use crate::sink::template::Template;

/// Settings of a `type: http` sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// Where requests go, `http://` or `https://`, used as it is (for Elasticsearch the
    /// `_bulk` endpoint, for Loki `/loki/api/v1/push`). Its user info and query values are
    /// never printed.
    #[serde(serialize_with = "redacted_uri")]
    pub uri: String,
    /// The request method.
    #[serde(default)]
    pub method: Method,
    /// How a batch becomes a request body.
    #[serde(default)]
    pub encoding: HttpEncoding,
    /// Settings of `encoding: elasticsearch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elasticsearch: Option<ElasticsearchConfig>,
    /// Settings of `encoding: loki`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loki: Option<LokiConfig>,
    /// Extra request headers: name -> value, `{ env: VAR }` or `{ file: PATH }`. Plain values
    /// are not printed, but for a few harmless headers (`Content-Type`, `X-Scope-OrgID`...).
    #[serde(default, serialize_with = "redacted_headers")]
    pub headers: BTreeMap<String, Secret>,
    /// Basic or bearer authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// TLS: custom CA, client certificate.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Time allowed for a whole request, connecting included.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Compression of request bodies.
    #[serde(default)]
    pub compression: HttpCompression,
    /// Requests (batches) in flight at once; batches are still acked in order.
    #[serde(default = "default_in_flight")]
    pub in_flight: usize,
    /// The readiness request sent when the sink starts.
    #[serde(default)]
    pub healthcheck: HealthcheckConfig,
}

fn default_timeout_ms() -> u64 {
    30_000
}

fn default_in_flight() -> usize {
    1
}

/// Most requests in flight per sink: each holds a batch in memory.
pub const MAX_IN_FLIGHT: usize = 64;

/// Request methods the sink can use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// `POST` (the default).
    #[default]
    Post,
    /// `PUT`.
    Put,
}

/// How a batch becomes a request body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpEncoding {
    /// One JSON event per line (`application/x-ndjson`).
    #[default]
    Ndjson,
    /// The Elasticsearch / OpenSearch `_bulk` API.
    Elasticsearch,
    /// The Loki push API (JSON).
    Loki,
}

/// Compression of request bodies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpCompression {
    /// Bodies as they are.
    #[default]
    None,
    /// gzip, with `Content-Encoding: gzip`.
    Gzip,
}

/// The bulk action of each event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    /// `create`: what data streams need; a retried event already there is a conflict (409),
    /// taken as delivered.
    #[default]
    Create,
    /// `index`: a retried event overwrites itself.
    Index,
}

/// Settings of `encoding: elasticsearch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Index of each event: `{{ field }}` references and strftime `%` parts of the event time.
    #[serde(default = "default_index")]
    pub index: String,
    /// The bulk action.
    #[serde(default)]
    pub action: BulkAction,
}

impl Default for ElasticsearchConfig {
    fn default() -> Self {
        ElasticsearchConfig {
            index: default_index(),
            action: BulkAction::default(),
        }
    }
}

fn default_index() -> String {
    "logs-{{ source }}-%Y.%m.%d".into()
}

/// What a Loki entry's line is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LokiLine {
    /// The event as JSON.
    #[default]
    Json,
    /// The message only.
    Text,
}

/// Settings of `encoding: loki`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LokiConfig {
    /// Stream labels: label name -> template (`{{ source }}`, `{{ file }}`, a parsed field...).
    #[serde(default = "default_labels")]
    pub labels: BTreeMap<String, String>,
    /// What each entry's line is.
    #[serde(default)]
    pub line: LokiLine,
}

impl Default for LokiConfig {
    fn default() -> Self {
        LokiConfig {
            labels: default_labels(),
            line: LokiLine::default(),
        }
    }
}

fn default_labels() -> BTreeMap<String, String> {
    BTreeMap::from([("source".to_owned(), "{{ source }}".to_owned())])
}

/// Authentication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "strategy", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// `Authorization: Basic`.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: Secret,
    },
    /// `Authorization: Bearer`.
    Bearer {
        /// The token.
        token: Secret,
    },
}

/// TLS settings; without them the system's CA certificates are trusted.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of CA certificates trusted besides the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate (chain), for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

/// The readiness request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthcheckConfig {
    /// Whether to send it.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// What to `GET`; by default `/_cluster/health` (Elasticsearch) or `/ready` (Loki) on the
    /// sink's host, and nothing for `ndjson`. Its user info and query values are not printed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "redacted_optional_uri"
    )]
    pub uri: Option<String>,
}

impl Default for HealthcheckConfig {
    fn default() -> Self {
        HealthcheckConfig {
            enabled: true,
            uri: None,
        }
    }
}

fn default_true() -> bool {
    true
}

/// Parses an `http://` or `https://` URI with a host.
pub fn parse_http_uri(uri: &str) -> Result<Url, String> {
    let url = Url::parse(uri).map_err(|e| format!("`{}`: {e}", redact_uri(uri)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "`{}`: expected an http:// or https:// URI",
            redact_uri(uri)
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{}`: no host", redact_uri(uri)));
    }
    Ok(url)
}

/// Checks `headers:` of the sink at `key`: names and plain values valid in HTTP, secrets
/// given one way.
pub fn check_headers(key: &str, headers: &BTreeMap<String, Secret>) -> Result<(), ConfigError> {
    for (name, value) in headers {
        let header_key = format!("{key}.headers.{name}");
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConfigError::invalid(&header_key, "not a valid header name"))?;
        value.check(&header_key)?;
        if let Secret::Value(plain) = value {
            HeaderValue::from_str(plain)
                .map_err(|_| ConfigError::invalid(&header_key, "not a valid header value"))?;
        }
    }
    Ok(())
}

/// Checks `tls:` of the sink at `key`.
pub fn check_tls(key: &str, tls: &TlsConfig) -> Result<(), ConfigError> {
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        return Err(ConfigError::invalid(
            format!("{key}.tls"),
            "`cert_file` and `key_file` go together",
        ));
    }
    Ok(())
}

/// Makes the files of `tls` absolute from `base_dir`.
pub fn resolve_tls_paths(tls: &mut TlsConfig, base_dir: &Path) {
    for path in [&mut tls.ca_file, &mut tls.cert_file, &mut tls.key_file]
        .into_iter()
        .flatten()
    {
        *path = base_dir.join(&*path);
    }
}

impl HttpSinkConfig {
    /// An NDJSON `POST` sink to `uri` with every other setting at its default (for `replay
    /// --to http://...`).
    pub fn from_uri(uri: &str) -> Result<Self, ConfigError> {
        let config = HttpSinkConfig {
            uri: uri.to_owned(),
            method: Method::default(),
            encoding: HttpEncoding::default(),
            elasticsearch: None,
            loki: None,
            headers: BTreeMap::new(),
            auth: None,
            tls: TlsConfig::default(),
            timeout_ms: default_timeout_ms(),
            compression: HttpCompression::default(),
            in_flight: default_in_flight(),
            healthcheck: HealthcheckConfig::default(),
        };
        config.check("--to")?;
        Ok(config)
    }

    /// The Elasticsearch settings, defaulted when the section is absent.
    pub fn elasticsearch(&self) -> ElasticsearchConfig {
        self.elasticsearch.clone().unwrap_or_default()
    }

    /// The Loki settings, defaulted when the section is absent.
    pub fn loki(&self) -> LokiConfig {
        self.loki.clone().unwrap_or_default()
    }

    /// Checks the values; `key` is the sink's.
    pub fn check(&self, key: &str) -> Result<(), ConfigError> {
        parse_http_uri(&self.uri).map_err(|e| ConfigError::invalid(format!("{key}.uri"), e))?;
        if self.elasticsearch.is_some() && self.encoding != HttpEncoding::Elasticsearch {
            return Err(ConfigError::invalid(
                format!("{key}.elasticsearch"),
                "only with `encoding: elasticsearch`",
            ));
        }
        if self.loki.is_some() && self.encoding != HttpEncoding::Loki {
            return Err(ConfigError::invalid(
                format!("{key}.loki"),
                "only with `encoding: loki`",
            ));
        }
        Template::parse_dated(&self.elasticsearch().index).map_err(|e| {
            ConfigError::invalid(format!("{key}.elasticsearch.index"), e.to_string())
        })?;
        let loki = self.loki();
        if loki.labels.is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.loki.labels"),
                "at least one label is needed",
            ));
        }
        for (name, template) in &loki.labels {
            let label_key = format!("{key}.loki.labels.{name}");
            if !is_identifier(name) {
                return Err(ConfigError::invalid(
                    label_key,
                    "label names are letters, digits and `_`, not starting with a digit",
                ));
            }
            Template::parse(template)
                .map_err(|e| ConfigError::invalid(label_key, e.to_string()))?;
        }
        check_headers(key, &self.headers)?;
        match &self.auth {
            Some(Auth::Basic { password, .. }) => {
                password.check(&format!("{key}.auth.password"))?
            }
            Some(Auth::Bearer { token }) => token.check(&format!("{key}.auth.token"))?,
            None => {}
        }
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
        if let Some(uri) = &self.healthcheck.uri {
            parse_http_uri(uri)
                .map_err(|e| ConfigError::invalid(format!("{key}.healthcheck.uri"), e))?;
        }
        Ok(())
    }

    /// Makes relative file paths (TLS files, secret files) absolute from `base_dir`.
    pub fn resolve_paths(&mut self, base_dir: &Path) {
        resolve_tls_paths(&mut self.tls, base_dir);
        for secret in self.headers.values_mut() {
            secret.resolve_path(base_dir);
        }
        match &mut self.auth {
            Some(Auth::Basic { password, .. }) => password.resolve_path(base_dir),
            Some(Auth::Bearer { token }) => token.resolve_path(base_dir),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::secret::{REDACTED, SecretRef};

    fn parse(yaml: &str) -> Result<HttpSinkConfig, ConfigError> {
        let value: serde_norway::Value = serde_norway::from_str(yaml).unwrap();
        let config: HttpSinkConfig = crate::config::errors::from_value("sinks.h", value)?;
        config.check("sinks.h")?;
        Ok(config)
    }

    #[test]
    fn defaults_and_sections() {
        let config = parse("uri: http://es:9200/_bulk\nencoding: elasticsearch\n").unwrap();
        assert_eq!(config.method, Method::Post);
        assert_eq!(config.timeout_ms, 30_000);
        assert_eq!(config.in_flight, 1);
        assert_eq!(config.elasticsearch().index, "logs-{{ source }}-%Y.%m.%d");
        assert_eq!(config.elasticsearch().action, BulkAction::Create);
        let loki = parse("uri: http://l/loki/api/v1/push\nencoding: loki\nloki: { line: text }\n")
            .unwrap()
            .loki();
        assert_eq!(loki.line, LokiLine::Text);
        assert_eq!(loki.labels, default_labels());
    }

    #[test]
    fn errors_name_the_key_table() {
        // (yaml, key at fault)
        let cases = [
            ("uri: ftp://x/\n", "sinks.h.uri"),
            ("uri: not a uri\n", "sinks.h.uri"),
            ("uri: http://x/\nmethod: GET\n", "sinks.h.method"),
            ("uri: http://x/\nencoding: xml\n", "sinks.h.encoding"),
            ("uri: http://x/\ncolour: red\n", "sinks.h.colour"),
            (
                "uri: http://x/\nelasticsearch: {}\n",
                "sinks.h.elasticsearch",
            ),
            (
                "uri: http://x/\nencoding: elasticsearch\nloki: {}\n",
                "sinks.h.loki",
            ),
            (
                "uri: http://x/\nencoding: elasticsearch\nelasticsearch: { index: \"l-%Q\" }\n",
                "sinks.h.elasticsearch.index",
            ),
            (
                "uri: http://x/\nencoding: loki\nloki: { labels: { 9bad: x } }\n",
                "sinks.h.loki.labels.9bad",
            ),
            (
                "uri: http://x/\nencoding: loki\nloki: { labels: {} }\n",
                "sinks.h.loki.labels",
            ),
            (
                "uri: http://x/\nencoding: loki\nloki: { labels: { app: \"{{ source\" } }\n",
                "sinks.h.loki.labels.app",
            ),
            (
                "uri: http://x/\nheaders: { \"bad name\": x }\n",
                "sinks.h.headers.bad name",
            ),
            (
                "uri: http://x/\nheaders: { X-Token: { env: A, file: /b } }\n",
                "sinks.h.headers.X-Token",
            ),
            (
                "uri: http://x/\nauth: { strategy: bearer, token: {} }\n",
                "sinks.h.auth.token",
            ),
            (
                "uri: http://x/\nauth: { strategy: digest }\n",
                "sinks.h.auth.strategy",
            ),
            (
                "uri: http://x/\ntls: { cert_file: /c.pem }\n",
                "sinks.h.tls",
            ),
            ("uri: http://x/\ntimeout_ms: 0\n", "sinks.h.timeout_ms"),
            ("uri: http://x/\nin_flight: 0\n", "sinks.h.in_flight"),
            ("uri: http://x/\nin_flight: 1000\n", "sinks.h.in_flight"),
            ("uri: http://x/\ncompression: zstd\n", "sinks.h.compression"),
            (
                "uri: http://x/\nhealthcheck: { uri: \"/ready\" }\n",
                "sinks.h.healthcheck.uri",
            ),
        ];
        for (yaml, want) in cases {
            match parse(yaml) {
                Err(ConfigError::Invalid { key, message }) => {
                    assert_eq!(key, want, "{yaml}: {message}")
                }
                other => panic!("{yaml}: expected an error about {want}, got {other:?}"),
            }
        }
    }

    #[test]
    fn secrets_are_redacted_when_printed() {
        let config = parse(
            "uri: https://me:hunter2@es:9200/_bulk
headers:
  X-Scope-OrgID: tenant-1
  X-Api-Key: sekrit-1
  X-From-Env: { env: SOME_VAR }
auth: { strategy: basic, user: elastic, password: sekrit-2 }
",
        )
        .unwrap();
        let printed = serde_norway::to_string(&config).unwrap();
        for secret in ["hunter2", "sekrit-1", "sekrit-2"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        for shown in [
            "tenant-1",
            "SOME_VAR",
            "elastic",
            REDACTED,
            "redacted:redacted@es",
        ] {
            assert!(printed.contains(shown), "{shown} not in {printed}");
        }
        let bearer = parse("uri: http://x/\nauth: { strategy: bearer, token: t0k3n }\n").unwrap();
        let printed = serde_norway::to_string(&bearer).unwrap();
        assert!(!printed.contains("t0k3n"), "{printed}");
    }

    #[test]
    fn secrets_resolve_from_values_env_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        let env = |name: &str| (name == "TOKEN").then(|| "from-env".to_owned());
        let cases = [
            (Secret::Value("v".into()), Some("v")),
            (
                Secret::From(SecretRef {
                    env: Some("TOKEN".into()),
                    file: None,
                }),
                Some("from-env"),
            ),
            (
                Secret::From(SecretRef {
                    env: None,
                    file: Some(file.clone()),
                }),
                Some("from-file"),
            ),
            (
                Secret::From(SecretRef {
                    env: Some("UNSET".into()),
                    file: None,
                }),
                None,
            ),
            (
                Secret::From(SecretRef {
                    env: None,
                    file: Some(dir.path().join("missing")),
                }),
                None,
            ),
        ];
        for (secret, want) in cases {
            assert_eq!(secret.resolve_with(env).ok().as_deref(), want, "{secret:?}");
        }
    }

    #[test]
    fn from_uri_is_an_ndjson_post_sink() {
        let config = HttpSinkConfig::from_uri("https://collector:8080/ingest").unwrap();
        assert_eq!(config.encoding, HttpEncoding::Ndjson);
        assert_eq!(config.method, Method::Post);
        assert_eq!(config.uri, "https://collector:8080/ingest");
        for bad in ["collector:8080", "file:///tmp/x", "http://"] {
            assert!(HttpSinkConfig::from_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn relative_files_are_taken_from_the_base_dir() {
        let mut config = parse(
            "uri: http://x/\ntls: { ca_file: ca.pem }\nauth: { strategy: bearer, token: { file: t } }\n",
        )
        .unwrap();
        config.resolve_paths(Path::new("/base"));
        assert_eq!(config.tls.ca_file, Some(PathBuf::from("/base/ca.pem")));
        let Some(Auth::Bearer { token }) = &config.auth else {
            panic!("{:?}", config.auth)
        };
        assert_eq!(
            token,
            &Secret::From(SecretRef {
                env: None,
                file: Some(PathBuf::from("/base/t"))
            })
        );
    }
}
