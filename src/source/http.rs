//! `type: http`: events POSTed as NDJSON (one JSON object a line) or plain lines (one event a
//! line), gzip or zstd bodies too, journaled before the answer.
//!
//! Invariant: a request is answered 200 only once every record of it is in the journal (synced,
//! under `durability: fsync`); any other answer means none of it was taken, so a sender that
//! retries never ships a record twice for one success nor loses one it was told arrived.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use super::journal::{Journal, JournalConfig, JournalError};
use super::network::{MAX_RECORD_BYTES, NetworkError, Record};
use super::tls::{Peer, TlsConfig, serve};
use crate::event::StaticFields;
use crate::metrics::add;
use crate::parse::{FilterConfig, TimestampConfig};
use tokio_rustls::TlsAcceptor;

/// Settings of a `type: http` source.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSourceConfig {
    /// Where to listen; loopback by default: the pod's containers share it.
    #[serde(default = "default_address")]
    pub address: SocketAddr,
    /// The path POSTed to.
    #[serde(default = "default_path")]
    pub path: String,
    /// How a body holds events.
    #[serde(default)]
    pub body: BodyFormat,
    /// The largest body taken, after decompression.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// TLS, when set (else clear text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// The journal's size and durability.
    #[serde(default)]
    pub journal: JournalConfig,
    /// Keys added to every event of the source.
    #[serde(default, skip_serializing_if = "StaticFields::is_empty")]
    pub fields: StaticFields,
    /// Keeps or drops events by a regex on a field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterConfig>,
    /// Which field holds the event time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<TimestampConfig>,
}

fn default_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9880))
}

fn default_path() -> String {
    "/".to_owned()
}

fn default_max_request_bytes() -> usize {
    10 * 1024 * 1024
}

/// How a request body holds events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    /// One JSON object a line, whose keys become the event's (`peer` is added).
    #[default]
    Ndjson,
    /// One event a line: the line is its `message`.
    Lines,
}

/// Why a body was refused; nothing of it is taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// A line that is not a JSON object, under `body: ndjson`.
    #[error("line {line}: {reason}")]
    NotAnObject {
        /// Its number, from 1.
        line: usize,
        /// Why.
        reason: String,
    },
    /// Larger than `max_request_bytes` once decompressed, or one record past the limit.
    #[error("{0}")]
    TooLarge(String),
    /// A `Content-Encoding` that is not `gzip`, `zstd` or `identity`.
    #[error("unsupported Content-Encoding `{0}` (gzip, zstd and identity are)")]
    Encoding(String),
    /// The compressed body is damaged.
    #[error("cannot decompress the body: {0}")]
    Decompress(String),
    /// The body could not be read (the client went away, say).
    #[error("cannot read the body: {0}")]
    Read(String),
}

impl BodyError {
    /// The HTTP status that says it.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Encoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BodyError::NotAnObject { .. } | BodyError::Decompress(_) | BodyError::Read(_) => {
                StatusCode::BAD_REQUEST
            }
        }
    }
}

/// Reads a request's body, at most `max` bytes. Called once the request has its turn among
/// the [`MAX_CONCURRENT_REQUESTS`], so that no more bodies than that are held at once.
pub async fn read_body(body: Body, max: usize) -> Result<Bytes, BodyError> {
    axum::body::to_bytes(body, max).await.map_err(|e| {
        let error = e.into_inner();
        if error.is::<http_body_util::LengthLimitError>() {
            BodyError::TooLarge(format!("the body is more than {max} bytes"))
        } else {
            BodyError::Read(error.to_string())
        }
    })
}

/// Turns a (decompressed) body into journal records appended to `out`, at most `limit` bytes
/// of them (more is refused: the journal would not take them in one append); returns how
/// many.
pub fn records_of(
    body: &[u8],
    format: BodyFormat,
    peer: &str,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<usize, BodyError> {
    let mut count = 0;
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let start = out.len();
        match format {
            BodyFormat::Lines => {
                let mut record = Record::begin(out);
                record.text("message", line).text("peer", peer.as_bytes());
                record.end();
            }
            BodyFormat::Ndjson => {
                let mut object: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(line).map_err(|e| BodyError::NotAnObject {
                        line: i + 1,
                        reason: e.to_string(),
                    })?;
                object
                    .entry("peer")
                    .or_insert_with(|| serde_json::Value::String(peer.to_owned()));
                // Compact: one line whatever the sender's layout.
                serde_json::to_writer(&mut *out, &object).map_err(|e| BodyError::NotAnObject {
                    line: i + 1,
                    reason: e.to_string(),
                })?;
                out.push(b'\n');
            }
        }
        if out.len() - start > MAX_RECORD_BYTES {
            return Err(BodyError::TooLarge(format!(
                "line {}: a record is at most {MAX_RECORD_BYTES} bytes",
                i + 1
            )));
        }
        if out.len() > limit {
            return Err(BodyError::TooLarge(format!(
                "the request's records take more than {limit} bytes in the journal"
            )));
        }
        count += 1;
    }
    Ok(count)
}

/// Decompresses `body` as its `Content-Encoding` says, up to `max` bytes.
pub fn decode(body: &[u8], encoding: Option<&str>, max: usize) -> Result<Vec<u8>, BodyError> {
    let too_large = || BodyError::TooLarge(format!("the body is more than {max} bytes"));
    let encoding = encoding.map(|e| e.trim().to_ascii_lowercase());
    let mut out = Vec::new();
    let limit = max as u64 + 1;
    let read = match encoding.as_deref() {
        None | Some("") | Some("identity") => {
            if body.len() > max {
                return Err(too_large());
            }
            return Ok(body.to_vec());
        }
        Some("gzip") | Some("x-gzip") => flate2::read::MultiGzDecoder::new(body)
            .take(limit)
            .read_to_end(&mut out),
        Some("zstd") => match zstd::stream::read::Decoder::new(body) {
            Ok(decoder) => decoder.take(limit).read_to_end(&mut out),
            Err(e) => Err(e),
        },
        Some(other) => return Err(BodyError::Encoding(other.to_owned())),
    };
    read.map_err(|e| BodyError::Decompress(e.to_string()))?;
    if out.len() > max {
        return Err(too_large());
    }
    Ok(out)
}

/// Binds the source's address.
pub fn bind(config: &HttpSourceConfig) -> Result<std::net::TcpListener, NetworkError> {
    super::network::bind_tcp(config.address)
}

struct Ingest {
    journal: Journal,
    body: BodyFormat,
    max_request_bytes: usize,
    /// Requests worked on at once (each holds its body and records).
    requests: Semaphore,
}

/// Requests a listener works on at once; more wait (their connections are not read meanwhile).
pub const MAX_CONCURRENT_REQUESTS: usize = 64;

/// Serves the source on `listener` until `stopping` turns true.
pub fn spawn(
    listener: std::net::TcpListener,
    tls: Option<TlsAcceptor>,
    config: &HttpSourceConfig,
    journal: Journal,
    stopping: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let state = Arc::new(Ingest {
        journal,
        body: config.body,
        max_request_bytes: config.max_request_bytes,
        requests: Semaphore::new(MAX_CONCURRENT_REQUESTS),
    });
    let app = Router::new()
        .route(&config.path, axum::routing::post(ingest))
        .with_state(state);
    serve(listener, tls, app, "http source", stopping)
}

async fn ingest(
    State(state): State<Arc<Ingest>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let metrics = state.journal.metrics();
    let Ok(_turn) = state.requests.acquire().await else {
        return refusal(&JournalError::Closed);
    };
    let body = match read_body(body, state.max_request_bytes).await {
        Ok(body) => body,
        Err(e) => {
            add(&metrics.requests_rejected, 1);
            return (e.status(), format!("{e}\n")).into_response();
        }
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (format, max, limit) = (
        state.body,
        state.max_request_bytes,
        state.journal.max_append(),
    );
    // Decompressing and parsing are CPU work: off the threads that serve the connections.
    let taken = tokio::task::spawn_blocking(move || {
        let mut records = Vec::new();
        decode(&body, encoding.as_deref(), max)
            .and_then(|decoded| {
                records_of(&decoded, format, &peer.to_string(), &mut records, limit)
            })
            .map(|count| (count, records))
    })
    .await
    .unwrap_or_else(|e| Err(BodyError::Decompress(e.to_string())));
    let (count, records) = match taken {
        Ok(taken) => taken,
        Err(e) => {
            add(&metrics.requests_rejected, 1);
            return (e.status(), format!("{e}\n")).into_response();
        }
    };
    if count == 0 {
        return (StatusCode::OK, "{\"records\":0}\n").into_response();
    }
    match state.journal.append(records).await {
        Ok(()) => {
            add(&metrics.records_received, count as u64);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                format!("{{\"records\":{count}}}\n"),
            )
                .into_response()
        }
        Err(e) => {
            add(&metrics.requests_rejected, 1);
            refusal(&e)
        }
    }
}

/// The answer to a request the journal did not take (`otlp` answers the same).
pub fn refusal(e: &JournalError) -> Response {
    let (status, retry_after) = match e {
        JournalError::Full { .. } => (StatusCode::TOO_MANY_REQUESTS, Some("1")),
        JournalError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, None),
        JournalError::Closed | JournalError::Write(_) | JournalError::Open { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, Some("1"))
        }
    };
    let mut response = (status, format!("{e}\n")).into_response();
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from_static(seconds),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn records_of_table() {
        // (body, format, records written, or the error's text)
        let cases: &[(&str, BodyFormat, Result<&str, &str>)] = &[
            ("", BodyFormat::Ndjson, Ok("")),
            ("\n \r\n", BodyFormat::Lines, Ok("")),
            (
                "{\"a\":1}\n{\"b\":\"x\"}",
                BodyFormat::Ndjson,
                Ok("{\"a\":1,\"peer\":\"p\"}\n{\"b\":\"x\",\"peer\":\"p\"}\n"),
            ),
            (
                "{ \"peer\": \"own\" }\r\n",
                BodyFormat::Ndjson,
                Ok("{\"peer\":\"own\"}\n"),
            ),
            (
                "{\"a\":1}\n[1]\n",
                BodyFormat::Ndjson,
                Err("line 2: invalid type: sequence, expected a map at line 1 column 0"),
            ),
            (
                "not json",
                BodyFormat::Ndjson,
                Err("line 1: expected ident at line 1 column 2"),
            ),
            (
                "one\ntwo \"quoted\"\r\n",
                BodyFormat::Lines,
                Ok(
                    "{\"message\":\"one\",\"peer\":\"p\"}\n{\"message\":\"two \\\"quoted\\\"\",\"peer\":\"p\"}\n",
                ),
            ),
            (
                "tab\there",
                BodyFormat::Lines,
                Ok("{\"message\":\"tab\\there\",\"peer\":\"p\"}\n"),
            ),
        ];
        for (body, format, expected) in cases {
            let mut out = Vec::new();
            let got = records_of(body.as_bytes(), *format, "p", &mut out, usize::MAX);
            match expected {
                Ok(records) => {
                    assert!(got.is_ok(), "{body:?}: {got:?}");
                    assert_eq!(String::from_utf8_lossy(&out), *records, "{body:?}");
                    assert_eq!(got.ok(), Some(records.lines().count()));
                }
                Err(text) => {
                    assert_eq!(
                        got.map_err(|e| e.to_string()),
                        Err(text.to_string()),
                        "{body:?}"
                    )
                }
            }
        }
    }

    #[test]
    fn records_past_the_limit_refuse_the_request() {
        let mut out = Vec::new();
        let got = records_of(b"a\nb\n", BodyFormat::Lines, "p", &mut out, 40);
        assert!(matches!(got, Err(BodyError::TooLarge(_))), "{got:?}");
    }

    #[test]
    fn invalid_utf8_lines_are_replaced_not_refused() {
        let mut out = Vec::new();
        assert_eq!(
            records_of(b"a\xffb", BodyFormat::Lines, "p", &mut out, usize::MAX),
            Ok(1)
        );
        let record: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(record["message"], "a\u{fffd}b");
    }

    #[test]
    fn decode_table() {
        let text = b"{\"a\":1}\n".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&text).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&text[..], 1).unwrap();
        let max = text.len();
        assert_eq!(decode(&text, None, max).unwrap(), text);
        assert_eq!(decode(&gz, Some("gzip"), max).unwrap(), text);
        assert_eq!(decode(&zst, Some("ZSTD"), max).unwrap(), text);
        assert!(matches!(
            decode(&gz, Some("gzip"), max - 1),
            Err(BodyError::TooLarge(_))
        ));
        assert!(matches!(
            decode(&text, None, max - 1),
            Err(BodyError::TooLarge(_))
        ));
        assert!(matches!(
            decode(&text, Some("gzip"), max),
            Err(BodyError::Decompress(_))
        ));
        assert!(matches!(
            decode(&text, Some("br"), max),
            Err(BodyError::Encoding(_))
        ));
    }
}
