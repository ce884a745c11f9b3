//! An independent check of the OTLP sink: a receiver written with the Python
//! `opentelemetry-proto` package (PyPI, installed by `.ci/deps`), not with the Rust definitions
//! the agent uses, decodes what the agent sent over HTTP/protobuf and finds the same records:
//! every numbered line once, the parsed fields, severity, file attributes and the pod resource.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// The Python receiver, killed when dropped.
struct PythonReceiver {
    child: Child,
    port: u16,
}

impl PythonReceiver {
    fn start(out: &Path) -> PythonReceiver {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/otlp_receiver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(out)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let port = first.trim().parse().unwrap_or_else(|_| {
            let status = child.wait().unwrap();
            panic!(
                "the Python receiver did not start ({status}): is the opentelemetry-proto \
                 package installed (`bash .ci/deps` installs it)?"
            )
        });
        PythonReceiver { child, port }
    }
}

impl Drop for PythonReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_opentelemetry_proto_decodes_the_same_records() {
    let world = World::new();
    let out = world.path("python.ndjson");
    let receiver = PythonReceiver::start(&out);
    let pod_dir = world.logs().join("shop_web-1_0a1b-2c").join("nginx");
    std::fs::create_dir_all(&pod_dir).unwrap();
    let raw = pod_dir.join("0.log");
    append_numbered(&raw, "p", 0..1000, 50);
    let parsed = world.log("app.json");
    let lines: String = (0..100)
        .map(|i| format!("{{\"level\":\"warn\",\"message\":\"j {i:09}\",\"status\":{i}}}\n"))
        .collect();
    append(&parsed, lines.as_bytes());
    let sink = format!(
        "endpoint: http://127.0.0.1:{}\nprotocol: http/protobuf\ncompression: gzip\n\
         batch: {{ max_events: 150, timeout_ms: 10 }}\nresource: {{ deployment.environment.name: test }}",
        receiver.port
    );
    let config = world
        .yaml()
        .top("checkpoint_interval_ms: 50")
        .file_source("pods", &[&world.logs().join("*/*/*.log")], "")
        .file_source("app", &[&parsed], "format: json")
        .sink("otel", "otlp", &["pods", "app"], &sink)
        .config();
    let agent = Agent::start(config);
    let records = || {
        if !out.exists() {
            return Vec::new();
        }
        read_ndjson(&out)
    };
    assert!(
        wait_for(Duration::from_secs(30), || records().len() >= 1100).await,
        "{} records decoded",
        records().len()
    );
    agent.stop().await;
    // The numbered helpers read `message`: the string body is the message.
    let as_events: Vec<Value> = records()
        .into_iter()
        .map(|mut r| {
            r["message"] = r["body"].clone();
            r
        })
        .collect();
    assert_exactly_once(&as_events, "p", 1000);
    assert_exactly_once(&as_events, "j", 100);
    let first_raw = as_events
        .iter()
        .find(|r| r["body"].as_str().unwrap().starts_with("p 000000000 "))
        .unwrap();
    assert_eq!(
        first_raw["resource"],
        json!({
            "k8s.namespace.name": "shop",
            "k8s.pod.name": "web-1",
            "k8s.pod.uid": "0a1b-2c",
            "k8s.container.name": "nginx",
            "k8s.container.restart_count": 0,
            "service.name": "nginx",
            "deployment.environment.name": "test",
        })
    );
    assert_eq!(first_raw["scope"], json!("log-agent"));
    assert_eq!(
        first_raw["attributes"]["log.file.path"],
        json!(raw.display().to_string())
    );
    assert_eq!(first_raw["attributes"]["log.file.name"], json!("0.log"));
    assert_eq!(first_raw["time_unix_nano"], json!(0));
    assert!(first_raw["observed_time_unix_nano"].as_u64().unwrap() > 1_700_000_000_000_000_000);
    let seventh = as_events
        .iter()
        .find(|r| r["body"] == json!("j 000000007"))
        .unwrap();
    assert_eq!(seventh["severity_text"], json!("warn"));
    assert_eq!(seventh["severity_number"], json!(13));
    assert_eq!(seventh["attributes"]["status"], json!(7));
    assert_eq!(seventh["attributes"]["log.file.name"], json!("app.json"));
    assert_eq!(
        seventh["resource"],
        json!({ "deployment.environment.name": "test" })
    );
}
