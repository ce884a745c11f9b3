//! Every line parser on arbitrary bytes: byte 0 picks the parser, the rest is the line.
//!
//! Checked: no panic, no stack overflow (deeply nested JSON), and a parse either gives fields
//! or sets `parse_error`, never both.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use log_agent::event::{Event, FieldsView};
use log_agent::parse::{Format, LineParser, Pattern, cri, docker, time};

const FORMATS: [Format; 7] = [
    Format::Json,
    Format::Logfmt,
    Format::Regex,
    Format::NginxCombined,
    Format::NginxError,
    Format::ApacheCommon,
    Format::ApacheCombined,
];

const TIME_FORMATS: [&str; 7] = [
    "rfc3339",
    "common_log",
    "nginx_error",
    "unix",
    "unix_ms",
    "unix_ns",
    "%Y-%m-%d %H:%M:%S%.f",
];

static PATTERN: LazyLock<Option<Pattern>> = LazyLock::new(|| {
    Pattern::new(r"^(?P<time>\S+ \S+) (?P<level>[A-Z]+) (?P<message>(?s:.*))$").ok()
});

fuzz_target!(|input: &[u8]| {
    let [which, line @ ..] = input else {
        return;
    };
    let which = usize::from(*which);
    match which % 10 {
        n @ 0..7 => {
            let parser = LineParser::new(FORMATS[n], PATTERN.as_ref());
            let mut event = Event::new(0, u32::try_from(line.len()).unwrap_or(u32::MAX), 0);
            let mut store = Vec::new();
            let parsed = parser.parse(&mut event, line, &mut store);
            assert_eq!(parsed, event.fields.is_some());
            assert_eq!(parsed, event.parse_error.is_none());
            if let Some(range) = event.fields {
                // Every field reads back as a value (the spans are inside the line).
                for field in FieldsView::new(line, &store, range).iter() {
                    let _ = field.to_value();
                }
            }
        }
        7 => {
            if let Ok(parsed) = cri::parse(line) {
                assert!(parsed.message_start <= line.len());
            }
        }
        8 => {
            if let Ok(parsed) = docker::parse(line) {
                let mut out = Vec::new();
                let _ = parsed.unescape_into(&mut out);
            }
        }
        _ => {
            if let Ok(format) = time::TimeFormat::from_name(TIME_FORMATS[which / 10 % 7]) {
                let _ = format.parse(line);
            }
        }
    }
});
