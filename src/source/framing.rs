//! Line framing: bytes read from a file in, complete lines out, with bounded memory.
//!
//! The framer owns the bytes of a file that are read but not yet framed: at most one partial
//! line, never more than `max_line_bytes` of it. A line longer than that is cut to
//! `max_line_bytes` and flagged, and the rest of it is skipped up to its newline without being
//! kept. Lines end at `\n`; a `\r` right before it is dropped too. Events locate their lines in
//! the bytes of the read they came from ([`Framed::data`]), so framing allocates per read, never
//! per line.
//!
//! Offsets: every event carries the file offset of its first byte, and [`Framer::commit_offset`]
//! is the offset a checkpoint may advance to once every framed line is delivered. It stops at the
//! start of an unterminated line (so a restart reads it again whole) and at the start of an
//! over-long line until its end is found.

use std::io::{self, Read};

use bytes::{Buf, Bytes, BytesMut};

use super::marks::Marks;
use crate::checkpoint::{MARK_BYTES, StreamMark};
use crate::event::{Event, EventFlags};

/// Counts of what framing flagged, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FrameStats {
    /// Lines cut at `max_line_bytes`.
    pub truncated: u64,
    /// Lines that were not valid UTF-8.
    pub invalid_utf8: u64,
}

/// Incremental line framer for one file.
#[derive(Debug)]
pub struct Framer {
    /// Read but unframed bytes: the start of a partial line, at file offset `buf_offset`.
    buf: BytesMut,
    buf_offset: u64,
    /// Start of an over-long line whose truncated head was emitted and whose tail is being
    /// skipped; the checkpoint may not pass it until the tail's newline is found.
    /// [`NOT_SKIPPING`] when none is (not an `Option`: 8 bytes less for each of 100,000 files).
    skipping_from: u64,
    max_line_bytes: usize,
    /// The last bytes read (at most [`TAIL_BYTES`]), ending at `read_offset()`: what a copy of
    /// the file must hold at the same place to be taken for one.
    tail: Vec<u8>,
    /// What the last reads ended with, to recognise a copy shorter than what was read.
    marks: Marks,
}

/// Where a framer stood before a read, so that the read can be taken back
/// ([`Framer::unread`]).
#[derive(Debug, Clone, Copy)]
pub struct ReadMark {
    offset: u64,
    tail: [u8; TAIL_BYTES],
    tail_len: usize,
}

impl ReadMark {
    /// The file offset the read started at.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

/// Framed bytes shorter than this are copied out of the read buffer (see `frame_lines`).
const COPY_BELOW: usize = 128 * 1024;

/// No over-long line is being skipped: no file reaches this offset.
const NOT_SKIPPING: u64 = u64::MAX;

/// How many of the last bytes read a framer remembers.
pub const TAIL_BYTES: usize = MARK_BYTES;

impl Framer {
    /// A framer whose next byte is at file offset `start_offset`.
    pub fn new(start_offset: u64, max_line_bytes: usize) -> Self {
        Framer {
            buf: BytesMut::new(),
            buf_offset: start_offset,
            skipping_from: NOT_SKIPPING,
            max_line_bytes: max_line_bytes.max(1),
            tail: Vec::new(),
            marks: Marks::default(),
        }
    }

    /// The last bytes read, ending at [`Framer::read_offset`].
    pub fn tail(&self) -> &[u8] {
        &self.tail
    }

    /// Sets the bytes that end at the start offset, for a framer that resumes mid-file, and the
    /// marks its stream's earlier reads left (from a checkpoint record).
    pub fn set_tail(&mut self, tail: &[u8], earlier: &[StreamMark]) {
        self.tail.clear();
        remember_into(&mut self.tail, tail);
        self.marks = Marks::from_saved(earlier);
        self.marks.note(self.read_offset(), &self.tail);
    }

    /// The marks of the last reads (see [`Marks`]).
    pub fn marks(&self) -> &Marks {
        &self.marks
    }

    /// File offset of the next byte to read.
    pub fn read_offset(&self) -> u64 {
        self.buf_offset + self.buf.len() as u64
    }

    /// Offset a checkpoint may advance to once every line framed so far is delivered.
    pub fn commit_offset(&self) -> u64 {
        if self.skipping_from == NOT_SKIPPING {
            self.buf_offset
        } else {
            self.skipping_from
        }
    }

    /// Bytes held for a partial line.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Gives back the read buffer's memory, keeping only a held partial line: for a file at its
    /// end, so that many idle files do not each keep a read buffer.
    pub fn release_buffer(&mut self) {
        // Always a copy: even when its capacity looks exact, the partial line may be a view into
        // a read buffer shared with emitted chunks, and would keep all of it alive.
        self.buf = BytesMut::from(&self.buf[..]);
    }

    /// Gives back the memory of the last bytes read and of the marks' spare room, for a file
    /// that is idle or closed for its turn: [`Framer::tail_released`] says so until
    /// [`Framer::restore_tail`] gives the bytes back (read again from the file) before its next
    /// read. A framer at offset 0 has no tail to give back.
    pub fn release_tail(&mut self) {
        if self.read_offset() > 0 && !self.tail.is_empty() {
            self.tail = Vec::new();
        }
        self.marks.shrink();
    }

    /// True when the last bytes read were given back ([`Framer::release_tail`]).
    pub fn tail_released(&self) -> bool {
        self.tail.is_empty() && self.read_offset() > 0
    }

    /// Gives back the last bytes read (at most [`TAIL_BYTES`], as read again from the file) to a
    /// framer whose tail was released.
    pub fn restore_tail(&mut self, tail: &[u8]) {
        remember_into(&mut self.tail, tail);
    }

    /// Reads once from `reader`, at most `max` bytes, and returns how many were read.
    pub fn read_from(&mut self, reader: &mut impl Read, max: usize) -> io::Result<usize> {
        let held = self.buf.len();
        self.buf.resize(held + max, 0);
        let result = loop {
            match reader.read(&mut self.buf[held..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let got = *result.as_ref().unwrap_or(&0);
        self.buf.truncate(held + got);
        if got > 0 {
            let (buf, tail) = (&self.buf, &mut self.tail);
            remember_into(tail, &buf[held..]);
            let (buf_offset, end) = (self.buf_offset, self.read_offset());
            let tail = &self.tail;
            self.marks.note_read(end - got as u64, end, |at| {
                if at == end {
                    return &tail[..];
                }
                let at = (at - buf_offset) as usize;
                &buf[at.saturating_sub(TAIL_BYTES)..at]
            });
        }
        result
    }

    /// Marks where the framer stands, before a read that may have to be taken back.
    pub fn mark(&self) -> ReadMark {
        let mut tail = [0; TAIL_BYTES];
        tail[..self.tail.len()].copy_from_slice(&self.tail);
        ReadMark {
            offset: self.read_offset(),
            tail,
            tail_len: self.tail.len(),
        }
    }

    /// The bytes read since `mark` and still held (all of them, unless framed since).
    pub fn read_since(&self, mark: &ReadMark) -> &[u8] {
        let from = mark.offset.saturating_sub(self.buf_offset) as usize;
        &self.buf[from.min(self.buf.len())..]
    }

    /// Takes back what was read since `mark`, as if it had never been read: for bytes that may
    /// belong to another file generation. False (and nothing changed) when some of them were
    /// framed already.
    pub fn unread(&mut self, mark: &ReadMark) -> bool {
        if mark.offset < self.buf_offset || mark.offset > self.read_offset() {
            return false;
        }
        self.buf.truncate((mark.offset - self.buf_offset) as usize);
        self.tail.clear();
        self.tail.extend_from_slice(&mark.tail[..mark.tail_len]);
        self.marks.take_back_to(mark.offset);
        true
    }

    /// Appends bytes as if read from the file (tests and decoders use this).
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        remember_into(&mut self.tail, data);
        self.marks.note(self.read_offset(), &self.tail);
    }

    /// Frames every complete line held, appending events to `out`; their messages are in the
    /// returned data.
    pub fn frame(&mut self, out: &mut Vec<Event>) -> Framed {
        self.frame_lines(out, false)
    }

    /// Frames what is left when the file is let go (rotated away or deleted): an unterminated
    /// last line becomes an event too, and the commit offset moves to the end of what was read.
    pub fn finish(&mut self, out: &mut Vec<Event>) -> Framed {
        self.frame_lines(out, true)
    }

    fn frame_lines(&mut self, out: &mut Vec<Event>, at_end: bool) -> Framed {
        let mut stats = FrameStats::default();
        // Where framing starts in `buf`: after the skipped tail of an over-long line, if any.
        let mut from = 0;
        if self.skipping_from != NOT_SKIPPING {
            match memchr::memchr(b'\n', &self.buf) {
                Some(newline) => {
                    from = newline + 1;
                    self.skipping_from = NOT_SKIPPING;
                }
                None => from = self.buf.len(),
            }
        }
        let base = self.buf_offset;
        let complete_end = memchr::memrchr(b'\n', &self.buf[from..]).map_or(from, |i| from + i + 1);
        // One check of the whole read rather than one per line: lines end at a newline, which
        // never splits a character, so when the whole is valid every line is (but a line cut at
        // `max_line_bytes`, checked on its own).
        let all_valid = std::str::from_utf8(&self.buf[from..complete_end]).is_ok();
        let mut start = from;
        for newline in memchr::memchr_iter(b'\n', &self.buf[from..complete_end]) {
            let newline = from + newline;
            let end = strip_cr(&self.buf, start, newline);
            out.push(self.line_event(start, end, base, false, all_valid, &mut stats));
            start = newline + 1;
        }
        let mut take = complete_end;
        let partial = self.buf.len() - complete_end;
        if partial > 0 && (at_end || self.partial_is_over_long(partial)) {
            // At the end, the unterminated line is a line; before it, an over-long one is cut
            // and its tail skipped until its newline shows up.
            let end = complete_end + partial.min(self.max_line_bytes);
            out.push(self.line_event(
                complete_end,
                end,
                base,
                partial > self.max_line_bytes,
                false,
                &mut stats,
            ));
            if !at_end {
                self.skipping_from = base + complete_end as u64;
            }
            take = self.buf.len();
        }
        if at_end {
            self.skipping_from = NOT_SKIPPING;
            take = self.buf.len();
        }
        // A small chunk gets a copy of its bytes rather than a share of the whole read buffer,
        // which it would otherwise keep alive for as long as it waits for its sinks.
        let data = if take < COPY_BELOW {
            let data = Bytes::copy_from_slice(&self.buf[..take]);
            self.buf.advance(take);
            data
        } else {
            self.buf.split_to(take).freeze()
        };
        self.buf_offset += take as u64;
        Framed { data, stats }
    }

    /// A partial line of `len` bytes that can no longer fit `max_line_bytes` once its newline
    /// arrives (a final `\r` does not count, since it is stripped with the newline).
    fn partial_is_over_long(&self, len: usize) -> bool {
        len > self.max_line_bytes
            && !(len == self.max_line_bytes + 1 && self.buf.last() == Some(&b'\r'))
    }

    /// The event of the line `buf[start..end]`; `cut` says it was cut to the limit already,
    /// `valid` that it is known to be valid UTF-8 unless it is cut here.
    fn line_event(
        &self,
        start: usize,
        mut end: usize,
        base: u64,
        cut: bool,
        valid: bool,
        stats: &mut FrameStats,
    ) -> Event {
        let mut flags = EventFlags {
            truncated: cut,
            ..EventFlags::default()
        };
        let mut check = !valid;
        if end - start > self.max_line_bytes {
            end = start + self.max_line_bytes;
            flags.truncated = true;
            check = true;
        }
        if check && std::str::from_utf8(&self.buf[start..end]).is_err() {
            flags.invalid_utf8 = true;
            stats.invalid_utf8 += 1;
        }
        stats.truncated += u64::from(flags.truncated);
        let mut event = Event::new(start as u32, (end - start) as u32, base + start as u64);
        event.flags = flags;
        event
    }
}

/// What one call of [`Framer::frame`] produced besides the events.
#[derive(Debug, Default)]
pub struct Framed {
    /// The bytes the new events' messages are in.
    pub data: Bytes,
    /// What framing flagged.
    pub stats: FrameStats,
}

/// Keeps the last [`TAIL_BYTES`] of `tail` followed by `read`.
fn remember_into(tail: &mut Vec<u8>, read: &[u8]) {
    if read.len() >= TAIL_BYTES {
        tail.clear();
        tail.extend_from_slice(&read[read.len() - TAIL_BYTES..]);
    } else {
        let keep = (TAIL_BYTES - read.len()).min(tail.len());
        tail.drain(..tail.len() - keep);
        tail.extend_from_slice(read);
    }
}

/// End of the line `bytes[start..newline]` without a trailing `\r`.
fn strip_cr(bytes: &[u8], start: usize, newline: usize) -> usize {
    if newline > start && bytes[newline - 1] == b'\r' {
        newline - 1
    } else {
        newline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (pieces fed one after another, max_line_bytes, expected (offset, message, truncated),
    /// expected commit offset after the last piece)
    type Case = (
        &'static [&'static [u8]],
        usize,
        &'static [(u64, &'static [u8], bool)],
        u64,
    );

    const CASES: &[Case] = &[
        (
            &[b"a\nbb\n"],
            100,
            &[(0, b"a", false), (2, b"bb", false)],
            5,
        ),
        (
            &[b"a\r\nb\r\n"],
            100,
            &[(0, b"a", false), (3, b"b", false)],
            6,
        ),
        (&[b"\n\n"], 100, &[(0, b"", false), (1, b"", false)], 2),
        (&[b"\r\n"], 100, &[(0, b"", false)], 2),
        // An unterminated line waits for its newline.
        (&[b"one\ntw"], 100, &[(0, b"one", false)], 4),
        (
            &[b"one\ntw", b"o\n"],
            100,
            &[(0, b"one", false), (4, b"two", false)],
            8,
        ),
        (&[b"x", b"y", b"z\n"], 100, &[(0, b"xyz", false)], 4),
        // Lines longer than the limit are cut and flagged, whether complete in one read...
        (
            &[b"abcdef\nxy\n"],
            3,
            &[(0, b"abc", true), (7, b"xy", false)],
            10,
        ),
        // ...or spread over reads; the commit stays at the long line until its end is found.
        (&[b"abcdef"], 3, &[(0, b"abc", true)], 0),
        (&[b"abcdef", b"gh"], 3, &[(0, b"abc", true)], 0),
        (
            &[b"abcdef", b"gh\nok\n"],
            3,
            &[(0, b"abc", true), (9, b"ok", false)],
            12,
        ),
        // Exactly at the limit is not truncated, with or without \r.
        (&[b"abc\n"], 3, &[(0, b"abc", false)], 4),
        (&[b"abc\r", b"\n"], 3, &[(0, b"abc", false)], 5),
        (&[b"abc", b"\n"], 3, &[(0, b"abc", false)], 4),
    ];

    /// A framed line: offset, message, truncated, invalid UTF-8.
    type Line = (u64, Vec<u8>, bool, bool);

    fn lines(framed: &Framed, events: &[Event]) -> Vec<Line> {
        events
            .iter()
            .map(|e| {
                let start = e.start as usize;
                let message = framed.data[start..start + e.len as usize].to_vec();
                (e.offset, message, e.flags.truncated, e.flags.invalid_utf8)
            })
            .collect()
    }

    fn frame(framer: &mut Framer) -> Vec<Line> {
        let mut events = Vec::new();
        let framed = framer.frame(&mut events);
        lines(&framed, &events)
    }

    fn finish(framer: &mut Framer) -> Vec<Line> {
        let mut events = Vec::new();
        let framed = framer.finish(&mut events);
        lines(&framed, &events)
    }

    fn run(pieces: &[&[u8]], max: usize) -> (Vec<Line>, Framer) {
        let mut framer = Framer::new(0, max);
        let mut out = Vec::new();
        for piece in pieces {
            framer.push(piece);
            out.extend(frame(&mut framer));
        }
        (out, framer)
    }

    #[test]
    fn frames_table() {
        for (i, (pieces, max, want, commit)) in CASES.iter().enumerate() {
            let (events, framer) = run(pieces, *max);
            let got: Vec<(u64, &[u8], bool)> = events
                .iter()
                .map(|(offset, message, truncated, _)| (*offset, &message[..], *truncated))
                .collect();
            assert_eq!(&got, want, "case {i}");
            assert_eq!(framer.commit_offset(), *commit, "case {i} commit");
        }
    }

    #[test]
    fn finish_emits_the_unterminated_line() {
        let (mut events, mut framer) = run(&[b"a\npartial"], 100);
        events.extend(finish(&mut framer));
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].1, b"partial");
        assert_eq!(events[1].0, 2);
        assert_eq!(framer.commit_offset(), 9);
        assert_eq!(framer.read_offset(), 9);
    }

    #[test]
    fn finish_during_a_skip_moves_past_the_skipped_bytes() {
        let (mut events, mut framer) = run(&[b"abcdefgh"], 3);
        events.extend(finish(&mut framer));
        assert_eq!(events.len(), 1);
        assert_eq!(framer.commit_offset(), 8);
    }

    #[test]
    fn invalid_utf8_is_flagged_and_counted() {
        let mut framer = Framer::new(0, 100);
        framer.push(b"ok\n\xff\xfe\n");
        let mut out = Vec::new();
        let framed = framer.frame(&mut out);
        assert!(!out[0].flags.invalid_utf8);
        assert!(out[1].flags.invalid_utf8);
        assert_eq!(framed.stats.invalid_utf8, 1);
    }

    #[test]
    fn memory_is_bounded_by_the_line_limit() {
        let mut framer = Framer::new(0, 1024);
        let mut out = Vec::new();
        let block = vec![b'x'; 64 * 1024];
        for _ in 0..100 {
            framer.push(&block);
            out.extend(frame(&mut framer));
            assert!(framer.pending_bytes() <= 1024);
        }
        assert_eq!(out.len(), 1);
        assert!(out[0].2, "truncated");
        assert_eq!(out[0].1.len(), 1024);
        framer.push(b"\nnext\n");
        out.extend(frame(&mut framer));
        assert_eq!(out[1].1, b"next");
        assert_eq!(out[1].0, 100 * 64 * 1024 + 1);
    }

    #[test]
    fn remembers_the_last_bytes_read() {
        let mut framer = Framer::new(0, 100);
        framer.push(b"abc");
        framer.push(b"de");
        assert_eq!(framer.tail(), b"abcde");
        let long = vec![b'z'; TAIL_BYTES + 10];
        framer.push(&long);
        framer.push(b"!");
        assert_eq!(framer.tail().len(), TAIL_BYTES);
        assert_eq!(framer.tail().last(), Some(&b'!'));
        assert_eq!(framer.tail()[0], b'z');
        framer.set_tail(b"xy", &[]);
        assert_eq!(framer.tail(), b"xy");
    }

    #[test]
    fn releasing_the_buffer_keeps_a_partial_line() {
        let mut framer = Framer::new(0, 100);
        let mut input: &[u8] = b"a\npart";
        framer.read_from(&mut input, 64 * 1024).unwrap();
        assert_eq!(frame(&mut framer).len(), 1);
        framer.release_buffer();
        framer.push(b"ial\n");
        let lines = frame(&mut framer);
        assert_eq!(lines[0].1, b"partial");
        assert_eq!(lines[0].0, 2);
    }

    #[test]
    fn starts_at_a_given_offset() {
        let mut framer = Framer::new(1000, 100);
        framer.push(b"x\n");
        let mut out = Vec::new();
        framer.frame(&mut out);
        assert_eq!(out[0].offset, 1000);
        assert_eq!(framer.commit_offset(), 1002);
    }

    #[test]
    fn reads_from_a_reader() {
        let mut framer = Framer::new(0, 100);
        let mut input: &[u8] = b"a\nb\n";
        assert_eq!(framer.read_from(&mut input, 3).ok(), Some(3));
        assert_eq!(framer.read_from(&mut input, 3).ok(), Some(1));
        assert_eq!(framer.read_from(&mut input, 3).ok(), Some(0));
        let mut out = Vec::new();
        framer.frame(&mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn a_read_taken_back_leaves_the_framer_as_before_it() {
        // (held before the read, read, framed in between?, taken back?)
        let cases: &[(&[u8], &[u8], bool, bool)] = &[
            (b"", b"x\ny\n", false, true),
            (b"a\npart", b"ial\nmore\n", false, true),
            (b"a\n", b"b\n", true, true),
            // Framed past the mark: too late to take the read back.
            (b"a\npart", b"ial\n", true, false),
        ];
        for (i, &(held, read, framed, undone)) in cases.iter().enumerate() {
            let mut framer = Framer::new(10, 100);
            framer.push(held);
            if framed {
                frame(&mut framer);
            }
            let before = (framer.read_offset(), framer.tail().to_vec());
            let mark = framer.mark();
            assert_eq!(mark.offset(), before.0, "case {i}");
            let mut input = read;
            framer.read_from(&mut input, 1024).unwrap();
            assert_eq!(framer.read_since(&mark), read, "case {i}");
            if framed && !undone {
                frame(&mut framer);
            }
            assert_eq!(framer.unread(&mark), undone, "case {i}");
            if undone {
                assert_eq!(framer.read_offset(), before.0, "case {i}");
                assert_eq!(framer.tail(), &before.1[..], "case {i}");
                // Reading goes on from where the mark was: the held line ends with what comes.
                framer.push(b"z\n");
                let lines = frame(&mut framer);
                assert!(lines.last().unwrap().1.ends_with(b"z"), "case {i}");
                assert_eq!(framer.commit_offset(), before.0 + 2, "case {i}");
            }
        }
    }
}
