//! Property tests: no parser panics or grows its output without bound on arbitrary bytes, and
//! framing + assembly (multiline groups, container pieces) never lose, duplicate or reorder a
//! byte of input, whatever the read sizes and however long the pauses between reads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use log_agent::event::{Event, FieldsView, Stream};
use log_agent::parse::assemble::{Assembler, FileState, Release, Runtime};
use log_agent::parse::multiline::{MultilineConfig, Preset, Rules};
use log_agent::parse::{Format, LineParser, Pattern, access, cri, docker, time};
use log_agent::source::framing::Framer;
use proptest::prelude::*;

/// Bytes biased towards what the scanners look for.
fn line_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        any::<u8>().prop_map(|b| vec![b]),
        Just(b"\"".to_vec()),
        Just(b"\\".to_vec()),
        Just(b" ".to_vec()),
        Just(b"=".to_vec()),
        Just(b"[25/Nov/2026:04:55:03 +0000]".to_vec()),
        Just(b"2026-11-25T04:55:03.1Z stdout P ".to_vec()),
        Just(br#"{"log":"x\n","stream":"stderr","time":"2026-11-25T04:55:03Z"}"#.to_vec()),
        Just(b"2026/11/25 04:55:03 [error] 1#1: ".to_vec()),
        Just(b", client: ".to_vec()),
        Just(b"\\u".to_vec()),
        Just(b"{".to_vec()),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

/// A generous bound on what parsing `len` bytes may produce: every byte can become a U+FFFD
/// (3 bytes) and then a JSON escape.
fn bound(len: usize) -> usize {
    16 * len + 512
}

/// Bytes that are often JSON, often nearly so: the pieces of objects, odd numbers, escapes.
fn json_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => Just(b"{".to_vec()),
        4 => Just(b"}".to_vec()),
        2 => Just(b"[".to_vec()),
        2 => Just(b"]".to_vec()),
        6 => Just(b"\"k\"".to_vec()),
        2 => Just(b"\"k2\"".to_vec()),
        6 => Just(b":".to_vec()),
        6 => Just(b",".to_vec()),
        2 => Just(b" ".to_vec()),
        1 => Just(b"\t\r".to_vec()),
        2 => Just(b"\"v\"".to_vec()),
        1 => Just(b"\"caf\\u00e9 \\ud83d\\ude00\"".to_vec()),
        1 => Just(b"\"a\\/b \\\" \\\\ \\n\"".to_vec()),
        1 => Just(b"\"\\ud800\"".to_vec()),
        1 => Just(b"\"k\\u0041\"".to_vec()),
        2 => Just(b"12".to_vec()),
        1 => Just(b"-0".to_vec()),
        1 => Just(b"0.10".to_vec()),
        1 => Just(b"1e3".to_vec()),
        1 => Just(b"-12.5E-3".to_vec()),
        1 => Just(b"01".to_vec()),
        1 => Just(b"123456789012345678901234".to_vec()),
        1 => Just(b"true".to_vec()),
        1 => Just(b"nul".to_vec()),
        1 => Just(b"\xff".to_vec()),
        1 => Just("\"é\"".as_bytes().to_vec()),
        1 => Just(b"\x01".to_vec()),
    ];
    let random = proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat());
    let key = prop_oneof![
        Just("\"k\"".to_owned()),
        Just("\"k2\"".to_owned()),
        Just("\"caf\\u00e9\"".to_owned()),
        Just("\"tab\\t\"".to_owned()),
        Just("\"é\"".to_owned()),
    ];
    let scalar = prop_oneof![
        Just("\"v\"".to_owned()),
        Just("\"a\\/b \\\" \\\\ \\n\"".to_owned()),
        Just("\"\\ud83d\\ude00\"".to_owned()),
        Just("12".to_owned()),
        Just("-0".to_owned()),
        Just("0.10".to_owned()),
        Just("1e3".to_owned()),
        Just("123456789012345678901234".to_owned()),
        Just("true".to_owned()),
        Just("null".to_owned()),
    ];
    let value = scalar.prop_recursive(3, 12, 4, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4)
                .prop_map(|v| format!("[{}]", v.join(","))),
            proptest::collection::vec(("\"n\"", inner), 0..3).prop_map(|members| {
                let members: Vec<String> =
                    members.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{ {} }}", members.join(" , "))
            }),
        ]
    });
    let object = proptest::collection::vec((key, value, any::<bool>()), 0..6).prop_map(|members| {
        let members: Vec<String> = members
            .iter()
            .map(|(k, v, spaced)| {
                if *spaced {
                    format!(" {k} : {v} ")
                } else {
                    format!("{k}:{v}")
                }
            })
            .collect();
        format!("{{{}}}", members.join(",")).into_bytes()
    });
    prop_oneof![random, object]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn json_lines_give_the_members_serde_json_reads(line in json_bytes()) {
        let parser = LineParser::new(Format::Json, None);
        let mut event = Event::new(0, line.len() as u32, 0);
        let mut store = Vec::new();
        let parsed = parser.parse(&mut event, &line, &mut store);
        let object: Option<serde_json::Map<String, serde_json::Value>> = event.fields.map(|range| {
            FieldsView::new(&line, &store, range)
                .iter()
                .map(|field| (field.name().into_owned(), field.to_value()))
                .collect()
        });
        let whole = serde_json::from_slice::<serde_json::Value>(&line).ok();
        prop_assert_eq!(
            whole.filter(serde_json::Value::is_object),
            object.map(serde_json::Value::Object),
            "{}", String::from_utf8_lossy(&line)
        );
        prop_assert_eq!(parsed, event.fields.is_some());
    }

    #[test]
    fn parsers_never_panic_and_stay_bounded(line in line_bytes()) {
        let regex = Pattern::new(r"^(?P<a>\S+) (?P<b>\d+)?(?P<rest>.*)$").unwrap();
        for format in [
            Format::Json, Format::Logfmt, Format::Regex, Format::NginxCombined,
            Format::NginxError, Format::ApacheCommon, Format::ApacheCombined,
        ] {
            let parser = LineParser::new(format, Some(&regex));
            let mut event = Event::new(0, line.len() as u32, 0);
            let mut store = Vec::new();
            let parsed = parser.parse(&mut event, &line, &mut store);
            prop_assert_eq!(parsed, event.fields.is_some());
            prop_assert_eq!(parsed, event.parse_error.is_none());
            let object: serde_json::Map<String, serde_json::Value> = event
                .fields
                .map(|range| FieldsView::new(&line, &store, range))
                .iter()
                .flat_map(|fields| fields.iter())
                .map(|field| (field.name().into_owned(), field.to_value()))
                .collect();
            if format == Format::Json {
                // The members kept where they are in the line are what serde_json reads.
                let whole = serde_json::from_slice::<serde_json::Value>(&line).ok();
                prop_assert_eq!(
                    whole.filter(serde_json::Value::is_object),
                    parsed.then(|| serde_json::Value::Object(object.clone()))
                );
            }
            let size = serde_json::to_vec(&object).unwrap().len()
                + event.parse_error.as_ref().map_or(0, |e| e.len());
            prop_assert!(size <= bound(line.len()), "{:?}: {} bytes from {}", format, size, line.len());
        }
        let _ = access::scan(&line, access::Layout::NginxCombined);
        if let Ok(c) = cri::parse(&line) {
            prop_assert!(c.message_start <= line.len());
        }
        if let Ok(d) = docker::parse(&line) {
            let mut out = Vec::new();
            if d.unescape_into(&mut out).is_ok() {
                prop_assert!(out.len() <= 3 * line.len());
            }
        }
        for format in ["rfc3339", "common_log", "nginx_error", "unix", "unix_ms", "%Y-%m-%d %H:%M:%S"] {
            let _ = time::TimeFormat::from_name(format).unwrap().parse(&line);
        }
    }

    #[test]
    fn rfc3339_round_trips(nanos in any::<i64>()) {
        let mut text = Vec::new();
        time::write_rfc3339(&mut text, nanos);
        prop_assert_eq!(time::parse_rfc3339(&text), Some(nanos));
    }
}

/// Lines a trace-heavy log is made of.
fn trace_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("2026-11-25 INFO ok".to_owned()),
        Just("java.lang.IllegalStateException: x".to_owned()),
        Just("\tat a.B.c(B.java:1)".to_owned()),
        Just("Caused by: y".to_owned()),
        Just("\t... 3 more".to_owned()),
        Just("Traceback (most recent call last):".to_owned()),
        Just("  File \"a.py\", line 1".to_owned()),
        Just("ValueError: v".to_owned()),
        Just("panic: p".to_owned()),
        Just("goroutine 1 [running]:".to_owned()),
        Just("main.main()".to_owned()),
        Just(String::new()),
        "[a-z ]{0,12}",
    ]
}

fn rules() -> impl Strategy<Value = MultilineConfig> {
    let rule = prop_oneof![
        Just((Some(Preset::Java), None)),
        Just((Some(Preset::Python), None)),
        Just((Some(Preset::Go), None)),
        Just((None, Some(r"^\d{4}-"))),
    ];
    (rule, 1usize..6, 1usize..120).prop_map(|((preset, start), max_lines, max_bytes)| {
        MultilineConfig {
            preset,
            start_pattern: start.map(|p| Pattern::new(p).unwrap()),
            continue_pattern: None,
            timeout_ms: 50,
            max_lines,
            max_bytes,
        }
    })
}

/// Feeds `input` in pieces cut at `cuts`, assembling after each with a clock that advances by
/// `pauses` (ms), then releases everything; returns each event's (offset, message) and checks
/// after each piece that what is held starts where the shipped lines end.
fn run(
    assembler: &Assembler,
    input: &[u8],
    cuts: &[usize],
    pauses: &[u64],
    line_starts: &[u64],
) -> Result<Vec<(u64, Vec<u8>)>, TestCaseError> {
    let mut framer = Framer::new(0, 1 << 20);
    let mut state = FileState::default();
    let mut shipped: Vec<(u64, Vec<u8>)> = Vec::new();
    let start = Instant::now();
    let mut clock = 0;
    let mut at = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.sort_unstable();
    points.push(input.len());
    for (i, point) in points.into_iter().enumerate() {
        let last = i == cuts.len();
        framer.push(&input[at..point.max(at)]);
        at = point.max(at);
        clock += pauses.get(i).copied().unwrap_or(0);
        let mut events = Vec::new();
        let framed = if last {
            framer.finish(&mut events)
        } else {
            framer.frame(&mut events)
        };
        let release = if last {
            Release::All
        } else {
            Release::Due(start + Duration::from_millis(clock))
        };
        let out = assembler.assemble(&mut state, framed.data, events, release);
        for e in &out.events {
            let message = out.data[e.start as usize..(e.start + e.len) as usize].to_vec();
            shipped.push((e.offset, message));
        }
        // The checkpoint this chunk allows stops at the first line not shipped yet.
        let lines_shipped: usize = shipped
            .iter()
            .map(|(_, m)| m.split(|&b| b == b'\n').count())
            .sum();
        let lines_framed = input[..at].iter().filter(|&&b| b == b'\n').count();
        let first_held = (lines_shipped < lines_framed).then(|| line_starts[lines_shipped]);
        prop_assert_eq!(out.hold_from, first_held);
    }
    prop_assert!(state.is_idle());
    Ok(shipped)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn multiline_loses_and_reorders_nothing(
        lines in proptest::collection::vec(trace_line(), 0..40),
        config in rules(),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        pauses in proptest::collection::vec(0u64..80, 0..9),
    ) {
        let input: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\n").into_bytes()).collect();
        let mut line_starts = Vec::new();
        let mut offset = 0u64;
        for line in &lines {
            line_starts.push(offset);
            offset += line.len() as u64 + 1;
        }
        let rules = Rules::new(&config).unwrap();
        let assembler = Assembler::new(None, Some((rules, config.clone())), 1 << 20);
        let shipped = run(&assembler, &input, &cuts, &pauses, &line_starts)?;
        // Every event starts at a line start, in order, and the messages, joined, are the input.
        let offsets: Vec<u64> = shipped.iter().map(|(o, _)| *o).collect();
        prop_assert!(offsets.windows(2).all(|w| w[0] < w[1]));
        for (o, message) in &shipped {
            prop_assert!(line_starts.contains(o));
            let count = message.split(|&b| b == b'\n').count();
            prop_assert!(count <= config.max_lines);
            prop_assert!(count == 1 || message.len() <= config.max_bytes);
        }
        let joined: Vec<Vec<u8>> = shipped.into_iter().map(|(_, m)| m).collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        prop_assert_eq!(joined.join(&b'\n'), lines.join("\n").into_bytes());
    }

    #[test]
    fn cri_pieces_join_into_the_lines_written(
        lines in proptest::collection::vec(("[a-z ]{0,20}", proptest::collection::vec(0usize..20, 0..3), any::<bool>()), 0..20),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        // Each line written by the container is split into pieces by the runtime (P ... F).
        let mut input = Vec::new();
        let mut want: Vec<(Stream, String)> = Vec::new();
        for (text, splits, stderr) in &lines {
            let stream = if *stderr { "stderr" } else { "stdout" };
            let mut points: Vec<usize> = splits.iter().map(|s| s % (text.len() + 1)).collect();
            points.sort_unstable();
            let mut from = 0;
            for point in points {
                input.extend_from_slice(format!("2026-11-25T04:55:03Z {stream} P {}\n", &text[from..point]).as_bytes());
                from = point;
            }
            input.extend_from_slice(format!("2026-11-25T04:55:03Z {stream} F {}\n", &text[from..]).as_bytes());
            want.push((if *stderr { Stream::Stderr } else { Stream::Stdout }, text.clone()));
        }
        let assembler = Assembler::new(Some(Runtime::Cri), None, 1 << 20);
        let mut framer = Framer::new(0, 1 << 20);
        let mut state = FileState::default();
        let mut got = Vec::new();
        let mut at = 0;
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        points.sort_unstable();
        points.push(input.len());
        for point in points {
            framer.push(&input[at..point.max(at)]);
            at = point.max(at);
            let mut events = Vec::new();
            let framed = framer.frame(&mut events);
            let out = assembler.assemble(&mut state, framed.data, events, Release::Due(Instant::now()));
            for e in &out.events {
                let message = String::from_utf8(out.data[e.start as usize..(e.start + e.len) as usize].to_vec()).unwrap();
                got.push((e.stream.unwrap(), message));
            }
        }
        prop_assert!(state.is_idle());
        // Lines of one stream come out in order; the two streams may interleave differently.
        for stream in [Stream::Stdout, Stream::Stderr] {
            let of = |v: &[(Stream, String)]| v.iter().filter(|(s, _)| *s == stream).map(|(_, m)| m.clone()).collect::<Vec<_>>();
            prop_assert_eq!(of(&got), of(&want));
        }
    }
}
