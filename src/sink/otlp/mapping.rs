//! Events as OpenTelemetry log records: a batch becomes one `ExportLogsServiceRequest`, its
//! records grouped into one `ResourceLogs` per resource (per pod), so a batch of one pod's lines
//! carries the pod once.
//!
//! | event | log record |
//! |---|---|
//! | the line (raw, `cri`, `docker`, or a line that failed to parse) | `body` (string) |
//! | parsed: the `body_field` (`message`) | `body`; the other fields are attributes |
//! | parsed, without the `body_field` | `body`: every field, as a key-value list |
//! | the time parsed from the line | `time_unix_nano` (0 when the line has none) |
//! | the read time | `observed_time_unix_nano` |
//! | the `severity_field` (`level`) | `severity_text`, and `severity_number` when known |
//! | file path, file name, `stream` | `log.file.path`, `log.file.name`, `log.iostream` |
//! | `id` (file generation and offset) | `log.record.uid` |
//! | static `fields:` of the source, flags, `parse_error` | attributes of the same names |
//! | the pod (from the kubelet's path, else `kubernetes:`) | resource `k8s.namespace.name`, `k8s.pod.name`, `k8s.pod.uid`, `k8s.container.name`, `k8s.container.restart_count`, `k8s.node.name`, `service.name` (the container's name unless `resource:` sets it) |
//!
//! Invariant: every event of the batch is one record, in batch order within its resource, and
//! the mapping reads only the event and its file: the same batch maps to the same request.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::Value;

use super::config::OtlpSinkConfig;
use crate::event::{Batch, Chunk, Event, FieldRef, FieldValue, FileMeta};
use crate::parse::time::parse_rfc3339;
use crate::source::kubelet::PodLogPath;

/// Turns batches into export requests, as the sink's settings say.
#[derive(Debug, Clone)]
pub struct Mapper {
    body_field: String,
    severity_field: String,
    resource: Vec<(String, String)>,
    scope: InstrumentationScope,
}

impl Mapper {
    /// The mapper of a sink's settings.
    pub fn new(config: &OtlpSinkConfig) -> Self {
        Mapper {
            body_field: config.body_field.clone(),
            severity_field: config.severity_field.clone(),
            resource: config
                .resource
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            scope: InstrumentationScope {
                name: "log-agent".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..InstrumentationScope::default()
            },
        }
    }

    /// The request carrying every event of `batch`.
    pub fn request(&self, batch: &Batch) -> ExportLogsServiceRequest {
        let mut groups: Vec<(Vec<KeyValue>, Vec<LogRecord>)> = Vec::new();
        // The group of the last file seen: consecutive parts are mostly of the same file.
        let mut last: Option<(*const FileMeta, usize)> = None;
        for part in &batch.parts {
            let chunk = &*part.chunk;
            let file = Arc::as_ptr(&chunk.file);
            let group = match last {
                Some((seen, group)) if seen == file => group,
                _ => {
                    let attributes = self.resource_attributes(&chunk.file);
                    let group = match groups.iter().position(|(a, _)| *a == attributes) {
                        Some(group) => group,
                        None => {
                            groups.push((attributes, Vec::new()));
                            groups.len() - 1
                        }
                    };
                    last = Some((file, group));
                    group
                }
            };
            let Some(events) = chunk.events.get(part.range.clone()) else {
                continue;
            };
            let context = ChunkContext::new(chunk);
            let records = &mut groups[group].1;
            records.reserve(events.len());
            records.extend(events.iter().map(|event| self.record(&context, event)));
        }
        ExportLogsServiceRequest {
            resource_logs: groups
                .into_iter()
                .map(|(attributes, log_records)| ResourceLogs {
                    resource: Some(Resource {
                        attributes,
                        ..Resource::default()
                    }),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(self.scope.clone()),
                        log_records,
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                })
                .collect(),
        }
    }

    /// The resource of the pod that wrote `file`: from the kubelet's path when it has that
    /// layout, else from `kubernetes:`; then the configured attributes.
    fn resource_attributes(&self, file: &FileMeta) -> Vec<KeyValue> {
        let pod = file.enrichment.pod();
        let mut attributes: Vec<(&str, AnyValue)> = Vec::new();
        match PodLogPath::parse(&file.path) {
            Some(path) => {
                attributes.push(("k8s.namespace.name", string(path.namespace)));
                attributes.push(("k8s.pod.name", string(path.pod_name)));
                attributes.push(("k8s.pod.uid", string(path.pod_uid)));
                attributes.push(("k8s.container.name", string(path.container_name)));
                attributes.push((
                    "k8s.container.restart_count",
                    int(i64::from(path.restart_count)),
                ));
            }
            None => {
                for (key, name) in [
                    ("pod_namespace", "k8s.namespace.name"),
                    ("pod_name", "k8s.pod.name"),
                    ("pod_uid", "k8s.pod.uid"),
                    ("container_name", "k8s.container.name"),
                ] {
                    if let Some(value) = pod.get(key) {
                        attributes.push((name, string(value)));
                    }
                }
            }
        }
        if let Some(node) = pod.get("node_name") {
            attributes.push(("k8s.node.name", string(node)));
        }
        let container = attributes
            .iter()
            .find(|(name, _)| *name == "k8s.container.name")
            .map(|(_, value)| value.clone());
        if let Some(container) = container {
            attributes.push(("service.name", container));
        }
        for (name, value) in &self.resource {
            attributes.retain(|(n, _)| n != name);
            attributes.push((name, string(value)));
        }
        attributes
            .into_iter()
            .map(|(key, value)| key_value(key, value))
            .collect()
    }

    fn record(&self, context: &ChunkContext<'_>, event: &Event) -> LogRecord {
        let chunk = context.chunk;
        let meta = &*chunk.file;
        let mut attributes = Vec::with_capacity(4 + meta.enrichment.fields().len());
        attributes.push(key_value("log.file.path", string(&meta.path)));
        attributes.push(key_value("log.file.name", string(context.file_name)));
        if let Some(stream) = event.stream {
            attributes.push(key_value("log.iostream", string(stream.as_str())));
        }
        attributes.push(key_value(
            "log.record.uid",
            string(&format!("{:016x}-{}", meta.key, event.offset)),
        ));
        let mut severity = None;
        let body = match chunk.fields(event) {
            None => message_value(chunk.message(event)),
            Some(fields) => {
                severity = fields.get(&self.severity_field).map(|f| severity_of(&f));
                match fields.get(&self.body_field) {
                    Some(body) => {
                        for field in fields.iter() {
                            if !field.is_named(&self.body_field)
                                && !field.is_named(&self.severity_field)
                            {
                                attributes.push(key_value(&field.name(), field_value(&field)));
                            }
                        }
                        field_value(&body)
                    }
                    None => kvlist(
                        fields
                            .iter()
                            .map(|field| key_value(&field.name(), field_value(&field)))
                            .collect(),
                    ),
                }
            }
        };
        for (key, value) in meta.enrichment.fields() {
            attributes.push(key_value(key, json_value(value)));
        }
        let flags = &event.flags;
        for (set, key) in [
            (flags.truncated, "truncated"),
            (flags.invalid_utf8, "invalid_utf8"),
            (flags.multiline_cut, "multiline_cut"),
            (flags.timestamp_failed, "timestamp_parse_failed"),
        ] {
            if set {
                attributes.push(key_value(key, boolean(true)));
            }
        }
        if let Some(error) = &event.parse_error {
            attributes.push(key_value("parse_error", string(error)));
        }
        let (severity_text, severity_number) = severity.unwrap_or_default();
        LogRecord {
            time_unix_nano: event.time.and_then(|t| u64::try_from(t).ok()).unwrap_or(0),
            observed_time_unix_nano: context.observed,
            severity_number,
            severity_text,
            body: Some(body),
            attributes,
            ..LogRecord::default()
        }
    }
}

/// What the records of one chunk share.
struct ChunkContext<'a> {
    chunk: &'a Chunk,
    observed: u64,
    file_name: &'a str,
}

impl<'a> ChunkContext<'a> {
    fn new(chunk: &'a Chunk) -> Self {
        let path: &str = &chunk.file.path;
        ChunkContext {
            chunk,
            observed: parse_rfc3339(chunk.read_time.as_bytes())
                .and_then(|t| u64::try_from(t).ok())
                .unwrap_or(0),
            file_name: path.rsplit('/').next().unwrap_or(path),
        }
    }
}

/// The severity of a level's value: its text, and the OpenTelemetry number of the names in
/// common use (syslog's, log4j's, Go's and Python's) or of pino/bunyan's numbers; 0
/// (unspecified) for others.
fn severity_of(field: &FieldRef<'_>) -> (String, i32) {
    let text = match field.as_str() {
        Some(text) => text.into_owned(),
        None => String::from_utf8_lossy(&field.text()).into_owned(),
    };
    let number = severity_number(&text);
    (text, number)
}

fn severity_number(text: &str) -> i32 {
    match text.trim().to_ascii_lowercase().as_str() {
        "trace" | "finest" | "10" => 1,
        "debug" | "fine" | "dbg" | "20" => 5,
        "info" | "information" | "informational" | "inf" | "30" => 9,
        "notice" => 10,
        "warn" | "warning" | "wrn" | "40" => 13,
        "error" | "err" | "severe" | "50" => 17,
        "crit" | "critical" => 18,
        "alert" => 19,
        "fatal" | "emerg" | "emergency" | "panic" | "dpanic" | "60" => 21,
        _ => 0,
    }
}

/// The line as a string body (invalid UTF-8 replaced).
fn message_value(message: &[u8]) -> AnyValue {
    string(&String::from_utf8_lossy(message))
}

/// A parsed field's value: strings, numbers, booleans as themselves; objects and arrays as
/// key-value lists and arrays; `null` as an empty value.
fn field_value(field: &FieldRef<'_>) -> AnyValue {
    match &field.field().value {
        FieldValue::Json(span) => {
            let json = span.bytes(field.data());
            match json.first() {
                Some(b'"') => match field.as_str() {
                    Some(text) => string(&text),
                    None => AnyValue { value: None },
                },
                Some(b't') => boolean(true),
                Some(b'f') => boolean(false),
                Some(b'n') | None => AnyValue { value: None },
                Some(_) => number(json),
            }
        }
        FieldValue::Text(span) => message_value(span.bytes(field.data())),
        FieldValue::Owned(value) => json_value(value),
    }
}

/// A JSON number: an integer when it is one that fits, else a double.
fn number(json: &[u8]) -> AnyValue {
    let text = String::from_utf8_lossy(json);
    if let Ok(integer) = text.parse::<i64>() {
        return int(integer);
    }
    match text.parse::<f64>() {
        Ok(double) => AnyValue {
            value: Some(any_value::Value::DoubleValue(double)),
        },
        Err(_) => string(&text),
    }
}

/// A JSON value, as [`field_value`] maps one.
fn json_value(value: &Value) -> AnyValue {
    match value {
        Value::Null => AnyValue { value: None },
        Value::Bool(b) => boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => int(i),
            None => AnyValue {
                value: Some(any_value::Value::DoubleValue(
                    n.as_f64().unwrap_or(f64::NAN),
                )),
            },
        },
        Value::String(s) => string(s),
        Value::Array(values) => AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: values.iter().map(json_value).collect(),
            })),
        },
        Value::Object(map) => kvlist(
            map.iter()
                .map(|(key, value)| key_value(key, json_value(value)))
                .collect(),
        ),
    }
}

fn string(text: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(text.to_owned())),
    }
}

fn int(value: i64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::IntValue(value)),
    }
}

fn boolean(value: bool) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::BoolValue(value)),
    }
}

fn kvlist(values: Vec<KeyValue>) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList { values })),
    }
}

fn key_value(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{BatchPart, EventFlags, StaticFields, Stream, testing};
    use crate::parse::enrich::{Enrichment, PodIdentity};
    use crate::parse::{Format, LineParser};
    use serde_json::json;

    const KUBELET_PATH: &str = "/var/log/pods/shop_web-7d9_0f1e-22/nginx/3.log";

    /// A chunk of `lines` of the file at `path` (generation `key`), parsed as `format`.
    fn chunk(
        key: u64,
        path: &str,
        format: Format,
        lines: &[&str],
        enrichment: Enrichment,
    ) -> Chunk {
        let file = FileMeta::new(key, "app", path).with_enrichment(Arc::new(enrichment));
        let lines: Vec<(&[u8], u64)> = lines
            .iter()
            .enumerate()
            .map(|(i, line)| (line.as_bytes(), 100 * i as u64))
            .collect();
        let mut chunk = testing::chunk(file, &lines, 1000);
        let parser = LineParser::new(format, None);
        let data = chunk.data.clone();
        for event in &mut chunk.events {
            assert!(parser.parse(event, &data, &mut chunk.fields));
        }
        chunk
    }

    fn batch(chunks: Vec<Chunk>) -> Batch {
        let mut batch = Batch::default();
        for chunk in chunks {
            batch.events += chunk.events.len();
            batch.parts.push(BatchPart {
                range: 0..chunk.events.len(),
                chunk: Arc::new(chunk),
            });
        }
        batch
    }

    fn mapper(resource: &[(&str, &str)]) -> Mapper {
        let mut config = OtlpSinkConfig::new(None, super::super::config::Protocol::Grpc);
        config.resource = resource
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Mapper::new(&config)
    }

    /// Key-value pairs as JSON, for comparing.
    fn attributes(values: &[KeyValue]) -> serde_json::Value {
        serde_json::Value::Object(
            values
                .iter()
                .map(|kv| {
                    let value = kv.value.as_ref().map_or(json!(null), any_json);
                    (kv.key.clone(), value)
                })
                .collect(),
        )
    }

    fn any_json(value: &AnyValue) -> serde_json::Value {
        match &value.value {
            None => json!(null),
            Some(any_value::Value::StringValue(s)) => json!(s),
            Some(any_value::Value::BoolValue(b)) => json!(b),
            Some(any_value::Value::IntValue(i)) => json!(i),
            Some(any_value::Value::DoubleValue(d)) => json!(d),
            Some(any_value::Value::ArrayValue(a)) => {
                serde_json::Value::Array(a.values.iter().map(any_json).collect())
            }
            Some(any_value::Value::KvlistValue(l)) => json!({ "kvlist": attributes(&l.values) }),
            Some(any_value::Value::BytesValue(b)) => json!({ "bytes": b }),
        }
    }

    #[test]
    fn raw_lines_of_a_kubelet_file() {
        let mut chunk = chunk(
            0xab,
            KUBELET_PATH,
            Format::Raw,
            &["GET / 200", "caf\u{fffd}"],
            Enrichment::new(
                &StaticFields::new(),
                &PodIdentity(vec![("node_name".into(), "n1".into())]),
            ),
        );
        chunk.events[1].stream = Some(Stream::Stderr);
        chunk.events[1].flags = EventFlags {
            truncated: true,
            ..EventFlags::default()
        };
        chunk.events[1].time = Some(1_700_000_000_123_456_789);
        let request = mapper(&[]).request(&batch(vec![chunk]));
        assert_eq!(request.resource_logs.len(), 1);
        let resource = &request.resource_logs[0];
        assert_eq!(
            attributes(&resource.resource.as_ref().unwrap().attributes),
            json!({
                "k8s.namespace.name": "shop",
                "k8s.pod.name": "web-7d9",
                "k8s.pod.uid": "0f1e-22",
                "k8s.container.name": "nginx",
                "k8s.container.restart_count": 3,
                "k8s.node.name": "n1",
                "service.name": "nginx",
            })
        );
        let scope = &resource.scope_logs[0];
        assert_eq!(scope.scope.as_ref().unwrap().name, "log-agent");
        let records = &scope.log_records;
        assert_eq!(records.len(), 2);
        assert_eq!(
            any_json(records[0].body.as_ref().unwrap()),
            json!("GET / 200")
        );
        assert_eq!(
            attributes(&records[0].attributes),
            json!({
                "log.file.path": KUBELET_PATH,
                "log.file.name": "3.log",
                "log.record.uid": "00000000000000ab-0",
            })
        );
        // 2026-11-25T04:00:00Z, the test chunk's read time.
        assert_eq!(
            records[0].observed_time_unix_nano,
            1_795_579_200_000_000_000
        );
        assert_eq!(records[0].time_unix_nano, 0);
        assert_eq!(records[1].time_unix_nano, 1_700_000_000_123_456_789);
        assert_eq!(
            attributes(&records[1].attributes),
            json!({
                "log.file.path": KUBELET_PATH,
                "log.file.name": "3.log",
                "log.iostream": "stderr",
                "log.record.uid": "00000000000000ab-100",
                "truncated": true,
            })
        );
    }

    #[test]
    fn parsed_lines_table() {
        // (JSON line, body, severity text and number, attributes besides the file's)
        let cases = [
            (
                r#"{"level":"warn","message":"disk \"low\"","status":404,"ratio":0.5,"ok":false,"user":{"id":1},"tags":["a"],"none":null}"#,
                json!("disk \"low\""),
                ("warn", 13),
                json!({"status": 404, "ratio": 0.5, "ok": false, "user": {"kvlist": {"id": 1}}, "tags": ["a"], "none": null}),
            ),
            (
                r#"{"lvl":"x","status":500}"#,
                json!({"kvlist": {"lvl": "x", "status": 500}}),
                ("", 0),
                json!({}),
            ),
            (
                r#"{"message":{"nested":true},"level":"FATAL"}"#,
                json!({"kvlist": {"nested": true}}),
                ("FATAL", 21),
                json!({}),
            ),
        ];
        for (line, body, (severity_text, severity_number), extra) in cases {
            let chunk = chunk(
                1,
                "/logs/app.log",
                Format::Json,
                &[line],
                Enrichment::default(),
            );
            let request = mapper(&[]).request(&batch(vec![chunk]));
            let record = &request.resource_logs[0].scope_logs[0].log_records[0];
            assert_eq!(any_json(record.body.as_ref().unwrap()), body, "{line}");
            assert_eq!(record.severity_text, severity_text, "{line}");
            assert_eq!(record.severity_number, severity_number, "{line}");
            let mut want = json!({
                "log.file.path": "/logs/app.log",
                "log.file.name": "app.log",
                "log.record.uid": "0000000000000001-0",
            });
            want.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            assert_eq!(attributes(&record.attributes), want, "{line}");
        }
    }

    #[test]
    fn records_are_grouped_by_pod_in_batch_order() {
        let pod = |name: &str| {
            let identity = PodIdentity(vec![
                ("pod_name".into(), name.into()),
                ("pod_namespace".into(), "shop".into()),
            ]);
            let Value::Object(fields) = json!({"env": "prod"}) else {
                unreachable!()
            };
            Enrichment::new(&fields, &identity)
        };
        let chunks = vec![
            chunk(1, "/logs/a.log", Format::Raw, &["a1", "a2"], pod("web-1")),
            chunk(2, "/logs/b.log", Format::Raw, &["b1"], pod("web-2")),
            chunk(3, "/logs/c.log", Format::Raw, &["a3"], pod("web-1")),
        ];
        let request = mapper(&[("service.name", "shop-web"), ("k8s.pod.name", "over")])
            .request(&batch(chunks));
        let groups: Vec<(serde_json::Value, Vec<serde_json::Value>)> = request
            .resource_logs
            .iter()
            .map(|r| {
                (
                    attributes(&r.resource.as_ref().unwrap().attributes),
                    r.scope_logs[0]
                        .log_records
                        .iter()
                        .map(|l| any_json(l.body.as_ref().unwrap()))
                        .collect(),
                )
            })
            .collect();
        // The configured attributes win: both pods then have the same resource.
        assert_eq!(
            groups,
            vec![(
                json!({"k8s.namespace.name": "shop", "service.name": "shop-web", "k8s.pod.name": "over"}),
                vec![json!("a1"), json!("a2"), json!("b1"), json!("a3")]
            )]
        );
        let chunks = vec![
            chunk(1, "/logs/a.log", Format::Raw, &["a1"], pod("web-1")),
            chunk(2, "/logs/b.log", Format::Raw, &["b1"], pod("web-2")),
            chunk(3, "/logs/c.log", Format::Raw, &["a2"], pod("web-1")),
        ];
        let request = mapper(&[]).request(&batch(chunks));
        let bodies: Vec<Vec<serde_json::Value>> = request
            .resource_logs
            .iter()
            .map(|r| {
                r.scope_logs[0]
                    .log_records
                    .iter()
                    .map(|l| any_json(l.body.as_ref().unwrap()))
                    .collect()
            })
            .collect();
        assert_eq!(
            bodies,
            vec![vec![json!("a1"), json!("a2")], vec![json!("b1")]]
        );
        let record = &request.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(attributes(&record.attributes)["env"], json!("prod"));
    }

    #[test]
    fn severity_numbers_table() {
        let cases = [
            ("INFO", 9),
            ("warn", 13),
            ("Warning", 13),
            ("error", 17),
            ("crit", 18),
            ("FATAL", 21),
            ("debug", 5),
            ("trace", 1),
            ("30", 9),
            ("50", 17),
            ("verbose", 0),
            ("", 0),
        ];
        for (text, want) in cases {
            assert_eq!(severity_number(text), want, "{text}");
        }
    }

    #[test]
    fn json_values_table() {
        let cases = [
            (json!(null), AnyValue { value: None }),
            (json!(true), boolean(true)),
            (json!(-3), int(-3)),
            (
                json!(1.5),
                AnyValue {
                    value: Some(any_value::Value::DoubleValue(1.5)),
                },
            ),
            (json!("x"), string("x")),
            (
                json!({"a": [1, "b"]}),
                kvlist(vec![key_value(
                    "a",
                    AnyValue {
                        value: Some(any_value::Value::ArrayValue(ArrayValue {
                            values: vec![int(1), string("b")],
                        })),
                    },
                )]),
            ),
        ];
        for (value, want) in cases {
            assert_eq!(json_value(&value), want, "{value}");
        }
    }

    #[test]
    fn numbers_table() {
        let double = |d| AnyValue {
            value: Some(any_value::Value::DoubleValue(d)),
        };
        let cases: [(&[u8], AnyValue); 4] = [
            (b"42", int(42)),
            (b"-7", int(-7)),
            (b"0.25", double(0.25)),
            (b"18446744073709551616", double(18446744073709551616.0)),
        ];
        for (json, want) in cases {
            assert_eq!(number(json), want, "{}", String::from_utf8_lossy(json));
        }
    }
}
