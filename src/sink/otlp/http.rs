//! OTLP over HTTP: a `POST` of the request as protobuf or as OTLP JSON, through the client the
//! `http` sink builds (headers, TLS, timeouts).
//!
//! Invariant: a status is retried only where the OTLP specification says it may succeed later:
//! 429, 502, 503 and 504 (not before a `Retry-After`), and a failure to get any answer; any
//! other status is permanent.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use prost::Message;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap};
use reqwest::{Client, StatusCode, Url};

use super::config::{OtlpCompression, OtlpSinkConfig, Protocol};
use crate::sink::SinkError;
use crate::sink::http::client::{
    ClientError, ERROR_BODY_PREVIEW, build_client, error_chain, gzip, preview, read_body,
    retry_after, zstd,
};

/// How much of a response is read: a partial success names a count and a message.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// An HTTP client of one receiver.
#[derive(Debug)]
pub struct HttpExporter {
    client: Client,
    url: Url,
    json: bool,
    compression: OtlpCompression,
}

impl HttpExporter {
    /// A client of `url`, sending `headers` with every request.
    pub fn new(config: &OtlpSinkConfig, url: Url, headers: HeaderMap) -> Result<Self, ClientError> {
        let client = build_client(
            headers,
            &config.tls,
            Duration::from_millis(config.timeout_ms),
            config.in_flight,
        )?;
        Ok(HttpExporter {
            client,
            url,
            json: config.protocol == Protocol::HttpJson,
            compression: config.compression,
        })
    }

    /// Whether requests are OTLP JSON (else protobuf).
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Sends one encoded request; what the receiver says of records it refused, if anything.
    pub async fn export(
        &self,
        body: Vec<u8>,
    ) -> Result<Option<ExportLogsPartialSuccess>, SinkError> {
        let content_type = if self.json {
            "application/json"
        } else {
            "application/x-protobuf"
        };
        let (body, encoding) = match self.compression {
            OtlpCompression::None => (Ok(body), None),
            OtlpCompression::Gzip => (gzip(body).await, Some("gzip")),
            OtlpCompression::Zstd => (zstd(body).await, Some("zstd")),
        };
        let body = body.map_err(|e| SinkError::Retriable(format!("compress: {e}")))?;
        let mut post = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, content_type);
        if let Some(encoding) = encoding {
            post = post.header(CONTENT_ENCODING, encoding);
        }
        let response = post
            .body(body)
            .send()
            .await
            .map_err(|e| SinkError::Retriable(error_chain(&e)))?;
        let status = response.status();
        let after = retry_after(&response);
        let json_reply = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let limit = if status.is_success() {
            MAX_RESPONSE_BYTES
        } else {
            ERROR_BODY_PREVIEW
        };
        let body = read_body(response, limit)
            .await
            .map_err(|e| SinkError::Retriable(error_chain(&e)))?;
        if let Some(error) = status_error(status, after, &body, json_reply) {
            return Err(error);
        }
        Ok(partial_success(&body, json_reply))
    }
}

/// The partial success a successful response reports, if it reports one (an empty or
/// unreadable body reports none: the request was accepted).
fn partial_success(body: &[u8], json: bool) -> Option<ExportLogsPartialSuccess> {
    if body.is_empty() {
        return None;
    }
    if json {
        return json_partial_success(body);
    }
    ExportLogsServiceResponse::decode(body)
        .ok()?
        .partial_success
}

/// The partial success of an OTLP JSON response. Read by hand: the JSON mapping of protobuf
/// writes 64-bit integers as strings, which the generated types do not read back.
fn json_partial_success(body: &[u8]) -> Option<ExportLogsPartialSuccess> {
    let response: serde_json::Value = serde_json::from_slice(body).ok()?;
    let partial = response.get("partialSuccess")?;
    let rejected = match partial.get("rejectedLogRecords") {
        Some(serde_json::Value::String(text)) => text.parse().ok()?,
        Some(number) => number.as_i64()?,
        None => 0,
    };
    let error_message = partial
        .get("errorMessage")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Some(ExportLogsPartialSuccess {
        rejected_log_records: rejected,
        error_message,
    })
}

/// The error a response status means, if any.
fn status_error(
    status: StatusCode,
    after: Option<Duration>,
    body: &[u8],
    json: bool,
) -> Option<SinkError> {
    if status.is_success() {
        return None;
    }
    let message = format!("HTTP {status}: {}", error_message(body, json));
    let retriable = matches!(status.as_u16(), 429 | 502 | 503 | 504);
    Some(match (retriable, after) {
        (true, Some(after)) => SinkError::RetriableAfter { message, after },
        (true, None) => SinkError::Retriable(message),
        (false, _) => SinkError::Permanent(message),
    })
}

/// What an error response says: the message of its `google.rpc.Status` (as the specification
/// asks receivers to send), else the start of its text.
fn error_message(body: &[u8], json: bool) -> String {
    if !json
        && let Ok(status) = tonic_types::pb::Status::decode(body)
        && !status.message.is_empty()
    {
        return status.message;
    }
    preview(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_table() {
        // (status, Retry-After, expected: None ok, "R" retriable, "A" after, "P" permanent)
        let cases = [
            (200, None, None),
            (202, None, None),
            (400, None, Some("P")),
            (401, None, Some("P")),
            (404, None, Some("P")),
            (413, None, Some("P")),
            (408, None, Some("P")),
            (500, None, Some("P")),
            (429, None, Some("R")),
            (429, Some(2), Some("A")),
            (502, None, Some("R")),
            (503, Some(1), Some("A")),
            (504, None, Some("R")),
        ];
        for (code, after, want) in cases {
            let status = StatusCode::from_u16(code).unwrap();
            let got =
                status_error(status, after.map(Duration::from_secs), b"no", true).map(
                    |e| match e {
                        SinkError::Retriable(_) => "R",
                        SinkError::RetriableAfter { .. } => "A",
                        SinkError::Permanent(_) => "P",
                        SinkError::Partial { .. } => "partial",
                    },
                );
            assert_eq!(got, want, "{code}");
        }
    }

    #[test]
    fn error_messages_table() {
        let status = tonic_types::pb::Status {
            code: 3,
            message: "bad record".into(),
            details: Vec::new(),
        }
        .encode_to_vec();
        let cases: [(&[u8], bool, &str); 3] = [
            (&status, false, "bad record"),
            (
                b"{\"code\":3,\n \"message\":\"x\"}",
                true,
                "{\"code\":3, \"message\":\"x\"}",
            ),
            (b"", false, ""),
        ];
        for (body, json, want) in cases {
            assert_eq!(error_message(body, json), want);
        }
    }

    #[test]
    fn partial_successes_table() {
        let protobuf = ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: 2,
                error_message: "too old".into(),
            }),
        }
        .encode_to_vec();
        let cases: [(&[u8], bool, Option<i64>); 6] = [
            (&protobuf, false, Some(2)),
            (
                br#"{"partialSuccess":{"rejectedLogRecords":"3","errorMessage":"x"}}"#,
                true,
                Some(3),
            ),
            (
                br#"{"partialSuccess":{"rejectedLogRecords":4}}"#,
                true,
                Some(4),
            ),
            (br#"{}"#, true, None),
            (b"", false, None),
            (b"not json", true, None),
        ];
        for (body, json, want) in cases {
            assert_eq!(
                partial_success(body, json).map(|p| p.rejected_log_records),
                want,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
