//! `type: otlp`: OpenTelemetry logs received over gRPC ([`grpc`], port 4317) and HTTP
//! ([`http`], port 4318, protobuf or JSON), as the OTLP specification describes receivers,
//! each log record written as one journal record ([`write_records`]).
//!
//! | log record | event key |
//! |---|---|
//! | `body` (a string; any other value as JSON) | `message` |
//! | `time_unix_nano` (else `observed_time_unix_nano`) | `timestamp` (RFC 3339) |
//! | `severity_text`, `severity_number` | `severity`, `severity_number` |
//! | `trace_id`, `span_id` | `trace_id`, `span_id` (hex) |
//! | `event_name` | `event_name` |
//! | attributes; the resource's; the scope's name and version | `attributes`, `resource`, `scope` (objects) |
//! | the sender's address | `peer` |
//!
//! Invariant: every log record of an accepted request is one journal record, in request order.

pub mod grpc;
pub mod http;

use std::net::SocketAddr;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use serde::{Deserialize, Serialize};

use super::journal::JournalConfig;
use super::network::{MAX_RECORD_BYTES, Record};
use crate::event::StaticFields;
use crate::event::json::write_json_str;
use crate::parse::time::write_rfc3339;
use crate::parse::{FilterConfig, TimestampConfig};

/// Settings of a `type: otlp` source.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpSourceConfig {
    /// Where OTLP/gRPC is served (`null`: not served); loopback by default.
    #[serde(default = "default_grpc_address")]
    pub grpc_address: Option<SocketAddr>,
    /// Where OTLP/HTTP (`POST /v1/logs`) is served (`null`: not served); loopback by default.
    #[serde(default = "default_http_address")]
    pub http_address: Option<SocketAddr>,
    /// The largest request taken, after decompression.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// TLS on both, when set (else clear text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::source::tls::TlsConfig>,
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

fn default_grpc_address() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 4317)))
}

fn default_http_address() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 4318)))
}

fn default_max_request_bytes() -> usize {
    8 * 1024 * 1024
}

/// Appends one journal record per log record of `request`, at most `limit` bytes of them;
/// returns how many, or why the request is refused (a record or the whole past its limit).
pub fn write_records(
    request: &ExportLogsServiceRequest,
    peer: &str,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<u64, String> {
    let mut count = 0;
    let mut scratch = Vec::new();
    for resource_logs in &request.resource_logs {
        // The resource and the scope are written once each, and copied into their records.
        let resource = resource_logs
            .resource
            .as_ref()
            .filter(|r| !r.attributes.is_empty())
            .map(|r| {
                let mut json = Vec::new();
                write_attributes(&mut json, &r.attributes);
                json
            });
        for scope_logs in &resource_logs.scope_logs {
            let scope = scope_logs.scope.as_ref().map(|scope| {
                let mut json = Vec::new();
                let mut record = Record::begin(&mut json);
                if !scope.name.is_empty() {
                    record.text("name", scope.name.as_bytes());
                }
                if !scope.version.is_empty() {
                    record.text("version", scope.version.as_bytes());
                }
                if !scope.attributes.is_empty() {
                    scratch.clear();
                    write_attributes(&mut scratch, &scope.attributes);
                    record.json("attributes", &scratch);
                }
                record.end();
                json.truncate(json.len() - 1);
                json
            });
            for log in &scope_logs.log_records {
                let start = out.len();
                let mut record = Record::begin(out);
                match log.body.as_ref().and_then(|b| b.value.as_ref()) {
                    Some(any_value::Value::StringValue(text)) => {
                        record.text("message", text.as_bytes());
                    }
                    Some(_) => {
                        scratch.clear();
                        if let Some(body) = &log.body {
                            write_any(&mut scratch, body);
                        }
                        record.json("message", &scratch);
                    }
                    None => {}
                }
                let time = [log.time_unix_nano, log.observed_time_unix_nano]
                    .into_iter()
                    .find(|&t| t > 0)
                    .and_then(|t| i64::try_from(t).ok());
                if let Some(nanos) = time {
                    scratch.clear();
                    write_rfc3339(&mut scratch, nanos);
                    record.text("timestamp", &scratch);
                }
                if !log.severity_text.is_empty() {
                    record.text("severity", log.severity_text.as_bytes());
                }
                if let Ok(number @ 1..) = u64::try_from(log.severity_number) {
                    record.number("severity_number", number);
                }
                for (key, id) in [("trace_id", &log.trace_id), ("span_id", &log.span_id)] {
                    if !id.is_empty() && id.iter().any(|&b| b != 0) {
                        record.text(key, hex(id).as_bytes());
                    }
                }
                if !log.event_name.is_empty() {
                    record.text("event_name", log.event_name.as_bytes());
                }
                if !log.attributes.is_empty() {
                    scratch.clear();
                    write_attributes(&mut scratch, &log.attributes);
                    record.json("attributes", &scratch);
                }
                if let Some(resource) = &resource {
                    record.json("resource", resource);
                }
                if let Some(scope) = scope.as_ref().filter(|s| s.len() > 2) {
                    record.json("scope", scope);
                }
                record.text("peer", peer.as_bytes());
                record.end();
                count += 1;
                // Checked as it grows: the resource is copied into every record, so a small
                // request can make many times its size.
                if out.len() - start > MAX_RECORD_BYTES {
                    return Err(format!(
                        "a log record takes more than {MAX_RECORD_BYTES} bytes"
                    ));
                }
                if out.len() > limit {
                    return Err(format!(
                        "the request's records take more than {limit} bytes in the journal"
                    ));
                }
            }
        }
    }
    Ok(count)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    text
}

/// Writes key-values as one JSON object (a later duplicate key is written too; readers keep
/// the last).
fn write_attributes(out: &mut Vec<u8>, attributes: &[KeyValue]) {
    out.push(b'{');
    for (i, kv) in attributes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_str(out, kv.key.as_bytes());
        out.push(b':');
        match &kv.value {
            Some(value) => write_any(out, value),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
}

/// Writes an OTLP value as JSON: bytes as hex, a non-finite double as `null`.
fn write_any(out: &mut Vec<u8>, value: &AnyValue) {
    match &value.value {
        None => out.extend_from_slice(b"null"),
        Some(any_value::Value::StringValue(text)) => write_json_str(out, text.as_bytes()),
        Some(any_value::Value::BoolValue(b)) => {
            out.extend_from_slice(if *b { b"true" } else { b"false" })
        }
        Some(any_value::Value::IntValue(n)) => {
            out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes())
        }
        Some(any_value::Value::DoubleValue(d)) => match serde_json::Number::from_f64(*d) {
            Some(number) => out.extend_from_slice(number.to_string().as_bytes()),
            None => out.extend_from_slice(b"null"),
        },
        Some(any_value::Value::BytesValue(bytes)) => write_json_str(out, hex(bytes).as_bytes()),
        Some(any_value::Value::ArrayValue(array)) => {
            out.push(b'[');
            for (i, item) in array.values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_any(out, item);
            }
            out.push(b']');
        }
        Some(any_value::Value::KvlistValue(list)) => write_attributes(out, &list.values),
    }
}

/// Decodes an OTLP/JSON request. The JSON mapping of protobuf lets 64-bit integers be numbers
/// or strings and values be empty; the generated decoder takes only strings and non-empty
/// values, so the document is brought to that form first.
pub fn request_from_json(body: &[u8]) -> Result<ExportLogsServiceRequest, String> {
    let mut document: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    normalize(&mut document, 0);
    serde_json::from_value(document).map_err(|e| format!("not an OTLP logs request: {e}"))
}

/// Deepest nesting [`normalize`] follows (deeper documents are refused by the decoder).
const MAX_DEPTH: usize = 64;

fn normalize(value: &mut serde_json::Value, depth: usize) {
    use serde_json::Value;
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Object(map) => {
            for key in ["timeUnixNano", "observedTimeUnixNano"] {
                if let Some(Value::Number(n)) = map.get(key) {
                    let text = n.to_string();
                    map.insert(key.to_owned(), Value::String(text));
                }
            }
            // An empty value (`"value": {}`, `"body": {}`) is a value without content.
            map.retain(|key, v| {
                !(matches!(key.as_str(), "value" | "body")
                    && v.as_object().is_some_and(serde_json::Map::is_empty))
            });
            for v in map.values_mut() {
                normalize(v, depth + 1);
            }
        }
        Value::Array(items) => {
            for v in items {
                normalize(v, depth + 1);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
