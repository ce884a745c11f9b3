//! `format: docker`: Docker's `json-file` driver, one JSON object per line:
//! `{"log":"text\n","stream":"stdout","time":"2026-11-25T04:55:03.123456789Z"}` (and `attrs`
//! when labels are logged).
//!
//! The `log` text ends with the newline the container wrote; Docker splits lines over 16 KiB
//! into pieces whose `log` does not end with one, and the next piece continues them. Joining
//! happens in [`super::assemble`]. Here a small scanner finds the three keys without building a
//! JSON value, and the `log` string is unescaped only when it has escapes other than its final
//! `\n` (then it is a slice of the line: no copy for the common line).

use super::time::parse_rfc3339;
use crate::event::Stream;

/// Why a line is not a json-file line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("docker: {0}")]
pub struct DockerError(&'static str);

/// One json-file line, split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DockerLine<'a> {
    /// The inside of the `log` string, escapes unresolved.
    pub log: &'a [u8],
    /// Which stream the container wrote.
    pub stream: Stream,
    /// Docker's time, Unix nanoseconds.
    pub time: i64,
}

impl<'a> DockerLine<'a> {
    /// The message without its final newline, when that needs no unescaping: a slice of the
    /// line, and whether the line was complete (ended with a newline).
    pub fn plain_message(&self) -> Option<(&'a [u8], bool)> {
        match memchr::memchr(b'\\', self.log) {
            None => Some((self.log, false)),
            Some(at) if at + 2 == self.log.len() && self.log.ends_with(b"\\n") => {
                Some((&self.log[..at], true))
            }
            Some(_) => None,
        }
    }

    /// Appends the unescaped message, without its final newline (and a `\r` before it), to
    /// `out`; returns whether the line was complete.
    pub fn unescape_into(&self, out: &mut Vec<u8>) -> Result<bool, DockerError> {
        let start = out.len();
        unescape(self.log, out)?;
        let complete = out.last() == Some(&b'\n');
        if complete {
            out.pop();
            if out.len() > start && out.last() == Some(&b'\r') {
                out.pop();
            }
        }
        Ok(complete)
    }
}

struct Cursor<'a> {
    line: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn skip_space(&mut self) {
        while matches!(self.line.get(self.at), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), DockerError> {
        self.skip_space();
        if self.line.get(self.at) != Some(&byte) {
            return Err(DockerError(what));
        }
        self.at += 1;
        Ok(())
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.line.get(self.at).copied()
    }

    /// A string's inside, escapes unresolved; the cursor is on its opening quote.
    fn string(&mut self) -> Result<&'a [u8], DockerError> {
        self.expect(b'"', "expected a string")?;
        let start = self.at;
        loop {
            let rest = self.line.get(self.at..).unwrap_or_default();
            let Some(i) = memchr::memchr2(b'"', b'\\', rest) else {
                return Err(DockerError("unterminated string"));
            };
            self.at += i;
            if self.line[self.at] == b'"' {
                self.at += 1;
                return Ok(&self.line[start..self.at - 1]);
            }
            self.at += 2;
        }
    }

    /// Skips any other value: nested objects and arrays by depth, strings whole.
    fn skip_value(&mut self) -> Result<(), DockerError> {
        let mut depth = 0usize;
        loop {
            match self.peek() {
                None => return Err(DockerError("unexpected end")),
                Some(b'"') => {
                    self.string()?;
                }
                Some(b'{' | b'[') => {
                    depth += 1;
                    self.at += 1;
                }
                Some(b'}' | b']') if depth > 0 => {
                    depth -= 1;
                    self.at += 1;
                }
                Some(b',' | b':') if depth > 0 => self.at += 1,
                Some(b'}' | b']' | b',' | b':') => {
                    return Err(DockerError("expected a value"));
                }
                Some(_) => {
                    let start = self.at;
                    while let Some(b) = self.line.get(self.at) {
                        if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n' | b':') {
                            break;
                        }
                        self.at += 1;
                    }
                    if self.at == start {
                        return Err(DockerError("expected a value"));
                    }
                }
            }
            if depth == 0 {
                return Ok(());
            }
        }
    }
}

/// Splits a json-file line.
pub fn parse(line: &[u8]) -> Result<DockerLine<'_>, DockerError> {
    let mut c = Cursor { line, at: 0 };
    c.expect(b'{', "not a JSON object")?;
    let (mut log, mut stream, mut time) = (None, None, None);
    if c.peek() == Some(b'}') {
        c.at += 1;
    } else {
        loop {
            let key = c.string()?;
            c.expect(b':', "expected `:` after a key")?;
            match key {
                b"log" => log = Some(c.string()?),
                b"stream" => stream = Some(c.string()?),
                b"time" => time = Some(c.string()?),
                _ => c.skip_value()?,
            }
            match c.peek() {
                Some(b',') => c.at += 1,
                Some(b'}') => {
                    c.at += 1;
                    break;
                }
                _ => return Err(DockerError("expected `,` or `}`")),
            }
        }
    }
    if c.peek().is_some() {
        return Err(DockerError("text after the object"));
    }
    let log = log.ok_or(DockerError("no `log` key"))?;
    let stream = match stream {
        Some(b"stdout") => Stream::Stdout,
        Some(b"stderr") => Stream::Stderr,
        _ => return Err(DockerError("`stream` is not stdout or stderr")),
    };
    let time = time
        .and_then(parse_rfc3339)
        .ok_or(DockerError("`time` is not an RFC 3339 time"))?;
    Ok(DockerLine { log, stream, time })
}

/// Resolves the escapes of a JSON string's inside into `out` (bad `\u` escapes become U+FFFD).
pub fn unescape(text: &[u8], out: &mut Vec<u8>) -> Result<(), DockerError> {
    let mut at = 0;
    while let Some(i) = memchr::memchr(b'\\', &text[at..]) {
        out.extend_from_slice(&text[at..at + i]);
        at += i + 1;
        let escaped = *text.get(at).ok_or(DockerError("unterminated escape"))?;
        at += 1;
        let simple = match escaped {
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'"' | b'\\' | b'/' => escaped,
            b'u' => {
                let (c, used) = unicode_escape(&text[at - 2..]);
                at += used - 2;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            _ => return Err(DockerError("invalid escape")),
        };
        out.push(simple);
    }
    out.extend_from_slice(&text[at..]);
    Ok(())
}

/// The character of a `\uXXXX` escape (with its low surrogate when it is a high one) at the
/// start of `text`, and how many bytes it took.
fn unicode_escape(text: &[u8]) -> (char, usize) {
    let hex = |at: usize| -> Option<u32> {
        let digits = std::str::from_utf8(text.get(at..at + 4)?).ok()?;
        u32::from_str_radix(digits, 16).ok()
    };
    let Some(first) = hex(2) else {
        return (char::REPLACEMENT_CHARACTER, text.len().min(6));
    };
    if (0xD800..0xDC00).contains(&first)
        && text.get(6..8) == Some(b"\\u")
        && let Some(second) = hex(8).filter(|s| (0xDC00..0xE000).contains(s))
    {
        let c = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
        return (char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER), 12);
    }
    (
        char::from_u32(first).unwrap_or(char::REPLACEMENT_CHARACTER),
        6,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message of a line and whether it was complete, by the slow path.
    fn message(line: &DockerLine<'_>) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let complete = line.unescape_into(&mut out).unwrap();
        (out, complete)
    }

    #[test]
    fn parses_table() {
        // (line, expected (message, complete, stream) or the error)
        type Case = (
            &'static [u8],
            Result<(&'static [u8], bool, Stream), &'static str>,
        );
        let cases: &[Case] = &[
            (
                br#"{"log":"GET / 200\n","stream":"stdout","time":"2026-11-25T04:55:03.123456789Z"}"#,
                Ok((b"GET / 200", true, Stream::Stdout)),
            ),
            (
                br#"{"log":"{\"level\":\"error\",\"msg\":\"caf\u00e9 \ud83d\ude00\"}\r\n","stream":"stderr","time":"2026-11-25T04:55:03Z"}"#,
                Ok(("{\"level\":\"error\",\"msg\":\"café \u{1f600}\"}".as_bytes(), true, Stream::Stderr)),
            ),
            // A piece of a long line: no newline at the end.
            (
                br#"{"log":"first half ","stream":"stdout","time":"2026-11-25T04:55:03Z"}"#,
                Ok((b"first half ", false, Stream::Stdout)),
            ),
            // Keys in any order, labels in `attrs`, spaces around.
            (
                br#" { "time" : "2026-11-25T04:55:03Z", "attrs": {"tag": "web", "n": [1, {"a": "}"}]}, "stream": "stdout", "log": "\tx\n" } "#,
                Ok((b"\tx", true, Stream::Stdout)),
            ),
            (br#"{"log":"x\n","stream":"stdout"}"#, Err("`time` is not an RFC 3339 time")),
            (br#"{"log":"x\n","stream":"other","time":"2026-11-25T04:55:03Z"}"#, Err("`stream` is not stdout or stderr")),
            (br#"{"stream":"stdout","time":"2026-11-25T04:55:03Z"}"#, Err("no `log` key")),
            (br#"{"log":"x\q","stream":"stdout","time":"2026-11-25T04:55:03Z"}"#, Err("invalid escape")),
            (br#"{"log":"unterminated"#, Err("unterminated string")),
            (br#"{"log":"x"} trailing"#, Err("text after the object")),
            (br#"{"log" "x"}"#, Err("expected `:` after a key")),
            (b"plain text", Err("not a JSON object")),
            (b"", Err("not a JSON object")),
        ];
        for (line, want) in cases {
            let got = parse(line).and_then(|p| {
                let mut out = Vec::new();
                let complete = p.unescape_into(&mut out)?;
                Ok((out, complete, p.stream))
            });
            let got = got
                .as_ref()
                .map(|(m, c, s)| (&m[..], *c, *s))
                .map_err(|e| e.0);
            assert_eq!(got, *want, "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn plain_messages_are_slices_and_agree_with_unescaping() {
        type Case = (&'static [u8], Option<(&'static [u8], bool)>);
        let cases: &[Case] = &[
            (
                br#"{"log":"GET / 200\n","stream":"stdout","time":"2026-11-25T04:55:03Z"}"#,
                Some((b"GET / 200", true)),
            ),
            (
                br#"{"log":"piece","stream":"stdout","time":"2026-11-25T04:55:03Z"}"#,
                Some((b"piece", false)),
            ),
            (
                br#"{"log":"a\tb\n","stream":"stdout","time":"2026-11-25T04:55:03Z"}"#,
                None,
            ),
            (
                br#"{"log":"\n","stream":"stdout","time":"2026-11-25T04:55:03Z"}"#,
                Some((b"", true)),
            ),
        ];
        for (line, want) in cases {
            let parsed = parse(line).unwrap();
            assert_eq!(parsed.plain_message(), *want);
            if let Some((plain, complete)) = want {
                assert_eq!(message(&parsed), (plain.to_vec(), *complete));
            }
        }
    }
}
