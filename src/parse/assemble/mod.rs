//! Assembly: framed lines in, events out, for the formats and settings where one event is not
//! one line: container runtime lines (`cri`, `docker`: the log text is inside the line, and a
//! long line comes in pieces) and multiline groups.
//!
//! Messages stay slices of the chunk's bytes where they can: a CRI line's text is a slice of
//! its line; a docker line's text too unless it has escapes besides its final `\n`; a group of
//! consecutive `\n`-separated lines is one slice. Only joined pieces, unescaped text and groups
//! that span reads are written out, after the read bytes ([`Assembled::data`]).
//!
//! What is not finished at the end of a chunk (a `P` piece waiting for the rest of its line, a
//! group that the next line may continue) is kept per file, in [`FileState`], bounded by
//! `max_line_bytes` and `multiline.max_bytes`; [`Assembled::hold_from`] is the offset of its
//! first line, past which the chunk's checkpoint must not go, so a restart reads it again whole.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::cri::{self, CriError};
use super::docker::{self, DockerError};
use super::multiline::{MultilineConfig, RuleState, Rules};
use crate::event::{Event, EventFlags, Stream};

/// The container runtime whose log format wraps the lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// containerd / CRI-O.
    Cri,
    /// Docker's json-file.
    Docker,
}

/// What held lines may be let out with this chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// A group whose last line came `timeout_ms` before this instant.
    Due(Instant),
    /// Everything: the file is let go, or the agent drains.
    All,
}

/// What a line that could not be unwrapped failed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Cri(CriError),
    Docker(DockerError),
}

impl Failure {
    fn message(self) -> Box<str> {
        match self {
            Failure::Cri(e) => e.to_string().into_boxed_str(),
            Failure::Docker(e) => e.to_string().into_boxed_str(),
        }
    }
}

/// What a line or group carries besides its bytes: that of its first line.
#[derive(Debug, Clone, Copy)]
struct Meta {
    offset: u64,
    flags: EventFlags,
    stream: Option<Stream>,
    time: Option<i64>,
    failure: Option<Failure>,
}

/// A line (or joined line, or group) whose message is at `start..start + len` of the chunk's
/// bytes followed by the bytes written during assembly.
#[derive(Debug, Clone, Copy)]
struct Line {
    meta: Meta,
    start: usize,
    len: usize,
}

/// The chunk's bytes and the bytes written after them, addressed as one.
struct Space<'a> {
    data: &'a [u8],
    extra: Vec<u8>,
}

impl Space<'_> {
    fn get(&self, start: usize, len: usize) -> &[u8] {
        let (base, start) = match start.checked_sub(self.data.len()) {
            None => (self.data, start),
            Some(in_extra) => (&self.extra[..], in_extra),
        };
        base.get(start..start + len).unwrap_or_default()
    }

    fn end(&self) -> usize {
        self.data.len() + self.extra.len()
    }

    /// Appends the bytes at `start..start + len` to the written bytes.
    fn append_from(&mut self, start: usize, len: usize) {
        match start.checked_sub(self.data.len()) {
            None => {
                let data = self.data;
                let bytes = data.get(start..start + len).unwrap_or_default();
                self.extra.extend_from_slice(bytes);
            }
            Some(in_extra) => self
                .extra
                .extend_from_within(in_extra..(in_extra + len).min(self.extra.len())),
        }
    }
}

/// A container line still waiting for its last piece.
#[derive(Debug)]
struct Partial {
    meta: Meta,
    bytes: Vec<u8>,
}

impl Partial {
    /// Adds a piece, keeping at most `max` bytes: beyond that the line is cut and flagged.
    fn append(&mut self, piece: &[u8], flags: EventFlags, max: usize) {
        let room = max.saturating_sub(self.bytes.len());
        if piece.len() > room {
            self.meta.flags.truncated = true;
        }
        self.bytes
            .extend_from_slice(&piece[..piece.len().min(room)]);
        self.meta.flags.invalid_utf8 |= flags.invalid_utf8;
    }

    fn into_line(mut self, space: &mut Space<'_>) -> Line {
        // A cut can split a character.
        if self.meta.flags.truncated && std::str::from_utf8(&self.bytes).is_err() {
            self.meta.flags.invalid_utf8 = true;
        }
        let start = space.end();
        space.extra.extend_from_slice(&self.bytes);
        Line {
            meta: self.meta,
            start,
            len: self.bytes.len(),
        }
    }
}

/// A multiline group still open.
#[derive(Debug)]
struct Group {
    meta: Meta,
    lines: usize,
    bytes: usize,
    /// The bytes of its lines read with earlier chunks, `\n`-joined.
    held: Vec<u8>,
    held_lines: usize,
    /// Its lines in this chunk.
    parts: Vec<(usize, usize)>,
    last_line_at: Instant,
}

impl Group {
    fn new(line: Line, cut: bool, now: Instant) -> Self {
        let mut meta = line.meta;
        meta.flags.multiline_cut = cut;
        Group {
            meta,
            lines: 1,
            bytes: line.len,
            held: Vec::new(),
            held_lines: 0,
            parts: vec![(line.start, line.len)],
            last_line_at: now,
        }
    }

    fn add(&mut self, line: Line, now: Instant) {
        self.lines += 1;
        self.bytes += 1 + line.len;
        self.meta.flags.truncated |= line.meta.flags.truncated;
        self.meta.flags.invalid_utf8 |= line.meta.flags.invalid_utf8;
        self.parts.push((line.start, line.len));
        self.last_line_at = now;
    }

    /// Copies this chunk's lines into `held`, before the chunk's bytes go.
    fn keep(&mut self, space: &Space<'_>) {
        for (i, &(start, len)) in self.parts.iter().enumerate() {
            if self.held_lines + i > 0 {
                self.held.push(b'\n');
            }
            self.held.extend_from_slice(space.get(start, len));
        }
        self.held_lines += self.parts.len();
        self.parts.clear();
    }

    /// The group as one line: a slice of the chunk when its lines are consecutive there.
    fn close(self, space: &mut Space<'_>) -> Line {
        if self.held_lines == 0 && is_one_slice(space.data, &self.parts) {
            let (first, _) = self.parts[0];
            let (last, last_len) = self.parts[self.parts.len() - 1];
            return Line {
                meta: self.meta,
                start: first,
                len: last + last_len - first,
            };
        }
        let start = space.end();
        space.extra.extend_from_slice(&self.held);
        for (i, &(part, len)) in self.parts.iter().enumerate() {
            if self.held_lines + i > 0 {
                space.extra.push(b'\n');
            }
            space.append_from(part, len);
        }
        Line {
            meta: self.meta,
            start,
            len: space.end() - start,
        }
    }
}

/// Whether `parts` (non-empty) are lines of `data` separated by exactly one `\n` each.
fn is_one_slice(data: &[u8], parts: &[(usize, usize)]) -> bool {
    !parts.is_empty()
        && parts.windows(2).all(|pair| {
            let (start, len) = pair[0];
            pair[1].0 == start + len + 1 && data.get(start + len) == Some(&b'\n')
        })
        && parts
            .last()
            .is_some_and(|&(start, len)| start + len <= data.len())
}

/// What a file has held back between chunks.
#[derive(Debug, Default)]
pub struct FileState {
    /// A container line waiting for its last piece, per stream (pieces of stdout and stderr
    /// interleave).
    partials: [Option<Partial>; 2],
    group: Option<Group>,
    rule_state: RuleState,
}

impl FileState {
    /// Whether nothing is held.
    pub fn is_idle(&self) -> bool {
        self.group.is_none() && self.partials.iter().all(Option::is_none)
    }

    /// When the open group is due, given the group timeout.
    pub fn deadline(&self, timeout: Duration) -> Option<Instant> {
        self.group.as_ref().map(|g| g.last_line_at + timeout)
    }

    /// The offset of the first line held.
    pub fn hold_from(&self) -> Option<u64> {
        let partials = self.partials.iter().flatten().map(|p| p.meta.offset);
        partials
            .chain(self.group.iter().map(|g| g.meta.offset))
            .min()
    }
}

/// Multiline settings, compiled.
#[derive(Debug)]
struct Multiline {
    rules: Rules,
    timeout: Duration,
    max_lines: usize,
    max_bytes: usize,
}

/// The assembly stage of a source.
#[derive(Debug)]
pub struct Assembler {
    runtime: Option<Runtime>,
    multiline: Option<Multiline>,
    max_line_bytes: usize,
}

/// A chunk after assembly.
#[derive(Debug)]
pub struct Assembled {
    /// The bytes the events' messages are in.
    pub data: Bytes,
    /// The events, in the order of their first lines.
    pub events: Vec<Event>,
    /// The offset of the first line held for a later chunk.
    pub hold_from: Option<u64>,
    /// Groups of more than one line shipped.
    pub groups: u64,
    /// Groups cut by a limit.
    pub cut: u64,
}

/// The events being built from one chunk.
struct Work<'a> {
    space: Space<'a>,
    out: Vec<Line>,
    groups: u64,
    cut: u64,
}

impl Work<'_> {
    fn ship(&mut self, group: Group) {
        self.groups += u64::from(group.lines > 1);
        self.cut += u64::from(group.meta.flags.multiline_cut);
        let line = group.close(&mut self.space);
        self.out.push(line);
    }
}

impl Assembler {
    /// The stage for a runtime format and/or multiline rules; lines longer than
    /// `max_line_bytes` after joining are cut.
    pub fn new(
        runtime: Option<Runtime>,
        multiline: Option<(Rules, MultilineConfig)>,
        max_line_bytes: usize,
    ) -> Self {
        Assembler {
            runtime,
            multiline: multiline.map(|(rules, config)| Multiline {
                rules,
                timeout: Duration::from_millis(config.timeout_ms),
                max_lines: config.max_lines.max(1),
                max_bytes: config.max_bytes.max(1),
            }),
            max_line_bytes: max_line_bytes.max(1),
        }
    }

    /// How long an open group may wait for its next line.
    pub fn timeout(&self) -> Option<Duration> {
        self.multiline.as_ref().map(|m| m.timeout)
    }

    /// Turns the framed lines of a chunk (messages in `data`) into events, holding back in
    /// `state` what is not finished.
    pub fn assemble(
        &self,
        state: &mut FileState,
        data: Bytes,
        events: Vec<Event>,
        release: Release,
    ) -> Assembled {
        let now = match release {
            Release::Due(now) => now,
            Release::All => Instant::now(),
        };
        let mut work = Work {
            space: Space {
                data: &data,
                extra: Vec::new(),
            },
            out: Vec::with_capacity(events.len()),
            groups: 0,
            cut: 0,
        };
        for event in &events {
            let line = Line {
                meta: Meta {
                    offset: event.offset,
                    flags: event.flags,
                    stream: None,
                    time: None,
                    failure: None,
                },
                start: event.start as usize,
                len: event.len as usize,
            };
            let line = match self.runtime {
                Some(runtime) => match self.unwrap(runtime, state, line, &mut work.space) {
                    Some(line) => line,
                    None => continue,
                },
                None => line,
            };
            self.group(state, line, &mut work, now);
        }
        match release {
            Release::All => {
                let mut partials: Vec<Partial> =
                    state.partials.iter_mut().filter_map(Option::take).collect();
                partials.sort_by_key(|p| p.meta.offset);
                for partial in partials {
                    let line = partial.into_line(&mut work.space);
                    self.group(state, line, &mut work, now);
                }
                if let Some(group) = state.group.take() {
                    work.ship(group);
                }
            }
            Release::Due(now) => {
                let due = self
                    .timeout()
                    .and_then(|timeout| state.deadline(timeout))
                    .is_some_and(|at| at <= now);
                if due && let Some(group) = state.group.take() {
                    work.ship(group);
                }
            }
        }
        if let Some(group) = &mut state.group {
            group.keep(&work.space);
        }
        let Work {
            space,
            mut out,
            groups,
            cut,
            ..
        } = work;
        if !out.is_sorted_by_key(|l| l.meta.offset) {
            // Pieces of two streams interleave: a joined line goes where its first piece was,
            // so that the checkpoint a delivered prefix allows never passes an undelivered line.
            out.sort_by_key(|l| l.meta.offset);
        }
        let (data, shift) = combine(&data, space.extra, &out);
        let events = out
            .into_iter()
            .map(|line| Event {
                start: (line.start - shift) as u32,
                len: line.len as u32,
                offset: line.meta.offset,
                flags: line.meta.flags,
                stream: line.meta.stream,
                time: line.meta.time,
                fields: None,
                parse_error: line.meta.failure.map(Failure::message),
            })
            .collect();
        Assembled {
            data,
            events,
            hold_from: state.hold_from(),
            groups,
            cut,
        }
    }

    /// Unwraps a container runtime line: its text, stream and time. A piece of a longer line is
    /// kept in `state` (and None returned) until the line's last piece.
    fn unwrap(
        &self,
        runtime: Runtime,
        state: &mut FileState,
        line: Line,
        space: &mut Space<'_>,
    ) -> Option<Line> {
        let data = space.data;
        let raw = data
            .get(line.start..line.start + line.len)
            .unwrap_or_default();
        let failed = |failure| {
            let mut line = line;
            line.meta.failure = Some(failure);
            Some(line)
        };
        let (stream, time, start, len, partial) = match runtime {
            Runtime::Cri => match cri::parse(raw) {
                Ok(c) => (
                    c.stream,
                    c.time,
                    line.start + c.message_start,
                    line.len - c.message_start,
                    c.partial,
                ),
                Err(e) => return failed(Failure::Cri(e)),
            },
            Runtime::Docker => match docker::parse(raw) {
                Ok(d) => match d.plain_message() {
                    Some((message, complete)) => {
                        let at = message.as_ptr() as usize - raw.as_ptr() as usize;
                        (d.stream, d.time, line.start + at, message.len(), !complete)
                    }
                    None => {
                        let start = space.end();
                        match d.unescape_into(&mut space.extra) {
                            Ok(complete) => {
                                (d.stream, d.time, start, space.end() - start, !complete)
                            }
                            Err(e) => {
                                space.extra.truncate(start - data.len());
                                return failed(Failure::Docker(e));
                            }
                        }
                    }
                },
                Err(e) => return failed(Failure::Docker(e)),
            },
        };
        let meta = Meta {
            stream: Some(stream),
            time: Some(time),
            ..line.meta
        };
        let slot = &mut state.partials[stream as usize];
        let piece = space.get(start, len);
        if partial {
            match slot {
                Some(pending) => pending.append(piece, meta.flags, self.max_line_bytes),
                None => {
                    let mut pending = Partial {
                        meta,
                        bytes: Vec::new(),
                    };
                    pending.meta.flags.truncated = false;
                    pending.append(piece, meta.flags, self.max_line_bytes);
                    pending.meta.flags.truncated |= meta.flags.truncated;
                    *slot = Some(pending);
                }
            }
            return None;
        }
        match slot.take() {
            Some(mut pending) => {
                pending.append(piece, meta.flags, self.max_line_bytes);
                pending.meta.flags.truncated |= meta.flags.truncated;
                Some(pending.into_line(space))
            }
            None => Some(Line { meta, start, len }),
        }
    }

    /// Puts a line into the open group, or ships that group and opens one with the line; with
    /// no multiline settings, ships the line.
    fn group(&self, state: &mut FileState, line: Line, work: &mut Work<'_>, now: Instant) {
        let Some(multiline) = &self.multiline else {
            work.out.push(line);
            return;
        };
        let message = work.space.get(line.start, line.len);
        let open = state.group.is_some();
        let starts = multiline
            .rules
            .starts_group(&mut state.rule_state, message, open);
        let cut = !starts
            && state.group.as_ref().is_some_and(|g| {
                g.lines + 1 > multiline.max_lines || g.bytes + 1 + line.len > multiline.max_bytes
            });
        if starts || cut {
            if let Some(mut group) = state.group.take() {
                group.meta.flags.multiline_cut |= cut;
                work.ship(group);
            }
            state.group = Some(Group::new(line, cut, now));
        } else if let Some(group) = &mut state.group {
            group.add(line, now);
        }
        if !multiline.rules.can_continue(state.rule_state)
            && let Some(group) = state.group.take()
        {
            work.ship(group);
        }
    }
}

/// The chunk's bytes for the events: the read bytes followed by the written ones, or only the
/// written ones when no event is in the read bytes (then positions shift by the returned
/// amount).
fn combine(data: &Bytes, extra: Vec<u8>, out: &[Line]) -> (Bytes, usize) {
    if extra.is_empty() {
        return (data.clone(), 0);
    }
    if out.iter().all(|l| l.start >= data.len()) {
        return (Bytes::from(extra), data.len());
    }
    let mut combined = BytesMut::with_capacity(data.len() + extra.len());
    combined.extend_from_slice(data);
    combined.extend_from_slice(&extra);
    (combined.freeze(), 0)
}

#[cfg(test)]
mod tests;
