//! Transforms end to end, in-process: VRL remap, route, sample, throttle and log_to_metric
//! between a tailed file and real sinks, with the acks that move the checkpoints through them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Writes `n` lines to `app.log`, one in five an `err` line, the rest `info`, interleaved;
/// each tag numbered from 0.
fn write_mixed(world: &World, n: u64) {
    let mut text = String::new();
    for line in 0..n {
        text.push_str(&match line % 5 {
            0 => numbered("err", line / 5, 40),
            _ => numbered("info", line - line / 5 - 1, 40),
        });
    }
    fs::write(world.log("app.log"), text).unwrap();
}

fn checkpoint(world: &World) -> Option<u64> {
    Checkpoints::read(&world.data()).offset_ending_with("app.log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_and_remaps_reach_their_sinks_and_the_checkpoint_waits_for_every_path() {
    let world = World::new();
    let later = world.dir.path().join("later");
    let (errors, rest, all) = (
        later.join("errors.ndjson"),
        world.path("rest.ndjson"),
        world.path("all.ndjson"),
    );
    let quick = "batch: { max_events: 100, timeout_ms: 10 }\nretry: { initial_backoff_ms: 10, max_backoff_ms: 50 }";
    let config = world
        .app_yaml("app.log")
        .transform(
            "mark",
            "remap",
            &["app"],
            "source: |\n  .level = if starts_with(string!(.message), \"err \") { \"error\" } else { \"info\" }\n  del(.file)",
        )
        .transform("split", "route", &["mark"], "route:\n  errors: .level == \"error\"")
        .file_sink("errors", &["split.errors"], &errors, quick)
        .file_sink("rest", &["split._unmatched"], &rest, quick)
        // Two paths to one sink: the lines as read, and as remapped.
        .file_sink("all", &["app", "mark"], &all, quick);
    let agent = Agent::start(config.config());
    write_mixed(&world, 1000);
    let size = fs::metadata(world.log("app.log")).unwrap().len();
    assert!(
        wait_for(Duration::from_secs(20), || read_ndjson(&rest).len() == 800
            && read_ndjson(&all).len() == 2000)
        .await,
        "rest {} all {}",
        read_ndjson(&rest).len(),
        read_ndjson(&all).len()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = checkpoint(&world).unwrap_or(0);
    assert!(
        held < size,
        "the `errors` sink is down: the checkpoint ({held}) must wait for it ({size})"
    );
    fs::create_dir(&later).unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || checkpoint(&world) == Some(size)).await,
        "the checkpoint did not reach the end once every path delivered: {:?}",
        checkpoint(&world)
    );
    agent.stop().await;

    let errors = read_ndjson(&errors);
    assert_exactly_once(&errors, "err", 200);
    assert!(
        errors
            .iter()
            .all(|e| e["level"] == "error" && e.get("file").is_none())
    );
    let rest = read_ndjson(&rest);
    assert_eq!(of_tag(&rest, "info").len(), 800);
    assert!(
        rest.iter()
            .all(|e| e["level"] == "info" && e["source"] == "app")
    );
    let all = read_ndjson(&all);
    let (remapped, raw): (Vec<Value>, Vec<Value>) =
        all.into_iter().partition(|e| e.get("level").is_some());
    assert_eq!((remapped.len(), raw.len()), (1000, 1000));
    assert!(raw.iter().all(|e| e.get("file").is_some()), "as read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_throttled_and_aborted_events_are_acked_as_handled() {
    let world = World::new();
    let (sampled, throttled, kept) = (
        world.path("sampled.ndjson"),
        world.path("throttled.ndjson"),
        world.path("kept.ndjson"),
    );
    let quick = "batch: { max_events: 100, timeout_ms: 10 }";
    let config = world
        .app_yaml("app.log")
        .transform(
            "tenth",
            "sample",
            &["app"],
            "rate: 10\nexclude: starts_with(string!(.message), \"err \")",
        )
        .transform(
            "cap",
            "throttle",
            &["app"],
            "threshold: 30\nwindow_secs: 3600",
        )
        .transform(
            "no_info",
            "remap",
            &["app"],
            "source: |\n  if starts_with(string!(.message), \"info \") { abort }",
        )
        .file_sink("sampled", &["tenth"], &sampled, quick)
        .file_sink("throttled", &["cap"], &throttled, quick)
        .file_sink("kept", &["no_info"], &kept, quick);
    let agent = Agent::start(config.config());
    write_mixed(&world, 1000);
    let size = fs::metadata(world.log("app.log")).unwrap().len();
    assert!(
        wait_for(Duration::from_secs(20), || checkpoint(&world) == Some(size)).await,
        "dropped events must not hold the checkpoint back: {:?} of {size}",
        checkpoint(&world)
    );
    agent.stop().await;
    let sampled = read_ndjson(&sampled);
    assert_eq!(
        of_tag(&sampled, "err").len(),
        200,
        "errors are never sampled out"
    );
    assert_eq!(
        of_tag(&sampled, "info").len(),
        80,
        "one in ten of the 800 others"
    );
    assert_eq!(read_ndjson(&throttled).len(), 30);
    assert_exactly_once(&read_ndjson(&kept), "err", 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_errors_are_counted_and_logs_become_metrics_on_the_api() {
    let world = World::new();
    let out = world.path("out.ndjson");
    let lines = [
        r#"{"status":200,"request_time":0.05,"path":"/a","n":"1"}"#,
        r#"{"status":200,"request_time":0.5,"path":"/b","n":"x"}"#,
        r#"{"status":500,"request_time":2.0,"path":"/c","n":"3"}"#,
        r#"{"status":404,"request_time":0.01,"path":"/d","n":"y"}"#,
    ];
    fs::write(world.log("app.log"), lines.join("\n") + "\n").unwrap();
    let config = world
        .yaml()
        .top("checkpoint_interval_ms: 50\napi: { address: \"127.0.0.1:0\" }")
        .file_source("app", &[&world.log("app.log")], "format: json")
        .transform("count", "remap", &["app"], "source: .n = to_int!(.n)")
        .transform(
            "requests",
            "log_to_metric",
            &["count"],
            "max_series: 2\nmetrics:\n  - type: counter\n    field: status\n    name: http_requests_total\n    tags: { status: \"{{ status }}\" }\n  - type: histogram\n    field: request_time\n    name: http_request_duration_seconds\n    buckets: [0.1, 1]\n  - type: counter\n    field: path\n    name: paths_total\n    tags: { path: \"{{ path }}\" }",
        )
        .file_sink("out", &["requests"], &out, "batch: { timeout_ms: 10 }");
    let (agent, api) = Agent::start_with_api(config.config()).await;
    assert!(wait_for(Duration::from_secs(20), || read_ndjson(&out).len() == 4).await);
    let events = read_ndjson(&out);
    assert_eq!(events[0]["n"], 1, "changed by the program");
    assert_eq!(
        events[1]["n"], "x",
        "a runtime error ships the event as it came"
    );
    let (status, text) = get(api, "/metrics").await;
    assert_eq!(status, 200);
    for want in [
        "log_agent_transform_errors_total{transform=\"count\"} 2",
        "log_agent_transform_events_in_total{transform=\"count\"} 4",
        "http_requests_total{status=\"200\"} 2.0",
        "http_request_duration_seconds_bucket{le=\"0.1\"} 2",
        "http_request_duration_seconds_count 4",
        // Four paths against a cap of two series: two counted as overflow.
        "log_agent_transform_metric_series_overflow_total{transform=\"requests\",metric=\"paths_total\"} 2",
    ] {
        assert!(text.contains(want), "{want} not in\n{text}");
    }
    assert!(
        !text.contains("http_requests_total{status=\"404\"}"),
        "the status cap is two series: {text}"
    );
    agent.stop().await;
}

#[test]
fn vrl_and_graph_errors_name_the_key_line_and_column() {
    let world = World::new();
    let base = || {
        world
            .app_yaml("app.log")
            .file_sink("out", &["t"], &world.path("out.ndjson"), "")
    };
    let cases = [
        (
            base().transform(
                "t",
                "remap",
                &["app"],
                "source: |\n  .a = 1\n  .b = upcase(.x)",
            ),
            vec![
                "transforms.t.source",
                "VRL program does not compile",
                ":2:6",
                "upcase!(.x)",
            ],
        ),
        (
            base().transform("t", "route", &["app"], "route:\n  e: .level =="),
            vec!["transforms.t.route.e", "syntax error", ":1:10"],
        ),
        (
            base().transform("t", "remap", &["nope"], "source: ."),
            vec!["transforms.t.inputs", "unknown source or transform `nope`"],
        ),
        (
            base()
                .transform("t", "remap", &["u"], "source: .")
                .transform("u", "remap", &["t"], "source: ."),
            vec!["cycle: t -> u -> t"],
        ),
        (
            base().transform("t", "sample", &["app"], "rate: 0"),
            vec!["transforms.t.rate", "at least 1"],
        ),
        (
            base().transform("t", "remap", &["app"], "file: missing.vrl"),
            vec!["transforms.t.file", "missing.vrl"],
        ),
    ];
    for (yaml, wants) in cases {
        let error = log_agent::Config::from_file_text(&yaml.text())
            .err()
            .unwrap_or_else(|| panic!("accepted:\n{}", yaml.text()))
            .to_string();
        for want in wants {
            assert!(error.contains(want), "{want:?} not in:\n{error}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_puts_a_transform_in_the_way_without_restarting_the_source() {
    let world = World::new();
    let out = world.path("out.ndjson");
    let plain =
        world
            .app_yaml("app.log")
            .file_sink("out", &["app"], &out, "batch: { timeout_ms: 10 }");
    let (agent, mut reloads) = Agent::start_reloadable(plain.config());
    append_numbered(&world.log("app.log"), "before", 0..50, 40);
    assert!(wait_for(Duration::from_secs(20), || read_ndjson(&out).len() == 50).await);
    let remapped = world
        .app_yaml("app.log")
        .transform("tag", "remap", &["app"], "source: .stage = \"after\"")
        .file_sink("out", &["tag"], &out, "batch: { timeout_ms: 10 }");
    let report = reloads.reload(Ok(remapped.config())).await.unwrap();
    assert!(report.sources_restarted.is_empty(), "{report:?}");
    append_numbered(&world.log("app.log"), "after", 0..50, 40);
    assert!(wait_for(Duration::from_secs(20), || read_ndjson(&out).len() == 100).await);
    agent.stop().await;
    let events = read_ndjson(&out);
    assert_exactly_once(&events, "before", 50);
    let after = of_tag(&events, "after");
    assert_eq!(after.len(), 50);
    assert!(after.iter().all(|e| e["stage"] == "after"));
}

/// Runs `log-agent test --config <config>`: (exit code, stdout).
fn log_agent_test(config: &std::path::Path) -> (i32, String) {
    let out = common::process::command(&["test", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn log_agent_test_runs_the_configs_own_tests_and_says_which_fail() {
    let world = World::new();
    let program = "source: |\n  .email = redact(string!(.email), filters: [r'[^@ ]+@[^@ ]+'])\n  del(.password)";
    let yaml = |expected: &str| {
        world
            .app_yaml("app.log")
            .transform("mask", "remap", &["app"], program)
            .transform("split", "route", &["mask"], "route:\n  errors: .level == \"error\"")
            .file_sink("errors", &["split.errors"], &world.path("e.ndjson"), "")
            .file_sink("rest", &["split._unmatched"], &world.path("r.ndjson"), "")
            .top(&format!(
                "tests:\n  - name: masks personal data and routes errors\n    inputs:\n      - insert_at: mask\n        log_fields: {{ email: ann@example.com, password: hunter2, level: error }}\n    outputs:\n      - extract_from: split.errors\n        conditions:\n          - source: '.email == \"{expected}\" && !exists(.password)'\n    no_outputs_from: [split._unmatched]\n"
            ))
    };
    let passing = yaml("[REDACTED]").write(&world.path("pass.yaml"));
    let (code, out) = log_agent_test(&passing);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "test masks personal data and routes errors ... passed\n1 passed, 0 failed\n"
        )
    );
    let failing = yaml("ann@example.com").write(&world.path("fail.yaml"));
    let (code, out) = log_agent_test(&failing);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("... failed") && out.contains("does not hold for"),
        "{out}"
    );
    assert!(out.contains("[REDACTED]"), "the event is shown: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_agent_tap_shows_what_a_remap_does_on_the_tap_address_only() {
    let world = World::new();
    let config = world
        .app_yaml("app.log")
        .top("api: { address: \"127.0.0.1:0\" }\ntap: { address: \"127.0.0.1:0\" }")
        .transform(
            "mask",
            "remap",
            &["app"],
            "source: .message = replace(string!(.message), r'\\d+', \"#\")",
        )
        .file_sink(
            "out",
            &["mask"],
            &world.path("out.ndjson"),
            "batch: { timeout_ms: 10 }",
        )
        .config();
    let (tap_tx, tap_rx) = tokio::sync::oneshot::channel();
    let (api_tx, api_rx) = tokio::sync::oneshot::channel();
    let agent = Agent::start_with(
        config,
        log_agent::RunHooks {
            api_bound: Some(api_tx),
            tap_bound: Some(tap_tx),
            ..Default::default()
        },
    );
    let tap = tap_rx.await.unwrap();
    let api = api_rx.await.unwrap();
    assert_eq!(get(api, "/tap").await.0, 404, "never on the API's address");
    let mut cli =
        common::process::command(&["tap", "--api", &tap.to_string(), "--limit", "3", "mask"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    let mut seq = 0;
    let exited = wait_for(Duration::from_secs(20), || {
        append_numbered(&world.log("app.log"), "tapped", seq..seq + 1, 40);
        seq += 1;
        std::thread::sleep(Duration::from_millis(30));
        cli.try_wait().unwrap().is_some()
    })
    .await;
    assert!(exited, "log-agent tap did not end after 3 events");
    let out = cli.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for line in &lines {
        assert_eq!(line["point"], "mask");
        assert!(
            line["event"]["message"]
                .as_str()
                .unwrap()
                .starts_with("tapped # "),
            "{line}"
        );
    }
    agent.stop().await;
    let same_port = world
        .app_yaml("app.log")
        .top("api: { address: \"0.0.0.0:8686\" }\ntap: { address: \"127.0.0.1:8686\" }")
        .file_sink("out", &["app"], &world.path("out.ndjson"), "")
        .text();
    let error = log_agent::Config::from_file_text(&same_port)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("tap.address") && error.contains("API"),
        "{error}"
    );
}

/// The README's Transforms examples are configs the agent takes: their programs compile and
/// their graphs hold, given the sources they name and a sink for what nothing else takes.
#[test]
fn the_readmes_transform_examples_are_valid_configs() {
    use serde_norway::{Mapping, Value as Yaml};
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme.split("### Transforms").nth(1).unwrap();
    let section = section.split("\n### ").next().unwrap();
    let blocks: Vec<&str> = section
        .split("```yaml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .collect();
    assert_eq!(blocks.len(), 3, "the three examples");
    let world = World::new();
    for block in blocks {
        let mut example: Mapping = serde_norway::from_str(block).unwrap();
        let transforms = example.remove("transforms").unwrap();
        let names: Vec<String> = transforms
            .as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect();
        let taken = |name: &str| {
            block.contains(&format!("inputs: [{name}")) || block.contains(&format!("[{name}."))
        };
        let ends: Vec<String> = names.iter().filter(|n| !taken(n)).cloned().collect();
        let sinks = match example.remove("sinks") {
            Some(sinks) => serde_norway::to_string(&sinks).unwrap(),
            None => format!("end:\n  type: blackhole\n  inputs: [{}]\n", ends.join(", ")),
        };
        let mut top = Mapping::new();
        top.insert(Yaml::from("transforms"), transforms);
        let mut sources = String::new();
        for (name, format) in [("app", "json"), ("nginx", "nginx_combined")] {
            if block.contains(&format!("[{name}]")) {
                let path = world.log(&format!("{name}.log"));
                sources += &format!(
                    "  {name}:\n    type: file\n    include: [{}]\n    format: {format}\n",
                    path.display()
                );
            }
        }
        let text = format!(
            "data_dir: {}\nsources:\n{sources}{}sinks:\n{}",
            world.data().display(),
            serde_norway::to_string(&top).unwrap(),
            sinks
                .lines()
                .map(|l| format!("  {l}\n"))
                .collect::<String>(),
        );
        let config = log_agent::Config::from_file_text(&text);
        assert!(
            config.is_ok(),
            "{}\n{text}",
            config.err().map(|e| e.to_string()).unwrap_or_default()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_moves_a_sink_onto_a_new_path_keeps_holding_what_it_has_not_delivered() {
    let world = World::new();
    let later = world.dir.path().join("later");
    let out = later.join("out.ndjson");
    let keys = "batch: { max_events: 50, timeout_ms: 10 }\nretry: { initial_backoff_ms: 10, max_backoff_ms: 50 }";
    let direct = world
        .app_yaml("app.log")
        .file_sink("out", &["app"], &out, keys);
    let (agent, mut reloads) = Agent::start_reloadable(direct.config());
    append_numbered(&world.log("app.log"), "before", 0..500, 40);
    let size = fs::metadata(world.log("app.log")).unwrap().len();
    let data = world.data();
    // Read and handed on, not delivered: the sink's directory is missing.
    assert!(
        wait_for(Duration::from_secs(20), || {
            Checkpoints::read(&data)
                .live()
                .any(|r| r.path.ends_with("app.log"))
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let remapped = world
        .app_yaml("app.log")
        .transform("tag", "remap", &["app"], "source: .stage = \"after\"")
        .file_sink("out", &["tag"], &out, keys);
    reloads.reload(Ok(remapped.config())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = checkpoint(&world).unwrap_or(0);
    assert!(
        held < size,
        "the lines in the sink's buffer were not delivered: the checkpoint ({held}) must not pass them ({size})"
    );
    fs::create_dir(&later).unwrap();
    append_numbered(&world.log("app.log"), "after", 0..50, 40);
    let end = fs::metadata(world.log("app.log")).unwrap().len();
    assert!(
        wait_for(Duration::from_secs(20), || checkpoint(&world) == Some(end)).await,
        "{:?} of {end}",
        checkpoint(&world)
    );
    agent.stop().await;
    let events = read_ndjson(&out);
    assert_exactly_once(&events, "before", 500);
    let after = of_tag(&events, "after");
    assert_eq!(after.len(), 50);
    assert!(after.iter().all(|e| e["stage"] == "after"));
}
