//! Reading files that may be compressed (gzip, zstd, bzip2, xz), for `replay` and the tailer.
//!
//! Invariant: compressed bytes are never taken for text. A file's format is told by its first
//! bytes (its magic), never by its name, and only once there are enough of them to tell: a file
//! that is empty, or whose first bytes are the start of a magic, is [`Sniffed::Undecided`]
//! (compressors create their output empty and fill it afterwards). Every stream of a
//! multi-stream file is read (`cat a.gz b.gz` and appended compressed rotations make those).
//! Offsets of lines and checkpoints are positions in the uncompressed content; the compressed
//! position is counted too, to say where damage is and how far a replay has got.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A compression format the agent reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// gzip (RFC 1952), what logrotate's `compress` makes by default.
    Gzip,
    /// Zstandard frames, skippable ones included.
    Zstd,
    /// bzip2.
    Bzip2,
    /// xz (LZMA2).
    Xz,
}

impl Codec {
    /// The format's usual name.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
            Codec::Bzip2 => "bzip2",
            Codec::Xz => "xz",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the first bytes of a file say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// Text (or anything that is not a known compressed format).
    Plain,
    /// Compressed with this codec.
    Compressed(Codec),
    /// Too short to tell: empty, or the start of a magic. A compressor may still be writing it.
    Undecided,
}

/// Bytes needed to tell every format apart (the longest magic).
pub const SNIFF_BYTES: usize = 10;

/// A magic: per leading byte, the range of values it may take.
type Magic = (Codec, &'static [(u8, u8)]);

const fn one(byte: u8) -> (u8, u8) {
    (byte, byte)
}

/// bzip2's stream header (`BZh` and a block size digit), then either a block's magic (the
/// digits of pi) or the end-of-stream magic (of an empty stream): ten bytes, so that a text
/// line starting with `BZh1` is not taken for bzip2.
const BZIP2_BLOCK: &[(u8, u8)] = &[
    one(b'B'),
    one(b'Z'),
    one(b'h'),
    (b'1', b'9'),
    one(0x31),
    one(0x41),
    one(0x59),
    one(0x26),
    one(0x53),
    one(0x59),
];
const BZIP2_EMPTY: &[(u8, u8)] = &[
    one(b'B'),
    one(b'Z'),
    one(b'h'),
    (b'1', b'9'),
    one(0x17),
    one(0x72),
    one(0x45),
    one(0x38),
    one(0x50),
    one(0x90),
];

const MAGICS: &[Magic] = &[
    // ID1, ID2 and the only compression method defined (deflate).
    (Codec::Gzip, &[one(0x1f), one(0x8b), one(0x08)]),
    (Codec::Zstd, &[one(0x28), one(0xb5), one(0x2f), one(0xfd)]),
    // A skippable frame (pzstd starts its output with one).
    (
        Codec::Zstd,
        &[(0x50, 0x5f), one(0x2a), one(0x4d), one(0x18)],
    ),
    (Codec::Bzip2, BZIP2_BLOCK),
    (Codec::Bzip2, BZIP2_EMPTY),
    (
        Codec::Xz,
        &[
            one(0xfd),
            one(0x37),
            one(0x7a),
            one(0x58),
            one(0x5a),
            one(0x00),
        ],
    ),
];

/// Tells a file's format from its first bytes (at least [`SNIFF_BYTES`] of them when the file
/// has that many).
pub fn sniff(head: &[u8]) -> Sniffed {
    let mut undecided = false;
    for (codec, magic) in MAGICS {
        let n = head.len().min(magic.len());
        let agrees = head[..n]
            .iter()
            .zip(magic.iter())
            .all(|(byte, (lo, hi))| (*lo..=*hi).contains(byte));
        if !agrees {
            continue;
        }
        if n == magic.len() {
            return Sniffed::Compressed(*codec);
        }
        undecided = true;
    }
    if undecided {
        Sniffed::Undecided
    } else {
        Sniffed::Plain
    }
}

/// The codec of a file whose first bytes are `head`, if it is compressed.
pub fn codec_of(head: &[u8]) -> Option<Codec> {
    match sniff(head) {
        Sniffed::Compressed(codec) => Some(codec),
        Sniffed::Plain | Sniffed::Undecided => None,
    }
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

/// A file's content, decompressed if it is compressed.
pub enum Decoded {
    /// Read as it is.
    Plain(Counted<File>),
    /// Decompressed on the way.
    Compressed(Codec, Box<dyn Read + Send>),
}

impl fmt::Debug for Decoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decoded::Plain(file) => f.debug_tuple("Plain").field(file).finish(),
            Decoded::Compressed(codec, _) => f.debug_tuple("Compressed").field(codec).finish(),
        }
    }
}

/// Size of the compressed-input buffer.
const INPUT_BUFFER: usize = 64 * 1024;

impl Decoded {
    /// Wraps `file`, read from its current position, according to its first bytes `head`;
    /// `consumed` counts the file bytes read (compressed bytes for a compressed file).
    pub fn new(file: File, head: &[u8], consumed: Arc<AtomicU64>) -> io::Result<Self> {
        Self::with_codec(file, codec_of(head), consumed)
    }

    /// Wraps `file`, read from its current position, as compressed with `codec` (or plain).
    pub fn with_codec(
        file: File,
        codec: Option<Codec>,
        consumed: Arc<AtomicU64>,
    ) -> io::Result<Self> {
        let counted = Counted {
            inner: file,
            count: consumed,
        };
        Ok(match codec {
            Some(codec) => Decoded::Compressed(
                codec,
                decoder(codec, BufReader::with_capacity(INPUT_BUFFER, counted))?,
            ),
            None => Decoded::Plain(counted),
        })
    }

    /// The codec of a compressed file.
    pub fn codec(&self) -> Option<Codec> {
        match self {
            Decoded::Plain(_) => None,
            Decoded::Compressed(codec, _) => Some(*codec),
        }
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
            Decoded::Compressed(_, decoder) => decoder.read(buf),
        }
    }
}

/// A decompressing reader of every stream in `input`.
fn decoder<R>(codec: Codec, input: R) -> io::Result<Box<dyn Read + Send>>
where
    R: BufRead + Send + 'static,
{
    Ok(match codec {
        Codec::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        // Frames are read one after the other to the end of the input (skippable ones skipped).
        Codec::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        Codec::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
        Codec::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(input)),
    })
}

/// The uncompressed first `max` bytes of a `codec` file (fewer if it is shorter or damaged
/// early), for its fingerprint. The file's own position is not moved.
pub fn decompressed_head(file: &File, codec: Codec, max: usize) -> io::Result<Vec<u8>> {
    let file = file.try_clone()?;
    let reader = BufReader::with_capacity(8 * 1024, PositionalReader { file, at: 0 });
    let mut decoder = decoder(codec, reader)?;
    let mut head = Vec::with_capacity(max.min(64 * 1024));
    match decoder.by_ref().take(max as u64).read_to_end(&mut head) {
        Ok(_) => Ok(head),
        // A damaged or still-being-written file: what came out before is still its head.
        Err(_) if !head.is_empty() => Ok(head),
        Err(e) => Err(e),
    }
}

/// Reads a file from an offset of its own with `pread`, leaving the descriptor's position alone.
struct PositionalReader {
    file: File,
    at: u64,
}

impl Read for PositionalReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    /// `data` compressed with `codec`.
    pub(crate) fn compress(codec: Codec, data: &[u8]) -> Vec<u8> {
        match codec {
            Codec::Gzip => {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder.write_all(data).unwrap();
                encoder.finish().unwrap()
            }
            Codec::Zstd => zstd::encode_all(data, 1).unwrap(),
            Codec::Bzip2 => {
                let mut encoder =
                    bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
                encoder.write_all(data).unwrap();
                encoder.finish().unwrap()
            }
            Codec::Xz => {
                let mut encoder = liblzma::write::XzEncoder::new(Vec::new(), 1);
                encoder.write_all(data).unwrap();
                encoder.finish().unwrap()
            }
        }
    }

    const CODECS: [Codec; 4] = [Codec::Gzip, Codec::Zstd, Codec::Bzip2, Codec::Xz];

    fn file_with(bytes: &[u8]) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        file
    }

    fn read_all(bytes: &[u8]) -> (io::Result<Vec<u8>>, u64) {
        let consumed = Arc::new(AtomicU64::new(0));
        let mut decoded = Decoded::new(file_with(bytes), bytes, Arc::clone(&consumed)).unwrap();
        let mut out = Vec::new();
        let result = decoded.read_to_end(&mut out).map(|_| out);
        (result, consumed.load(Ordering::Relaxed))
    }

    #[test]
    fn sniff_table() {
        use Sniffed::{Compressed, Plain, Undecided};
        let cases: &[(&[u8], Sniffed)] = &[
            (b"", Undecided),
            (b"\x1f", Undecided),
            (b"\x1f\x8b", Undecided),
            (b"\x1f\x8b\x08", Compressed(Codec::Gzip)),
            (b"\x1f\x8b\x09", Plain),
            (b"\x28\xb5\x2f", Undecided),
            (b"\x28\xb5\x2f\xfd\x04", Compressed(Codec::Zstd)),
            (b"\x5a\x2a\x4d\x18", Compressed(Codec::Zstd)),
            (b"BZh9", Undecided),
            (b"BZh91AY&SY", Compressed(Codec::Bzip2)),
            (b"BZh9\x17\x72\x45\x38\x50\x90", Compressed(Codec::Bzip2)),
            (b"BZh1 is a fine line\n", Plain),
            (b"\xfd7zXZ\x00", Compressed(Codec::Xz)),
            (b"\xfd7zX", Undecided),
            (b"1", Plain),
            (b"[", Undecided),
            (b"[2026-12-06] a line\n", Plain),
            (b"127.0.0.1 - - [06/Dec/2026", Plain),
            (b"{\"level\":\"info\"}\n", Plain),
            (b"B", Undecided),
            (b"Bob says hi\n", Plain),
        ];
        for (head, want) in cases {
            assert_eq!(sniff(head), *want, "{:?}", String::from_utf8_lossy(head));
        }
        for codec in CODECS {
            let bytes = compress(codec, b"a line\n");
            assert_eq!(sniff(&bytes), Sniffed::Compressed(codec), "{codec}");
            assert_eq!(sniff(&compress(codec, b"")), Sniffed::Compressed(codec));
            for cut in 0..bytes.len().min(SNIFF_BYTES) {
                assert_ne!(sniff(&bytes[..cut]), Sniffed::Plain, "{codec} cut at {cut}");
            }
        }
    }

    #[test]
    fn plain_compressed_and_multi_stream_files_table() {
        let mut cases: Vec<(String, Vec<u8>, Vec<u8>)> = vec![
            ("plain".into(), b"a\nb\n".to_vec(), b"a\nb\n".to_vec()),
            ("empty".into(), Vec::new(), Vec::new()),
        ];
        for codec in CODECS {
            cases.push((
                format!("{codec}"),
                compress(codec, b"x\ny\n"),
                b"x\ny\n".to_vec(),
            ));
            cases.push((format!("empty {codec}"), compress(codec, b""), Vec::new()));
            let two = [compress(codec, b"one\n"), compress(codec, b"two\n")].concat();
            cases.push((format!("two {codec} streams"), two, b"one\ntwo\n".to_vec()));
        }
        for (name, bytes, want) in cases {
            let (got, consumed) = read_all(&bytes);
            assert_eq!(got.unwrap(), want, "{name}");
            assert_eq!(consumed, bytes.len() as u64, "{name}: every byte consumed");
        }
    }

    #[test]
    fn damaged_files_give_what_came_before_then_an_error() {
        let content: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {} {}\n", i, i.wrapping_mul(2_654_435_761)).into_bytes())
            .collect();
        for codec in CODECS {
            let whole = compress(codec, &content);
            let cut = &whole[..whole.len() / 2];
            let consumed = Arc::new(AtomicU64::new(0));
            let mut decoded = Decoded::new(file_with(cut), cut, consumed).unwrap();
            let mut out = Vec::new();
            let mut buf = [0; 4096];
            let error = loop {
                match decoded.read(&mut buf) {
                    Ok(0) => panic!("{codec}: a cut file must not end cleanly"),
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                    Err(e) => break e,
                }
            };
            assert!(
                !out.is_empty(),
                "{codec}: what came before the damage comes out"
            );
            assert!(content.starts_with(&out), "{codec}: and it is the file's");
            drop(error);
        }
        let mut garbage = compress(Codec::Gzip, b"good\n");
        garbage.extend_from_slice(&[0x1f, 0x8b, 0xff, 0xff, 0xff, 0xff]);
        let (result, _) = read_all(&garbage);
        assert!(result.is_err(), "garbage after a member is an error");
    }

    #[test]
    fn head_and_skip_work_on_uncompressed_offsets() {
        let content = b"0123456789abcdef\n".repeat(100);
        for codec in CODECS {
            let bytes = compress(codec, &content);
            let file = file_with(&bytes);
            assert_eq!(decompressed_head(&file, codec, 20).unwrap(), &content[..20]);
            assert_eq!(decompressed_head(&file, codec, 1 << 20).unwrap(), content);
            let mut decoded = Decoded::new(file, &bytes, Arc::new(AtomicU64::new(0))).unwrap();
            assert_eq!(decoded.codec(), Some(codec));
            assert_eq!(decoded.skip(17 * 10).unwrap(), 170, "{codec}");
            let mut rest = Vec::new();
            decoded.read_to_end(&mut rest).unwrap();
            assert_eq!(rest, &content[170..], "{codec}");
        }
    }
}
