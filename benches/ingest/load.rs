//! The senders of the ingest harness: concurrent clients over OTLP/gRPC (tonic, as the SDKs'
//! exporters), OTLP/HTTP protobuf and NDJSON (reqwest), each sending a request and waiting for
//! its answer before the next, timing every request.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// How the records are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
    Ndjson,
}

/// What a set of senders got.
#[derive(Debug, Default)]
pub struct Totals {
    /// Records answered with success.
    pub records: u64,
    /// Requests refused (backpressure or error).
    pub refused: u64,
    latencies: Vec<Duration>,
}

impl Totals {
    /// The latency at quantile `q` of the successful requests.
    pub fn percentile(&self, q: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let at = ((sorted.len() - 1) as f64 * q).round() as usize;
        sorted[at.min(sorted.len() - 1)]
    }

    fn add(&mut self, other: Totals) {
        self.records += other.records;
        self.refused += other.refused;
        self.latencies.extend(other.latencies);
    }
}

fn text(value: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(value.to_owned())),
    })
}

fn int(value: i64) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::IntValue(value)),
    })
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value,
    }
}

/// A request of `batch` records as an SDK sends them.
pub fn request(sender: usize, batch: usize) -> ExportLogsServiceRequest {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let records = (0..batch)
        .map(|i| LogRecord {
            time_unix_nano: now + i as u64,
            observed_time_unix_nano: now + i as u64,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: text(&format!(
                "GET /api/orders/{:06} 200 in {} ms from 10.1.{}.{}",
                i * 7919 % 1_000_000,
                i % 97,
                sender % 256,
                i % 256
            )),
            attributes: vec![
                kv("http.request.method", text("GET")),
                kv("http.route", text("/api/orders/{id}")),
                kv("http.response.status_code", int(200)),
                kv(
                    "user.id",
                    text(&format!("u-{:05}", (sender * 31 + i) % 100_000)),
                ),
                kv("order.id", int((i * 7919) as i64)),
            ],
            trace_id: vec![7; 16],
            span_id: vec![9; 8],
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", text("shop")),
                    kv("service.version", text("1.4.2")),
                    kv("k8s.namespace.name", text("prod")),
                    kv("k8s.pod.name", text(&format!("shop-7d9f-{sender:04}"))),
                    kv("host.name", text("node-3")),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "shop.orders".into(),
                    ..Default::default()
                }),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The same records as NDJSON lines.
fn ndjson(sender: usize, batch: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..batch {
        let line = serde_json::json!({
            "message": format!("GET /api/orders/{:06} 200 in {} ms", i * 7919 % 1_000_000, i % 97),
            "level": "info",
            "http.route": "/api/orders/{id}",
            "status": 200,
            "user": format!("u-{:05}", (sender * 31 + i) % 100_000),
            "order": i * 7919,
        });
        body.extend_from_slice(line.to_string().as_bytes());
        body.push(b'\n');
    }
    body
}

/// Waits until `target` accepts connections.
pub async fn wait_until_listening(target: &str) {
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(target).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{target} never listened");
}

/// Runs `senders` senders for `duration`; their totals.
pub async fn drive(
    protocol: Protocol,
    target: &str,
    senders: usize,
    batch: usize,
    duration: Duration,
) -> Totals {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for sender in 0..senders {
        let target = target.to_owned();
        tasks.push(tokio::spawn(async move {
            match protocol {
                Protocol::Grpc => grpc_sender(&target, sender, batch, deadline).await,
                Protocol::HttpProtobuf | Protocol::Ndjson => {
                    http_sender(protocol, &target, sender, batch, deadline).await
                }
            }
        }));
    }
    let mut totals = Totals::default();
    for task in tasks {
        totals.add(task.await.unwrap());
    }
    totals
}

async fn grpc_sender(target: &str, sender: usize, batch: usize, deadline: Instant) -> Totals {
    let mut client = LogsServiceClient::connect(format!("http://{target}"))
        .await
        .unwrap();
    let request = request(sender, batch);
    let mut totals = Totals::default();
    while Instant::now() < deadline {
        let started = Instant::now();
        match client.export(request.clone()).await {
            Ok(_) => {
                totals.latencies.push(started.elapsed());
                totals.records += batch as u64;
            }
            Err(_) => {
                totals.refused += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    totals
}

async fn http_sender(
    protocol: Protocol,
    target: &str,
    sender: usize,
    batch: usize,
    deadline: Instant,
) -> Totals {
    let client = reqwest::Client::new();
    let (url, content_type, body) = match protocol {
        Protocol::Ndjson => (
            format!("http://{target}/"),
            "application/x-ndjson",
            ndjson(sender, batch),
        ),
        _ => (
            format!("http://{target}/v1/logs"),
            "application/x-protobuf",
            prost::Message::encode_to_vec(&request(sender, batch)),
        ),
    };
    let mut totals = Totals::default();
    while Instant::now() < deadline {
        let started = Instant::now();
        let answer = client
            .post(&url)
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await;
        match answer {
            Ok(response) if response.status().is_success() => {
                let _ = response.bytes().await;
                totals.latencies.push(started.elapsed());
                totals.records += batch as u64;
            }
            _ => {
                totals.refused += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    totals
}

/// A sample of the agent's metrics, by its full name with labels (0 when absent).
pub fn metric(api: u16, name: &str) -> f64 {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", api)) else {
        return 0.0;
    };
    let _ = stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}
