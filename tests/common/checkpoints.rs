//! The checkpoint file read back the one way every test reads it: `<data_dir>/checkpoints.json`
//! as a list of records. The tests read the JSON rather than the agent's own types so that they
//! check the file an operator (or the next run) finds, whatever the code's layout.
//!
//! It stands alone (std, serde_json and memchr only, nothing else of the harness) so that the
//! benchmarks include it too (`#[path = "../tests/common/checkpoints.rs"]` in `benches/e2e.rs`).

use std::fs;
use std::path::Path;

use serde_json::Value;

/// One file's record in the checkpoint file.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The path the file was read at.
    pub path: String,
    /// The file's identity key (what ties a rotated or compressed copy to it).
    pub key: Option<u64>,
    /// The byte offset up to which its lines were acknowledged.
    pub offset: u64,
    /// A file let go, kept only for a compressed copy of it to continue: no longer read.
    pub finished: bool,
}

/// The records of `<data_dir>/checkpoints.json`.
#[derive(Clone, Debug, Default)]
pub struct Checkpoints {
    pub records: Vec<Record>,
}

impl Checkpoints {
    /// Reads `<data_dir>/checkpoints.json`: no records while it is missing (before the first
    /// write) or unreadable (a test that corrupts it on purpose reads it meanwhile). The agent
    /// replaces it whole (write and rename), so a reader never sees a write half done.
    pub fn read(data_dir: &Path) -> Checkpoints {
        Checkpoints::try_read(data_dir)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Reads `<data_dir>/checkpoints.json` strictly: `None` while it is missing, an error
    /// saying why when it is not a checkpoint file (not JSON, no `files` list). For the readers
    /// that must tell a damaged file from an empty one (the `kill -9` bench).
    pub fn try_read(data_dir: &Path) -> Result<Option<Checkpoints>, String> {
        let path = data_dir.join("checkpoints.json");
        let Ok(text) = fs::read_to_string(&path) else {
            return Ok(None);
        };
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
        let files = value["files"]
            .as_array()
            .ok_or_else(|| format!("{} has no `files`", path.display()))?;
        let records = files
            .iter()
            .filter_map(|f| {
                Some(Record {
                    path: f["path"].as_str()?.to_owned(),
                    key: f["key"].as_u64(),
                    offset: f["offset"].as_u64()?,
                    finished: f["finished"] == true,
                })
            })
            .collect();
        Ok(Some(Checkpoints { records }))
    }

    /// The records of files still read (not finished).
    pub fn live(&self) -> impl Iterator<Item = &Record> {
        self.records.iter().filter(|r| !r.finished)
    }

    /// The records of the file at `path` still read.
    pub fn live_at(&self, path: &Path) -> Vec<Record> {
        self.live()
            .filter(|r| Path::new(&r.path) == path)
            .cloned()
            .collect()
    }

    /// The offset of the first record of the file at `path`, if it has one.
    pub fn offset_of(&self, path: &Path) -> Option<u64> {
        self.records
            .iter()
            .find(|r| Path::new(&r.path) == path)
            .map(|r| r.offset)
    }

    /// The offset of the first record whose path ends with `name`, if any.
    pub fn offset_ending_with(&self, name: &str) -> Option<u64> {
        self.records
            .iter()
            .find(|r| r.path.ends_with(name))
            .map(|r| r.offset)
    }
}

/// Sum of the checkpoint offsets in `data_dir` of the files still read (0 when there is no
/// checkpoint file yet): with one file, how far it was acknowledged.
pub fn checkpointed(data_dir: &Path) -> u64 {
    Checkpoints::read(data_dir).live().map(|r| r.offset).sum()
}

/// Sum of every checkpoint offset in `data_dir`, finished records included (0 when there is no
/// checkpoint file yet), read off the text rather than parsed: polled every few milliseconds, a
/// full parse of 100,000 records would take the CPU of the agent being measured (the e2e
/// bench). With files that are only read, never let go, it is [`checkpointed`].
pub fn offsets_unparsed(data_dir: &Path) -> u64 {
    let Ok(text) = fs::read(data_dir.join("checkpoints.json")) else {
        return 0;
    };
    let key = b"\"offset\":";
    memchr::memmem::find_iter(&text, key)
        .map(|at| {
            text[at + key.len()..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'))
        })
        .sum()
}
