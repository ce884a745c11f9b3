//! Templates over events, shared by the sinks: Kafka topics, Elasticsearch indices, Loki labels.
//!
//! A template is literal text and `{{ field }}` references to an event field (the agent's own
//! `source`, `file`, `offset`, `id`, or a parsed one). A *dated* template also formats the
//! literal text with strftime (`logs-%Y.%m.%d`) from the event's time; field values are never
//! strftime-formatted, so a `%` in a log line cannot change what a template means.

use std::fmt::Write;
use std::sync::Arc;

use chrono::format::Item;
use chrono::{DateTime, Utc};

use crate::event::{Chunk, Event};

/// Why a template text is not a template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The text is empty.
    #[error("must not be empty")]
    Empty,
    /// A `{{` has no `}}` after it.
    #[error("`{{{{` without `}}}}` in `{0}`")]
    Unclosed(String),
    /// A `{{ }}` names no field.
    #[error("empty `{{{{ }}}}` in `{0}`")]
    EmptyField(String),
    /// A `%` sequence that strftime does not know.
    #[error("invalid strftime `%` sequence in `{0}`")]
    Strftime(String),
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    /// Literal text.
    Text(String),
    /// Literal text formatted with strftime from the event's time.
    Dated(Vec<Item<'static>>),
    /// The value of an event field.
    Field(String),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template(Vec<Part>);

impl Template {
    /// Parses `{{ field }}` references; the rest is literal text.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| TemplateError::Unclosed(text.to_owned()))?;
            let field = after[..close].trim();
            if field.is_empty() {
                return Err(TemplateError::EmptyField(text.to_owned()));
            }
            parts.push(Part::Field(field.to_owned()));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if parts.is_empty() {
            return Err(TemplateError::Empty);
        }
        Ok(Template(parts))
    }

    /// Parses like [`Template::parse`], and reads the literal text as strftime formats.
    pub fn parse_dated(text: &str) -> Result<Self, TemplateError> {
        let Template(parts) = Template::parse(text)?;
        let parts = parts
            .into_iter()
            .map(|part| match part {
                Part::Text(literal) if literal.contains('%') => {
                    chrono::format::StrftimeItems::new(&literal)
                        .parse_to_owned()
                        .map(Part::Dated)
                        .map_err(|_| TemplateError::Strftime(text.to_owned()))
                }
                other => Ok(other),
            })
            .collect::<Result<_, _>>()?;
        Ok(Template(parts))
    }

    /// True when rendering needs the event's time.
    pub fn is_dated(&self) -> bool {
        self.0.iter().any(|part| matches!(part, Part::Dated(_)))
    }

    /// Renders the template for `event` of `chunk` into `out` (cleared first); `time` is the
    /// event's time, used by dated parts only.
    pub fn render(&self, chunk: &Chunk, event: &Event, time: DateTime<Utc>, out: &mut String) {
        out.clear();
        for part in &self.0 {
            match part {
                Part::Text(text) => out.push_str(text),
                // The items were checked at parse time, so formatting cannot fail.
                Part::Dated(items) => {
                    let _ = write!(out, "{}", time.format_with_items(items.iter()));
                }
                Part::Field(name) => push_field(chunk, event, name, out),
            }
        }
    }
}

/// Appends the text of an event field: the agent's own (`source`, `file`, `offset`, `id`) or a
/// parsed one (strings as they are, other values as JSON). A missing field appends nothing.
pub fn push_field(chunk: &Chunk, event: &Event, name: &str, out: &mut String) {
    match name {
        "source" => out.push_str(&chunk.file.source),
        "file" => out.push_str(&chunk.file.path),
        "offset" => {
            let _ = write!(out, "{}", event.offset);
        }
        "id" => {
            let _ = write!(out, "{:016x}-{}", chunk.file.key, event.offset);
        }
        "stream" if event.stream.is_some() => {
            out.push_str(event.stream.map_or("", |s| s.as_str()));
        }
        "message" if event.fields.is_none() || event.flags.rendered => {
            out.push_str(&String::from_utf8_lossy(&chunk.text(event)))
        }
        _ => {
            if let Some(field) = chunk.fields(event).and_then(|f| f.get(name)) {
                match field.as_str() {
                    Some(text) => out.push_str(&text),
                    None => out.push_str(&String::from_utf8_lossy(&field.text())),
                }
            }
        }
    }
}

/// The times of events: the time parsed from the line (access and error logs, `timestamp:`), or
/// a parsed `timestamp` field when the event has an RFC 3339 one, else the time its chunk was
/// read. The read time is parsed once per chunk, not once per event.
#[derive(Debug, Default)]
pub struct EventClock {
    last_read_time: Option<(Arc<str>, DateTime<Utc>)>,
}

impl EventClock {
    /// The time of `event` of `chunk`.
    pub fn time_of(&mut self, chunk: &Chunk, event: &Event) -> DateTime<Utc> {
        if let Some(nanos) = event.time {
            return DateTime::from_timestamp_nanos(nanos);
        }
        let own = chunk
            .fields(event)
            .and_then(|fields| fields.get("timestamp"))
            .and_then(|field| {
                field
                    .as_str()
                    .map(|text| DateTime::parse_from_rfc3339(&text))
            })
            .and_then(Result::ok);
        if let Some(time) = own {
            return time.with_timezone(&Utc);
        }
        match &self.last_read_time {
            Some((read_time, time)) if Arc::ptr_eq(read_time, &chunk.read_time) => *time,
            _ => {
                // The agent writes the read time itself, so it always parses; the epoch is the
                // sign of a bug, not a silent "now".
                let time = DateTime::parse_from_rfc3339(&chunk.read_time)
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_default();
                self.last_read_time = Some((Arc::clone(&chunk.read_time), time));
                time
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FileMeta, StaticFields, testing};
    use serde_json::json;

    fn chunk_with_fields(fields: StaticFields) -> Chunk {
        let file = FileMeta::new(0xab, "web", "/logs/a.log");
        let mut chunk = testing::chunk(file, &[(b"line", 7)], 100);
        testing::set_fields(&mut chunk, 0, &serde_json::Value::Object(fields));
        chunk
    }

    #[test]
    fn templates_table() {
        let mut fields = StaticFields::new();
        fields.insert("team".into(), json!("payments"));
        fields.insert("shard".into(), json!(3));
        fields.insert("pct".into(), json!("100%Y"));
        let mut chunk = chunk_with_fields(fields);
        chunk.events[0].stream = Some(crate::event::Stream::Stderr);
        let time = DateTime::parse_from_rfc3339("2026-03-04T05:06:07Z")
            .unwrap()
            .with_timezone(&Utc);
        // (template, dated, expected)
        let cases = [
            ("logs", false, "logs"),
            ("logs-{{ source }}", false, "logs-web"),
            ("{{source}}.{{ team }}", false, "web.payments"),
            ("s{{ shard }}-{{ missing }}", false, "s3-"),
            ("{{ id }}", false, "00000000000000ab-7"),
            ("logs-%Y", false, "logs-%Y"),
            ("logs-{{ source }}-%Y.%m.%d", true, "logs-web-2026.03.04"),
            ("%Y{{ pct }}", true, "2026100%Y"),
            ("{{ stream }}", false, "stderr"),
        ];
        let mut out = String::new();
        for (text, dated, want) in cases {
            let template = if dated {
                Template::parse_dated(text).unwrap()
            } else {
                Template::parse(text).unwrap()
            };
            assert_eq!(template.is_dated(), text.contains("%Y") && dated, "{text}");
            template.render(&chunk, &chunk.events[0], time, &mut out);
            assert_eq!(out, want, "{text}");
        }
        let bad = [
            ("", TemplateError::Empty),
            (
                "logs-{{ source",
                TemplateError::Unclosed("logs-{{ source".into()),
            ),
            ("{{ }}", TemplateError::EmptyField("{{ }}".into())),
        ];
        for (text, error) in bad {
            assert_eq!(Template::parse(text).unwrap_err(), error, "{text:?}");
        }
        assert_eq!(
            Template::parse_dated("x-%Q").unwrap_err(),
            TemplateError::Strftime("x-%Q".into())
        );
    }

    #[test]
    fn event_time_is_the_parsed_timestamp_or_the_read_time() {
        let mut clock = EventClock::default();
        let cases = [
            (json!("2020-01-02T03:04:05Z"), "2020-01-02T03:04:05+00:00"),
            (
                json!("2020-01-02T03:04:05+02:00"),
                "2020-01-02T01:04:05+00:00",
            ),
            (json!("yesterday"), "2026-11-25T04:00:00+00:00"),
            (json!(1234), "2026-11-25T04:00:00+00:00"),
        ];
        for (timestamp, want) in cases {
            let mut fields = StaticFields::new();
            fields.insert("timestamp".into(), timestamp.clone());
            let chunk = chunk_with_fields(fields);
            let time = clock.time_of(&chunk, &chunk.events[0]);
            assert_eq!(time.to_rfc3339(), want, "{timestamp}");
        }
        let mut chunk = chunk_with_fields(StaticFields::new());
        chunk.events[0].time = Some(1_000_000_000);
        let parsed = clock.time_of(&chunk, &chunk.events[0]);
        assert_eq!(
            parsed.to_rfc3339(),
            "1970-01-01T00:00:01+00:00",
            "the line's own time"
        );
    }
}
