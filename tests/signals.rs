//! Signals as an operator sends them to the binary: a second SIGTERM or SIGINT ends `run` and
//! `replay` at once (exit 1) whatever the drain waits for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::process::{AgentProcess, binary, catches, send_signal};
use common::{World, append_numbered, closed_address};

/// How long a second signal may take to end the process.
const AT_ONCE: Duration = Duration::from_secs(3);

/// A config over `logs/*.log` into an HTTP sink that nothing answers, retried forever, with a
/// drain deadline far longer than any test waits.
fn config_into_a_closed_port(world: &World) -> std::path::PathBuf {
    let yaml = format!(
        "data_dir: {data}
shutdown_timeout_ms: 600000
sources:
  app:
    type: file
    include: [{include:?}]{fast}
sinks:
  down:
    type: http
    inputs: [app]
    uri: http://{address}/ingest
    retry: {{ initial_backoff_ms: 100, max_backoff_ms: 1000 }}
",
        data = world.data().display(),
        include = world.log("*.log").to_str().unwrap(),
        fast = common::FAST,
        address = closed_address(),
    );
    let path = world.dir.path().join("agent.yaml");
    fs::write(&path, yaml).unwrap();
    path
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
        let child = Command::new(binary())
            .args(["replay", "--to"])
            .arg(format!("http://{}/", closed_address()))
            .arg("--data-dir")
            .arg(world.data())
            .arg(&log)
            .env_remove("LOG_AGENT_CONFIG")
            .stdin(Stdio::null())
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
