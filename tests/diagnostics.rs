//! What the binary says about a set-up that cannot work (yet): only healthchecks that ran are
//! reported as passed; a missing include directory or sink directory is warned about by
//! `validate` and while the agent runs, and the agent goes on once it appears.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::process::{AgentProcess, command, outcome};
use common::{World, append_numbered, closed_address, read_ndjson};

/// How long any wait of these tests may take.
const PATIENCE: Duration = Duration::from_secs(30);

/// `log-agent validate --config <config>`: (exit code, stdout, stderr).
fn validate(config: &Path) -> (Option<i32>, String, String) {
    outcome(&mut command(&[
        "validate",
        "--config",
        config.to_str().unwrap(),
    ]))
}

#[test]
fn only_healthchecks_that_ran_are_reported_passed() {
    let world = World::new();
    let missing_dir = world.dir.path().join("no-such-dir").join("out.ndjson");
    let present = world.dir.path().join("out.ndjson");
    let closed = closed_address();
    let config = world
        .yaml()
        .top("shutdown_timeout_ms: 1000")
        // The default scan interval: only the healthchecks are looked at.
        .source(
            "app",
            &format!(
                "type: file\ninclude: [{:?}]",
                world.log("*.log").to_str().unwrap()
            ),
        )
        .file_sink("file_missing_dir", &["app"], &missing_dir, "")
        .file_sink("file_ok", &["app"], &present, "")
        .sink(
            "http_closed",
            "http",
            &["app"],
            &format!("uri: http://{closed}/ingest"),
        )
        .sink(
            "kafka_down",
            "kafka",
            &["app"],
            &format!("brokers: {closed}\ntopic: logs"),
        )
        .write(&world.path("agent.yaml"));

    let (code, _, stderr) = validate(&config);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: sinks.file_missing_dir.path:") && stderr.contains("no-such-dir"),
        "validate says the sink's directory is missing: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let stderr_path = world.dir.path().join("agent.stderr");
    let mut agent = AgentProcess::start(&config, &stderr_path);
    agent.wait_for_log(PATIENCE, "healthcheck passed sink=file_ok");
    agent.wait_for_log(PATIENCE, "healthcheck failed");
    // Every sink task has started by now; give the others a moment all the same.
    std::thread::sleep(Duration::from_millis(500));
    let logs = agent.logs(200);
    let failed: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("healthcheck failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{logs}");
    assert!(failed[0].contains("file_missing_dir") && failed[0].contains("no-such-dir"));
    for sink in ["file_missing_dir", "http_closed", "kafka_down"] {
        assert!(
            !logs.contains(&format!("healthcheck passed sink={sink}")),
            "{sink} was never checked, yet passed:\n{logs}"
        );
    }
    agent.terminate(Duration::from_secs(30));
}

#[test]
fn a_missing_include_directory_is_warned_about_and_read_once_it_appears() {
    let world = World::new();
    let later = world.dir.path().join("later");
    let out = world.out();
    let config = world
        .yaml()
        .file_source("app", &[&later.join("*.log")], "")
        .file_sink("out", &["app"], &out, "batch: { timeout_ms: 20 }")
        .write(&world.path("agent.yaml"));

    let (code, stdout, stderr) = validate(&config);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stdout.is_empty());
    assert_eq!(
        stderr.trim(),
        format!(
            "log-agent: warning: sources.app.include: directory {} does not exist; nothing is read from it until it does",
            later.display()
        )
    );

    let mut agent = AgentProcess::start(&config, &world.dir.path().join("agent.stderr"));
    agent.wait_for_log(PATIENCE, "include directory does not exist");
    assert!(agent.logs(50).contains(later.to_str().unwrap()));
    fs::create_dir(&later).unwrap();
    append_numbered(&later.join("app.log"), "l", 0..10, 40);
    agent.wait_for_log(PATIENCE, "include directory exists now");
    agent.wait_until(
        PATIENCE,
        || "10 lines delivered".to_owned(),
        || read_ndjson(&out).len() >= 10,
    );
    let status = agent.terminate(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn the_pod_identity_is_only_what_the_config_names() {
    // The quick start's config on a machine whose environment names a container, a pod and a
    // node: none of it is stamped, as the config does not ask for it.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let world = World::new();
    let out = world.out();
    let output = command(&["replay", "--config", "examples/quickstart.yaml", "--to"])
        .arg(format!("file:{}", out.display()))
        .arg("--data-dir")
        .arg(world.data())
        .arg("examples/logs/app.jsonl")
        .current_dir(root)
        .env("CONTAINER_NAME", "web")
        .env("POD_NAME", "web-1")
        .env("NODE_NAME", "node-a")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let events = read_ndjson(&out);
    assert!(!events.is_empty());
    for event in &events {
        assert!(event.get("kubernetes").is_none(), "{event}");
    }
}

#[test]
fn config_errors_are_all_reported_in_the_users_terms_with_their_full_path() {
    let world = World::new();
    let config = world.dir.path().join("agent.yaml");
    fs::write(
        &config,
        "data_dirr: /tmp/x
sources:
  my.app:
    type: file
    include: [/logs/*.log]
    formt: json
sinks:
  out:
    type: stdout
    inputs: [my.ap]
    batch: { max_events: lots }
",
    )
    .unwrap();
    for command in ["validate", "run"] {
        let output = common::process::command(&[command, "--config", config.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{command}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let want = [
            "log-agent: config key `data_dirr`: unknown key; did you mean `data_dir`?",
            "log-agent: config key `sources.my.app.formt`: unknown key; did you mean `format`?",
            "log-agent: config key `sinks.out.batch.max_events`: expected a whole number (0 or more), got the text \"lots\"",
            "log-agent: config key `sources.my.app`: names use only letters, digits, `_` and `-`",
            "log-agent: config key `sinks.out.inputs`: unknown source or transform `my.ap`; did you mean `my.app`?",
        ];
        for line in want {
            assert!(
                stderr.lines().any(|l| l.starts_with(line)),
                "{command}: no `{line}` in:\n{stderr}"
            );
        }
        // And `sources.my.app` feeds no sink (the input is a typo of it).
        assert_eq!(
            stderr.lines().count(),
            want.len() + 1,
            "{command}:\n{stderr}"
        );
        assert!(!stderr.contains("usize"), "Rust's words: {stderr}");
    }
}
