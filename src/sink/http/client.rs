//! What the sinks that speak HTTP share (`http`, `otlp`): the client with its headers and TLS
//! files, reading a bounded response, `Retry-After`, and errors told without the URL.
//!
//! Invariant: a client is built from files and secrets read once, at build time, and an error
//! names the configuration key at fault without showing a secret or a URL (which may hold one).

use std::collections::BTreeMap;
use std::error::Error as _;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Certificate, Client, Identity};

use super::config::TlsConfig;
use crate::sink::secret::Secret;

/// A failure to build a client: the key at fault and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ClientError {
    /// The configuration key, relative to the sink (`tls.ca_file`, `headers.X-Key`).
    pub key: String,
    /// What went wrong.
    pub message: String,
}

impl ClientError {
    fn new(key: &str, message: impl Into<String>) -> Self {
        ClientError {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// The headers with their secrets read; those not written in the configuration are marked
/// sensitive (kept out of debug output).
pub fn resolve_headers(headers: &BTreeMap<String, Secret>) -> Result<HeaderMap, ClientError> {
    let mut map = HeaderMap::new();
    for (header, secret) in headers {
        let key = format!("headers.{header}");
        let value = secret
            .resolve()
            .map_err(|e| ClientError::new(&key, e.to_string()))?;
        let name = HeaderName::from_bytes(header.as_bytes())
            .map_err(|e| ClientError::new(&key, e.to_string()))?;
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| ClientError::new(&key, "not a valid header value"))?;
        value.set_sensitive(!matches!(secret, Secret::Value(_)));
        map.insert(name, value);
    }
    Ok(map)
}

/// The PEM files of `tls`, read: the CA bundle and the client certificate with its key.
#[derive(Debug, Default)]
pub struct TlsFiles {
    /// CA certificates trusted besides the system's.
    pub ca: Option<Vec<u8>>,
    /// The client certificate (chain) and its private key, for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsFiles {
    /// Reads the files `tls` names.
    pub fn read(tls: &TlsConfig) -> Result<Self, ClientError> {
        let read = |key: &str, path: &Path| {
            std::fs::read(path)
                .map_err(|e| ClientError::new(key, format!("{}: {e}", path.display())))
        };
        let ca = match &tls.ca_file {
            Some(path) => {
                let pem = read("tls.ca_file", path)?;
                let certificates = Certificate::from_pem_bundle(&pem).map_err(|e| {
                    ClientError::new("tls.ca_file", format!("{}: {e}", path.display()))
                })?;
                if certificates.is_empty() {
                    return Err(ClientError::new(
                        "tls.ca_file",
                        format!("{}: no PEM certificate in it", path.display()),
                    ));
                }
                Some(pem)
            }
            None => None,
        };
        let identity = match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => {
                Some((read("tls.cert_file", cert)?, read("tls.key_file", key)?))
            }
            _ => None,
        };
        Ok(TlsFiles { ca, identity })
    }
}

/// A client with `headers` on every request, the TLS files of `tls`, `timeout` for a whole
/// request (connecting included) and `pool` idle connections kept.
pub fn build_client(
    headers: HeaderMap,
    tls: &TlsConfig,
    timeout: Duration,
    pool: usize,
) -> Result<Client, ClientError> {
    let files = TlsFiles::read(tls)?;
    let mut builder = Client::builder()
        .user_agent(concat!("log-agent/", env!("CARGO_PKG_VERSION")))
        .default_headers(headers)
        .timeout(timeout)
        .connect_timeout(timeout)
        // A redirected POST would lose its body; a redirect is a configuration error.
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(pool);
    if let Some(pem) = &files.ca {
        for certificate in Certificate::from_pem_bundle(pem)
            .map_err(|e| ClientError::new("tls.ca_file", e.to_string()))?
        {
            builder = builder.add_root_certificate(certificate);
        }
    }
    if let Some((cert, key)) = &files.identity {
        let mut pem = cert.clone();
        pem.push(b'\n');
        pem.extend_from_slice(key);
        let identity = Identity::from_pem(&pem).map_err(|e| {
            let (cert, key) = (&tls.cert_file, &tls.key_file);
            let shown = |p: &Option<std::path::PathBuf>| {
                p.as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            };
            ClientError::new("tls", format!("{} and {}: {e}", shown(cert), shown(key)))
        })?;
        builder = builder.identity(identity);
    }
    builder
        .build()
        .map_err(|e| ClientError::new("tls", error_chain(&e)))
}

/// How much of an error response's body is kept (and shown in the log line).
pub const ERROR_BODY_PREVIEW: usize = 512;

/// The start of an error response's body, on one line: what a log line shows of it.
pub fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_PREVIEW)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An error and its sources on one line, without the URL reqwest adds (it may hold a password).
pub fn error_chain(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Reads at most `limit` bytes of a response body; the rest is left unread.
pub async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, reqwest::Error> {
    let mut body = BytesMut::new();
    while body.len() < limit {
        match response.chunk().await? {
            Some(chunk) => body.extend_from_slice(&chunk[..chunk.len().min(limit - body.len())]),
            None => break,
        }
    }
    Ok(body.freeze())
}

/// The `Retry-After` of a response, if it has a readable one.
pub fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, Utc::now()))
}

/// Reads a `Retry-After` value: seconds, or an HTTP date (a date in the past means now).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// gzip-compresses a body, off the async threads.
pub async fn gzip(body: Vec<u8>) -> std::io::Result<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        let mut encoder = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 4),
            flate2::Compression::default(),
        );
        encoder.write_all(&body)?;
        encoder.finish()
    })
    .await
    .map_err(std::io::Error::other)?
}

/// zstd-compresses a body (at zstd's default level), off the async threads.
pub async fn zstd(body: Vec<u8>) -> std::io::Result<Vec<u8>> {
    tokio::task::spawn_blocking(move || zstd::bulk::compress(&body, 0))
        .await
        .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn retry_after_table() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let cases = [
            ("7", Some(7)),
            (" 0 ", Some(0)),
            ("Thu, 01 Jan 2026 00:00:30 GMT", Some(30)),
            ("Wed, 31 Dec 2025 23:00:00 GMT", Some(0)),
            ("soon", None),
            ("-1", None),
        ];
        for (value, want) in cases {
            assert_eq!(
                parse_retry_after(value, now).map(|d| d.as_secs()),
                want,
                "{value}"
            );
        }
    }

    #[tokio::test]
    async fn compression_round_trips() {
        let body = b"{\"message\":\"a\"}\n".repeat(100);
        let compressed = gzip(body.clone()).await.unwrap();
        assert!(compressed.len() < body.len());
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, body);
        let compressed = zstd(body.clone()).await.unwrap();
        assert!(compressed.len() < body.len());
        assert_eq!(zstd::decode_all(&compressed[..]).unwrap(), body);
    }
}
