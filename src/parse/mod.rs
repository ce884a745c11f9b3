//! Parsing lines into structured events: pure functions over bytes, one file per format, and
//! the stages around them.
//!
//! A chunk of framed lines goes through, in order: container-runtime decoding and the joining
//! of partial lines (`cri`, `docker`), multiline grouping ([`multiline`]), both in
//! [`assemble`]; then the line format ([`LineParser`]), the configured `timestamp`, and the
//! `filter`. Static `fields` and the pod's identity ([`crate::event::enrichment`]) are computed once per source
//! and written by the encoder. A line that fails to parse keeps its raw `message` and gets a
//! `parse_error`; nothing is dropped but what a filter drops, and that is counted.

pub mod access;
pub mod assemble;
pub mod cri;
pub mod docker;
pub mod json;
pub mod logfmt;
pub mod multiline;
pub mod nginx_error;
pub mod regex;
pub mod time;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use ::regex::bytes::{Regex, RegexBuilder};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use self::access::Layout;
use self::assemble::{Assembler, FileState, Release, Runtime};
use self::multiline::MultilineConfig;
use self::regex::{RegexFormatError, RegexParser};
use self::time::TimeFormat;
use crate::event::enrichment::{Enrichment, PodIdentity};
use crate::event::fields::{Field, FieldName, FieldRef, FieldsBuilder, FieldsView};
use crate::event::{Event, StaticFields};

/// How a source's lines are parsed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// The line is the `message`, as it is.
    #[default]
    Raw,
    /// The line is a JSON object whose keys become the event's.
    Json,
    /// `key=value` pairs.
    Logfmt,
    /// The named captures of the source's `pattern`.
    Regex,
    /// nginx's `combined` access log (and the `main` format with forwarded-for).
    NginxCombined,
    /// nginx's error log.
    NginxError,
    /// Apache's common log format.
    ApacheCommon,
    /// Apache's combined log format.
    ApacheCombined,
    /// containerd / CRI-O container logs; `P` pieces are joined.
    Cri,
    /// Docker's json-file logs; pieces without a newline are joined.
    Docker,
}

impl Format {
    /// Whether lines of this format become fields (and so can carry a `timestamp` field).
    pub fn has_fields(self) -> bool {
        !matches!(self, Format::Raw | Format::Cri | Format::Docker)
    }
}

/// A regular expression from the configuration: compiled when the configuration is read, so a
/// bad one is a configuration error naming its key, and printed back as written.
#[derive(Clone)]
pub struct Pattern {
    text: String,
    regex: Regex,
}

/// A pattern that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid regex `{pattern}`: {reason}")]
pub struct PatternError {
    pattern: String,
    reason: String,
}

impl Pattern {
    /// Compiles `text` (the `regex` crate's syntax, on bytes).
    pub fn new(text: &str) -> Result<Self, PatternError> {
        let regex = RegexBuilder::new(text)
            .size_limit(8 << 20)
            .build()
            .map_err(|e| PatternError {
                pattern: text.to_owned(),
                // The crate's message spans lines (it draws the pattern); its last line says why.
                reason: e
                    .to_string()
                    .lines()
                    .rfind(|l| !l.trim().is_empty())
                    .unwrap_or("cannot compile")
                    .trim()
                    .trim_start_matches("error: ")
                    .to_owned(),
            })?;
        Ok(Pattern {
            text: text.to_owned(),
            regex,
        })
    }

    /// The compiled expression.
    pub fn regex(&self) -> &Regex {
        &self.regex
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.text)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Pattern::new(&text).map_err(serde::de::Error::custom)
    }
}

/// `timestamp:` of a source: which field holds the event time, and how it is written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampConfig {
    /// The parsed field.
    pub field: String,
    /// Its layout.
    pub format: TimeFormat,
}

/// `filter:` of a source.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// The field matched: a parsed field, `stream`, or `message` (the raw line for formats
    /// without fields).
    #[serde(default = "default_filter_field")]
    pub field: String,
    /// What to look for in it.
    pub pattern: Pattern,
    /// What happens to events that match.
    pub action: FilterAction,
}

fn default_filter_field() -> String {
    "message".to_owned()
}

/// What a filter does with a matching event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterAction {
    /// Keep only the events that match.
    Keep,
    /// Drop the events that match.
    Drop,
}

/// The line formats, compiled (the regex of `format: regex`).
#[derive(Debug)]
pub struct LineParser {
    format: Format,
    regex: Option<Result<RegexParser, RegexFormatError>>,
}

impl LineParser {
    /// A parser of `format`; `pattern` is the source's, for `format: regex`.
    pub fn new(format: Format, pattern: Option<&Pattern>) -> Self {
        let regex = match (format, pattern) {
            (Format::Regex, Some(pattern)) => Some(RegexParser::new(pattern)),
            (Format::Regex, None) => Some(Err(RegexFormatError::NoNamedGroup)),
            _ => None,
        };
        LineParser { format, regex }
    }

    /// Parses the message of `event` (in `data`) into fields added to `store` (and its time,
    /// for formats that carry one); on failure sets `parse_error` and returns false.
    pub fn parse(&self, event: &mut Event, data: &[u8], store: &mut Vec<Field>) -> bool {
        if matches!(self.format, Format::Raw | Format::Cri | Format::Docker) {
            return true;
        }
        let base = event.start as usize;
        let message = message_of(data, event);
        let mut fields = FieldsBuilder::new(store, data);
        let result: Result<Option<i64>, String> = match self.format {
            Format::Raw | Format::Cri | Format::Docker => Ok(None),
            Format::Json => json::parse(message, base, &mut fields).map(|()| None),
            Format::Logfmt => logfmt::parse(message, base, &mut fields)
                .map(|()| None)
                .map_err(|e| e.to_string()),
            Format::Regex => match &self.regex {
                Some(Ok(parser)) => parser.parse(message, base, &mut fields).map(|()| None),
                Some(Err(e)) => Err(e.clone()),
                None => Err(RegexFormatError::NoNamedGroup),
            }
            .map_err(|e| e.to_string()),
            Format::NginxCombined => access(message, Layout::NginxCombined, base, &mut fields),
            Format::ApacheCommon => access(message, Layout::Common, base, &mut fields),
            Format::ApacheCombined => access(message, Layout::Combined, base, &mut fields),
            Format::NginxError => nginx_error::parse(message, base, &mut fields)
                .map(Some)
                .map_err(|e| e.to_string()),
        };
        match result {
            Ok(time) => {
                event.fields = Some(fields.finish());
                if time.is_some() {
                    event.time = time;
                }
                true
            }
            Err(error) => {
                fields.abandon();
                event.parse_error = Some(error.into_boxed_str());
                false
            }
        }
    }

    /// Parses every event of a chunk in place (their messages are in `data`, their fields go
    /// into `store`); returns how many failed to parse.
    pub fn parse_all(&self, data: &[u8], events: &mut [Event], store: &mut Vec<Field>) -> u64 {
        if matches!(self.format, Format::Raw | Format::Cri | Format::Docker) {
            return 0;
        }
        events
            .iter_mut()
            .map(|e| u64::from(!self.parse(e, data, store)))
            .sum()
    }
}

fn access(
    message: &[u8],
    layout: Layout,
    base: usize,
    fields: &mut FieldsBuilder<'_>,
) -> Result<Option<i64>, String> {
    access::parse(message, layout, base, fields)
        .map(Some)
        .map_err(|e| e.to_string())
}

fn message_of<'a>(data: &'a [u8], event: &Event) -> &'a [u8] {
    let start = event.start as usize;
    data.get(start..start + event.len as usize)
        .unwrap_or_default()
}

/// What the stages after framing did to one chunk, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ParseCounts {
    /// Lines (or groups) that failed to parse.
    pub parse_errors: u64,
    /// Events dropped by the filter.
    pub filtered: u64,
    /// Multiline events of more than one line.
    pub multiline_groups: u64,
    /// Multiline events cut by `max_lines` or `max_bytes`.
    pub multiline_cut: u64,
    /// Events whose configured timestamp could not be read.
    pub timestamp_failures: u64,
}

/// A chunk after parsing.
#[derive(Debug)]
pub struct Parsed {
    /// The bytes the events' messages are in: the read bytes, followed by the messages that
    /// assembly rewrote (joined, unescaped), if any.
    pub data: bytes::Bytes,
    /// The events, in file order.
    pub events: Vec<Event>,
    /// The parsed fields of the events (see [`Event::fields`]).
    pub fields: Vec<Field>,
    /// The offset of the first line held back for a later chunk (an unfinished multiline
    /// group, a partial container line): the checkpoint must not pass it.
    pub hold_from: Option<u64>,
    /// What happened, for metrics.
    pub counts: ParseCounts,
}

/// The parts of a source's configuration that say how its lines are parsed (the source's config
/// lends them, so that parsing needs nothing from the layers above it).
#[derive(Debug, Clone, Copy)]
pub struct ParseSettings<'a> {
    /// How each line is parsed.
    pub format: Format,
    /// The `regex` format's pattern.
    pub pattern: Option<&'a Pattern>,
    /// How lines are grouped into events.
    pub multiline: Option<&'a MultilineConfig>,
    /// Which field gives the event's time, and how to read it.
    pub timestamp: Option<&'a TimestampConfig>,
    /// Which events are kept.
    pub filter: Option<&'a FilterConfig>,
    /// The longest event, in bytes (multiline groups are cut there).
    pub max_line_bytes: usize,
    /// The source's static fields.
    pub fields: &'a StaticFields,
    /// The pod identity stamped on every event.
    pub kubernetes: &'a PodIdentity,
}

/// Everything a source does to its framed lines, compiled once per source.
#[derive(Debug)]
pub struct SourceParser {
    line: LineParser,
    assembler: Assembler,
    timestamp: Option<TimestampConfig>,
    filter: Option<FilterConfig>,
    enrichment: Arc<Enrichment>,
    passthrough: bool,
}

impl SourceParser {
    /// The stages of a source's configuration (checked when it was loaded).
    pub fn new(config: ParseSettings<'_>) -> Self {
        let runtime = match config.format {
            Format::Cri => Some(Runtime::Cri),
            Format::Docker => Some(Runtime::Docker),
            _ => None,
        };
        let rules = config.multiline.and_then(|m| {
            multiline::Rules::new(m)
                .inspect_err(|e| tracing::error!(error = %e, "multiline settings ignored"))
                .ok()
                .map(|rules| (rules, m.clone()))
        });
        let passthrough = config.format == Format::Raw
            && rules.is_none()
            && config.timestamp.is_none()
            && config.filter.is_none();
        SourceParser {
            line: LineParser::new(config.format, config.pattern),
            assembler: Assembler::new(runtime, rules, config.max_line_bytes),
            timestamp: config.timestamp.cloned(),
            filter: config.filter.cloned(),
            enrichment: Arc::new(Enrichment::new(config.fields, config.kubernetes)),
            passthrough,
        }
    }

    /// The per-source keys the encoder writes into every event.
    pub fn enrichment(&self) -> &Arc<Enrichment> {
        &self.enrichment
    }

    /// How long an open multiline group may wait for its next line.
    pub fn group_timeout(&self) -> Option<std::time::Duration> {
        self.assembler.timeout()
    }

    /// Runs the stages over one chunk of framed lines of the file whose state is `state`.
    /// `release` says what held lines may go out now.
    pub fn process(
        &self,
        state: &mut FileState,
        data: bytes::Bytes,
        events: Vec<Event>,
        release: Release,
    ) -> Parsed {
        if self.passthrough {
            return Parsed {
                data,
                events,
                fields: Vec::new(),
                hold_from: None,
                counts: ParseCounts::default(),
            };
        }
        let assembled = self.assembler.assemble(state, data, events, release);
        let (data, mut events) = (assembled.data, assembled.events);
        let mut counts = ParseCounts {
            multiline_groups: assembled.groups,
            multiline_cut: assembled.cut,
            parse_errors: events.iter().filter(|e| e.parse_error.is_some()).count() as u64,
            ..ParseCounts::default()
        };
        // About one field per 24 bytes of structured lines, so that the vector rarely grows.
        let mut fields = Vec::new();
        if self.line.format.has_fields() {
            fields.reserve(data.len() / 24);
        }
        counts.parse_errors += self.line.parse_all(&data, &mut events, &mut fields);
        if let Some(rule) = &self.timestamp {
            for event in &mut events {
                if !take_timestamp(rule, event, &data, &mut fields) {
                    event.flags.timestamp_failed = true;
                    counts.timestamp_failures += 1;
                }
            }
        }
        if let Some(filter) = &self.filter {
            let before = events.len();
            events.retain(|event| {
                let matched = field_text(event, &data, &fields, &filter.field)
                    .is_some_and(|text| filter.pattern.regex().is_match(&text));
                matched == (filter.action == FilterAction::Keep)
            });
            counts.filtered = (before - events.len()) as u64;
        }
        Parsed {
            data,
            events,
            fields,
            hold_from: assembled.hold_from,
            counts,
        }
    }
}

/// Sets the event's time from the configured field; false when it cannot. A `timestamp` field
/// that does not parse is kept as `timestamp_unparsed` (moved to the end, as a map's removal and
/// insertion would), since the event's own `timestamp` must be RFC 3339.
fn take_timestamp(
    rule: &TimestampConfig,
    event: &mut Event,
    data: &[u8],
    store: &mut [Field],
) -> bool {
    let Some(range) = event.fields else {
        return false;
    };
    let view = FieldsView::new(data, store, range);
    if let Some(time) = view
        .get(&rule.field)
        .and_then(|field| rule.format.parse_field(&field))
    {
        event.time = Some(time);
        return true;
    }
    let at = view.iter().position(|field| field.is_named("timestamp"));
    if let Some(at) = at {
        let (start, len) = (range.start as usize, range.len as usize);
        if let Some(own) = store.get_mut(start + at..start + len) {
            own.rotate_left(1);
            if let Some(last) = own.last_mut() {
                last.name = FieldName::Static("timestamp_unparsed");
            }
        }
    }
    false
}

/// The text of `field` of an event, for filters: a parsed field (numbers and other values as
/// JSON), `stream`, or the message when the event has no fields of its own.
fn field_text<'a>(
    event: &'a Event,
    data: &'a [u8],
    store: &'a [Field],
    field: &str,
) -> Option<Cow<'a, [u8]>> {
    if let Some(range) = event.fields {
        let view = FieldsView::new(data, store, range);
        return view.get(field).map(|found: FieldRef<'a>| found.text());
    }
    match field {
        "message" => Some(Cow::Borrowed(message_of(data, event))),
        "stream" => event.stream.map(|s| Cow::Borrowed(s.as_str().as_bytes())),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
