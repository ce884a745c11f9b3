//! The Kafka sink against a real Kafka-API broker process (Tansu) started on loopback by each
//! test: rotation with every line once and in order, and the broker stopped and restarted
//! mid-stream with nothing lost. `tansu` must be on the PATH (or in `$TANSU`); `.ci/test`
//! installs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A Tansu broker on a loopback port, killed when dropped.
struct Broker {
    child: Child,
    port: u16,
}

fn tansu() -> String {
    std::env::var("TANSU").unwrap_or_else(|_| "tansu".into())
}

impl Broker {
    /// Starts a broker on `port` (0: a free one) with `storage` (`memory://tansu/`,
    /// `sqlite://tansu.db`) in the working directory `dir`.
    fn start(dir: &Path, port: u16, storage: &str) -> Broker {
        let port = if port == 0 {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        } else {
            port
        };
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                storage,
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{}` ({e}): install it with .ci/test or set $TANSU",
                    tansu()
                )
            });
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "tansu did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { child, port }
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn create_topic(&self, name: &str) {
        let status = Command::new(tansu())
            .args([
                "topic",
                "create",
                name,
                "--broker",
                &format!("tcp://127.0.0.1:{}", self.port),
                "--partitions",
                "1",
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "tansu topic create {name} failed");
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The values of `n` messages of `topic`, read from its start.
fn consume_values(bootstrap: &str, topic: &str, n: usize) -> Vec<serde_json::Value> {
    consume(bootstrap, topic, n)
        .into_iter()
        .map(|r| r.value)
        .collect()
}

/// The agent's config over `logs/<include>` into topic `logs`; `idempotence` as given.
fn kafka_config(
    world: &World,
    include: &str,
    bootstrap: &str,
    idempotence: bool,
) -> log_agent::Config {
    let keys = format!(
        "    brokers: {bootstrap}
    topic: logs
    batch: {{ max_events: 500, timeout_ms: 10 }}
    retry: {{ initial_backoff_ms: 100, max_backoff_ms: 500 }}
    idempotence: {idempotence}
    librdkafka_options: {{ message.timeout.ms: \"5000\" }}
"
    );
    one_sink_config(world, include, "kafka", "kafka", &keys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_lines_reach_the_broker_once_and_in_order() {
    let world = World::new();
    let broker = Broker::start(world.dir.path(), 0, "memory://tansu/");
    broker.create_topic("logs");
    let agent = Agent::start(kafka_config(&world, "app.log", &broker.bootstrap(), true));
    let path = world.log("app.log");
    let rotated = world.log("app.log.1");
    let writer = std::thread::spawn(move || {
        for seq in (0..10_000).step_by(100) {
            append_numbered(&path, "b", seq..seq + 100, 80);
            if seq % 2_500 == 2_400 {
                let _ = fs::remove_file(&rotated);
                fs::rename(&path, &rotated).unwrap();
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    let bootstrap = broker.bootstrap();
    let received = tokio::task::spawn_blocking(move || consume_values(&bootstrap, "logs", 10_000))
        .await
        .unwrap();
    let summary = agent.stop().await;
    assert!(summary.drained);
    assert_exactly_once(&received, "b", 10_000);
    assert_at_least_once_in_order(&received, "b", 10_000);
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_stopped_mid_stream_loses_nothing() {
    let world = World::new();
    // SQLite storage: what the broker had survives its restart.
    let broker = Broker::start(world.dir.path(), 0, "sqlite://tansu.db");
    let port = broker.port;
    broker.create_topic("logs");
    let agent = Agent::start(kafka_config(
        &world,
        "*.log",
        &broker.bootstrap(),
        // Tansu 0.6 answers every produce of an idempotent producer with an unknown error once
        // it has restarted, even for a fresh producer id, so this test runs without it.
        false,
    ));
    append_numbered(&world.log("app.log"), "s", 0..2_000, 80);
    let bootstrap = broker.bootstrap();
    let first = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        move || consume_values(&bootstrap, "logs", 2_000)
    })
    .await
    .unwrap();
    assert!(
        first.len() >= 2_000,
        "only {} before the outage",
        first.len()
    );
    broker.stop();
    // Written while the broker is down: the agent keeps running and holds these back.
    append_numbered(&world.log("app.log"), "s", 2_000..4_000, 80);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let broker = Broker::start(world.dir.path(), port, "sqlite://tansu.db");
    append_numbered(&world.log("app.log"), "s", 4_000..5_000, 80);
    let received = tokio::task::spawn_blocking(move || consume_values(&bootstrap, "logs", 5_000))
        .await
        .unwrap();
    // Batches whose delivery reports were lost in the outage are sent again (at least once);
    // once everything is acked the checkpoint reaches the end of the file.
    let size = fs::metadata(world.log("app.log")).unwrap().len();
    let data = world.data();
    let acked = wait_for(Duration::from_secs(60), || checkpointed(&data) == size).await;
    let summary = agent.stop().await;
    assert!(acked, "the checkpoint did not reach the end of the file");
    assert!(summary.drained);
    assert_at_least_once_in_order(&received, "s", 5_000);
    broker.stop();
}
