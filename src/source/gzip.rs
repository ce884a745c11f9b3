//! Reading files that may be gzip-compressed, for `replay` and for the tailer.
//!
//! A file is taken for gzip by its magic bytes, not its name. Every member of a multi-member
//! file is read (`cat a.gz b.gz` and logrotate appends make those). Offsets of lines and
//! checkpoints are positions in the uncompressed stream; the compressed position is kept too, to
//! say where damage is and how far a replay has got.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::bufread::MultiGzDecoder;

/// The first two bytes of every gzip member.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// True when `head` starts like a gzip file.
pub fn is_gzip(head: &[u8]) -> bool {
    head.starts_with(&GZIP_MAGIC)
}

/// Counts the bytes read through it into a shared counter (read by progress reports and for
/// error offsets while the reader itself is owned by a decoder).
#[derive(Debug)]
pub struct Counted<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A file's content, decompressed if it is gzip.
#[derive(Debug)]
pub enum Decoded {
    /// Read as it is.
    Plain(Counted<File>),
    /// Decompressed on the way.
    Gzip(Box<MultiGzDecoder<BufReader<Counted<File>>>>),
}

/// Size of the compressed-input buffer.
const INPUT_BUFFER: usize = 64 * 1024;

impl Decoded {
    /// Wraps `file`, read from its current position, according to its first bytes `head`;
    /// `consumed` counts the file bytes read (compressed bytes for gzip).
    pub fn new(file: File, head: &[u8], consumed: Arc<AtomicU64>) -> Self {
        let counted = Counted {
            inner: file,
            count: consumed,
        };
        if is_gzip(head) {
            Decoded::Gzip(Box::new(MultiGzDecoder::new(BufReader::with_capacity(
                INPUT_BUFFER,
                counted,
            ))))
        } else {
            Decoded::Plain(counted)
        }
    }

    /// True for a gzip file.
    pub fn is_compressed(&self) -> bool {
        matches!(self, Decoded::Gzip(_))
    }

    /// Reads and throws away `n` bytes of content (to resume inside a compressed file, whose
    /// offsets cannot be sought to); returns how many there were (fewer at the end).
    pub fn skip(&mut self, n: u64) -> io::Result<u64> {
        io::copy(&mut self.by_ref().take(n), &mut io::sink())
    }
}

impl Read for Decoded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoded::Plain(file) => file.read(buf),
            Decoded::Gzip(decoder) => decoder.read(buf),
        }
    }
}

/// The uncompressed first `max` bytes of a gzip `file` (fewer if it is shorter or damaged
/// early), for its fingerprint. The file's own position is not moved.
pub fn gzip_head(file: &File, max: usize) -> io::Result<Vec<u8>> {
    let reader = PositionalReader { file, at: 0 };
    let mut decoder = MultiGzDecoder::new(BufReader::with_capacity(8 * 1024, reader));
    let mut head = Vec::with_capacity(max);
    match decoder.by_ref().take(max as u64).read_to_end(&mut head) {
        Ok(_) => Ok(head),
        // A damaged or still-being-written file: what came out before is still its head.
        Err(_) if !head.is_empty() => Ok(head),
        Err(e) => Err(e),
    }
}

/// Reads a file from an offset of its own with `pread`, leaving the descriptor's position alone.
struct PositionalReader<'a> {
    file: &'a File,
    at: u64,
}

impl Read for PositionalReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::{Seek, SeekFrom, Write};

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn file_with(bytes: &[u8]) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        file
    }

    fn read_all(bytes: &[u8]) -> (io::Result<Vec<u8>>, u64) {
        let consumed = Arc::new(AtomicU64::new(0));
        let mut decoded = Decoded::new(file_with(bytes), bytes, Arc::clone(&consumed));
        let mut out = Vec::new();
        let result = decoded.read_to_end(&mut out).map(|_| out);
        (result, consumed.load(Ordering::Relaxed))
    }

    #[test]
    fn plain_gzip_and_multi_member_files_table() {
        let two_members = [gzip(b"one\n"), gzip(b"two\n")].concat();
        let cases: &[(&str, Vec<u8>, &[u8])] = &[
            ("plain", b"a\nb\n".to_vec(), b"a\nb\n"),
            ("empty", Vec::new(), b""),
            ("gzip", gzip(b"x\ny\n"), b"x\ny\n"),
            ("empty gzip", gzip(b""), b""),
            ("two members", two_members, b"one\ntwo\n"),
        ];
        for (name, bytes, want) in cases {
            let (got, consumed) = read_all(bytes);
            assert_eq!(got.unwrap(), *want, "{name}");
            assert_eq!(consumed, bytes.len() as u64, "{name}: every byte consumed");
        }
    }

    #[test]
    fn damaged_gzip_gives_what_came_before_then_an_error() {
        let content: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let whole = gzip(&content);
        let cut = &whole[..whole.len() / 2];
        let consumed = Arc::new(AtomicU64::new(0));
        let mut decoded = Decoded::new(file_with(cut), cut, consumed);
        let mut out = Vec::new();
        let mut buf = [0; 4096];
        let error = loop {
            match decoded.read(&mut buf) {
                Ok(0) => panic!("a cut gzip file must not end cleanly"),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => break e,
            }
        };
        assert!(!out.is_empty(), "lines before the damage come out");
        assert!(content.starts_with(&out), "and they are the file's");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");

        let mut garbage = gzip(b"good\n");
        garbage.extend_from_slice(&[0x1f, 0x8b, 0xff, 0xff, 0xff, 0xff]);
        let (result, _) = read_all(&garbage);
        assert!(result.is_err(), "garbage after a member is an error");
    }

    #[test]
    fn head_and_skip_work_on_uncompressed_offsets() {
        let content = b"0123456789abcdef\n".repeat(100);
        let bytes = gzip(&content);
        let file = file_with(&bytes);
        assert_eq!(gzip_head(&file, 20).unwrap(), &content[..20]);
        assert_eq!(gzip_head(&file, 1 << 20).unwrap(), content);
        let mut decoded = Decoded::new(file, &bytes, Arc::new(AtomicU64::new(0)));
        assert!(decoded.is_compressed());
        assert_eq!(decoded.skip(17 * 10).unwrap(), 170);
        let mut rest = Vec::new();
        decoded.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, &content[170..]);
        assert!(!is_gzip(b"\x1f"), "one byte is not enough");
    }
}
