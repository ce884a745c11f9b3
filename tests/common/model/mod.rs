//! The model test's harness (`tests/model.rs` runs it on random operations,
//! `tests/model_copies.rs` and `tests/model.rs` replay the cases it found): the operations, the
//! [`Model`] that applies them to a world of log files and to a `log-agent` process while
//! keeping what the oracle needs, and [`run`], which checks the oracle at the end. The module doc
//! of `tests/model.rs` says what each operation does and what the oracle expects of it.
//!
//! - this file: the operations and their strategy, the model's state, [`run`];
//! - `files.rs`: what the application and logrotate do to the files;
//! - `agent.rs`: what happens to the agent (kill, stop, restart) and to its sink;
//! - `oracle.rs`: what was delivered, checked against what was written;
//! - `support.rs`: self-contained pieces (FIFO captures, parsing, the compressors).
// Each test crate uses a part of the harness: the random test its strategy, the named cases
// `regression`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

mod agent;
mod files;
mod oracle;
pub mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use proptest::prelude::*;

use crate::common::process::AgentProcess;
use crate::common::{append, config_yaml};
use support::Capture;
pub use support::Codec;

/// Live paths written by the application.
const SLOTS: usize = 2;
/// Bytes per numbered line (the newline included).
const WIDTH: usize = 60;
/// How long the test waits for the agent to deliver everything at the end.
const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub enum Op {
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

pub fn op() -> impl Strategy<Value = Op> {
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
pub struct Piecewise {
    pub piece: usize,
    pub lines: u64,
    pub ms: u64,
}

/// How `CompressInPieces` writes: `pieces` pieces `ms` apart, one gap midway of `stall_ms`;
/// `rename`: moved on to a new name `ms` later.
#[derive(Debug, Clone, Copy)]
pub struct Compressor {
    pub codec: Codec,
    pub pieces: usize,
    pub ms: u64,
    pub stall_ms: u64,
    pub rename: bool,
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
    /// The config puts [`THROUGH_TRANSFORMS`] in the way.
    through_transforms: bool,
}

/// A remap and a route in the way, both routes into the one sink: every line reaches it along
/// one of two paths (two ack lanes of one sink), stamped by the remap.
const THROUGH_TRANSFORMS: &str = "transforms:\n  stamp:\n    type: remap\n    inputs: [app]\n    source: .through = \"stamp\"\n  split:\n    type: route\n    inputs: [stamp]\n    route:\n      even: match(string!(.message), r'^\\S+ \\d{8}[02468] ')\n";

impl Model {
    fn new(through_transforms: bool) -> Model {
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
        let yaml = if through_transforms {
            let yaml = yaml.replace("inputs: [app]", "inputs: [split.even, split._unmatched]");
            yaml.replace("sinks:\n", &format!("{THROUGH_TRANSFORMS}sinks:\n"))
        } else {
            yaml
        };
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
            through_transforms,
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

    /// Appends `text` to the file `name` of `logs/`, as the application does.
    fn append(&self, name: &str, text: &str) {
        append(&self.logs.join(name), text.as_bytes());
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
}

/// Runs `ops` against the agent and checks the oracle; the error says what went wrong, what
/// was done and what the agent logged.
pub fn run(ops: &[Op]) -> Result<(), String> {
    run_model(ops, false)
}

/// [`run`], with a remap and a route between the source and the sink, the route's two outputs
/// both into the sink ([`THROUGH_TRANSFORMS`]).
pub fn run_through_transforms(ops: &[Op]) -> Result<(), String> {
    run_model(ops, true)
}

fn run_model(ops: &[Op], through_transforms: bool) -> Result<(), String> {
    let mut model = Model::new(through_transforms);
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

pub fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The tests that run agents take turns: two at once on two cores would mostly test the
/// scheduler.
static TURN: Mutex<()> = Mutex::new(());

pub fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs one fixed sequence (a shrunk failure) and panics with the oracle's findings.
pub fn regression(ops: &[Op]) {
    let _turn = turn();
    if let Err(e) = run(ops) {
        panic!("{e}");
    }
}

/// The cases CI runs are the same every time (a fixed seed), so that a failure there is one
/// that was seen here too; `MODEL_SEED=random` explores new ones (then shrunk failures become
/// named tests below), `MODEL_SEED=<n>` replays a run.
pub fn model_seed() -> proptest::test_runner::RngSeed {
    use proptest::test_runner::RngSeed;
    match std::env::var("MODEL_SEED").ok().as_deref() {
        Some("random") => RngSeed::Random,
        Some(seed) => seed.parse().map_or(RngSeed::Random, RngSeed::Fixed),
        None => RngSeed::Fixed(DEFAULT_MODEL_SEED),
    }
}

/// The seed of the cases CI runs.
const DEFAULT_MODEL_SEED: u64 = 7;
