//! Encoding batches into bytes: NDJSON events (`json`) or bare messages (`text`).
//!
//! The JSON encoder writes straight into one output buffer per batch, with the strings every
//! event of a file shares (`file`, `source`, the id's stem) escaped once per file in
//! [`FileMeta`], so the per-event work is escaping the message and formatting two integers.

use serde::{Deserialize, Serialize};

use crate::event::Batch;
use crate::event::fields::{FieldName, FieldRef, FieldValue};
use crate::event::json::write_json_str;
use crate::event::{Chunk, Event, FileMeta};
use crate::parse::time::write_rfc3339;

/// How a sink writes events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// One JSON object per line (NDJSON).
    #[default]
    Json,
    /// The message only, one per line.
    Text,
}

/// Keys the agent sets on every event; a parsed object's own keys of these names give way.
const AGENT_KEYS: [&str; 4] = ["file", "offset", "source", "id"];

/// Appends every event of `batch`, each followed by a newline.
pub fn encode_batch(encoding: Encoding, batch: &Batch, out: &mut Vec<u8>) {
    for part in &batch.parts {
        for event in &part.chunk.events[part.range.clone()] {
            match encoding {
                Encoding::Json => encode_json(&part.chunk, event, out),
                Encoding::Text => {
                    out.extend_from_slice(&part.chunk.text(event));
                    out.push(b'\n');
                }
            }
        }
    }
}

/// Appends one event as a JSON object and a newline.
pub fn encode_json(chunk: &Chunk, event: &Event, out: &mut Vec<u8>) {
    if event.flags.rendered {
        // A transform's output: the object as the transform left it, agent keys included.
        out.extend_from_slice(chunk.message(event));
        out.push(b'\n');
        return;
    }
    let meta: &FileMeta = &chunk.file;
    let enrichment = &meta.enrichment;
    // The kubelet path names the pod of the file: it wins over the agent's own pod identity.
    let path_kubernetes = meta.kubernetes_json.as_deref();
    out.push(b'{');
    // A time parsed from the line replaces a parsed object's own `timestamp`.
    let mut has_timestamp = event.time.is_some();
    match chunk.fields(event) {
        Some(fields) => {
            let mut first = true;
            for field in fields.iter() {
                let key = field.name_bytes();
                // The names the agent sets are 2, 4, 6, 9 or 10 bytes long: most keys are not.
                let maybe_agents = matches!(key.len(), 2 | 4 | 6 | 9 | 10);
                if (maybe_agents && AGENT_KEYS.iter().any(|agent| agent.as_bytes() == key))
                    || (maybe_agents && key == b"timestamp" && event.time.is_some())
                    || (!enrichment.is_empty() && enrichment.has_key_bytes(key))
                    || (maybe_agents && key == b"kubernetes" && path_kubernetes.is_some())
                {
                    continue;
                }
                has_timestamp |= maybe_agents && key == b"timestamp";
                if !first {
                    out.push(b',');
                }
                first = false;
                write_field(out, &field, !event.flags.invalid_utf8);
            }
            if !first {
                out.push(b',');
            }
        }
        None => {
            out.extend_from_slice(b"\"message\":");
            write_message(out, chunk.message(event), event);
            out.push(b',');
        }
    }
    if let Some(stream) = event.stream {
        out.extend_from_slice(b"\"stream\":\"");
        out.extend_from_slice(stream.as_str().as_bytes());
        out.extend_from_slice(b"\",");
    }
    if let Some(time) = event.time {
        out.extend_from_slice(b"\"timestamp\":\"");
        write_rfc3339(out, time);
        out.extend_from_slice(b"\",");
    } else if !has_timestamp {
        out.extend_from_slice(b"\"timestamp\":\"");
        out.extend_from_slice(chunk.read_time.as_bytes());
        out.extend_from_slice(b"\",");
    }
    out.extend_from_slice(match path_kubernetes {
        Some(_) => enrichment.json_without_pod().as_bytes(),
        None => enrichment.json().as_bytes(),
    });
    out.extend_from_slice(meta.json_fields.as_bytes());
    let mut digits = itoa::Buffer::new();
    let offset = digits.format(event.offset).as_bytes();
    out.extend_from_slice(offset);
    out.extend_from_slice(meta.json_id_stem.as_bytes());
    out.extend_from_slice(offset);
    out.push(b'"');
    if let Some(kubernetes) = path_kubernetes {
        // The path's object, with the node it runs on when the identity names it.
        match kubernetes.strip_suffix('}') {
            Some(open) if !enrichment.node_member().is_empty() => {
                out.extend_from_slice(open.as_bytes());
                out.extend_from_slice(enrichment.node_member().as_bytes());
                out.push(b'}');
            }
            _ => out.extend_from_slice(kubernetes.as_bytes()),
        }
    }
    let flags = &event.flags;
    for (set, key) in [
        (flags.truncated, &b",\"truncated\":true"[..]),
        (flags.invalid_utf8, b",\"invalid_utf8\":true"),
        (flags.multiline_cut, b",\"multiline_cut\":true"),
        (flags.timestamp_failed, b",\"timestamp_parse_failed\":true"),
    ] {
        if set {
            out.extend_from_slice(key);
        }
    }
    if let Some(error) = &event.parse_error {
        out.extend_from_slice(b",\"parse_error\":");
        write_json_str(out, error.as_bytes());
    }
    out.extend_from_slice(b"}\n");
}

/// Appends `"name":value` as `serde_json` would write the pair (see
/// [`crate::event::fields`]): what stands in the line as it will be written is copied.
/// `valid_utf8`: the event's line is (framing checked it), so its text needs no check.
fn write_field(out: &mut Vec<u8>, field: &FieldRef<'_>, valid_utf8: bool) {
    let data = field.data();
    let field = field.field();
    let write_text = |out: &mut Vec<u8>, text: &[u8]| {
        if valid_utf8 {
            write_json_str(out, text);
        } else {
            write_text(out, text);
        }
    };
    match &field.name {
        FieldName::Json(span) => out.extend_from_slice(span.bytes(data)),
        FieldName::Text(span) => write_text(out, span.bytes(data)),
        FieldName::Static(name) => write_json_str(out, name.as_bytes()),
        FieldName::Owned(name) => write_json_str(out, name.as_bytes()),
    }
    out.push(b':');
    match &field.value {
        FieldValue::Json(span) => out.extend_from_slice(span.bytes(data)),
        FieldValue::Text(span) => write_text(out, span.bytes(data)),
        // Writing a Value into a Vec cannot fail.
        FieldValue::Owned(value) => {
            let _ = serde_json::to_writer(&mut *out, value);
        }
    }
}

/// Appends bytes of a line as a JSON string, invalid UTF-8 replaced.
fn write_text(out: &mut Vec<u8>, text: &[u8]) {
    match std::str::from_utf8(text) {
        Ok(text) => write_json_str(out, text.as_bytes()),
        Err(_) => write_json_str(out, String::from_utf8_lossy(text).as_bytes()),
    }
}

fn write_message(out: &mut Vec<u8>, message: &[u8], event: &Event) {
    if event.flags.invalid_utf8 {
        write_json_str(out, String::from_utf8_lossy(message).as_bytes());
    } else {
        write_json_str(out, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::BatchPart;
    use crate::event::{EventFlags, testing};
    use serde_json::{Value, json};
    use std::sync::Arc;

    fn chunk(lines: &[(&[u8], u64)]) -> Chunk {
        testing::chunk(FileMeta::new(0xab, "app", "/logs/a \"b\".log"), lines, 1000)
    }

    /// Encodes the one event of a chunk with `message` at `offset`, after `adjust` sets it up.
    fn encode_one(message: &[u8], offset: u64, adjust: impl FnOnce(&mut Event)) -> Value {
        let mut chunk = chunk(&[(message, offset)]);
        adjust(&mut chunk.events[0]);
        let mut out = Vec::new();
        encode_json(&chunk, &chunk.events[0], &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn raw_event_has_the_contract_keys() {
        let got = encode_one(b"GET /x \"q\"\t\\ \x01", 42, |_| {});
        assert_eq!(
            got,
            json!({
                "message": "GET /x \"q\"\t\\ \u{1}",
                "timestamp": "2026-11-25T04:00:00.000000Z",
                "file": "/logs/a \"b\".log",
                "source": "app",
                "offset": 42,
                "id": "00000000000000ab-42",
            })
        );
    }

    #[test]
    fn flags_and_parse_errors_are_keys() {
        let got = encode_one(b"caf\xff", 0, |e| {
            e.flags = EventFlags {
                truncated: true,
                invalid_utf8: true,
                multiline_cut: true,
                timestamp_failed: true,
                rendered: false,
            };
            e.parse_error = Some("invalid JSON: eof".into());
        });
        assert_eq!(got["message"], json!("caf\u{fffd}"));
        assert_eq!(got["truncated"], json!(true));
        assert_eq!(got["invalid_utf8"], json!(true));
        assert_eq!(got["parse_error"], json!("invalid JSON: eof"));
        assert_eq!(got["multiline_cut"], json!(true));
        assert_eq!(got["timestamp_parse_failed"], json!(true));
    }

    #[test]
    fn parsed_fields_sit_at_the_top_level() {
        let cases = [
            // (object, expected subset, expected timestamp)
            (
                json!({"level": "warn", "status": 404}),
                json!({"level": "warn", "status": 404}),
                "2026-11-25T04:00:00.000000Z",
            ),
            (
                json!({"timestamp": "2020-01-01T00:00:00Z"}),
                json!({}),
                "2020-01-01T00:00:00Z",
            ),
            // The agent's keys win over the object's own.
            (
                json!({"file": "spoofed", "id": 1, "msg": "m"}),
                json!({"file": "/logs/a \"b\".log", "msg": "m"}),
                "2026-11-25T04:00:00.000000Z",
            ),
            (
                json!({}),
                json!({"offset": 7}),
                "2026-11-25T04:00:00.000000Z",
            ),
        ];
        for (object, subset, timestamp) in cases {
            let mut chunk = chunk(&[(b"ignored", 7)]);
            testing::set_fields(&mut chunk, 0, &object);
            let mut out = Vec::new();
            encode_json(&chunk, &chunk.events[0], &mut out);
            let got: Value = serde_json::from_slice(&out).unwrap();
            for (key, value) in subset.as_object().unwrap() {
                assert_eq!(&got[key], value, "{object}: {key}");
            }
            assert_eq!(got["timestamp"], json!(timestamp), "{object}");
            assert!(got.get("message").is_none(), "{object}");
            assert_eq!(got["id"], json!("00000000000000ab-7"));
        }
    }

    #[test]
    fn files_in_the_kubelet_layout_carry_a_kubernetes_object() {
        let path = "/var/log/pods/shop_web-1_0f5c7d7e-8a4b-4a5e-9a53-2d1c3b4a5e6f/nginx/1.log";
        let pod = json!({
            "namespace": "shop",
            "pod_name": "web-1",
            "pod_uid": "0f5c7d7e-8a4b-4a5e-9a53-2d1c3b4a5e6f",
            "container_name": "nginx",
            "restart_count": 1,
        });
        let own = json!({"kubernetes": "from the line", "k": 1});
        // (path, parsed fields, expected `kubernetes` value)
        let cases = [
            (path, None, pod.clone()),
            (path, Some(own.clone()), pod.clone()),
            ("/logs/a.log", None, Value::Null),
            ("/logs/a.log", Some(own), json!("from the line")),
        ];
        // The Downward API identity of the agent's pod, and a static field.
        let identity =
            crate::event::enrichment::PodIdentity(vec![("pod_name".into(), "agent-0".into())]);
        let mut static_fields = crate::event::StaticFields::new();
        static_fields.insert("env".into(), json!("prod"));
        let enrichment = Arc::new(crate::event::enrichment::Enrichment::new(
            &static_fields,
            &identity,
        ));
        for (path, fields, want) in cases {
            for enriched in [false, true] {
                let mut meta = FileMeta::new(1, "pods", path);
                if enriched {
                    meta = meta.with_enrichment(Arc::clone(&enrichment));
                }
                let mut chunk = testing::chunk(meta, &[(b"m", 0)], 2);
                if let Some(object) = &fields {
                    testing::set_fields(&mut chunk, 0, object);
                }
                let mut out = Vec::new();
                encode_json(&chunk, &chunk.events[0], &mut out);
                let got: Value = serde_json::from_slice(&out)
                    .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
                // The path's pod wins; without one, the configured identity; else the line's.
                let want = match (enriched, &want) {
                    (true, Value::Null) | (true, Value::String(_)) => {
                        json!({"pod_name": "agent-0"})
                    }
                    _ => want.clone(),
                };
                assert_eq!(got["kubernetes"], want, "{path} {fields:?} {enriched}");
                let text = String::from_utf8_lossy(&out);
                assert!(
                    text.matches("\"kubernetes\":").count() <= 1,
                    "one key: {text}"
                );
                assert_eq!(got["file"], json!(path));
                if enriched {
                    assert_eq!(got["env"], "prod", "static fields stay");
                }
            }
        }
    }

    #[test]
    fn text_encoding_is_the_message_per_line() {
        let chunk = Arc::new(chunk(&[(b"one", 0), (b"two", 4)]));
        let batch = Batch {
            parts: vec![BatchPart {
                chunk: Arc::clone(&chunk),
                range: 0..2,
            }],
            events: 2,
            bytes: 6,
        };
        let mut out = Vec::new();
        encode_batch(Encoding::Text, &batch, &mut out);
        assert_eq!(out, b"one\ntwo\n");
        out.clear();
        encode_batch(Encoding::Json, &batch, &mut out);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 2);
    }
}
