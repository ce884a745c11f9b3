//! `format: nginx_error`: nginx's error log.
//!
//! `2026/11/25 04:55:03 [error] 31#31: *1 open() "/x" failed (2: No such file or directory),
//! client: 10.0.0.1, server: localhost, request: "GET /x HTTP/1.1", host: "localhost"`.
//! Fields: `level`, `pid`, `tid`, `connection` (the `*N`, when present), `message` (the text
//! before the first `, key: value` context pair), and each context pair (`client`, `server`,
//! `request`, `upstream`, `host`, `referrer`, ...) with quotes removed. The time (local time of
//! the server, no zone in the line) is taken as UTC.

use super::time::parse_nginx_error;
use crate::event::fields::{Field, FieldName, FieldValue, FieldsBuilder, Span, unsigned};

/// Why a line is not an nginx error-log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("nginx error log: expected {0}")]
pub struct NginxErrorError(&'static str);

/// Adds the fields of `line` (at offset `base` of its chunk's data) to `fields`; gives its
/// time (Unix nanoseconds).
pub fn parse(
    line: &[u8],
    base: usize,
    fields: &mut FieldsBuilder<'_>,
) -> Result<i64, NginxErrorError> {
    const TIME_LEN: usize = "2026/11/25 04:55:03".len();
    let time = line
        .get(..TIME_LEN)
        .and_then(parse_nginx_error)
        .ok_or(NginxErrorError("a time like 2026/11/25 04:55:03"))?;
    let rest = line
        .get(TIME_LEN..)
        .and_then(|r| r.strip_prefix(b" ["))
        .ok_or(NginxErrorError("` [level]` after the time"))?;
    let close = memchr::memchr(b']', rest).ok_or(NginxErrorError("`]` after the level"))?;
    let level = &rest[..close];
    let rest = rest[close + 1..]
        .strip_prefix(b" ")
        .ok_or(NginxErrorError("a space after the level"))?;
    let hash = memchr::memchr(b'#', rest).ok_or(NginxErrorError("`pid#tid:`"))?;
    let colon = memchr::memchr(b':', rest).ok_or(NginxErrorError("`pid#tid:`"))?;
    let pid_digits = &rest[..hash];
    let pid = number(pid_digits).ok_or(NginxErrorError("a process id"))?;
    let tid_digits = rest.get(hash + 1..colon).unwrap_or_default();
    let tid = number(tid_digits).ok_or(NginxErrorError("a thread id"))?;
    let mut rest = rest[colon + 1..]
        .strip_prefix(b" ")
        .unwrap_or(&rest[colon + 1..]);
    let span = |part: &[u8]| Span::of(line, base, part);
    let text = |fields: &mut FieldsBuilder<'_>, name: FieldName, value: &[u8]| {
        fields.push(Field {
            name,
            value: FieldValue::Text(span(value)),
        });
    };
    let integer = |fields: &mut FieldsBuilder<'_>, name: &'static str, digits: &[u8], n: u64| {
        fields.push(Field {
            name: FieldName::Static(name),
            value: unsigned(digits, span(digits), n),
        });
    };
    text(fields, FieldName::Static("level"), level);
    integer(fields, "pid", pid_digits, pid);
    integer(fields, "tid", tid_digits, tid);
    if let Some(after_star) = rest.strip_prefix(b"*") {
        let end = memchr::memchr(b' ', after_star).unwrap_or(after_star.len());
        let digits = &after_star[..end];
        if let Some(connection) = number(digits) {
            integer(fields, "connection", digits, connection);
            rest = after_star.get(end + 1..).unwrap_or_default();
        }
    }
    let (message, context) = split_context(rest);
    text(fields, FieldName::Static("message"), message);
    context_pairs(context, |key, value| {
        text(fields, FieldName::Text(span(key)), value);
    });
    Ok(time)
}

fn number(digits: &[u8]) -> Option<u64> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Splits the text after the connection into the message and the `, key: value` pairs that
/// follow it. The message ends at the first `, key: ` whose key is a lowercase word and whose
/// pairs run to the end of the line; a message that merely contains `, x: ` stays whole.
fn split_context(text: &[u8]) -> (&[u8], &[u8]) {
    let mut search_from = 0;
    while let Some(found) = memchr::memmem::find(&text[search_from..], b", ") {
        let at = search_from + found;
        if context_pairs(&text[at..], |_, _| {}) {
            return (&text[..at], &text[at..]);
        }
        search_from = at + 2;
    }
    (text, &[])
}

/// Calls `pair` with each key and value of `, key: value, key: "value"...` up to the end of
/// `text`; false (and some pairs given) when `text` is not that.
fn context_pairs<'a>(mut text: &'a [u8], mut pair: impl FnMut(&'a [u8], &'a [u8])) -> bool {
    while !text.is_empty() {
        let Some(after) = text.strip_prefix(b", ") else {
            return false;
        };
        let Some(colon) = memchr::memmem::find(after, b": ") else {
            return false;
        };
        let key = &after[..colon];
        if key.is_empty() || !key.iter().all(|b| b.is_ascii_lowercase() || *b == b'_') {
            return false;
        }
        let after = &after[colon + 2..];
        let (value, rest) = if let Some(inner) = after.strip_prefix(b"\"") {
            let Some(close) = memchr::memchr(b'"', inner) else {
                return false;
            };
            (&inner[..close], &inner[close + 1..])
        } else {
            let end = memchr::memmem::find(after, b", ").unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        pair(key, value);
        text = rest;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::fields::testing::object;
    use serde_json::{Value, json};

    #[test]
    fn parses_table() {
        let cases: &[(&[u8], Result<Value, &str>)] = &[
            (
                br#"2026/11/25 04:55:03 [error] 31#31: *1 open() "/usr/share/nginx/html/favicon.ico" failed (2: No such file or directory), client: 10.0.0.1, server: localhost, request: "GET /favicon.ico HTTP/1.1", host: "localhost:8080", referrer: "http://localhost:8080/""#,
                Ok(json!({"level": "error", "pid": 31, "tid": 31, "connection": 1,
                          "message": "open() \"/usr/share/nginx/html/favicon.ico\" failed (2: No such file or directory)",
                          "client": "10.0.0.1", "server": "localhost", "request": "GET /favicon.ico HTTP/1.1",
                          "host": "localhost:8080", "referrer": "http://localhost:8080/"})),
            ),
            (
                b"2026/11/25 04:55:03 [notice] 1#1: start worker process 29",
                Ok(json!({"level": "notice", "pid": 1, "tid": 1, "message": "start worker process 29"})),
            ),
            (
                br#"2026/11/25 04:55:04 [error] 30#30: *7 connect() failed (111: Connection refused) while connecting to upstream, client: 10.1.2.3, server: _, request: "GET /api HTTP/1.1", upstream: "http://10.96.0.12:8080/api", host: "web""#,
                Ok(json!({"level": "error", "pid": 30, "tid": 30, "connection": 7,
                          "message": "connect() failed (111: Connection refused) while connecting to upstream",
                          "client": "10.1.2.3", "server": "_", "request": "GET /api HTTP/1.1",
                          "upstream": "http://10.96.0.12:8080/api", "host": "web"})),
            ),
            // A message with `, Word: ` inside stays whole.
            (
                b"2026/11/25 04:55:03 [warn] 1#1: conflicting server name, Host: x on 0.0.0.0:80, ignored",
                Ok(json!({"level": "warn", "pid": 1, "tid": 1,
                          "message": "conflicting server name, Host: x on 0.0.0.0:80, ignored"})),
            ),
            (b"2026/11/25 04:55:03 error 1#1: x", Err("` [level]` after the time")),
            (b"25/Nov/2026:04:55:03 [error] 1#1: x", Err("a time like 2026/11/25 04:55:03")),
            (b"2026/11/25 04:55:03 [error] one#1: x", Err("a process id")),
            (b"", Err("a time like 2026/11/25 04:55:03")),
        ];
        for (line, want) in cases {
            let got = object(line, |fields| parse(line, 0, fields))
                .map(|(object, _)| object)
                .map_err(|e| e.0);
            assert_eq!(&got, want, "{}", String::from_utf8_lossy(line));
        }
    }
}
