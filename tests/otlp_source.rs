//! The `otlp` source against the OpenTelemetry Python SDK (`opentelemetry-sdk` and
//! `opentelemetry-exporter-otlp` from PyPI, installed by `.ci/deps`) exporting over gRPC and
//! HTTP/protobuf, and curl posting OTLP/JSON. Every record the SDK was told was exported
//! arrives, through a `kill -9` of the agent and through a full journal that answers
//! `RESOURCE_EXHAUSTED` with a retry delay until the sink is back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use common::process::AgentProcess;
use common::*;

/// Starts the SDK sending `count` numbered records of `tag` from `first` over `protocol`;
/// the numbers it was told were exported are appended to `acked`.
fn sdk_sender(
    protocol: &str,
    endpoint: &str,
    tag: &str,
    first: u64,
    count: u64,
    acked: &Path,
) -> Child {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/otlp_sender.py");
    Command::new("python3")
        .arg(script)
        .args([
            protocol,
            endpoint,
            tag,
            &first.to_string(),
            &count.to_string(),
        ])
        .arg(acked)
        .spawn()
        .expect("python3")
}

fn finish(mut sender: Child) {
    let status = sender.wait().unwrap();
    assert!(
        status.success(),
        "the OpenTelemetry SDK sender failed ({status}): are opentelemetry-sdk and \
         opentelemetry-exporter-otlp installed (`bash .ci/deps` installs them)?"
    );
}

fn numbers(path: &Path) -> BTreeSet<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn delivered(out: &Path, tag: &str) -> BTreeSet<u64> {
    counts(&read_ndjson(out))
        .get(tag)
        .map(|c| c.keys().copied().collect())
        .unwrap_or_default()
}

struct Ports {
    grpc: u16,
    http: u16,
    api: u16,
}

fn otlp_config(world: &World, out: &Path, journal: &str) -> (PathBuf, Ports) {
    let ports = Ports {
        grpc: closed_address().port(),
        http: closed_address().port(),
        api: closed_address().port(),
    };
    let config = world
        .yaml()
        .top(&format!("api: {{ address: 127.0.0.1:{} }}", ports.api))
        .source(
            "otel",
            &format!(
                "type: otlp\ngrpc_address: 127.0.0.1:{}\nhttp_address: 127.0.0.1:{}\n{journal}",
                ports.grpc, ports.http
            ),
        )
        .file_sink(
            "out",
            &["otel"],
            out,
            "retry: { initial_backoff_ms: 50, max_backoff_ms: 200 }",
        )
        .write(&world.path("agent.yaml"));
    (config, ports)
}

fn metric(api: u16, name: &str) -> f64 {
    source_metric(api, name, "otel").unwrap_or(0.0)
}

#[test]
fn the_python_sdk_over_grpc_and_http_and_curl_json_then_a_kill_9() {
    let world = World::new();
    // Nothing is delivered before the kill: the sink's directory is made after it.
    let out_dir = world.path("later");
    let out = out_dir.join("out.ndjson");
    let (config, ports) = otlp_config(&world, &out, "");
    let mut agent = AgentProcess::start(&config, &world.path("agent.log"));
    agent.wait_for_log(Duration::from_secs(20), "otlp source (HTTP) listening");
    let (acked_grpc, acked_http) = (world.path("acked-grpc"), world.path("acked-http"));
    let grpc = sdk_sender(
        "grpc",
        &format!("127.0.0.1:{}", ports.grpc),
        "grpc",
        0,
        300,
        &acked_grpc,
    );
    let http = sdk_sender(
        "http",
        &format!("http://127.0.0.1:{}/v1/logs", ports.http),
        "http",
        0,
        300,
        &acked_http,
    );
    finish(grpc);
    finish(http);
    assert_eq!(numbers(&acked_grpc).len(), 300);
    assert_eq!(numbers(&acked_http).len(), 300);
    let json = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"curl"}}]},"scopeLogs":[{"logRecords":[{"timeUnixNano":"1765075560000000000","severityNumber":17,"body":{"stringValue":"json 000000001 posted"},"attributes":[{"key":"n","value":{"intValue":"1"}}]}]}]}]}"#;
    let posted = Command::new("curl")
        .args([
            "-s",
            "-f",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            json,
        ])
        .arg(format!("http://127.0.0.1:{}/v1/logs", ports.http))
        .output()
        .unwrap();
    assert!(posted.status.success(), "{posted:?}");
    assert_eq!(String::from_utf8_lossy(&posted.stdout), "{}");

    agent.kill9();
    assert!(read_ndjson(&out).is_empty());
    std::fs::create_dir(&out_dir).unwrap();
    let mut agent = AgentProcess::start(&config, &world.path("agent.log"));
    agent.wait_until(
        Duration::from_secs(60),
        || format!("{} events", read_ndjson(&out).len()),
        || {
            delivered(&out, "grpc").len() == 300
                && delivered(&out, "http").len() == 300
                && delivered(&out, "json").len() == 1
        },
    );
    let events = read_ndjson(&out);
    let grpc_event = events
        .iter()
        .find(|e| e["message"] == "grpc 000000007 placed")
        .unwrap();
    assert_eq!(grpc_event["severity"], "WARN");
    assert_eq!(grpc_event["attributes"]["order.id"], 7);
    assert_eq!(grpc_event["resource"]["service.name"], "shop-grpc");
    assert_eq!(grpc_event["scope"]["name"], "orders");
    let json_event = events
        .iter()
        .find(|e| e["message"] == "json 000000001 posted")
        .unwrap();
    assert_eq!(json_event["timestamp"], "2025-12-07T02:46:00.000000Z");
    assert_eq!(json_event["attributes"]["n"], 1);
    assert!(agent.terminate(Duration::from_secs(20)).success());
    assert_eq!(read_ndjson(&out).len(), 601, "nothing shipped twice");
}

#[test]
fn a_full_journal_is_resource_exhausted_and_the_sdk_retries_until_the_sink_is_back() {
    let world = World::new();
    let out_dir = world.path("later");
    let out = out_dir.join("out.ndjson");
    let (config, ports) = otlp_config(
        &world,
        &out,
        "journal: { max_bytes: 65536, segment_bytes: 8192 }",
    );
    let mut agent = AgentProcess::start(&config, &world.path("agent.log"));
    agent.wait_for_log(Duration::from_secs(20), "otlp source (gRPC) listening");
    let acked = world.path("acked");
    let sender = sdk_sender(
        "grpc",
        &format!("127.0.0.1:{}", ports.grpc),
        "full",
        0,
        1000,
        &acked,
    );
    agent.wait_until(
        Duration::from_secs(60),
        || "a request refused for a full journal".into(),
        || metric(ports.api, "log_agent_source_requests_rejected_total") >= 1.0,
    );
    std::fs::create_dir(&out_dir).unwrap();
    finish(sender);
    let acked = numbers(&acked);
    assert!(!acked.is_empty());
    agent.wait_until(
        Duration::from_secs(60),
        || {
            format!(
                "{} of {} acked records delivered",
                delivered(&out, "full").len(),
                acked.len()
            )
        },
        || delivered(&out, "full").is_superset(&acked),
    );
    assert!(metric(ports.api, "log_agent_source_journal_segments_deleted_total") >= 1.0);
    assert!(metric(ports.api, "log_agent_source_journal_bytes") <= 65536.0);
    assert!(agent.terminate(Duration::from_secs(20)).success());
}
