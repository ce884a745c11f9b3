//! `format: logfmt`: `key=value` pairs separated by spaces, as Go's logfmt writes them.
//!
//! Rules: a key is a run of bytes other than space, `=` and `"`; a value is either unquoted
//! (up to the next space) or double-quoted with backslash escapes; a key alone is `true`;
//! `key=` is the empty string. Unquoted integers and decimals become JSON numbers. A line with
//! no `=` at all is not logfmt (plain text would otherwise "parse" as a list of `true` keys).

use serde_json::Value;

use crate::event::fields::{Field, FieldName, FieldValue, FieldsBuilder, Span, typed};

/// Why a line is not logfmt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LogfmtError {
    /// No `key=value` pair in the line.
    #[error("logfmt: no key=value pair")]
    NoPairs,
    /// A quoted value has no closing quote.
    #[error("logfmt: unterminated quote at byte {0}")]
    UnterminatedQuote(usize),
    /// `=` with nothing before it.
    #[error("logfmt: `=` without a key at byte {0}")]
    MissingKey(usize),
    /// A `"` inside a key.
    #[error("logfmt: quote in a key at byte {0}")]
    QuoteInKey(usize),
}

/// One value of a pair, still as bytes of the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogfmtValue<'a> {
    /// A key alone.
    Bare,
    /// An unquoted value.
    Plain(&'a [u8]),
    /// The inside of a quoted value, escapes not yet resolved.
    Quoted(&'a [u8]),
}

/// Calls `pair` for every pair of `line`, in order; allocates nothing.
pub fn scan<'a>(
    line: &'a [u8],
    mut pair: impl FnMut(&'a [u8], LogfmtValue<'a>),
) -> Result<(), LogfmtError> {
    let mut at = 0;
    let mut pairs_with_values = 0;
    while at < line.len() {
        if line[at] == b' ' || line[at] == b'\t' {
            at += 1;
            continue;
        }
        let key_start = at;
        while at < line.len() && !matches!(line[at], b' ' | b'\t' | b'=') {
            if line[at] == b'"' {
                return Err(LogfmtError::QuoteInKey(at));
            }
            at += 1;
        }
        let key = &line[key_start..at];
        if line.get(at) != Some(&b'=') {
            pair(key, LogfmtValue::Bare);
            continue;
        }
        if key.is_empty() {
            return Err(LogfmtError::MissingKey(at));
        }
        at += 1;
        pairs_with_values += 1;
        if line.get(at) == Some(&b'"') {
            let open = at;
            at += 1;
            let value_start = at;
            loop {
                match line.get(at) {
                    None => return Err(LogfmtError::UnterminatedQuote(open)),
                    Some(b'\\') => at += 2,
                    Some(b'"') => break,
                    Some(_) => at += 1,
                }
            }
            pair(key, LogfmtValue::Quoted(&line[value_start..at]));
            at += 1;
        } else {
            let value_start = at;
            while at < line.len() && !matches!(line[at], b' ' | b'\t') {
                at += 1;
            }
            pair(key, LogfmtValue::Plain(&line[value_start..at]));
        }
    }
    if pairs_with_values == 0 {
        return Err(LogfmtError::NoPairs);
    }
    Ok(())
}

/// Adds the fields of a logfmt `line` (at offset `base` of its chunk's data) to `fields` (a
/// later duplicate key replaces an earlier one).
pub fn parse(line: &[u8], base: usize, fields: &mut FieldsBuilder<'_>) -> Result<(), LogfmtError> {
    let span = |part: &[u8]| Span::of(line, base, part);
    scan(line, |key, value| {
        let value = match value {
            LogfmtValue::Bare => FieldValue::Owned(Box::new(Value::Bool(true))),
            LogfmtValue::Plain(text) => typed(text, span(text)),
            LogfmtValue::Quoted(text) if memchr::memchr(b'\\', text).is_none() => {
                FieldValue::Text(span(text))
            }
            LogfmtValue::Quoted(text) => FieldValue::Owned(Box::new(Value::String(unescape(text)))),
        };
        fields.push(Field {
            name: FieldName::Text(span(key)),
            value,
        });
    })
}

/// Resolves `\"`, `\\`, `\n`, `\t`, `\r`; any other escaped byte stands for itself.
fn unescape(text: &[u8]) -> String {
    if memchr::memchr(b'\\', text).is_none() {
        return String::from_utf8_lossy(text).into_owned();
    }
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.iter();
    while let Some(&b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'r') => out.push(b'\r'),
            Some(&other) => out.push(other),
            None => out.push(b'\\'),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::fields::testing::object;
    use serde_json::json;

    #[test]
    fn parses_table() {
        // (line, expected object or the error)
        let cases: &[(&[u8], Result<Value, LogfmtError>)] = &[
            (
                br#"ts=2026-11-25T04:55:03Z level=info msg="request done" status=200 duration_ms=12.5 path=/api/v1"#,
                Ok(json!({"ts": "2026-11-25T04:55:03Z", "level": "info", "msg": "request done",
                          "status": 200, "duration_ms": 12.5, "path": "/api/v1"})),
            ),
            (
                br#"level=warn msg="said \"hi\"\n" err= retry"#,
                Ok(json!({"level": "warn", "msg": "said \"hi\"\n", "err": "", "retry": true})),
            ),
            // Numbers only when canonical: leading zeros and quoted numbers stay text.
            (
                br#"zip=01234 id="42" n=-7 big=123456789012345678901 v=1.0.2"#,
                Ok(json!({"zip": "01234", "id": "42", "n": -7, "big": "123456789012345678901", "v": "1.0.2"})),
            ),
            (b"  a=1\tb=2  ", Ok(json!({"a": 1, "b": 2}))),
            (b"a=1 a=2", Ok(json!({"a": 2}))),
            (b"caf\xc3\xa9=\xff", Ok(json!({"café": "\u{fffd}"}))),
            (b"plain text line", Err(LogfmtError::NoPairs)),
            (b"", Err(LogfmtError::NoPairs)),
            (br#"msg="unterminated"#, Err(LogfmtError::UnterminatedQuote(4))),
            (br#"msg="ends in backslash\"#, Err(LogfmtError::UnterminatedQuote(4))),
            (b"a=1 =2", Err(LogfmtError::MissingKey(4))),
            (br#"a"b=1"#, Err(LogfmtError::QuoteInKey(1))),
        ];
        for (line, want) in cases {
            let got = object(line, |fields| parse(line, 0, fields)).map(|(object, ())| object);
            assert_eq!(&got, want, "{}", String::from_utf8_lossy(line));
        }
    }
}
