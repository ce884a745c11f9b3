//! OpenTelemetry `AnyValue`s from what events hold: parsed fields, static fields, severity
//! names; and attribute lists written in place, so that a record built again for the next
//! batch keeps its allocations.
//!
//! Invariant: a value maps as its JSON would (strings, integers that fit 64 bits, doubles,
//! booleans, objects as key-value lists, arrays, `null` as an empty value), whatever the field's
//! representation in the event.

use std::borrow::Cow;
use std::fmt::Write as _;

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value,
};
use serde_json::Value;

use crate::event::{FieldRef, FieldValue};

/// An attribute list being written over the one a record had for an earlier batch: each
/// attribute reuses the key and string of the one at its place.
pub struct Attributes<'a> {
    list: &'a mut Vec<KeyValue>,
    used: usize,
}

impl<'a> Attributes<'a> {
    /// Starts writing `list` from its first attribute.
    pub fn over(list: &'a mut Vec<KeyValue>) -> Self {
        Attributes { list, used: 0 }
    }

    fn next(&mut self, key: &str) -> &mut Option<AnyValue> {
        if self.used == self.list.len() {
            self.list.push(KeyValue::default());
        }
        let slot = &mut self.list[self.used];
        self.used += 1;
        if slot.key != key {
            slot.key.clear();
            slot.key.push_str(key);
        }
        &mut slot.value
    }

    /// A string attribute.
    pub fn text(&mut self, key: &str, text: &str) {
        set_text(self.next(key), |s| s.push_str(text));
    }

    /// The event id: the file generation's key in hex, a dash, the offset.
    pub fn uid(&mut self, key: &str, file_key: u64, offset: u64) {
        set_text(self.next(key), |s| {
            let _ = write!(s, "{file_key:016x}-{offset}");
        });
    }

    /// An attribute of any value.
    pub fn value(&mut self, key: &str, value: AnyValue) {
        *self.next(key) = Some(value);
    }

    /// Drops what the list held beyond the attributes written.
    pub fn finish(self) {
        self.list.truncate(self.used);
    }
}

/// Makes `value` a string value written by `fill`, reusing the string it held.
pub fn set_text(value: &mut Option<AnyValue>, fill: impl FnOnce(&mut String)) {
    let mut text = match value.take() {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(text)),
        }) => text,
        _ => String::new(),
    };
    text.clear();
    fill(&mut text);
    *value = Some(AnyValue {
        value: Some(any_value::Value::StringValue(text)),
    });
}

/// Appends bytes of a line as text (invalid UTF-8 replaced).
pub fn push_lossy(out: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => out.push_str(text),
        Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
    }
}

/// The severity of a level's value: its text, and the OpenTelemetry number of the names in
/// common use (syslog's, log4j's, Go's and Python's) or of pino/bunyan's numbers; 0
/// (unspecified) for others.
pub fn severity_of<'a>(field: &FieldRef<'a>) -> (Cow<'a, str>, i32) {
    let text = match field.as_str() {
        Some(text) => text,
        None => match field.text() {
            Cow::Borrowed(bytes) => String::from_utf8_lossy(bytes),
            Cow::Owned(bytes) => Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()),
        },
    };
    let number = severity_number(&text);
    (text, number)
}

fn severity_number(text: &str) -> i32 {
    match text.trim().to_ascii_lowercase().as_str() {
        "trace" | "finest" | "10" => 1,
        "debug" | "fine" | "dbg" | "20" => 5,
        "info" | "information" | "informational" | "inf" | "30" => 9,
        "notice" => 10,
        "warn" | "warning" | "wrn" | "40" => 13,
        "error" | "err" | "severe" | "50" => 17,
        "crit" | "critical" => 18,
        "alert" => 19,
        "fatal" | "emerg" | "emergency" | "panic" | "dpanic" | "60" => 21,
        _ => 0,
    }
}

/// Bytes of a line as a string value (invalid UTF-8 replaced).
fn text_value(bytes: &[u8]) -> AnyValue {
    let mut text = String::new();
    push_lossy(&mut text, bytes);
    AnyValue {
        value: Some(any_value::Value::StringValue(text)),
    }
}

/// A parsed field's value: strings, numbers, booleans as themselves; objects and arrays as
/// key-value lists and arrays; `null` as an empty value.
pub fn field_value(field: &FieldRef<'_>) -> AnyValue {
    match &field.field().value {
        FieldValue::Json(span) => {
            let json = span.bytes(field.data());
            match json.first() {
                Some(b'"') => match field.as_str() {
                    Some(text) => string(&text),
                    None => AnyValue { value: None },
                },
                Some(b't') => boolean(true),
                Some(b'f') => boolean(false),
                Some(b'n') | None => AnyValue { value: None },
                Some(_) => number(json),
            }
        }
        FieldValue::Text(span) => text_value(span.bytes(field.data())),
        FieldValue::Owned(value) => json_value(value),
    }
}

/// A JSON number: an integer when it is one that fits, else a double.
fn number(json: &[u8]) -> AnyValue {
    let text = String::from_utf8_lossy(json);
    if let Ok(integer) = text.parse::<i64>() {
        return int(integer);
    }
    match text.parse::<f64>() {
        Ok(double) => AnyValue {
            value: Some(any_value::Value::DoubleValue(double)),
        },
        Err(_) => string(&text),
    }
}

/// A JSON value, as [`field_value`] maps one.
pub fn json_value(value: &Value) -> AnyValue {
    match value {
        Value::Null => AnyValue { value: None },
        Value::Bool(b) => boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => int(i),
            None => AnyValue {
                value: Some(any_value::Value::DoubleValue(
                    n.as_f64().unwrap_or(f64::NAN),
                )),
            },
        },
        Value::String(s) => string(s),
        Value::Array(values) => AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: values.iter().map(json_value).collect(),
            })),
        },
        Value::Object(map) => kvlist(
            map.iter()
                .map(|(key, value)| key_value(key, json_value(value)))
                .collect(),
        ),
    }
}

pub fn string(text: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(text.to_owned())),
    }
}

pub fn int(value: i64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::IntValue(value)),
    }
}

pub fn boolean(value: bool) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::BoolValue(value)),
    }
}

pub fn kvlist(values: Vec<KeyValue>) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList { values })),
    }
}

pub fn key_value(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn severity_numbers_table() {
        let cases = [
            ("INFO", 9),
            ("warn", 13),
            ("Warning", 13),
            ("error", 17),
            ("crit", 18),
            ("FATAL", 21),
            ("debug", 5),
            ("trace", 1),
            ("30", 9),
            ("50", 17),
            ("verbose", 0),
            ("", 0),
        ];
        for (text, want) in cases {
            assert_eq!(severity_number(text), want, "{text}");
        }
    }

    #[test]
    fn json_values_table() {
        let cases = [
            (json!(null), AnyValue { value: None }),
            (json!(true), boolean(true)),
            (json!(-3), int(-3)),
            (
                json!(1.5),
                AnyValue {
                    value: Some(any_value::Value::DoubleValue(1.5)),
                },
            ),
            (json!("x"), string("x")),
            (
                json!({"a": [1, "b"]}),
                kvlist(vec![key_value(
                    "a",
                    AnyValue {
                        value: Some(any_value::Value::ArrayValue(ArrayValue {
                            values: vec![int(1), string("b")],
                        })),
                    },
                )]),
            ),
        ];
        for (value, want) in cases {
            assert_eq!(json_value(&value), want, "{value}");
        }
    }

    #[test]
    fn numbers_table() {
        let double = |d| AnyValue {
            value: Some(any_value::Value::DoubleValue(d)),
        };
        let cases: [(&[u8], AnyValue); 4] = [
            (b"42", int(42)),
            (b"-7", int(-7)),
            (b"0.25", double(0.25)),
            (b"18446744073709551616", double(18446744073709551616.0)),
        ];
        for (json, want) in cases {
            assert_eq!(number(json), want, "{}", String::from_utf8_lossy(json));
        }
    }
}
