//! The checkpoint store and its file, tested together: what is acked, persisted and loaded.

use std::fs;

use super::disk::{CheckpointFile, FILE_NAME, FORMAT_VERSION, unix_now};
use super::*;
use crate::event::FileKey;

fn record(key: FileKey, offset: u64) -> FileRecord {
    FileRecord {
        source: "app".into(),
        path: format!("/logs/{key}.log").into(),
        dev: 1,
        ino: key,
        fingerprint: Fingerprint::of(b"head"),
        key,
        offset,
        updated_unix: unix_now(),
        finished: false,
        marks: Vec::new(),
        copy: false,
    }
}

#[test]
fn checkpoint_is_the_least_delivered_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (store, outcome) = CheckpointStore::open(dir.path()).unwrap();
    assert_eq!(outcome, LoadOutcome::FirstStart);
    store.track(record(7, 100), &[0, 1]);
    store.emitted(7, 500);
    // (sink, acked offset, checkpoint after, fully acked after)
    let steps = [
        (0, 300, 100, false),
        (1, 200, 200, false),
        (1, 150, 200, false), // an older ack never moves it back
        (1, 500, 300, false),
        (9, 900, 300, false), // a sink the source does not route to counts for nothing
        (0, 500, 500, true),
    ];
    for (sink, offset, want, acked) in steps {
        store.ack(sink, 7, offset);
        assert_eq!(store.checkpoint(7), Some(want), "after ack {sink}@{offset}");
        assert_eq!(store.is_fully_acked(7), acked, "after ack {sink}@{offset}");
    }
}

#[test]
fn routes_set_by_a_reload_keep_what_the_remaining_sinks_delivered() {
    let store = CheckpointStore::ephemeral();
    store.track(record(7, 100), &[0, 1]);
    store.emitted(7, 500);
    store.ack(0, 7, 400);
    store.ack(1, 7, 200);
    // (routes set, checkpoint after, then an ack and the checkpoint after it)
    type Step = (&'static [SinkId], u64, (SinkId, u64), u64);
    let steps: &[Step] = &[
        // Sink 2 added: it starts at what was handed on (500); 1 still holds at 200.
        (&[0, 1, 2], 200, (1, 450), 400),
        // Sink 0 removed: it no longer holds the checkpoint back.
        (&[1, 2], 450, (1, 500), 500),
        // An ack of a sink routed no more counts for nothing.
        (&[2], 500, (0, 900), 500),
    ];
    for (sinks, want, (sink, offset), after) in steps {
        store.route("app", sinks);
        assert_eq!(store.checkpoint(7), Some(*want), "routes {sinks:?}");
        store.ack(*sink, 7, *offset);
        assert_eq!(store.checkpoint(7), Some(*after), "routes {sinks:?}, ack");
    }
    // Files tracked from now on go to the routes, whatever their tailer says.
    store.track(record(8, 0), &[0, 1]);
    store.emitted(8, 10);
    store.ack(2, 8, 10);
    assert_eq!(store.checkpoint(8), Some(10));
    assert!(store.is_source_fully_acked("app"));
    store.emitted(8, 20);
    assert!(!store.is_source_fully_acked("app"));
    assert!(store.is_source_fully_acked("other"));
}

#[test]
fn a_sink_reached_along_a_new_lane_starts_where_its_old_lanes_were() {
    use crate::checkpoint::ack_id;
    let store = CheckpointStore::ephemeral();
    let (lane0, lane1, lane2) = (ack_id(0, 0), ack_id(0, 1), ack_id(0, 2));
    store.track(record(7, 100), &[lane0, lane1]);
    store.emitted(7, 500);
    store.ack(lane0, 7, 450);
    store.ack(lane1, 7, 300);
    assert_eq!(store.checkpoint(7), Some(300), "the slower lane holds it");
    // A reload renumbers the second path (a transform put before it): chunks of lane 1 may
    // still be in the sink's buffer, so lane 2 starts at 300, not at the 500 handed on.
    store.route("app", &[lane0, lane2]);
    assert_eq!(store.checkpoint(7), Some(300));
    store.ack(lane2, 7, 500);
    store.ack(lane0, 7, 500);
    assert_eq!(store.checkpoint(7), Some(500));
    // Another sink, new: it starts at what was handed on.
    store.emitted(7, 600);
    store.route("app", &[lane0, lane2, ack_id(1, 3)]);
    assert_eq!(store.checkpoint(7), Some(500));
}

#[test]
fn a_released_source_resumes_at_its_checkpoints() {
    let store = CheckpointStore::ephemeral();
    store.track(record(1, 0), &[0]);
    store.track(
        FileRecord {
            source: "web".into(),
            ..record(2, 0)
        },
        &[0],
    );
    store.emitted(1, 300);
    store.ack(0, 1, 120);
    store.release("app");
    assert_eq!(store.checkpoint(1), None, "no longer tracked");
    assert_eq!(store.checkpoint(2), Some(0), "another source's file stays");
    store.ack(0, 1, 300);
    let claimed = store.claim("app", 1, 1, b"head and more", 1_000).unwrap();
    assert_eq!(claimed.offset, 120, "resumes at what was delivered");
    assert!(!claimed.finished);
}

#[test]
fn persists_and_reloads_and_claims_by_identity() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = CheckpointStore::open(dir.path()).unwrap();
        store.track(record(1, 0), &[0]);
        store.track(record(2, 0), &[0]);
        store.emitted(1, 40);
        store.ack(0, 1, 40);
        assert!(store.persist().unwrap().is_some());
        assert!(
            store.persist().unwrap().is_none(),
            "nothing changed, nothing written"
        );
    }
    let (store, outcome) = CheckpointStore::open(dir.path()).unwrap();
    assert_eq!(outcome, LoadOutcome::Loaded(2));
    assert!(!store.is_first_start());
    // Wrong source, wrong inode, changed head, or shrunk below the offset: not the same file.
    assert!(store.claim("other", 1, 1, b"head and more", 100).is_none());
    assert!(store.claim("app", 1, 3, b"head and more", 100).is_none());
    assert!(store.claim("app", 1, 1, b"HEAD and more", 100).is_none());
    assert!(store.claim("app", 1, 1, b"head and more", 39).is_none());
    let claimed = store.claim("app", 1, 1, b"head and more", 100).unwrap();
    assert_eq!(claimed.offset, 40);
    assert!(
        store.claim("app", 1, 1, b"head and more", 100).is_none(),
        "claimed once"
    );
}

#[test]
fn the_file_holds_one_compact_record_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = CheckpointStore::open(dir.path()).unwrap();
    for key in 1..=3 {
        store.track(record(key, 10 * key), &[0]);
    }
    store.persist().unwrap();
    let text = fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(lines[0], r#"{"version":1,"files":["#);
    assert_eq!(lines[4], "]}");
    for (i, line) in lines[1..4].iter().enumerate() {
        let record: FileRecord = serde_json::from_str(line.trim_end_matches(',')).unwrap();
        assert_eq!(record.key, i as u64 + 1);
        assert_eq!(record.offset, 10 * record.key);
        assert!(!line.contains(": "), "compact: {line}");
    }
    let (_, outcome) = CheckpointStore::open(dir.path()).unwrap();
    assert_eq!(outcome, LoadOutcome::Loaded(3));
}

#[test]
fn corrupt_file_is_moved_aside_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[&[u8]] = &[
        b"{\"version\":1,\"files\":[{\"sour",
        b"\x00\x01garbage",
        b"{\"version\":99,\"files\":[]}",
    ];
    for bad in cases {
        fs::write(dir.path().join(FILE_NAME), bad).unwrap();
        let (store, outcome) = CheckpointStore::open(dir.path()).unwrap();
        match outcome {
            LoadOutcome::Corrupt { moved_to, .. } => assert!(moved_to.unwrap().exists()),
            other => panic!("{other:?}"),
        }
        assert!(
            !store.is_first_start(),
            "a corrupt store is not a first start"
        );
        assert!(store.records().is_empty());
    }
}

#[test]
fn retired_files_are_claimed_only_by_their_compressed_copies() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = CheckpointStore::open(dir.path()).unwrap();
        store.track(record(1, 0), &[0]);
        store.emitted(1, 70);
        store.ack(0, 1, 70);
        store.retire(1);
        let mut unnamed = record(2, 0);
        unnamed.fingerprint = Fingerprint::of(b"");
        store.track(unnamed, &[0]);
        store.retire(2);
        store.persist().unwrap();
    }
    let (store, outcome) = CheckpointStore::open(dir.path()).unwrap();
    assert_eq!(
        outcome,
        LoadOutcome::Loaded(1),
        "an empty head cannot be recognised"
    );
    assert!(
        store.claim("app", 1, 1, b"head and more", 100).is_none(),
        "a file at the same inode does not take a finished record back"
    );
    assert!(
        store
            .claim_compressed("other", b"head and more", None, 9, |_| false)
            .is_none()
    );
    assert!(
        store
            .claim_compressed("app", b"HEAD and more", None, 9, |_| false)
            .is_none()
    );
    let claimed = store
        .claim_compressed("app", b"head and more", None, 9, |_| false)
        .unwrap();
    assert_eq!((claimed.key, claimed.offset), (1, 70));
    assert!(
        store
            .claim_compressed("app", b"head and more", None, 9, |_| false)
            .is_none()
    );
}

#[test]
fn a_compressed_copy_takes_a_finished_record_and_leaves_others_in_place() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = CheckpointStore::open(dir.path()).unwrap();
        for key in [1, 2, 3] {
            store.track(record(key, 0), &[0]);
            store.emitted(key, 10 * key);
            store.ack(0, key, 10 * key);
        }
        store.retire(1);
        store.retire(3);
        store.persist().unwrap();
    }
    let (store, _) = CheckpointStore::open(dir.path()).unwrap();
    let head = b"head and more";
    // The one named as the file it was made from wins; one not let go stays for its file.
    let live = store
        .claim_compressed("app", head, Some("/logs/2.log"), 9, |_| false)
        .unwrap();
    assert_eq!((live.key, live.offset), (9, 20));
    let again = store
        .claim_compressed("app", head, Some("/logs/2.log"), 9, |_| false)
        .unwrap();
    assert_eq!((again.key, again.offset), (9, 20));
    let finished = store
        .claim_compressed("app", head, Some("/logs/1.log"), 9, |_| false)
        .unwrap();
    assert_eq!((finished.key, finished.offset), (1, 10));
    let other = store
        .claim_compressed("app", head, Some("/logs/1.log"), 9, |_| false)
        .unwrap();
    assert_ne!(other.key, 1, "taken once");
    assert!(
        store.claim("app", 1, 2, head, 100).is_some(),
        "its own file still finds it"
    );
}

#[test]
fn the_record_of_a_copy_is_continued_only_by_its_own_file_and_its_compressed_self() {
    let store = CheckpointStore::ephemeral();
    let mut copy = record(1, 0);
    copy.copy = true;
    store.track(copy, &[0]);
    store.emitted(1, 70);
    store.ack(0, 1, 70);
    store.untrack(1);
    let head = b"head and more";
    assert!(store.claim_copy("app", head, |_| true).is_none());
    assert!(
        store
            .claim_compressed("app", head, Some("/logs/2.log"), 9, |_| false)
            .is_none(),
        "a compressed file named after another file"
    );
    assert!(
        store
            .claim_compressed("app", head, None, 9, |_| false)
            .is_none(),
        "a compressed file named after no file"
    );
    let own = store.claim("app", 1, 1, head, 100).unwrap();
    assert_eq!((own.key, own.offset, own.copy), (1, 70, true));
    // Its file let go, then compressed.
    store.track(own, &[0]);
    store.retire(1);
    let compressed = store
        .claim_compressed("app", head, Some("/logs/1.log"), 9, |_| false)
        .unwrap();
    assert_eq!(
        (compressed.key, compressed.offset, compressed.copy),
        (1, 70, true),
        "the compressed file made of the copy holds the same lines"
    );
}

#[test]
fn a_plain_copy_claims_only_the_record_of_a_truncated_file() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = CheckpointStore::open(dir.path()).unwrap();
        for (key, offset) in [(1, 70), (2, 0), (3, 90)] {
            store.track(record(key, 0), &[0]);
            store.emitted(key, offset);
            store.ack(0, key, offset);
        }
        store.retire(3);
        store.persist().unwrap();
    }
    let (store, _) = CheckpointStore::open(dir.path()).unwrap();
    let copy = |_: &FileRecord| true;
    let head = b"head and more";
    assert!(
        store.claim_copy("app", head, |_| false).is_none(),
        "not when the caller says it is no copy of it"
    );
    assert!(store.claim_copy("other", head, copy).is_none());
    assert!(store.claim_copy("app", b"HEAD and more", copy).is_none());
    let claimed = store.claim_copy("app", head, copy).unwrap();
    assert_eq!(
        (claimed.key, claimed.offset),
        (1, 70),
        "neither the record at offset 0 nor the finished one"
    );
    assert!(store.claim_copy("app", head, copy).is_none());
}

#[test]
fn retired_records_are_capped() {
    let store = CheckpointStore::ephemeral();
    for key in 0..MAX_RETIRED as u64 + 10 {
        store.track(record(key, 0), &[0]);
        store.retire(key);
    }
    let state = store.lock();
    assert_eq!(state.dormant.len(), MAX_RETIRED);
    assert!(state.tracked.is_empty());
}

#[test]
fn positions_are_the_checkpoints_of_tracked_files() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = CheckpointStore::open(dir.path()).unwrap();
    store.track(record(1, 10), &[0, 1]);
    store.track(record(2, 0), &[0]);
    store.emitted(1, 50);
    store.ack(0, 1, 50);
    store.ack(1, 1, 30);
    let mut got: Vec<(String, u64)> = store
        .positions()
        .into_iter()
        .map(|p| (p.path, p.checkpoint))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("/logs/1.log".to_owned(), 30),
            ("/logs/2.log".to_owned(), 0)
        ]
    );
    store.forget(1);
    assert_eq!(store.positions().len(), 1);
}

#[test]
fn records_of_files_gone_for_a_while_expire_and_loaded_ones_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    let mut files = Vec::new();
    // Gone 8 days (expires), gone 6 days (kept), and more records than kept at most.
    let mut old = record(1, 10);
    old.updated_unix = now - 8 * 24 * 3600;
    files.push(old);
    let mut recent = record(2, 20);
    recent.updated_unix = now - 6 * 24 * 3600;
    files.push(recent);
    for key in 10..10 + MAX_DORMANT as u64 + 5 {
        let mut r = record(key, 0);
        r.updated_unix = now - 3600;
        files.push(r);
    }
    for key in 100_000..100_000 + MAX_RETIRED as u64 + 5 {
        let mut r = record(key, 0);
        r.finished = true;
        r.updated_unix = now - 60;
        files.push(r);
    }
    let body = serde_json::to_vec(&CheckpointFile {
        version: FORMAT_VERSION,
        files,
    })
    .unwrap();
    fs::write(dir.path().join(FILE_NAME), body).unwrap();
    let (store, outcome) = CheckpointStore::open(dir.path()).unwrap();
    assert_eq!(outcome, LoadOutcome::Loaded(MAX_DORMANT + MAX_RETIRED));
    let records = store.records();
    assert!(!records.iter().any(|r| r.key == 1), "expired");
    assert!(
        !records.iter().any(|r| r.key == 2),
        "the oldest go beyond the cap"
    );
    assert_eq!(records.iter().filter(|r| r.finished).count(), MAX_RETIRED);
    // An expiry that happens while running leaves memory at the next write.
    store.lock().dormant[0].updated_unix = now - 8 * 24 * 3600;
    let expiring = store.lock().dormant[0].key;
    store.lock().dirty = true;
    assert!(store.persist().unwrap().is_some());
    assert!(!store.lock().dormant.iter().any(|r| r.key == expiring));
}

#[test]
fn a_real_checkpoint_file_truncated_mid_write_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = CheckpointStore::open(dir.path()).unwrap();
        for key in 1..=3 {
            store.track(record(key, 0), &[0]);
            store.emitted(key, 100);
            store.ack(0, key, 100);
        }
        store.persist().unwrap();
    }
    let path = dir.path().join(FILE_NAME);
    let whole = fs::read(&path).unwrap();
    for cut in [1, whole.len() / 3, whole.len() / 2, whole.len() - 2] {
        fs::write(&path, &whole[..cut]).unwrap();
        let (store, outcome) = CheckpointStore::open(dir.path()).unwrap();
        let LoadOutcome::Corrupt { reason, moved_to } = outcome else {
            panic!("cut at {cut}: {outcome:?}");
        };
        assert!(reason.contains("EOF"), "{reason}");
        assert_eq!(fs::read(moved_to.unwrap()).unwrap(), &whole[..cut]);
        assert!(!path.exists());
        assert!(store.records().is_empty());
    }
}

#[test]
fn forgotten_files_leave_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = CheckpointStore::open(dir.path()).unwrap();
    store.track(record(1, 0), &[0]);
    store.forget(1);
    store.persist().unwrap();
    let (store, outcome) = CheckpointStore::open(dir.path()).unwrap();
    assert_eq!(outcome, LoadOutcome::Loaded(0));
    assert!(store.records().is_empty());
}

#[test]
fn concurrent_writers_do_not_trip_over_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = CheckpointStore::open(dir.path()).unwrap();
    let store = std::sync::Arc::new(store);
    store.track(record(1, 0), &[0]);
    let writers: Vec<_> = (0..4)
        .map(|n| {
            let store = std::sync::Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..100 {
                    store.emitted(1, n * 1000 + i);
                    store.ack(0, 1, n * 1000 + i);
                    store.persist().unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
}

#[test]
fn write_failure_is_an_error_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = CheckpointStore::open(dir.path()).unwrap();
    store.track(record(1, 0), &[0]);
    // A directory where the temporary file goes makes the write fail.
    fs::create_dir(dir.path().join("checkpoints.json.tmp")).unwrap();
    assert!(store.persist().is_err());
    fs::remove_dir(dir.path().join("checkpoints.json.tmp")).unwrap();
    assert!(
        store.persist().unwrap().is_some(),
        "still dirty after a failure"
    );
}

#[test]
fn a_write_copies_each_record_as_it_stands_when_its_chunk_is_reached() {
    let store = CheckpointStore::ephemeral();
    // More files than one chunk copies, so that the write takes several locks.
    let files: Vec<FileKey> = (1..=5_000).collect();
    for &key in &files {
        store.track(record(key, 0), &[0]);
        store.emitted(key, 10);
    }
    let mut snapshot = super::snapshot::Snapshot::new(&store);
    let first = snapshot.next().unwrap();
    // Between the order taken and the last chunk (paths starting with 5 sort last): one file
    // delivered further, one let go (its record kept, finished), one forgotten.
    store.ack(0, 5, 10);
    store.retire(50);
    store.forget(500);
    let rest: Vec<FileRecord> = snapshot.collect();
    let by_key = |key: FileKey| rest.iter().find(|r| r.key == key);
    assert_eq!(by_key(5).map(|r| r.offset), Some(10));
    assert!(by_key(50).is_some_and(|r| r.finished));
    assert!(by_key(500).is_none());
    assert_eq!(rest.len() + 1, files.len() - 1);
    // In the file's order (by source, path, key), each file once.
    let mut all = vec![first];
    all.extend(rest);
    assert!(
        all.windows(2)
            .all(|w| (&w[0].path, w[0].key) < (&w[1].path, w[1].key))
    );
}
