//! Access logs: `apache_common`, `apache_combined` and `nginx_combined`.
//!
//! Common: `%h %l %u %t "%r" %>s %b`; combined adds `"%{Referer}i" "%{User-agent}i"`; nginx's
//! `combined` is the same layout, and the `main` format of the official nginx image adds
//! `"$http_x_forwarded_for"`, accepted as an optional last field. Fields: `client`, `ident`,
//! `user`, `method`, `path`, `protocol` (or `request` when it is not three words), `status`,
//! `bytes`, `referer`, `user_agent`, `forwarded_for`; `-` means absent and the key is left out.
//! The time becomes the event's `timestamp`. Quoted fields stay as logged (nginx writes `"` as
//! `\x22`, Apache as `\"`).

use super::time::parse_common_log;
use crate::event::fields::{Field, FieldName, FieldValue, FieldsBuilder, Span, unsigned};

/// Which access-log layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Apache common log format.
    Common,
    /// Apache combined: common, referer, user agent.
    Combined,
    /// nginx combined, with an optional `"$http_x_forwarded_for"` at the end.
    NginxCombined,
}

/// Why a line is not in the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("access log: expected {expected} at byte {at}")]
pub struct AccessError {
    /// What was expected.
    pub expected: &'static str,
    /// Where.
    pub at: usize,
}

/// The parts of an access-log line, as slices of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessLine<'a> {
    /// `%h`.
    pub client: &'a [u8],
    /// `%l` (identd), usually `-`.
    pub ident: &'a [u8],
    /// `%u`.
    pub user: &'a [u8],
    /// `%t` without its brackets.
    pub time: &'a [u8],
    /// `%r` without its quotes.
    pub request: &'a [u8],
    /// `%>s`, and its digits.
    pub status: (u64, &'a [u8]),
    /// `%b`, and its digits; `None` for `-`.
    pub bytes: Option<(u64, &'a [u8])>,
    /// Combined only.
    pub referer: Option<&'a [u8]>,
    /// Combined only.
    pub user_agent: Option<&'a [u8]>,
    /// nginx `main` only.
    pub forwarded_for: Option<&'a [u8]>,
}

struct Cursor<'a> {
    line: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn fail(&self, expected: &'static str) -> AccessError {
        AccessError {
            expected,
            at: self.at,
        }
    }

    fn space(&mut self) -> Result<(), AccessError> {
        if self.line.get(self.at) != Some(&b' ') {
            return Err(self.fail("a space"));
        }
        self.at += 1;
        Ok(())
    }

    /// Bytes up to the next space (at least one).
    fn word(&mut self, what: &'static str) -> Result<&'a [u8], AccessError> {
        let rest = &self.line[self.at..];
        let len = memchr::memchr(b' ', rest).unwrap_or(rest.len());
        if len == 0 {
            return Err(self.fail(what));
        }
        self.at += len;
        Ok(&rest[..len])
    }

    fn number(&mut self, what: &'static str) -> Result<(u64, &'a [u8]), AccessError> {
        let start = self.at;
        let word = self.word(what)?;
        let number = parse_u64(word).ok_or(AccessError {
            expected: what,
            at: start,
        })?;
        Ok((number, word))
    }

    /// `[...]`, without the brackets.
    fn bracketed(&mut self) -> Result<&'a [u8], AccessError> {
        if self.line.get(self.at) != Some(&b'[') {
            return Err(self.fail("`[` before the time"));
        }
        let rest = &self.line[self.at + 1..];
        let len = memchr::memchr(b']', rest).ok_or(self.fail("`]` after the time"))?;
        self.at += len + 2;
        Ok(&rest[..len])
    }

    /// `"..."` (a backslash escapes the next byte), without the quotes.
    fn quoted(&mut self, what: &'static str) -> Result<&'a [u8], AccessError> {
        if self.line.get(self.at) != Some(&b'"') {
            return Err(self.fail(what));
        }
        let start = self.at + 1;
        let mut i = start;
        while let Some(found) = self
            .line
            .get(i..)
            .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
        {
            i += found;
            if self.line[i] == b'\\' {
                i += 2;
                continue;
            }
            self.at = i + 1;
            return Ok(&self.line[start..i]);
        }
        Err(self.fail("a closing quote"))
    }

    fn at_end(&self) -> bool {
        self.at >= self.line.len()
    }
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')),
    )
}

/// Splits `line` into its parts; allocates nothing.
pub fn scan(line: &[u8], layout: Layout) -> Result<AccessLine<'_>, AccessError> {
    let mut c = Cursor { line, at: 0 };
    let client = c.word("the client address")?;
    c.space()?;
    let ident = c.word("the ident field")?;
    c.space()?;
    let user = c.word("the user field")?;
    c.space()?;
    let time = c.bracketed()?;
    c.space()?;
    let request = c.quoted("the quoted request")?;
    c.space()?;
    let status = c.number("the status code")?;
    c.space()?;
    let bytes_at = c.at;
    let bytes = match c.word("the size")? {
        b"-" => None,
        word => Some((
            parse_u64(word).ok_or(AccessError {
                expected: "the size",
                at: bytes_at,
            })?,
            word,
        )),
    };
    let mut parsed = AccessLine {
        client,
        ident,
        user,
        time,
        request,
        status,
        bytes,
        referer: None,
        user_agent: None,
        forwarded_for: None,
    };
    if layout != Layout::Common {
        c.space()?;
        parsed.referer = Some(c.quoted("the quoted referer")?);
        c.space()?;
        parsed.user_agent = Some(c.quoted("the quoted user agent")?);
        if layout == Layout::NginxCombined && !c.at_end() {
            c.space()?;
            parsed.forwarded_for = Some(c.quoted("the quoted forwarded-for")?);
        }
    }
    if !c.at_end() {
        return Err(c.fail("the end of the line"));
    }
    Ok(parsed)
}

/// Adds the fields of `line` (at offset `base` of its chunk's data) to `fields`; gives its
/// time (Unix nanoseconds).
pub fn parse(
    line: &[u8],
    layout: Layout,
    base: usize,
    fields: &mut FieldsBuilder<'_>,
) -> Result<i64, AccessError> {
    let parsed = scan(line, layout)?;
    let time = parse_common_log(parsed.time).ok_or(AccessError {
        expected: "a time like 25/Nov/2026:04:55:03 +0000",
        at: 0,
    })?;
    let span = |part: &[u8]| Span::of(line, base, part);
    let text = |fields: &mut FieldsBuilder<'_>, name: &'static str, value: Option<&[u8]>| {
        if let Some(value) = value.filter(|v| *v != b"-") {
            fields.push(Field {
                name: FieldName::Static(name),
                value: FieldValue::Text(span(value)),
            });
        }
    };
    text(fields, "client", Some(parsed.client));
    text(fields, "ident", Some(parsed.ident));
    text(fields, "user", Some(parsed.user));
    let mut words = parsed.request.split(|&b| b == b' ');
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some(method), Some(path), Some(protocol), None)
            if !method.is_empty() && !path.is_empty() =>
        {
            text(fields, "method", Some(method));
            text(fields, "path", Some(path));
            text(fields, "protocol", Some(protocol));
        }
        _ => text(fields, "request", Some(parsed.request)),
    }
    let (status, digits) = parsed.status;
    fields.push(Field {
        name: FieldName::Static("status"),
        value: unsigned(digits, span(digits), status),
    });
    if let Some((bytes, digits)) = parsed.bytes {
        fields.push(Field {
            name: FieldName::Static("bytes"),
            value: unsigned(digits, span(digits), bytes),
        });
    }
    text(fields, "referer", parsed.referer);
    text(fields, "user_agent", parsed.user_agent);
    text(fields, "forwarded_for", parsed.forwarded_for);
    Ok(time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::fields::testing::object;
    use serde_json::{Value, json};

    const NGINX: &[u8] = br#"93.184.216.34 - - [25/Nov/2026:04:55:03 +0000] "GET /api/v1/items?id=7 HTTP/1.1" 200 1534 "https://example.com/shop" "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0""#;

    #[test]
    fn parses_table() {
        // (layout, line, expected fields or the byte at which it fails)
        let cases: &[(Layout, &[u8], Result<Value, usize>)] = &[
            (
                Layout::NginxCombined,
                NGINX,
                Ok(json!({"client": "93.184.216.34", "method": "GET", "path": "/api/v1/items?id=7",
                          "protocol": "HTTP/1.1", "status": 200, "bytes": 1534,
                          "referer": "https://example.com/shop",
                          "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"})),
            ),
            // The official image's `main` format: forwarded-for at the end.
            (
                Layout::NginxCombined,
                br#"10.0.0.7 - alice [25/Nov/2026:04:55:03 +0000] "POST /login HTTP/2.0" 302 0 "-" "kube-probe/1.29" "203.0.113.9, 10.0.0.1""#,
                Ok(json!({"client": "10.0.0.7", "user": "alice", "method": "POST", "path": "/login",
                          "protocol": "HTTP/2.0", "status": 302, "bytes": 0,
                          "user_agent": "kube-probe/1.29", "forwarded_for": "203.0.113.9, 10.0.0.1"})),
            ),
            // A TLS handshake sent to a plain-HTTP port: the request is not three words.
            (
                Layout::NginxCombined,
                br#"198.51.100.4 - - [25/Nov/2026:04:55:03 +0000] "\x16\x03\x01\x00\xF7\x01" 400 157 "-" "-""#,
                Ok(json!({"client": "198.51.100.4", "request": "\\x16\\x03\\x01\\x00\\xF7\\x01",
                          "status": 400, "bytes": 157})),
            ),
            (
                Layout::Common,
                br#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#,
                Ok(json!({"client": "127.0.0.1", "user": "frank", "method": "GET", "path": "/apache_pb.gif",
                          "protocol": "HTTP/1.0", "status": 200, "bytes": 2326})),
            ),
            // Apache escapes quotes with a backslash; `-` size means no body.
            (
                Layout::Combined,
                br#"::1 - - [10/Oct/2000:13:55:36 -0700] "GET /q?x=\"y\" HTTP/1.1" 304 - "-" "curl/8.5.0""#,
                Ok(json!({"client": "::1", "method": "GET", "path": "/q?x=\\\"y\\\"", "protocol": "HTTP/1.1",
                          "status": 304, "user_agent": "curl/8.5.0"})),
            ),
            (Layout::Common, br#"127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326 "extra""#, Err(68)),
            (Layout::Combined, br#"127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326"#, Err(68)),
            (Layout::Common, br#"127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" OK 2326"#, Err(60)),
            (Layout::Common, br#"127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0 200 2326"#, Err(43)),
            (Layout::Common, br#"127.0.0.1 - - 10/Oct/2000:13:55:36 -0700 "GET /" 200 1"#, Err(14)),
            (Layout::Common, br#"127.0.0.1 - - [99/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 1"#, Err(0)),
            (Layout::NginxCombined, b"plain text", Err(10)),
            (Layout::NginxCombined, b"", Err(0)),
        ];
        for (layout, line, want) in cases {
            let got = object(line, |fields| parse(line, *layout, 0, fields))
                .map(|(object, _)| object)
                .map_err(|e| e.at);
            assert_eq!(&got, want, "{layout:?}: {}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn the_time_is_the_event_time() {
        let (_, time) = object(NGINX, |fields| {
            parse(NGINX, Layout::NginxCombined, 0, fields)
        })
        .unwrap();
        let want = chrono::DateTime::parse_from_rfc3339("2026-11-25T04:55:03Z").unwrap();
        assert_eq!(Some(time), want.timestamp_nanos_opt());
    }
}
