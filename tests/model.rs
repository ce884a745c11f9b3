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
//! operations. A failure is shrunk (at most `MODEL_SHRINK_ITERS` steps, 32 by default) and
//! its seed saved in `tests/model.proptest-regressions`; minimal cases found so far are kept
//! below as named tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/model_support.rs"]
mod model_support;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::compress::compress;
use common::process::AgentProcess;
use common::{Checkpoints, config_yaml, numbered};
use model_support::{Capture, Codec, Delivered, key_and_offset, tag_and_seq};
use proptest::prelude::*;

/// Live paths written by the application.
const SLOTS: usize = 2;
/// Bytes per numbered line (the newline included).
const WIDTH: usize = 60;
/// How long the test waits for the agent to deliver everything at the end.
const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
enum Op {
    Write { slot: usize, lines: u64 },
    Partial { slot: usize },
    Rotate { slot: usize },
    CopyTruncate { slot: usize },
    Truncate { slot: usize },
    Delete { pick: usize },
    Create { slot: usize },
    Gzip { pick: usize },
    CompressInPieces { pick: usize, how: Compressor },
    CopyTruncateLive { slot: usize, how: Piecewise },
    Copy { slot: usize, how: Piecewise },
    Kill,
    Stop,
    Restart,
    SinkFail,
    SinkStall,
    SinkRestore,
    Pause { ms: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    let slot = || 0..SLOTS;
    // The copy's read/write size: cp's and logrotate's 8 KiB, or less so that small files take
    // several pieces; the lines appended after each piece; the pause after it.
    let piecewise = || {
        (
            prop_oneof![Just(8192usize), 256usize..2048],
            0u64..4,
            0u64..8,
        )
            .prop_map(|(piece, lines, ms)| Piecewise { piece, lines, ms })
    };
    // Mostly short writes; some long enough that a kill finds batches in flight.
    let lines = prop_oneof![4 => 1u64..20, 3 => 20u64..400, 1 => 400u64..3_000];
    prop_oneof![
        30 => (slot(), lines).prop_map(|(slot, lines)| Op::Write { slot, lines }),
        6 => slot().prop_map(|slot| Op::Partial { slot }),
        8 => slot().prop_map(|slot| Op::Rotate { slot }),
        6 => slot().prop_map(|slot| Op::CopyTruncate { slot }),
        3 => slot().prop_map(|slot| Op::Truncate { slot }),
        5 => (0usize..8).prop_map(|pick| Op::Delete { pick }),
        3 => slot().prop_map(|slot| Op::Create { slot }),
        6 => (0usize..8).prop_map(|pick| Op::Gzip { pick }),
        10 => (
            0usize..8,
            prop_oneof![Just(Codec::Gzip), Just(Codec::Zstd), Just(Codec::Bzip2), Just(Codec::Xz)],
            2usize..6,
            0u64..50,
            prop_oneof![2 => Just(0u64), 1 => 60u64..200],
            prop::bool::weighted(0.3),
        )
            .prop_map(|(pick, codec, pieces, ms, stall_ms, rename)| {
                let how = Compressor { codec, pieces, ms, stall_ms, rename };
                Op::CompressInPieces { pick, how }
            }),
        9 => (slot(), piecewise()).prop_map(|(slot, how)| Op::CopyTruncateLive { slot, how }),
        8 => (slot(), piecewise()).prop_map(|(slot, how)| Op::Copy { slot, how }),
        5 => Just(Op::Kill),
        3 => Just(Op::Stop),
        8 => Just(Op::Restart),
        3 => Just(Op::SinkFail),
        3 => Just(Op::SinkStall),
        5 => Just(Op::SinkRestore),
        10 => (0u64..400).prop_map(|ms| Op::Pause { ms }),
    ]
}

/// One file generation's numbered lines, wherever its content lives.
#[derive(Debug)]
struct Stream {
    tag: String,
    /// The whole text of every line begun (without its newline).
    lines: Vec<String>,
    /// Bytes written of the last line, while it is partial.
    partial: Option<usize>,
    /// Its content is gone from every plain file (deleted or truncated): undelivered lines may
    /// become optional at a kill.
    gone: bool,
    /// Compressed or gone: nothing more is written to it.
    frozen: bool,
    /// Lines that may legitimately be lost (see the module doc).
    optional: BTreeSet<u64>,
}

impl Stream {
    /// The text a delivery of line `seq` must have: the whole line, or as far as it was
    /// written when its stream was frozen with it partial.
    fn expected_text(&self, seq: u64) -> &str {
        let line = &self.lines[seq as usize];
        match self.partial {
            Some(cut) if seq as usize == self.lines.len() - 1 => &line[..cut],
            _ => line,
        }
    }
}

/// A file present in `logs/`.
#[derive(Debug, Clone, Copy)]
struct FileEntry {
    stream: usize,
    /// Compressed (any codec).
    gz: bool,
    /// A copy of the first lines of a stream that goes on in another file (logrotate's `copy`):
    /// it carries nothing of its own.
    prefix: bool,
}

impl FileEntry {
    fn plain(stream: usize) -> FileEntry {
        FileEntry {
            stream,
            gz: false,
            prefix: false,
        }
    }
}

/// How `Copy` and `CopyTruncateLive` copy: `piece` bytes at a time (at least an eighth of the
/// file), the application appending `lines` lines after each piece, `ms` apart.
#[derive(Debug, Clone, Copy)]
struct Piecewise {
    piece: usize,
    lines: u64,
    ms: u64,
}

/// How `CompressInPieces` writes: `pieces` pieces `ms` apart, one gap midway of `stall_ms`;
/// `rename`: moved on to a new name `ms` later.
#[derive(Debug, Clone, Copy)]
struct Compressor {
    codec: Codec,
    pieces: usize,
    ms: u64,
    stall_ms: u64,
    rename: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SinkState {
    Ok,
    Failing,
    Stalled,
}

/// One run of the model: a world, the agent, and what the oracle needs.
struct Model {
    dir: tempfile::TempDir,
    /// `logs/`.
    logs: PathBuf,
    config: PathBuf,
    streams: Vec<Stream>,
    files: BTreeMap<String, FileEntry>,
    rotations: usize,
    agent: Option<AgentProcess>,
    sink: SinkState,
    stalls: usize,
    captures: Vec<Capture>,
    kills: usize,
    /// How many more deliveries than one each line may have, from the kills.
    allowed_repeats: HashMap<(String, u64), usize>,
    /// What happened, for failure messages.
    journal: Vec<String>,
}

impl Model {
    fn new() -> Model {
        // MODEL_KEEP=1 keeps the directories of the runs, for a look after a failure.
        let dir = tempfile::Builder::new()
            .prefix("model")
            .disable_cleanup(std::env::var_os("MODEL_KEEP").is_some())
            .tempdir()
            .unwrap();
        let root = dir.path().canonicalize().unwrap();
        let logs = root.join("logs");
        fs::create_dir(&logs).unwrap();
        fs::create_dir(root.join("out")).unwrap();
        fs::create_dir(root.join("tmp")).unwrap();
        let include = logs.join("app*.log*");
        let yaml = config_yaml(
            &root.join("data"),
            &[include.to_str().unwrap()],
            &root.join("out").join("sink.ndjson"),
            "",
            // Quick retries: a restored sink is written to at once.
            "    retry: { initial_backoff_ms: 20, max_backoff_ms: 200 }",
        );
        let config = root.join("agent.yaml");
        fs::write(&config, yaml).unwrap();
        Model {
            dir,
            logs,
            config,
            streams: Vec::new(),
            files: BTreeMap::new(),
            rotations: 0,
            agent: None,
            sink: SinkState::Ok,
            stalls: 0,
            captures: Vec::new(),
            kills: 0,
            allowed_repeats: HashMap::new(),
            journal: Vec::new(),
        }
    }

    fn root(&self) -> PathBuf {
        self.logs.parent().unwrap().to_owned()
    }

    fn stderr(&self) -> PathBuf {
        self.root().join("agent.stderr")
    }

    /// Where the sink's real output is now (its directory is moved aside while broken).
    fn output(&self) -> PathBuf {
        let dir = if self.sink == SinkState::Ok {
            "out"
        } else {
            "out.held"
        };
        self.root().join(dir).join("sink.ndjson")
    }

    fn live(slot: usize) -> String {
        format!("app{slot}.log")
    }

    fn new_stream(&mut self) -> usize {
        let n = self.streams.len();
        self.streams.push(Stream {
            tag: format!("s{n}"),
            lines: Vec::new(),
            partial: None,
            gone: false,
            frozen: false,
            optional: BTreeSet::new(),
        });
        n
    }

    fn append(&self, name: &str, text: &str) {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(name))
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    /// The stream of the live file of `slot`, creating the file if there is none.
    fn live_stream(&mut self, slot: usize) -> usize {
        let name = Model::live(slot);
        if let Some(entry) = self.files.get(&name) {
            return entry.stream;
        }
        let stream = self.new_stream();
        File::create(self.logs.join(&name)).unwrap();
        self.files.insert(name, FileEntry::plain(stream));
        stream
    }

    /// The rest of the stream's partial line and its newline (empty when there is none).
    fn complete_partial(&mut self, stream: usize) -> String {
        let s = &mut self.streams[stream];
        match s.partial.take() {
            Some(cut) => format!("{}\n", &s.lines.last().unwrap()[cut..]),
            None => String::new(),
        }
    }

    fn write(&mut self, slot: usize, lines: u64) {
        let stream = self.live_stream(slot);
        let mut text = self.complete_partial(stream);
        let s = &mut self.streams[stream];
        for _ in 0..lines {
            let line = numbered(&s.tag, s.lines.len() as u64, WIDTH);
            text.push_str(&line);
            s.lines.push(line.trim_end().to_owned());
        }
        self.append(&Model::live(slot), &text);
    }

    fn partial(&mut self, slot: usize) {
        let stream = self.live_stream(slot);
        let s = &mut self.streams[stream];
        if s.partial.is_some() {
            return;
        }
        let line = numbered(&s.tag, s.lines.len() as u64, WIDTH);
        // The tag and the number are whole: the oracle knows which line a cut one is.
        let cut = s.tag.len() + 1 + 9 + 1 + 3;
        let text = line[..cut].to_owned();
        s.lines.push(line.trim_end().to_owned());
        s.partial = Some(cut);
        self.append(&Model::live(slot), &text);
    }

    fn next_rotated(&mut self, slot: usize) -> String {
        self.rotations += 1;
        format!("app{slot}.log.{}", self.rotations)
    }

    fn rotate(&mut self, slot: usize) {
        let Some(entry) = self.files.remove(&Model::live(slot)) else {
            return;
        };
        let to = self.next_rotated(slot);
        fs::rename(self.logs.join(Model::live(slot)), self.logs.join(&to)).unwrap();
        self.journal
            .push(format!("  {} -> {to}", Model::live(slot)));
        self.files.insert(to, entry);
    }

    fn copytruncate(&mut self, slot: usize) {
        let live = Model::live(slot);
        let Some(entry) = self.files.get(&live).copied() else {
            return;
        };
        let to = self.next_rotated(slot);
        fs::copy(self.logs.join(&live), self.logs.join(&to)).unwrap();
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.logs.join(&live))
            .unwrap();
        self.files.insert(to.clone(), entry);
        let stream = self.new_stream();
        self.files.insert(live.clone(), FileEntry::plain(stream));
        self.journal.push(format!(
            "  {live} copied to {to} ({}), then truncated ({})",
            self.streams[entry.stream].tag, self.streams[stream].tag
        ));
    }

    fn truncate(&mut self, slot: usize) {
        let live = Model::live(slot);
        let Some(entry) = self.files.get(&live).copied() else {
            return;
        };
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.logs.join(&live))
            .unwrap();
        let undelivered = self.mark_undelivered_optional(entry.stream, false);
        let old = &mut self.streams[entry.stream];
        old.gone = true;
        old.frozen = true;
        let stream = self.new_stream();
        self.files.insert(live.clone(), FileEntry::plain(stream));
        self.journal.push(format!(
            "  {live} truncated: {undelivered} undelivered lines of {} optional",
            self.streams[entry.stream].tag
        ));
    }

    fn delete(&mut self, pick: usize) {
        if self.files.is_empty() {
            return;
        }
        let name = self
            .files
            .keys()
            .nth(pick % self.files.len())
            .unwrap()
            .clone();
        let entry = self.files[&name];
        let path = self.logs.join(&name);
        if entry.prefix {
            fs::remove_file(&path).unwrap();
            self.files.remove(&name);
            self.journal
                .push(format!("  {name} (a copy of a prefix) deleted"));
            return;
        }
        let mut opened = false;
        if let Some(agent) = &self.agent {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(1) {
                if agent.has_open(&path) || self.all_delivered(entry.stream) {
                    opened = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let optional = if opened {
            0
        } else {
            self.mark_undelivered_optional(entry.stream, false)
        };
        fs::remove_file(&path).unwrap();
        self.files.remove(&name);
        let s = &mut self.streams[entry.stream];
        s.gone = true;
        s.frozen = true;
        self.journal.push(format!(
            "  {name} ({}) deleted, {}",
            s.tag,
            if opened {
                "open in the agent".to_owned()
            } else {
                format!("not open in the agent: {optional} undelivered lines optional")
            }
        ));
    }

    fn create(&mut self, slot: usize) {
        if !self.files.contains_key(&Model::live(slot)) {
            self.live_stream(slot);
        }
    }

    /// Compresses a rotated plain file in place, as logrotate does: the compressed file is
    /// written aside, dated in the past (finished: the agent takes a gzip file once it has not
    /// changed for `rotate_wait_ms`), moved in, and the plain file removed.
    fn gzip(&mut self, pick: usize) {
        let candidates: Vec<String> = self
            .files
            .iter()
            .filter(|(name, f)| !f.gz && name.contains(".log."))
            .map(|(name, _)| name.clone())
            .collect();
        if candidates.is_empty() {
            return;
        }
        let name = candidates[pick % candidates.len()].clone();
        let plain = self.logs.join(&name);
        let aside = self.root().join("tmp").join("partial.gz");
        fs::write(&aside, compress("gz", &fs::read(&plain).unwrap())).unwrap();
        File::options()
            .write(true)
            .open(&aside)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
            .unwrap();
        let gz = format!("{name}.gz");
        fs::rename(&aside, self.logs.join(&gz)).unwrap();
        fs::remove_file(&plain).unwrap();
        let entry = self.files.remove(&name).unwrap();
        // A copy of a prefix leaves its stream going on in its original.
        self.streams[entry.stream].frozen |= !entry.prefix;
        self.journal.push(format!(
            "  {name} ({}) compressed",
            self.streams[entry.stream].tag
        ));
        self.files.insert(gz, FileEntry { gz: true, ..entry });
    }

    /// Compresses a rotated plain file as logrotate's `compress` does: the compressed file is
    /// created empty, written in pieces as `how` says (the agent may see a valid but partial
    /// stream), synced, then the plain file is removed and, with `rename`, the compressed one
    /// moved on to a new name a moment later (delaycompress's `.1.gz` -> `.2.gz`).
    fn compress_in_pieces(&mut self, pick: usize, how: Compressor) {
        let Compressor {
            codec,
            pieces,
            ms,
            stall_ms,
            rename,
        } = how;
        let candidates: Vec<String> = self
            .files
            .iter()
            .filter(|(name, f)| !f.gz && name.contains(".log."))
            .map(|(name, _)| name.clone())
            .collect();
        if candidates.is_empty() {
            return;
        }
        let name = candidates[pick % candidates.len()].clone();
        let plain = self.logs.join(&name);
        let bytes = codec.compress(&fs::read(&plain).unwrap());
        let mut to = format!("{name}.{}", codec.ext());
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.logs.join(&to))
            .unwrap();
        std::thread::sleep(Duration::from_millis(ms.max(5)));
        let chunks: Vec<&[u8]> = bytes.chunks(bytes.len().div_ceil(pieces)).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            if i > 0 {
                let pause = if i == chunks.len() / 2 { stall_ms } else { ms };
                std::thread::sleep(Duration::from_millis(pause));
            }
            out.write_all(chunk).unwrap();
        }
        out.sync_all().unwrap();
        drop(out);
        fs::remove_file(&plain).unwrap();
        let entry = self.files.remove(&name).unwrap();
        self.streams[entry.stream].frozen |= !entry.prefix;
        self.journal.push(format!(
            "  {name} ({}) compressed to {to} in {} pieces",
            self.streams[entry.stream].tag,
            chunks.len()
        ));
        if rename {
            std::thread::sleep(Duration::from_millis(ms));
            let slot = usize::from(name.as_bytes()[3] - b'0');
            let next = format!("{}.{}", self.next_rotated(slot), codec.ext());
            fs::rename(self.logs.join(&to), self.logs.join(&next)).unwrap();
            self.journal.push(format!("  {to} -> {next}"));
            to = next;
        }
        self.files.insert(to, FileEntry { gz: true, ..entry });
    }

    /// Copies the live file of `slot` to a new rotated name as cp and logrotate do: the copy is
    /// created empty and filled in pieces (see [`Piecewise`]) until a read returns nothing,
    /// while the application appends lines after each piece. The application writes whole
    /// lines (its first write completes a partial line): the copy holds the stream's first
    /// lines, every line written before its last read. Returns the copy's name, the original's
    /// entry and how many lines the copy holds.
    fn copy_live(&mut self, slot: usize, how: Piecewise) -> Option<(String, FileEntry, usize)> {
        let Piecewise { piece, lines, ms } = how;
        let live = Model::live(slot);
        let entry = self.files.get(&live).copied()?;
        if self.streams[entry.stream].partial.is_some() {
            self.write(slot, 1);
        }
        let to = self.next_rotated(slot);
        let mut from = File::open(self.logs.join(&live)).unwrap();
        let mut copy = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.logs.join(&to))
            .unwrap();
        let mut buf = vec![0u8; piece.max(from.metadata().unwrap().len() as usize / 8)];
        let mut pieces = 0;
        loop {
            let n = from.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            copy.write_all(&buf[..n]).unwrap();
            pieces += 1;
            // Bounded, so that the copy catches up with the writer.
            if pieces <= 16 {
                self.write(slot, lines);
            }
            std::thread::sleep(Duration::from_millis(ms));
        }
        let held = self.streams[entry.stream].lines.len();
        copy.sync_all().unwrap();
        self.journal.push(format!(
            "  {live} ({}) copied to {to} in {pieces} pieces, lines {}:0..{held}",
            self.streams[entry.stream].tag, self.streams[entry.stream].tag
        ));
        Some((to, entry, held))
    }

    /// logrotate's copytruncate under a live writer: the copy as [`Model::copy_live`], then the
    /// writer appends `how.lines.max(1)` more lines and the agent gets `ms` (the copy's fsync) to
    /// read them before the original is truncated. The copy carries the stream on; the lines
    /// written after its last read are in neither file unless the agent read them in time
    /// (copytruncate's own loss): optional.
    fn copytruncate_live(&mut self, slot: usize, how: Piecewise) {
        let Some((to, entry, held)) = self.copy_live(slot, how) else {
            return;
        };
        let Piecewise { lines, ms, .. } = how;
        self.write(slot, lines.max(1));
        std::thread::sleep(Duration::from_millis(ms));
        let live = Model::live(slot);
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.logs.join(&live))
            .unwrap();
        self.files.insert(to, entry);
        let s = &mut self.streams[entry.stream];
        let n = s.lines.len() as u64;
        s.optional.extend(held as u64..n);
        let stream = self.new_stream();
        self.files.insert(live.clone(), FileEntry::plain(stream));
        self.journal.push(format!(
            "  {live} truncated ({}); {}:{held}..{n} written after the copy, optional",
            self.streams[stream].tag, self.streams[entry.stream].tag
        ));
    }

    fn kill(&mut self) {
        let Some(mut agent) = self.agent.take() else {
            return;
        };
        agent.kill9();
        self.kills += 1;
        self.settle_captures();
        // Every line delivered at or past its file's persisted checkpoint is read again.
        let checkpoints = self.checkpoints();
        let delivered = self.delivered();
        let mut repeatable = HashSet::new();
        for event in &delivered.events {
            let (Some((tag, seq)), Some((key, offset))) =
                (tag_and_seq(event), key_and_offset(event))
            else {
                continue;
            };
            if !checkpoints.iter().any(|&(k, at)| k == key && offset < at) {
                repeatable.insert((tag.to_owned(), seq));
            }
        }
        let repeats = repeatable.len();
        for line in repeatable {
            *self.allowed_repeats.entry(line).or_default() += 1;
        }
        // Deleted files die with the descriptors the agent held.
        let mut lost = 0;
        for stream in 0..self.streams.len() {
            if self.streams[stream].gone {
                lost += self.mark_undelivered_optional(stream, false);
            }
        }
        self.journal.push(format!(
            "  killed: {} events delivered, {repeats} lines past the checkpoints may repeat, \
             {lost} undelivered lines of deleted files optional",
            delivered.events.len()
        ));
    }

    fn stop(&mut self) {
        if self.sink != SinkState::Ok {
            // A drain cannot finish while the sink is broken: it would only wait for its
            // deadline. A stop then is a kill.
            self.journal.push("  (sink broken: killed instead)".into());
            return self.kill();
        }
        let Some(mut agent) = self.agent.take() else {
            return;
        };
        let status = agent.terminate(Duration::from_secs(30));
        assert_eq!(
            status.code(),
            Some(0),
            "the drain did not exit 0: {status}; logs:\n{}",
            agent.logs(40)
        );
        self.settle_captures();
        // The drain read every open file to its end; only the unterminated last line of a
        // deleted file, which ships only when the file is let go, may be lost.
        for stream in 0..self.streams.len() {
            if self.streams[stream].gone {
                self.mark_undelivered_optional(stream, true);
            }
        }
    }

    fn restart(&mut self) {
        if self.agent.is_none() {
            self.agent = Some(AgentProcess::start(&self.config, &self.stderr()));
        }
    }

    fn sink_fail(&mut self) {
        if self.sink != SinkState::Ok {
            return;
        }
        let root = self.root();
        fs::rename(root.join("out"), root.join("out.held")).unwrap();
        fs::write(root.join("out"), b"not a directory").unwrap();
        self.sink = SinkState::Failing;
    }

    fn sink_stall(&mut self) {
        if self.sink != SinkState::Ok {
            return;
        }
        let root = self.root();
        // Made aside, then swapped in: the sink would create its file in an empty directory.
        let stall = root.join("stall.next");
        fs::create_dir(&stall).unwrap();
        let status = Command::new("mkfifo")
            .arg(stall.join("sink.ndjson"))
            .status()
            .unwrap();
        assert!(status.success(), "mkfifo failed");
        fs::rename(root.join("out"), root.join("out.held")).unwrap();
        fs::rename(&stall, root.join("out")).unwrap();
        self.sink = SinkState::Stalled;
    }

    fn sink_restore(&mut self) {
        let root = self.root();
        match self.sink {
            SinkState::Ok => return,
            SinkState::Failing => fs::remove_file(root.join("out")).unwrap(),
            SinkState::Stalled => {
                self.stalls += 1;
                let aside = root.join(format!("stall{}", self.stalls));
                fs::rename(root.join("out"), &aside).unwrap();
                let at =
                    fs::metadata(root.join("out.held").join("sink.ndjson")).map_or(0, |m| m.len());
                // Opened before the real directory is back: the sink, blocked in its open,
                // writes its batch into the FIFO; its next batch goes to the real file.
                self.captures
                    .push(Capture::start(aside.join("sink.ndjson"), at));
            }
        }
        fs::rename(root.join("out.held"), root.join("out")).unwrap();
        self.sink = SinkState::Ok;
    }

    /// Once the agent is gone, the FIFOs opened so far are read to their end.
    fn settle_captures(&mut self) {
        for capture in &mut self.captures {
            capture.finish();
        }
    }

    /// Every event delivered so far, in delivery order.
    fn delivered(&self) -> Delivered {
        model_support::merge(&fs::read(self.output()).unwrap_or_default(), &self.captures)
    }

    /// `(key, offset)` of every record of the persisted checkpoint file.
    fn checkpoints(&self) -> Vec<(u64, u64)> {
        Checkpoints::read(&self.root().join("data"))
            .records
            .iter()
            .filter_map(|r| Some((r.key?, r.offset)))
            .collect()
    }

    /// The line numbers of `stream` delivered so far.
    fn delivered_seqs(&self, stream: usize) -> BTreeSet<u64> {
        let tag = &self.streams[stream].tag;
        self.delivered()
            .events
            .iter()
            .filter_map(tag_and_seq)
            .filter(|(t, _)| t == tag)
            .map(|(_, seq)| seq)
            .collect()
    }

    fn all_delivered(&self, stream: usize) -> bool {
        let seen = self.delivered_seqs(stream);
        (0..self.streams[stream].lines.len() as u64).all(|seq| seen.contains(&seq))
    }

    /// Makes the undelivered lines of `stream` optional (only its partial last line when
    /// `partial_only`); returns how many.
    fn mark_undelivered_optional(&mut self, stream: usize, partial_only: bool) -> usize {
        let seen = self.delivered_seqs(stream);
        let s = &mut self.streams[stream];
        let n = s.lines.len() as u64;
        let candidates = if partial_only {
            match s.partial {
                Some(_) => n - 1..n,
                None => 0..0,
            }
        } else {
            0..n
        };
        let mut marked = 0;
        for seq in candidates {
            if !seen.contains(&seq) && s.optional.insert(seq) {
                marked += 1;
            }
        }
        marked
    }

    fn apply(&mut self, op: &Op) {
        self.journal.push(format!("{op:?}"));
        match *op {
            Op::Write { slot, lines } => self.write(slot, lines),
            Op::Partial { slot } => self.partial(slot),
            Op::Rotate { slot } => self.rotate(slot),
            Op::CopyTruncate { slot } => self.copytruncate(slot),
            Op::Truncate { slot } => self.truncate(slot),
            Op::Delete { pick } => self.delete(pick),
            Op::Create { slot } => self.create(slot),
            Op::Gzip { pick } => self.gzip(pick),
            Op::CompressInPieces { pick, how } => self.compress_in_pieces(pick, how),
            Op::CopyTruncateLive { slot, how } => self.copytruncate_live(slot, how),
            Op::Copy { slot, how } => {
                if let Some((to, entry, held)) = self.copy_live(slot, how) {
                    self.files.insert(
                        to,
                        FileEntry {
                            prefix: true,
                            ..entry
                        },
                    );
                    let s = &self.streams[entry.stream];
                    self.journal.push(format!(
                        "  (copy holds {}:0..{held}; the stream goes on, at {})",
                        s.tag,
                        s.lines.len()
                    ));
                }
            }
            Op::Kill => self.kill(),
            Op::Stop => self.stop(),
            Op::Restart => self.restart(),
            Op::SinkFail => self.sink_fail(),
            Op::SinkStall => self.sink_stall(),
            Op::SinkRestore => self.sink_restore(),
            Op::Pause { ms } => std::thread::sleep(Duration::from_millis(ms)),
        }
    }

    /// The required lines not delivered yet, as `tag:seq`.
    fn missing(&self, delivered: &Delivered) -> Vec<String> {
        let mut seen: HashSet<(&str, u64)> = HashSet::new();
        for event in &delivered.events {
            if let Some(line) = tag_and_seq(event) {
                seen.insert(line);
            }
        }
        let mut missing = Vec::new();
        for s in &self.streams {
            for seq in 0..s.lines.len() as u64 {
                if !s.optional.contains(&seq) && !seen.contains(&(s.tag.as_str(), seq)) {
                    missing.push(format!("{}:{seq}", s.tag));
                }
            }
        }
        missing
    }

    /// The end of a run: the sink back, the agent running, partial lines of files still
    /// written to completed; waits for every required line, gives duplicates the time to
    /// show, stops the agent (the drain must exit 0) and checks what was delivered.
    fn finish_and_check(&mut self) -> Result<(), String> {
        self.journal
            .push("-- end: restore, restart, complete partial lines".into());
        self.sink_restore();
        self.restart();
        let plain: Vec<(String, usize)> = self
            .files
            .iter()
            .filter(|(_, f)| !f.gz && !f.prefix)
            .map(|(name, f)| (name.clone(), f.stream))
            .collect();
        for (name, stream) in plain {
            let rest = self.complete_partial(stream);
            self.append(&name, &rest);
        }
        let start = Instant::now();
        loop {
            let missing = self.missing(&self.delivered());
            if missing.is_empty() {
                break;
            }
            if start.elapsed() > PATIENCE {
                return Err(format!(
                    "{} lines never delivered (first: {:?})",
                    missing.len(),
                    &missing[..missing.len().min(10)]
                ));
            }
            self.agent.as_mut().unwrap().assert_alive();
            std::thread::sleep(Duration::from_millis(50));
        }
        // A wrongly re-read file (a copy, a compressed file) shows within a few scans and
        // rotate waits.
        std::thread::sleep(Duration::from_millis(1_000));
        self.stop();
        self.check()
    }

    /// The oracle (see the module doc).
    fn check(&self) -> Result<(), String> {
        let delivered = self.delivered();
        let mut problems = Vec::new();
        if delivered.torn > self.kills {
            problems.push(format!(
                "{} torn output lines for {} kills",
                delivered.torn, self.kills
            ));
        }
        let by_tag: HashMap<&str, &Stream> =
            self.streams.iter().map(|s| (s.tag.as_str(), s)).collect();
        let mut count: HashMap<(String, u64), usize> = HashMap::new();
        let mut next_first: HashMap<&str, u64> = HashMap::new();
        for event in &delivered.events {
            let Some((tag, seq)) = tag_and_seq(event) else {
                problems.push(format!("unexpected event {event}"));
                continue;
            };
            let Some(stream) = by_tag.get(tag) else {
                problems.push(format!("a stream never written: {event}"));
                continue;
            };
            if seq >= stream.lines.len() as u64 {
                problems.push(format!("a line never written: {event}"));
                continue;
            }
            let message = event["message"].as_str().unwrap();
            let whole = &stream.lines[seq as usize];
            // The cut text is right for a line let go partial; a partial line that was
            // completed later must arrive whole.
            if message != stream.expected_text(seq) && message != whole.as_str() {
                problems.push(format!("{tag}:{seq} delivered as {message:?}"));
            }
            let n = count.entry((tag.to_owned(), seq)).or_default();
            *n += 1;
            if *n == 1 {
                let next = next_first.entry(tag).or_default();
                if seq < *next {
                    problems.push(format!(
                        "{tag}:{seq} first delivered after {tag}:{} (out of order)",
                        *next - 1
                    ));
                }
                *next = (*next).max(seq + 1);
            }
        }
        for ((tag, seq), n) in &count {
            let allowed = 1 + self
                .allowed_repeats
                .get(&(tag.clone(), *seq))
                .copied()
                .unwrap_or(0);
            if *n > allowed {
                problems.push(format!(
                    "{tag}:{seq} delivered {n} times, {allowed} allowed by the kills"
                ));
            }
        }
        let missing = self.missing(&delivered);
        if !missing.is_empty() {
            problems.push(format!("missing: {missing:?}"));
        }
        if problems.is_empty() {
            return Ok(());
        }
        problems.sort();
        let shown = problems.len().min(20);
        Err(format!(
            "{} problems, first {shown}:\n  {}",
            problems.len(),
            problems[..shown].join("\n  ")
        ))
    }
}

/// Runs `ops` against the agent and checks the oracle; the error says what went wrong, what
/// was done and what the agent logged.
fn run(ops: &[Op]) -> Result<(), String> {
    let mut model = Model::new();
    model.restart();
    for op in ops {
        model.apply(op);
    }
    // The model (its directory) lives on until the agent's logs are read.
    model.finish_and_check().map_err(|e| {
        let logs = fs::read_to_string(model.stderr()).unwrap_or_default();
        let lines: Vec<&str> = logs.lines().collect();
        format!(
            "{e}\n-- in {}; operations:\n{}\n-- the agent's last log lines:\n{}",
            model.dir.path().display(),
            model.journal.join("\n"),
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    })
}

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The tests that run agents take turns: two at once on two cores would mostly test the
/// scheduler.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

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

/// Runs one fixed sequence (a shrunk failure) and panics with the oracle's findings.
fn regression(ops: &[Op]) {
    let _turn = turn();
    if let Err(e) = run(ops) {
        panic!("{e}");
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

/// The cases CI runs are the same every time (a fixed seed), so that a failure there is one
/// that was seen here too; `MODEL_SEED=random` explores new ones (then shrunk failures become
/// named tests below), `MODEL_SEED=<n>` replays a run.
fn model_seed() -> proptest::test_runner::RngSeed {
    use proptest::test_runner::RngSeed;
    match std::env::var("MODEL_SEED").ok().as_deref() {
        Some("random") => RngSeed::Random,
        Some(seed) => seed.parse().map_or(RngSeed::Random, RngSeed::Fixed),
        None => RngSeed::Fixed(DEFAULT_MODEL_SEED),
    }
}

/// The seed of the cases CI runs.
const DEFAULT_MODEL_SEED: u64 = 7;

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

/// Found by the model: logrotate's `copy` made just before a clean stop, so the agent held the
/// copy unread (its record at offset 0, no marks), then the original renamed while the agent
/// was down: at the restart the agent took the renamed original for a copy of the copy and
/// shipped the copy whole, every line a second time.
#[test]
fn a_copy_held_at_a_stop_is_not_shipped_again_after_its_original_is_renamed() {
    regression(&[
        Op::Write { slot: 1, lines: 40 },
        Op::Pause { ms: 300 },
        Op::Copy {
            slot: 1,
            how: Piecewise {
                piece: 8192,
                lines: 0,
                ms: 0,
            },
        },
        Op::Stop,
        Op::Rotate { slot: 1 },
    ]);
}

/// Found by the model (CI's seed): logrotate's `copy` made just before a clean stop (the copy
/// held unread); while the agent was down the original was copied and truncated
/// (copytruncate) and the first copy compressed: at the restart the compressed copy resumed at
/// the held copy's record, offset 0, and was shipped whole, every line a second time.
#[test]
fn a_copy_held_at_a_stop_then_compressed_is_not_read_again() {
    regression(&[
        Op::Write { slot: 0, lines: 1 },
        Op::Copy {
            slot: 0,
            how: Piecewise {
                piece: 8192,
                lines: 1,
                ms: 6,
            },
        },
        Op::Stop,
        Op::Write {
            slot: 0,
            lines: 248,
        },
        Op::CopyTruncate { slot: 0 },
        Op::Gzip { pick: 0 },
    ]);
}

/// Found by the model (CI's seed): logrotate's `copy`, a kill, then the original written,
/// copied and truncated while the agent was down: two files start like the original, whose
/// record no longer matches its truncated inode. The record went to the short `copy` copy
/// (resumed at the original's checkpoint) and the copytruncate copy, which carries the
/// stream on, was read from its start: the checkpointed lines again, the rest a third time.
#[test]
fn two_copies_of_a_killed_agents_file_resume_it_once() {
    regression(&[
        Op::Write { slot: 0, lines: 1 },
        Op::Copy {
            slot: 0,
            how: Piecewise {
                piece: 8192,
                lines: 1,
                ms: 6,
            },
        },
        Op::Kill,
        Op::Write {
            slot: 0,
            lines: 248,
        },
        Op::CopyTruncate { slot: 0 },
    ]);
}

/// Found by the model: logrotate's `copy` then `compress` of the copy, then again a copy that
/// copytruncate truncates behind, compressed too, all while the agent ran: the two compressed
/// files start alike and each was taken for the compressed copy of the other's plain file, so
/// the longer one continued where the shorter copy ends: its remaining lines a second time.
#[test]
fn two_compressed_copies_of_one_file_continue_their_own_originals() {
    regression(&[
        Op::Pause { ms: 300 },
        Op::Write { slot: 0, lines: 23 },
        Op::Copy {
            slot: 0,
            how: Piecewise {
                piece: 8192,
                lines: 0,
                ms: 3,
            },
        },
        Op::Gzip { pick: 0 },
        Op::Write {
            slot: 0,
            lines: 211,
        },
        Op::CopyTruncateLive {
            slot: 0,
            how: Piecewise {
                piece: 409,
                lines: 1,
                ms: 3,
            },
        },
        Op::Gzip { pick: 0 },
    ]);
}

/// Found by the model: while the agent was stopped the application wrote on, logrotate's
/// `copy` copied the live file and compressed the copy, and the application wrote on: at the
/// restart the live file resumed at its checkpoint, but the compressed copy of its first lines
/// was read whole as a new file (a plain copy is recognised, a compressed one is not).
#[test]
fn a_compressed_copy_made_while_the_agent_was_down_is_not_shipped_again() {
    regression(&[
        Op::Write { slot: 1, lines: 2 },
        Op::Pause { ms: 300 },
        Op::Stop,
        Op::Write { slot: 1, lines: 2 },
        Op::Copy {
            slot: 1,
            how: Piecewise {
                piece: 8192,
                lines: 0,
                ms: 0,
            },
        },
        Op::Gzip { pick: 0 },
        Op::Write { slot: 1, lines: 1 },
    ]);
}

/// Found by the model: copytruncate under a writer, then a kill before the agent had decided
/// about the copy (held unread, its record at offset 0), then the copy compressed while the
/// agent was down (Debian's copytruncate + compress): at the restart the compressed copy
/// resumed at the copy's record, offset 0, and was shipped whole, every line a second time.
#[test]
fn a_copytruncate_copy_held_at_a_kill_then_compressed_is_not_read_again() {
    regression(&[
        Op::Write {
            slot: 0,
            lines: 284,
        },
        Op::Pause { ms: 500 },
        Op::Write { slot: 0, lines: 6 },
        Op::CopyTruncateLive {
            slot: 0,
            how: Piecewise {
                piece: 8192,
                lines: 1,
                ms: 3,
            },
        },
        Op::Kill,
        Op::Gzip { pick: 0 },
    ]);
}

/// Found by the model: the live file truncated (copytruncate) and written again, then
/// logrotate's `copy` of it, found in the same scan as the truncation, before the agent had read
/// the new lines of the original: nothing to compare it with, it was read as a new file (to its
/// end once the compressor removed it), and its lines shipped again from the original. Timing:
/// fails about two runs in three.
#[test]
fn a_copy_found_before_its_lines_are_read_in_the_original_is_not_shipped() {
    regression(&[
        Op::Write { slot: 0, lines: 3 },
        Op::Pause { ms: 300 },
        Op::CopyTruncate { slot: 0 },
        Op::Write { slot: 0, lines: 5 },
        Op::Copy {
            slot: 0,
            how: Piecewise {
                piece: 1830,
                lines: 0,
                ms: 2,
            },
        },
        Op::CompressInPieces {
            pick: 1,
            how: Compressor {
                codec: Codec::Bzip2,
                pieces: 4,
                ms: 20,
                stall_ms: 0,
                rename: false,
            },
        },
        Op::Write { slot: 0, lines: 14 },
    ]);
}

/// Found by the model: logrotate's `copy` made while the agent was stopped, 1 to 4 KiB long
/// (more than the fingerprint, less than the first 4 KiB mark), of a file the agent then read
/// past the copy's end in one read: at the restart the original resumed at its checkpoint but
/// the copy was read whole as a new file, every line a second time (a copy within the first
/// KiB, or past 4 KiB, is recognised).
#[test]
fn a_copy_made_while_the_agent_was_down_is_not_shipped_again() {
    regression(&[
        Op::Write { slot: 0, lines: 5 },
        Op::Pause { ms: 300 },
        Op::Stop,
        Op::Write { slot: 0, lines: 15 },
        Op::Copy {
            slot: 0,
            how: Piecewise {
                piece: 8192,
                lines: 0,
                ms: 0,
            },
        },
        Op::Write { slot: 0, lines: 14 },
    ]);
}

/// Found by the model: a copytruncate copy found behind a failing sink (the tailer blocked,
/// the truncation not noticed yet), held, then a kill: the checkpoint written between the
/// copy's discovery and its hold kept a record of it at offset 0, and the compressed copy made
/// while the agent was down took that record and was read from its start. Held files are
/// never given a record now.
#[test]
fn a_copy_held_behind_a_failing_sink_at_a_kill_then_compressed_is_not_read_again() {
    regression(&[
        Op::Truncate { slot: 0 },
        Op::Write {
            slot: 0,
            lines: 284,
        },
        Op::Pause { ms: 234 },
        Op::Pause { ms: 303 },
        Op::Write { slot: 0, lines: 6 },
        Op::SinkFail,
        Op::Write {
            slot: 1,
            lines: 316,
        },
        Op::CopyTruncateLive {
            slot: 0,
            how: Piecewise {
                piece: 8192,
                lines: 1,
                ms: 3,
            },
        },
        Op::Write { slot: 0, lines: 17 },
        Op::Kill,
        Op::CompressInPieces {
            pick: 2,
            how: Compressor {
                codec: Codec::Zstd,
                pieces: 3,
                ms: 18,
                stall_ms: 120,
                rename: false,
            },
        },
        Op::Kill,
        Op::Pause { ms: 91 },
        Op::Truncate { slot: 1 },
    ]);
}

/// Found by the model (a loss): logrotate's `copy` of a file whose lines were read but not
/// delivered (the sink failing), taken for a copy of them with a record at its end; after a
/// stop, the original took that record (its own said offset 0, and a copy's record was
/// preferred then) and resumed past lines never delivered. A copy's record is now never
/// continued by another file, and a file's own record always wins.
#[test]
fn the_record_of_a_copy_of_lines_not_delivered_yet_is_not_continued_by_its_original() {
    regression(&[
        Op::Partial { slot: 1 },
        Op::SinkFail,
        Op::Copy {
            slot: 1,
            how: Piecewise {
                piece: 8192,
                lines: 0,
                ms: 0,
            },
        },
        Op::Pause { ms: 380 },
        Op::Write {
            slot: 1,
            lines: 193,
        },
        Op::CopyTruncate { slot: 0 },
        Op::Write {
            slot: 1,
            lines: 1983,
        },
        Op::CopyTruncateLive {
            slot: 0,
            how: Piecewise {
                piece: 1518,
                lines: 2,
                ms: 3,
            },
        },
        Op::SinkStall,
        Op::Stop,
        Op::Pause { ms: 192 },
        Op::Write { slot: 1, lines: 9 },
        Op::CompressInPieces {
            pick: 4,
            how: Compressor {
                codec: Codec::Xz,
                pieces: 4,
                ms: 12,
                stall_ms: 0,
                rename: false,
            },
        },
        Op::Rotate { slot: 0 },
        Op::CompressInPieces {
            pick: 5,
            how: Compressor {
                codec: Codec::Zstd,
                pieces: 5,
                ms: 9,
                stall_ms: 0,
                rename: false,
            },
        },
        Op::Write { slot: 1, lines: 1 },
        Op::SinkFail,
        Op::Write {
            slot: 0,
            lines: 261,
        },
    ]);
}

/// Found by the model (CI's seed): logrotate's `copy` then `compress` of a file, and later, the
/// agent killed, copytruncate and compress of the same file: two compressed copies of it, one
/// holding the beginning of the other, both resumed at its record and both read on from there.
/// The second is now compared with the first: a part of it, it holds nothing new.
#[test]
fn two_compressed_copies_of_one_file_made_while_down_are_read_once() {
    regression(&[
        Op::Write { slot: 0, lines: 80 },
        Op::Stop,
        Op::Copy {
            slot: 0,
            how: Piecewise {
                piece: 8192,
                lines: 2,
                ms: 6,
            },
        },
        Op::Pause { ms: 69 },
        Op::Write { slot: 1, lines: 15 },
        Op::Restart,
        Op::CompressInPieces {
            pick: 6,
            how: Compressor {
                codec: Codec::Xz,
                pieces: 3,
                ms: 27,
                stall_ms: 0,
                rename: false,
            },
        },
        Op::Kill,
        Op::Create { slot: 0 },
        Op::Write {
            slot: 0,
            lines: 248,
        },
        Op::CopyTruncate { slot: 0 },
        Op::CopyTruncate { slot: 1 },
        Op::Gzip { pick: 2 },
        Op::CompressInPieces {
            pick: 7,
            how: Compressor {
                codec: Codec::Zstd,
                pieces: 5,
                ms: 47,
                stall_ms: 0,
                rename: true,
            },
        },
        Op::Write {
            slot: 0,
            lines: 122,
        },
        Op::CompressInPieces {
            pick: 3,
            how: Compressor {
                codec: Codec::Bzip2,
                pieces: 4,
                ms: 2,
                stall_ms: 81,
                rename: true,
            },
        },
    ]);
}

/// Found by the model (CI's seed): a compressed `copy` copy and a copytruncate copy of one
/// file, both made while the agent was down: both resumed the file's record (the compressed
/// one first, as it sat on an inode a deleted file's record named) and both read on from it.
/// Each is now compared with the other that resumed the same record.
#[test]
fn a_compressed_copy_and_a_plain_copy_of_one_file_made_while_down_are_read_once() {
    regression(&copies_made_while_down(Op::Restart));
}

/// Found by CI on the case above with one more operation first: the compressed copy was found
/// first at the restart (its inode held the record of a deleted file, and files on such inodes
/// go first), took the original's record, and the plain copy, found next, matched no record and
/// was read whole. It is compared with the compressed one, as the other way round.
#[test]
fn a_plain_copy_found_after_a_compressed_copy_of_the_same_file_is_read_once() {
    regression(&copies_made_while_down(Op::Delete { pick: 3 }));
}

/// The operations of the two cases above, after their first.
fn copies_made_while_down(first: Op) -> Vec<Op> {
    vec![
        first,
        Op::Restart,
        Op::SinkFail,
        Op::Write { slot: 0, lines: 16 },
        Op::Write { slot: 0, lines: 10 },
        Op::CopyTruncateLive {
            slot: 1,
            how: Piecewise {
                piece: 1298,
                lines: 3,
                ms: 2,
            },
        },
        Op::Write { slot: 0, lines: 8 },
        Op::CompressInPieces {
            pick: 2,
            how: Compressor {
                codec: Codec::Bzip2,
                pieces: 5,
                ms: 46,
                stall_ms: 0,
                rename: false,
            },
        },
        Op::Kill,
        Op::Kill,
        Op::Write { slot: 1, lines: 7 },
        Op::Restart,
        Op::Delete { pick: 1 },
        Op::Write { slot: 1, lines: 15 },
        Op::SinkFail,
        Op::SinkRestore,
        Op::Write { slot: 1, lines: 5 },
        Op::Copy {
            slot: 1,
            how: Piecewise {
                piece: 400,
                lines: 1,
                ms: 7,
            },
        },
        Op::Kill,
        Op::CopyTruncate { slot: 0 },
        Op::Pause { ms: 255 },
        Op::CompressInPieces {
            pick: 3,
            how: Compressor {
                codec: Codec::Xz,
                pieces: 3,
                ms: 14,
                stall_ms: 0,
                rename: false,
            },
        },
        Op::Gzip { pick: 6 },
        Op::CopyTruncate { slot: 1 },
        Op::Pause { ms: 348 },
        Op::SinkStall,
    ]
}
