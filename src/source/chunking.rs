//! From framed lines to a chunk: parsed, counted in the source's metrics, and the chunk's
//! checkpoint offset kept before any line parsing holds back. The one step the tailer and
//! `replay` share, so that a file replayed is parsed and counted as a file tailed.
//!
//! Invariant: a chunk's end offset never passes a line held back (a partial line, an open
//! multiline group, a partial container line).

use std::sync::Arc;

use super::framing::Framed;
use crate::event::{Chunk, Event, FileMeta};
use crate::metrics::{SourceMetrics, add};
use crate::parse::assemble::{FileState, Release};
use crate::parse::{ParseCounts, Parsed, SourceParser};

/// Framed lines after parsing, with the offset their chunk may checkpoint.
#[derive(Debug)]
pub struct Step {
    /// What parsing made of them.
    pub parsed: Parsed,
    /// Lines framed (before parsing grouped, dropped or held any).
    pub lines: u64,
    /// Where the chunk's checkpoint may go: the framer's commit offset, or the first line
    /// parsing holds back if that is earlier.
    pub end_offset: u64,
}

impl Step {
    /// What parsing counted.
    pub fn counts(&self) -> ParseCounts {
        self.parsed.counts
    }

    /// The chunk of these events, read now from the file `file`.
    pub fn into_chunk(self, file: Arc<FileMeta>) -> Chunk {
        Chunk {
            file,
            read_time: now_rfc3339().into(),
            data: self.parsed.data,
            events: self.parsed.events,
            fields: Arc::new(self.parsed.fields),
            end_offset: self.end_offset,
            lane: 0,
        }
    }
}

/// Parses the lines `events` framed from `framed` (up to `commit_offset`) in the file whose
/// parsing state is `held`, releasing what `release` says, and counts what happened into
/// `metrics`.
pub fn parse_framed(
    parser: &SourceParser,
    held: &mut FileState,
    framed: Framed,
    events: Vec<Event>,
    commit_offset: u64,
    release: Release,
    metrics: &SourceMetrics,
) -> Step {
    let Framed { data, stats } = framed;
    let lines = events.len() as u64;
    let parsed = parser.process(held, data, events, release);
    let counts = parsed.counts;
    add(&metrics.events_in, lines);
    add(&metrics.truncated_lines, stats.truncated);
    add(&metrics.invalid_utf8_lines, stats.invalid_utf8);
    add(&metrics.parse_errors, counts.parse_errors);
    add(&metrics.filtered_events, counts.filtered);
    add(&metrics.multiline_groups, counts.multiline_groups);
    add(&metrics.multiline_cut, counts.multiline_cut);
    add(&metrics.timestamp_failures, counts.timestamp_failures);
    let end_offset = parsed
        .hold_from
        .map_or(commit_offset, |hold| commit_offset.min(hold));
    Step {
        parsed,
        lines,
        end_offset,
    }
}

/// The read time events carry: now, in RFC 3339 with microseconds.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
