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
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::config::OtlpSinkConfig;
use super::values::{
    Attributes, boolean, field_value, int, json_value, key_value, kvlist, push_lossy, set_text,
    severity_of, string,
};
use crate::event::kubelet::PodLogPath;
use crate::event::{Batch, Chunk, Event, FileMeta};
use crate::parse::time::parse_rfc3339;

/// Most attributes a record may keep for reuse, and the largest body: a record that held more
/// is let go rather than kept for the next batch.
const KEPT_ATTRIBUTES: usize = 64;
const KEPT_BODY_BYTES: usize = 16 * 1024;

/// Turns batches into export requests, as the sink's settings say.
#[derive(Debug, Clone)]
pub struct Mapper {
    body_field: String,
    severity_field: String,
    resource: Vec<(String, String)>,
    scope: InstrumentationScope,
}

/// The request a sink instance builds, kept to be built again: records, their attributes and
/// strings keep their allocations from one batch to the next (a batch of raw lines then
/// allocates nothing per line).
#[derive(Debug, Default)]
pub struct Scratch {
    request: ExportLogsServiceRequest,
    spare: Vec<LogRecord>,
}

impl Scratch {
    /// Lends the request last built (to a call that encodes it).
    pub fn lend(&mut self) -> ExportLogsServiceRequest {
        std::mem::take(&mut self.request)
    }

    /// Takes a lent request back, to build the next one over it.
    pub fn give_back(&mut self, request: ExportLogsServiceRequest) {
        self.request = request;
    }

    /// Takes back the records of the last request.
    fn recycle(&mut self) {
        for resource_logs in self.request.resource_logs.drain(..) {
            for scope_logs in resource_logs.scope_logs {
                self.spare
                    .extend(scope_logs.log_records.into_iter().filter(worth_keeping));
            }
        }
    }
}

/// Whether a record is small enough to be kept for reuse.
fn worth_keeping(record: &LogRecord) -> bool {
    let body = match &record.body {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(text)),
        }) => text.capacity(),
        _ => 0,
    };
    body <= KEPT_BODY_BYTES && record.attributes.len() <= KEPT_ATTRIBUTES
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

    /// The request carrying every event of `batch` (a new one: see [`Mapper::fill`]).
    pub fn request(&self, batch: &Batch) -> ExportLogsServiceRequest {
        let mut scratch = Scratch::default();
        self.fill(batch, &mut scratch);
        scratch.request
    }

    /// Builds the request carrying every event of `batch` over the one `scratch` holds.
    pub fn fill<'s>(
        &self,
        batch: &Batch,
        scratch: &'s mut Scratch,
    ) -> &'s ExportLogsServiceRequest {
        scratch.recycle();
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
            for event in events {
                let mut record = scratch.spare.pop().unwrap_or_default();
                self.fill_record(&mut record, &context, event);
                records.push(record);
            }
        }
        scratch.request.resource_logs = groups
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
            .collect();
        &scratch.request
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

    /// Writes `event` over `record`.
    fn fill_record(&self, record: &mut LogRecord, context: &ChunkContext<'_>, event: &Event) {
        let chunk = context.chunk;
        let meta = &*chunk.file;
        let mut attributes = Attributes::over(&mut record.attributes);
        attributes.text("log.file.path", &meta.path);
        attributes.text("log.file.name", context.file_name);
        if let Some(stream) = event.stream {
            attributes.text("log.iostream", stream.as_str());
        }
        attributes.uid("log.record.uid", meta.key, event.offset);
        record.severity_text.clear();
        record.severity_number = 0;
        match chunk.fields(event) {
            None => set_text(&mut record.body, |s| push_lossy(s, chunk.message(event))),
            Some(fields) => {
                if let Some(level) = fields.get(&self.severity_field) {
                    let (text, number) = severity_of(&level);
                    record.severity_text.push_str(&text);
                    record.severity_number = number;
                }
                record.body = Some(match fields.get(&self.body_field) {
                    Some(body) => {
                        for field in fields.iter() {
                            if !field.is_named(&self.body_field)
                                && !field.is_named(&self.severity_field)
                            {
                                attributes.value(&field.name(), field_value(&field));
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
                });
            }
        }
        for (key, value) in meta.enrichment.fields() {
            attributes.value(key, json_value(value));
        }
        let flags = &event.flags;
        for (set, key) in [
            (flags.truncated, "truncated"),
            (flags.invalid_utf8, "invalid_utf8"),
            (flags.multiline_cut, "multiline_cut"),
            (flags.timestamp_failed, "timestamp_parse_failed"),
        ] {
            if set {
                attributes.value(key, boolean(true));
            }
        }
        if let Some(error) = &event.parse_error {
            attributes.text("parse_error", error);
        }
        attributes.finish();
        record.time_unix_nano = event.time.and_then(|t| u64::try_from(t).ok()).unwrap_or(0);
        record.observed_time_unix_nano = context.observed;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::enrichment::{Enrichment, PodIdentity};
    use crate::event::{BatchPart, EventFlags, StaticFields, Stream, testing};
    use crate::parse::{Format, LineParser};
    use serde_json::{Value, json};

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
            assert!(parser.parse(event, &data, Arc::make_mut(&mut chunk.fields)));
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
    fn a_request_built_over_the_last_one_equals_a_new_one() {
        let mapper = mapper(&[]);
        let parsed = || {
            batch(vec![chunk(
                1,
                "/logs/app.log",
                Format::Json,
                &[
                    r#"{"message":"m","level":"info","a":1,"b":{"c":2},"d":"e"}"#,
                    r#"{"other":true}"#,
                ],
                Enrichment::default(),
            )])
        };
        let raw = || {
            let mut chunk = chunk(
                2,
                KUBELET_PATH,
                Format::Raw,
                &["x", "y", "z"],
                Enrichment::default(),
            );
            chunk.events[0].stream = Some(Stream::Stdout);
            chunk.events[2].parse_error = Some("bad".into());
            batch(vec![chunk])
        };
        let mut scratch = Scratch::default();
        for (built, fresh) in [parsed(), raw(), parsed(), parsed(), raw()]
            .iter()
            .map(|b| (mapper.fill(b, &mut scratch).clone(), mapper.request(b)))
        {
            assert_eq!(built, fresh);
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
}
