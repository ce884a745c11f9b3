//! File identity by content: a hash of a file's first bytes.
//!
//! Together with the device and inode it tells a file apart from every other: a renamed file
//! keeps both, a reused inode brings a different head, and a copy has another inode. A file
//! shorter than the fingerprint size is fingerprinted on what it has, and the fingerprint grows
//! with the file: a stored fingerprint of `len` bytes matches any head whose first `len` bytes
//! hash the same, so a one-line file is read at once and still recognised once it grows.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use serde::{Deserialize, Serialize};

/// Hash of the first `len` bytes of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// How many leading bytes were hashed (0 for an empty file).
    pub len: u32,
    /// xxh3-64 of those bytes.
    pub hash: u64,
}

impl Fingerprint {
    /// The fingerprint of `head`, all of which is hashed.
    pub fn of(head: &[u8]) -> Self {
        Fingerprint {
            len: u32::try_from(head.len()).unwrap_or(u32::MAX),
            hash: xxhash_rust::xxh3::xxh3_64(head),
        }
    }

    /// True when `head` starts with the bytes this fingerprint was taken of: the same file,
    /// possibly grown since. A head shorter than the fingerprint is a different (or truncated)
    /// file.
    pub fn matches(&self, head: &[u8]) -> bool {
        let len = self.len as usize;
        head.len() >= len && xxhash_rust::xxh3::xxh3_64(&head[..len]) == self.hash
    }
}

/// Reads up to `max` bytes from the start of `file`, without moving its read position.
pub fn read_head(file: &File, max: usize) -> io::Result<Vec<u8>> {
    let mut head = vec![0; max];
    let mut filled = 0;
    while filled < max {
        match file.read_at(&mut head[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(filled);
    if head.capacity() > 2 * filled {
        // A head shorter than asked for is often kept (a tracked file's): without this, each of
        // 100,000 one-line files would hold `fingerprint_bytes` of memory for a few bytes.
        head.shrink_to_fit();
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn matches_table() {
        // (fingerprinted head, later head, same file?)
        let cases: &[(&[u8], &[u8], bool)] = &[
            (b"line one\n", b"line one\n", true),
            (b"line one\n", b"line one\nline two\n", true),
            (b"", b"anything", true),
            (b"", b"", true),
            (b"line one\n", b"line on", false),
            (b"line one\n", b"", false),
            (b"line one\n", b"line ONE\n", false),
            (b"header\nA", b"header\nB", false),
        ];
        for (first, later, same) in cases {
            assert_eq!(
                Fingerprint::of(first).matches(later),
                *same,
                "{:?} vs {:?}",
                String::from_utf8_lossy(first),
                String::from_utf8_lossy(later)
            );
        }
    }

    #[test]
    fn reads_at_most_max_bytes_of_the_head() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"0123456789").unwrap();
        assert_eq!(read_head(&file, 4).unwrap(), b"0123");
        assert_eq!(read_head(&file, 100).unwrap(), b"0123456789");
        let empty = tempfile::tempfile().unwrap();
        assert!(read_head(&empty, 16).unwrap().is_empty());
    }
}
