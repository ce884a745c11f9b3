use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::{Value, json};

use super::*;

fn string(text: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(text.to_owned())),
    }
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
    }
}

fn records(request: &ExportLogsServiceRequest) -> Vec<Value> {
    let mut out = Vec::new();
    let count = write_records(request, "127.0.0.1:9", &mut out, usize::MAX).unwrap();
    let lines: Vec<Value> = out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, count);
    lines
}

#[test]
fn log_records_become_journal_records() {
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv(
                    "service.name",
                    any_value::Value::StringValue("shop".into()),
                )],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "app.orders".into(),
                    version: "1.2".into(),
                    ..Default::default()
                }),
                log_records: vec![
                    LogRecord {
                        time_unix_nano: 1_765_075_560_123_456_789,
                        severity_number: 9,
                        severity_text: "INFO".into(),
                        body: Some(string("order placed")),
                        attributes: vec![
                            kv("order.id", any_value::Value::IntValue(42)),
                            kv("paid", any_value::Value::BoolValue(true)),
                            kv("amount", any_value::Value::DoubleValue(9.5)),
                            kv("ratio", any_value::Value::DoubleValue(f64::NAN)),
                            kv("raw", any_value::Value::BytesValue(vec![0xde, 0xad])),
                            kv(
                                "tags",
                                any_value::Value::ArrayValue(ArrayValue {
                                    values: vec![string("a"), string("b")],
                                }),
                            ),
                        ],
                        trace_id: vec![1; 16],
                        span_id: vec![0; 8],
                        ..Default::default()
                    },
                    LogRecord {
                        observed_time_unix_nano: 1_000_000_000,
                        body: Some(AnyValue {
                            value: Some(any_value::Value::KvlistValue(KeyValueList {
                                values: vec![kv("k", any_value::Value::StringValue("v\n".into()))],
                            })),
                        }),
                        ..Default::default()
                    },
                    LogRecord::default(),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let got = records(&request);
    assert_eq!(
        got[0],
        json!({
            "message": "order placed",
            "timestamp": "2025-12-07T02:46:00.123456789Z",
            "severity": "INFO",
            "severity_number": 9,
            "trace_id": "01010101010101010101010101010101",
            "attributes": {"order.id": 42, "paid": true, "amount": 9.5, "ratio": null, "raw": "dead", "tags": ["a", "b"]},
            "resource": {"service.name": "shop"},
            "scope": {"name": "app.orders", "version": "1.2"},
            "peer": "127.0.0.1:9"
        })
    );
    assert_eq!(
        got[1],
        json!({
            "message": {"k": "v\n"},
            "timestamp": "1970-01-01T00:00:01.000000Z",
            "resource": {"service.name": "shop"},
            "scope": {"name": "app.orders", "version": "1.2"},
            "peer": "127.0.0.1:9"
        })
    );
    // An empty record is still a record: it was sent.
    assert_eq!(got[2]["peer"], "127.0.0.1:9");
    assert_eq!(got.len(), 3);
}

#[test]
fn json_requests_as_the_specification_writes_them() {
    // Integers as strings or numbers, empty values, ids in hex, unknown keys.
    let body = br#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop"}},{"key":"empty","value":{}}]},
      "scopeLogs":[{"scope":{"name":"s"},"logRecords":[
        {"timeUnixNano":"1765075560000000000","severityNumber":17,"severityText":"ERROR","traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
         "body":{"stringValue":"boom"},"attributes":[{"key":"n","value":{"intValue":"7"}},{"key":"m","value":{"intValue":8}}],"futureField":1},
        {"observedTimeUnixNano":1000000000,"body":{}}]}]}]}"#;
    let request = request_from_json(body).unwrap();
    let got = records(&request);
    assert_eq!(got[0]["message"], "boom");
    assert_eq!(got[0]["severity_number"], 17);
    assert_eq!(got[0]["timestamp"], "2025-12-07T02:46:00.000000Z");
    assert_eq!(got[0]["trace_id"], "5b8efff798038103d269b633813fc60c");
    assert_eq!(got[0]["span_id"], "eee19b7ec3c1b174");
    assert_eq!(got[0]["attributes"], json!({"n": 7, "m": 8}));
    assert_eq!(
        got[0]["resource"],
        json!({"service.name": "shop", "empty": null})
    );
    assert_eq!(got[1]["timestamp"], "1970-01-01T00:00:01.000000Z");
    assert!(got[1].get("message").is_none());

    for bad in [&b"not json"[..], b"[1]", b"{\"resourceLogs\":7}"] {
        assert!(
            request_from_json(bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn records_past_the_limit_refuse_the_request() {
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default(); 10],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut out = Vec::new();
    assert_eq!(write_records(&request, "p", &mut out, 1000), Ok(10));
    out.clear();
    assert!(write_records(&request, "p", &mut out, 50).is_err());
}
