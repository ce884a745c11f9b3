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
//! Sized for CI: `MODEL_CASES` cases (24 by default; `PROPTEST_CASES` works too) of 10 to 30
//! operations. A failure is shrunk (at most `MODEL_SHRINK_ITERS` steps, 32 by default) and
//! its seed saved in `tests/model.proptest-regressions`; minimal cases found so far are kept
//! below as named tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::process::AgentProcess;
use common::{config_yaml, numbered};
use proptest::prelude::*;
use serde_json::Value;

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
    gz: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SinkState {
    Ok,
    Failing,
    Stalled,
}

/// What a FIFO that stood in for the sink's output received once it was opened.
struct Capture {
    /// Length of the sink's real output when the FIFO was opened: the FIFO's batch came after
    /// everything before it and before everything after it.
    at: u64,
    fifo: PathBuf,
    bytes: Arc<Mutex<Vec<u8>>>,
    /// Set once the reader has the FIFO open.
    opened: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl Capture {
    /// Reads `fifo` in a thread until every writer has closed it.
    fn start(fifo: PathBuf, at: u64) -> Capture {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let opened = Arc::new(AtomicBool::new(false));
        let reader = {
            let (fifo, bytes, opened) = (fifo.clone(), Arc::clone(&bytes), Arc::clone(&opened));
            std::thread::spawn(move || {
                // Blocks until a writer opens it (the sink, blocked in its own open, or
                // `finish`).
                let mut file = File::open(&fifo).unwrap();
                opened.store(true, Ordering::Release);
                let mut buf = [0u8; 65536];
                loop {
                    let n = file.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    bytes.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            })
        };
        Capture {
            at,
            fifo,
            bytes,
            opened,
            reader: Some(reader),
        }
    }

    /// Waits for the reader to see the end, once no agent can write to the FIFO any more.
    fn finish(&mut self) {
        if let Some(reader) = self.reader.take() {
            // Opening it read-write never blocks and counts as a writer: held until the reader
            // is past its own open, then closed, it leaves the reader at the end once the
            // agent's descriptor is gone too.
            let writer = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.fifo)
                .unwrap();
            while !self.opened.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(writer);
            reader.join().unwrap();
        }
    }
}

/// Everything the sink delivered, in delivery order.
struct Delivered {
    events: Vec<Value>,
    /// Lines that are not JSON: cut short by a kill.
    torn: usize,
}

/// Parses NDJSON `bytes` into `into`; returns the number of unreadable lines. A last line
/// without its newline is being written (or was cut by a kill): left out.
fn parse_lines(bytes: &[u8], into: &mut Vec<Value>) -> usize {
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut torn = 0;
    for line in bytes[..complete].split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice(line) {
            Ok(event) => into.push(event),
            Err(_) => torn += 1,
        }
    }
    torn
}

/// The stream tag and line number of a numbered message.
fn tag_and_seq(event: &Value) -> Option<(&str, u64)> {
    let message = event["message"].as_str()?;
    let mut words = message.split(' ');
    let tag = words.next()?;
    let seq = words.next()?.parse().ok()?;
    Some((tag, seq))
}

/// The file generation key and offset of an event, from its `id` (`<key hex>-<offset>`).
fn key_and_offset(event: &Value) -> Option<(u64, u64)> {
    let id = event["id"].as_str()?;
    let (key, _) = id.split_once('-')?;
    Some((
        u64::from_str_radix(key, 16).ok()?,
        event["offset"].as_u64()?,
    ))
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
        self.files.insert(name, FileEntry { stream, gz: false });
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
        self.files
            .insert(live.clone(), FileEntry { stream, gz: false });
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
        self.files
            .insert(live.clone(), FileEntry { stream, gz: false });
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
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&fs::read(&plain).unwrap()).unwrap();
        let aside = self.root().join("tmp").join("partial.gz");
        fs::write(&aside, encoder.finish().unwrap()).unwrap();
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
        self.streams[entry.stream].frozen = true;
        self.journal.push(format!(
            "  {name} ({}) compressed",
            self.streams[entry.stream].tag
        ));
        self.files.insert(
            gz,
            FileEntry {
                stream: entry.stream,
                gz: true,
            },
        );
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
        let bytes = fs::read(self.output()).unwrap_or_default();
        let mut captures: Vec<&Capture> = self.captures.iter().collect();
        captures.sort_by_key(|c| c.at);
        let mut events = Vec::new();
        let mut torn = 0;
        let mut from = 0usize;
        for capture in captures {
            // Measured while the sink may have been writing a batch to the real file: the
            // FIFO's batch came after the line being written then.
            let mut at = (capture.at as usize).min(bytes.len());
            if at > 0 && bytes[at - 1] != b'\n' {
                at = bytes[at..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |i| at + i + 1);
            }
            torn += parse_lines(&bytes[from..at], &mut events);
            from = at;
            torn += parse_lines(&capture.bytes.lock().unwrap(), &mut events);
        }
        torn += parse_lines(&bytes[from..], &mut events);
        Delivered { events, torn }
    }

    /// `(key, offset)` of every record of the persisted checkpoint file.
    fn checkpoints(&self) -> Vec<(u64, u64)> {
        let path = self.root().join("data").join("checkpoints.json");
        let text = fs::read_to_string(path).unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or_default();
        value["files"]
            .as_array()
            .map(|files| {
                files
                    .iter()
                    .filter_map(|f| Some((f["key"].as_u64()?, f["offset"].as_u64()?)))
                    .collect()
            })
            .unwrap_or_default()
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
    fn finish_and_check(mut self) -> Result<(), String> {
        self.journal
            .push("-- end: restore, restart, complete partial lines".into());
        self.sink_restore();
        self.restart();
        let plain: Vec<(String, usize)> = self
            .files
            .iter()
            .filter(|(_, f)| !f.gz)
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
    let journal = model.journal.clone();
    let stderr = model.stderr();
    let dir = model.dir.path().to_owned();
    model.finish_and_check().map_err(|e| {
        let logs = fs::read_to_string(&stderr).unwrap_or_default();
        let lines: Vec<&str> = logs.lines().collect();
        format!(
            "{e}\n-- in {}; operations:\n{}\n-- the agent's last log lines:\n{}",
            dir.display(),
            journal.join("\n"),
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
