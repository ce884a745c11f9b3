//! The parsing stages together: formats, timestamps, filters and enrichment over framed lines.

use super::*;
use crate::event::fields::testing::owned;
use serde_json::json;

#[test]
fn bad_patterns_are_one_line_errors() {
    for bad in ["(unclosed", "a{2,1}", "[z-a]", r"\q"] {
        let err = Pattern::new(bad).err().unwrap().to_string();
        assert!(
            err.starts_with(&format!("invalid regex `{bad}`: ")),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }
    let ok = Pattern::new(r"^(?P<a>\d+)").unwrap();
    assert!(ok.regex().is_match(b"12"));
    assert_eq!(ok.as_str(), r"^(?P<a>\d+)");
}

#[test]
fn every_format_parses_its_own_line_and_flags_others() {
    // (format, a line of it, a key it must give)
    let cases: &[(Format, &[u8], &str)] = &[
        (Format::Json, br#"{"level":"info"}"#, "level"),
        (Format::Logfmt, b"level=info msg=x", "level"),
        (
            Format::NginxCombined,
            br#"1.2.3.4 - - [25/Nov/2026:04:55:03 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8""#,
            "status",
        ),
        (
            Format::ApacheCommon,
            br#"1.2.3.4 - - [25/Nov/2026:04:55:03 +0000] "GET / HTTP/1.1" 200 5"#,
            "status",
        ),
        (
            Format::ApacheCombined,
            br#"1.2.3.4 - - [25/Nov/2026:04:55:03 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8""#,
            "user_agent",
        ),
        (
            Format::NginxError,
            b"2026/11/25 04:55:03 [error] 1#1: boom",
            "level",
        ),
    ];
    let parse = |parser: &LineParser, line: &[u8]| {
        let mut event = Event::new(0, line.len() as u32, 0);
        let mut store = Vec::new();
        let ok = parser.parse(&mut event, line, &mut store);
        (ok, event, store)
    };
    for (format, line, key) in cases {
        let parser = LineParser::new(*format, None);
        let (ok, event, store) = parse(&parser, line);
        assert!(ok, "{format:?}");
        let fields = FieldsView::new(line, &store, event.fields.unwrap());
        assert!(fields.get(key).is_some(), "{format:?}");
        let (ok, bad, store) = parse(&parser, b"\x00 not a line \xff");
        assert!(!ok, "{format:?}");
        assert!(
            bad.fields.is_none() && bad.parse_error.is_some() && store.is_empty(),
            "{format:?}"
        );
    }
    // The access and error layouts carry the event time.
    let (_, event, _) = parse(&LineParser::new(Format::NginxError, None), cases[5].1);
    assert!(event.time.is_some());
    // `regex` without a usable pattern fails every line rather than dropping it.
    let (ok, event, _) = parse(&LineParser::new(Format::Regex, None), b"x");
    assert!(!ok);
    assert!(event.parse_error.is_some());
}

#[test]
fn timestamps_from_fields_or_a_flag() {
    let rule = TimestampConfig {
        field: "ts".into(),
        format: TimeFormat::UnixMillis,
    };
    let cases = [
        (
            json!({"ts": 1700000000123u64}),
            Some(1_700_000_000_123_000_000),
            false,
        ),
        (
            json!({"ts": "1700000000123"}),
            Some(1_700_000_000_123_000_000),
            false,
        ),
        (json!({"ts": "yesterday"}), None, false),
        (json!({"other": 1}), None, false),
        (json!({"timestamp": "junk"}), None, true),
    ];
    for (object, want, renamed) in cases {
        let (mut store, range) = owned(&object);
        let mut event = Event {
            fields: Some(range),
            ..Event::default()
        };
        assert_eq!(
            take_timestamp(&rule, &mut event, b"", &mut store),
            want.is_some(),
            "{object}"
        );
        assert_eq!(event.time, want, "{object}");
        let fields = FieldsView::new(b"", &store, range);
        assert_eq!(
            fields.get("timestamp_unparsed").is_some(),
            renamed,
            "{object}"
        );
        assert!(fields.get("timestamp").is_none() || !renamed);
    }
    let mut unparsed = Event::default();
    assert!(!take_timestamp(&rule, &mut unparsed, b"", &mut []));
}

#[test]
fn filter_fields_table() {
    let data = b"GET /healthz kube-probe/1.29";
    let raw = Event::new(0, data.len() as u32, 0);
    let mut parsed = Event::default();
    let (store, range) = owned(&json!({"status": 200, "user_agent": "kube-probe/1.29"}));
    parsed.fields = Some(range);
    let mut cri = Event::new(0, 3, 0);
    cri.stream = Some(crate::event::Stream::Stderr);
    let cases: &[(&Event, &str, Option<&[u8]>)] = &[
        (&raw, "message", Some(data)),
        (&raw, "status", None),
        (&parsed, "user_agent", Some(b"kube-probe/1.29")),
        (&parsed, "status", Some(b"200")),
        (&parsed, "message", None),
        (&cri, "stream", Some(b"stderr")),
        (&cri, "message", Some(b"GET")),
    ];
    for (event, field, want) in cases {
        assert_eq!(
            field_text(event, data, &store, field).as_deref(),
            *want,
            "{field}"
        );
    }
}
