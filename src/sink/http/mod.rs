//! `type: http`: send batches to an HTTP endpoint, as NDJSON, as Elasticsearch / OpenSearch
//! `_bulk` requests, or as Loki pushes.
//!
//! One request per batch. Connection errors, timeouts, 408, 429 and 5xx are retriable (the
//! pipeline backs off, at least as long as a `Retry-After` asks); any other status is permanent
//! and the batch is dead-lettered, with the start of the response body in the log line. The
//! bulk encoding reads the status of every item: only the items that failed retriably are sent
//! again, and rejected ones are dead-lettered alone ([`SinkError::Partial`]). With
//! `in_flight: N`, N instances share one connection pool and the pipeline acks their batches in
//! order.

pub mod client;
mod config;
mod elasticsearch;
mod loki;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::{Client, StatusCode, Url};

use crate::sink::secret::redact_uri;
use client::{ERROR_BODY_PREVIEW, error_chain, gzip, read_body};
pub use config::{
    Auth, BulkAction, ElasticsearchConfig, HealthcheckConfig, HttpCompression, HttpEncoding,
    HttpSinkConfig, LokiConfig, LokiLine, MAX_IN_FLIGHT, Method, TlsConfig, check_headers,
    check_tls, parse_http_uri, resolve_tls_paths,
};

use super::encoding::{Encoding, encode_batch};
use super::template::EventClock;
use super::{BoxFuture, BuildError, Healthcheck, Sink, SinkError};
use crate::event::Batch;

/// How much of a successful bulk response is read: it lists every item.
const MAX_BULK_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// How much of another successful response is read: nothing in it is needed.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

const NDJSON: &str = "application/x-ndjson";
const JSON: &str = "application/json";

/// Credentials, read when the sink is built.
enum Credentials {
    Basic { user: String, password: String },
    Bearer(String),
}

/// What the body of a request is made of.
enum Format {
    Ndjson,
    Elasticsearch(elasticsearch::Bulk),
    Loki(loki::Push),
}

/// Everything the instances of one sink share: the client (and its connection pool), where
/// requests go and how bodies are made.
struct Endpoint {
    name: String,
    client: Client,
    url: Url,
    /// The URI as logs show it (no password).
    shown_uri: String,
    method: reqwest::Method,
    compression: HttpCompression,
    credentials: Option<Credentials>,
    healthcheck: Option<Url>,
    format: Format,
    in_flight: usize,
}

/// A response with a success status.
struct Reply {
    body: Bytes,
}

impl Endpoint {
    /// Sends `body`; a response that is not a success is an error, classified for retrying.
    /// At most `limit` bytes of a successful response's body are read.
    async fn send(
        &self,
        body: Vec<u8>,
        content_type: &'static str,
        limit: usize,
    ) -> Result<Reply, SinkError> {
        let body = match self.compression {
            HttpCompression::None => body,
            HttpCompression::Gzip => gzip(body).await.map_err(|e| {
                SinkError::Retriable(format!("{}: gzip: {e}", self.context("compress")))
            })?,
        };
        let mut request = self
            .client
            .request(self.method.clone(), self.url.clone())
            .header(CONTENT_TYPE, content_type);
        if self.compression == HttpCompression::Gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        let response = self
            .authorize(request)
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        self.check_response(response, limit).await
    }

    /// Sends the healthcheck request, when there is one.
    async fn healthcheck(&self) -> Result<Healthcheck, SinkError> {
        let Some(url) = &self.healthcheck else {
            return Ok(Healthcheck::NotChecked);
        };
        let response = self
            .authorize(self.client.get(url.clone()))
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        self.check_response(response, ERROR_BODY_PREVIEW)
            .await
            .map(|_| Healthcheck::Passed)
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.credentials {
            Some(Credentials::Basic { user, password }) => request.basic_auth(user, Some(password)),
            Some(Credentials::Bearer(token)) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Reads the body (at most `limit` bytes of a success, a preview of a failure) and turns a
    /// status that is not a success into an error.
    async fn check_response(
        &self,
        response: reqwest::Response,
        limit: usize,
    ) -> Result<Reply, SinkError> {
        let status = response.status();
        let retry_after = client::retry_after(&response);
        let limit = if status.is_success() {
            limit
        } else {
            ERROR_BODY_PREVIEW
        };
        let body = read_body(response, limit).await;
        match status_error(status, retry_after, body.as_deref().unwrap_or_default()) {
            Some(error) => Err(self.with_context(error)),
            None => body
                .map(|body| Reply { body })
                .map_err(|e| self.transport_error(&e)),
        }
    }

    fn context(&self, what: &str) -> String {
        format!("http sink `{}`: {what} {}", self.name, self.shown_uri)
    }

    fn with_context(&self, error: SinkError) -> SinkError {
        error.prefixed(&self.context(self.method.as_str()))
    }

    /// A failure to get a response: retriable, unless the request could not even be built.
    fn transport_error(&self, error: &reqwest::Error) -> SinkError {
        let message = format!(
            "{}: {}",
            self.context(self.method.as_str()),
            error_chain(error)
        );
        if error.is_builder() {
            SinkError::Permanent(message)
        } else {
            SinkError::Retriable(message)
        }
    }
}

/// The error a response status means, if any: 408, 429 and 5xx are worth retrying (after
/// `retry_after` when the server said so), anything else that is not a success is permanent.
fn status_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Option<SinkError> {
    if status.is_success() {
        return None;
    }
    let message = format!("HTTP {status}: {}", client::preview(body));
    let retriable = status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error();
    Some(match (retriable, retry_after) {
        (true, Some(after)) => SinkError::RetriableAfter { message, after },
        (true, None) => SinkError::Retriable(message),
        (false, _) => SinkError::Permanent(message),
    })
}

/// Sends batches to an HTTP endpoint. Each instance delivers one batch at a time; the state
/// it keeps is that batch's bulk progress.
pub struct HttpSink {
    endpoint: Arc<Endpoint>,
    clock: EventClock,
    bulk: elasticsearch::Progress,
}

impl HttpSink {
    /// Builds the client and reads the secrets (it connects lazily: an unreachable endpoint is
    /// not an error here). Errors name the key at fault.
    pub fn new(name: &str, config: &HttpSinkConfig) -> Result<Self, BuildError> {
        let error = |key: &str, message: String| BuildError {
            sink: name.to_owned(),
            message: format!("{key}: {message}"),
        };
        let url = config::parse_http_uri(&config.uri).map_err(|e| error("uri", e))?;
        let headers =
            client::resolve_headers(&config.headers).map_err(|e| error(&e.key, e.message))?;
        let credentials = match &config.auth {
            Some(Auth::Basic { user, password }) => Some(Credentials::Basic {
                user: user.clone(),
                password: password
                    .resolve()
                    .map_err(|e| error("auth.password", e.to_string()))?,
            }),
            Some(Auth::Bearer { token }) => Some(Credentials::Bearer(
                token
                    .resolve()
                    .map_err(|e| error("auth.token", e.to_string()))?,
            )),
            None => None,
        };
        let client = client::build_client(
            headers,
            &config.tls,
            Duration::from_millis(config.timeout_ms),
            config.in_flight,
        )
        .map_err(|e| error(&e.key, e.message))?;
        let format = match config.encoding {
            HttpEncoding::Ndjson => Format::Ndjson,
            HttpEncoding::Elasticsearch => Format::Elasticsearch(
                elasticsearch::Bulk::new(&config.elasticsearch())
                    .map_err(|e| error("elasticsearch.index", e.to_string()))?,
            ),
            HttpEncoding::Loki => Format::Loki(
                loki::Push::new(&config.loki()).map_err(|e| error("loki.labels", e.to_string()))?,
            ),
        };
        let healthcheck = healthcheck_url(config, &url).map_err(|e| error("healthcheck.uri", e))?;
        let method = match config.method {
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
        };
        let endpoint = Endpoint {
            name: name.to_owned(),
            client,
            shown_uri: redact_uri(url.as_str()),
            url,
            method,
            compression: config.compression,
            credentials,
            healthcheck,
            format,
            in_flight: config.in_flight,
        };
        Ok(HttpSink::instance(Arc::new(endpoint)))
    }

    fn instance(endpoint: Arc<Endpoint>) -> Self {
        HttpSink {
            endpoint,
            clock: EventClock::default(),
            bulk: elasticsearch::Progress::default(),
        }
    }
}

/// What the healthcheck requests: the configured URI, else the back-end's readiness endpoint
/// on the sink's host; nothing when disabled or for plain NDJSON.
fn healthcheck_url(config: &HttpSinkConfig, url: &Url) -> Result<Option<Url>, String> {
    if !config.healthcheck.enabled {
        return Ok(None);
    }
    if let Some(uri) = &config.healthcheck.uri {
        return config::parse_http_uri(uri).map(Some);
    }
    let path = match config.encoding {
        HttpEncoding::Ndjson => return Ok(None),
        HttpEncoding::Elasticsearch => "/_cluster/health",
        HttpEncoding::Loki => "/ready",
    };
    url.join(path).map(Some).map_err(|e| e.to_string())
}

impl Sink for HttpSink {
    fn deliver<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<u64, SinkError>> {
        Box::pin(async move {
            let endpoint = &*self.endpoint;
            match &endpoint.format {
                Format::Ndjson => {
                    let mut body = Vec::with_capacity(batch.bytes + batch.events * 160);
                    encode_batch(Encoding::Json, batch, &mut body);
                    let bytes = body.len() as u64;
                    endpoint.send(body, NDJSON, MAX_RESPONSE_BYTES).await?;
                    Ok(bytes)
                }
                Format::Loki(push) => {
                    let body = push.encode(batch, &mut self.clock);
                    let bytes = body.len() as u64;
                    endpoint.send(body, JSON, MAX_RESPONSE_BYTES).await?;
                    Ok(bytes)
                }
                Format::Elasticsearch(bulk) => {
                    self.bulk
                        .deliver(endpoint, bulk, batch, &mut self.clock)
                        .await
                }
            }
        })
    }

    fn healthcheck(&mut self) -> BoxFuture<'_, Result<Healthcheck, SinkError>> {
        Box::pin(async move { self.endpoint.healthcheck().await })
    }

    fn replicas(&self) -> Vec<Box<dyn Sink>> {
        (1..self.endpoint.in_flight)
            .map(|_| Box::new(HttpSink::instance(Arc::clone(&self.endpoint))) as Box<dyn Sink>)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::secret::{Secret, SecretRef};

    #[test]
    fn statuses_table() {
        // (status, Retry-After, expected: None ok, "R" retriable, "A" retriable after, "P" permanent)
        let cases = [
            (200, None, None),
            (204, None, None),
            (301, None, Some("P")),
            (400, None, Some("P")),
            (401, None, Some("P")),
            (404, None, Some("P")),
            (413, None, Some("P")),
            (408, None, Some("R")),
            (429, None, Some("R")),
            (429, Some(3), Some("A")),
            (500, None, Some("R")),
            (503, Some(1), Some("A")),
            (400, Some(1), Some("P")),
        ];
        for (code, after, want) in cases {
            let status = StatusCode::from_u16(code).unwrap();
            let error = status_error(status, after.map(Duration::from_secs), b"body\n text");
            let got = error.as_ref().map(|e| match e {
                SinkError::Retriable(_) => "R",
                SinkError::RetriableAfter { after: a, .. } => {
                    assert_eq!(Some(a.as_secs()), after);
                    "A"
                }
                SinkError::Permanent(_) => "P",
                SinkError::Partial { .. } => "partial",
            });
            assert_eq!(got, want, "{code}");
            if let Some(error) = error {
                assert!(error.to_string().ends_with(": body text"), "{error}");
            }
        }
    }

    #[test]
    fn error_bodies_are_cut_in_the_message() {
        let body = "x".repeat(10_000);
        let error = status_error(StatusCode::BAD_REQUEST, None, body.as_bytes()).unwrap();
        assert!(
            error.to_string().len() < ERROR_BODY_PREVIEW + 100,
            "{error}"
        );
    }

    #[test]
    fn healthcheck_urls_table() {
        // (encoding, enabled, configured uri, expected)
        let cases = [
            (HttpEncoding::Ndjson, true, None, None),
            (
                HttpEncoding::Ndjson,
                true,
                Some("http://h:1/health"),
                Some("http://h:1/health"),
            ),
            (
                HttpEncoding::Elasticsearch,
                true,
                None,
                Some("http://es:9200/_cluster/health"),
            ),
            (HttpEncoding::Loki, true, None, Some("http://es:9200/ready")),
            (HttpEncoding::Loki, false, None, None),
        ];
        for (encoding, enabled, uri, want) in cases {
            let mut config = HttpSinkConfig::from_uri("http://es:9200/some/path").unwrap();
            config.encoding = encoding;
            config.healthcheck = HealthcheckConfig {
                enabled,
                uri: uri.map(str::to_owned),
            };
            let url = Url::parse(&config.uri).unwrap();
            let got = healthcheck_url(&config, &url).unwrap();
            assert_eq!(got.as_ref().map(Url::as_str), want, "{encoding:?} {uri:?}");
        }
    }

    #[test]
    fn build_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "not a certificate").unwrap();
        let base = HttpSinkConfig::from_uri("https://h/").unwrap();
        let missing_token = HttpSinkConfig {
            auth: Some(Auth::Bearer {
                token: Secret::From(SecretRef {
                    env: None,
                    file: Some(dir.path().join("missing-token")),
                }),
            }),
            ..base.clone()
        };
        let unset_header = HttpSinkConfig {
            headers: [(
                "X-Key".to_owned(),
                Secret::From(SecretRef {
                    env: Some("LOG_AGENT_TEST_SURELY_UNSET".into()),
                    file: None,
                }),
            )]
            .into(),
            ..base.clone()
        };
        let bad_ca = HttpSinkConfig {
            tls: TlsConfig {
                ca_file: Some(not_pem),
                ..TlsConfig::default()
            },
            ..base.clone()
        };
        let cases = [
            (missing_token, "auth.token: "),
            (unset_header, "headers.X-Key: "),
            (bad_ca, "tls.ca_file: "),
        ];
        for (config, prefix) in cases {
            match HttpSink::new("h", &config) {
                Err(e) => assert!(e.message.starts_with(prefix), "{prefix}: {e}"),
                Ok(_) => panic!("{prefix}: built"),
            }
        }
        assert!(HttpSink::new("h", &base).is_ok());
    }
}
