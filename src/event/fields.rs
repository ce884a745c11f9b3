//! Parsed fields of events: names and values located in the bytes of their chunk, the fields
//! of a whole chunk kept in one vector ([`Field`]s, an event's being a [`FieldRange`] of it).
//!
//! Invariant: a field writes out as the JSON a `serde_json` map of the line would have written,
//! byte for byte, and as valid JSON whatever the line held. A parser keeps a value where it is
//! in the line only when it is written as it stands there: a JSON string whose escapes
//! `serde_json` writes alike, a canonical integer or decimal, a literal, or text that is escaped
//! on the way out. Anything else (a float written another way, a nested object or array, other
//! escapes) is parsed into a `serde_json::Value`. So parsing a line allocates only for what
//! falls outside that, and nothing per field is shared across threads.

use std::borrow::Cow;

use serde_json::Value;

/// Where bytes are in a chunk's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// Offset of the first byte.
    pub start: u32,
    /// How many bytes.
    pub len: u32,
}

impl Span {
    /// The span of `len` bytes from `start`.
    pub fn at(start: usize, len: usize) -> Span {
        Span {
            start: u32::try_from(start).unwrap_or(u32::MAX),
            len: u32::try_from(len).unwrap_or(0),
        }
    }

    /// The span of `part`, a slice of `whole`, where `whole` starts at offset `base` of the
    /// data.
    pub fn of(whole: &[u8], base: usize, part: &[u8]) -> Span {
        let within = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
        Span::at(base + within, part.len())
    }

    /// The bytes of `data` it covers (none if it does not fit).
    pub fn bytes(self, data: &[u8]) -> &[u8] {
        let start = self.start as usize;
        data.get(start..start + self.len as usize)
            .unwrap_or_default()
    }
}

/// A field's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldName {
    /// A JSON string of the data, quotes included, without escapes: written as it stands.
    Json(Span),
    /// Text of the data (a key of a logfmt or nginx error line): escaped when written.
    Text(Span),
    /// A name the parser or the agent gives (`status`, `timestamp_unparsed`, a capture's).
    Static(&'static str),
    /// A name with escapes undone (a JSON key that had some).
    Owned(Box<str>),
}

/// A field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// JSON of the data written as it stands: a string (quotes included), a number, a literal.
    Json(Span),
    /// Text of the data, written as a JSON string (invalid UTF-8 replaced).
    Text(Span),
    /// A value built from the line.
    Owned(Box<Value>),
}

/// One parsed field.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// Its name.
    pub name: FieldName,
    /// Its value.
    pub value: FieldValue,
}

/// Where an event's fields are among its chunk's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FieldRange {
    /// Index of the first.
    pub start: u32,
    /// How many.
    pub len: u32,
}

impl FieldRange {
    fn indices(self) -> std::ops::Range<usize> {
        let start = self.start as usize;
        start..start + self.len as usize
    }
}

/// The name's bytes (a JSON name's without its quotes).
fn name_bytes<'a>(data: &'a [u8], name: &'a FieldName) -> &'a [u8] {
    match name {
        FieldName::Json(span) => {
            let quoted = span.bytes(data);
            quoted
                .get(1..quoted.len().saturating_sub(1))
                .unwrap_or_default()
        }
        FieldName::Text(span) => span.bytes(data),
        FieldName::Static(name) => name.as_bytes(),
        FieldName::Owned(name) => name.as_bytes(),
    }
}

/// The name as text: borrowed unless it is invalid UTF-8.
fn name_text<'a>(data: &'a [u8], name: &'a FieldName) -> Cow<'a, str> {
    match name {
        FieldName::Static(name) => Cow::Borrowed(name),
        FieldName::Owned(name) => Cow::Borrowed(name),
        other => String::from_utf8_lossy(name_bytes(data, other)),
    }
}

/// One event's fields, with the bytes they are in.
#[derive(Debug, Clone, Copy)]
pub struct FieldsView<'a> {
    data: &'a [u8],
    fields: &'a [Field],
}

impl<'a> FieldsView<'a> {
    /// The fields of `range` among `fields`, whose spans are in `data`.
    pub fn new(data: &'a [u8], fields: &'a [Field], range: FieldRange) -> Self {
        FieldsView {
            data,
            fields: fields.get(range.indices()).unwrap_or_default(),
        }
    }

    /// Every field, in order.
    pub fn iter(&self) -> impl Iterator<Item = FieldRef<'a>> + 'a {
        let data = self.data;
        self.fields
            .iter()
            .map(move |field| FieldRef { data, field })
    }

    /// The field named `name`.
    pub fn get(&self, name: &str) -> Option<FieldRef<'a>> {
        self.iter().find(|field| field.is_named(name))
    }

    /// How many fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// One field, with the bytes it is in.
#[derive(Debug, Clone, Copy)]
pub struct FieldRef<'a> {
    data: &'a [u8],
    field: &'a Field,
}

impl<'a> FieldRef<'a> {
    /// The field itself.
    pub fn field(&self) -> &'a Field {
        self.field
    }

    /// The bytes its spans are in.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Its name.
    pub fn name(&self) -> Cow<'a, str> {
        name_text(self.data, &self.field.name)
    }

    /// Its name's bytes (as written, before any replacement of invalid UTF-8).
    pub fn name_bytes(&self) -> &'a [u8] {
        name_bytes(self.data, &self.field.name)
    }

    /// True when it is named `name`.
    pub fn is_named(&self, name: &str) -> bool {
        self.name_bytes() == name.as_bytes()
    }

    /// The text of a string value (escapes undone); `None` for other values.
    pub fn as_str(&self) -> Option<Cow<'a, str>> {
        match &self.field.value {
            FieldValue::Json(span) => {
                let json = span.bytes(self.data);
                if json.first() != Some(&b'"') {
                    return None;
                }
                let inner = &json[1..json.len().saturating_sub(1)];
                if memchr::memchr(b'\\', inner).is_none() {
                    return Some(String::from_utf8_lossy(inner));
                }
                serde_json::from_slice::<String>(json).ok().map(Cow::Owned)
            }
            FieldValue::Text(span) => Some(String::from_utf8_lossy(span.bytes(self.data))),
            FieldValue::Owned(value) => value.as_str().map(Cow::Borrowed),
        }
    }

    /// The value as a filter sees it: a string's text, anything else as JSON.
    pub fn text(&self) -> Cow<'a, [u8]> {
        if let Some(text) = self.as_str() {
            return match text {
                Cow::Borrowed(text) => Cow::Borrowed(text.as_bytes()),
                Cow::Owned(text) => Cow::Owned(text.into_bytes()),
            };
        }
        match &self.field.value {
            FieldValue::Json(span) => Cow::Borrowed(span.bytes(self.data)),
            FieldValue::Text(span) => Cow::Borrowed(span.bytes(self.data)),
            FieldValue::Owned(value) => Cow::Owned(value.to_string().into_bytes()),
        }
    }

    /// The value as a `serde_json::Value` (a copy).
    pub fn to_value(&self) -> Value {
        match &self.field.value {
            FieldValue::Json(span) => {
                serde_json::from_slice(span.bytes(self.data)).unwrap_or(Value::Null)
            }
            FieldValue::Text(span) => {
                Value::String(String::from_utf8_lossy(span.bytes(self.data)).into_owned())
            }
            FieldValue::Owned(value) => (**value).clone(),
        }
    }

    /// The text of a number value as JSON writes it; `None` for other values.
    pub fn number_text(&self) -> Option<Cow<'a, str>> {
        match &self.field.value {
            FieldValue::Json(span) => {
                let json = span.bytes(self.data);
                let numeric = json
                    .first()
                    .is_some_and(|b| *b == b'-' || b.is_ascii_digit());
                numeric.then(|| String::from_utf8_lossy(json))
            }
            FieldValue::Owned(value) if value.is_number() => Some(Cow::Owned(value.to_string())),
            _ => None,
        }
    }
}

/// Adds the fields of one event to a chunk's fields, as a map of them would: a name given
/// again replaces the value of the field of that name, where it stands.
#[derive(Debug)]
pub struct FieldsBuilder<'a> {
    store: &'a mut Vec<Field>,
    data: &'a [u8],
    first: usize,
    /// One bit per name added (a hash of its length and ends): most names need no comparison.
    seen: u64,
}

impl<'a> FieldsBuilder<'a> {
    /// Starts an event's fields at the end of `store`; their spans are in `data`.
    pub fn new(store: &'a mut Vec<Field>, data: &'a [u8]) -> Self {
        let first = store.len();
        FieldsBuilder {
            store,
            data,
            first,
            seen: 0,
        }
    }

    fn bit(&self, name: &FieldName) -> u64 {
        let bytes = name_bytes(self.data, name);
        let mix = bytes.len()
            ^ (usize::from(bytes.first().copied().unwrap_or(0)) << 2)
            ^ (usize::from(bytes.last().copied().unwrap_or(0)) << 4);
        1 << (mix % 64)
    }

    /// Adds a field (or replaces the value of the one of its name).
    pub fn push(&mut self, field: Field) {
        let bit = self.bit(&field.name);
        if self.seen & bit != 0 {
            let data = self.data;
            let name = name_bytes(data, &field.name);
            if let Some(same) = self.store[self.first..]
                .iter_mut()
                .find(|f| name_bytes(data, &f.name) == name)
            {
                same.value = field.value;
                return;
            }
        }
        self.seen |= bit;
        self.store.push(field);
    }

    /// Ends the event's fields; says where they are.
    pub fn finish(self) -> FieldRange {
        FieldRange {
            start: u32::try_from(self.first).unwrap_or(u32::MAX),
            len: u32::try_from(self.store.len() - self.first).unwrap_or(0),
        }
    }

    /// Drops what was added for the event (a line that turned out not to parse).
    pub fn abandon(self) {
        self.store.truncate(self.first);
    }

    /// Drops what was added for the event so far, to add its fields again another way.
    pub fn restart(&mut self) {
        self.store.truncate(self.first);
        self.seen = 0;
    }
}

/// The value of a number written as `text` (at `span`) in a line of text: kept as it stands
/// when it is a canonical integer that fits 64 bits or a decimal `serde_json` writes alike,
/// parsed when it is a decimal written otherwise (`0.10`), text when it is no number (`007`,
/// `1e3`, `1.`). What `serde_json` would make of the line's number, written the same way.
pub fn typed(text: &[u8], span: Span) -> FieldValue {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    let (int, frac) = match memchr::memchr(b'.', digits) {
        Some(dot) => (&digits[..dot], Some(&digits[dot + 1..])),
        None => (digits, None),
    };
    let canonical = !int.is_empty()
        && int.iter().all(u8::is_ascii_digit)
        && (int.len() == 1 || int[0] != b'0')
        && frac.is_none_or(|f| !f.is_empty() && f.iter().all(u8::is_ascii_digit));
    let Some(text_str) = canonical.then(|| std::str::from_utf8(text).ok()).flatten() else {
        return FieldValue::Text(span);
    };
    match frac {
        None if text_str.parse::<i64>().is_ok() && text_str != "-0" => FieldValue::Json(span),
        None => FieldValue::Text(span),
        Some(_) => match text_str
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
        {
            Some(number) if number.to_string() == text_str => FieldValue::Json(span),
            Some(number) => FieldValue::Owned(Box::new(Value::Number(number))),
            None => FieldValue::Text(span),
        },
    }
}

/// The value of a whole number read from a line as `text` (at `span`, its digits): kept as it
/// stands when canonical, else the number it is.
pub fn unsigned(text: &[u8], span: Span, value: u64) -> FieldValue {
    let canonical = text.len() == 1 || text.first() != Some(&b'0');
    if canonical && text.iter().all(u8::is_ascii_digit) {
        FieldValue::Json(span)
    } else {
        FieldValue::Owned(Box::new(Value::from(value)))
    }
}

/// Helpers for the parsers' tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// The fields of a JSON object, every name and value owned (no data needed).
    pub(crate) fn owned(object: &Value) -> (Vec<Field>, FieldRange) {
        let fields: Vec<Field> = object
            .as_object()
            .map(|map| {
                map.iter()
                    .map(|(name, value)| Field {
                        name: FieldName::Owned(name.clone().into_boxed_str()),
                        value: FieldValue::Owned(Box::new(value.clone())),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let range = FieldRange {
            start: 0,
            len: fields.len() as u32,
        };
        (fields, range)
    }

    /// Runs `parse` over `line` as the fields of one event; gives the object they make (the
    /// values as `to_value` gives them) and what `parse` returned, or its error.
    pub(crate) fn object<T, E>(
        line: &[u8],
        parse: impl FnOnce(&mut FieldsBuilder<'_>) -> Result<T, E>,
    ) -> Result<(Value, T), E> {
        let mut store = Vec::new();
        let mut fields = FieldsBuilder::new(&mut store, line);
        let out = parse(&mut fields)?;
        let range = fields.finish();
        let view = FieldsView::new(line, &store, range);
        let object = view
            .iter()
            .map(|f| (f.name().into_owned(), f.to_value()))
            .collect();
        Ok((Value::Object(object), out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_values_are_written_as_serde_json_writes_them() {
        let cases: &[(&str, Value)] = &[
            ("0", json!(0)),
            ("404", json!(404)),
            ("-7", json!(-7)),
            ("12.5", json!(12.5)),
            ("-0.25", json!(-0.25)),
            ("0.10", json!(0.1)),
            ("1.0", json!(1.0)),
            ("007", json!("007")),
            ("1.", json!("1.")),
            (".5", json!(".5")),
            ("1e3", json!("1e3")),
            ("-", json!("-")),
            ("", json!("")),
            ("99999999999999999999", json!("99999999999999999999")),
            ("1.2.3", json!("1.2.3")),
            ("-0", json!("-0")),
        ];
        for (text, want) in cases {
            let data = text.as_bytes();
            let span = Span::at(0, data.len());
            let field = Field {
                name: FieldName::Static("n"),
                value: typed(data, span),
            };
            let got = FieldRef {
                data,
                field: &field,
            }
            .to_value();
            assert_eq!(&got, want, "{text}");
            if let FieldValue::Json(span) = field.value {
                assert_eq!(span.bytes(data), want.to_string().as_bytes(), "{text}");
            }
        }
    }

    #[test]
    fn a_name_given_again_replaces_the_value_where_it_stands() {
        let data = b"a b a c";
        let mut store = vec![Field {
            name: FieldName::Static("other event"),
            value: FieldValue::Text(Span::at(0, 1)),
        }];
        let mut builder = FieldsBuilder::new(&mut store, data);
        for (name, value) in [(0, 2), (2, 4), (4, 6)] {
            builder.push(Field {
                name: FieldName::Text(Span::at(name, 1)),
                value: FieldValue::Text(Span::at(value, 1)),
            });
        }
        let range = builder.finish();
        assert_eq!(range, FieldRange { start: 1, len: 2 });
        let view = FieldsView::new(data, &store, range);
        let got: Vec<(String, String)> = view
            .iter()
            .map(|f| (f.name().into_owned(), f.as_str().unwrap().into_owned()))
            .collect();
        assert_eq!(got, [("a".into(), "c".into()), ("b".into(), "a".into())]);
        assert_eq!(view.get("b").unwrap().as_str().unwrap(), "a");
        assert!(view.get("c").is_none());
    }

    #[test]
    fn json_strings_give_their_text() {
        let data = br#""plain" "with \"escapes\"" 12 true"#;
        let value = |start, len| Field {
            name: FieldName::Static("v"),
            value: FieldValue::Json(Span::at(start, len)),
        };
        let cases: &[(Field, Option<&str>, &[u8])] = &[
            (value(0, 7), Some("plain"), b"plain"),
            (value(8, 18), Some("with \"escapes\""), b"with \"escapes\""),
            (value(27, 2), None, b"12"),
            (value(30, 4), None, b"true"),
        ];
        for (field, text, filter) in cases {
            let field = FieldRef { data, field };
            assert_eq!(field.as_str().as_deref(), *text);
            assert_eq!(&*field.text(), *filter);
        }
    }
}
