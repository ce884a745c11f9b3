//! OTLP receivers for the tests, on loopback ports: a gRPC server built with `tonic` on the
//! official `LogsService` definitions (plain or TLS), and an HTTP one (hyper) that reads
//! protobuf and OTLP JSON. Both keep the records they accept, as JSON, and can fail on demand
//! ([`Fault`]): what the OTLP sink is tested against.

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
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

use super::pki::Pki;

/// What the receiver does to the next export instead of accepting it.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
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
pub struct Export {
    pub at: Instant,
    pub fault: Option<Fault>,
    /// Headers (HTTP) or metadata (gRPC).
    pub headers: BTreeMap<String, String>,
    pub records: usize,
    /// The body of its first record: what tells a retry of the same batch.
    pub first: Value,
}

#[derive(Default)]
pub struct State {
    pub faults: VecDeque<Fault>,
    pub exports: Vec<Export>,
    /// Records accepted, each as JSON: `message` (a string body), `body`, `attributes`,
    /// `resource`, `severity_text`, `severity_number`, `time`, `observed`.
    pub accepted: Vec<Value>,
    /// `ResourceLogs` per accepted request.
    pub resources_per_request: Vec<usize>,
}

type Shared = Arc<Mutex<State>>;

/// A receiver on a loopback port, until dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    pub state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// A gRPC receiver on `addr` (port 0: any) that accepts gzip and zstd requests.
    pub async fn grpc(addr: SocketAddr, faults: Vec<Fault>) -> Receiver {
        Receiver::grpc_with(addr, faults, None).await
    }

    /// A gRPC receiver over TLS on a loopback port, presenting a certificate `pki` signed for
    /// `localhost`; with `client_auth`, requiring a client certificate it signed.
    pub async fn grpc_tls(pki: &Pki, client_auth: bool) -> Receiver {
        let server = pki.server();
        let read = |path: &std::path::Path| std::fs::read(path).unwrap();
        let mut tls = tonic::transport::ServerTlsConfig::new().identity(
            tonic::transport::Identity::from_pem(read(&server.cert_file), read(&server.key_file)),
        );
        if client_auth {
            tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(read(&pki.ca_file)));
        }
        Receiver::grpc_with("127.0.0.1:0".parse().unwrap(), Vec::new(), Some(tls)).await
    }

    async fn grpc_with(
        addr: SocketAddr,
        faults: Vec<Fault>,
        tls: Option<tonic::transport::ServerTlsConfig>,
    ) -> Receiver {
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
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).unwrap();
        }
        let task = tokio::spawn(async move {
            let _ = builder
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        Receiver { addr, state, task }
    }

    /// An HTTP receiver (`POST /v1/logs`, protobuf or JSON, gzip or zstd) on a loopback port.
    pub async fn http(faults: Vec<Fault>) -> Receiver {
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

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    pub fn accepted(&self) -> Vec<Value> {
        self.state().accepted.clone()
    }

    pub fn exports(&self) -> Vec<Export> {
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
pub fn records(request: &ExportLogsServiceRequest) -> Vec<Value> {
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

/// How long after the export that met `fault` the same batch came again.
pub fn retried_after(exports: &[Export], fault: &Fault) -> Duration {
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
