//! The real rotation tools' steps, one by one, with the agent in-process: what logrotate and
//! gzip (or zstd, bzip2, xz) do that an atomic simulation does not. A compressed file is
//! created empty and filled in pieces; a copytruncate copy is written in pieces while the
//! application goes on appending to the original, so the copy ends before what the agent read
//! of the original; logrotate's `copy` leaves a copy of a prefix of a file that goes on. Each
//! step is separate so that the agent sees every intermediate state; `tests/logrotate_real.rs`
//! runs the tools themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::time::Duration;

use common::compress::{CODECS, compress_in_pieces, compress_in_pieces_to};
use common::*;
use serde_json::Value;

/// Long enough for a scan and a read pass of the `FAST` config.
const LOOK: Duration = Duration::from_millis(150);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_files_created_empty_and_filled_in_pieces_are_never_read_as_text() {
    let world = World::new();
    let agent = Agent::start(world.config("app*.log*", "", ""));
    for (i, ext) in CODECS.iter().enumerate() {
        // A rotated file read to its end, then compressed: its compressed copy continues it
        // (nothing repeated)...
        let rotated = world.log(&format!("app{i}.log.1"));
        append_numbered(&rotated, &format!("r{i}"), 0..3_000, 70);
        // ...and an archive the agent never saw in plain form (not matched): read whole once
        // settled.
        let archive = world.log(&format!("archive{i}"));
        append_numbered(&archive, &format!("a{i}"), 0..2_000, 70);
        let read = 3_000 * (i + 1) + 2_000 * i;
        wait_for_events(&world, read).await;
        let archived = world.log(&format!("app{i}.old.log.{ext}"));
        let ext = ext.to_string();
        tokio::task::spawn_blocking(move || {
            compress_in_pieces(&rotated, &ext, 3, LOOK);
            compress_in_pieces_to(&archive, &archived, &ext, 3, LOOK);
        })
        .await
        .unwrap();
        wait_for_events(&world, read + 2_000).await;
    }
    // Time for every compressed file to settle and be read; then their times change, as
    // logrotate sets them after the compressor is done: the same files, not new ones.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    for entry in fs::read_dir(world.logs()).unwrap() {
        let path = entry.unwrap().path();
        let past = std::time::SystemTime::now() - Duration::from_secs(3_600);
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(past)
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let summary = agent.stop().await;
    let events = world.events();
    let tags: Vec<String> = (0..CODECS.len())
        .flat_map(|i| [format!("r{i}"), format!("a{i}")])
        .collect();
    let not_written: Vec<&Value> = events
        .iter()
        .filter(|e| {
            let message = e["message"].as_str().unwrap_or_default();
            e["invalid_utf8"] == true || !tags.iter().any(|t| message.starts_with(&format!("{t} ")))
        })
        .collect();
    assert!(
        not_written.is_empty(),
        "{} events are not lines that were written (compressed bytes?): {:?}",
        not_written.len(),
        &not_written[..not_written.len().min(3)]
    );
    for i in 0..CODECS.len() {
        assert_exactly_once(&events, &format!("r{i}"), 3_000);
        assert_exactly_once(&events, &format!("a{i}"), 2_000);
    }
    assert_eq!(summary.metrics.sources["app"].read_errors, 0);
}

/// Writes `content` (the original as it was when copied) into a new file `copy`, in pieces, as
/// copytruncate's copy fills a file created empty.
fn write_copy_in_pieces(copy: &std::path::Path, content: &[u8]) {
    use std::io::Write;
    let mut out = fs::File::create(copy).unwrap();
    std::thread::sleep(LOOK);
    for piece in content.chunks(8 * 1024) {
        out.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// copytruncate: `copied` (the original as it was when the copy began) written into `copy` in
/// pieces, then the original `live` truncated.
async fn copy_then_truncate(live: &std::path::Path, copy: std::path::PathBuf, copied: Vec<u8>) {
    tokio::task::spawn_blocking(move || write_copy_in_pieces(&copy, &copied))
        .await
        .unwrap();
    fs::File::options()
        .write(true)
        .open(live)
        .unwrap()
        .set_len(0)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copytruncate_copy_that_ends_before_what_was_read_is_not_shipped_again() {
    let world = World::new();
    let agent = Agent::start(world.config("app.log*", "", ""));
    let live = world.log("app.log");
    for round in 0..3u64 {
        let tag = format!("c{round}");
        append_numbered(&live, &tag, 0..1_000, 70);
        // The copy reads the original as it is now...
        let copied = fs::read(&live).unwrap();
        // ...and the application appends while it is fsynced; the agent reads those lines from
        // the original before the truncation.
        append_numbered(&live, &tag, 1_000..1_100, 70);
        wait_for(Duration::from_secs(30), || {
            counts(&world.events())
                .get(&tag)
                .is_some_and(|c| c.len() == 1_100)
        })
        .await;
        copy_then_truncate(&live, world.log(&format!("app.log.{}", round + 1)), copied).await;
        tokio::time::sleep(LOOK).await;
    }
    append_numbered(&live, "after", 0..10, 70);
    wait_for(Duration::from_secs(30), || {
        counts(&world.events())
            .get("after")
            .is_some_and(|c| c.len() == 10)
    })
    .await;
    // Long enough for every copy to be decided (rotate_wait_ms) and, if it were read, shipped.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let summary = agent.stop().await;
    let events = world.events();
    for round in 0..3 {
        assert_exactly_once(&events, &format!("c{round}"), 1_100);
    }
    assert_exactly_once(&events, "after", 10);
    assert_eq!(summary.metrics.sources["app"].copies_skipped, 3);
    assert_eq!(summary.metrics.sources["app"].truncation_lost_bytes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_a_copy_shorter_than_what_was_delivered_is_not_shipped_again() {
    let world = World::new();
    let live = world.log("app.log");
    append_numbered(&live, "k", 0..3_000, 70);
    let copied = fs::read(&live).unwrap();
    append_numbered(&live, "k", 3_000..3_200, 70);
    let agent = Agent::start(world.config("app.log*", "", ""));
    wait_for_events(&world, 3_200).await;
    agent.stop().await;
    // While the agent is down: the copy (of the file as it was before the last lines), then
    // the truncation. The checkpoint's marks prove the copy holds only what was delivered.
    fs::write(world.log("app.log.1"), &copied).unwrap();
    fs::File::options()
        .write(true)
        .open(&live)
        .unwrap()
        .set_len(0)
        .unwrap();
    append_numbered(&live, "n", 0..50, 70);
    let agent = Agent::start(world.config("app.log*", "", ""));
    wait_for_events(&world, 3_250).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let summary = agent.stop().await;
    let events = world.events();
    assert_exactly_once(&events, "k", 3_200);
    assert_exactly_once(&events, "n", 50);
    assert_eq!(summary.metrics.sources["app"].copies_skipped, 1);
}

/// Found by the model test under load: a short file (all of it within the head the agent
/// fingerprints) is copied (copytruncate), a line is written after the copy and read, then the
/// file is truncated: the copy, shorter than what was read, is taken for lines read already
/// (a record of its own, marked as a copy's). Compressed while the agent is down, the
/// compressed copy matched no record at the restart (the copy's was for no other file, and the
/// original's fingerprint covers more than the copy holds) and was read whole. It continues
/// the copy's record, being the same lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_copy_of_lines_read_already_compressed_while_the_agent_is_down_is_not_read_again() {
    let world = World::new();
    let agent = Agent::start(world.config("app.log*", "", ""));
    let live = world.log("app.log");
    append_numbered(&live, "s", 0..9, 60);
    let copied = fs::read(&live).unwrap();
    append_numbered(&live, "s", 9..10, 60);
    wait_for_events(&world, 10).await;
    copy_then_truncate(&live, world.log("app.log.1"), copied).await;
    // Long enough for the copy to be decided (rotate_wait_ms).
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let summary = agent.stop().await;
    assert_eq!(summary.metrics.sources["app"].copies_skipped, 1);
    let copy = world.log("app.log.1");
    tokio::task::spawn_blocking(move || compress_in_pieces(&copy, "gz", 2, LOOK))
        .await
        .unwrap();
    let agent = Agent::start(world.config("app.log*", "", ""));
    append_numbered(&live, "after", 0..5, 60);
    wait_for_events(&world, 15).await;
    // Long enough for the compressed file to settle and, if it were read, be shipped.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    agent.stop().await;
    let events = world.events();
    assert_exactly_once(&events, "s", 10);
    assert_exactly_once(&events, "after", 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_starts_like_another_but_differs_after_its_head_is_read_whole() {
    let world = World::new();
    let agent = Agent::start(world.config("*.log", "", ""));
    // The same first kilobyte and more (a header, say), then other lines: no copy, whatever
    // its length compared with what was read of the first file.
    let header: String = (0..40)
        .map(|i| format!("# header line {i:03} ........\n"))
        .collect();
    append(&world.log("a.log"), header.as_bytes());
    append_numbered(&world.log("a.log"), "a", 0..2_000, 70);
    wait_for_events(&world, 2_040).await;
    append(&world.log("b.log"), header.as_bytes());
    append_numbered(&world.log("b.log"), "b", 0..500, 70);
    wait_for_events(&world, 2_580).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let summary = agent.stop().await;
    let events = world.events();
    assert_exactly_once(&events, "a", 2_000);
    assert_exactly_once(&events, "b", 500);
    assert_eq!(summary.metrics.sources["app"].copies_skipped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_file_that_starts_like_a_file_read_before_but_differs_is_read_whole() {
    let world = World::new();
    let agent = Agent::start(world.config("app*.log*", "", ""));
    let header: String = (0..40)
        .map(|i| format!("# header line {i:03} ........\n"))
        .collect();
    let first = world.log("app.log.1");
    append(&first, header.as_bytes());
    append_numbered(&first, "a", 0..2_000, 70);
    wait_for_events(&world, 2_040).await;
    // Read and let go: its record is kept for a compressed copy of it.
    fs::remove_file(&first).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    // A compressed file with the same head, then other lines: not that file's copy.
    let other = world.dir.path().join("other");
    append(&other, header.as_bytes());
    append_numbered(&other, "g", 0..3_000, 70);
    let compressed = world.log("app.log.2.gz");
    tokio::task::spawn_blocking(move || {
        common::compress::compress_in_pieces_to(&other, &compressed, "gz", 2, LOOK)
    })
    .await
    .unwrap();
    wait_for(Duration::from_secs(30), || {
        counts(&world.events())
            .get("g")
            .is_some_and(|c| c.len() == 3_000)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    agent.stop().await;
    let events = world.events();
    assert_exactly_once(&events, "a", 2_000);
    assert_exactly_once(&events, "g", 3_000);
}
