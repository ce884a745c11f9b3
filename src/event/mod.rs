//! The units that flow from the tailer through the pipeline to the sinks.
//!
//! A [`Chunk`] is what one read of one file produced: the bytes read (`data`), the lines framed
//! from them, the metadata they share (file, source, read time) and the checkpoint offset that
//! becomes safe once every line of the chunk is delivered. An event locates its message in the
//! chunk's `data` by position, so there is no allocation and no reference count per line, and a
//! chunk is shared (`Arc`) by every sink it is routed to.

pub mod batch;
pub mod enrichment;
pub mod fields;
pub mod json;
pub mod kubelet;

use std::sync::Arc;

use bytes::Bytes;

pub use self::batch::{Batch, BatchPart};
use self::enrichment::Enrichment;
pub use self::fields::{Field, FieldName, FieldRange, FieldRef, FieldValue, FieldsView, Span};

/// Identifies one generation of one tracked file: a file truncated and rewritten gets a new key.
/// It is the unit of acknowledgement and the stem of every event `id`.
pub type FileKey = u64;

/// Static fields of a source's configuration, in the order given.
pub type StaticFields = serde_json::Map<String, serde_json::Value>;

/// One log line, or one line's worth of event.
#[derive(Debug, Clone, Default)]
pub struct Event {
    /// Where the message is in its chunk's `data` ([`Chunk::message`]): the line without its
    /// newline (and without a `\r` before it), possibly cut at `max_line_bytes`.
    pub start: u32,
    /// Length of the message.
    pub len: u32,
    /// Byte offset of the line's first byte in its file.
    pub offset: u64,
    /// What happened to the line on the way in.
    pub flags: EventFlags,
    /// The container stream the line was written to (`cri`, `docker`), shipped as `stream`.
    pub stream: Option<Stream>,
    /// The event's time taken from the line, in Unix nanoseconds (UTC), shipped as `timestamp`;
    /// `None`: the read time (or a parsed object's own `timestamp`).
    pub time: Option<i64>,
    /// Where the parsed fields are among the chunk's ([`Chunk::fields`]), for structured
    /// formats; `None` for `raw`, `cri`, `docker` and for lines that failed to parse, whose
    /// message is shipped instead.
    pub fields: Option<FieldRange>,
    /// Why the line failed to parse, when it did.
    pub parse_error: Option<Box<str>>,
}

impl Event {
    /// An event whose message is `data[start..start + len]` of its chunk, starting at file
    /// offset `offset`.
    pub fn new(start: u32, len: u32, offset: u64) -> Self {
        Event {
            start,
            len,
            offset,
            ..Event::default()
        }
    }
}

/// Flags set by framing and parsing; each is shipped as a boolean key when true and counted in metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventFlags {
    /// The line was longer than `max_line_bytes` and was cut to that size.
    pub truncated: bool,
    /// The line was not valid UTF-8; encoders replace the bad bytes with U+FFFD.
    pub invalid_utf8: bool,
    /// A multiline group cut by `max_lines` or `max_bytes`: the event is one part of it.
    pub multiline_cut: bool,
    /// The configured `timestamp` field was missing or did not parse: the read time is used.
    pub timestamp_failed: bool,
    /// A transform rewrote the event: its message is the whole JSON object to ship, and its
    /// fields are that object's members (encoders add nothing of their own).
    pub rendered: bool,
}

/// The output stream of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout = 0,
    /// Standard error.
    Stderr = 1,
}

impl Stream {
    /// The name, as shipped.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// The enrichment of a file whose source's enrichment is not attached yet.
static NO_ENRICHMENT: std::sync::LazyLock<Arc<Enrichment>> = std::sync::LazyLock::new(Arc::default);

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
    /// The source's static fields and pod identity, written into every event.
    pub enrichment: Arc<Enrichment>,
    /// `,"kubernetes":{…}` from the path when the file has the kubelet's layout
    /// (`.../<namespace>_<pod>_<uid>/<container>/<n>.log`), for the JSON encoder.
    pub kubernetes_json: Option<Box<str>>,
}

impl FileMeta {
    /// The metadata of generation `key` of the file at `path`, read by `source`. Given as
    /// `Arc`s, the names are shared rather than copied (a tailer of 100,000 files keeps one
    /// copy of each path and of its own name).
    pub fn new(key: FileKey, source: impl Into<Arc<str>>, path: impl Into<Arc<str>>) -> Self {
        let (source, path) = (source.into(), path.into());
        FileMeta {
            key,
            json_fields: format!(
                "\"file\":{},\"source\":{},\"offset\":",
                json::json_string(&path),
                json::json_string(&source)
            )
            .into_boxed_str(),
            json_id_stem: format!(",\"id\":\"{key:016x}-").into_boxed_str(),
            // One empty enrichment for every file until the source's is attached (a tailer
            // of 100,000 files allocated one each).
            enrichment: Arc::clone(&NO_ENRICHMENT),
            kubernetes_json: kubelet::kubernetes_json(&path),
            source,
            path,
        }
    }

    /// The same file's metadata with the given enrichment.
    pub fn with_enrichment(&self, enrichment: Arc<Enrichment>) -> Self {
        FileMeta {
            key: self.key,
            source: Arc::clone(&self.source),
            path: Arc::clone(&self.path),
            json_fields: self.json_fields.clone(),
            json_id_stem: self.json_id_stem.clone(),
            enrichment,
            kubernetes_json: self.kubernetes_json.clone(),
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
    /// The bytes the events' messages are in.
    pub data: Bytes,
    /// The framed (and parsed) lines, in file order.
    pub events: Vec<Event>,
    /// The parsed fields of every event, one event's after the other's; shared by the chunks
    /// a transform keeps some of the events of.
    pub fields: Arc<Vec<Field>>,
    /// Offset up to which the file is consumed once every event of this chunk is delivered:
    /// the checkpoint this chunk allows. It can be past the last event (a skipped tail of an
    /// over-long line) or at it (an unterminated line still waiting for its newline).
    pub end_offset: u64,
    /// Which branch of its source's transforms the chunk is on (0: as the source read it), so
    /// that a sink reached along two branches acks each apart ([`crate::checkpoint::ack_id`]).
    pub lane: u32,
}

impl Chunk {
    /// A chunk of the same file and offsets with other events, on `lane`: a transform's output.
    pub fn derived(
        &self,
        data: Bytes,
        events: Vec<Event>,
        fields: Arc<Vec<Field>>,
        lane: u32,
    ) -> Chunk {
        Chunk {
            file: Arc::clone(&self.file),
            read_time: Arc::clone(&self.read_time),
            data,
            events,
            fields,
            end_offset: self.end_offset,
            lane,
        }
    }

    /// The message of `event`, one of this chunk's events.
    pub fn message(&self, event: &Event) -> &[u8] {
        let start = event.start as usize;
        self.data
            .get(start..start + event.len as usize)
            .unwrap_or_default()
    }

    /// The text of `event` as a `text` encoding ships it: its message, or a rendered event's
    /// `message` member (its whole JSON object when it has none).
    pub fn text(&self, event: &Event) -> std::borrow::Cow<'_, [u8]> {
        if event.flags.rendered
            && let Some(message) = self.fields(event).and_then(|f| f.get("message"))
        {
            return message.text();
        }
        std::borrow::Cow::Borrowed(self.message(event))
    }

    /// The parsed fields of `event`, one of this chunk's events.
    pub fn fields(&self, event: &Event) -> Option<FieldsView<'_>> {
        event
            .fields
            .map(|range| FieldsView::new(&self.data, &self.fields, range))
    }

    /// The checkpoint offset that delivering events `..upto` allows: the start of the first
    /// event not delivered, or the chunk's end offset when all are. Never past the end offset:
    /// lines held back for a later chunk (an unfinished multiline group) may lie between
    /// this chunk's events, and the end offset stops before them.
    pub fn ack_offset(&self, upto: usize) -> u64 {
        match self.events.get(upto) {
            Some(next) => next.offset.min(self.end_offset),
            None => self.end_offset,
        }
    }
}

/// Builders for tests of the modules that take chunks.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A chunk of `file` whose events have the given messages and offsets, read at a fixed time.
    pub fn chunk(file: FileMeta, lines: &[(&[u8], u64)], end_offset: u64) -> Chunk {
        let mut data = Vec::new();
        let mut events = Vec::new();
        for (message, offset) in lines {
            events.push(Event::new(data.len() as u32, message.len() as u32, *offset));
            data.extend_from_slice(message);
            data.push(b'\n');
        }
        Chunk {
            file: Arc::new(file),
            read_time: "2026-11-25T04:00:00.000000Z".into(),
            data: Bytes::from(data),
            events,
            fields: Arc::default(),
            end_offset,
            lane: 0,
        }
    }

    /// Gives event `index` of `chunk` the fields of a JSON object (owned, after the chunk's
    /// other fields).
    pub fn set_fields(chunk: &mut Chunk, index: usize, object: &serde_json::Value) {
        let (fields, mut range) = fields::testing::owned(object);
        range.start = chunk.fields.len() as u32;
        Arc::make_mut(&mut chunk.fields).extend(fields);
        chunk.events[index].fields = Some(range);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_offset_is_start_of_first_undelivered_event_and_messages_are_slices() {
        let chunk = Chunk {
            file: Arc::new(FileMeta::new(1, "s", "/p")),
            read_time: "t".into(),
            data: Bytes::from_static(b"a\nbb\nc\n"),
            events: vec![
                Event::new(0, 1, 10),
                Event::new(2, 2, 12),
                Event::new(5, 1, 15),
            ],
            fields: Arc::default(),
            end_offset: 17,
            lane: 0,
        };
        let cases = [(0, 10), (1, 12), (2, 15), (3, 17)];
        for (upto, want) in cases {
            assert_eq!(chunk.ack_offset(upto), want, "upto {upto}");
        }
        // Lines held back for a later chunk (a partial container line of the other stream)
        // end the chunk's checkpoint before events that follow them.
        let held = Chunk {
            end_offset: 11,
            ..testing::chunk(FileMeta::new(1, "s", "/p"), &[(b"a", 10), (b"c", 15)], 11)
        };
        assert_eq!(
            [held.ack_offset(0), held.ack_offset(1), held.ack_offset(2)],
            [10, 11, 11]
        );
        let messages: Vec<&[u8]> = chunk.events.iter().map(|e| chunk.message(e)).collect();
        assert_eq!(messages, [&b"a"[..], b"bb", b"c"]);
        assert_eq!(
            chunk.message(&Event::new(7, 10, 0)),
            b"",
            "out of range is empty, not a panic"
        );
    }
}
