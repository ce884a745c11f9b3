//! `type: file`: append events to a file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::encoding::{Encoding, encode_batch};
use super::{BoxFuture, Healthcheck, Sink, SinkError};
use crate::event::Batch;

/// Settings of a `type: file` sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file to append to; created if missing (its directory is not).
    pub path: PathBuf,
    /// How events are written.
    #[serde(default)]
    pub encoding: Encoding,
    /// fsync after every batch, so that acked lines survive a power loss too (slower).
    #[serde(default)]
    pub fsync: bool,
}

/// Appends batches to a file; a failed write is rolled back so a retry does not duplicate it.
pub struct FileSink {
    name: String,
    config: FileSinkConfig,
    /// The open file and the reusable encode buffer; both travel to the blocking thread.
    state: Option<(Option<File>, Vec<u8>)>,
}

impl FileSink {
    /// A sink that opens `config.path` at its first delivery.
    pub fn new(name: &str, config: FileSinkConfig) -> Self {
        FileSink {
            name: name.to_owned(),
            config,
            state: Some((None, Vec::new())),
        }
    }
}

/// Opens `path` for appending. A file that does not end with a newline (a write cut short by a
/// crash) gets one first, so the torn fragment stays a line of its own instead of gluing itself
/// to the next event.
fn open_append(path: &PathBuf) -> io::Result<File> {
    use std::os::unix::fs::FileExt;
    // Only a regular file can be read back; a FIFO or device is appended to as it is.
    let regular = std::fs::metadata(path).is_ok_and(|md| md.is_file());
    let mut file = OpenOptions::new()
        .create(true)
        .read(regular)
        .append(true)
        .open(path)?;
    let len = if regular { file.metadata()?.len() } else { 0 };
    if len > 0 {
        let mut last = [0u8; 1];
        file.read_exact_at(&mut last, len - 1)?;
        if last[0] != b'\n' {
            file.write_all(b"\n")?;
        }
    }
    Ok(file)
}

/// True when `path` still names the open `file`: an output removed or rotated away by someone
/// else is reopened rather than written into the void.
fn still_at(file: &File, path: &PathBuf) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

/// Appends `bytes` whole or not at all (as far as the filesystem lets us undo a partial write).
fn append(file: &File, bytes: &[u8], fsync: bool) -> io::Result<()> {
    let before = file.metadata()?.len();
    let mut writer = file;
    let result = writer
        .write_all(bytes)
        .and_then(|()| if fsync { file.sync_data() } else { Ok(()) });
    if result.is_err() {
        let _ = file.set_len(before);
    }
    result
}

/// Why the file at `path` cannot be created: its directory is missing (or not a directory).
/// The sink creates the file, never its directory.
pub fn missing_directory(path: &std::path::Path) -> Option<String> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(md) if md.is_dir() => None,
        Ok(_) => Some(format!("{} is not a directory", dir.display())),
        Err(e) => Some(format!("directory {}: {e}", dir.display())),
    }
}

impl Sink for FileSink {
    fn healthcheck(&mut self) -> BoxFuture<'_, Result<Healthcheck, SinkError>> {
        Box::pin(async move {
            match missing_directory(&self.config.path) {
                None => Ok(Healthcheck::Passed),
                Some(reason) => Err(SinkError::Retriable(format!(
                    "file sink `{}`: {reason} (the sink creates its file, not its directory)",
                    self.name
                ))),
            }
        })
    }

    fn deliver<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<u64, SinkError>> {
        Box::pin(async move {
            let (file, mut buf) = self.state.take().unwrap_or_default();
            buf.clear();
            encode_batch(self.config.encoding, batch, &mut buf);
            let path = self.config.path.clone();
            let fsync = self.config.fsync;
            let joined = tokio::task::spawn_blocking(move || {
                let result = match file {
                    Some(file) if still_at(&file, &path) => Ok(file),
                    _ => open_append(&path),
                }
                .and_then(|file| append(&file, &buf, fsync).map(|()| file));
                (result, buf)
            })
            .await;
            let (result, buf) = match joined {
                Ok(pair) => pair,
                Err(e) => {
                    self.state = Some((None, Vec::new()));
                    return Err(SinkError::Retriable(format!(
                        "file sink `{}`: {e}",
                        self.name
                    )));
                }
            };
            let written = buf.len() as u64;
            match result {
                Ok(file) => {
                    self.state = Some((Some(file), buf));
                    Ok(written)
                }
                Err(e) => {
                    // Reopen next time: the file may have been removed or its disk remounted.
                    self.state = Some((None, buf));
                    Err(SinkError::Retriable(format!(
                        "file sink `{}`: {}: {e}",
                        self.name,
                        self.config.path.display()
                    )))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_or_replaced_output_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        let file = open_append(&path).unwrap();
        assert!(still_at(&file, &path));
        std::fs::rename(&path, dir.path().join("out.1")).unwrap();
        assert!(!still_at(&file, &path));
        std::fs::write(&path, b"").unwrap();
        assert!(!still_at(&file, &path));
    }

    #[test]
    fn a_torn_last_line_is_closed_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b"x\n"),
            (b"a\n", b"a\nx\n"),
            (b"a\n{\"torn", b"a\n{\"torn\nx\n"),
        ];
        for (i, (before, after)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("{i}.ndjson"));
            std::fs::write(&path, before).unwrap();
            let mut file = open_append(&path).unwrap();
            file.write_all(b"x\n").unwrap();
            assert_eq!(&std::fs::read(&path).unwrap(), after, "case {i}");
        }
    }
}
