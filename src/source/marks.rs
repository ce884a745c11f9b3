//! What a file's read stream held at the ends of its last reads, to recognise copies of it.
//!
//! Invariant: a file is taken for the copy of another only where its bytes were compared with
//! bytes read from that other file. A head in common is not enough (two files may start alike);
//! a copy must also hold, at the same offsets, the last bytes before the end of some of the
//! agent's recent reads (a [`StreamMark`] each: a hash of up to [`TAIL_BYTES`] bytes).
//!
//! copytruncate under a live writer makes copies *shorter* than what the agent read of the
//! original (the writer goes on appending between the copy and the truncation, and the agent
//! reads those lines from the original): such a copy is proven by the marks that fall inside it.
//! A copy longer than what was read is proven by the mark at the read offset, where reading
//! continues in it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::framing::TAIL_BYTES;
use crate::checkpoint::{Fingerprint, MARKS_PERSISTED, StreamMark};

/// Marks kept per file in memory, spread over what was read (see [`Marks::thin`]).
pub const MARKS_KEPT: usize = 24;
/// The most recent marks, always kept.
const MARKS_RECENT: usize = 8;
/// Besides the end of every read, a mark is taken at every multiple of this offset: a copy
/// ends wherever the writer was when it was made, whatever the agent's reads were.
pub const MARK_EVERY: u64 = 4 * 1024;
/// Below [`MARK_DENSE_UNTIL`], every multiple of this: small files' copies have marks too.
pub const MARK_EVERY_DENSE: u64 = 1024;
/// See [`MARK_EVERY_DENSE`].
pub const MARK_DENSE_UNTIL: u64 = 16 * 1024;
/// A copy shorter than what was read is taken for one only if its bytes were compared with the
/// stream's at most this far before its end (or all of them, when it is shorter than the head):
/// what it holds after the last comparison is taken on trust, so this bounds what a file that
/// is not a copy could lose.
pub const PROOF_GAP: u64 = 64 * 1024;

/// The marks of a read stream's reads, oldest first, at most [`MARKS_KEPT`], thinned out with
/// age.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks(Vec<StreamMark>);

impl Marks {
    /// Marks loaded from a checkpoint record.
    pub fn from_saved(saved: &[StreamMark]) -> Self {
        let mut marks = Marks::default();
        for mark in saved {
            marks.push(*mark);
        }
        marks
    }

    /// Notes that a read ended at `end`, `window` being the bytes right before it.
    pub fn note(&mut self, end: u64, window: &[u8]) {
        if window.is_empty() {
            return;
        }
        self.push(StreamMark::of(end, window));
    }

    fn push(&mut self, mark: StreamMark) {
        // Marks follow the stream: one that is not past the last (a stream restarted) replaces
        // those it is not past.
        while self.0.last().is_some_and(|last| last.end >= mark.end) {
            self.0.pop();
        }
        if self.0.len() == MARKS_KEPT {
            self.thin();
        }
        self.0.push(mark);
    }

    /// Notes the marks of a read that brought the stream from `from` to `to`: one at every
    /// multiple of [`MARK_EVERY`] in between and one at `to`. `window(end)` gives the bytes
    /// right before offset `end` that are still at hand (up to [`TAIL_BYTES`]).
    pub fn note_read<'a>(&mut self, from: u64, to: u64, window: impl Fn(u64) -> &'a [u8]) {
        let step = |at: u64| {
            if at < MARK_DENSE_UNTIL {
                MARK_EVERY_DENSE
            } else {
                MARK_EVERY
            }
        };
        let mut boundary = (from / step(from) + 1) * step(from);
        while boundary < to {
            let bytes = window(boundary);
            // A boundary right at the start of a read has few bytes before it at hand: its
            // mark would say little.
            if bytes.len() >= TAIL_BYTES / 4 {
                self.note(boundary, bytes);
            }
            boundary += step(boundary);
        }
        self.note(to, window(to));
    }

    /// Drops one mark to make room, keeping them spread over the stream so that wherever a copy
    /// of it ends, a mark lies not much further before that end than the end lies before the
    /// last read: a copy made well before the last reads (logrotate's `copy`, decided only once
    /// the copy is no longer written) still has one inside it. The oldest and the most recent
    /// [`MARKS_RECENT`] stay; of the others, the one whose loss leaves the smallest gap for its
    /// distance from the last read goes, so gaps grow about geometrically with age.
    fn thin(&mut self) {
        let marks = &self.0;
        let Some(newest) = marks.last().map(|m| m.end) else {
            return;
        };
        let last_droppable = marks.len().saturating_sub(MARKS_RECENT);
        let cost = |i: usize| {
            let gap = (marks[i + 1].end - marks[i - 1].end) as f64;
            gap / (newest - marks[i + 1].end + 1) as f64
        };
        let drop = (1..last_droppable)
            .min_by(|&a, &b| cost(a).total_cmp(&cost(b)))
            .unwrap_or(0);
        self.0.remove(drop);
    }

    /// Gives back the room beyond the marks held (a file idle for now).
    pub fn shrink(&mut self) {
        self.0.shrink_to_fit();
    }

    /// Forgets the marks of reads that ended after `offset` (a read taken back).
    pub fn take_back_to(&mut self, offset: u64) {
        while self.0.last().is_some_and(|last| last.end > offset) {
            self.0.pop();
        }
    }

    /// Every mark, oldest first.
    pub fn all(&self) -> &[StreamMark] {
        &self.0
    }

    /// The most recent marks, as written to the checkpoint file.
    pub fn recent(&self) -> &[StreamMark] {
        &self.0[self.0.len().saturating_sub(MARKS_PERSISTED)..]
    }
}

/// What a file holds of a read stream, as far as it can be told (see [`compare`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    /// It holds different bytes where they were compared: not a copy of the stream.
    Differs,
    /// Nothing compared differs, and its bytes are known to be the stream's up to this offset:
    /// through its head (the fingerprint's length, or its whole content when it is shorter than
    /// a head whose bytes are known), or through the last mark inside it. Whether that is enough
    /// to take it for a copy depends on what it is taken for: see the tailer's lineage.
    ProvenTo(u64),
}

/// Where the stream a file is compared with started: its fingerprint, and the head it was
/// taken of when that is still known (a tracked file keeps it; a checkpoint record does not).
#[derive(Debug, Clone, Copy)]
pub struct StreamHead<'a> {
    /// The fingerprint of the stream's head.
    pub fingerprint: Fingerprint,
    /// The head's bytes, when known.
    pub bytes: Option<&'a [u8]>,
}

/// Compares `file`, `size` bytes long, with a read stream that started with `head` and whose
/// last reads left `marks`.
pub fn compare(
    file: &File,
    size: u64,
    head: StreamHead<'_>,
    marks: &[StreamMark],
) -> io::Result<Holds> {
    let fingerprint_len = u64::from(head.fingerprint.len);
    let mut proven_to = 0;
    if fingerprint_len > 0 && size >= fingerprint_len {
        let mut first = vec![0; fingerprint_len as usize];
        file.read_exact_at(&mut first, 0)?;
        if !head.fingerprint.matches(&first) {
            return Ok(Holds::Differs);
        }
        proven_to = fingerprint_len;
    } else if let Some(bytes) = head.bytes.filter(|_| fingerprint_len > 0) {
        // Shorter than the fingerprint: the head's bytes tell all of it.
        let mut first = vec![0; size as usize];
        file.read_exact_at(&mut first, 0)?;
        if !bytes.starts_with(&first) {
            return Ok(Holds::Differs);
        }
        proven_to = size;
    }
    let mut window = Vec::with_capacity(TAIL_BYTES);
    for mark in marks.iter().filter(|m| m.end <= size && m.len > 0) {
        window.resize(usize::from(mark.len), 0);
        file.read_exact_at(&mut window, mark.end - u64::from(mark.len))?;
        if xxhash_rust::xxh3::xxh3_64(&window) != mark.hash {
            return Ok(Holds::Differs);
        }
        proven_to = proven_to.max(mark.end);
    }
    Ok(Holds::ProvenTo(proven_to))
}

/// Reads and throws away the first `n` bytes of `stream` (a compressed file's content, which
/// cannot be sought in), comparing them with `marks` on the way; returns how many there were
/// (fewer at its end) and what they hold, as [`compare`] does for the marks (the head is the
/// caller's to check).
pub fn skip_comparing(
    stream: &mut impl io::Read,
    n: u64,
    marks: &[StreamMark],
) -> io::Result<(u64, Holds)> {
    const CHUNK: usize = 64 * 1024;
    // The last bytes of the previous chunk, then the chunk: a mark's window may straddle them.
    let mut buf = vec![0; TAIL_BYTES + CHUNK];
    let (mut kept, mut at, mut proven_to) = (0usize, 0u64, 0u64);
    let mut pending = marks.iter().filter(|m| m.end <= n && m.len > 0).peekable();
    while at < n {
        let want = CHUNK.min((n - at) as usize);
        let got = match stream.read(&mut buf[kept..kept + want]) {
            Ok(0) => break,
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let (start, end) = (at - kept as u64, at + got as u64);
        while let Some(mark) = pending.next_if(|m| m.end <= end) {
            let from = mark.end - u64::from(mark.len);
            if from < start {
                // Its window began before the bytes kept: nothing to compare it with.
                continue;
            }
            let window = &buf[(from - start) as usize..(mark.end - start) as usize];
            if xxhash_rust::xxh3::xxh3_64(window) != mark.hash {
                return Ok((end, Holds::Differs));
            }
            proven_to = mark.end;
        }
        let filled = kept + got;
        kept = filled.min(TAIL_BYTES);
        buf.copy_within(filled - kept..filled, 0);
        at = end;
    }
    Ok((at, Holds::ProvenTo(proven_to)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The marks a stream of `content` leaves when read in pieces ending at `ends`.
    fn marks_of(content: &[u8], ends: &[u64]) -> Vec<StreamMark> {
        let mut marks = Marks::default();
        for &end in ends {
            let from = (end as usize).saturating_sub(TAIL_BYTES);
            marks.note(end, &content[from..end as usize]);
        }
        marks.all().to_vec()
    }

    fn file_of(bytes: &[u8]) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        file
    }

    #[test]
    fn compare_table() {
        let stream: Vec<u8> = (0..400)
            .flat_map(|i| format!("request {i:05} GET /r/{i}\n").into_bytes())
            .collect();
        let head = &stream[..1024];
        let known = StreamHead {
            fingerprint: Fingerprint::of(head),
            bytes: Some(head),
        };
        let saved = StreamHead {
            fingerprint: Fingerprint::of(head),
            bytes: None,
        };
        let ends = [2_000, 4_000, 6_000, 8_000];
        let marks = marks_of(&stream, &ends);
        let mut other = stream.clone();
        other[3_900] = b'X';
        let mut twin_head = stream[..1024].to_vec();
        twin_head.extend_from_slice(&vec![b'-'; 6_000]);
        // (what, file content, head known, expected)
        let cases: Vec<(&str, &[u8], StreamHead, Holds)> = vec![
            (
                "a copy of all that was read",
                &stream[..8_000],
                known,
                Holds::ProvenTo(8_000),
            ),
            (
                "a copy longer than what was read",
                &stream[..],
                known,
                Holds::ProvenTo(8_000),
            ),
            (
                "a copy shorter than what was read (copytruncate under a writer)",
                &stream[..7_000],
                known,
                Holds::ProvenTo(6_000),
            ),
            (
                "the same, known only from a checkpoint record",
                &stream[..7_000],
                saved,
                Holds::ProvenTo(6_000),
            ),
            (
                "a copy that ends before the first mark: its head only",
                &stream[..1_500],
                known,
                Holds::ProvenTo(1_024),
            ),
            (
                "a copy shorter than the head",
                &stream[..500],
                known,
                Holds::ProvenTo(500),
            ),
            (
                "shorter than the head, head not known",
                &stream[..500],
                saved,
                Holds::ProvenTo(0),
            ),
            (
                "the same head, then other bytes",
                &twin_head,
                known,
                Holds::Differs,
            ),
            (
                "one byte differs before a mark",
                &other,
                known,
                Holds::Differs,
            ),
            (
                "another head",
                b"something else entirely\n",
                known,
                Holds::Differs,
            ),
            ("empty", b"", known, Holds::ProvenTo(0)),
        ];
        for (what, content, head, want) in cases {
            let got = compare(&file_of(content), content.len() as u64, head, &marks).unwrap();
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn marks_thin_out_with_age_and_follow_take_backs() {
        let stream = vec![b'a'; 10_000_000];
        let mut marks = Marks::default();
        for end in (1..=5_000).map(|i| i * 1_000) {
            marks.note(end, &stream[..end as usize]);
        }
        let ends: Vec<u64> = marks.all().iter().map(|m| m.end).collect();
        assert_eq!(ends.len(), MARKS_KEPT);
        assert_eq!(ends[0], 1_000, "the oldest stays");
        assert_eq!(
            &ends[MARKS_KEPT - MARKS_RECENT..],
            &(4_993..=5_000).map(|k| k * 1_000).collect::<Vec<u64>>()[..],
            "the most recent stay"
        );
        // Every point of the stream has a mark not too far before it: at most its distance
        // from the end again (and a few reads), wherever a copy of it ends.
        for copy_end in [
            4_990_000u64,
            4_900_000,
            4_000_000,
            2_500_000,
            1_000_000,
            100_000,
        ] {
            let below = ends.iter().rev().find(|&&e| e <= copy_end).unwrap();
            let behind = 5_000_000 - copy_end;
            assert!(
                copy_end - below <= behind + 8_000,
                "a copy ending at {copy_end}: nearest mark {below} ({ends:?})"
            );
        }
        assert_eq!(marks.recent().len(), MARKS_PERSISTED);
        assert_eq!(marks.recent()[MARKS_PERSISTED - 1].end, 5_000_000);
        marks.take_back_to(4_998_500);
        assert_eq!(marks.all().last().unwrap().end, 4_998_000);
        // A stream restarted from an earlier offset replaces the marks past it.
        marks.note(10_000, &stream[..10]);
        assert_eq!(marks.all().last().unwrap().end, 10_000);
        assert!(marks.all().windows(2).all(|w| w[0].end < w[1].end));
        let saved = serde_json::to_string(marks.recent()).unwrap();
        let loaded: Vec<StreamMark> = serde_json::from_str(&saved).unwrap();
        assert_eq!(Marks::from_saved(&loaded).all(), marks.recent());
    }

    #[test]
    fn a_read_leaves_a_mark_at_every_block_boundary_and_at_its_end() {
        let stream: Vec<u8> = (0..30_000u32).map(|i| (i % 251) as u8).collect();
        // (read from, read to, marks left)
        let cases: &[(u64, u64, &[u64])] = &[
            (0, 100, &[100]),
            (100, 3_000, &[1_024, 2_048, 3_000]),
            (15_000, 26_000, &[15_360, 16_384, 20_480, 24_576, 26_000]),
            (20_480, 24_576, &[24_576]),
            // A boundary with few bytes of the read before it says little: left out.
            (20_470, 25_000, &[24_576, 25_000]),
        ];
        for &(from, to, want) in cases {
            let mut marks = Marks::default();
            marks.note_read(from, to, |at| {
                &stream[(at.saturating_sub(TAIL_BYTES as u64)).max(from) as usize..at as usize]
            });
            let ends: Vec<u64> = marks.all().iter().map(|m| m.end).collect();
            assert_eq!(ends, want, "{from}..{to}");
            for mark in marks.all() {
                let window = &stream[(mark.end - u64::from(mark.len)) as usize..mark.end as usize];
                assert_eq!(StreamMark::of(mark.end, window), *mark);
            }
        }
    }

    #[test]
    fn skipping_a_stream_compares_it_with_the_marks() {
        let stream: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let marks = marks_of(&stream, &[1_000, 70_000, 131_072, 200_000]);
        let mut other = stream.clone();
        other[199_990] ^= 1;
        // (what, stream, skip, expected skipped, expected holds)
        let cases: Vec<(&str, &[u8], u64, u64, Holds)> = vec![
            (
                "the same, past every mark",
                &stream,
                250_000,
                250_000,
                Holds::ProvenTo(200_000),
            ),
            (
                "the same, to a mark",
                &stream,
                131_072,
                131_072,
                Holds::ProvenTo(131_072),
            ),
            (
                "shorter than the skip",
                &stream[..150_000],
                250_000,
                150_000,
                Holds::ProvenTo(131_072),
            ),
            (
                "differs at the last mark",
                &other,
                250_000,
                262_144,
                Holds::Differs,
            ),
        ];
        for (what, content, n, skipped, holds) in cases {
            let got = skip_comparing(&mut &content[..], n, &marks).unwrap();
            assert_eq!(got.1, holds, "{what}");
            if holds != Holds::Differs {
                assert_eq!(got.0, skipped, "{what}");
            }
        }
    }
}
