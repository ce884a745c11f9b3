//! Model-based torture test: random sequences of what happens to log files, to the agent and to
//! its sink, run against the real `log-agent` binary (so that it can be killed with `kill -9`),
//! then an oracle over everything the file sink received.
//!
//! Files live in `logs/` and the source includes `app*.log*`, so rotated files, copies and
//! compressed files are read too (as the README asks for copytruncate). Two live paths,
//! `app0.log` and `app1.log`, are written by "the application". Every file starts a *stream*
//! with a tag of its own (`s0`, `s1`, ...), whose lines are numbered; a stream is the content
//! of one file generation, wherever that content goes. What each operation does, and what the
//! oracle expects of it:
//!
//! - `Write`: appends numbered lines to a live path (creating a file, so a new stream, when
//!   there is none), first completing the stream's partial line if it has one. Every line is
//!   expected.
//! - `Partial`: writes the first bytes of the next line, without its newline. Only the whole
//!   line is expected once a later write completes it; if its file is let go first (deleted,
//!   compressed), the line is expected as far as it was written (the agent ships an
//!   unterminated last line when it lets a file go).
//! - `Rotate`: renames the live file to `app<slot>.log.<n>` (still included): same stream.
//! - `CopyTruncate`: copies the live file to `app<slot>.log.<n>`, then truncates it. The copy
//!   carries the stream on (every line expected, from the original or from its copy); what is
//!   written to the live path afterwards is a new stream.
//! - `Truncate`: truncates the live file with no copy. Lines not delivered yet at that moment
//!   may be lost (no shipper can read what is gone); they are optional. A new stream follows.
//! - `Delete`: removes any file. While the agent runs, the test first waits (up to a second)
//!   for the agent to hold the file open, or to have delivered all of it: the agent reads an
//!   open deleted file to its end. A file it never opened, or one deleted while it is down, is
//!   gone with whatever was not delivered: those lines are optional. The same holds at a
//!   `kill -9` for deleted files the agent had not finished: their undelivered lines are
//!   optional (the descriptor died with the process). At a clean `Stop` only the unterminated
//!   last line of such a file is optional: the drain reads every open file to its end.
//! - `Create`: creates an empty live file (a new stream).
//! - `Gzip`: compresses a rotated file in place (`app0.log.3` -> `app0.log.3.gz`, the plain one
//!   removed), as logrotate's `compress` does. Same stream, every line expected (the agent
//!   continues a compressed copy where the plain file was left).
//! - `CompressInPieces`: logrotate's `compress` as it really happens: the compressed file
//!   (gzip, zstd, bzip2 or xz) is created empty, written in a few pieces a few ms apart (once
//!   stopping midway, longer than a read pass but shorter than `rotate_wait_ms`: the agent
//!   sees a valid but partial stream), synced; then the plain file is removed and, sometimes,
//!   the compressed one renamed a moment later (delaycompress's `.1.gz` -> `.2.gz`). As
//!   `Gzip`: same stream, every line expected (compressed bytes shipped as text show as lines
//!   never written).
//! - `CopyTruncateLive`: logrotate's `copytruncate` under a live writer: the copy is created
//!   empty and filled in pieces while the application appends lines to the original between
//!   them (the copy gets whatever the original holds when it reaches it); after its last
//!   piece the application appends a few more lines, the agent gets a few ms (the copy's
//!   fsync) to read them, and the original is truncated. The copy carries the stream on, as
//!   with `CopyTruncate`: every line in the copy is expected; the lines written after its
//!   last piece are in neither file unless the agent read them in time (copytruncate's own
//!   loss): optional, but like every line at most once without a kill. What is written to the
//!   live path afterwards is a new stream.
//! - `Copy`: logrotate's `copy`: the same piecewise copy under a live writer, without the
//!   truncation. The copy holds the first lines of a stream that goes on in the original:
//!   every line expected once, none more (the copy ships nothing of its own). Deleting such a
//!   copy loses nothing; compressing it freezes nothing. During both piecewise copies the
//!   application writes whole lines (its first write completes a partial line), so a copy
//!   ends at a line's end.
//! - `Kill` (`kill -9`), `Stop` (SIGTERM: the drain must exit 0), `Restart`.
//! - `SinkFail`: the sink's directory is replaced by a regular file, so every write fails
//!   (ENOTDIR, which stops root too) until `SinkRestore`. `SinkStall`: the sink's path becomes
//!   a FIFO with no reader, so the sink blocks in `open` until `SinkRestore` puts the real
//!   directory back and opens the FIFO: the batch written into it is delivered too (captured
//!   and placed, in the delivery order, where the file sink's output stood at that moment).
//! - `Pause`: lets the agent work for a while.
//!
//! The oracle, over the deliveries in order: every expected line at least once, with the text
//! written; no line that was never written; first deliveries in order within each stream;
//! and duplicates only where a kill allows them: at each `kill -9` the test reads what was
//! delivered and the persisted checkpoints, and each line delivered at or past its file's
//! checkpoint (by event `id` and `offset`) may come once more. A clean stop allows none. At
//! most one torn output line per kill.
//!
//! Sized for CI: `MODEL_CASES` cases (16 by default; `PROPTEST_CASES` works too) of 10 to 30
//! operations, and `MODEL_TRANSFORM_CASES` (6) with a remap and a route in the way, the route's
//! two outputs both into the sink (every line reaches it along one of two ack lanes). A failure is shrunk (at most `MODEL_SHRINK_ITERS` steps, 32 by default) and
//! its seed saved in `tests/model.proptest-regressions`; minimal cases found so far are kept
//! as named tests: below those of rotation, copytruncate, truncation and reused inodes,
//! in `tests/model_copies.rs` those of logrotate's steps in pieces (copies and compression).
//! The harness (operations, model, oracle) is in `tests/common/model/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/model/mod.rs"]
mod model;

use model::{Op, env_or, model_seed, op, regression, run, run_through_transforms, turn};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: env_or("MODEL_CASES", env_or("PROPTEST_CASES", 16)),
        max_shrink_iters: env_or("MODEL_SHRINK_ITERS", 32),
        rng_seed: model_seed(),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_file_agent_and_sink_events_lose_nothing(
        ops in proptest::collection::vec(op(), 10..30)
    ) {
        let _turn = turn();
        if let Err(e) = run(&ops) {
            prop_assert!(false, "{}", e);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: env_or("MODEL_TRANSFORM_CASES", 6),
        max_shrink_iters: env_or("MODEL_SHRINK_ITERS", 32),
        rng_seed: model_seed(),
        ..ProptestConfig::default()
    })]

    /// The same, through a remap and a route whose two outputs both go to the sink: two ack
    /// lanes of one sink, under kills, rotations and a failing sink.
    #[test]
    fn random_events_through_transforms_lose_nothing(
        ops in proptest::collection::vec(op(), 10..30)
    ) {
        let _turn = turn();
        if let Err(e) = run_through_transforms(&ops) {
            prop_assert!(false, "{}", e);
        }
    }
}

/// Found by the model: logrotate's copytruncate while the agent was stopped made it read the
/// copy from its start at the restart, shipping again every line it had delivered: the copy has
/// a new inode, so the checkpoint of the truncated original was not recognised in it. Lines
/// written after the stop and before the copy must still arrive, once.
#[test]
fn copytruncate_while_the_agent_is_stopped_continues_in_the_copy_without_repeats() {
    regression(&[
        Op::Write {
            slot: 0,
            lines: 142,
        },
        Op::Stop,
        Op::Write { slot: 0, lines: 12 },
        Op::CopyTruncate { slot: 0 },
    ]);
}

/// Found by the model: a kill within a checkpoint interval of a copytruncate (before the
/// checkpoint moved to the copy was written), then the truncated original rotated away while
/// the agent was down: the copy was read again from its start at the restart.
#[test]
fn a_kill_right_after_copytruncate_then_rotation_continues_in_the_copy() {
    regression(&[
        Op::Write {
            slot: 0,
            lines: 182,
        },
        Op::Pause { ms: 180 },
        Op::CopyTruncate { slot: 0 },
        Op::Kill,
        Op::Rotate { slot: 0 },
    ]);
}

/// Found by the model: a compressed file read to its end is closed; deleted, its inode went
/// to the next file created, a copytruncate's copy, which the agent took for the compressed
/// file renamed and never read: the lines it had not read from the original were lost.
#[test]
fn a_copy_on_the_inode_of_a_deleted_compressed_file_is_read() {
    regression(&[
        Op::Write { slot: 0, lines: 12 },
        Op::Rotate { slot: 0 },
        Op::Gzip { pick: 0 },
        Op::Write { slot: 1, lines: 30 },
        // The compressed file is read and closed meanwhile.
        Op::Pause { ms: 800 },
        Op::Write { slot: 1, lines: 8 },
        Op::Delete { pick: 0 },
        Op::CopyTruncate { slot: 1 },
    ]);
}

/// Found by the model: a compressed copy found while its original was still being read is held
/// unread, with a checkpoint record of its own at offset 0; killed then, the agent resumed the
/// compressed file at that record at its restart, reading it whole again, instead of where the
/// original's record said.
#[test]
fn a_kill_while_a_compressed_copy_is_held_does_not_read_it_again() {
    regression(&[
        Op::Write { slot: 0, lines: 17 },
        Op::Pause { ms: 200 },
        Op::Rotate { slot: 0 },
        Op::Gzip { pick: 0 },
        // Within rotate_wait_ms (the original is still read) and past a checkpoint write.
        Op::Pause { ms: 150 },
        Op::Kill,
    ]);
}

/// Found by the model: an empty file's record (fingerprint of nothing, offset 0) matched the
/// next file on its inode, freed by a delete while the agent was stopped: a copytruncate's copy
/// took it and was read again from its start instead of where its truncated original was left.
#[test]
fn a_copy_on_the_inode_of_a_deleted_empty_file_continues_its_original() {
    regression(&[
        Op::Write { slot: 0, lines: 3 },
        Op::Partial { slot: 1 },
        Op::Truncate { slot: 0 },
        Op::Stop,
        Op::Delete { pick: 2 },
        Op::Partial { slot: 1 },
        Op::Restart,
        Op::Write { slot: 1, lines: 4 },
        Op::Stop,
        Op::CopyTruncate { slot: 1 },
        Op::Write {
            slot: 0,
            lines: 216,
        },
        Op::Rotate { slot: 1 },
    ]);
}

/// Found by the model: a compressed copy of a file whose fingerprint did not cover its head
/// yet (found empty, then not read while the sink was stalled) was not taken for its copy and
/// was read whole besides the original.
#[test]
fn a_compressed_copy_of_a_file_not_read_yet_is_held() {
    regression(&[
        Op::Restart,
        Op::Delete { pick: 7 },
        Op::Rotate { slot: 1 },
        Op::SinkRestore,
        Op::Restart,
        Op::CopyTruncate { slot: 0 },
        Op::Write { slot: 1, lines: 6 },
        Op::Rotate { slot: 1 },
        Op::Delete { pick: 7 },
        Op::Pause { ms: 166 },
        Op::Write { slot: 1, lines: 13 },
        Op::SinkStall,
        Op::Delete { pick: 5 },
        Op::Pause { ms: 36 },
        Op::Rotate { slot: 0 },
        Op::Rotate { slot: 0 },
        Op::Restart,
        Op::Pause { ms: 274 },
        Op::Write {
            slot: 0,
            lines: 168,
        },
        Op::Partial { slot: 1 },
        Op::Rotate { slot: 0 },
        Op::Gzip { pick: 6 },
        Op::Write {
            slot: 0,
            lines: 2033,
        },
        Op::CopyTruncate { slot: 1 },
        Op::Write { slot: 1, lines: 1 },
    ]);
}
/// Found by the model: copytruncate, then the truncated original deleted at once while the
/// agent ran; a kill later, the copy was read again from its start at the restart.
#[test]
fn copytruncate_then_the_original_deleted_then_a_kill_repeats_nothing() {
    regression(&[
        Op::Write { slot: 1, lines: 4 },
        Op::Stop,
        Op::Pause { ms: 256 },
        Op::Restart,
        Op::Write { slot: 0, lines: 1 },
        Op::CopyTruncate { slot: 1 },
        Op::Delete { pick: 1 },
        Op::Pause { ms: 307 },
        Op::SinkStall,
        Op::Truncate { slot: 0 },
    ]);
}

/// Found by the model: a file truncated while the agent was in the middle of one of its lines,
/// with no copy of it: when that generation was let go, the start of the line was shipped as
/// if it were a whole line.
#[test]
fn the_start_of_a_line_truncated_away_is_not_shipped_as_a_line() {
    regression(&[
        Op::SinkStall,
        Op::Pause { ms: 327 },
        Op::Partial { slot: 0 },
        Op::Gzip { pick: 2 },
        Op::Pause { ms: 79 },
        Op::Write { slot: 1, lines: 31 },
        Op::Pause { ms: 55 },
        Op::Partial { slot: 1 },
        Op::SinkStall,
        Op::Create { slot: 1 },
        Op::Write {
            slot: 1,
            lines: 2282,
        },
        Op::Write { slot: 1, lines: 17 },
        Op::Partial { slot: 1 },
        Op::Truncate { slot: 1 },
        Op::Write {
            slot: 1,
            lines: 149,
        },
        Op::SinkFail,
        Op::SinkFail,
        Op::Write { slot: 0, lines: 1 },
        Op::Gzip { pick: 7 },
        Op::Write { slot: 0, lines: 18 },
        Op::Restart,
        Op::Rotate { slot: 0 },
    ]);
}

/// Found by the model: copytruncate, then the next generation written, rotated and compressed
/// before the agent noticed the truncation. The compressed file's head matched no generation
/// the agent knew, so it was read whole as a new file; then the deleted original, read to its
/// end, showed the rewrite and was read again from its start: every line of it twice.
#[test]
fn a_file_rewritten_rotated_and_compressed_before_the_agent_looks_is_read_once() {
    regression(&[
        Op::Write { slot: 1, lines: 24 },
        Op::Pause { ms: 100 },
        Op::CopyTruncate { slot: 1 },
        Op::Write { slot: 1, lines: 82 },
        Op::Rotate { slot: 1 },
        Op::Gzip { pick: 1 },
    ]);
}
