//! A file's head, read without moving its read position: what its fingerprint
//! ([`crate::checkpoint::Fingerprint`]) is taken of.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

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
    fn reads_at_most_max_bytes_of_the_head() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"0123456789").unwrap();
        assert_eq!(read_head(&file, 4).unwrap(), b"0123");
        assert_eq!(read_head(&file, 100).unwrap(), b"0123456789");
        let empty = tempfile::tempfile().unwrap();
        assert!(read_head(&empty, 16).unwrap().is_empty());
    }
}
