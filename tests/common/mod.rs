//! The harness every integration test shares: temporary worlds, the agent run in-process
//! ([`Agent`]) or as a process ([`process::AgentProcess`]), configs ([`yaml`]), the checkpoint
//! file read back ([`checkpoints`]), numbered lines and the checks on what a sink received
//! ([`numbered`]), Kafka and HTTP clients, a test HTTP server ([`http_server`]). The model test's
//! harness is apart, in `model/` (only `tests/model*.rs` include it).
// Each test crate uses a part of the harness: the rest is dead code, or an unused re-export, there.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

pub mod broker;
pub mod checkpoints;
pub mod compress;
pub mod http_server;
pub mod numbered;
pub mod oracle;
pub mod otlp;
pub mod pki;
pub mod process;
pub mod tools;
pub mod yaml;

pub use checkpoints::{Checkpoints, checkpointed};
pub use numbered::*;
pub use yaml::{AgentYaml, FAST, config, config_yaml, one_sink_config};

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log_agent::{Config, RunSummary};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A temporary world: a directory of logs, a data_dir and an output file.
pub struct World {
    pub dir: tempfile::TempDir,
}

impl World {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("logs")).unwrap();
        World { dir }
    }
    /// `name` in the world's directory (a config file, the agent's stderr...).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }
    pub fn log(&self, name: &str) -> PathBuf {
        self.logs().join(name)
    }
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    pub fn out(&self) -> PathBuf {
        self.dir.path().join("out.ndjson")
    }
    /// A config builder with this world's data_dir.
    pub fn yaml(&self) -> AgentYaml {
        AgentYaml::new(&self.data())
    }
    /// A config builder with checkpoints every 50 ms and a file source `app` over
    /// `logs/<glob>` (the [`FAST`] settings): what most tests add their sinks to.
    pub fn app_yaml(&self, glob: &str) -> AgentYaml {
        self.yaml()
            .top("checkpoint_interval_ms: 50")
            .file_source("app", &[&self.log(glob)], "")
    }
    /// The standard config over `logs/<glob>` with extra source and sink lines.
    pub fn config(&self, glob: &str, source_extra: &str, sink_extra: &str) -> Config {
        let include = self.log(glob);
        config(&config_yaml(
            &self.data(),
            &[include.to_str().unwrap()],
            &self.out(),
            source_extra,
            sink_extra,
        ))
    }
    /// Events delivered so far.
    pub fn events(&self) -> Vec<Value> {
        read_ndjson(&self.out())
    }
}

/// An agent running in-process.
pub struct Agent {
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<RunSummary, log_agent::RunError>>,
}

impl Agent {
    pub fn start(config: Config) -> Agent {
        Agent::start_with(config, log_agent::RunHooks::default())
    }

    /// Starts the agent with the HTTP API on a port the system picks; returns its address.
    pub async fn start_with_api(config: Config) -> (Agent, std::net::SocketAddr) {
        assert!(config.api.is_some(), "the config has no api.address");
        let (tx, rx) = oneshot::channel();
        let agent = Agent::start_with(
            config,
            log_agent::RunHooks {
                api_bound: Some(tx),
                ..Default::default()
            },
        );
        let address = tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("the API was not bound within 10 s")
            .expect("the agent stopped before binding the API");
        (agent, address)
    }

    pub fn start_with(config: Config, hooks: log_agent::RunHooks) -> Agent {
        // LOG_AGENT_LOG=debug shows the agent's own logs while debugging a test.
        if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("LOG_AGENT_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(log_agent::run_with(
            config,
            async {
                let _ = rx.await;
            },
            hooks,
        ));
        Agent {
            shutdown: Some(tx),
            handle,
        }
    }

    /// Starts the agent taking config reloads: returns where to send them and where each
    /// reload's outcome is told.
    pub fn start_reloadable(config: Config) -> (Agent, Reloads) {
        let (requests, reloads) = tokio::sync::mpsc::channel(4);
        let (reloaded, outcomes) = tokio::sync::mpsc::channel(4);
        let agent = Agent::start_with(
            config,
            log_agent::RunHooks {
                reloads: Some(reloads),
                reloaded: Some(reloaded),
                ..Default::default()
            },
        );
        (agent, Reloads { requests, outcomes })
    }

    /// Asks for a shutdown and waits for the summary.
    pub async fn stop(mut self) -> RunSummary {
        let _ = self.shutdown.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("agent did not stop within 30 s")
            .unwrap()
            .unwrap()
    }
}

/// Where an agent started with [`Agent::start_reloadable`] takes reloads.
pub struct Reloads {
    requests: tokio::sync::mpsc::Sender<log_agent::agent::ReloadRequest>,
    outcomes: tokio::sync::mpsc::Receiver<Result<log_agent::agent::ReloadReport, String>>,
}

impl Reloads {
    /// Reloads `request` and waits (up to 60 s) for what it did.
    pub async fn reload(
        &mut self,
        request: log_agent::agent::ReloadRequest,
    ) -> Result<log_agent::agent::ReloadReport, String> {
        self.requests.send(request).await.unwrap();
        tokio::time::timeout(Duration::from_secs(60), self.outcomes.recv())
            .await
            .expect("the reload did not end within 60 s")
            .expect("the agent stopped")
    }
}

/// Every complete JSON line of an NDJSON file (none if it does not exist). Bytes after the last
/// newline are a line the sink is still writing (a reader can see a write half done), not yet
/// an event.
pub fn read_ndjson(path: &Path) -> Vec<Value> {
    let Ok(bytes) = fs::read(path) else {
        return Vec::new();
    };
    // A line without its newline is still being written by the sink: not complete yet.
    let complete = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |last| last + 1);
    bytes[..complete]
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            serde_json::from_slice(line).unwrap_or_else(|e| {
                panic!("bad NDJSON line {e}: {}", String::from_utf8_lossy(line))
            })
        })
        .collect()
}

/// Counts the whole lines of a file that only grows (a sink's output), reading each byte once:
/// cheap enough to poll while a sink writes 100,000 events.
pub struct LineCounter {
    path: PathBuf,
    counted_to: u64,
    lines: usize,
}

impl LineCounter {
    pub fn new(path: PathBuf) -> Self {
        LineCounter {
            path,
            counted_to: 0,
            lines: 0,
        }
    }

    /// The whole lines written so far.
    pub fn count(&mut self) -> usize {
        use std::io::{Read, Seek, SeekFrom};
        let mut new = Vec::new();
        let read = File::open(&self.path).and_then(|mut file| {
            file.seek(SeekFrom::Start(self.counted_to))?;
            file.read_to_end(&mut new)
        });
        if read.is_ok() {
            // A line without its newline is still being written: counted once it is whole.
            let whole = new
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |last| last + 1);
            self.lines += new[..whole].iter().filter(|&&b| b == b'\n').count();
            self.counted_to += whole as u64;
        }
        self.lines
    }
}

/// Polls `condition` every 20 ms for up to `limit`; true once it holds.
pub async fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `n` events were delivered; panics with what arrived if they do not in time.
pub async fn wait_for_events(world: &World, n: usize) -> Vec<Value> {
    let ok = wait_for(Duration::from_secs(30), || world.events().len() >= n).await;
    let events = world.events();
    assert!(ok, "expected {n} events, got {}", events.len());
    events
}

/// Appends raw bytes to a file.
/// Waits until `accepted()` (what a destination took) reaches `n`, then until the checkpoint
/// covers every log file of `world`.
pub async fn wait_for_accepted_and_checkpointed(
    world: &World,
    n: usize,
    what: &str,
    accepted: impl Fn() -> usize,
) {
    let arrived = wait_for(Duration::from_secs(30), || accepted() >= n).await;
    assert!(arrived, "expected {n} {what}, got {}", accepted());
    let total: u64 = fs::read_dir(world.logs())
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

pub fn append(path: &Path, bytes: &[u8]) {
    let mut file: File = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(bytes).unwrap();
}

/// A message read back: key, value as JSON, headers.
pub struct Received {
    pub key: String,
    pub value: Value,
    pub headers: BTreeMap<String, String>,
}

/// Reads Kafka `topic` from its start until `n` messages arrived, then on until none came for a
/// second (so that duplicates show), or until 60 s passed. `options` are extra consumer
/// properties (SASL settings...).
pub fn consume(bootstrap: &str, topic: &str, n: usize) -> Vec<Received> {
    consume_with(bootstrap, topic, n, &[])
}

/// [`consume`] with extra consumer properties.
pub fn consume_with(
    bootstrap: &str,
    topic: &str,
    n: usize,
    options: &[(&str, &str)],
) -> Vec<Received> {
    consume_within(bootstrap, topic, n, options, Duration::from_secs(60))
}

/// [`consume_with`] giving up after `limit` rather than 60 s.
pub fn consume_within(
    bootstrap: &str,
    topic: &str,
    n: usize,
    options: &[(&str, &str)],
    limit: Duration,
) -> Vec<Received> {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("test-{}", fastrand::u64(..)))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    for (key, value) in options {
        client.set(*key, *value);
    }
    let consumer: BaseConsumer = client.create().unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let start = Instant::now();
    let mut last_message = Instant::now();
    let mut out = Vec::new();
    while start.elapsed() < limit
        && (out.len() < n || last_message.elapsed() < Duration::from_secs(1))
    {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.unwrap();
        last_message = Instant::now();
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Received {
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            value: serde_json::from_slice(message.payload().unwrap_or_default()).unwrap(),
            headers,
        });
    }
    out
}

/// `GET path` over a fresh connection: (status, body).
pub async fn get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// Polls `/readyz` until it answers `status`; returns the body.
pub async fn wait_for_readyz(address: std::net::SocketAddr, status: u16) -> String {
    wait_for_probe(address, "/readyz", status).await
}

/// Polls `path` (`/readyz`, `/readyz/sinks`) until it answers `status`; returns the body.
pub async fn wait_for_probe(address: std::net::SocketAddr, path: &str, status: u16) -> String {
    let mut last = (0, String::new());
    for _ in 0..1500 {
        last = get(address, path).await;
        if last.0 == status {
            return last.1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{path} did not answer {status} within 30 s; last: {last:?}");
}

/// A loopback address nothing listens on: a port the system gave and took back.
pub fn closed_address() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// The value of metric `name` (its full name) of source `source`, scraped from the agent's
/// `/metrics` on `127.0.0.1:api`; `None` when the API does not answer or has no such sample.
pub fn source_metric(api: u16, name: &str, source: &str) -> Option<f64> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", api)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let prefix = format!("{name}{{source=\"{source}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}
