//! Golden outputs: for each line format, a fixture of lines (ordinary ones, escapes, odd
//! numbers, duplicate keys, keys the agent sets itself, lines that do not parse) goes through
//! framing, the source's parsing stages and the JSON encoder, and must give exactly the NDJSON
//! kept beside it in `tests/fixtures/golden/`. A change to the parsers or the encoder that
//! changes a byte of it shows here; when the change is meant, `GOLDEN_UPDATE=1` rewrites the
//! expected files, and the diff is argued in the commit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use log_agent::event::{Chunk, FileMeta};
use log_agent::parse::SourceParser;
use log_agent::parse::assemble::{FileState, Release};
use log_agent::sink::encoding::encode_json;
use log_agent::source::SourceKind;
use log_agent::source::framing::Framer;

/// (expected output's name, fixture, the source's settings besides `type` and `include`)
const CASES: &[(&str, &str, &str)] = &[
    ("json", "json.log", "format: json"),
    (
        "json_timestamp_filter",
        "json.log",
        "format: json
    timestamp: { field: ts, format: rfc3339 }
    filter: { field: level, pattern: '^debug$', action: drop }
    fields: { env: test, n: 1 }",
    ),
    ("logfmt", "logfmt.log", "format: logfmt"),
    (
        "nginx_combined",
        "nginx_combined.log",
        "format: nginx_combined",
    ),
    (
        "apache_common",
        "apache_common.log",
        "format: apache_common",
    ),
    ("nginx_error", "nginx_error.log", "format: nginx_error"),
    (
        "regex",
        "regex.log",
        r"format: regex
    pattern: '^(?P<time>\S+ \S+) (?P<level>[A-Z]+) (?P<status>\d+) took (?P<took>[\d.]+)ms user=(?P<user>\w+)$'
    timestamp: { field: time, format: '%Y-%m-%d %H:%M:%S' }",
    ),
    ("raw", "nginx_combined.log", "format: raw"),
];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

/// What the agent writes for the lines of `fixture` read by a source with `settings`.
fn encode(fixture: &str, settings: &str) -> Vec<u8> {
    let config = common::config(&format!(
        "data_dir: /nonexistent
sources:
  app:
    type: file
    include: [/logs/*.log]
    {settings}
sinks:
  out: {{ type: blackhole, inputs: [app] }}
"
    ));
    let SourceKind::File(source) = &config.sources["app"].kind else {
        panic!("a file source");
    };
    let parser = SourceParser::new(source.parsing());
    let bytes = fs::read(fixtures().join(fixture)).unwrap();
    let mut framer = Framer::new(0, source.max_line_bytes);
    framer.push(&bytes);
    let mut events = Vec::new();
    let framed = framer.finish(&mut events);
    let parsed = parser.process(&mut FileState::default(), framed.data, events, Release::All);
    let meta = FileMeta::new(0xab, "app", "/logs/app.log")
        .with_enrichment(Arc::clone(parser.enrichment()));
    let chunk = Chunk {
        file: Arc::new(meta),
        read_time: "2026-12-06T00:00:00.000000Z".into(),
        data: parsed.data,
        events: parsed.events,
        fields: std::sync::Arc::new(parsed.fields),
        lane: 0,
        end_offset: bytes.len() as u64,
    };
    let mut out = Vec::new();
    for event in &chunk.events {
        encode_json(&chunk, event, &mut out);
    }
    out
}

#[test]
fn every_format_gives_its_golden_output() {
    let update = std::env::var_os("GOLDEN_UPDATE").is_some();
    let mut differ = Vec::new();
    for (name, fixture, settings) in CASES {
        let got = encode(fixture, settings);
        let expected_path = fixtures().join(format!("{name}.ndjson"));
        if update {
            fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let want = fs::read(&expected_path).unwrap_or_default();
        if got != want {
            let got = String::from_utf8_lossy(&got).into_owned();
            let want = String::from_utf8_lossy(&want).into_owned();
            let first = got
                .lines()
                .zip(want.lines())
                .find(|(g, w)| g != w)
                .map(|(g, w)| format!("\n  got:  {g}\n  want: {w}"))
                .unwrap_or_else(|| "\n  (a line more or less)".to_owned());
            differ.push(format!("{name}:{first}"));
        }
    }
    assert!(differ.is_empty(), "outputs differ:\n{}", differ.join("\n"));
}
