//! The tailer end to end, in-process, through rotation: rename rotation and copytruncate
//! during continuous writes, logrotate's `copy` (a copy of what was read, of the first lines),
//! rotation with compression while the agent runs or while it is down, included gzip files (a
//! damaged one counted) and a new file on the inode of a compressed one. The guarantee checked:
//! whatever the rotation, every line is delivered once, a copy or compressed copy of what was
//! read is not shipped again, and what is added to a copy is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::compress::compress;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_rotation_during_continuous_writes_loses_and_repeats_nothing() {
    let world = World::new();
    let agent = Agent::start(world.config("app.log", "", ""));
    let path = world.log("app.log");
    let rotated = world.log("app.log.1");
    let writer = std::thread::spawn(move || {
        let total = 30_000;
        append_numbered_in_bursts(&path, "r", 0..total, 100, 80, |seq| {
            if seq % 5_000 == 4_900 {
                // Like logrotate's `create` mode: rename, and the app reopens its path.
                let _ = fs::remove_file(&rotated);
                fs::rename(&path, &rotated).unwrap();
            }
            if seq % 1_000 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        total
    });
    let total = tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    wait_for_events(&world, total as usize).await;
    agent.stop().await;
    assert_exactly_once(&world.events(), "r", total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_during_continuous_writes_loses_and_repeats_nothing() {
    let world = World::new();
    // The copies match the glob too: what was not read from the original before its
    // truncation is read from its copy, from the same offset on.
    let agent = Agent::start(world.config("app.log*", "", ""));
    let path = world.log("app.log");
    let copy = world.log("app.log.1");
    let writer = std::thread::spawn(move || {
        let total = 30_000;
        append_numbered_in_bursts(&path, "t", 0..total, 100, 80, |seq| {
            if seq % 5_000 == 4_900 {
                // Like logrotate's `copytruncate`, with writes paused between copy and
                // truncation (what is written in between is lost by copytruncate itself).
                let _ = fs::remove_file(&copy);
                fs::copy(&path, &copy).unwrap();
                fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&path)
                    .unwrap();
            }
            // Rotations come a few scans apart, as they do in life (hours apart, there).
            std::thread::sleep(Duration::from_millis(5));
        });
        total
    });
    let total = tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    wait_for_events(&world, total as usize).await;
    // Give a wrongly re-read copy the time to show up before checking for duplicates.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let summary = agent.stop().await;
    assert_exactly_once(&world.events(), "t", total);
    assert!(summary.metrics.sources["app"].truncations >= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_then_a_burst_past_the_read_offset_is_never_read_as_the_old_file() {
    // Each generation is copied and truncated while the agent may be about to read it, and the
    // next one is written at once past the offset the agent had reached: a read checked
    // against the old file but done after the rewrite must not pass the new generation's bytes
    // off as the old one's (which also skipped them in the copy).
    let world = World::new();
    let agent = Agent::start(world.config("app.log*", "", ""));
    let path = world.log("app.log");
    let logs = world.logs();
    const ROUNDS: u64 = 80;
    const LINES: u64 = 1_000;
    let writer = std::thread::spawn(move || {
        for round in 0..ROUNDS {
            let tag = format!("g{round}");
            for part in 0..4 {
                append_numbered(&path, &tag, part * LINES / 4..(part + 1) * LINES / 4, 40);
            }
            fs::copy(&path, logs.join(format!("app.log.{round}"))).unwrap();
            fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&path)
                .unwrap();
        }
    });
    tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    // A loss shows below, line by line.
    wait_for(Duration::from_secs(30), || {
        world.events().len() >= (ROUNDS * LINES) as usize
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    agent.stop().await;
    let events = world.events();
    for round in 0..ROUNDS {
        assert_exactly_once(&events, &format!("g{round}"), LINES);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_what_was_read_is_not_shipped_again_but_what_is_added_to_it_is() {
    let world = World::new();
    append_numbered(&world.log("a.log"), "a", 0..100, 40);
    let agent = Agent::start(world.config("*.log", "", ""));
    wait_for_events(&world, 100).await;
    // logrotate's `copy`: the original goes on, its copy holds lines read already.
    fs::copy(world.log("a.log"), world.log("b.log")).unwrap();
    append_numbered(&world.log("a.log"), "a", 100..120, 40);
    wait_for_events(&world, 120).await;
    // Once the copy is settled (rotate_wait_ms), it is known for one; what is written to it
    // afterwards is its own.
    tokio::time::sleep(Duration::from_millis(900)).await;
    append_numbered(&world.log("b.log"), "b", 0..5, 40);
    let events = wait_for_events(&world, 125).await;
    let summary = agent.stop().await;
    assert_exactly_once(&events, "a", 120);
    assert_exactly_once(&events, "b", 5);
    assert_eq!(summary.metrics.sources["app"].copies_skipped, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_the_first_lines_is_known_by_the_head_even_once_the_head_is_no_longer_kept() {
    // The agent keeps a file's whole head (`fingerprint_bytes`, 1 KiB) only while it may grow.
    // A copy of the file's first 7 lines (280 bytes, shorter than the head, ending where no read
    // of the agent ended, so no mark proves it) is known for one by the head's bytes alone.
    // (lines read before the copy is made, lines in the file when the copy shows up, original
    // truncated before then)
    let cases = [
        // The file grows past the head's size: its head, no longer kept whole in memory, is
        // read again from the file.
        (10, 40, false),
        // Truncated (copytruncate) while its head was still growing: the generation truncated
        // away kept its whole head, the only place its bytes are still known.
        (10, 10, true),
    ];
    for (first, total, truncated) in cases {
        let world = World::new();
        let a = world.log("a.log");
        append_numbered(&a, "a", 0..first, 40);
        let agent = Agent::start(world.config("*.log", "", ""));
        wait_for_events(&world, first as usize).await;
        // logrotate's `copy` made when the file had 7 lines, out of the glob's sight for now.
        let copy = world.log("b.tmp");
        fs::write(&copy, numbered_lines("a", 0..7, 40)).unwrap();
        append_numbered(&a, "a", first..total, 40);
        wait_for_events(&world, total as usize).await;
        // The copy settles (rotate_wait_ms) before it shows up: no longer written.
        tokio::time::sleep(Duration::from_millis(400)).await;
        if truncated {
            fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&a)
                .unwrap();
        }
        fs::rename(&copy, world.log("b.log")).unwrap();
        tokio::time::sleep(Duration::from_millis(900)).await;
        append_numbered(&world.log("b.log"), "b", 0..5, 40);
        let events = wait_for_events(&world, total as usize + 5).await;
        let summary = agent.stop().await;
        let case = format!("{first} lines, then {total}, truncated: {truncated}");
        assert_eq!(world.events().len(), total as usize + 5, "{case}");
        assert_exactly_once(&events, "a", total);
        assert_exactly_once(&events, "b", 5);
        assert_eq!(summary.metrics.sources["app"].copies_skipped, 1, "{case}");
    }
}

/// Sets the modification time of `path` a minute back: a compressed file that old is finished.
fn backdate(path: &std::path::Path) {
    let past = std::time::SystemTime::now() - Duration::from_secs(60);
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(past)
        .unwrap();
}

/// Compresses `path` into `<path>.gz` and removes it, as logrotate's `compress` does; the
/// compressed file's time is set in the past so that it counts as finished at once.
fn gzip_in_place(path: &std::path::Path) -> std::path::PathBuf {
    let compressed = std::path::PathBuf::from(format!("{}.gz", path.display()));
    let partial = compressed.with_extension("gz.tmp");
    fs::write(&partial, compress("gz", &fs::read(path).unwrap())).unwrap();
    backdate(&partial);
    fs::rename(&partial, &compressed).unwrap();
    fs::remove_file(path).unwrap();
    compressed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_rotated_and_compressed_while_the_agent_was_down_is_resumed_inside_the_gzip() {
    let world = World::new();
    let path = world.log("app.log");
    append_numbered(&path, "g", 0..1_000, 60);
    let config = || world.config("app.log*", "", "");
    let agent = Agent::start(config());
    wait_for_events(&world, 1_000).await;
    assert!(agent.stop().await.drained);
    // While the agent is down: more lines, then rotation and compression, then a new file.
    append_numbered(&path, "g", 1_000..1_500, 60);
    let rotated = world.log("app.log.1");
    fs::rename(&path, &rotated).unwrap();
    gzip_in_place(&rotated);
    append_numbered(&path, "g", 1_500..1_800, 60);
    let agent = Agent::start(config());
    wait_for_events(&world, 1_800).await;
    // Nothing more comes: the compressed file is not read again from its start.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let summary = agent.stop().await;
    assert!(summary.drained);
    let events = world.events();
    assert_exactly_once(&events, "g", 1_800);
    let from_gzip: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["file"].as_str().unwrap().ends_with("app.log.1.gz"))
        .collect();
    assert_eq!(
        from_gzip.len(),
        500,
        "only the lines written after the stop"
    );
    let offsets: Vec<u64> = from_gzip
        .iter()
        .map(|e| e["offset"].as_u64().unwrap())
        .collect();
    assert!(offsets.is_sorted(), "in order within the file");
    let line = numbered("g", 0, 60).len() as u64;
    assert_eq!(from_gzip[0]["offset"], 1_000 * line, "uncompressed offsets");
    let stem = |e: &serde_json::Value| {
        e["id"]
            .as_str()
            .unwrap()
            .split('-')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        stem(from_gzip[0]),
        stem(&events[0]),
        "the ids of the file it continues"
    );

    // And at a further restart, the compressed file is known by its checkpoint.
    let agent = Agent::start(config());
    tokio::time::sleep(Duration::from_millis(800)).await;
    agent.stop().await;
    assert_eq!(world.events().len(), 1_800);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_with_compression_while_running_loses_and_repeats_nothing() {
    let world = World::new();
    let agent = Agent::start(world.config("app.log*", "", ""));
    let path = world.log("app.log");
    let writer = std::thread::spawn(move || {
        let rotated = path.with_file_name("app.log.1");
        append_numbered_in_bursts(&path, "z", 0..12_000, 100, 80, |seq| {
            if seq % 4_000 == 3_900 {
                let _ = fs::remove_file(rotated.with_file_name(format!("app.log.{seq}.gz")));
                fs::rename(&path, &rotated).unwrap();
                // The agent may or may not have read the rotated file to its end by now.
                std::thread::sleep(Duration::from_millis(50));
                let compressed = gzip_in_place(&rotated);
                fs::rename(
                    &compressed,
                    rotated.with_file_name(format!("app.log.{seq}.gz")),
                )
                .unwrap();
            }
            std::thread::sleep(Duration::from_millis(2));
        });
    });
    tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    wait_for_events(&world, 12_000).await;
    // Time for every compressed file to be found and settled: none may add a line.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let summary = agent.stop().await;
    assert!(summary.drained);
    let events = world.events();
    assert_exactly_once(&events, "z", 12_000);
    assert_at_least_once_in_order(&events, "z", 12_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_included_gzip_file_is_read_and_a_damaged_one_is_counted() {
    let world = World::new();
    let archive = world.log("old.log");
    append_numbered(&archive, "o", 0..2_000, 60);
    gzip_in_place(&archive);
    let damaged = world.log("bad.log");
    append_numbered(&damaged, "d", 0..20_000, 60);
    let compressed = gzip_in_place(&damaged);
    let bytes = fs::read(&compressed).unwrap();
    fs::write(&compressed, &bytes[..bytes.len() / 2]).unwrap();
    backdate(&compressed);
    append_numbered(&world.log("live.log"), "l", 0..100, 60);
    let agent = Agent::start(world.config("*", "", ""));
    wait_for_events(&world, 2_100).await;
    let data = world.data();
    wait_for(Duration::from_secs(10), || checkpointed(&data) > 0).await;
    let summary = agent.stop().await;
    let events = world.events();
    assert_exactly_once(&events, "o", 2_000);
    assert_exactly_once(&events, "l", 100);
    let before_damage = of_tag(&events, "d");
    let shipped = before_damage.len() as u64;
    assert!(shipped > 1_000, "{shipped} lines before the damage");
    assert_exactly_once(&before_damage, "d", shipped);
    assert!(summary.metrics.sources["app"].read_errors >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_gzip_files_share_few_open_slots() {
    let world = World::new();
    for i in 0..40 {
        let tag = format!("z{i}");
        let path = world.log(&format!("{tag}.log"));
        append_numbered(&path, &tag, 0..300, 60);
        gzip_in_place(&path);
    }
    append_numbered(&world.log("live.log"), "live", 0..100, 60);
    let agent = Agent::start(world.config("*", "    max_open_files: 4", ""));
    wait_for_events(&world, 40 * 300 + 100).await;
    let summary = agent.stop().await;
    assert!(summary.drained);
    let events = world.events();
    for i in 0..40 {
        let tag = format!("z{i}");
        assert_exactly_once(&of_tag(&events, &tag), &tag, 300);
    }
    assert_exactly_once(&of_tag(&events, "live"), "live", 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_file_on_the_inode_of_a_compressed_file_read_and_deleted_is_read() {
    let world = World::new();
    let compressed = world.log("old.log.gz");
    let old = numbered_lines("o", 0..100, 60);
    fs::write(&compressed, compress("gz", old.as_bytes())).unwrap();
    backdate(&compressed);
    let agent = Agent::start(world.config("*.log*", "", ""));
    wait_for_events(&world, 100).await;
    // Read to its end, the compressed file is closed: once deleted its inode is free, and
    // ext4 and tmpfs give it to the next file created.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let inode = fs::metadata(&compressed).unwrap().ino();
    fs::remove_file(&compressed).unwrap();
    append_numbered(&world.log("new.log"), "n", 0..50, 60);
    let reused = fs::metadata(world.log("new.log")).unwrap().ino() == inode;
    println!("inode reused: {reused}");
    wait_for_events(&world, 150).await;
    agent.stop().await;
    let events = world.events();
    assert_exactly_once(&events, "o", 100);
    assert_exactly_once(&events, "n", 50);
}
