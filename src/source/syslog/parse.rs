//! Parsing one framed syslog message, RFC 5424 or RFC 3164 (BSD), into its parts, every part
//! borrowed from the input.
//!
//! Invariant: parsing never fails and never drops text. Anything not recognised stays in
//! `message`; a message is never lost for not being syslog. A header that is almost RFC 5424
//! falls back to the looser RFC 3164 reading, and malformed structured data becomes message text.
//! No input panics (the agent fuzzes its parsers): every index goes through `get`, `split_at` at
//! a found position, or a slice pattern.

use std::borrow::Cow;
use std::str::from_utf8;

/// One parsed syslog message; every part borrowed from the input.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message<'a> {
    /// Facility number (0..=23) from `<PRI>`; None when there is no valid PRI.
    pub facility: Option<u8>,
    /// Severity number (0..=7) from `<PRI>`.
    pub severity: Option<u8>,
    /// 1 for RFC 5424; None for RFC 3164 or no header.
    pub version: Option<u8>,
    /// The timestamp as written (RFC 3339 text, or `Dec  7 02:46:00` for BSD); None for RFC
    /// 5424's NILVALUE `-` or when absent.
    pub timestamp: Option<&'a str>,
    /// Which of the two the timestamp is.
    pub timestamp_kind: TimestampKind,
    /// The sender's host name or address, as the sender wrote it.
    pub hostname: Option<&'a str>,
    /// RFC 5424 APP-NAME, or the RFC 3164 TAG before its `[pid]`.
    pub app_name: Option<&'a str>,
    /// RFC 5424 PROCID, or the pid in RFC 3164 `tag[pid]:`.
    pub proc_id: Option<&'a str>,
    /// RFC 5424 MSGID.
    pub msg_id: Option<&'a str>,
    /// RFC 5424 structured data, in order.
    pub structured_data: Vec<SdElement<'a>>,
    /// The free-form message (for RFC 5424, a leading UTF-8 BOM removed); the whole input when
    /// nothing was recognised. Bytes, since senders do not all send UTF-8.
    pub message: &'a [u8],
}

/// Which form [`Message::timestamp`] has, so a reader knows whether a year and zone are in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampKind {
    /// No timestamp.
    #[default]
    None,
    /// RFC 3339, with a year and a zone.
    Rfc3339,
    /// BSD `Mmm dd hh:mm:ss`: the reader supplies the year and zone.
    Bsd,
}

/// One RFC 5424 structured-data element, `[id name="value" ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdElement<'a> {
    /// The SD-ID, e.g. `timeQuality` or `exampleSDID@32473`.
    pub id: &'a str,
    /// The parameters in order; a value is owned only when it had escapes to undo.
    pub params: Vec<(&'a str, Cow<'a, str>)>,
}

/// Facility names by code, as syslog configurations spell them.
const FACILITIES: &str = "kern user mail daemon auth syslog lpr news uucp cron authpriv ftp ntp \
    security console solaris-cron local0 local1 local2 local3 local4 local5 local6 local7";
const SEVERITIES: &str = "emerg alert crit err warning notice info debug";
const MONTHS: [[u8; 3]; 12] = [
    *b"Jan", *b"Feb", *b"Mar", *b"Apr", *b"May", *b"Jun", *b"Jul", *b"Aug", *b"Sep", *b"Oct",
    *b"Nov", *b"Dec",
];
const BOM: &[u8] = b"\xEF\xBB\xBF";
/// What ends an SD-NAME besides SP and what is not printable.
const SD_STOPS: &[u8] = b"=]\"";

/// The name of facility `code` (0..=23), as syslog configurations spell it.
pub fn facility_name(code: u8) -> Option<&'static str> {
    FACILITIES.split(' ').nth(usize::from(code))
}

/// The name of severity `code` (0..=7), as syslog configurations spell it.
pub fn severity_name(code: u8) -> Option<&'static str> {
    SEVERITIES.split(' ').nth(usize::from(code))
}

/// Parses one message; never fails.
pub fn parse(input: &[u8]) -> Message<'_> {
    // Without a PRI nothing says this is syslog at all, so no header is guessed at.
    let Some((pri, rest)) = pri(input) else {
        return Message {
            message: input,
            ..Message::default()
        };
    };
    let mut m = rfc5424(rest).unwrap_or_else(|| rfc3164(rest));
    m.facility = Some(pri / 8);
    m.severity = Some(pri % 8);
    m
}

/// `<PRI>`: 1-3 digits up to 191, no leading zero but `<0>`; the value and the rest.
fn pri(input: &[u8]) -> Option<(u8, &[u8])> {
    let body = input.strip_prefix(b"<")?;
    let end = body.iter().take(4).position(|&b| b == b'>')?;
    let (digits, rest) = body.split_at(end);
    let leading_zero = digits.len() > 1 && digits.first() == Some(&b'0');
    if digits.is_empty() || leading_zero || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let pri: u8 = from_utf8(digits).ok()?.parse().ok()?;
    (pri <= 191).then_some((pri, rest.get(1..)?))
}

/// RFC 5424 after the PRI; None when the header does not hold, so RFC 3164 gets a try.
fn rfc5424(s: &[u8]) -> Option<Message<'_>> {
    let s = s.strip_prefix(b"1 ")?;
    let (timestamp, s) = field(s, 64)?;
    if timestamp.is_some_and(|t| !rfc3339(t.as_bytes())) {
        return None;
    }
    let (hostname, s) = field(s, 255)?;
    let (app_name, s) = field(s, 48)?;
    let (proc_id, s) = field(s, 128)?;
    let (msg_id, s) = field(s, 32)?;
    // The header is sound by now; bad structured data loses only its structure, not its text.
    let (structured_data, message) = structured(s).unwrap_or((Vec::new(), s));
    let timestamp_kind = timestamp.map_or(TimestampKind::None, |_| TimestampKind::Rfc3339);
    Some(Message {
        version: Some(1),
        timestamp,
        timestamp_kind,
        hostname,
        app_name,
        proc_id,
        msg_id,
        structured_data,
        message,
        ..Message::default()
    })
}

/// One RFC 5424 header field and the rest after its space: `-` is None, else 1..=`max`
/// printable US-ASCII bytes.
fn field(s: &[u8], max: usize) -> Option<(Option<&str>, &[u8])> {
    if let Some(rest) = s.strip_prefix(b"- ") {
        return Some((None, rest));
    }
    let (field, rest) = word(s, max, b"")?;
    Some((Some(field), rest.strip_prefix(b" ")?))
}

/// STRUCTURED-DATA and the MSG after it (BOM removed); None when malformed.
fn structured(mut s: &[u8]) -> Option<(Vec<SdElement<'_>>, &[u8])> {
    let mut elements = Vec::new();
    if let Some(rest) = s.strip_prefix(b"-") {
        s = rest;
    } else {
        while elements.is_empty() || s.starts_with(b"[") {
            let (element, rest) = element(s)?;
            elements.push(element);
            s = rest;
        }
    }
    match s {
        [] => Some((elements, s)),
        [b' ', rest @ ..] => Some((elements, rest.strip_prefix(BOM).unwrap_or(rest))),
        _ => None,
    }
}

/// One `[SD-ID *(SP PARAM-NAME="PARAM-VALUE")]` and the rest after it.
fn element(s: &[u8]) -> Option<(SdElement<'_>, &[u8])> {
    let (id, mut s) = word(s.strip_prefix(b"[")?, 32, SD_STOPS)?;
    let mut params = Vec::new();
    loop {
        match s {
            [b']', rest @ ..] => return Some((SdElement { id, params }, rest)),
            [b' ', rest @ ..] => {
                let (name, rest) = word(rest, 32, SD_STOPS)?;
                let (value, rest) = sd_value(rest.strip_prefix(b"=\"")?)?;
                params.push((name, value));
                s = rest;
            }
            _ => return None,
        }
    }
}

/// A PARAM-VALUE up to its closing quote, and the rest after that quote.
fn sd_value(s: &[u8]) -> Option<(Cow<'_, str>, &[u8])> {
    let mut escaped = false;
    let mut i = 0;
    let end = loop {
        match s.get(i)? {
            b'"' => break i,
            b'\\' if matches!(s.get(i + 1), Some(b'"' | b'\\' | b']')) => {
                escaped = true;
                i += 1;
            }
            _ => {}
        }
        i += 1;
    };
    let (raw, rest) = s.split_at(end);
    let raw = from_utf8(raw).ok()?;
    let value = if escaped {
        Cow::Owned(unescape(raw))
    } else {
        Cow::Borrowed(raw)
    };
    Some((value, rest.get(1..)?))
}

/// Undoes `\"`, `\\` and `\]`; RFC 5424 keeps a backslash before anything else as written.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(&next @ ('"' | '\\' | ']')) = chars.peek()
        {
            out.push(next);
            chars.next();
        } else {
            out.push(c);
        }
    }
    out
}

/// RFC 3164 after the PRI: every part optional, the rest always the message.
fn rfc3164(s: &[u8]) -> Message<'_> {
    let mut m = Message {
        message: s,
        ..Message::default()
    };
    // Python's SysLogHandler sends no timestamp and no hostname; a first word is taken for a
    // hostname only after a timestamp, where `logger` and syslogd put one.
    if let Some((timestamp, kind, rest)) = timestamp3164(s) {
        (m.timestamp, m.timestamp_kind, m.message) = (Some(timestamp), kind, rest);
        if let Some((hostname, rest)) = hostname(rest) {
            (m.hostname, m.message) = (Some(hostname), rest);
        }
    }
    if let Some((app_name, proc_id, rest)) = tag(m.message) {
        (m.app_name, m.proc_id, m.message) = (Some(app_name), proc_id, rest);
    }
    m
}

/// A BSD timestamp, or an RFC 3339 one as rsyslog writes in its place, followed by a space or
/// the end.
fn timestamp3164(s: &[u8]) -> Option<(&str, TimestampKind, &[u8])> {
    let (text, kind) = match s.get(..15) {
        Some(text) if bsd(text) => (text, TimestampKind::Bsd),
        _ => {
            let text = s.split(|&b| b == b' ').next()?;
            (rfc3339(text).then_some(text)?, TimestampKind::Rfc3339)
        }
    };
    let rest = match s.get(text.len()..)? {
        [b' ', rest @ ..] => rest,
        rest @ [] => rest,
        _ => return None,
    };
    Some((from_utf8(text).ok()?, kind, rest))
}

/// `Mmm dd hh:mm:ss`, the day space-padded or zero-padded.
fn bsd(t: &[u8]) -> bool {
    t.get(..3)
        .is_some_and(|m| MONTHS.iter().any(|month| month == m))
        && shaped(t, b"??? _0 00:00:00")
        && [(4, 1, 31), (7, 0, 23), (10, 0, 59), (13, 0, 60)]
            .iter()
            .all(|&f| num(t, f))
}

/// Roughly RFC 3339: `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)`, fields in range, no
/// calendar.
fn rfc3339(t: &[u8]) -> bool {
    let (head, zone) = t.split_at(t.len().min(19));
    let fields = [
        (5, 1, 12),
        (8, 1, 31),
        (11, 0, 23),
        (14, 0, 59),
        (17, 0, 60),
    ];
    if !shaped(head, b"0000-00-00T00:00:00") || !fields.iter().all(|&f| num(head, f)) {
        return false;
    }
    let zone = match zone.strip_prefix(b".") {
        Some(fraction) => {
            let digits = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
            match fraction.split_at(digits) {
                (digits, zone) if (1..=9).contains(&digits.len()) => zone,
                _ => return false,
            }
        }
        None => zone,
    };
    zone == b"Z"
        || matches!(zone, [b'+' | b'-', offset @ ..]
            if shaped(offset, b"00:00") && num(offset, (0, 0, 23)) && num(offset, (3, 0, 59)))
}

/// A first word taken for a hostname: one that ends in `:` or holds `[` is the tag instead
/// (`<13>Dec  7 02:46:00 myuser: hi` from a local sender that writes no hostname).
fn hostname(s: &[u8]) -> Option<(&str, &[u8])> {
    let (hostname, rest) = word(s, 255, b"")?;
    let tag_like = hostname.ends_with(':') || hostname.contains('[');
    Some((hostname, rest.strip_prefix(b" ")?)).filter(|_| !tag_like)
}

/// `tag[pid]:` or `tag:` and an optional space: the app name, the pid, and the rest. None when
/// the text does not have that shape, so that it all stays the message.
fn tag(s: &[u8]) -> Option<(&str, Option<&str>, &[u8])> {
    let (app_name, mut rest) = word(s, 48, b"[]:")?;
    let mut proc_id = None;
    if let Some(after) = rest.strip_prefix(b"[") {
        let (pid, after) = word(after, 128, b"]")?;
        (proc_id, rest) = (Some(pid), after.strip_prefix(b"]")?);
    }
    let rest = rest.strip_prefix(b":")?;
    Some((app_name, proc_id, rest.strip_prefix(b" ").unwrap_or(rest)))
}

/// The leading run of 1..=`max` printable US-ASCII bytes (RFC 5424's PRINTUSASCII: no space)
/// other than `stops`, and the rest from the first byte after it.
fn word<'a>(s: &'a [u8], max: usize, stops: &[u8]) -> Option<(&'a str, &'a [u8])> {
    let end = s
        .iter()
        .position(|b| !(33..=126).contains(b) || stops.contains(b))
        .unwrap_or(s.len());
    if end == 0 || end > max {
        return None;
    }
    let (word, rest) = s.split_at(end);
    Some((from_utf8(word).ok()?, rest))
}

/// Whether `t` has the form of `shape`: `0` a digit, `_` a digit or space, `?` any byte, any
/// other byte itself.
fn shaped(t: &[u8], shape: &[u8]) -> bool {
    t.len() == shape.len()
        && t.iter().zip(shape).all(|(&b, &s)| match s {
            b'0' => b.is_ascii_digit(),
            b'_' => b == b' ' || b.is_ascii_digit(),
            b'?' => true,
            s => b == s,
        })
}

/// Whether the two-digit number at `at` (a leading space read as 0) is within `lo..=hi`; the
/// digits are checked by [`shaped`] first.
fn num(t: &[u8], (at, lo, hi): (usize, u8, u8)) -> bool {
    match t.get(at..at + 2) {
        Some(&[a, b]) => {
            let a = if a == b' ' { 0 } else { a.wrapping_sub(b'0') };
            (lo..=hi).contains(&(a.wrapping_mul(10).wrapping_add(b.wrapping_sub(b'0'))))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `facility severity version|timestamp|host|app|pid|msgid|sd|message`, `-` for None. An
    /// owned SD value shows as `name=*"value"`; a message that is not UTF-8 as `bytes:` escaped.
    fn show(m: &Message) -> String {
        let n = |v: Option<u8>| v.map_or("-".to_owned(), |v| v.to_string());
        let s = |v: Option<&str>| v.unwrap_or("-").to_owned();
        let timestamp = match (m.timestamp_kind, m.timestamp) {
            (TimestampKind::None, None) => "-".to_owned(),
            (kind, t) => format!("{kind:?}={}", t.unwrap_or("?")),
        };
        let mut sd = String::new();
        for element in &m.structured_data {
            sd += &format!("[{}", element.id);
            for (name, value) in &element.params {
                let owned = if matches!(value, Cow::Owned(_)) {
                    "*"
                } else {
                    ""
                };
                sd += &format!(" {name}={owned}\"{value}\"");
            }
            sd += "]";
        }
        let message = match from_utf8(m.message) {
            Ok(text) => text.to_owned(),
            Err(_) => format!("bytes:{}", m.message.escape_ascii()),
        };
        let (f, sev, v) = (n(m.facility), n(m.severity), n(m.version));
        let (h, a, p, i) = (s(m.hostname), s(m.app_name), s(m.proc_id), s(m.msg_id));
        format!("{f} {sev} {v}|{timestamp}|{h}|{a}|{p}|{i}|{sd}|{message}")
    }

    const CASES: &[(&[u8], &str)] = &[
        // RFC 5424 section 6.5, examples 1 to 4.
        (
            b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xEF\xBB\xBF'su root' failed for lonvick on /dev/pts/8",
            "4 2 1|Rfc3339=2003-10-11T22:14:15.003Z|mymachine.example.com|su|-|ID47||'su root' failed for lonvick on /dev/pts/8",
        ),
        (
            b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
            "20 5 1|Rfc3339=2003-08-24T05:14:15.000003-07:00|192.0.2.1|myproc|8710|-||%% It's time to make the do-nuts.",
        ),
        (
            b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] \xEF\xBB\xBFAn application event log entry...",
            "20 5 1|Rfc3339=2003-10-11T22:14:15.003Z|mymachine.example.com|evntslog|-|ID47|[exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"]|An application event log entry...",
        ),
        (
            b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"][examplePriority@32473 class=\"high\"]",
            "20 5 1|Rfc3339=2003-10-11T22:14:15.003Z|mymachine.example.com|evntslog|-|ID47|[exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"][examplePriority@32473 class=\"high\"]|",
        ),
        // `logger` default output.
        (
            b"<13>1 2026-12-07T02:46:00.123456+00:00 myhost myuser - - [timeQuality tzKnown=\"1\" isSynced=\"0\"] hello",
            "1 5 1|Rfc3339=2026-12-07T02:46:00.123456+00:00|myhost|myuser|-|-|[timeQuality tzKnown=\"1\" isSynced=\"0\"]|hello",
        ),
        (b"<165>1 - - - - - -", "20 5 1|-|-|-|-|-||"),
        (
            br#"<13>1 - - - - - [x@1 a="q\"t" b="b\\s" c="c\]" d="keep\n"] m"#,
            r#"1 5 1|-|-|-|-|-|[x@1 a=*"q"t" b=*"b\s" c=*"c]" d="keep\n"]|m"#,
        ),
        // Malformed structured data keeps its text as the message.
        (b"<13>1 - - - - - [a b=c] msg", "1 5 1|-|-|-|-|-||[a b=c] msg"),
        (b"<13>1 - - - - - [a]x", "1 5 1|-|-|-|-|-||[a]x"),
        (b"<13>1 - - - - - [a b=\"c", "1 5 1|-|-|-|-|-||[a b=\"c"),
        (b"<13>1 - - - - - hi", "1 5 1|-|-|-|-|-||hi"),
        (b"<13>1 - - - - - [a@1][b x=\"\"] m", "1 5 1|-|-|-|-|-|[a@1][b x=\"\"]|m"),
        (b"<13>1 - - - - - [b x=\"\xff\"] m", r#"1 5 1|-|-|-|-|-||bytes:[b x=\"\xff\"] m"#),
        // Not RFC 5424 after all: bad timestamp, overlong app-name, non-ASCII host, no SD.
        (
            b"<13>1 2026-13-07T02:46:00Z h a - - - m",
            "1 5 -|-|-|-|-|-||1 2026-13-07T02:46:00Z h a - - - m",
        ),
        (
            b"<13>1 - h aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa - - - m",
            "1 5 -|-|-|-|-|-||1 - h aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa - - - m",
        ),
        (b"<13>1 - h\xffst a - - - m", r"1 5 -|-|-|-|-|-||bytes:1 - h\xffst a - - - m"),
        (b"<13>1 - - - - -", "1 5 -|-|-|-|-|-||1 - - - - -"),
        (b"<13>1 - - - - - - caf\xe9", r"1 5 1|-|-|-|-|-||bytes:caf\xe9"),
        // RFC 3164, `logger --rfc3164`, and a local sender without hostname.
        (
            b"<34>Oct 11 22:14:15 mymachine su[123]: 'su root' failed",
            "4 2 -|Bsd=Oct 11 22:14:15|mymachine|su|123|-||'su root' failed",
        ),
        (
            b"<13>Dec  7 02:46:00 myhost myuser: hello",
            "1 5 -|Bsd=Dec  7 02:46:00|myhost|myuser|-|-||hello",
        ),
        (
            b"<13>Dec  7 02:46:00 myuser: hello",
            "1 5 -|Bsd=Dec  7 02:46:00|-|myuser|-|-||hello",
        ),
        (
            b"<13>2026-12-07T02:46:00+01:00 myhost app[7]: hi",
            "1 5 -|Rfc3339=2026-12-07T02:46:00+01:00|myhost|app|7|-||hi",
        ),
        (b"<13>Dec 32 02:46:00 h a: m", "1 5 -|-|-|-|-|-||Dec 32 02:46:00 h a: m"),
        (b"<13>Dec  7 02:46:00", "1 5 -|Bsd=Dec  7 02:46:00|-|-|-|-||"),
        (b"<13>Dec 07 02:46:00 h a: m", "1 5 -|Bsd=Dec 07 02:46:00|h|a|-|-||m"),
        // Python's SysLogHandler: no timestamp, no hostname.
        (b"<14>hello", "1 6 -|-|-|-|-|-||hello"),
        (b"<14>hello world", "1 6 -|-|-|-|-|-||hello world"),
        (b"<11>app: msg", "1 3 -|-|-|app|-|-||msg"),
        (b"<14>a b: c", "1 6 -|-|-|-|-|-||a b: c"),
        (b"<14>app[]: x", "1 6 -|-|-|-|-|-||app[]: x"),
        (b"<14>\xff\xfe", r"1 6 -|-|-|-|-|-||bytes:\xff\xfe"),
        // No PRI, or a bad one: the whole input is the message.
        (b"hello", "- - -|-|-|-|-|-||hello"),
        (b"", "- - -|-|-|-|-|-||"),
        (b"<0>x", "0 0 -|-|-|-|-|-||x"),
        (b"<191>x", "23 7 -|-|-|-|-|-||x"),
        (b"<192>x", "- - -|-|-|-|-|-||<192>x"),
        (b"<01>x", "- - -|-|-|-|-|-||<01>x"),
        (b"<>x", "- - -|-|-|-|-|-||<>x"),
        (b"<1234>x", "- - -|-|-|-|-|-||<1234>x"),
        (b"<1a>x", "- - -|-|-|-|-|-||<1a>x"),
        (b"<13", "- - -|-|-|-|-|-||<13"),
    ];

    #[test]
    fn parses_table() {
        for (input, want) in CASES {
            assert_eq!(show(&parse(input)), *want, "{}", input.escape_ascii());
        }
    }

    #[test]
    fn names() {
        assert_eq!(facility_name(0), Some("kern"));
        assert_eq!(facility_name(15), Some("solaris-cron"));
        assert_eq!(facility_name(23), Some("local7"));
        assert_eq!(facility_name(24), None);
        assert_eq!(severity_name(4), Some("warning"));
        assert_eq!(severity_name(7), Some("debug"));
        assert_eq!(severity_name(8), None);
    }

    /// Every prefix and many one-byte mutations of the cases parse without panicking, and the
    /// message always lies within the input.
    #[test]
    fn never_panics() {
        let check = |input: &[u8]| {
            let m = parse(input);
            let (outer, inner) = (input.as_ptr_range(), m.message.as_ptr_range());
            assert!(outer.start <= inner.start && inner.end <= outer.end);
        };
        for (case, _) in CASES {
            for end in 0..=case.len() {
                check(&case[..end]);
            }
            for i in 0..case.len() {
                for byte in *b"<>[]\" \\-:0T\xff" {
                    let mut mutated = case.to_vec();
                    mutated[i] = byte;
                    check(&mutated);
                    mutated.remove(i);
                    check(&mutated);
                }
            }
        }
    }
}
