use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::retention::Retention;
use super::segment;
use super::*;
use crate::checkpoint::{CheckpointStore, FileRecord, Fingerprint};

fn config(max_bytes: u64, segment_bytes: u64) -> JournalConfig {
    JournalConfig {
        max_bytes,
        segment_bytes,
        durability: Durability::Fsync,
    }
}

fn record(n: usize) -> Vec<u8> {
    format!("{{\"message\":\"record {n:04}\"}}\n").into_bytes()
}

/// The records of every segment, in order, without their headers.
fn journaled(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for (_, path) in segment::list(dir).unwrap() {
        let text = std::fs::read_to_string(path).unwrap();
        let mut segment_lines = text.lines();
        let header = segment_lines.next().unwrap();
        assert!(header.starts_with("{\"log_agent_journal\":1,"), "{header}");
        lines.extend(segment_lines.map(str::to_owned));
    }
    lines
}

fn bytes_of(segments: &[(u64, std::path::PathBuf)]) -> u64 {
    segments
        .iter()
        .map(|(_, path)| std::fs::metadata(path).unwrap().len())
        .sum()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn appends_are_written_in_order_and_segments_roll() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(SourceMetrics::default());
    let (journal, writer) =
        Journal::open(dir.path(), "t", config(1 << 20, 4096), Arc::clone(&metrics)).unwrap();
    runtime().block_on(async {
        for n in 0..1000 {
            journal.append(record(n)).await.unwrap();
        }
    });
    drop(journal);
    writer.join();
    let lines = journaled(dir.path());
    let expected: Vec<String> = (0..1000)
        .map(|n| String::from_utf8(record(n)).unwrap().trim_end().to_owned())
        .collect();
    assert_eq!(lines, expected);
    let segments = segment::list(dir.path()).unwrap();
    assert!(segments.len() > 2, "{} segments", segments.len());
    for (_, path) in &segments {
        assert!(std::fs::metadata(path).unwrap().len() <= 4096 + 64);
    }
    assert_eq!(
        metrics.journal_bytes.load(Ordering::Relaxed),
        bytes_of(&segments)
    );
}

#[test]
fn concurrent_appends_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(SourceMetrics::default());
    let (journal, writer) = Journal::open(
        dir.path(),
        "t",
        config(64 << 20, 1 << 20),
        Arc::clone(&metrics),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..50 {
            let journal = journal.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..20 {
                    journal.append(record(t * 100 + n)).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    drop(journal);
    writer.join();
    let mut lines = journaled(dir.path());
    lines.sort();
    lines.dedup();
    assert_eq!(lines.len(), 1000);
    let syncs = metrics.journal_syncs.load(Ordering::Relaxed);
    assert!(syncs < 1000, "{syncs} syncs for 1000 appends");
}

#[test]
fn a_full_journal_refuses_until_retention_deletes_delivered_segments() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(SourceMetrics::default());
    let (journal, writer) =
        Journal::open(dir.path(), "src", config(16384, 4096), Arc::clone(&metrics)).unwrap();
    let rt = runtime();
    let mut taken = 0;
    let refused = rt.block_on(async {
        loop {
            match journal.append(record(taken)).await {
                Ok(()) => taken += 1,
                Err(e) => return e,
            }
        }
    });
    assert_eq!(refused, JournalError::Full { max_bytes: 16384 });
    assert!(taken > 100, "{taken}");
    assert!(matches!(
        rt.block_on(journal.append(vec![b'x'; 9000])),
        Err(JournalError::TooLarge { .. })
    ));

    // Untracked, then tracked and not delivered: nothing is deleted.
    let store = Arc::new(CheckpointStore::ephemeral());
    let retention = Retention::new(&writer, "src", Arc::clone(&store), Arc::clone(&metrics));
    assert_eq!(retention.sweep().unwrap(), 0);
    let segments = segment::list(dir.path()).unwrap();
    for (seq, path) in &segments {
        let md = std::fs::metadata(path).unwrap();
        store.track(
            FileRecord {
                source: Arc::from("src"),
                path: Arc::from(path.to_string_lossy().as_ref()),
                dev: md.dev(),
                ino: md.ino(),
                fingerprint: Fingerprint::of(&std::fs::read(path).unwrap()[..100]),
                key: *seq,
                offset: 0,
                updated_unix: 0,
                finished: false,
                marks: Vec::new(),
                copy: false,
            },
            &[0],
        );
    }
    assert_eq!(retention.sweep().unwrap(), 0);
    // Delivered to one byte short of the end: kept.
    for (seq, path) in &segments {
        store.ack(0, *seq, std::fs::metadata(path).unwrap().len() - 1);
    }
    assert_eq!(retention.sweep().unwrap(), 0);
    // Every segment delivered to its end, the one being written too: all but it go.
    for (seq, path) in &segments {
        store.ack(0, *seq, std::fs::metadata(path).unwrap().len());
    }
    // Set aside first (out of the tailer's glob), unlinked once no tracked file holds them.
    assert_eq!(retention.sweep().unwrap(), 0);
    assert_eq!(segment::list(dir.path()).unwrap().len(), 1);
    let aside = segment::list_set_aside(dir.path()).unwrap();
    assert_eq!(aside.len(), segments.len() - 1);
    assert_eq!(retention.sweep().unwrap(), 0, "still tracked");
    for (seq, _) in &segments {
        store.forget(*seq);
    }
    assert_eq!(retention.sweep().unwrap(), segments.len() - 1);
    assert!(segment::list_set_aside(dir.path()).unwrap().is_empty());
    rt.block_on(journal.append(record(taken))).unwrap();
    drop(journal);
    writer.join();
    let kept = journaled(dir.path());
    assert_eq!(
        kept.last().map(String::as_str),
        Some(String::from_utf8(record(taken)).unwrap().trim_end())
    );
}

#[test]
fn reopening_continues_the_numbering_and_counts_what_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    for round in 0..2 {
        let metrics = Arc::new(SourceMetrics::default());
        let (journal, writer) =
            Journal::open(dir.path(), "t", config(1 << 20, 4096), Arc::clone(&metrics)).unwrap();
        rt.block_on(journal.append(record(round))).unwrap();
        drop(journal);
        writer.join();
    }
    let segments = segment::list(dir.path()).unwrap();
    assert_eq!(
        segments.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(journaled(dir.path()).len(), 2);
    let metrics = Arc::new(SourceMetrics::default());
    let (_journal, _writer) =
        Journal::open(dir.path(), "t", config(1 << 20, 4096), Arc::clone(&metrics)).unwrap();
    assert_eq!(
        metrics.journal_bytes.load(Ordering::Relaxed),
        bytes_of(&segments)
    );
}

#[test]
fn config_checks() {
    assert!(config(1 << 20, 4096).check().is_ok());
    assert_eq!(
        config(1 << 20, 100).check().map_err(|e| e.0),
        Err("segment_bytes")
    );
    assert_eq!(
        config(8000, 4096).check().map_err(|e| e.0),
        Err("max_bytes")
    );
}
