//! Buffers, retries, dead letters, several sinks and checkpoints, in-process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;

/// The checkpoint offset of the file whose path ends with `name`, if any.
fn checkpoint_of(data_dir: &Path, name: &str) -> Option<u64> {
    Checkpoints::read(data_dir).offset_ending_with(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_newest_drops_and_counts_while_the_sink_is_down_and_the_checkpoint_moves_on() {
    let world = World::new();
    let out_dir = world.dir.path().join("later");
    let out = out_dir.join("out.ndjson");
    let config = world.app_yaml("*.log").file_sink(
        "out",
        &["app"],
        &out,
        "batch: { max_events: 50, timeout_ms: 10 }\n\
         buffer: { max_events: 100, when_full: drop_newest }\n\
         retry: { initial_backoff_ms: 10, max_backoff_ms: 20 }",
    );
    let agent = Agent::start(config.config());
    for burst in 0..20 {
        append_numbered(
            &world.log("app.log"),
            "d",
            burst * 500..(burst + 1) * 500,
            40,
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    fs::create_dir(&out_dir).unwrap();
    let size = fs::metadata(world.log("app.log")).unwrap().len();
    let data = world.data();
    assert!(
        wait_for(Duration::from_secs(20), || checkpoint_of(&data, "app.log")
            == Some(size))
        .await,
        "the checkpoint did not reach the end of the file past the dropped events"
    );
    let summary = agent.stop().await;
    let sink = &summary.metrics.sinks["out"];
    let delivered = read_ndjson(&out).len() as u64;
    assert!(sink.dropped_buffer_full > 0, "{sink:?}");
    assert!(delivered > 0);
    assert_eq!(delivered + sink.dropped_buffer_full, 10_000, "{sink:?}");
    assert_eq!(sink.events_out, delivered);
    assert_eq!(sink.buffered_events, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_waits_for_the_slowest_sink_and_a_restart_redelivers_to_it() {
    let world = World::new();
    let good = world.dir.path().join("good.ndjson");
    let later_dir = world.dir.path().join("later");
    let late = later_dir.join("late.ndjson");
    let config = world
        .app_yaml("*.log")
        .file_sink("good", &["app"], &good, "batch: { timeout_ms: 10 }")
        .file_sink(
            "late",
            &["app"],
            &late,
            "batch: { timeout_ms: 10 }\n\
             retry: { initial_backoff_ms: 10, max_backoff_ms: 50 }",
        );
    append_numbered(&world.log("app.log"), "m", 0..500, 40);
    let agent = Agent::start(config.clone().top("shutdown_timeout_ms: 500").config());
    assert!(wait_for(Duration::from_secs(20), || read_ndjson(&good).len() >= 500).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        checkpoint_of(&world.data(), "app.log"),
        Some(0),
        "one sink delivered nothing yet"
    );
    let summary = agent.stop().await;
    assert!(!summary.drained, "the late sink could not drain");
    assert_eq!(checkpoint_of(&world.data(), "app.log"), Some(0));

    fs::create_dir(&later_dir).unwrap();
    let agent = Agent::start(config.config());
    assert!(wait_for(Duration::from_secs(20), || read_ndjson(&late).len() >= 500).await);
    let summary = agent.stop().await;
    assert!(summary.drained);
    assert_exactly_once(&read_ndjson(&late), "m", 500);
    // At least once: the good sink got the lines again after the restart.
    assert_eq!(read_ndjson(&good).len(), 1000);
    let size = fs::metadata(world.log("app.log")).unwrap().len();
    assert_eq!(checkpoint_of(&world.data(), "app.log"), Some(size));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_that_fail_for_good_go_to_the_dead_letter_file() {
    let world = World::new();
    let out = world.dir.path().join("missing-dir").join("out.ndjson");
    let config = world.app_yaml("*.log").file_sink(
        "out",
        &["app"],
        &out,
        "batch: { timeout_ms: 10 }\n\
         retry: { initial_backoff_ms: 5, max_backoff_ms: 10, max_attempts: 3 }",
    );
    append_numbered(&world.log("app.log"), "x", 0..300, 40);
    let agent = Agent::start(config.config());
    let dead = world.data().join("dead_letter").join("out.ndjson");
    assert!(wait_for(Duration::from_secs(20), || read_ndjson(&dead).len() >= 300).await);
    let size = fs::metadata(world.log("app.log")).unwrap().len();
    let data = world.data();
    assert!(
        wait_for(Duration::from_secs(10), || checkpoint_of(&data, "app.log")
            == Some(size))
        .await
    );
    let summary = agent.stop().await;
    let sink = &summary.metrics.sinks["out"];
    assert_eq!(sink.dead_lettered, 300);
    assert_eq!(sink.events_out, 0);
    assert!(sink.errors >= 3);
    assert_exactly_once(&read_ndjson(&dead), "x", 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_checkpoint_file_is_set_aside_and_files_are_read_from_their_start() {
    let world = World::new();
    fs::create_dir_all(world.data()).unwrap();
    fs::write(
        world.data().join("checkpoints.json"),
        b"{\"version\":1,\"files\":[{\"so",
    )
    .unwrap();
    append_numbered(&world.log("app.log"), "k", 0..50, 40);
    let agent = Agent::start(world.config("*.log", "    read_from: end", ""));
    wait_for_events(&world, 50).await;
    let summary = agent.stop().await;
    assert!(summary.drained);
    assert_exactly_once(&world.events(), "k", 50);
    assert!(world.data().join("checkpoints.json.corrupt").exists());
    let size = fs::metadata(world.log("app.log")).unwrap().len();
    assert_eq!(checkpoint_of(&world.data(), "app.log"), Some(size));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sources_feed_their_own_and_a_shared_sink() {
    let world = World::new();
    fs::create_dir(world.dir.path().join("other")).unwrap();
    let other_glob = world.dir.path().join("other").join("*.log");
    let all = world.dir.path().join("all.ndjson");
    let only_app = world.dir.path().join("app.ndjson");
    let config = world
        .yaml()
        .file_source("app", &[&world.log("*.log")], "")
        .file_source("other", &[&other_glob], "")
        .file_sink("all", &["app", "other"], &all, "batch: { timeout_ms: 10 }")
        .file_sink("app_only", &["app"], &only_app, "batch: { timeout_ms: 10 }");
    append_numbered(&world.log("a.log"), "a", 0..100, 40);
    append_numbered(
        &world.dir.path().join("other").join("o.log"),
        "o",
        0..100,
        40,
    );
    let agent = Agent::start(config.config());
    assert!(
        wait_for(Duration::from_secs(20), || read_ndjson(&all).len() >= 200
            && read_ndjson(&only_app).len() >= 100)
        .await
    );
    agent.stop().await;
    let all = read_ndjson(&all);
    assert_exactly_once(&all, "a", 100);
    assert_exactly_once(&all, "o", 100);
    let only_app = read_ndjson(&only_app);
    assert_exactly_once(&only_app, "a", 100);
    assert!(only_app.iter().all(|e| e["source"] == "app"));
    assert!(all.iter().any(|e| e["source"] == "other"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_drop_newest_sink_never_holds_back_a_healthy_one() {
    let world = World::new();
    let good = world.dir.path().join("good.ndjson");
    let down = world.dir.path().join("missing").join("down.ndjson");
    let config = world
        .app_yaml("*.log")
        .top("shutdown_timeout_ms: 500")
        .file_sink("good", &["app"], &good, "batch: { timeout_ms: 5 }")
        .file_sink(
            "down",
            &["app"],
            &down,
            "buffer: { max_events: 20, when_full: drop_newest }\n\
             retry: { initial_backoff_ms: 50, max_backoff_ms: 100 }",
        );
    let agent = Agent::start(config.config());
    // Small chunks: the down sink's channel (16 slots) fills before its 20 event permits do.
    for seq in 0..6000 {
        append_numbered(&world.log("app.log"), "h", seq..seq + 1, 30);
        if seq % 200 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    assert!(
        wait_for(Duration::from_secs(30), || read_ndjson(&good).len() >= 6000).await,
        "the healthy sink got only {} lines",
        read_ndjson(&good).len()
    );
    let summary = agent.stop().await;
    assert_exactly_once(&read_ndjson(&good), "h", 6000);
    assert!(summary.metrics.sinks["down"].dropped_buffer_full > 0);
}

/// Names of this process's threads.
fn thread_names() -> Vec<String> {
    fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect()
}

#[test]
fn a_run_cancelled_mid_way_ends_its_tailer_threads() {
    let world = World::new();
    append_numbered(&world.log("a.log"), "c", 0..100, 40);
    // A source name no other test uses: its thread is `tail-cancelled`.
    let yaml = config_yaml(
        &world.data(),
        &[world.log("*.log").to_str().unwrap()],
        &world.out(),
        "",
        "",
    )
    .replace("  app:", "  cancelled:")
    .replace("inputs: [app]", "inputs: [cancelled]");
    let out = world.out();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let _agent = Agent::start(config(&yaml));
        wait_for(Duration::from_secs(20), || read_ndjson(&out).len() >= 100).await;
        assert!(thread_names().iter().any(|n| n == "tail-cancelled"));
        // The agent is dropped without being stopped, as when a test fails mid-way.
    });
    runtime.shutdown_background();
    let start = std::time::Instant::now();
    while thread_names().iter().any(|n| n == "tail-cancelled") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the tailer thread outlived its cancelled agent"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
