//! `format: regex`: a `pattern` whose named captures become the event's fields.
//!
//! Captures that are canonical integers or decimals become numbers; a group that did not take
//! part in the match is left out. The capture positions are reused from line to line.

use std::cell::RefCell;

use regex::bytes::{CaptureLocations, Regex};

use super::{Pattern, insert_field, typed_value};
use crate::event::Fields;

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
    /// (group index, field name) of every named group.
    names: Vec<(usize, Box<str>)>,
    /// Capture positions, reused: a parser belongs to one tailer thread.
    locations: RefCell<CaptureLocations>,
}

impl RegexParser {
    /// A parser for `pattern`, which must name at least one group.
    pub fn new(pattern: &Pattern) -> Result<Self, RegexFormatError> {
        let regex = pattern.regex().clone();
        let names: Vec<(usize, Box<str>)> = regex
            .capture_names()
            .enumerate()
            .filter_map(|(i, name)| Some((i, name?.into())))
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

    /// The fields of `line`.
    pub fn parse(&self, line: &[u8]) -> Result<Fields, RegexFormatError> {
        let mut locations = self.locations.borrow_mut();
        if self.regex.captures_read(&mut locations, line).is_none() {
            return Err(RegexFormatError::NoMatch);
        }
        let mut fields = Fields::new();
        for (index, name) in &self.names {
            if let Some((start, end)) = locations.get(*index) {
                insert_field(&mut fields, name.as_bytes(), typed_value(&line[start..end]));
            }
        }
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
                &parser.parse(line).map(Value::Object),
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
