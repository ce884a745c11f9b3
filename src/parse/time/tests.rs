//! Timestamps: every layout read and written back, time zones, and what is not a time.

use super::*;
use serde_json::json;

fn rfc3339(nanos: i64) -> String {
    let mut out = Vec::new();
    write_rfc3339(&mut out, nanos);
    String::from_utf8(out).unwrap()
}

fn chrono_nanos(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap()
}

#[test]
fn parses_layouts_table() {
    // (format, text, expected RFC 3339 or None when it must fail)
    let cases: &[(TimeFormat, &str, Option<&str>)] = &[
        (
            TimeFormat::Rfc3339,
            "2016-10-06T00:17:09.669794202Z",
            Some("2016-10-06T00:17:09.669794202Z"),
        ),
        (
            TimeFormat::Rfc3339,
            "2019-04-30T02:12:41.8443515Z",
            Some("2019-04-30T02:12:41.844351500Z"),
        ),
        (
            TimeFormat::Rfc3339,
            "2026-11-25T04:55:03+02:00",
            Some("2026-11-25T02:55:03.000000Z"),
        ),
        (
            TimeFormat::Rfc3339,
            "2026-11-25 04:55:03.5-01:30",
            Some("2026-11-25T06:25:03.500000Z"),
        ),
        (
            TimeFormat::Rfc3339,
            "2024-02-29T00:00:00Z",
            Some("2024-02-29T00:00:00.000000Z"),
        ),
        (TimeFormat::Rfc3339, "2023-02-29T00:00:00Z", None),
        (TimeFormat::Rfc3339, "2026-13-01T00:00:00Z", None),
        (TimeFormat::Rfc3339, "2026-11-25T04:55:03", None),
        (TimeFormat::Rfc3339, "2026-11-25T04:55:03Zjunk", None),
        (TimeFormat::Rfc3339, "", None),
        (
            TimeFormat::CommonLog,
            "10/Oct/2000:13:55:36 -0700",
            Some("2000-10-10T20:55:36.000000Z"),
        ),
        (
            TimeFormat::CommonLog,
            "25/Nov/2026:04:55:03 +0000",
            Some("2026-11-25T04:55:03.000000Z"),
        ),
        (TimeFormat::CommonLog, "25/Foo/2026:04:55:03 +0000", None),
        (TimeFormat::CommonLog, "25/Nov/2026:04:55:03", None),
        (
            TimeFormat::NginxError,
            "2026/11/25 04:55:03",
            Some("2026-11-25T04:55:03.000000Z"),
        ),
        (TimeFormat::NginxError, "2026/11/25 24:55:03", None),
        (
            TimeFormat::UnixSeconds,
            "1700000000",
            Some("2023-11-14T22:13:20.000000Z"),
        ),
        (
            TimeFormat::UnixSeconds,
            "1700000000.25",
            Some("2023-11-14T22:13:20.250000Z"),
        ),
        (
            TimeFormat::UnixMillis,
            "1700000000123",
            Some("2023-11-14T22:13:20.123000Z"),
        ),
        (
            TimeFormat::UnixMicros,
            "1700000000123456",
            Some("2023-11-14T22:13:20.123456Z"),
        ),
        (
            TimeFormat::UnixNanos,
            "1700000000123456789",
            Some("2023-11-14T22:13:20.123456789Z"),
        ),
        (TimeFormat::UnixSeconds, "soon", None),
        (TimeFormat::UnixSeconds, "99999999999999999999", None),
        (
            TimeFormat::from_name("%Y-%m-%d %H:%M:%S%.f").unwrap(),
            "2026-11-25 04:55:03.250",
            Some("2026-11-25T04:55:03.250000Z"),
        ),
        (
            TimeFormat::from_name("%d.%m.%Y %H:%M:%S %z").unwrap(),
            "25.11.2026 04:55:03 +0100",
            Some("2026-11-25T03:55:03.000000Z"),
        ),
        (
            TimeFormat::from_name("%Y-%m-%d %H:%M:%S").unwrap(),
            "yesterday",
            None,
        ),
    ];
    for (format, text, want) in cases {
        let got = format.parse(text.as_bytes()).map(rfc3339);
        assert_eq!(got.as_deref(), *want, "{format}: {text}");
    }
}

#[test]
fn numbers_are_unix_times() {
    let cases = [
        (
            TimeFormat::UnixSeconds,
            json!(1700000000),
            Some("2023-11-14T22:13:20.000000Z"),
        ),
        (
            TimeFormat::UnixSeconds,
            json!(1700000000.5),
            Some("2023-11-14T22:13:20.500000Z"),
        ),
        (
            TimeFormat::UnixMillis,
            json!(1700000000123u64),
            Some("2023-11-14T22:13:20.123000Z"),
        ),
        (TimeFormat::Rfc3339, json!(1700000000), None),
        (TimeFormat::UnixSeconds, json!(true), None),
        (TimeFormat::UnixSeconds, json!(1e300), None),
    ];
    for (format, value, want) in cases {
        assert_eq!(
            format.parse_value(&value).map(rfc3339).as_deref(),
            want,
            "{format} {value}"
        );
    }
}

#[test]
fn names_and_bad_layouts() {
    for name in [
        "rfc3339",
        "common_log",
        "nginx_error",
        "unix",
        "unix_ms",
        "unix_us",
        "unix_ns",
    ] {
        assert_eq!(TimeFormat::from_name(name).unwrap().to_string(), name);
    }
    assert_eq!(
        TimeFormat::from_name("nginx").unwrap(),
        TimeFormat::CommonLog
    );
    for bad in ["iso", "%Q", "yyyy-mm-dd"] {
        assert!(TimeFormat::from_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn writes_like_chrono_across_eras() {
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..20_000 {
        // Nearly all of the i64 range: 1678 to 2261.
        let nanos = rng.i64(-9_000_000_000_000_000_000..9_000_000_000_000_000_000);
        let text = rfc3339(nanos);
        assert_eq!(chrono_nanos(&text), nanos, "{text}");
        assert_eq!(parse_rfc3339(text.as_bytes()), Some(nanos), "{text}");
        let want = chrono::DateTime::from_timestamp_nanos(nanos)
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        // chrono drops zero fractions; compare the instants, and the date-time part exactly.
        assert_eq!(text[..19], want[..19], "{nanos}");
    }
}
