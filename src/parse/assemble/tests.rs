//! Assembly tested through a framer: container pieces joined, groups held and released, limits.

use super::*;
use crate::parse::Pattern;
use crate::parse::multiline::Preset;
use crate::source::framing::Framer;

/// One event as the tests look at it: offset, message, stream, flags.
type Out = (u64, String, Option<Stream>, EventFlags);

struct Harness {
    assembler: Assembler,
    state: FileState,
    framer: Framer,
    start: Instant,
}

impl Harness {
    fn new(runtime: Option<Runtime>, multiline: Option<MultilineConfig>, max_line: usize) -> Self {
        let multiline = multiline.map(|m| (Rules::new(&m).unwrap(), m));
        Harness {
            assembler: Assembler::new(runtime, multiline, max_line),
            state: FileState::default(),
            framer: Framer::new(0, 1 << 20),
            start: Instant::now(),
        }
    }

    /// Feeds `text` and assembles at `ms` milliseconds after the start.
    fn feed(&mut self, text: &str, ms: u64, release_all: bool) -> (Vec<Out>, Option<u64>) {
        self.framer.push(text.as_bytes());
        let mut events = Vec::new();
        let framed = self.framer.frame(&mut events);
        let release = if release_all {
            Release::All
        } else {
            Release::Due(self.start + Duration::from_millis(ms))
        };
        let out = self
            .assembler
            .assemble(&mut self.state, framed.data, events, release);
        let got = out
            .events
            .iter()
            .map(|e| {
                let message = &out.data[e.start as usize..(e.start + e.len) as usize];
                (
                    e.offset,
                    String::from_utf8_lossy(message).into_owned(),
                    e.stream,
                    e.flags,
                )
            })
            .collect();
        (got, out.hold_from)
    }
}

fn messages(out: &[Out]) -> Vec<(u64, &str)> {
    out.iter().map(|(o, m, _, _)| (*o, m.as_str())).collect()
}

fn multiline(preset: Option<Preset>, start: Option<&str>, max_lines: usize) -> MultilineConfig {
    MultilineConfig {
        preset,
        start_pattern: start.map(|p| Pattern::new(p).unwrap()),
        continue_pattern: None,
        timeout_ms: 100,
        max_lines,
        max_bytes: 1 << 20,
    }
}

const T: &str = "2026-11-25T04:55:03.000000001Z";

#[test]
fn cri_pieces_join_across_reads_and_hold_the_checkpoint() {
    let mut h = Harness::new(Some(Runtime::Cri), None, 1 << 20);
    let first = format!("{T} stdout F whole\n{T} stdout P long \n");
    let (out, hold) = h.feed(&first, 0, false);
    assert_eq!(messages(&out), [(0, "whole")]);
    let piece_at = (T.len() + " stdout F whole\n".len()) as u64;
    assert_eq!(hold, Some(piece_at), "the piece's line is not acked alone");
    let (out, hold) = h.feed(
        &format!("{T} stdout P line \n{T} stdout F end\n{T} stderr F oops\n"),
        0,
        false,
    );
    assert_eq!(messages(&out)[0], (piece_at, "long line end"));
    assert_eq!(out[1].1, "oops");
    assert_eq!(out[1].2, Some(Stream::Stderr));
    assert_eq!(hold, None);
}

#[test]
fn interleaved_streams_join_per_stream_in_first_piece_order() {
    let mut h = Harness::new(Some(Runtime::Cri), None, 1 << 20);
    let text = format!("{T} stdout P a1 \n{T} stderr F b\n{T} stdout F a2\n");
    let (out, hold) = h.feed(&text, 0, false);
    assert_eq!(messages(&out), [(0, "a1 a2"), (T.len() as u64 + 14, "b")]);
    assert_eq!(hold, None);
}

#[test]
fn joined_lines_are_cut_at_the_line_limit() {
    let mut h = Harness::new(Some(Runtime::Cri), None, 8);
    let (out, _) = h.feed(
        &format!("{T} stdout P 12345\n{T} stdout F 6789abc\n"),
        0,
        false,
    );
    assert_eq!(out[0].1, "12345678");
    assert!(out[0].3.truncated);
}

#[test]
fn bad_runtime_lines_pass_through_raw_with_an_error() {
    let mut h = Harness::new(Some(Runtime::Docker), None, 1 << 20);
    let text = "not json\n{\"log\":\"a\\\"b\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-25T04:55:03Z\"}\n";
    h.framer.push(text.as_bytes());
    let mut events = Vec::new();
    let framed = h.framer.frame(&mut events);
    let out = h
        .assembler
        .assemble(&mut h.state, framed.data, events, Release::All);
    assert_eq!(out.events.len(), 2);
    assert!(
        out.events[0]
            .parse_error
            .as_deref()
            .unwrap()
            .starts_with("docker:")
    );
    let message = |e: &Event| &out.data[e.start as usize..(e.start + e.len) as usize];
    assert_eq!(message(&out.events[0]), b"not json");
    assert_eq!(message(&out.events[1]), b"a\"b");
    assert!(out.events[1].time.is_some());
}

#[test]
fn docker_pieces_join() {
    let mut h = Harness::new(Some(Runtime::Docker), None, 1 << 20);
    let piece = |log: &str| {
        format!("{{\"log\":\"{log}\",\"stream\":\"stdout\",\"time\":\"2026-11-25T04:55:03Z\"}}\n")
    };
    let text = format!(
        "{}{}{}",
        piece("first "),
        piece("\\tsecond\\n"),
        piece("next\\n")
    );
    let (out, hold) = h.feed(&text, 0, false);
    assert_eq!(messages(&out), [(0, "first \tsecond"), (134, "next")]);
    assert_eq!(hold, None);
}

const TRACE: &str = "ERROR boom\njava.lang.IllegalStateException: x\n\tat a.B.c(B.java:1)\n";

#[test]
fn an_unfinished_group_is_held_and_shipped_whole() {
    let mut h = Harness::new(
        None,
        Some(multiline(Some(Preset::Java), None, 100)),
        1 << 20,
    );
    let (out, hold) = h.feed(TRACE, 0, false);
    assert!(out.is_empty());
    assert_eq!(hold, Some(0));
    let (out, hold) = h.feed("\tat a.B.d(B.java:2)\nCaused by: y\n", 50, false);
    assert!(out.is_empty());
    assert_eq!(hold, Some(0));
    let (out, hold) = h.feed("INFO next\n", 60, false);
    assert_eq!(
        messages(&out),
        [(
            0,
            "ERROR boom\njava.lang.IllegalStateException: x\n\tat a.B.c(B.java:1)\n\tat a.B.d(B.java:2)\nCaused by: y"
        )]
    );
    assert_eq!(hold, Some(TRACE.len() as u64 + 33));
    // The last group goes once the timeout passed without a new line...
    let (out, _) = h.feed("", 159, false);
    assert!(out.is_empty());
    let (out, hold) = h.feed("", 160, false);
    assert_eq!(messages(&out), [(TRACE.len() as u64 + 33, "INFO next")]);
    assert_eq!(hold, None);
    assert!(h.state.is_idle());
}

#[test]
fn a_group_within_one_read_is_a_slice_of_it() {
    let mut h = Harness::new(None, Some(multiline(None, Some("^[A-Z]"), 100)), 1 << 20);
    let text = "A one\n two\n three\nB\n";
    h.framer.push(text.as_bytes());
    let mut events = Vec::new();
    let framed = h.framer.frame(&mut events);
    let len = framed.data.len();
    let out = h
        .assembler
        .assemble(&mut h.state, framed.data, events, Release::All);
    assert_eq!(out.data.len(), len, "nothing written");
    assert_eq!(out.events.len(), 2);
    assert_eq!(
        &out.data[..out.events[0].len as usize],
        b"A one\n two\n three"
    );
    assert_eq!(out.groups, 1);
}

#[test]
fn limits_cut_groups_and_flag_both_parts() {
    let mut h = Harness::new(None, Some(multiline(None, Some("^[A-Z]"), 2)), 1 << 20);
    let (out, _) = h.feed("A\n 1\n 2\n 3\nB\n", 0, true);
    let got: Vec<(&str, bool)> = out
        .iter()
        .map(|o| (o.1.as_str(), o.3.multiline_cut))
        .collect();
    assert_eq!(got, [("A\n 1", true), (" 2\n 3", true), ("B", false)]);
    let mut h = Harness::new(
        None,
        Some(MultilineConfig {
            max_bytes: 5,
            ..multiline(None, Some("^[A-Z]"), 100)
        }),
        1 << 20,
    );
    let (out, _) = h.feed("A\n 1\n 2\n 3\n", 0, true);
    let got: Vec<&str> = out.iter().map(|o| o.1.as_str()).collect();
    assert_eq!(got, ["A\n 1", " 2\n 3"]);
}

#[test]
fn cri_lines_group_into_a_trace() {
    let mut h = Harness::new(
        Some(Runtime::Cri),
        Some(multiline(Some(Preset::Go), None, 100)),
        1 << 20,
    );
    let text = format!(
        "{T} stderr F panic: boom\n{T} stderr F \n{T} stderr F goroutine 1 [running]:\n{T} stderr P main.ma\n{T} stderr F in()\n{T} stdout F next\n"
    );
    let (out, _) = h.feed(&text, 0, true);
    assert_eq!(
        messages(&out)[0],
        (0, "panic: boom\n\ngoroutine 1 [running]:\nmain.main()")
    );
    assert_eq!(out[1].1, "next");
    assert_eq!(out[0].2, Some(Stream::Stderr));
}
