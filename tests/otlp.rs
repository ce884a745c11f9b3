//! The OTLP sink against real OTLP receivers that each test starts on a loopback port: a gRPC
//! server built with `tonic` on the official `LogsService` definitions, and an HTTP one
//! (hyper) that reads protobuf and OTLP JSON. Both record the records they accept and can
//! fail on demand: UNAVAILABLE, RESOURCE_EXHAUSTED with and without retry info, 429/503 with
//! `Retry-After`, permanent errors, partial success, slow answers, dropped connections, a
//! receiver that is not there yet. Checked: every line delivered once, records mapped as the
//! README's table says, compression on the wire as set, dead letters where the specification
//! says a failure is permanent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use serde_json::{Value, json};
use tonic::codec::CompressionEncoding;
use tonic_types::{ErrorDetails, StatusExt};

/// What the receiver does to the next export instead of accepting it.
#[derive(Debug, Clone, PartialEq)]
enum Fault {
    /// gRPC UNAVAILABLE, or HTTP 503 without `Retry-After`.
    Unavailable,
    /// gRPC RESOURCE_EXHAUSTED, with `RetryInfo` of that many seconds when given; HTTP 429
    /// with `Retry-After` then.
    Exhausted(Option<u64>),
    /// gRPC INVALID_ARGUMENT, HTTP 400: permanent.
    Invalid,
    /// Accept, but report that many records rejected.
    Partial(i64),
    /// Wait this long, then accept (past the sink's timeout, the agent has given up).
    Slow(Duration),
    /// HTTP only: close the connection without answering.
    Drop,
}

/// One export as received.
#[derive(Debug, Clone)]
struct Export {
    at: Instant,
    fault: Option<Fault>,
    /// Headers (HTTP) or metadata (gRPC).
    headers: BTreeMap<String, String>,
    records: usize,
    /// The body of its first record: what tells a retry of the same batch.
    first: Value,
}

#[derive(Default)]
struct State {
    faults: VecDeque<Fault>,
    exports: Vec<Export>,
    /// Records accepted, each as JSON: `message` (a string body), `body`, `attributes`,
    /// `resource`, `severity_text`, `severity_number`, `time`, `observed`.
    accepted: Vec<Value>,
    /// `ResourceLogs` per accepted request.
    resources_per_request: Vec<usize>,
}

type Shared = Arc<Mutex<State>>;

/// A receiver on a loopback port, until dropped.
struct Receiver {
    addr: SocketAddr,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// A gRPC receiver on `addr` (port 0: any) that accepts gzip and zstd requests.
    async fn grpc(addr: SocketAddr, faults: Vec<Fault>) -> Receiver {
        let state = Shared::new(Mutex::new(State {
            faults: faults.into(),
            ..State::default()
        }));
        let incoming = tonic::transport::server::TcpIncoming::bind(addr)
            .unwrap()
            .with_nodelay(Some(true));
        let addr = incoming.local_addr().unwrap();
        let service = LogsServiceServer::new(Grpc(Arc::clone(&state)))
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd);
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        Receiver { addr, state, task }
    }

    /// An HTTP receiver (`POST /v1/logs`, protobuf or JSON, gzip or zstd) on a loopback port.
    async fn http(faults: Vec<Fault>) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Shared::new(Mutex::new(State {
            faults: faults.into(),
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        http_export(Arc::clone(&state), request)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { addr, state, task }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn accepted(&self) -> Vec<Value> {
        self.state().accepted.clone()
    }

    fn exports(&self) -> Vec<Export> {
        self.state().exports.clone()
    }
}

/// Takes the next fault and records the export; what to answer.
fn receive(
    state: &Shared,
    request: &ExportLogsServiceRequest,
    headers: BTreeMap<String, String>,
) -> Option<Fault> {
    let mut state = state.lock().unwrap();
    let fault = state.faults.pop_front();
    let records = records(request);
    state.exports.push(Export {
        at: Instant::now(),
        fault: fault.clone(),
        headers,
        records: records.len(),
        first: records.first().map_or(Value::Null, |r| r["body"].clone()),
    });
    fault
}

/// Keeps the records of an accepted request.
fn accept(state: &Shared, request: &ExportLogsServiceRequest) {
    let mut state = state.lock().unwrap();
    state.accepted.extend(records(request));
    state
        .resources_per_request
        .push(request.resource_logs.len());
}

struct Grpc(Shared);

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let headers = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned()))
            .collect();
        let request = request.into_inner();
        let fault = receive(&self.0, &request, headers);
        let mut partial = None;
        match fault {
            None | Some(Fault::Drop) => {}
            Some(Fault::Unavailable) => return Err(tonic::Status::unavailable("restarting")),
            Some(Fault::Exhausted(None)) => {
                return Err(tonic::Status::resource_exhausted("queue full"));
            }
            Some(Fault::Exhausted(Some(seconds))) => {
                return Err(tonic::Status::with_error_details(
                    tonic::Code::ResourceExhausted,
                    "queue full",
                    ErrorDetails::with_retry_info(Some(Duration::from_secs(seconds))),
                ));
            }
            Some(Fault::Invalid) => return Err(tonic::Status::invalid_argument("bad records")),
            Some(Fault::Partial(rejected)) => {
                partial = Some(ExportLogsPartialSuccess {
                    rejected_log_records: rejected,
                    error_message: "records too old".into(),
                });
            }
            Some(Fault::Slow(wait)) => tokio::time::sleep(wait).await,
        }
        accept(&self.0, &request);
        Ok(tonic::Response::new(ExportLogsServiceResponse {
            partial_success: partial,
        }))
    }
}

fn reply(status: u16, headers: &[(&str, &str)], body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    response.body(Full::new(Bytes::from(body))).unwrap()
}

async fn http_export(
    state: Shared,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = request.into_parts();
    let raw = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    let body = match headers.get("content-encoding").map(String::as_str) {
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .unwrap();
            out
        }
        Some("zstd") => zstd::decode_all(&raw[..]).unwrap(),
        _ => raw.to_vec(),
    };
    let json = headers["content-type"] == "application/json";
    let request: ExportLogsServiceRequest = if json {
        serde_json::from_slice(&body).unwrap()
    } else {
        ExportLogsServiceRequest::decode(&body[..]).unwrap()
    };
    assert_eq!(parts.uri.path(), "/v1/logs");
    let content_type = if json {
        "application/json"
    } else {
        "application/x-protobuf"
    };
    let status = |code: i32, message: &str| {
        tonic_types::pb::Status {
            code,
            message: message.into(),
            details: Vec::new(),
        }
        .encode_to_vec()
    };
    let mut response = ExportLogsServiceResponse::default();
    match receive(&state, &request, headers) {
        None => {}
        Some(Fault::Drop) => return Err(std::io::Error::other("dropping the connection")),
        Some(Fault::Unavailable) => return Ok(reply(503, &[], status(14, "restarting"))),
        Some(Fault::Exhausted(None)) => return Ok(reply(429, &[], status(8, "queue full"))),
        Some(Fault::Exhausted(Some(seconds))) => {
            let after = seconds.to_string();
            return Ok(reply(
                429,
                &[("retry-after", &after)],
                status(8, "queue full"),
            ));
        }
        Some(Fault::Invalid) => return Ok(reply(400, &[], status(3, "bad records"))),
        Some(Fault::Partial(rejected)) => {
            response.partial_success = Some(ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message: "records too old".into(),
            });
        }
        Some(Fault::Slow(wait)) => tokio::time::sleep(wait).await,
    }
    accept(&state, &request);
    let body = if json {
        serde_json::to_vec(&response).unwrap()
    } else {
        response.encode_to_vec()
    };
    Ok(reply(200, &[("content-type", content_type)], body))
}

/// The records of a request as JSON, each with its resource.
fn records(request: &ExportLogsServiceRequest) -> Vec<Value> {
    let mut out = Vec::new();
    for resource_logs in &request.resource_logs {
        let resource = attributes(
            &resource_logs
                .resource
                .clone()
                .unwrap_or_default()
                .attributes,
        );
        for scope in &resource_logs.scope_logs {
            for record in &scope.log_records {
                let body = record.body.as_ref().map_or(Value::Null, any_json);
                out.push(json!({
                    "message": body.as_str().unwrap_or_default(),
                    "body": body,
                    "attributes": attributes(&record.attributes),
                    "resource": resource,
                    "scope": scope.scope.as_ref().map(|s| s.name.clone()),
                    "severity_text": record.severity_text,
                    "severity_number": record.severity_number,
                    "time": record.time_unix_nano,
                    "observed": record.observed_time_unix_nano,
                }));
            }
        }
    }
    out
}

fn attributes(values: &[KeyValue]) -> Value {
    Value::Object(
        values
            .iter()
            .map(|kv| {
                (
                    kv.key.clone(),
                    kv.value.as_ref().map_or(Value::Null, any_json),
                )
            })
            .collect(),
    )
}

fn any_json(value: &AnyValue) -> Value {
    match &value.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => json!(s),
        Some(any_value::Value::BoolValue(b)) => json!(b),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::DoubleValue(d)) => json!(d),
        Some(any_value::Value::ArrayValue(a)) => a.values.iter().map(any_json).collect(),
        Some(any_value::Value::KvlistValue(l)) => attributes(&l.values),
        Some(any_value::Value::BytesValue(b)) => json!(b),
    }
}

/// A config with source `app` over `logs/*.log` (with `source_keys`) and one otlp sink `otel`
/// to `endpoint`, with small batches and quick retries unless `extra` sets them.
fn otlp_config(world: &World, source_keys: &str, endpoint: &str, extra: &str) -> log_agent::Config {
    let mut keys = format!("endpoint: {endpoint}\ntimeout_ms: 1000\n");
    if !extra.contains("batch:") {
        keys.push_str("batch: { max_events: 200, timeout_ms: 10 }\n");
    }
    if !extra.contains("retry:") {
        keys.push_str("retry: { initial_backoff_ms: 10, max_backoff_ms: 100 }\n");
    }
    keys.push_str(extra);
    world
        .yaml()
        .top("checkpoint_interval_ms: 50\nshutdown_timeout_ms: 5000")
        .file_source("app", &[&world.log("*.log")], source_keys)
        .sink("otel", "otlp", &["app"], &keys)
        .config()
}

/// Waits until `n` records were accepted, then until the checkpoint covers every log file.
async fn wait_for_accepted(receiver: &Receiver, world: &World, n: usize) {
    let arrived = wait_for(Duration::from_secs(30), || receiver.accepted().len() >= n).await;
    assert!(
        arrived,
        "expected {n} records, got {}",
        receiver.accepted().len()
    );
    let total: u64 = std::fs::read_dir(world.logs())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        wait_for(Duration::from_secs(20), || checkpointed(&world.data())
            == total)
        .await,
        "the checkpoint did not reach the ends of the files"
    );
}

/// How long after the export that met `fault` the same batch came again.
fn retried_after(exports: &[Export], fault: &Fault) -> Duration {
    let faulted = exports
        .iter()
        .position(|e| e.fault.as_ref() == Some(fault))
        .unwrap();
    let again = exports[faulted + 1..]
        .iter()
        .find(|e| e.first == exports[faulted].first)
        .unwrap();
    again.at - exports[faulted].at
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_delivers_every_line_once_through_faults_mapped_and_gzipped() {
    let faults = vec![
        Fault::Unavailable,
        Fault::Exhausted(Some(1)),
        Fault::Slow(Duration::from_millis(1500)),
        Fault::Unavailable,
    ];
    let receiver = Receiver::grpc(loopback(), faults).await;
    let world = World::new();
    let token = world.path("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    append_numbered(&world.log("a.log"), "g", 0..2000, 60);
    let extra = format!(
        "compression: gzip\nheaders: {{ x-tenant: acme, authorization: {{ file: {} }} }}\n\
         resource: {{ service.name: shop }}\nretry: {{ initial_backoff_ms: 10, max_backoff_ms: 5000 }}\n",
        token.display()
    );
    let endpoint = format!("http://{}", receiver.addr);
    let agent = Agent::start(otlp_config(
        &world,
        "fields: { env: prod }",
        &endpoint,
        &extra,
    ));
    wait_for_accepted(&receiver, &world, 2000).await;
    let summary = agent.stop().await;
    let accepted = receiver.accepted();
    // Four exports in flight (the default): they may arrive in any order, once each.
    assert_exactly_once(&accepted, "g", 2000);
    let path = world.log("a.log").display().to_string();
    let first = accepted
        .iter()
        .find(|r| r["message"].as_str().unwrap().starts_with("g 000000000 "))
        .unwrap();
    assert_eq!(first["resource"], json!({ "service.name": "shop" }));
    assert_eq!(first["scope"], json!("log-agent"));
    let attributes = &first["attributes"];
    assert_eq!(attributes["log.file.path"], json!(path));
    assert_eq!(attributes["log.file.name"], json!("a.log"));
    assert_eq!(attributes["env"], json!("prod"));
    assert!(
        attributes["log.record.uid"]
            .as_str()
            .unwrap()
            .ends_with("-0"),
        "{attributes}"
    );
    assert!(first["observed"].as_u64().unwrap() > 1_700_000_000_000_000_000);
    let exports = receiver.exports();
    for export in &exports {
        assert_eq!(export.headers["x-tenant"], "acme");
        assert_eq!(export.headers["authorization"], "t0ken");
        assert_eq!(
            export.headers["grpc-encoding"], "gzip",
            "{:?}",
            export.headers
        );
        assert!(export.headers["user-agent"].contains("log-agent/"));
    }
    let waited = retried_after(&exports, &Fault::Exhausted(Some(1)));
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    let sink = &summary.metrics.sinks["otel"];
    assert_eq!(sink.events_out, 2000);
    assert_eq!(sink.dead_lettered, 0);
    assert!(sink.errors >= 4, "{sink:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_permanent_statuses_and_partial_success_go_to_the_dead_letters() {
    // A batch a line: each fault meets one known line.
    let faults = vec![Fault::Invalid, Fault::Exhausted(None), Fault::Partial(1)];
    let receiver = Receiver::grpc(loopback(), faults).await;
    let world = World::new();
    let endpoint = format!("http://{}", receiver.addr);
    let config = otlp_config(
        &world,
        "",
        &endpoint,
        "batch: { max_events: 1, timeout_ms: 10 }\nretry: { initial_backoff_ms: 10, max_backoff_ms: 50 }\n\
         in_flight: 1\n",
    );
    let agent = Agent::start(config);
    append_numbered(&world.log("a.log"), "d", 0..10, 40);
    wait_for_accepted(&receiver, &world, 8).await;
    let summary = agent.stop().await;
    let dead = read_ndjson(&world.data().join("dead_letter").join("otel.ndjson"));
    // Two refused for good, and the one whose batch was partly rejected (also accepted).
    assert_exactly_once(&dead, "d", 3);
    assert_eq!(counts(&receiver.accepted())["d"].len(), 8);
    assert_eq!(summary.metrics.sinks["otel"].dead_lettered, 3);
    let mut both = receiver.accepted();
    both.extend(dead.iter().take(2).cloned());
    assert_exactly_once(&both, "d", 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_receiver_that_comes_up_late_gets_every_line_once_and_nothing_is_acked_before() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let world = World::new();
    append_numbered(&world.log("a.log"), "l", 0..500, 50);
    let agent = Agent::start(otlp_config(
        &world,
        "",
        &format!("http://{addr}"),
        "compression: zstd\n",
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(checkpointed(&world.data()), 0, "acked with no receiver");
    let receiver = Receiver::grpc(addr, Vec::new()).await;
    wait_for_accepted(&receiver, &world, 500).await;
    agent.stop().await;
    assert_exactly_once(&receiver.accepted(), "l", 500);
    assert!(
        receiver
            .exports()
            .iter()
            .all(|e| e.headers["grpc-encoding"] == "zstd")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_delivers_every_line_once_through_faults_zstd_and_retry_after() {
    let faults = vec![
        Fault::Exhausted(Some(1)),
        Fault::Unavailable,
        Fault::Drop,
        Fault::Slow(Duration::from_millis(1500)),
        Fault::Exhausted(None),
    ];
    let receiver = Receiver::http(faults).await;
    let world = World::new();
    append_numbered(&world.log("a.log"), "h", 0..2000, 60);
    let endpoint = format!("http://{}", receiver.addr);
    let agent = Agent::start(otlp_config(
        &world,
        "",
        &endpoint,
        "protocol: http/protobuf\ncompression: zstd\nheaders: { x-tenant: acme }\n\
         retry: { initial_backoff_ms: 10, max_backoff_ms: 5000 }\n",
    ));
    wait_for_accepted(&receiver, &world, 2000).await;
    let summary = agent.stop().await;
    assert_exactly_once(&receiver.accepted(), "h", 2000);
    let exports = receiver.exports();
    for export in &exports {
        assert_eq!(export.headers["content-type"], "application/x-protobuf");
        assert_eq!(export.headers["content-encoding"], "zstd");
        assert_eq!(export.headers["x-tenant"], "acme");
    }
    let waited = retried_after(&exports, &Fault::Exhausted(Some(1)));
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    assert_eq!(summary.metrics.sinks["otel"].dead_lettered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_maps_parsed_lines_and_dead_letters_a_400() {
    let receiver = Receiver::http(vec![Fault::Invalid]).await;
    let world = World::new();
    let endpoint = format!("http://{}", receiver.addr);
    let agent = Agent::start(otlp_config(
        &world,
        "format: json",
        &endpoint,
        "protocol: http/json\ncompression: gzip\nbatch: { max_events: 1, timeout_ms: 10 }\n\
         in_flight: 1\n",
    ));
    let lines = [
        r#"{"level":"error","message":"first","status":500}"#,
        r#"{"level":"warn","message":"disk low","status":507,"user":{"id":7}}"#,
        r#"{"msg":"no message field","lvl":"x"}"#,
    ];
    append(&world.log("a.log"), (lines.join("\n") + "\n").as_bytes());
    wait_for_accepted(&receiver, &world, 2).await;
    agent.stop().await;
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 2, "{accepted:?}");
    assert_eq!(accepted[0]["body"], json!("disk low"));
    assert_eq!(accepted[0]["severity_text"], json!("warn"));
    assert_eq!(accepted[0]["severity_number"], json!(13));
    assert_eq!(accepted[0]["attributes"]["status"], json!(507));
    assert_eq!(accepted[0]["attributes"]["user"], json!({ "id": 7 }));
    assert_eq!(
        accepted[1]["body"],
        json!({ "msg": "no message field", "lvl": "x" })
    );
    for export in receiver.exports() {
        assert_eq!(export.headers["content-type"], "application/json");
        assert_eq!(export.headers["content-encoding"], "gzip");
    }
    let dead = read_ndjson(&world.data().join("dead_letter").join("otel.ndjson"));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["message"], json!("first"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pod_s_lines_carry_their_resource_once_per_request() {
    let receiver = Receiver::grpc(loopback(), Vec::new()).await;
    let world = World::new();
    let pods = world.logs().join("shop_web-1_0a1b-2c");
    for container in ["nginx", "app"] {
        std::fs::create_dir_all(pods.join(container)).unwrap();
        append_numbered(&pods.join(container).join("0.log"), container, 0..300, 40);
    }
    let config = world
        .yaml()
        .top("checkpoint_interval_ms: 50\nkubernetes: { node_name: node-7 }")
        .file_source("app", &[&world.logs().join("*/*/*.log")], "")
        .sink(
            "otel",
            "otlp",
            &["app"],
            &format!(
                "endpoint: http://{}\nbatch: {{ max_events: 1000, timeout_ms: 300 }}\n",
                receiver.addr
            ),
        )
        .config();
    let agent = Agent::start(config);
    assert!(wait_for(Duration::from_secs(30), || receiver.accepted().len() >= 600).await);
    agent.stop().await;
    let accepted = receiver.accepted();
    assert_exactly_once(&accepted, "nginx", 300);
    assert_exactly_once(&accepted, "app", 300);
    let nginx = accepted
        .iter()
        .find(|r| r["message"].as_str().unwrap().starts_with("nginx "))
        .unwrap();
    assert_eq!(
        nginx["resource"],
        json!({
            "k8s.namespace.name": "shop",
            "k8s.pod.name": "web-1",
            "k8s.pod.uid": "0a1b-2c",
            "k8s.container.name": "nginx",
            "k8s.container.restart_count": 0,
            "k8s.node.name": "node-7",
            "service.name": "nginx",
        })
    );
    // Two containers: at most two resources in any request, never one per record.
    let state = receiver.state();
    assert!(state.resources_per_request.iter().all(|n| *n <= 2));
    assert!(state.exports.iter().any(|e| e.records > 2));
}
