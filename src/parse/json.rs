//! `format: json`: one JSON object per line.
//!
//! The line is parsed by `serde_json` (so what it accepts and its errors are `serde_json`'s),
//! into the members' places in the line rather than into a map: a key without escapes and a
//! string, integer or literal value that `serde_json` would write as it stands are kept where
//! they are; other values (floats, nested objects and arrays, strings with escapes it writes
//! otherwise) are parsed into values. See [`crate::event::fields`].

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::event::fields::{Field, FieldName, FieldValue, FieldsBuilder, Span};

/// Parses `message` (at offset `base` of the chunk's data) as a JSON object into `fields`; the
/// error says why it is not one.
pub fn parse(message: &[u8], base: usize, fields: &mut FieldsBuilder<'_>) -> Result<(), String> {
    if Scanner::members(message, base, fields).is_some() {
        return Ok(());
    }
    // Not a line the scanner takes on its own (or not JSON): `serde_json` decides.
    fields.restart();
    let mut deserializer = serde_json::Deserializer::from_slice(message);
    let members = Members {
        message,
        base,
        fields,
    };
    let parsed = members
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end());
    if parsed.is_ok() {
        return Ok(());
    }
    // Bad lines are rare: their error is the one the whole line gives as a value.
    Err(match serde_json::from_slice::<Value>(message) {
        Ok(Value::Object(_)) => "invalid JSON object".to_owned(),
        Ok(other) => format!("expected a JSON object, found {}", kind(&other)),
        Err(e) => format!("invalid JSON: {e}"),
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Deepest nesting the scanner follows; deeper lines go to `serde_json` (which stops at 128).
const SCAN_DEPTH: usize = 64;

/// A fast path for the common line: an object whose keys have no escapes and whose strings
/// have no `\u` escape, in valid UTF-8, nested at most [`SCAN_DEPTH`] deep. It accepts only
/// valid JSON (what it is unsure of, it leaves to `serde_json`: `None`), finds the members'
/// places in one pass over the bytes, and adds them to the fields as [`Members`] would.
struct Scanner<'a> {
    line: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn members(line: &'a [u8], base: usize, fields: &mut FieldsBuilder<'_>) -> Option<()> {
        // One pass over the line instead of checks inside every string: printable ASCII is
        // valid UTF-8 without a control byte; otherwise the line must be valid UTF-8, and a
        // control byte (a tab, say, which a string may not hold raw) is left to `serde_json`.
        if !printable_ascii(line) {
            std::str::from_utf8(line).ok()?;
            if line.iter().any(|&b| b < 0x20) {
                return None;
            }
        }
        let mut s = Scanner { line, at: 0 };
        s.whitespace();
        s.byte(b'{')?;
        s.whitespace();
        if s.peek()? == b'}' {
            s.at += 1;
        } else {
            loop {
                let key_start = s.at;
                if !s.string()? {
                    // A key with escapes: its name is not the bytes of the line.
                    return None;
                }
                let key = Span::at(base + key_start, s.at - key_start);
                s.whitespace();
                s.byte(b':')?;
                s.whitespace();
                let value_start = s.at;
                let kind = s.value(0)?;
                let value = &line[value_start..s.at];
                let span = Span::at(base + value_start, value.len());
                let as_it_stands = match kind {
                    // What the scan saw decides most values without a second look.
                    Kind::PlainString | Kind::Literal => true,
                    Kind::ShortInteger => value != b"-0",
                    Kind::Nested => false,
                    Kind::Other => written_as_it_stands(value),
                };
                let value = if as_it_stands {
                    FieldValue::Json(span)
                } else {
                    FieldValue::Owned(Box::new(serde_json::from_slice(value).ok()?))
                };
                fields.push(Field {
                    name: FieldName::Json(key),
                    value,
                });
                s.whitespace();
                match s.next()? {
                    b',' => s.whitespace(),
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        s.whitespace();
        (s.at == line.len()).then_some(())
    }

    fn peek(&self) -> Option<u8> {
        self.line.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn byte(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    fn whitespace(&mut self) {
        // Lines with tabs or carriage returns are `serde_json`'s (see `members`).
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
    }

    /// A string, from its opening quote; true when it had no escape at all. A `\u` escape (a
    /// surrogate may need its pair) is left to `serde_json`, and so were lines with a control
    /// byte (see `members`).
    fn string(&mut self) -> Option<bool> {
        self.byte(b'"')?;
        let mut plain = true;
        loop {
            let rest = &self.line[self.at..];
            let found = quote_or_backslash(rest)?;
            self.at += found + 1;
            if rest[found] == b'"' {
                return Some(plain);
            }
            plain = false;
            match self.next()? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                _ => return None,
            }
        }
    }

    /// A value, from its first byte; what kind it was.
    fn value(&mut self, depth: usize) -> Option<Kind> {
        let kind = match self.peek()? {
            b'"' => match self.string()? {
                true => Kind::PlainString,
                false => Kind::Other,
            },
            b'{' => self.nested(depth, b'}', true).map(|()| Kind::Nested)?,
            b'[' => self.nested(depth, b']', false).map(|()| Kind::Nested)?,
            b't' => self.literal(b"true").map(|()| Kind::Literal)?,
            b'f' => self.literal(b"false").map(|()| Kind::Literal)?,
            b'n' => self.literal(b"null").map(|()| Kind::Literal)?,
            b'-' | b'0'..=b'9' => self.number()?,
            _ => return None,
        };
        Some(kind)
    }

    /// An object (members) or an array, from its opening byte.
    fn nested(&mut self, depth: usize, close: u8, members: bool) -> Option<()> {
        if depth >= SCAN_DEPTH {
            return None;
        }
        self.at += 1;
        self.whitespace();
        if self.peek()? == close {
            self.at += 1;
            return Some(());
        }
        loop {
            if members {
                self.string()?;
                self.whitespace();
                self.byte(b':')?;
                self.whitespace();
            }
            self.value(depth + 1)?;
            self.whitespace();
            match self.next()? {
                b',' => self.whitespace(),
                byte if byte == close => return Some(()),
                _ => return None,
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.line.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Option<Kind> {
        if self.peek()? == b'-' {
            self.at += 1;
        }
        let digits_start = self.at;
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let mut kind = if self.at - digits_start <= MAX_SURE_DIGITS {
            Kind::ShortInteger
        } else {
            Kind::Other
        };
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.some_digits()?;
            kind = Kind::Other;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            self.some_digits()?;
            kind = Kind::Other;
        }
        Some(kind)
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }
}

/// What the scanner saw of a value: enough to tell, for most, whether `serde_json` writes it
/// back as it stands (see [`written_as_it_stands`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A string without escapes.
    PlainString,
    /// `true`, `false`, `null`.
    Literal,
    /// An integer of at most [`MAX_SURE_DIGITS`] digits: it fits 64 bits.
    ShortInteger,
    /// An object or an array.
    Nested,
    /// A string with escapes, a longer integer, a decimal: looked at again.
    Other,
}

/// Integers of at most this many digits fit an `i64` whatever they are.
const MAX_SURE_DIGITS: usize = 18;

/// The index of the first `"` or `\\` in `bytes`, eight bytes at a time (strings are short:
/// a call to `memchr2` costs more than it saves on them).
fn quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The lowest flagged byte of each mask is exact (flags above one may be spurious), so the
    // lowest flag of their union is the first match.
    let flags = |word: u64, byte: u8| {
        let x = word ^ (ONES * u64::from(byte));
        x.wrapping_sub(ONES) & !x & HIGHS
    };
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for word in words.by_ref() {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(word);
        let word = u64::from_le_bytes(eight);
        let mask = flags(word, b'"') | flags(word, b'\\');
        if mask != 0 {
            return Some(at + (mask.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|found| at + found)
}

/// True when every byte is printable ASCII (0x20 to 0x7f), eight at a time.
fn printable_ascii(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut words = bytes.chunks_exact(8);
    let words_ok = words.by_ref().all(|word| {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(word);
        let word = u64::from_le_bytes(eight);
        // No high bit, and no byte below 0x20 (the borrow trick flags those).
        (word & HIGHS) == 0 && (word.wrapping_sub(ONES * 0x20) & !word & HIGHS) == 0
    });
    words_ok
        && words
            .remainder()
            .iter()
            .all(|&b| b.wrapping_sub(0x20) < 0x60)
}

/// The members of the object, added to `fields` as they are met.
struct Members<'m, 'f, 'b> {
    message: &'m [u8],
    base: usize,
    fields: &'f mut FieldsBuilder<'b>,
}

impl<'de, 'f, 'b> DeserializeSeed<'de> for Members<'de, 'f, 'b> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, 'f, 'b> Visitor<'de> for Members<'de, 'f, 'b> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let raw: &'de RawValue = map.next_value()?;
            let name = match key {
                // Without escapes, the key sits between its quotes in the line.
                Cow::Borrowed(key) => {
                    let inner = Span::of(self.message, self.base, key.as_bytes());
                    FieldName::Json(Span {
                        start: inner.start.saturating_sub(1),
                        len: inner.len + 2,
                    })
                }
                Cow::Owned(key) => FieldName::Owned(key.into_boxed_str()),
            };
            let text = raw.get();
            let span = Span::of(self.message, self.base, text.as_bytes());
            let value = if written_as_it_stands(text.as_bytes()) {
                FieldValue::Json(span)
            } else {
                FieldValue::Owned(Box::new(
                    serde_json::from_str(text).map_err(de::Error::custom)?,
                ))
            };
            self.fields.push(Field { name, value });
        }
        Ok(())
    }
}

/// A key, borrowed from the line when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }
            fn visit_string<E: de::Error>(self, key: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// True when `serde_json`, having parsed the JSON value `json`, writes it back byte for byte:
/// a literal; an integer that fits 64 bits (but `-0`); a string whose escapes are the ones it
/// writes (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`; not `\/` nor `\u`).
fn written_as_it_stands(json: &[u8]) -> bool {
    match json.first() {
        Some(b'"') => {
            let mut rest = &json[1..];
            while let Some(at) = memchr::memchr(b'\\', rest) {
                if !matches!(
                    rest.get(at + 1),
                    Some(b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't')
                ) {
                    return false;
                }
                rest = &rest[at + 2..];
            }
            true
        }
        Some(b't' | b'f' | b'n') => true,
        Some(b'-' | b'0'..=b'9') => {
            let Ok(text) = std::str::from_utf8(json) else {
                return false;
            };
            let integer = !text.contains(['.', 'e', 'E']);
            integer && text != "-0" && (text.parse::<u64>().is_ok() || text.parse::<i64>().is_ok())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::fields::{FieldRange, FieldsView};

    fn parsed(line: &[u8]) -> (Vec<Field>, Result<FieldRange, String>) {
        let mut store = Vec::new();
        let mut fields = FieldsBuilder::new(&mut store, line);
        let result = parse(line, 0, &mut fields);
        let range = result.map(|()| fields.finish());
        (store, range)
    }

    #[test]
    fn parses_table() {
        // (line, parses?, a fragment of the error, or a key of the object)
        let cases: &[(&[u8], bool, &str)] = &[
            (br#"{"level":"info","status":404}"#, true, "status"),
            (br#"  {"nested":{"a":[1,2]}}  "#, true, "nested"),
            (br#"{}"#, true, ""),
            (br#"[1,2]"#, false, "an array"),
            (br#""text""#, false, "a string"),
            (br#"42"#, false, "a number"),
            (br#"{"unterminated":"#, false, "invalid JSON"),
            (b"plain text line", false, "invalid JSON"),
            (b"", false, "invalid JSON"),
            (b"{\"bad\":\"\xff\"}", false, "invalid JSON"),
            (br#"{"a":1} trailing"#, false, "invalid JSON"),
        ];
        for (line, ok, fragment) in cases {
            let (store, result) = parsed(line);
            match result {
                Ok(range) => {
                    assert!(*ok, "{}", String::from_utf8_lossy(line));
                    let view = FieldsView::new(line, &store, range);
                    assert!(fragment.is_empty() || view.get(fragment).is_some());
                }
                Err(e) => {
                    assert!(!ok, "{}: {e}", String::from_utf8_lossy(line));
                    assert!(e.contains(fragment), "{e}");
                }
            }
        }
    }

    #[test]
    fn printable_ascii_table() {
        let cases: &[(&[u8], bool)] = &[
            (b"", true),
            (b"{\"a\":1}", true),
            (b"0123456789abcdef~ ", true),
            (b"0123456789abcdef\x7f", true),
            (b"0123456789\tabcdef", false),
            (b"01234567\x1f", false),
            (b"0123456\x80", false),
            ("café".as_bytes(), false),
            (b"\x00", false),
        ];
        for (bytes, want) in cases {
            assert_eq!(printable_ascii(bytes), *want, "{bytes:?}");
        }
    }

    #[test]
    fn values_stay_in_the_line_only_when_written_alike() {
        let line = br#"{"s":"plain","e":"a\"b\\c\n","u":"caf\u00e9","sl":"a\/b","i":-12,"z":-0,"f":0.10,"big":123456789012345678901,"t":true,"n":null,"o":{"a":1},"k\u00e9y":1}"#;
        let (store, range) = parsed(line);
        let view = FieldsView::new(line, &store, range.unwrap());
        let kept: Vec<(String, bool)> = view
            .iter()
            .map(|f| {
                let in_line = matches!(f.field().value, FieldValue::Json(_));
                (f.name().into_owned(), in_line)
            })
            .collect();
        let want: Vec<(String, bool)> = [
            ("s", true),
            ("e", true),
            ("u", false),
            ("sl", false),
            ("i", true),
            ("z", false),
            ("f", false),
            ("big", false),
            ("t", true),
            ("n", true),
            ("o", false),
            ("kéy", true),
        ]
        .iter()
        .map(|(k, b)| (k.to_string(), *b))
        .collect();
        assert_eq!(kept, want);
        let value: Value = serde_json::from_slice(line).unwrap();
        for field in view.iter() {
            assert_eq!(field.to_value(), value[&*field.name()], "{}", field.name());
        }
    }

    #[test]
    fn the_scanners_kinds_agree_with_a_second_look() {
        // No `\u`: the scanner takes this line, and decides most values from what it saw.
        let line = br#"{"s":"plain","e":"a\"b\\c\n","sl":"a\/b","i":-12,"z":-0,"zero":0,"i18":999999999999999999,"n18":-999999999999999999,"i19":9999999999999999999,"i20":99999999999999999999,"f":0.10,"x":1e3,"t":true,"n":null,"o":{"a":"\/"},"a":[1,"x"]}"#;
        let (store, range) = parsed(line);
        let view = FieldsView::new(line, &store, range.unwrap());
        let value: Value = serde_json::from_slice(line).unwrap();
        assert_eq!(view.iter().count(), value.as_object().unwrap().len());
        for field in view.iter() {
            let name = field.name().into_owned();
            let text = serde_json::to_string(&value[&*name]).unwrap();
            let in_line = match field.field().value {
                FieldValue::Json(span) => Some(span.bytes(line).to_vec()),
                _ => None,
            };
            // Kept in the line exactly when serde_json writes the value back as it stands.
            let raw = &line[..];
            let start = raw
                .windows(name.len() + 3)
                .position(|w| w == format!("\"{name}\":").as_bytes())
                .unwrap()
                + name.len()
                + 3;
            let written_alike = raw[start..].starts_with(text.as_bytes())
                && matches!(raw.get(start + text.len()), Some(b',' | b'}'));
            assert_eq!(in_line.is_some(), written_alike, "{name}");
            assert_eq!(field.to_value(), value[&*name], "{name}");
        }
    }

    #[test]
    fn quote_or_backslash_table() {
        let cases: &[(&[u8], Option<usize>)] = &[
            (b"", None),
            (b"abc", None),
            (b"\"", Some(0)),
            (b"abcdefg\"", Some(7)),
            (b"abcdefgh\"", Some(8)),
            (b"abcdefgh\\\"", Some(8)),
            (b"ab\\cdefgh\"", Some(2)),
            (b"abcdefghijklmnopq", None),
            // Bytes above 0x7f and next to the searched ones never pass for them.
            ("é\"".as_bytes(), Some(2)),
            (b"!#[]]]]]]]]]]]]\"", Some(15)),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                quote_or_backslash(bytes),
                *want,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}
