//! The `parse` and `parse_lines` benchmarks: every format (`FormatCase`) on ~1 MiB of its own
//! lines, parsed by a line parser or assembled first (container lines, multiline), in MiB/s
//! and in lines/s.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput};
use log_agent::event::Event;
use log_agent::parse::assemble::{Assembler, FileState, Release, Runtime};
use log_agent::parse::multiline::{MultilineConfig, Preset, Rules};
use log_agent::parse::{Format, LineParser, Pattern};

use super::corpus::{
    corpus, events_of, java_entry, json_line, logfmt_line, nginx_error_line, nginx_line,
};
use super::{CORPUS_BYTES, DEFAULT_MAX_LINE};

/// A line format's corpus and how it is parsed.
struct FormatCase {
    name: &'static str,
    data: Vec<u8>,
    lines: u64,
    events: Vec<Event>,
    stage: Stage,
}

/// What a format bench runs: a line parser, or assembly (container lines, multiline) first.
enum Stage {
    Lines(LineParser),
    Assembled(Assembler),
}

impl FormatCase {
    /// ~1 MiB of lines from `generate`, parsed by `stage`.
    fn new(
        name: &'static str,
        generate: impl FnMut(&mut fastrand::Rng) -> String,
        stage: Stage,
    ) -> Self {
        let (data, lines) = corpus(CORPUS_BYTES, "\n", generate);
        let events = events_of(&data);
        FormatCase {
            name,
            data,
            lines,
            events,
            stage,
        }
    }

    /// Parses a fresh copy of the events and returns them (criterion drops them untimed).
    fn run(&self, data: &Bytes, events: Vec<Event>) -> Vec<Event> {
        match &self.stage {
            Stage::Lines(parser) => {
                let mut events = events;
                let mut fields = Vec::new();
                parser.parse_all(data, &mut events, &mut fields);
                black_box(&fields);
                events
            }
            Stage::Assembled(assembler) => {
                let mut state = FileState::default();
                let out = assembler.assemble(&mut state, data.clone(), events, Release::All);
                black_box(&out.data);
                out.events
            }
        }
    }
}

const CRI_TIME: &str = "2026-11-25T04:55:03.123456789Z";

/// The regex of the `regex` bench: nginx combined with named groups.
const NGINX_REGEX: &str = r#"^(?P<client>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<protocol>[^"]+)" (?P<status>\d+) (?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<user_agent>[^"]*)"$"#;

/// Every format, on ~1 MiB of its own lines.
fn format_cases() -> Vec<FormatCase> {
    let pattern = Pattern::new(NGINX_REGEX).unwrap();
    let lines = |format| Stage::Lines(LineParser::new(format, Some(&pattern)));
    let cri = |rng: &mut fastrand::Rng| format!("{CRI_TIME} stdout F {}", nginx_line(rng));
    let docker = |rng: &mut fastrand::Rng| {
        let log = serde_json::to_string(&format!("{}\n", nginx_line(rng))).unwrap();
        format!("{{\"log\":{log},\"stream\":\"stdout\",\"time\":\"{CRI_TIME}\"}}")
    };
    let apache_common = |rng: &mut fastrand::Rng| {
        let line = nginx_line(rng);
        let end = line
            .match_indices(" \"")
            .nth(1)
            .map_or(line.len(), |(i, _)| i);
        line[..end].to_owned()
    };
    let java = MultilineConfig {
        preset: Some(Preset::Java),
        start_pattern: None,
        continue_pattern: None,
        timeout_ms: 1000,
        max_lines: 500,
        max_bytes: 1 << 20,
    };
    let java = Assembler::new(
        None,
        Some((Rules::new(&java).unwrap(), java)),
        DEFAULT_MAX_LINE,
    );
    vec![
        FormatCase::new("json", json_line, lines(Format::Json)),
        FormatCase::new("json_all_invalid", nginx_line, lines(Format::Json)),
        FormatCase::new("raw", nginx_line, lines(Format::Raw)),
        FormatCase::new("logfmt", logfmt_line, lines(Format::Logfmt)),
        FormatCase::new("regex_nginx", nginx_line, lines(Format::Regex)),
        FormatCase::new("nginx_combined", nginx_line, lines(Format::NginxCombined)),
        FormatCase::new("apache_common", apache_common, lines(Format::ApacheCommon)),
        FormatCase::new("nginx_error", nginx_error_line, lines(Format::NginxError)),
        FormatCase::new(
            "cri",
            cri,
            Stage::Assembled(Assembler::new(Some(Runtime::Cri), None, DEFAULT_MAX_LINE)),
        ),
        FormatCase::new(
            "docker",
            docker,
            Stage::Assembled(Assembler::new(
                Some(Runtime::Docker),
                None,
                DEFAULT_MAX_LINE,
            )),
        ),
        FormatCase::new("multiline_java", java_entry, Stage::Assembled(java)),
    ]
}

/// Each format in MiB/s (`parse`) and in lines/s (`parse_lines`). Each iteration parses fresh
/// (unparsed) events; dropping the parsed fields is not timed.
pub fn parse(c: &mut Criterion) {
    let cases = format_cases();
    for case in &cases {
        eprintln!(
            "corpus {}: {} bytes, {} lines, {:.1} bytes/line",
            case.name,
            case.data.len(),
            case.lines,
            case.data.len() as f64 / case.lines as f64
        );
    }
    for (group_name, bytes) in [("parse", true), ("parse_lines", false)] {
        let mut group = c.benchmark_group(group_name);
        for case in &cases {
            let data = Bytes::from(case.data.clone());
            assert!(
                !case.run(&data, case.events.clone()).is_empty(),
                "{}",
                case.name
            );
            group.throughput(if bytes {
                Throughput::Bytes(case.data.len() as u64)
            } else {
                Throughput::Elements(case.lines)
            });
            group.bench_function(case.name, |b| {
                b.iter_batched(
                    || case.events.clone(),
                    |events| case.run(black_box(&data), events),
                    BatchSize::LargeInput,
                )
            });
        }
        group.finish();
    }
}
