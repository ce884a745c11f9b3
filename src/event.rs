//! The units that flow from the tailer through the pipeline to the sinks.
//!
//! A [`Chunk`] is what one read of one file produced: the lines framed from it, the metadata they
//! share (file, source, read time) and the checkpoint offset that becomes safe once every line of
//! the chunk is delivered. Lines borrow from the read buffer (`Bytes`), so there is no allocation
//! per line on the raw path, and a chunk is shared (`Arc`) by every sink it is routed to.

use std::sync::Arc;

use bytes::Bytes;

/// Identifies one generation of one tracked file: a file truncated and rewritten gets a new key.
/// It is the unit of acknowledgement and the stem of every event `id`.
pub type FileKey = u64;

/// Fields parsed out of a structured line (`format: json`): the object's own keys, in order.
pub type Fields = serde_json::Map<String, serde_json::Value>;

/// One log line, or one line's worth of event.
#[derive(Debug, Clone)]
pub struct Event {
    /// The line without its newline (and without a `\r` before it), possibly cut at
    /// `max_line_bytes`; raw bytes, not yet checked to be UTF-8 unless `flags` says so.
    pub message: Bytes,
    /// Byte offset of the line's first byte in its file.
    pub offset: u64,
    /// What happened to the line on the way in.
    pub flags: EventFlags,
    /// Parsed fields for structured formats; `None` for `raw` and for lines that failed to parse.
    pub fields: Option<Box<Fields>>,
    /// Why the line failed to parse, when it did.
    pub parse_error: Option<Box<str>>,
}

/// Flags set by framing; each is shipped as a boolean key when true and counted in metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventFlags {
    /// The line was longer than `max_line_bytes` and was cut to that size.
    pub truncated: bool,
    /// The line was not valid UTF-8; encoders replace the bad bytes with U+FFFD.
    pub invalid_utf8: bool,
}

/// What every event of a chunk shares. Built once per file (or per rename of it), not per line.
#[derive(Debug)]
pub struct FileMeta {
    /// Which generation of which file the lines came from.
    pub key: FileKey,
    /// Name of the source that read the file.
    pub source: Arc<str>,
    /// Absolute path of the file when it was read.
    pub path: Arc<str>,
    /// `"file":"…","source":"…","offset":` escaped once, for the JSON encoder.
    pub json_fields: Box<str>,
    /// `,"id":"<key in hex>-`, the stem of every event id of this file, for the JSON encoder.
    pub json_id_stem: Box<str>,
}

impl FileMeta {
    /// The metadata of generation `key` of the file at `path`, read by `source`.
    pub fn new(key: FileKey, source: &str, path: &str) -> Self {
        use crate::sink::encoding::json_string;
        FileMeta {
            key,
            source: source.into(),
            path: path.into(),
            json_fields: format!(
                "\"file\":{},\"source\":{},\"offset\":",
                json_string(path),
                json_string(source)
            )
            .into_boxed_str(),
            json_id_stem: format!(",\"id\":\"{key:016x}-").into_boxed_str(),
        }
    }
}

/// The lines one read of one file produced, shared by every sink the source routes to.
#[derive(Debug)]
pub struct Chunk {
    /// The file the lines come from.
    pub file: Arc<FileMeta>,
    /// RFC 3339 read time, the `timestamp` of events whose line carries none.
    pub read_time: Arc<str>,
    /// The framed (and parsed) lines, in file order.
    pub events: Vec<Event>,
    /// Offset up to which the file is consumed once every event of this chunk is delivered:
    /// the checkpoint this chunk allows. It can be past the last event (a skipped tail of an
    /// over-long line) or at it (an unterminated line still waiting for its newline).
    pub end_offset: u64,
}

impl Chunk {
    /// Bytes of message payload in events `range`, the measure batch and buffer limits use.
    pub fn message_bytes(&self, range: std::ops::Range<usize>) -> usize {
        self.events[range].iter().map(|e| e.message.len()).sum()
    }

    /// The checkpoint offset that delivering events `..upto` allows: the start of the first
    /// event not delivered, or the chunk's end offset when all are.
    pub fn ack_offset(&self, upto: usize) -> u64 {
        match self.events.get(upto) {
            Some(next) => next.offset,
            None => self.end_offset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(offset: u64, message: &'static str) -> Event {
        Event {
            message: Bytes::from_static(message.as_bytes()),
            offset,
            flags: EventFlags::default(),
            fields: None,
            parse_error: None,
        }
    }

    #[test]
    fn ack_offset_is_start_of_first_undelivered_event() {
        let chunk = Chunk {
            file: Arc::new(FileMeta::new(1, "s", "/p")),
            read_time: "t".into(),
            events: vec![event(10, "a"), event(12, "bb"), event(15, "c")],
            end_offset: 17,
        };
        let cases = [(0, 10), (1, 12), (2, 15), (3, 17)];
        for (upto, want) in cases {
            assert_eq!(chunk.ack_offset(upto), want, "upto {upto}");
        }
        assert_eq!(chunk.message_bytes(0..3), 4);
        assert_eq!(chunk.message_bytes(1..2), 2);
    }
}
