//! The checkpoint file: `data_dir/checkpoints.json`, one compact record a line, written to a
//! temporary file, fsynced and renamed over the old one.
//!
//! Invariant: a crash at any point leaves either the old file or the new one, whole.

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::FileRecord;
use super::store::{DORMANT_EXPIRY_SECS, MAX_DORMANT, MAX_RETIRED};

/// The file's name in `data_dir`.
pub(super) const FILE_NAME: &str = "checkpoints.json";
pub(super) const FORMAT_VERSION: u32 = 1;

/// The checkpoint file (written record by record, see [`write_atomically`]).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CheckpointFile {
    pub(super) version: u32,
    pub(super) files: Vec<FileRecord>,
}

/// True for a record of a file not tracked that is still kept: updated within
/// [`DORMANT_EXPIRY_SECS`] of `now`.
pub(super) fn not_expired(record: &FileRecord, now: u64) -> bool {
    now.saturating_sub(record.updated_unix) < DORMANT_EXPIRY_SECS
}

/// Drops the records not updated for [`DORMANT_EXPIRY_SECS`], then the oldest beyond
/// [`MAX_RETIRED`] finished and [`MAX_DORMANT`] other records.
pub(super) fn prune(records: &mut Vec<FileRecord>, now: u64) {
    records.retain(|r| not_expired(r, now));
    let (finished, other) = (
        records.iter().filter(|r| r.finished).count(),
        records.iter().filter(|r| !r.finished).count(),
    );
    if finished <= MAX_RETIRED && other <= MAX_DORMANT {
        return;
    }
    records.sort_by_key(|r| std::cmp::Reverse(r.updated_unix));
    let (mut kept_finished, mut kept_other) = (0, 0);
    records.retain(|r| {
        let kept = if r.finished {
            &mut kept_finished
        } else {
            &mut kept_other
        };
        *kept += 1;
        *kept <= if r.finished { MAX_RETIRED } else { MAX_DORMANT }
    });
}

/// Reads the checkpoint file: `Ok(None)` when there is none, `Err` with a reason when it is
/// unreadable or not a checkpoint file of this version.
pub(super) fn load(path: &Path) -> Result<Option<Vec<FileRecord>>, String> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let file: CheckpointFile = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if file.version != FORMAT_VERSION {
        return Err(format!("unsupported version {}", file.version));
    }
    Ok(Some(file.files))
}

/// Writes `records` as a checkpoint file: compact, one record per line (a store of 100,000
/// files is rewritten every interval: pretty-printing it cost more than the rest of the agent),
/// streamed to a temporary file that is fsynced and renamed over the old one. Returns when the
/// bytes were written, before they were synced.
pub(super) fn write_atomically(
    path: &Path,
    records: impl IntoIterator<Item = FileRecord>,
) -> io::Result<Instant> {
    let tmp = path.with_extension("json.tmp");
    let mut out = io::BufWriter::with_capacity(256 * 1024, fs::File::create(&tmp)?);
    write!(out, "{{\"version\":{FORMAT_VERSION},\"files\":[")?;
    for (i, record) in records.into_iter().enumerate() {
        out.write_all(if i == 0 { b"\n" } else { b",\n" })?;
        serde_json::to_writer(&mut out, &record).map_err(io::Error::other)?;
    }
    out.write_all(b"\n]}\n")?;
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    let written = Instant::now();
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        // The rename is durable only once the directory entry is.
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(written)
}

/// Seconds since the Unix epoch (0 before it).
pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
