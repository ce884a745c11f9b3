//! The bad input corpus (issue 9): binary garbage, NUL bytes, invalid UTF-8, a 100 MiB line,
//! JSON nested 10,000 deep, a directory where a file was expected, a symbolic link loop, a
//! checkpoint file truncated mid-write and files the agent may not read. Each one must give a
//! counted outcome or a clear error, never a panic, and a healthy file next to it must keep
//! flowing: every test writes numbered lines to `healthy.log` before and while the bad input is
//! there, and checks that each of them arrives.
//!
//! Small fixtures are committed under `tests/fixtures/bad_input/`; the big ones are made here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad_input");
    fs::read(path.join(name)).unwrap()
}

/// Writes healthy lines `range` to `healthy.log`.
fn healthy(world: &World, range: std::ops::Range<u64>) {
    append_numbered(&world.log("healthy.log"), "h", range, 40);
}

/// Waits until every healthy line `0..n` arrived, and returns every event.
async fn healthy_arrived(world: &World, n: u64) -> Vec<Value> {
    let arrived = || {
        counts(&world.events())
            .get("h")
            .is_some_and(|seen| (0..n).all(|s| seen.contains_key(&s)))
    };
    assert!(
        wait_for(Duration::from_secs(60), arrived).await,
        "the healthy file stalled: {:?} of {n} lines arrived",
        counts(&world.events()).get("h").map(|s| s.len())
    );
    world.events()
}

fn from_file<'a>(events: &'a [Value], world: &World, name: &str) -> Vec<&'a Value> {
    let path = world.log(name);
    let path = path.to_str().unwrap();
    events.iter().filter(|e| e["file"] == path).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_garbage_is_shipped_line_by_line_flagged_and_counted() {
    let world = World::new();
    healthy(&world, 0..100);
    let agent = Agent::start(world.config("*", "", ""));
    let garbage = fixture("garbage.bin");
    fs::write(world.log("garbage.bin"), &garbage).unwrap();
    healthy(&world, 100..200);
    let lines = garbage.iter().filter(|&&b| b == b'\n').count();
    let events = healthy_arrived(&world, 200).await;
    let ok = wait_for(Duration::from_secs(30), || {
        from_file(&world.events(), &world, "garbage.bin").len() >= lines
    })
    .await;
    let summary = agent.stop().await;
    assert!(ok, "not every line of the garbage arrived");
    assert_exactly_once(&events, "h", 200);
    let shipped = from_file(&world.events(), &world, "garbage.bin")
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(
        shipped.len(),
        lines,
        "one event per line, none lost or split"
    );
    let flagged = shipped.iter().filter(|e| e["invalid_utf8"] == true).count();
    assert!(flagged > 0);
    let source = &summary.metrics.sources["app"];
    assert_eq!(source.invalid_utf8_lines, flagged as u64);
    assert_eq!(source.read_errors, 0);
    // Offsets locate every line: each starts right after the previous one's newline.
    let mut offsets: Vec<u64> = shipped
        .iter()
        .map(|e| e["offset"].as_u64().unwrap())
        .collect();
    offsets.sort_unstable();
    let mut want = vec![0u64];
    want.extend(
        garbage
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i as u64 + 1)
            .take(lines - 1),
    );
    assert_eq!(offsets, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_bytes_and_invalid_utf8_are_kept_or_replaced_and_flagged() {
    let world = World::new();
    healthy(&world, 0..50);
    let agent = Agent::start(world.config("*.log", "", ""));
    fs::write(world.log("nul.log"), fixture("nul_bytes.log")).unwrap();
    fs::write(world.log("utf.log"), fixture("invalid_utf8.log")).unwrap();
    healthy(&world, 50..100);
    healthy_arrived(&world, 100).await;
    let ok = wait_for(Duration::from_secs(30), || {
        let events = world.events();
        from_file(&events, &world, "nul.log").len() == 4
            && from_file(&events, &world, "utf.log").len() == 6
    })
    .await;
    let summary = agent.stop().await;
    assert!(ok);
    let events = world.events();
    let nul: Vec<&str> = from_file(&events, &world, "nul.log")
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        nul,
        [
            "nul 1 a\u{0}b",
            "\u{0}nul 2 leading",
            " nul 3 trailing\u{0}\u{0}",
            &"\u{0}".repeat(64)
        ]
    );
    let utf = from_file(&events, &world, "utf.log");
    for event in &utf[..5] {
        assert_eq!(event["invalid_utf8"], true, "{event}");
        assert!(event["message"].as_str().unwrap().contains('\u{fffd}'));
    }
    assert_eq!(utf[4]["message"], "utf 5 caf\u{fffd} latin-1");
    assert!(utf[5].get("invalid_utf8").is_none());
    assert_eq!(utf[5]["message"], "utf 6 valid café");
    assert_eq!(summary.metrics.sources["app"].invalid_utf8_lines, 5);
    assert_exactly_once(&events, "h", 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_line_is_cut_counted_and_does_not_stall_the_other_files() {
    // BAD_INPUT_LINE_MIB makes it shorter on a slow machine (or longer).
    let mib: usize = std::env::var("BAD_INPUT_LINE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let world = World::new();
    healthy(&world, 0..100);
    let agent = Agent::start(world.config("*.log", "", ""));
    let path = world.log("long.log");
    append(&path, b"before\n");
    let chunk = vec![b'x'; 1024 * 1024];
    for i in 0..mib {
        append(&path, &chunk);
        // The healthy file is written while the long line is.
        healthy(&world, 100 + i as u64..101 + i as u64);
    }
    append(&path, b"\nafter\n");
    let total = 100 + mib as u64;
    healthy_arrived(&world, total).await;
    let ok = wait_for(Duration::from_secs(60), || {
        from_file(&world.events(), &world, "long.log").len() >= 3
    })
    .await;
    let summary = agent.stop().await;
    assert!(ok);
    let events = world.events();
    let long = from_file(&events, &world, "long.log");
    assert_eq!(long.len(), 3);
    assert_eq!(long[0]["message"], "before");
    assert_eq!(long[1]["truncated"], true);
    // Cut at the default max_line_bytes (1 MiB).
    assert_eq!(long[1]["message"].as_str().unwrap().len(), 1024 * 1024);
    assert_eq!(long[2]["message"], "after");
    assert_eq!(long[2]["offset"], (7 + mib * 1024 * 1024 + 1) as u64);
    assert_eq!(summary.metrics.sources["app"].truncated_lines, 1);
    assert_exactly_once(&events, "h", total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_nested_10000_deep_is_a_parse_error_not_a_stack_overflow() {
    let world = World::new();
    healthy(&world, 0..50);
    let agent = Agent::start(world.config("*.log", "    format: json", ""));
    let depth = 10_000;
    let mut deep = Vec::new();
    deep.extend(b"{\"a\":".repeat(depth));
    deep.push(b'1');
    deep.extend(b"}".repeat(depth));
    deep.push(b'\n');
    deep.extend(b"[".repeat(depth));
    deep.extend(b"]".repeat(depth));
    deep.push(b'\n');
    deep.extend(b"{\"ok\":true}\n");
    fs::write(world.log("deep.log"), &deep).unwrap();
    healthy(&world, 50..100);
    // Healthy lines are not JSON objects: shipped raw with a parse error, still every one.
    healthy_arrived(&world, 100).await;
    let ok = wait_for(Duration::from_secs(30), || {
        from_file(&world.events(), &world, "deep.log").len() >= 3
    })
    .await;
    let summary = agent.stop().await;
    assert!(ok);
    let events = world.events();
    let shipped = from_file(&events, &world, "deep.log");
    for event in &shipped[..2] {
        let error = event["parse_error"].as_str().unwrap();
        assert!(error.contains("recursion limit"), "{error}");
        // The line is kept whole, raw.
        assert!(event["message"].as_str().unwrap().len() >= 2 * depth);
    }
    assert_eq!(shipped[2]["ok"], true);
    assert_eq!(summary.metrics.sources["app"].parse_errors, 2 + 100);
    assert_exactly_once(&events, "h", 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_where_a_file_was_expected_is_skipped_and_counted_once() {
    let world = World::new();
    healthy(&world, 0..50);
    fs::create_dir(world.log("dir.log")).unwrap();
    fs::write(world.log("dir.log/inner.log"), "inner\n").unwrap();
    let agent = Agent::start(world.config("*.log", "", ""));
    healthy(&world, 50..100);
    healthy_arrived(&world, 100).await;
    // Many scans (every 50 ms) see it; it is counted once.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let summary = agent.stop().await;
    let events = world.events();
    assert_exactly_once(&events, "h", 100);
    assert!(events.iter().all(|e| e["message"] != "inner"));
    let source = &summary.metrics.sources["app"];
    assert_eq!(source.skipped_directories, 1);
    assert_eq!(source.read_errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symbolic_link_loops_end_discovery_and_are_reported() {
    for follow in [false, true] {
        let world = World::new();
        healthy(&world, 0..50);
        // A link to itself, matched by the glob, and directory links back up under `**`.
        symlink("loop.log", world.log("loop.log")).unwrap();
        fs::create_dir_all(world.log("sub/deeper")).unwrap();
        symlink("..", world.log("sub/up")).unwrap();
        symlink(world.logs(), world.log("sub/deeper/root")).unwrap();
        append_numbered(&world.log("sub/deeper/nested.log"), "n", 0..10, 40);
        let extra = format!("    follow_symlinks: {follow}");
        let agent = Agent::start(world.config("**/*.log", &extra, ""));
        healthy(&world, 50..100);
        healthy_arrived(&world, 100).await;
        wait_for_events(&world, 110).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let summary = agent.stop().await;
        assert!(summary.drained);
        let events = world.events();
        // Each file once, whatever the number of paths the links make to it.
        assert_exactly_once(&events, "h", 100);
        assert_exactly_once(&events, "n", 10);
        // The looping link is counted once: not followed, or followed and failing (ELOOP).
        assert_eq!(
            summary.metrics.sources["app"].skipped_symlinks, 1,
            "follow_symlinks: {follow}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_file_truncated_mid_write_is_moved_aside_and_nothing_is_lost() {
    let world = World::new();
    healthy(&world, 0..100);
    let agent = Agent::start(world.config("*.log", "", ""));
    healthy_arrived(&world, 100).await;
    assert!(agent.stop().await.drained);
    let path = world.data().join("checkpoints.json");
    let whole = fs::read(&path).unwrap();
    assert!(checkpointed(&world.data()) > 0);
    // What an OOM kill in the middle of a non-atomic write would leave.
    fs::write(&path, &whole[..whole.len() / 2]).unwrap();
    healthy(&world, 100..200);
    let agent = Agent::start(world.config("*.log", "", ""));
    let events = healthy_arrived(&world, 200).await;
    let summary = agent.stop().await;
    assert!(summary.drained);
    let aside = world.data().join("checkpoints.json.corrupt");
    assert_eq!(fs::read(&aside).unwrap(), &whole[..whole.len() / 2]);
    // Read again from the start: duplicates, never loss; and a sound file is written again.
    let counts = counts(&events);
    assert!((0..100).all(|s| counts["h"][&s] == 2), "{:?}", counts["h"]);
    assert!((100..200).all(|s| counts["h"][&s] == 1));
    assert_eq!(
        checkpointed(&world.data()),
        fs::metadata(world.log("healthy.log")).unwrap().len()
    );
}

/// The uid the permission test runs the agent as when the tests run as root ("nobody").
const NOBODY: u32 = 65534;

#[test]
fn unreadable_files_and_directories_are_reported_while_the_rest_flows_as_non_root() {
    // Root reads files whatever their mode, so as root the agent binary is run as `nobody`:
    // which also shows that nothing in the agent needs root to tail a shared volume.
    let root = real_uid() == 0;
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    let logs = base.join("logs");
    let data = base.join("data");
    fs::create_dir_all(logs.join("locked")).unwrap();
    fs::create_dir_all(&data).unwrap();
    for path in [base, logs.as_path()] {
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    append_numbered(&logs.join("healthy.log"), "h", 0..100, 40);
    fs::write(logs.join("secret.log"), "secret\n").unwrap();
    fs::write(logs.join("locked/inner.log"), "inner\n").unwrap();
    fs::set_permissions(logs.join("secret.log"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::set_permissions(logs.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
    if root {
        std::os::unix::fs::chown(&data, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let out = data.join("out.ndjson");
    let include: Vec<String> = [logs.join("*.log"), logs.join("*/*.log")]
        .iter()
        .map(|p| p.to_str().unwrap().to_owned())
        .collect();
    let include: Vec<&str> = include.iter().map(String::as_str).collect();
    let config = base.join("agent.yaml");
    fs::write(&config, config_yaml(&data, &include, &out, "", "")).unwrap();
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
    let stderr = base.join("agent.stderr");
    // `nobody` may not be able to reach the build directory (a checkout under a 0700 directory):
    // the binary is run from the test's own directory, which it can.
    let binary = base.join("log-agent");
    if fs::hard_link(common::process::binary(), &binary).is_err() {
        fs::copy(common::process::binary(), &binary).unwrap();
    }
    fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).unwrap();
    // Started here rather than by `AgentProcess`: this copy of the binary, as `nobody`.
    let mut cmd = Command::new(&binary);
    cmd.args(["run", "--config", config.to_str().unwrap()])
        .env_remove("LOG_AGENT_CONFIG")
        .env("LOG_AGENT_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stderr).unwrap());
    if root {
        use std::os::unix::process::CommandExt;
        cmd.uid(NOBODY).gid(NOBODY);
    }
    let mut child = cmd.spawn().unwrap();
    let logs_of = || fs::read_to_string(&stderr).unwrap_or_default();
    let start = Instant::now();
    let healthy_lines = || read_ndjson(&out).len();
    while healthy_lines() < 100 || !logs_of().contains("secret.log") {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the agent exited: {}",
            logs_of()
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} lines; logs: {}",
            healthy_lines(),
            logs_of()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    append_numbered(&logs.join("healthy.log"), "h", 100..200, 40);
    while healthy_lines() < 200 {
        assert!(start.elapsed() < Duration::from_secs(60), "{}", logs_of());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Several scans more: each problem is logged once while it lasts.
    std::thread::sleep(Duration::from_millis(500));
    common::process::send_signal(child.id(), "TERM");
    let status = child.wait().unwrap();
    let agent_logs = logs_of();
    assert!(status.success(), "{status}: {agent_logs}");
    let events = read_ndjson(&out);
    assert_exactly_once(&events, "h", 200);
    assert!(events.iter().all(|e| e["message"] != "secret"));
    let denied: Vec<&str> = agent_logs
        .lines()
        .filter(|l| l.contains("Permission denied"))
        .collect();
    assert_eq!(denied.len(), 2, "{agent_logs}");
    assert!(
        denied.iter().any(|l| l.contains("secret.log")),
        "{agent_logs}"
    );
    assert!(denied.iter().any(|l| l.contains("locked")), "{agent_logs}");
    // Writable again, so that the temporary directory can be removed by a non-root user.
    fs::set_permissions(logs.join("locked"), fs::Permissions::from_mode(0o755)).unwrap();
}

/// The real uid, from /proc (the tests need no libc call for it).
fn real_uid() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}
