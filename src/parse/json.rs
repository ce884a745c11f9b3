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
}
