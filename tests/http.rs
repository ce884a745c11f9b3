//! The HTTP sink against a real HTTP server that each test starts on a loopback port: it
//! records what it receives and can answer 500, 429 with `Retry-After`, slowly, or drop the
//! connection. Checked: exactly-once delivery despite those faults, gzip bodies, headers and
//! auth, dead letters, requests in flight, Elasticsearch bulk items, Loki streams. The same
//! server also speaks HTTPS (rustls), with certificates a CA made by the test signs: a custom
//! CA, a server the sink does not trust, mutual TLS with and without a client certificate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::pki::{Issued, Pki};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::CertificateDer;

/// What the server does to the next POST instead of handling it.
#[derive(Debug, Clone)]
enum Fault {
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
enum Mode {
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
struct Received {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    /// The body, gunzipped when it came gzipped.
    body: Vec<u8>,
    at: Instant,
    fault: Option<Fault>,
}

#[derive(Default)]
struct State {
    faults: VecDeque<Fault>,
    requests: Vec<Received>,
    /// Events accepted (answered with a success), in order.
    accepted: Vec<Value>,
    /// Loki streams accepted: labels and (timestamp, line) entries.
    streams: Vec<(Value, Vec<(u128, String)>)>,
    /// Bulk: documents by `_id`, attempts per `_id`, 409s answered.
    documents: HashMap<String, Value>,
    bulk_attempts: HashMap<String, usize>,
    conflicts: usize,
    indices: Vec<String>,
    /// Requests being handled now, and the most at once.
    active: usize,
    most_active: usize,
    /// HTTPS: per TLS session set up, the client certificate it presented, if any.
    sessions: Vec<Option<CertificateDer<'static>>>,
    /// HTTPS: why each failed handshake failed, as the server saw it.
    handshake_failures: Vec<String>,
}

struct Server {
    addr: SocketAddr,
    /// Whether it speaks HTTPS.
    tls: bool,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Listens on a loopback port; the first POSTs meet `faults`, in order, and every answer
    /// waits a random time up to `jitter_ms`.
    async fn start(mode: Mode, faults: Vec<Fault>, jitter_ms: u64) -> Server {
        Server::listen(mode, faults, jitter_ms, None).await
    }

    /// Listens for HTTPS on a loopback port, with `tls` (certificate, client authentication).
    async fn start_tls(mode: Mode, tls: Arc<ServerConfig>) -> Server {
        Server::listen(mode, Vec::new(), 0, Some(TlsAcceptor::from(tls))).await
    }

    async fn listen(
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
    fn uri(&self, path: &str) -> String {
        if self.tls {
            format!("https://localhost:{}{path}", self.addr.port())
        } else {
            format!("http://{}{path}", self.addr)
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn accepted(&self) -> Vec<Value> {
        self.state().accepted.clone()
    }

    fn posts(&self) -> Vec<Received> {
        self.state()
            .requests
            .iter()
            .filter(|r| r.method == "POST")
            .cloned()
            .collect()
    }
}

/// Serves HTTP/1.1 requests on one connection, plain or TLS, until it closes.
async fn serve<S>(stream: S, state: Arc<Mutex<State>>, mode: Mode, jitter_ms: u64)
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

fn reply(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
}

async fn handle(
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
    fn accept(&mut self, mode: Mode, body: &[u8]) -> Response<Full<Bytes>> {
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

    fn bulk(&mut self, body: &[u8]) -> Response<Full<Bytes>> {
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
            } else if seq % 5 == 0 && *attempts == 1 {
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

fn ndjson(body: &[u8]) -> Vec<Value> {
    body.split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).unwrap())
        .collect()
}

/// The agent's warnings and errors, as its log shows them, from every test of this file.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Where the captured log lines are written.
struct LogCapture;

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
fn capture_logs() {
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
fn logged(needle: &str) -> Vec<String> {
    String::from_utf8_lossy(&LOGS.lock().unwrap())
        .lines()
        .filter(|line| line.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// A config with source `app` over `logs/*.log` and one http sink `web` (YAML lines `extra`
/// indented under it; small batches and quick retries unless `extra` sets them). Every test of
/// this file builds its agent's config here, so the log capture is installed before any agent
/// starts.
fn http_config(world: &World, uri: &str, extra: &str) -> log_agent::Config {
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
async fn wait_for_accepted(server: &Server, world: &World, n: usize) {
    wait_for_accepted_and_checkpointed(world, n, "events", || server.accepted().len()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_lines_arrive_once_in_order_despite_faults_gzipped_with_headers_and_auth() {
    let faults = vec![
        Fault::Status(500, "boom"),
        Fault::Slow(Duration::from_millis(1500)),
        Fault::Drop,
        Fault::Status(503, "unavailable"),
        Fault::Status(408, "request timeout"),
        Fault::Status(429, "no Retry-After"),
    ];
    let server = Server::start(Mode::Ndjson, faults, 0).await;
    let world = World::new();
    let token = world.dir.path().join("token");
    std::fs::write(&token, "s3cr3t\n").unwrap();
    append_numbered(&world.log("a.log"), "n", 0..3000, 60);
    let extra = format!(
        "    compression: gzip
    timeout_ms: 500
    headers: {{ X-Tenant: acme, X-Api-Key: {{ file: {token} }} }}
    auth: {{ strategy: bearer, token: {{ file: {token} }} }}",
        token = token.display()
    );
    let agent = Agent::start(http_config(&world, &server.uri("/ingest"), &extra));
    wait_for_accepted(&server, &world, 3000).await;
    let summary = agent.stop().await;
    let events = server.accepted();
    assert_exactly_once(&events, "n", 3000);
    assert_at_least_once_in_order(&events, "n", 3000);
    let posts = server.posts();
    assert!(posts.len() >= 15 + 6, "{} requests", posts.len());
    for post in &posts {
        assert_eq!(post.path, "/ingest");
        assert_eq!(post.headers["content-encoding"], "gzip");
        assert_eq!(post.headers["content-type"], "application/x-ndjson");
        assert_eq!(post.headers["authorization"], "Bearer s3cr3t");
        assert_eq!(post.headers["x-tenant"], "acme");
        assert_eq!(post.headers["x-api-key"], "s3cr3t");
    }
    let sink = &summary.metrics.sinks["web"];
    assert!(sink.errors >= 6, "{sink:?}");
    assert_eq!(sink.events_out, 3000);
    assert_eq!(sink.dead_lettered, 0);
    assert!(
        server.state().requests.iter().all(|r| r.method == "POST"),
        "ndjson has no healthcheck unless a uri is given"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_waited_for() {
    let server = Server::start(Mode::Ndjson, vec![Fault::RetryAfter(1)], 0).await;
    let world = World::new();
    append_numbered(&world.log("a.log"), "r", 0..10, 40);
    let agent = Agent::start(http_config(
        &world,
        &server.uri("/"),
        "    retry: { initial_backoff_ms: 10, max_backoff_ms: 5000 }",
    ));
    wait_for_accepted(&server, &world, 10).await;
    agent.stop().await;
    assert_exactly_once(&server.accepted(), "r", 10);
    let posts = server.posts();
    assert!(matches!(posts[0].fault, Some(Fault::RetryAfter(1))));
    let waited = posts[1].at - posts[0].at;
    assert!(
        waited >= Duration::from_secs(1),
        "retried after {waited:?}, before the server's Retry-After"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_4xx_dead_letter_the_batch_and_the_rest_flows() {
    let server = Server::start(
        Mode::Ndjson,
        vec![Fault::Status(400, "field [x] is not allowed")],
        0,
    )
    .await;
    let world = World::new();
    let agent = Agent::start(http_config(&world, &server.uri("/"), ""));
    append_numbered(&world.log("a.log"), "p", 0..10, 40);
    let dead = world.data().join("dead_letter").join("web.ndjson");
    assert!(wait_for(Duration::from_secs(20), || read_ndjson(&dead).len() == 10).await);
    append_numbered(&world.log("a.log"), "p", 10..20, 40);
    wait_for_accepted(&server, &world, 10).await;
    let summary = agent.stop().await;
    assert_exactly_once(&read_ndjson(&dead), "p", 10);
    let delivered: Vec<Value> = server.accepted();
    assert_eq!(
        counts(&delivered)["p"].keys().copied().collect::<Vec<_>>(),
        (10..20).collect::<Vec<_>>()
    );
    assert_eq!(summary.metrics.sinks["web"].dead_lettered, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_overlap_and_every_file_is_acked_to_its_end() {
    let faults = vec![
        Fault::Status(500, "a"),
        Fault::Drop,
        Fault::Status(502, "b"),
    ];
    let server = Server::start(Mode::Ndjson, faults, 30).await;
    let world = World::new();
    append_numbered(&world.log("a.log"), "a", 0..2000, 50);
    append_numbered(&world.log("b.log"), "b", 0..2000, 50);
    let agent = Agent::start(http_config(
        &world,
        &server.uri("/"),
        "    in_flight: 4\n    batch: { max_events: 50, timeout_ms: 10 }",
    ));
    wait_for_accepted(&server, &world, 4000).await;
    let summary = agent.stop().await;
    let events = server.accepted();
    assert_exactly_once(&events, "a", 2000);
    assert_exactly_once(&events, "b", 2000);
    assert!(server.state().most_active > 1, "requests never overlapped");
    assert_eq!(summary.metrics.sinks["web"].events_out, 4000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_first_request_holds_the_checkpoint_while_later_ones_are_delivered() {
    let hold = Fault::Hold(Duration::from_secs(3));
    let server = Server::start(Mode::Ndjson, vec![hold], 0).await;
    let world = World::new();
    append_numbered(&world.log("a.log"), "h", 0..200, 40);
    let agent = Agent::start(http_config(
        &world,
        &server.uri("/"),
        "    in_flight: 4\n    batch: { max_events: 50, timeout_ms: 10 }",
    ));
    assert!(wait_for(Duration::from_secs(20), || server.accepted().len() >= 150).await);
    // Let a checkpoint write happen, should anything (wrongly) have been acked.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let checkpoint = checkpointed(&world.data());
    // Requests race to the server: the one held may be any of the four batches.
    let held = server.posts().first().cloned().unwrap();
    assert!(
        held.at.elapsed() < Duration::from_secs(3),
        "too slow to tell"
    );
    let held_from = ndjson(&held.body)[0]["offset"].as_u64().unwrap();
    assert_eq!(
        checkpoint, held_from,
        "the checkpoint must stop at the batch still in flight, after every batch before it"
    );
    wait_for_accepted(&server, &world, 200).await;
    agent.stop().await;
    assert_exactly_once(&server.accepted(), "h", 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_bulk_items_are_retried_or_dead_lettered_one_by_one() {
    let server = Server::start(Mode::Elasticsearch, vec![Fault::Status(503, "busy")], 0).await;
    let world = World::new();
    let mut text = String::new();
    for seq in 0..300u64 {
        if seq % 10 == 3 {
            text.push_str(&format!("bad {seq:09} unparseable\n"));
        } else {
            text.push_str(&numbered("e", seq, 40));
        }
    }
    append(&world.log("a.log"), text.as_bytes());
    let agent = Agent::start(http_config(
        &world,
        &server.uri("/_bulk"),
        "    encoding: elasticsearch\n    elasticsearch: { index: \"logs-{{ source }}-%Y.%m.%d\" }",
    ));
    wait_for_accepted(&server, &world, 270).await;
    let summary = agent.stop().await;
    let good: Vec<u64> = (0..300).filter(|s| s % 10 != 3).collect();
    let docs = server.accepted();
    let seen = counts(&docs);
    assert_eq!(seen["e"].keys().copied().collect::<Vec<_>>(), good);
    assert!(seen["e"].values().all(|&n| n == 1));
    let state = server.state();
    assert_eq!(state.conflicts, 0, "items already indexed were sent again");
    for (id, attempts) in &state.bulk_attempts {
        let doc_seq = id.rsplit('-').next().unwrap();
        assert!(
            *attempts <= 2,
            "{id} sent {attempts} times (offset {doc_seq})"
        );
    }
    let today = chrono::Utc::now().format("logs-app-%Y.%m.%d").to_string();
    assert!(
        state.indices.iter().all(|i| *i == today),
        "{:?}",
        &state.indices[..3]
    );
    assert!(
        state
            .requests
            .iter()
            .any(|r| r.method == "GET" && r.path == "/_cluster/health"),
        "no healthcheck"
    );
    drop(state);
    let dead = read_ndjson(&world.data().join("dead_letter").join("web.ndjson"));
    let bad: Vec<String> = dead
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(bad.len(), 30, "{bad:?}");
    assert!(bad.iter().all(|m| m.starts_with("bad ")), "{bad:?}");
    let sink = &summary.metrics.sinks["web"];
    assert_eq!(sink.dead_lettered, 30);
    assert_eq!(sink.events_out, 270);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_streams_are_grouped_by_labels_and_ordered() {
    let server = Server::start(Mode::Loki, vec![Fault::Status(500, "ingester down")], 0).await;
    let world = World::new();
    append_numbered(&world.log("a.log"), "a", 0..500, 40);
    append_numbered(&world.log("b.log"), "b", 0..500, 40);
    let agent = Agent::start(http_config(
        &world,
        &server.uri("/loki/api/v1/push"),
        "    encoding: loki
    compression: gzip
    loki: { labels: { app: \"{{ source }}\", file: \"{{ file }}\" }, line: text }",
    ));
    wait_for_accepted(&server, &world, 1000).await;
    agent.stop().await;
    let events = server.accepted();
    assert_exactly_once(&events, "a", 500);
    assert_exactly_once(&events, "b", 500);
    let state = server.state();
    assert!(
        state
            .requests
            .iter()
            .any(|r| r.method == "GET" && r.path == "/ready")
    );
    // Per stream, over every push in arrival order: lines in file order, times never back.
    let mut per_stream: BTreeMap<String, Vec<(u128, String)>> = BTreeMap::new();
    for (labels, entries) in &state.streams {
        assert_eq!(labels["app"], "app");
        let file = labels["file"].as_str().unwrap().to_owned();
        per_stream.entry(file).or_default().extend(entries.clone());
    }
    assert_eq!(per_stream.len(), 2);
    for (file, entries) in per_stream {
        let tag = if file.ends_with("a.log") { "a " } else { "b " };
        assert!(
            entries.iter().all(|(_, line)| line.starts_with(tag)),
            "{file}"
        );
        assert!(
            entries.windows(2).all(|w| w[0].0 <= w[1].0),
            "{file}: time went back"
        );
        assert!(
            entries.windows(2).all(|w| w[0].1 < w[1].1),
            "{file}: lines out of order"
        );
    }
}

/// A world, a CA made for it and an HTTPS server on loopback for `localhost`, with a
/// certificate that CA signed; with `client_auth` the server requires a client certificate
/// the CA signed too.
async fn https_world(client_auth: bool) -> (World, Pki, Server) {
    let world = World::new();
    let pki = Pki::new(&world.dir.path().join("pki"));
    let tls = pki.server_config(&pki.server(), client_auth);
    let server = Server::start_tls(Mode::Ndjson, tls).await;
    (world, pki, server)
}

/// The `tls:` section of a sink: the CA file and, when given, the client certificate.
fn tls_yaml(ca_file: Option<&Path>, client: Option<&Issued>) -> String {
    let mut keys = Vec::new();
    if let Some(ca) = ca_file {
        keys.push(format!("ca_file: {}", ca.display()));
    }
    if let Some(client) = client {
        keys.push(format!("cert_file: {}", client.cert_file.display()));
        keys.push(format!("key_file: {}", client.key_file.display()));
    }
    format!("    tls: {{ {} }}", keys.join(", "))
}

/// Runs an agent over `world` whose requests to `server` cannot get through TLS: waits for
/// several failed handshakes (the sink retries, the agent runs on), then stops it. Checks that
/// nothing was received, acked or dead-lettered, that the agent's log gives `sink_reason` for a
/// retry and that every handshake failed on the server for `server_reason`.
async fn run_refused(
    server: &Server,
    world: &World,
    extra: &str,
    sink_reason: &str,
    server_reason: &str,
) {
    let log = world.log("a.log");
    append_numbered(&log, "x", 0..100, 40);
    // A path of its own, so that this run's log lines are told from any other's.
    let uri = server.uri(&format!("/ingest/{:016x}", fastrand::u64(..)));
    let agent = Agent::start(http_config(world, &uri, extra));
    let failed = || server.state().handshake_failures.len();
    assert!(
        wait_for(Duration::from_secs(20), || failed() >= 3).await,
        "{} failed handshakes, {} sessions",
        failed(),
        server.state().sessions.len()
    );
    assert!(
        wait_for(Duration::from_secs(20), || logged(&uri).len() >= 3).await,
        "no retries logged for {uri}"
    );
    let handshake_failures = server.state().handshake_failures.clone();
    // Let a checkpoint write happen, should anything (wrongly) have been acked.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(checkpointed(&world.data()), 0, "acked while refused");
    let summary = agent.stop().await;
    assert!(!summary.drained, "nothing could be delivered");
    assert_eq!(
        Checkpoints::read(&world.data()).offset_of(&log),
        Some(0),
        "the file is tracked and nothing of it is acked"
    );
    let sink = &summary.metrics.sinks["web"];
    assert!(sink.errors >= 3, "{sink:?}");
    assert!(sink.retries >= 2, "{sink:?}");
    assert_eq!(sink.events_out, 0, "{sink:?}");
    assert_eq!(
        sink.dead_lettered, 0,
        "a TLS failure is not permanent: {sink:?}"
    );
    assert!(
        !world.data().join("dead_letter").join("web.ndjson").exists(),
        "dead-lettered"
    );
    let state = server.state();
    assert!(state.sessions.is_empty(), "a handshake succeeded");
    assert!(state.requests.is_empty(), "a request got through");
    assert!(state.accepted.is_empty());
    let lines = logged(&uri);
    for line in &lines {
        assert!(
            line.contains("delivery failed; will retry"),
            "not a retry: {line}"
        );
    }
    assert!(
        lines.iter().any(|line| line.contains(sink_reason)),
        "no `{sink_reason}` in {lines:#?}"
    );
    assert!(
        handshake_failures.iter().all(|e| e.contains(server_reason)),
        "not all `{server_reason}`: {handshake_failures:?}"
    );
}

/// Runs an agent over `world` that sends 1000 numbered lines of `tag` to `server` with the
/// sink settings `extra`: each arrives exactly once. Returns the client certificate each TLS
/// session presented.
async fn run_delivered(
    server: &Server,
    world: &World,
    tag: &str,
    extra: &str,
) -> Vec<Option<CertificateDer<'static>>> {
    append_numbered(&world.log("a.log"), tag, 0..1000, 60);
    let agent = Agent::start(http_config(world, &server.uri("/ingest"), extra));
    wait_for_accepted(server, world, 1000).await;
    let summary = agent.stop().await;
    let events = server.accepted();
    assert_exactly_once(&events, tag, 1000);
    assert_at_least_once_in_order(&events, tag, 1000);
    assert_eq!(summary.metrics.sinks["web"].events_out, 1000);
    let state = server.state();
    assert!(state.requests.iter().all(|r| r.path == "/ingest"));
    assert_eq!(state.handshake_failures, Vec::<String>::new());
    assert!(!state.sessions.is_empty());
    state.sessions.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_ca_file_delivers_every_line_once() {
    let (world, pki, server) = https_world(false).await;
    assert!(server.uri("/").starts_with("https://localhost:"));
    let extra = tls_yaml(Some(&pki.ca_file), None);
    let sessions = run_delivered(&server, &world, "t", &extra).await;
    assert!(
        sessions.iter().all(Option::is_none),
        "no client certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_without_the_ca_file_is_retried_and_nothing_is_acked() {
    let (world, _pki, server) = https_world(false).await;
    // The sink does not trust the server's certificate, says so, and tells the server.
    run_refused(
        &server,
        &world,
        "",
        "invalid peer certificate: UnknownIssuer",
        "received fatal alert: UnknownCA",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_the_client_certificate_delivers_every_line_once() {
    let (world, pki, server) = https_world(true).await;
    let client = pki.client();
    let extra = tls_yaml(Some(&pki.ca_file), Some(&client));
    let sessions = run_delivered(&server, &world, "m", &extra).await;
    assert!(
        sessions
            .iter()
            .all(|presented| presented.as_ref() == Some(&client.cert)),
        "every session must present the configured client certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_without_a_client_certificate_is_retried_and_nothing_is_acked() {
    let (world, pki, server) = https_world(true).await;
    // The server wants a certificate the sink does not have, and tells it so.
    run_refused(
        &server,
        &world,
        &tls_yaml(Some(&pki.ca_file), None),
        "received fatal alert: CertificateRequired",
        "peer sent no certificates",
    )
    .await;
}
