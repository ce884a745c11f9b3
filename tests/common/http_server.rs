//! A real HTTP server for the HTTP sink's tests (`tests/http.rs`, `tests/http_tls.rs`), started
//! on a loopback port per test: it records what it receives (gunzipped), answers as a plain
//! NDJSON endpoint, Elasticsearch's `_bulk` or Loki's push, and can meet the first POSTs with
//! faults (a status, 429 with `Retry-After`, a slow answer, a dropped connection, a hold). It
//! also speaks HTTPS (rustls) with the certificates of [`super::pki`]. The agent's warnings are
//! captured ([`logged`]) so that a test can check what it said about a failed delivery.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::CertificateDer;

use super::{World, one_sink_config, wait_for_accepted_and_checkpointed};

/// What the server does to the next POST instead of handling it.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this status.
    Status(u16, &'static str),
    /// Answer 429 with `Retry-After: <seconds>`.
    RetryAfter(u64),
    /// Wait this long, then answer 500 (the client has given up by then).
    Slow(Duration),
    /// Close the connection without answering.
    Drop,
    /// Wait this long, then handle the request as usual.
    Hold(Duration),
}

/// How the server handles requests that are not faulted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// NDJSON events: 200.
    Ndjson,
    /// `_bulk`: messages starting with `bad` are rejected (400), those ending in a multiple of
    /// 5 are refused (429) the first time they come; a second create of an `_id` is a 409.
    Elasticsearch,
    /// Loki pushes: 204.
    Loki,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    /// The body, gunzipped when it came gzipped.
    pub body: Vec<u8>,
    pub at: Instant,
    pub fault: Option<Fault>,
}

#[derive(Default)]
pub struct State {
    pub faults: VecDeque<Fault>,
    pub requests: Vec<Received>,
    /// Events accepted (answered with a success), in order.
    pub accepted: Vec<Value>,
    /// Loki streams accepted: labels and (timestamp, line) entries.
    pub streams: Vec<(Value, Vec<(u128, String)>)>,
    /// Bulk: documents by `_id`, attempts per `_id`, 409s answered.
    pub documents: HashMap<String, Value>,
    pub bulk_attempts: HashMap<String, usize>,
    pub conflicts: usize,
    pub indices: Vec<String>,
    /// Requests being handled now, and the most at once.
    pub active: usize,
    pub most_active: usize,
    /// HTTPS: per TLS session set up, the client certificate it presented, if any.
    pub sessions: Vec<Option<CertificateDer<'static>>>,
    /// HTTPS: why each failed handshake failed, as the server saw it.
    pub handshake_failures: Vec<String>,
}

pub struct Server {
    pub addr: SocketAddr,
    /// Whether it speaks HTTPS.
    pub tls: bool,
    pub state: Arc<Mutex<State>>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Listens on a loopback port; the first POSTs meet `faults`, in order, and every answer
    /// waits a random time up to `jitter_ms`.
    pub async fn start(mode: Mode, faults: Vec<Fault>, jitter_ms: u64) -> Server {
        Server::listen(mode, faults, jitter_ms, None).await
    }

    /// Listens for HTTPS on a loopback port, with `tls` (certificate, client authentication).
    pub async fn start_tls(mode: Mode, tls: Arc<ServerConfig>) -> Server {
        Server::listen(mode, Vec::new(), 0, Some(TlsAcceptor::from(tls))).await
    }

    pub async fn listen(
        mode: Mode,
        faults: Vec<Fault>,
        jitter_ms: u64,
        tls: Option<TlsAcceptor>,
    ) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            faults: faults.into(),
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        let is_tls = tls.is_some();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                let tls = tls.clone();
                // The handshake happens in the connection's task: a slow one holds no other.
                tokio::spawn(async move {
                    let Some(acceptor) = tls else {
                        return serve(stream, state, mode, jitter_ms).await;
                    };
                    match acceptor.accept(stream).await {
                        Ok(stream) => {
                            let client = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first().cloned());
                            state.lock().unwrap().sessions.push(client);
                            serve(stream, state, mode, jitter_ms).await;
                        }
                        Err(e) => state.lock().unwrap().handshake_failures.push(e.to_string()),
                    }
                });
            }
        });
        Server {
            addr,
            tls: is_tls,
            state,
            task,
        }
    }

    /// The URI of `path`: `http://127.0.0.1:PORT`, or `https://localhost:PORT` (the name the
    /// server certificate is for).
    pub fn uri(&self, path: &str) -> String {
        if self.tls {
            format!("https://localhost:{}{path}", self.addr.port())
        } else {
            format!("http://{}{path}", self.addr)
        }
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    pub fn accepted(&self) -> Vec<Value> {
        self.state().accepted.clone()
    }

    pub fn posts(&self) -> Vec<Received> {
        self.state()
            .requests
            .iter()
            .filter(|r| r.method == "POST")
            .cloned()
            .collect()
    }
}

/// Serves HTTP/1.1 requests on one connection, plain or TLS, until it closes.
pub async fn serve<S>(stream: S, state: Arc<Mutex<State>>, mode: Mode, jitter_ms: u64)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        handle(Arc::clone(&state), mode, jitter_ms, request)
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await;
}

pub fn reply(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
}

pub async fn handle(
    state: Arc<Mutex<State>>,
    mode: Mode,
    jitter_ms: u64,
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
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    let body = if headers.get("content-encoding").map(String::as_str) == Some("gzip") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        raw.to_vec()
    };
    let is_post = parts.method == hyper::Method::POST;
    let fault = {
        let mut state = state.lock().unwrap();
        let fault = if is_post {
            state.faults.pop_front()
        } else {
            None
        };
        state.requests.push(Received {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            headers,
            body: body.clone(),
            at: Instant::now(),
            fault: fault.clone(),
        });
        state.active += 1;
        state.most_active = state.most_active.max(state.active);
        fault
    };
    if jitter_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=jitter_ms))).await;
    }
    let response = match fault {
        Some(Fault::Drop) => Err(std::io::Error::other("dropping the connection")),
        Some(Fault::Slow(wait)) => {
            tokio::time::sleep(wait).await;
            Ok(reply(500, "too late"))
        }
        Some(Fault::Status(status, text)) => Ok(reply(status, text)),
        Some(Fault::RetryAfter(seconds)) => {
            let mut response = reply(429, "slow down");
            response
                .headers_mut()
                .insert("retry-after", seconds.to_string().parse().unwrap());
            Ok(response)
        }
        Some(Fault::Hold(wait)) => {
            tokio::time::sleep(wait).await;
            Ok(state.lock().unwrap().accept(mode, &body))
        }
        None if !is_post => Ok(reply(200, "{\"status\":\"green\"}")),
        None => Ok(state.lock().unwrap().accept(mode, &body)),
    };
    state.lock().unwrap().active -= 1;
    response
}

impl State {
    pub fn accept(&mut self, mode: Mode, body: &[u8]) -> Response<Full<Bytes>> {
        match mode {
            Mode::Ndjson => {
                self.accepted.extend(ndjson(body));
                reply(200, "")
            }
            Mode::Loki => {
                let push: Value = serde_json::from_slice(body).unwrap();
                for stream in push["streams"].as_array().unwrap() {
                    let entries: Vec<(u128, String)> = stream["values"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| {
                            let nanos = v[0].as_str().unwrap().parse().unwrap();
                            (nanos, v[1].as_str().unwrap().to_owned())
                        })
                        .collect();
                    self.accepted
                        .extend(entries.iter().map(|(_, line)| json!({ "message": line })));
                    self.streams.push((stream["stream"].clone(), entries));
                }
                reply(204, "")
            }
            Mode::Elasticsearch => self.bulk(body),
        }
    }

    pub fn bulk(&mut self, body: &[u8]) -> Response<Full<Bytes>> {
        let lines = ndjson(body);
        let mut items = Vec::new();
        let mut errors = false;
        for pair in lines.chunks(2) {
            let (action, doc) = (&pair[0]["create"], &pair[1]);
            let id = action["_id"].as_str().unwrap().to_owned();
            self.indices
                .push(action["_index"].as_str().unwrap().to_owned());
            let attempts = self.bulk_attempts.entry(id.clone()).or_default();
            *attempts += 1;
            let message = doc["message"].as_str().unwrap_or_default();
            let seq: u64 = message
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(1);
            let (status, error) = if message.starts_with("bad") {
                (
                    400,
                    json!({"type": "mapper_parsing_exception", "reason": "failed to parse"}),
                )
            } else if seq.is_multiple_of(5) && *attempts == 1 {
                (
                    429,
                    json!({"type": "es_rejected_execution_exception", "reason": "queue full"}),
                )
            } else if self.documents.contains_key(&id) {
                self.conflicts += 1;
                (
                    409,
                    json!({"type": "version_conflict_engine_exception", "reason": "exists"}),
                )
            } else {
                self.documents.insert(id.clone(), doc.clone());
                self.accepted.push(doc.clone());
                (201, Value::Null)
            };
            errors |= status >= 300;
            let mut item = json!({"_id": id, "status": status});
            if !error.is_null() {
                item["error"] = error;
            }
            items.push(json!({ "create": item }));
        }
        let response = json!({"took": 1, "errors": errors, "items": items});
        reply(200, serde_json::to_vec(&response).unwrap())
    }
}

pub fn ndjson(body: &[u8]) -> Vec<Value> {
    body.split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).unwrap())
        .collect()
}

/// The agent's warnings and errors, as its log shows them, from every test of the test crate
/// (each crate, `tests/http.rs` and `tests/http_tls.rs`, is a process of its own).
pub static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Where the captured log lines are written.
pub struct LogCapture;

impl std::io::Write for LogCapture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once) the global subscriber that keeps the agent's warnings and errors in [`LOGS`]
/// and, with LOG_AGENT_LOG set, also shows the agent's logs as `Agent::start` would.
pub fn capture_logs() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let capture = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(|| LogCapture)
            .with_filter(tracing_subscriber::EnvFilter::new("log_agent=warn"));
        let shown = tracing_subscriber::EnvFilter::try_from_env("LOG_AGENT_LOG")
            .ok()
            .map(|filter| {
                tracing_subscriber::fmt::layer()
                    .with_test_writer()
                    .with_filter(filter)
            });
        tracing_subscriber::registry()
            .with(capture)
            .with(shown)
            .try_init()
            .expect("the log capture must be the first subscriber");
    });
}

/// The captured log lines that contain `needle`.
pub fn logged(needle: &str) -> Vec<String> {
    String::from_utf8_lossy(&LOGS.lock().unwrap())
        .lines()
        .filter(|line| line.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// A config with source `app` over `logs/*.log` and one http sink `web` (YAML lines `extra`
/// indented under it; small batches and quick retries unless `extra` sets them). Every test of
/// the HTTP sink builds its agent's config here, so the log capture is installed before any agent
/// starts.
pub fn http_config(world: &World, uri: &str, extra: &str) -> log_agent::Config {
    capture_logs();
    let batch = if extra.contains("batch:") {
        ""
    } else {
        "    batch: { max_events: 200, timeout_ms: 10 }\n"
    };
    let retry = if extra.contains("retry:") {
        ""
    } else {
        "    retry: { initial_backoff_ms: 10, max_backoff_ms: 100 }\n"
    };
    let keys = format!("    uri: {uri}\n{batch}{retry}{extra}\n");
    one_sink_config(world, "*.log", "web", "http", &keys)
}

/// Waits until `n` events were accepted, then until the checkpoint covers every log file.
pub async fn wait_for_accepted(server: &Server, world: &World, n: usize) {
    wait_for_accepted_and_checkpointed(world, n, "events", || server.accepted().len()).await;
}
