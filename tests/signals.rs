//! Signals as an operator sends them to the binary: a second SIGTERM or SIGINT ends `run` and
//! `replay` at once (exit 1) whatever the drain waits for; SIGHUP and `--watch-config` reload
//! the config; `shutdown_delay_ms` keeps tailing after SIGTERM (a classic sidecar's web
//! container writes its last lines meanwhile).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::process::{AgentProcess, catches, command, send_signal};
use common::{AgentYaml, World, append_numbered, closed_address};

/// How long a second signal may take to end the process.
const AT_ONCE: Duration = Duration::from_secs(3);

/// How long any other wait of these tests may take.
const PATIENCE: Duration = Duration::from_secs(30);

/// A config over `logs/*.log` into an HTTP sink that nothing answers, retried forever, with a
/// drain deadline far longer than any test waits.
fn config_into_a_closed_port(world: &World) -> std::path::PathBuf {
    let sink = format!(
        "uri: http://{}/ingest\nretry: {{ initial_backoff_ms: 100, max_backoff_ms: 1000 }}",
        closed_address()
    );
    world
        .yaml()
        .top("shutdown_timeout_ms: 600000")
        .file_source("app", &[&world.log("*.log")], "")
        .sink("down", "http", &["app"], &sink)
        .write(&world.path("agent.yaml"))
}

#[test]
fn a_second_signal_ends_run_at_once_while_its_sink_is_down() {
    for signal in ["TERM", "INT"] {
        let world = World::new();
        append_numbered(&world.log("app.log"), "s", 0..100, 40);
        let config = config_into_a_closed_port(&world);
        let stderr = world.dir.path().join("agent.stderr");
        let mut agent = AgentProcess::start(&config, &stderr);
        // Lines are read and their delivery fails: the drain will wait for them.
        std::thread::sleep(Duration::from_millis(500));
        agent.signal(signal, Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(500));
        agent.assert_alive();
        let second = Instant::now();
        agent.signal(signal, Duration::from_secs(30));
        let status = agent.wait_exit(Duration::from_secs(30));
        let took = second.elapsed();
        assert_eq!(status.code(), Some(1), "SIG{signal} twice: {status}");
        assert!(
            took < AT_ONCE,
            "SIG{signal} twice: the second took {took:?} to end the agent; its logs:\n{}",
            agent.logs(20)
        );
        assert!(
            agent.logs(5).contains("received again"),
            "{}",
            agent.logs(5)
        );
    }
}

#[test]
fn a_second_signal_ends_replay_at_once_while_it_waits_for_its_sink() {
    for signal in ["TERM", "INT"] {
        let world = World::new();
        let log = world.log("app.log");
        append_numbered(&log, "r", 0..100, 40);
        // Retries of a closed port give up after 8 attempts (about 10 s): long enough to see
        // whether a signal is heard while replay waits for the sink, files all read.
        let child = command(&["replay", "--to"])
            .arg(format!("http://{}/", closed_address()))
            .arg("--data-dir")
            .arg(world.data())
            .arg(&log)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let start = Instant::now();
        while !catches(pid, signal) {
            assert!(start.elapsed() < Duration::from_secs(30), "no handler");
            std::thread::sleep(Duration::from_millis(5));
        }
        // The file is read at once; what is left is waiting for the sink.
        std::thread::sleep(Duration::from_millis(1_000));
        send_signal(pid, signal);
        std::thread::sleep(Duration::from_millis(300));
        let second = Instant::now();
        send_signal(pid, signal);
        let output = child.wait_with_output().unwrap();
        let took = second.elapsed();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(1),
            "SIG{signal} twice: {:?}; {stderr}",
            output.status
        );
        assert!(
            took < AT_ONCE,
            "SIG{signal} twice: the second took {took:?} to end replay; stderr:\n{stderr}"
        );
        assert!(stderr.contains("received again"), "{stderr}");
    }
}

/// A config over `logs/*.log` into file sinks `(name, path)`, with the API on `api`.
fn config_into_files(
    world: &World,
    api: std::net::SocketAddr,
    sinks: &[(&str, &std::path::Path)],
) -> AgentYaml {
    let mut yaml = world
        .app_yaml("*.log")
        .top(&format!("api: {{ address: \"{api}\" }}"));
    for (name, path) in sinks {
        yaml = yaml.file_sink(name, &["app"], path, "batch: { timeout_ms: 20 }");
    }
    yaml
}

/// The value of the `config_reloads_total` series of `outcome`, from the agent's API.
fn reloads(api: std::net::SocketAddr, outcome: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(api).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let series = format!("log_agent_config_reloads_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .and_then(|value| value.trim().parse().ok())
}

#[test]
fn sighup_reloads_the_config_and_a_bad_one_is_refused_and_counted() {
    let world = World::new();
    let (first, second) = (
        world.dir.path().join("first.ndjson"),
        world.dir.path().join("second.ndjson"),
    );
    let api = closed_address();
    let config = world.dir.path().join("agent.yaml");
    config_into_files(&world, api, &[("first", &first)]).write(&config);
    let stderr = world.dir.path().join("agent.stderr");
    let mut agent = AgentProcess::start(&config, &stderr);
    let log = world.log("app.log");
    append_numbered(&log, "h", 0..100, 40);
    agent.wait_until(
        PATIENCE,
        || "100 lines in the first sink".to_owned(),
        || common::read_ndjson(&first).len() == 100,
    );

    // A second sink: SIGHUP applies it, the agent goes on.
    config_into_files(&world, api, &[("first", &first), ("second", &second)]).write(&config);
    agent.signal("HUP", Duration::from_secs(30));
    agent.wait_until(
        PATIENCE,
        || "the reload applied".to_owned(),
        || reloads(api, "applied") == Some(1.0),
    );
    append_numbered(&log, "h", 100..200, 40);
    agent.wait_until(
        PATIENCE,
        || "the new lines in both sinks".to_owned(),
        || common::read_ndjson(&first).len() == 200 && !common::read_ndjson(&second).is_empty(),
    );

    // A bad config: refused, counted, logged; the running one goes on.
    fs::write(&config, "sources: [oops]\n").unwrap();
    agent.signal("HUP", Duration::from_secs(30));
    agent.wait_until(
        PATIENCE,
        || "the reload refused".to_owned(),
        || reloads(api, "failed") == Some(1.0),
    );
    assert!(
        agent.logs(10).contains("config reload refused"),
        "{}",
        agent.logs(10)
    );
    append_numbered(&log, "h", 200..300, 40);
    agent.wait_until(
        PATIENCE,
        || "lines still shipped".to_owned(),
        || common::read_ndjson(&first).len() == 300,
    );
    let status = agent.terminate(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", agent.logs(20));
    common::assert_exactly_once(&common::read_ndjson(&first), "h", 300);
    let added = common::read_ndjson(&second);
    let first_seq = added[0]["message"].as_str().unwrap()[2..11]
        .parse::<u64>()
        .unwrap();
    assert_eq!(
        added.len() as u64,
        300 - first_seq,
        "the second sink has every line after its first"
    );
}

#[test]
fn watch_config_reloads_when_the_file_changes() {
    let world = World::new();
    let (first, second) = (
        world.dir.path().join("first.ndjson"),
        world.dir.path().join("second.ndjson"),
    );
    let api = closed_address();
    let config = world.dir.path().join("agent.yaml");
    config_into_files(&world, api, &[("first", &first)]).write(&config);
    let stderr = world.dir.path().join("agent.stderr");
    let mut agent = AgentProcess::start_with(&config, &["--watch-config"], &stderr);
    let log = world.log("app.log");
    append_numbered(&log, "w", 0..10, 40);
    agent.wait_until(
        PATIENCE,
        || "the first lines".to_owned(),
        || common::read_ndjson(&first).len() == 10,
    );
    // As a ConfigMap volume updates: a new file swapped in by a rename.
    let next = world.dir.path().join("agent.yaml.next");
    config_into_files(&world, api, &[("second", &second)]).write(&next);
    fs::rename(&next, &config).unwrap();
    agent.wait_until(
        PATIENCE,
        || "the reload applied".to_owned(),
        || reloads(api, "applied") == Some(1.0),
    );
    append_numbered(&log, "w", 10..20, 40);
    agent.wait_until(
        PATIENCE,
        || "the new lines in the new sink".to_owned(),
        || common::read_ndjson(&second).len() == 10,
    );
    let status = agent.terminate(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", agent.logs(20));
    assert_eq!(
        common::read_ndjson(&first).len(),
        10,
        "the removed sink got nothing more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delay_ms_reads_lines_written_after_the_stop_request() {
    let world = World::new();
    let config = common::config(
        &common::config_yaml(
            &world.data(),
            &[world.log("*.log").to_str().unwrap()],
            &world.out(),
            "",
            "",
        )
        .replace(
            "shutdown_timeout_ms: 10000",
            "shutdown_timeout_ms: 10000\nshutdown_delay_ms: 1500",
        ),
    );
    assert_eq!(config.shutdown_delay_ms, 1500);
    let agent = common::Agent::start(config);
    append_numbered(&world.log("app.log"), "d", 0..10, 40);
    common::wait_for_events(&world, 10).await;
    let started = Instant::now();
    let stopping = tokio::spawn(agent.stop());
    // The web container's last lines, after SIGTERM reached both containers.
    tokio::time::sleep(Duration::from_millis(600)).await;
    append_numbered(&world.log("app.log"), "d", 10..20, 40);
    let summary = stopping.await.unwrap();
    assert!(summary.drained);
    assert!(started.elapsed() >= Duration::from_millis(1500));
    common::assert_exactly_once(&world.events(), "d", 20);
}
