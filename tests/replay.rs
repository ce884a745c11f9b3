//! `log-agent replay`: rotation families of plain and gzip files read oldest first, every line
//! once; damaged gzip; empty files; a directory of 1,000 files; time ranges; configurations;
//! and the binary's summary and exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::compress::compress;
use common::process::{command, outcome, send_signal};
use common::*;
use log_agent::replay::{ProgressMode, ReplayOptions, ReplaySummary, replay};
use serde_json::Value;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    compress("gz", bytes)
}

/// Numbered lines `range` of `tag` (60 bytes wide), as a file would hold them.
fn lines(tag: &str, range: std::ops::Range<u64>) -> Vec<u8> {
    numbered_lines(tag, range, 60).into_bytes()
}

fn to_file(paths: &[&Path], out: &Path) -> ReplayOptions {
    ReplayOptions {
        paths: paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
        config: None,
        to: Some(log_agent::sink::parse_target(&format!("file:{}", out.display())).unwrap()),
        format: None,
        since: None,
        until: None,
        rate_limit: None,
        data_dir: None,
        progress: ProgressMode::Off,
    }
}

async fn replay_all(options: ReplayOptions) -> ReplaySummary {
    replay(options, std::future::pending()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_family_of_plain_and_gzip_files_is_read_oldest_first() {
    let world = World::new();
    let logs = world.logs();
    // app.log.3.gz is two gzip members (as `cat a.gz b.gz` makes).
    let oldest = [gzip(&lines("r", 0..500)), gzip(&lines("r", 500..1_000))].concat();
    fs::write(logs.join("app.log.3.gz"), oldest).unwrap();
    fs::write(logs.join("app.log.2.gz"), gzip(&lines("r", 1_000..2_000))).unwrap();
    fs::write(logs.join("app.log.1"), lines("r", 2_000..3_000)).unwrap();
    // The current file ends with an unterminated line: shipped too, since replay reads to the end.
    let mut current = lines("r", 3_000..3_999);
    current.extend_from_slice(numbered("r", 3_999, 60).trim_end().as_bytes());
    fs::write(logs.join("app.log"), current).unwrap();

    let summary = replay_all(to_file(&[&logs], &world.out())).await;
    assert!(summary.succeeded(), "{summary}");
    assert_eq!(summary.files, 4);
    assert_eq!(summary.lines, 4_000);
    assert_eq!(summary.delivered, 4_000);
    let events = world.events();
    assert_exactly_once(&events, "r", 4_000);
    assert_at_least_once_in_order(&events, "r", 4_000);
    let first_of_gzip = events
        .iter()
        .find(|e| e["file"].as_str().unwrap().ends_with("app.log.2.gz"))
        .unwrap();
    assert_eq!(
        first_of_gzip["offset"], 0,
        "offsets are uncompressed positions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_gzip_ships_the_lines_before_the_damage_and_reports_it() {
    let world = World::new();
    let whole = gzip(&lines("d", 0..20_000));
    let damaged = world.log("damaged.log.1.gz");
    fs::write(&damaged, &whole[..whole.len() / 2]).unwrap();
    let garbage = world.log("garbage.gz");
    fs::write(&garbage, b"\x1f\x8b\x08\x00garbage that is not deflate").unwrap();
    let fine = world.log("fine.log");
    fs::write(&fine, lines("f", 0..100)).unwrap();

    let summary = replay_all(to_file(&[&damaged, &garbage, &fine], &world.out())).await;
    assert!(!summary.succeeded(), "damage is a failure: {summary}");
    assert_eq!(summary.damaged.len(), 2, "{summary}");
    assert!(
        summary.damaged[0].contains("damaged.log.1.gz") && summary.damaged[0].contains("byte"),
        "the file and the offset are named: {summary}"
    );
    let events = world.events();
    let damaged_lines = of_tag(&events, "d");
    let shipped = damaged_lines.len() as u64;
    assert!(shipped > 1_000, "only {shipped} lines before the damage");
    assert_exactly_once(&damaged_lines, "d", shipped);
    assert_exactly_once(&of_tag(&events, "f"), "f", 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_files_plain_or_gzip_give_nothing_and_succeed() {
    let world = World::new();
    let empty = world.log("empty.log");
    fs::write(&empty, b"").unwrap();
    let empty_gzip = world.log("empty.log.1.gz");
    fs::write(&empty_gzip, gzip(b"")).unwrap();
    let summary = replay_all(to_file(&[&empty, &empty_gzip], &world.out())).await;
    assert!(summary.succeeded(), "{summary}");
    assert_eq!((summary.files, summary.lines), (2, 0));
    assert!(world.events().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_of_a_thousand_files_is_read_whole() {
    let world = World::new();
    let dir = world.logs().join("many");
    fs::create_dir_all(&dir).unwrap();
    for i in 0..1_000 {
        let tag = format!("m{i}");
        let content = lines(&tag, 0..20);
        if i % 3 == 0 {
            fs::write(dir.join(format!("{tag}.log.1.gz")), gzip(&content)).unwrap();
        } else {
            fs::write(dir.join(format!("{tag}.log")), content).unwrap();
        }
    }
    let summary = replay_all(to_file(&[&dir], &world.out())).await;
    assert!(summary.succeeded(), "{summary}");
    assert_eq!((summary.files, summary.lines), (1_000, 20_000));
    let events = world.events();
    for i in (0..1_000).step_by(97) {
        let tag = format!("m{i}");
        let mine = of_tag(&events, &tag);
        assert_exactly_once(&mine, &tag, 20);
        assert_at_least_once_in_order(&mine, &tag, 20);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_and_until_keep_the_events_in_range_and_count_the_rest() {
    let world = World::new();
    let path = world.log("app.jsonl");
    let mut text = String::new();
    for minute in 0..10 {
        text.push_str(&format!(
            "{{\"time\":\"2026-11-25T10:{minute:02}:00Z\",\"n\":{minute}}}\n"
        ));
    }
    text.push_str("{\"n\":\"no time\"}\n");
    fs::write(&path, text).unwrap();
    let mut options = to_file(&[&path], &world.out());
    options.format = Some(log_agent::parse::Format::Json);
    options.since = Some("2026-11-25T10:03:00Z".parse().unwrap());
    options.until = Some("2026-11-25T10:07:00+00:00".parse().unwrap());
    let summary = replay_all(options).await;
    assert!(summary.succeeded(), "{summary}");
    assert_eq!(summary.outside_time_range, 6);
    assert_eq!(summary.undated, 1);
    let kept: Vec<Value> = world.events().iter().map(|e| e["n"].clone()).collect();
    assert_eq!(
        kept,
        [3, 4, 5, 6]
            .map(Value::from)
            .into_iter()
            .chain([Value::from("no time")])
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_config_each_file_takes_the_settings_of_the_source_that_includes_it() {
    let world = World::new();
    let json_path = world.log("app.jsonl");
    fs::write(&json_path, "{\"level\":\"info\",\"n\":1}\n").unwrap();
    let raw_path = world.log("access.log");
    fs::write(&raw_path, "GET / 200\n").unwrap();
    let include = |glob: &str| format!("{:?}", world.log(glob).to_str().unwrap());
    let config = world
        .yaml()
        .source(
            "app",
            &format!(
                "type: file\ninclude: [{}]\nformat: json",
                include("*.jsonl")
            ),
        )
        .source(
            "web",
            &format!("type: file\ninclude: [{}]", include("*.log")),
        )
        .file_sink("out", &["app", "web"], &world.out(), "")
        .config();
    let mut options = to_file(&[&json_path, &raw_path], &world.out());
    options.to = None;
    options.config = Some(config.clone());
    let summary = replay_all(options).await;
    assert!(summary.succeeded(), "{summary}");
    let events = world.events();
    let app = events.iter().find(|e| e["source"] == "app").unwrap();
    assert_eq!(app["level"], "info", "parsed as json: {app}");
    let web = events.iter().find(|e| e["source"] == "web").unwrap();
    assert_eq!(web["message"], "GET / 200");

    let stray = world.dir.path().join("stray.txt");
    fs::write(&stray, "x\n").unwrap();
    let mut options = to_file(&[&stray], &world.out());
    options.to = None;
    options.config = Some(config);
    let error = replay(options, std::future::pending()).await.unwrap_err();
    assert!(error.to_string().contains("stray.txt"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_replay_still_delivers_everything() {
    let world = World::new();
    let path = world.log("app.log");
    fs::write(&path, lines("p", 0..300)).unwrap();
    let mut options = to_file(&[&path], &world.out());
    options.rate_limit = std::num::NonZeroU64::new(5_000);
    let summary = replay_all(options).await;
    assert!(summary.succeeded(), "{summary}");
    assert_exactly_once(&world.events(), "p", 300);
}

fn run_binary(args: &[&str], dir: &Path) -> (Option<i32>, String, String) {
    outcome(command(args).current_dir(dir))
}

#[test]
fn the_binary_prints_a_summary_and_exits_0_1_or_2() {
    let world = World::new();
    let dir = world.logs();
    fs::write(dir.join("app.log.1.gz"), gzip(&lines("b", 0..50))).unwrap();
    fs::write(dir.join("app.log"), lines("b", 50..100)).unwrap();
    let out: PathBuf = world.out();
    let to = format!("file:{}", out.display());

    let (code, stdout, stderr) = run_binary(&["replay", "--to", &to, "."], &dir);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("2 files, 100 lines") && stdout.contains("undelivered: 0"),
        "{stdout}"
    );
    assert_exactly_once(&read_ndjson(&out), "b", 100);

    let whole = gzip(&lines("c", 0..5_000));
    fs::write(dir.join("cut.gz"), &whole[..whole.len() / 2]).unwrap();
    let (code, stdout, _) = run_binary(&["replay", "--to", "blackhole", "cut.gz"], &dir);
    assert_eq!(code, Some(1), "damage exits 1: {stdout}");
    assert!(
        stdout.contains("damaged:") && stdout.contains("cut.gz"),
        "{stdout}"
    );

    let usage: &[&[&str]] = &[
        &["replay", "--to", "stdout", "missing.log"],
        &["replay", "app.log"],
        &["replay", "--to", "ftp://x", "app.log"],
        &[
            "replay",
            "--to",
            "stdout",
            "--since",
            "yesterday",
            "app.log",
        ],
        &["replay", "--to", "stdout", "--format", "xml", "app.log"],
        &["replay", "--to", "stdout"],
    ];
    for args in usage {
        let (code, stdout, stderr) = run_binary(args, &dir);
        assert_eq!(code, Some(2), "{args:?}: {stdout}{stderr}");
        assert!(!stderr.is_empty(), "{args:?}: an error line is printed");
    }
}

#[test]
fn sigint_stops_reading_and_what_was_sent_is_delivered() {
    let world = World::new();
    let path = world.log("big.log");
    fs::write(&path, lines("s", 0..100_000)).unwrap();
    let out = world.out();
    let child = command(&["replay", "--rate-limit", "2000", "--to"])
        .arg(format!("file:{}", out.display()))
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Some lines are out, far from all of them at this rate.
    let start = std::time::Instant::now();
    while read_ndjson(&out).len() < 500 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "nothing shipped"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    send_signal(child.id(), "INT");
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "interrupted is not a success: {stdout}"
    );
    assert!(stdout.contains("interrupted"), "{stdout}");
    assert!(
        stdout.contains("undelivered: 0"),
        "what was sent is delivered: {stdout}"
    );
    let shipped = read_ndjson(&out);
    assert!(shipped.len() < 100_000, "it stopped reading");
    assert_exactly_once(&shipped, "s", shipped.len() as u64);
    assert_at_least_once_in_order(&shipped, "s", shipped.len() as u64);
}

/// Runs the binary in `dir` until it exits or `limit` passes (then kills it and fails).
fn run_binary_within(
    args: &[&str],
    dir: &Path,
    limit: std::time::Duration,
) -> (Option<i32>, String, String) {
    let mut child = command(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "{args:?} still running after {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_kafka_broker_that_is_down_is_given_up_like_a_closed_http_port() {
    let world = World::new();
    let dir = world.logs();
    fs::write(dir.join("app.log"), lines("k", 0..200)).unwrap();
    let address = closed_address();
    let start = std::time::Instant::now();
    let to = format!("kafka://{address}/logs");
    let (code, stdout, stderr) = run_binary_within(
        &["replay", "--to", &to, "app.log"],
        &dir,
        std::time::Duration::from_secs(90),
    );
    let took = start.elapsed();
    println!("gave up after {took:?}:\n{stdout}");
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("undelivered: 200"), "{stdout}");
    let dead_path = dir.join("dead_letter").join("to.ndjson");
    let dead = read_ndjson(&dead_path);
    assert_exactly_once(&dead, "k", 200);
    // The summary says where they went, and progress what it was waiting for.
    assert!(
        stdout.contains(&format!(
            "dead-lettered: 200 events of sink `to`, kept in {}",
            dead_path.display()
        )),
        "{stdout}"
    );
    assert!(
        stderr.contains("waiting for sink `to`: 200 events not delivered yet, deliveries failing"),
        "{stderr}"
    );
    assert!(!stderr.contains("0.0/0.0 MiB"), "{stderr}");
    assert!(
        took < std::time::Duration::from_secs(60),
        "8 attempts took {took:?}"
    );
}

#[test]
fn with_events_on_stdout_the_summary_goes_to_stderr() {
    let world = World::new();
    let dir = world.logs();
    fs::write(dir.join("app.log"), lines("o", 0..50)).unwrap();
    let (code, stdout, stderr) = run_binary(&["replay", "--to", "stdout", "app.log"], &dir);
    assert_eq!(code, Some(0), "{stderr}");
    let events: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect();
    assert_exactly_once(&events, "o", 50);
    assert!(stderr.contains("1 files, 50 lines"), "{stderr}");
    // A sink elsewhere: the summary stays on stdout.
    let (_, stdout, _) = run_binary(&["replay", "--to", "blackhole", "app.log"], &dir);
    assert!(stdout.contains("1 files, 50 lines"), "{stdout}");
}

#[test]
fn time_ranges_that_cannot_work_are_said() {
    let world = World::new();
    let dir = world.logs();
    fs::write(dir.join("app.log"), lines("t", 0..20)).unwrap();
    // An empty range is bad usage.
    let (code, stdout, stderr) = run_binary(
        &[
            "replay",
            "--to",
            "blackhole",
            "--since",
            "2026-02-01",
            "--until",
            "2026-01-01",
            "app.log",
        ],
        &dir,
    );
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("--since") && stderr.contains("not before --until"),
        "{stderr}"
    );
    // Raw lines have no time: the summary says the range judged none of them.
    let (code, stdout, _) = run_binary(
        &[
            "replay",
            "--to",
            "blackhole",
            "--since",
            "2026-01-01",
            "app.log",
        ],
        &dir,
    );
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("note: none of the lines has a time to judge by")
            && stdout.contains("--since/--until kept them"),
        "{stdout}"
    );
}
