//! The tailer end to end, in-process: files written, truncated and deleted while the agent
//! runs, big and odd lines, many files and few open slots, restarts and shutdowns; what the file
//! sink received is checked line by line. The guarantee checked: every line written is
//! delivered, once and in order (a truncated file is read again from its start, a deleted one
//! to its end, a restart resumes at the checkpoint). Rotation, copies and compressed files are
//! in `tests/tailing_rotation.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ships_existing_lines_then_appended_ones_with_the_contract_keys() {
    let world = World::new();
    append_numbered(&world.log("a.log"), "a", 0..100, 40);
    let agent = Agent::start(world.config("*.log", "", ""));
    wait_for_events(&world, 100).await;
    append_numbered(&world.log("a.log"), "a", 100..150, 40);
    append_numbered(&world.log("b.log"), "b", 0..10, 40);
    wait_for_events(&world, 160).await;
    let summary = agent.stop().await;
    assert!(summary.drained);
    let events = world.events();
    assert_exactly_once(&events, "a", 150);
    assert_exactly_once(&events, "b", 10);
    let first = events
        .iter()
        .find(|e| e["message"].as_str().unwrap().starts_with("a 000000001 "))
        .unwrap();
    let path = world.log("a.log");
    assert_eq!(first["file"], path.to_str().unwrap());
    assert_eq!(first["source"], "app");
    assert_eq!(first["offset"], 41);
    assert!(first["id"].as_str().unwrap().ends_with("-41"));
    assert!(chrono::DateTime::parse_from_rfc3339(first["timestamp"].as_str().unwrap()).is_ok());
    assert_eq!(summary.metrics.sources["app"].events_in, 160);
    assert_eq!(summary.metrics.sinks["out"].events_out, 160);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_renamed_away_is_read_to_its_end_including_its_unterminated_last_line() {
    let world = World::new();
    let agent = Agent::start(world.config("app.log", "", ""));
    let path = world.log("app.log");
    append(&path, b"one\ntwo\nthree without newline");
    wait_for_events(&world, 2).await;
    // The last line waits for its newline while the file is live...
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(world.events().len(), 2);
    // ...and is emitted once the file is rotated away and idle.
    fs::rename(&path, world.log("app.log.1")).unwrap();
    append(&world.log("app.log.1"), b" but more");
    append(&path, b"four\n");
    let events = wait_for_events(&world, 4).await;
    agent.stop().await;
    let messages: Vec<&str> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        messages.contains(&"three without newline but more"),
        "{messages:?}"
    );
    assert!(messages.contains(&"four"), "{messages:?}");
    assert_eq!(world.events().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_reads_the_file_again_from_its_start() {
    let world = World::new();
    let path = world.log("app.log");
    append_numbered(&path, "old", 0..50, 60);
    let agent = Agent::start(world.config("app.log", "", ""));
    wait_for_events(&world, 50).await;
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    append_numbered(&path, "new", 0..20, 30);
    wait_for_events(&world, 70).await;
    let summary = agent.stop().await;
    let events = world.events();
    assert_exactly_once(&events, "old", 50);
    assert_exactly_once(&events, "new", 20);
    assert_eq!(summary.metrics.sources["app"].truncations, 1);
    let first_new = events
        .iter()
        .find(|e| e["message"].as_str().unwrap().starts_with("new 000000000"))
        .unwrap();
    assert_eq!(first_new["offset"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_truncated_and_regrown_past_the_offset_between_scans_is_read_again() {
    let world = World::new();
    let path = world.log("app.log");
    append_numbered(&path, "old", 0..10, 40);
    let agent = Agent::start(world.config("app.log", "", ""));
    wait_for_events(&world, 10).await;
    // Rewritten in place, larger than before: only the fingerprint shows it is not the same.
    fs::write(&path, numbered_lines("new", 0..40, 40)).unwrap();
    wait_for_events(&world, 50).await;
    agent.stop().await;
    let events = world.events();
    assert_exactly_once(&events, "old", 10);
    assert_exactly_once(&events, "new", 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_deleted_while_being_read_is_read_to_its_end() {
    let world = World::new();
    let path = world.log("big.log");
    // Large enough that deletion comes while it is still being read.
    append_numbered(&path, "d", 0..200_000, 100);
    let agent = Agent::start(world.config("*.log", "", ""));
    assert!(wait_for(Duration::from_secs(20), || !world.events().is_empty()).await);
    fs::remove_file(&path).unwrap();
    wait_for_events(&world, 200_000).await;
    // Once read and acked, the deleted file is no longer tracked: its record is kept only as
    // finished, at its end, for a compressed copy of it to continue.
    let data = world.data();
    let size = 200_000 * numbered("d", 0, 100).len() as u64;
    let retired = wait_for(Duration::from_secs(10), || {
        Checkpoints::read(&data)
            .records
            .iter()
            .any(|r| r.path.ends_with("big.log") && r.finished && r.offset == size)
    })
    .await;
    agent.stop().await;
    assert_exactly_once(&world.events(), "d", 200_000);
    assert!(
        retired,
        "the deleted file's record was not retired at its end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_from_end_skips_what_was_there_at_the_first_start_only() {
    let world = World::new();
    append_numbered(&world.log("a.log"), "before", 0..100, 40);
    append(&world.log("a.log"), b"partial line being written");
    let agent = Agent::start(world.config("*.log", "    read_from: end", ""));
    tokio::time::sleep(Duration::from_millis(300)).await;
    append(&world.log("a.log"), b" now complete\n");
    append_numbered(&world.log("a.log"), "after", 0..10, 40);
    // Files created later are read from their start.
    append_numbered(&world.log("b.log"), "later", 0..5, 40);
    wait_for_events(&world, 16).await;
    agent.stop().await;
    let events = world.events();
    assert_exactly_once(&events, "after", 10);
    assert_exactly_once(&events, "later", 5);
    assert!(!counts(&events).contains_key("before"));
    assert_eq!(
        events[0]["message"],
        "partial line being written now complete"
    );
    assert_eq!(events.len(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_mib_line_is_truncated_flagged_counted_and_the_next_lines_flow() {
    let world = World::new();
    let path = world.log("app.log");
    append(&path, b"before\n");
    let agent = Agent::start(world.config("app.log", "    max_line_bytes: 65536", ""));
    wait_for_events(&world, 1).await;
    let huge = vec![b'x'; 10 * 1024 * 1024];
    for piece in huge.chunks(1024 * 1024) {
        append(&path, piece);
    }
    append(&path, b"\nafter\n");
    let events = wait_for_events(&world, 3).await;
    let summary = agent.stop().await;
    assert_eq!(events[0]["message"], "before");
    assert_eq!(events[1]["message"].as_str().unwrap().len(), 65536);
    assert_eq!(events[1]["truncated"], true);
    assert_eq!(events[1]["offset"], 7);
    assert_eq!(events[2]["message"], "after");
    assert_eq!(events[2]["offset"], 7 + 10 * 1024 * 1024 + 1);
    assert!(events[2].get("truncated").is_none());
    assert_eq!(summary.metrics.sources["app"].truncated_lines, 1);
    assert_eq!(world.events().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_and_crlf_lines() {
    let world = World::new();
    append(
        &world.log("app.log"),
        b"caf\xe9 au lait\r\nclean\r\n\x00nul\n",
    );
    let agent = Agent::start(world.config("app.log", "", ""));
    let events = wait_for_events(&world, 3).await;
    let summary = agent.stop().await;
    assert_eq!(events[0]["message"], "caf\u{fffd} au lait");
    assert_eq!(events[0]["invalid_utf8"], true);
    assert_eq!(events[1]["message"], "clean");
    assert!(events[1].get("invalid_utf8").is_none());
    assert_eq!(events[2]["message"], "\u{0}nul");
    assert_eq!(summary.metrics.sources["app"].invalid_utf8_lines, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_files_with_fewer_open_slots_all_arrive() {
    let world = World::new();
    for i in 0..200 {
        append_numbered(
            &world.log(&format!("f{i:03}.log")),
            &format!("f{i:03}"),
            0..50,
            40,
        );
    }
    let agent = Agent::start(world.config("*.log", "    max_open_files: 32", ""));
    wait_for_events(&world, 200 * 50).await;
    // Every file grows again while most are closed.
    for i in 0..200 {
        append_numbered(
            &world.log(&format!("f{i:03}.log")),
            &format!("f{i:03}"),
            50..60,
            40,
        );
    }
    wait_for_events(&world, 200 * 60).await;
    let summary = agent.stop().await;
    let events = world.events();
    for i in 0..200 {
        assert_exactly_once(&events, &format!("f{i:03}"), 60);
    }
    assert!(summary.metrics.sources["app"].open_files <= 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_fails_then_recovers_delivers_everything() {
    let world = World::new();
    append_numbered(&world.log("app.log"), "s", 0..1000, 40);
    // The sink's directory does not exist yet: every write fails until it does.
    let out_dir = world.dir.path().join("later");
    let out = out_dir.join("out.ndjson");
    let yaml = config_yaml(
        &world.data(),
        &[world.log("app.log").to_str().unwrap()],
        &out,
        "",
        "    retry: { initial_backoff_ms: 10, max_backoff_ms: 50 }",
    );
    let agent = Agent::start(config(&yaml));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(read_ndjson(&out).is_empty());
    fs::create_dir(&out_dir).unwrap();
    assert!(wait_for(Duration::from_secs(20), || read_ndjson(&out).len() >= 1000).await);
    let summary = agent.stop().await;
    assert_exactly_once(&read_ndjson(&out), "s", 1000);
    let sink = &summary.metrics.sinks["out"];
    assert!(sink.errors >= 3, "{sink:?}");
    assert!(sink.retries >= 3, "{sink:?}");
    assert_eq!(sink.events_out, 1000);
    assert_eq!(sink.dead_lettered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_at_the_checkpoint() {
    let world = World::new();
    let path = world.log("app.log");
    append_numbered(&path, "c", 0..300, 40);
    let agent = Agent::start(world.config("*.log", "", ""));
    wait_for_events(&world, 300).await;
    assert!(agent.stop().await.drained);
    append_numbered(&path, "c", 300..400, 40);
    let agent = Agent::start(world.config("*.log", "", ""));
    wait_for_events(&world, 400).await;
    agent.stop().await;
    let events = world.events();
    assert_exactly_once(&events, "c", 400);
    // Ids are stable across the restart: same stem before and after.
    let stem = |e: &serde_json::Value| {
        e["id"]
            .as_str()
            .unwrap()
            .split('-')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(stem(&events[0]), stem(&events[399]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_line_file_is_read_at_once_and_followed_as_it_grows() {
    let world = World::new();
    let path = world.log("app.log");
    append(&path, b"x 000000000 short\n");
    let agent = Agent::start(world.config("*.log", "", ""));
    wait_for_events(&world, 1).await;
    // Grows past the fingerprint size, in steps, across a restart.
    append_numbered(&path, "x", 1..20, 100);
    wait_for_events(&world, 20).await;
    agent.stop().await;
    append_numbered(&path, "x", 20..40, 100);
    let agent = Agent::start(world.config("*.log", "", ""));
    wait_for_events(&world, 40).await;
    agent.stop().await;
    assert_exactly_once(&world.events(), "x", 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_with_identical_heads_but_different_contents_are_both_read() {
    let world = World::new();
    let header = "# log format v1, this header is longer than the fingerprint\n".repeat(40);
    for name in ["a", "b"] {
        append(&world.log(&format!("{name}.log")), header.as_bytes());
        append_numbered(&world.log(&format!("{name}.log")), name, 0..100, 40);
    }
    let agent = Agent::start(world.config("*.log", "", ""));
    wait_for_events(&world, 2 * (40 + 100)).await;
    agent.stop().await;
    let events = world.events();
    assert_exactly_once(&events, "a", 100);
    assert_exactly_once(&events, "b", 100);
    assert_eq!(events.len(), 280);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_file_on_a_reused_inode_is_read_from_its_start() {
    let world = World::new();
    let first = world.log("a.log");
    append_numbered(&first, "first", 0..100, 40);
    let agent = Agent::start(world.config("*.log", "", ""));
    wait_for_events(&world, 100).await;
    let inode = fs::metadata(&first).unwrap().ino();
    fs::remove_file(&first).unwrap();
    // Let the deleted file be let go, then create files until one lands on the same inode
    // (filesystems hand freed inodes out again quickly); each is a new file either way.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut reused = false;
    let mut made = 0;
    for i in 0..20 {
        let path = world.log(&format!("n{i}.log"));
        append_numbered(&path, &format!("n{i}"), 0..30, 40);
        made += 1;
        if fs::metadata(&path).unwrap().ino() == inode {
            reused = true;
            break;
        }
    }
    wait_for_events(&world, 100 + made * 30).await;
    agent.stop().await;
    let events = world.events();
    assert_exactly_once(&events, "first", 100);
    for i in 0..made {
        assert_exactly_once(&events, &format!("n{i}"), 30);
    }
    if !reused {
        eprintln!("note: the filesystem did not reuse the inode; the test checked new files only");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_are_parsed_and_bad_ones_shipped_raw_with_parse_error() {
    let world = World::new();
    append(
        &world.log("app.log"),
        b"{\"level\":\"info\",\"status\":404}\nnot json\n",
    );
    let agent = Agent::start(world.config("*.log", "    format: json", ""));
    let events = wait_for_events(&world, 2).await;
    let summary = agent.stop().await;
    assert_eq!(events[0]["status"], 404);
    assert_eq!(events[0]["level"], "info");
    assert!(events[0].get("message").is_none());
    assert_eq!(events[1]["message"], "not json");
    assert!(
        events[1]["parse_error"]
            .as_str()
            .unwrap()
            .contains("invalid JSON")
    );
    assert_eq!(summary.metrics.sources["app"].parse_errors, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_encoding_writes_the_lines_as_they_were() {
    let world = World::new();
    let text = b"alpha\nbeta gamma\n\ndelta\n";
    append(&world.log("app.log"), text);
    let agent = Agent::start(world.config("*.log", "", "    encoding: text"));
    assert!(
        wait_for(Duration::from_secs(20), || fs::read(world.out())
            .is_ok_and(|b| b.len() >= text.len()))
        .await
    );
    agent.stop().await;
    assert_eq!(fs::read(world.out()).unwrap(), text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_young_file_rewritten_in_place_is_read_again_from_its_start() {
    let world = World::new();
    let path = world.log("a.log");
    // Tracked while empty, so its fingerprint starts empty and grows with what is read.
    fs::write(&path, b"").unwrap();
    let agent = Agent::start(world.config("*.log", "", ""));
    tokio::time::sleep(Duration::from_millis(200)).await;
    append_numbered(&path, "a", 0..10, 40);
    wait_for_events(&world, 10).await;
    fs::write(&path, numbered_lines("b", 0..20, 40)).unwrap();
    wait_for_events(&world, 30).await;
    agent.stop().await;
    let events = world.events();
    assert_exactly_once(&events, "a", 10);
    assert_exactly_once(&events, "b", 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reads_every_file_to_its_end_even_those_waiting_for_an_open_slot() {
    let world = World::new();
    for i in 0..40 {
        append_numbered(
            &world.log(&format!("f{i:02}.log")),
            &format!("f{i:02}"),
            0..2000,
            60,
        );
    }
    let agent = Agent::start(world.config("*.log", "    max_open_files: 4", ""));
    // Stop as soon as the files are found, long before a tailer taking turns could be done.
    assert!(wait_for(Duration::from_secs(20), || !world.events().is_empty()).await);
    let summary = agent.stop().await;
    assert!(summary.drained);
    let events = world.events();
    for i in 0..40 {
        assert_exactly_once(&events, &format!("f{i:02}"), 2000);
    }
}
