//! Events as VRL values, and VRL values as the events of a transform's output chunk.
//!
//! Invariant: a program sees an event exactly as the JSON encoder would ship it (message or
//! parsed fields, `timestamp`, static fields, `kubernetes`, `file`, `source`, `offset`, `id`,
//! flags), with `timestamp` as a VRL timestamp; what it leaves is what the sinks ship, agent
//! keys included, and each output event keeps the offset of the line it came from, so acks
//! through a transform stay per line.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use vrl::value::{KeyString, ObjectMap, Value};

use crate::event::fields::FieldsBuilder;
use crate::event::{Chunk, Event};
use crate::parse::json;
use crate::sink::encoding::encode_json;

/// `event` of `chunk` as a VRL object; `scratch` is a buffer reused between events.
pub fn to_value(chunk: &Chunk, event: &Event, scratch: &mut Vec<u8>) -> Value {
    scratch.clear();
    encode_json(chunk, event, scratch);
    let mut value = match serde_json::from_slice::<Value>(scratch) {
        Ok(value @ Value::Object(_)) => value,
        // The encoder writes an object; anything else would be a bug, shipped as text.
        _ => {
            let mut object = ObjectMap::new();
            object.insert(
                KeyString::from("message"),
                Value::from(String::from_utf8_lossy(scratch).trim_end().to_owned()),
            );
            Value::Object(object)
        }
    };
    if let Value::Object(object) = &mut value
        && let Some(stamp) = object.get_mut("timestamp")
        && let Some(Ok(time)) = match &*stamp {
            Value::String(text) => Some(DateTime::parse_from_rfc3339(text)),
            Value::Bytes(text) => {
                Some(DateTime::parse_from_rfc3339(&String::from_utf8_lossy(text)))
            }
            _ => None,
        }
    {
        *stamp = Value::Timestamp(time.with_timezone(&Utc));
    }
    value
}

/// The events of a transform's output chunk, written as the JSON objects they will be shipped
/// as.
#[derive(Debug, Default)]
pub struct Rendered {
    data: Vec<u8>,
    events: Vec<Event>,
}

impl Rendered {
    /// Adds `value` as the event of the line at `offset`; a value that is not an object is
    /// shipped as the `message` of one, as Vector does.
    pub fn push_value(&mut self, value: Value, offset: u64) {
        let object = match value {
            Value::Object(object) => object,
            other => {
                let mut object = ObjectMap::new();
                object.insert(KeyString::from("message"), other);
                object
            }
        };
        let time = match object.get("timestamp") {
            Some(Value::Timestamp(time)) => time.timestamp_nanos_opt(),
            _ => None,
        };
        let start = self.data.len();
        if serde_json::to_writer(&mut self.data, &object).is_err() {
            // Writing to memory fails only on values JSON cannot hold; such an event is
            // shipped as its text.
            self.data.truncate(start);
            let text = Value::Object(object).to_string();
            serde_json::to_writer(&mut self.data, &serde_json::json!({ "message": text }))
                .unwrap_or_default();
        }
        self.push_event(start, offset, time);
    }

    /// Adds `event` of `chunk` unchanged, as the JSON encoder ships it.
    pub fn push_as_shipped(&mut self, chunk: &Chunk, event: &Event) {
        let start = self.data.len();
        encode_json(chunk, event, &mut self.data);
        self.data.pop(); // the NDJSON newline
        self.push_event(start, event.offset, event.time);
    }

    fn push_event(&mut self, start: usize, offset: u64, time: Option<i64>) {
        let len = self.data.len() - start;
        let mut event = Event::new(start as u32, len as u32, offset);
        event.flags.rendered = true;
        event.time = time;
        self.events.push(event);
        self.data.push(b'\n');
    }

    /// How many events it has.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when it has none.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The output chunk of `input`: same file and end offset, these events with their fields.
    pub fn into_chunk(self, input: &Chunk) -> Chunk {
        let data = Bytes::from(self.data);
        let mut events = self.events;
        let mut fields = Vec::with_capacity(events.len() * 8);
        for event in &mut events {
            let start = event.start as usize;
            let message = data
                .get(start..start + event.len as usize)
                .unwrap_or_default();
            let mut builder = FieldsBuilder::new(&mut fields, &data);
            match json::parse(message, start, &mut builder) {
                Ok(()) => event.fields = Some(builder.finish()),
                Err(_) => builder.abandon(),
            }
        }
        input.derived(data, events, Arc::new(fields), 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::FileMeta;
    use crate::event::testing;
    use crate::event::{Batch, BatchPart};
    use crate::sink::encoding::Encoding;
    use crate::sink::encoding::encode_batch;

    fn shipped(chunk: Chunk) -> Vec<serde_json::Value> {
        let chunk = Arc::new(chunk);
        let batch = Batch {
            parts: vec![BatchPart {
                range: 0..chunk.events.len(),
                chunk: Arc::clone(&chunk),
            }],
            events: chunk.events.len(),
            bytes: 0,
        };
        let mut out = Vec::new();
        encode_batch(Encoding::Json, &batch, &mut out);
        out.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    #[test]
    fn a_program_sees_the_event_as_shipped_and_its_output_is_shipped_as_left() {
        let input = testing::chunk(
            FileMeta::new(0xab, "app", "/l/a.log"),
            &[(b"hello", 40), (b"bye", 46)],
            50,
        );
        let mut scratch = Vec::new();
        let seen = to_value(&input, &input.events[0], &mut scratch);
        let Value::Object(object) = &seen else {
            panic!("{seen:?}")
        };
        assert_eq!(object.get("message"), Some(&Value::from("hello")));
        assert_eq!(object.get("offset"), Some(&Value::from(40)));
        assert!(
            matches!(object.get("timestamp"), Some(Value::Timestamp(_))),
            "{seen:?}"
        );
        let mut rendered = Rendered::default();
        let mut changed = seen.clone();
        if let Value::Object(o) = &mut changed {
            o.remove("file");
            o.insert("level".into(), Value::from("info"));
        }
        rendered.push_value(changed, 40);
        rendered.push_value(Value::from("just text"), 46);
        let output = rendered.into_chunk(&input);
        assert_eq!(output.end_offset, 50);
        assert_eq!(
            output.events.iter().map(|e| e.offset).collect::<Vec<_>>(),
            [40, 46]
        );
        let shipped = shipped(output);
        assert_eq!(shipped[0]["level"], "info");
        assert_eq!(shipped[0]["message"], "hello");
        assert!(
            shipped[0].get("file").is_none(),
            "the agent adds no key back: {}",
            shipped[0]
        );
        assert!(
            shipped[0]["timestamp"]
                .as_str()
                .unwrap()
                .starts_with("2026-11-25T04:00:00"),
            "{}",
            shipped[0]
        );
        assert_eq!(shipped[1], serde_json::json!({"message": "just text"}));
    }

    #[test]
    fn events_pushed_as_shipped_are_shipped_the_same() {
        let input = testing::chunk(FileMeta::new(1, "app", "/l/a.log"), &[(b"x", 0)], 2);
        let want = shipped(testing::chunk(
            FileMeta::new(1, "app", "/l/a.log"),
            &[(b"x", 0)],
            2,
        ));
        let mut rendered = Rendered::default();
        rendered.push_as_shipped(&input, &input.events[0]);
        let output = rendered.into_chunk(&input);
        assert!(
            output.fields(&output.events[0]).is_some(),
            "fields for templates and OTLP"
        );
        assert_eq!(shipped(output), want);
    }
}
