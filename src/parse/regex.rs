//! `format: regex`: a `pattern` whose named captures become the event's fields.
//!
//! Captures that are canonical integers or decimals become numbers; a group that did not take
//! part in the match is left out. The capture positions are reused from line to line.

use std::cell::RefCell;

use regex::bytes::{CaptureLocations, Regex};

use super::Pattern;
use crate::event::fields::{Field, FieldName, FieldsBuilder, Span, typed};

/// Why a line did not parse, or why a pattern cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegexFormatError {
    /// The line does not match the pattern.
    #[error("line does not match the pattern")]
    NoMatch,
    /// The pattern names no capture group.
    #[error("the pattern has no named capture group (`(?P<name>...)`)")]
    NoNamedGroup,
}

/// A compiled `format: regex`.
#[derive(Debug)]
pub struct RegexParser {
    regex: Regex,
    /// (group index, field name) of every named group; the names are interned (see
    /// [`intern`]), so that fields name them without a copy or a count per line.
    names: Vec<(usize, &'static str)>,
    /// Capture positions, reused: a parser belongs to one tailer thread.
    locations: RefCell<CaptureLocations>,
}

impl RegexParser {
    /// A parser for `pattern`, which must name at least one group.
    pub fn new(pattern: &Pattern) -> Result<Self, RegexFormatError> {
        let regex = pattern.regex().clone();
        let names: Vec<(usize, &'static str)> = regex
            .capture_names()
            .enumerate()
            .filter_map(|(i, name)| Some((i, intern(name?))))
            .collect();
        if names.is_empty() {
            return Err(RegexFormatError::NoNamedGroup);
        }
        let locations = RefCell::new(regex.capture_locations());
        Ok(RegexParser {
            regex,
            names,
            locations,
        })
    }

    /// Adds the fields of `line` (at offset `base` of its chunk's data) to `fields`.
    pub fn parse(
        &self,
        line: &[u8],
        base: usize,
        fields: &mut FieldsBuilder<'_>,
    ) -> Result<(), RegexFormatError> {
        let mut locations = self.locations.borrow_mut();
        if self.regex.captures_read(&mut locations, line).is_none() {
            return Err(RegexFormatError::NoMatch);
        }
        for (index, name) in &self.names {
            if let Some((start, end)) = locations.get(*index) {
                let text = &line[start..end];
                fields.push(Field {
                    name: FieldName::Static(name),
                    value: typed(text, Span::at(base + start, text.len())),
                });
            }
        }
        Ok(())
    }
}

/// The one copy of a capture name that every parser of it shares. Each distinct name is
/// kept for the life of the process: they come from configurations, not from lines, so there
/// are few of them, however often a configuration is loaded.
fn intern(name: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::fields::testing::object;
    use serde_json::{Value, json};

    #[test]
    fn parses_table() {
        let pattern = Pattern::new(
            r"^(?P<level>[A-Z]+) \[(?P<thread>[^\]]+)\] (?P<logger>\S+) - (?P<msg>.*?)(?: took (?P<ms>\d+)ms)?$",
        )
        .unwrap();
        let parser = RegexParser::new(&pattern).unwrap();
        let cases: &[(&[u8], Result<Value, RegexFormatError>)] = &[
            (
                b"INFO [main] c.e.Server - started took 125ms",
                Ok(
                    json!({"level": "INFO", "thread": "main", "logger": "c.e.Server", "msg": "started", "ms": 125}),
                ),
            ),
            // An optional group that did not match is left out.
            (
                b"WARN [pool-1] c.e.Db - slow",
                Ok(json!({"level": "WARN", "thread": "pool-1", "logger": "c.e.Db", "msg": "slow"})),
            ),
            (b"not a log line", Err(RegexFormatError::NoMatch)),
            (b"", Err(RegexFormatError::NoMatch)),
            // Unicode mode: `.` matches characters, not bytes that are not UTF-8 (the line is
            // shipped raw with a parse_error).
            (
                b"ERROR [x] y - caf\xff took 1ms",
                Err(RegexFormatError::NoMatch),
            ),
            (
                "ERROR [x] y - café took 1ms".as_bytes(),
                Ok(json!({"level": "ERROR", "thread": "x", "logger": "y", "msg": "café", "ms": 1})),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(
                &object(line, |fields| parser.parse(line, 0, fields)).map(|(object, ())| object),
                want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn a_pattern_needs_a_named_group() {
        let pattern = Pattern::new(r"^(\d+) (.*)$").unwrap();
        assert_eq!(
            RegexParser::new(&pattern).err(),
            Some(RegexFormatError::NoNamedGroup)
        );
    }
}
