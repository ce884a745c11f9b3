//! Self-contained pieces of the model test (`tests/model.rs`): the capture of a FIFO that stood
//! in for the sink's output, the parsing of what the sink delivered, and the compressors.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

/// What a FIFO that stood in for the sink's output received once it was opened.
pub struct Capture {
    /// Length of the sink's real output when the FIFO was opened: the FIFO's batch came after
    /// everything before it and before everything after it.
    pub at: u64,
    fifo: PathBuf,
    pub bytes: Arc<Mutex<Vec<u8>>>,
    /// Set once the reader has the FIFO open.
    opened: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl Capture {
    /// Reads `fifo` in a thread until every writer has closed it.
    pub fn start(fifo: PathBuf, at: u64) -> Capture {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let opened = Arc::new(AtomicBool::new(false));
        let reader = {
            let (fifo, bytes, opened) = (fifo.clone(), Arc::clone(&bytes), Arc::clone(&opened));
            std::thread::spawn(move || {
                // Blocks until a writer opens it (the sink, blocked in its own open, or
                // `finish`).
                let mut file = File::open(&fifo).unwrap();
                opened.store(true, Ordering::Release);
                let mut buf = [0u8; 65536];
                loop {
                    let n = file.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    bytes.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            })
        };
        Capture {
            at,
            fifo,
            bytes,
            opened,
            reader: Some(reader),
        }
    }

    /// Waits for the reader to see the end, once no agent can write to the FIFO any more.
    pub fn finish(&mut self) {
        if let Some(reader) = self.reader.take() {
            // Opening it read-write never blocks and counts as a writer: held until the reader
            // is past its own open, then closed, it leaves the reader at the end once the
            // agent's descriptor is gone too.
            let writer = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.fifo)
                .unwrap();
            while !self.opened.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(writer);
            reader.join().unwrap();
        }
    }
}

/// Everything the sink delivered, in delivery order.
pub struct Delivered {
    pub events: Vec<Value>,
    /// Lines that are not JSON: cut short by a kill.
    pub torn: usize,
}

/// Parses NDJSON `bytes` into `into`; returns the number of unreadable lines. A last line
/// without its newline is being written (or was cut by a kill): left out.
pub fn parse_lines(bytes: &[u8], into: &mut Vec<Value>) -> usize {
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut torn = 0;
    for line in bytes[..complete].split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice(line) {
            Ok(event) => into.push(event),
            Err(_) => torn += 1,
        }
    }
    torn
}

/// The stream tag and line number of a numbered message.
pub fn tag_and_seq(event: &Value) -> Option<(&str, u64)> {
    let message = event["message"].as_str()?;
    let mut words = message.split(' ');
    let tag = words.next()?;
    let seq = words.next()?.parse().ok()?;
    Some((tag, seq))
}

/// The file generation key and offset of an event, from its `id` (`<key hex>-<offset>`).
pub fn key_and_offset(event: &Value) -> Option<(u64, u64)> {
    let id = event["id"].as_str()?;
    let (key, _) = id.split_once('-')?;
    Some((
        u64::from_str_radix(key, 16).ok()?,
        event["offset"].as_u64()?,
    ))
}

/// Everything delivered, in delivery order: the sink's real output `bytes`, with the batch each
/// FIFO captured placed where the output stood when that FIFO was opened.
pub fn merge(bytes: &[u8], captures: &[Capture]) -> Delivered {
    let mut captures: Vec<&Capture> = captures.iter().collect();
    captures.sort_by_key(|c| c.at);
    let mut events = Vec::new();
    let mut torn = 0;
    let mut from = 0usize;
    for capture in captures {
        // Measured while the sink may have been writing a batch to the real file: the
        // FIFO's batch came after the line being written then.
        let mut at = (capture.at as usize).min(bytes.len());
        if at > 0 && bytes[at - 1] != b'\n' {
            at = bytes[at..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |i| at + i + 1);
        }
        torn += parse_lines(&bytes[from..at], &mut events);
        from = at;
        torn += parse_lines(&capture.bytes.lock().unwrap(), &mut events);
    }
    torn += parse_lines(&bytes[from..], &mut events);
    Delivered { events, torn }
}

/// A compressor of the model's `CompressInPieces`, as logrotate runs them.
#[derive(Debug, Clone, Copy)]
pub enum Codec {
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

impl Codec {
    pub fn ext(self) -> &'static str {
        match self {
            Codec::Gzip => "gz",
            Codec::Zstd => "zst",
            Codec::Bzip2 => "bz2",
            Codec::Xz => "xz",
        }
    }

    pub fn compress(self, data: &[u8]) -> Vec<u8> {
        match self {
            Codec::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Codec::Zstd => zstd::encode_all(data, 3).unwrap(),
            Codec::Bzip2 => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Codec::Xz => {
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
        }
    }
}
