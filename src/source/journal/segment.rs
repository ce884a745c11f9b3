//! Segment files: their names, the header line that makes each one's head unique, their
//! creation (whole or not at all) and the repair of the last one after a crash.
//!
//! Invariant: a segment appears under its name with its header already written and synced, so
//! the tailer never sees one without it; two segments never start alike, so the tailer never
//! takes one for a copy of another (as it would take logrotate's).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// What segment file names end with (the tailer's glob is `*` this).
pub const SEGMENT_SUFFIX: &str = ".ndjson";

/// A header line is never longer than this: the tailer starts new segments past it.
pub const HEADER_MAX_BYTES: u64 = 128;

/// The path of segment `seq` in `dir`.
pub(super) fn path_of(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}{SEGMENT_SUFFIX}"))
}

/// Where segment `seq` goes once delivered, out of the tailer's glob, until it is unlinked.
pub(super) fn set_aside_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!(".{seq:020}.delivered"))
}

/// The segments set aside in `dir` (see [`set_aside_path`]).
pub(super) fn list_set_aside(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(digits) = name
            .to_str()
            .and_then(|n| n.strip_prefix('.')?.strip_suffix(".delivered"))
        else {
            continue;
        };
        if let Ok(seq) = digits.parse() {
            found.push((seq, entry.path()));
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// The sequence number of a segment file name, if it is one.
pub fn seq_of(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments in `dir`, oldest first.
pub fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(seq) = entry.file_name().to_str().and_then(seq_of) {
            segments.push((seq, entry.path()));
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

/// The first line of segment `seq`: unique to it, whatever was written before, even across a
/// journal emptied and started again at 1.
fn header(seq: u64) -> Vec<u8> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{{\"log_agent_journal\":1,\"segment\":{seq},\"created_unix_nanos\":{nanos},\"nonce\":\"{:016x}\"}}\n",
        fastrand::u64(..)
    )
    .into_bytes()
}

/// Makes segment `seq` in `dir` with its header; returns it open for appending, and its size.
pub(super) fn create(dir: &Path, seq: u64) -> io::Result<(File, u64)> {
    let tmp = dir.join(format!(".{seq:020}.tmp"));
    let header = header(seq);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&tmp)?;
    file.write_all(&header)?;
    file.sync_all()?;
    fs::rename(&tmp, path_of(dir, seq))?;
    File::open(dir)?.sync_all()?;
    Ok((file, header.len() as u64))
}

/// What [`recover`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Found {
    /// The sequence number the next segment takes.
    pub(super) next_seq: u64,
    /// Bytes in the segments, after the repair.
    pub(super) bytes: u64,
}

/// Removes what a crash left half made: temporary segments, and the unterminated last record
/// of the last segment (it was never answered); and the delivered segments set aside (no tailer
/// runs yet to hold them).
pub(super) fn recover(dir: &Path) -> io::Result<Found> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && (name.ends_with(".tmp") || name.ends_with(".delivered")) {
            fs::remove_file(entry.path())?;
        }
    }
    let segments = list(dir)?;
    if let Some((_, last)) = segments.last() {
        cut_partial_record(last)?;
    }
    let mut bytes = 0;
    for (_, path) in &segments {
        bytes += fs::metadata(path)?.len();
    }
    let next_seq = segments.last().map_or(1, |(seq, _)| seq + 1);
    Ok(Found { next_seq, bytes })
}

/// Cuts `path` after its last newline.
fn cut_partial_record(path: &Path) -> io::Result<()> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let size = file.metadata()?.len();
    let mut end = size;
    let mut block = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let chunk = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(at) = memchr::memrchr(b'\n', chunk) {
            let keep = start + at as u64 + 1;
            if keep < size {
                tracing::warn!(
                    segment = %path.display(),
                    lost_bytes = size - keep,
                    "journal segment ends in a partial record (a crash mid-write); it was never acknowledged and is cut"
                );
                file.set_len(keep)?;
                file.sync_all()?;
            }
            return Ok(());
        }
        end = start;
    }
    if size > 0 {
        file.set_len(0)?;
        file.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_of_table() {
        let cases: &[(&str, Option<u64>)] = &[
            ("00000000000000000001.ndjson", Some(1)),
            ("00000000000000000042.ndjson", Some(42)),
            ("1.ndjson", None),
            ("0000000000000000000x.ndjson", None),
            ("00000000000000000001.ndjson.tmp", None),
            (".00000000000000000001.tmp", None),
        ];
        for (name, seq) in cases {
            assert_eq!(seq_of(name), *seq, "{name}");
        }
    }

    #[test]
    fn headers_are_short_and_unique() {
        let a = header(u64::MAX);
        let b = header(u64::MAX);
        assert!(a.len() as u64 <= HEADER_MAX_BYTES, "{}", a.len());
        assert_ne!(a, b);
        assert!(serde_json::from_slice::<serde_json::Value>(&a).is_ok());
    }

    #[test]
    fn recover_cuts_the_partial_record_of_the_last_segment_only() {
        let dir = tempfile::tempdir().unwrap();
        let (mut first, _) = create(dir.path(), 1).unwrap();
        first.write_all(b"{\"a\":1}\n{\"half").unwrap();
        let (mut second, _) = create(dir.path(), 2).unwrap();
        second.write_all(b"{\"b\":2}\n{\"c\":").unwrap();
        fs::write(dir.path().join(".00000000000000000003.tmp"), b"{").unwrap();
        fs::write(set_aside_path(dir.path(), 0), b"{}\n").unwrap();
        let found = recover(dir.path()).unwrap();
        assert_eq!(found.next_seq, 3);
        let second = fs::read(path_of(dir.path(), 2)).unwrap();
        assert!(second.ends_with(b"{\"b\":2}\n"));
        // Only the last segment can end mid-record: the writer never goes back to another.
        let first = fs::read(path_of(dir.path(), 1)).unwrap();
        assert!(first.ends_with(b"{\"half"));
        assert_eq!(found.bytes, (first.len() + second.len()) as u64);
        assert_eq!(list(dir.path()).unwrap().len(), 2);
        assert!(!dir.path().join(".00000000000000000003.tmp").exists());
        assert!(list_set_aside(dir.path()).unwrap().is_empty());
    }
}
