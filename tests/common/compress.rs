//! Compressing test content with every codec the agent reads, as the real tools write it:
//! the output file created empty, then filled in pieces.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The codecs the agent reads, by the file extension their tools give.
pub const CODECS: [&str; 4] = ["gz", "zst", "bz2", "xz"];

/// `data` compressed as the tool of extension `ext` does.
pub fn compress(ext: &str, data: &[u8]) -> Vec<u8> {
    match ext {
        "gz" => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(data).unwrap();
            encoder.finish().unwrap()
        }
        "zst" => zstd::encode_all(data, 1).unwrap(),
        "bz2" => {
            let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            encoder.write_all(data).unwrap();
            encoder.finish().unwrap()
        }
        "xz" => {
            let mut encoder = liblzma::write::XzEncoder::new(Vec::new(), 1);
            encoder.write_all(data).unwrap();
            encoder.finish().unwrap()
        }
        other => panic!("no codec for .{other}"),
    }
}

/// Compresses `path` into `<path>.<ext>` as logrotate's `compress` does: the output created
/// empty, filled in `pieces` writes `pause` apart, then the plain file removed. Returns the
/// compressed file's path.
pub fn compress_in_pieces(path: &Path, ext: &str, pieces: usize, pause: Duration) -> PathBuf {
    let compressed = PathBuf::from(format!("{}.{ext}", path.display()));
    compress_in_pieces_to(path, &compressed, ext, pieces, pause);
    compressed
}

/// Compresses `path` into `compressed` as [`compress_in_pieces`] does.
pub fn compress_in_pieces_to(
    path: &Path,
    compressed: &Path,
    ext: &str,
    pieces: usize,
    pause: Duration,
) {
    let bytes = compress(ext, &fs::read(path).unwrap());
    let mut out: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(compressed)
        .unwrap();
    std::thread::sleep(pause);
    let piece = bytes.len().div_ceil(pieces.max(1)).max(1);
    for chunk in bytes.chunks(piece) {
        out.write_all(chunk).unwrap();
        std::thread::sleep(pause);
    }
    out.sync_all().unwrap();
    fs::remove_file(path).unwrap();
}
