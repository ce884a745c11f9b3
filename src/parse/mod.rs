//! Parsing lines into structured events: pure functions over bytes.
//!
//! A line that fails to parse keeps its raw `message` and gets a `parse_error`; nothing is
//! dropped.

mod json;

use serde::{Deserialize, Serialize};

use crate::event::Event;

/// How a source's lines are parsed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// The line is the `message`, as it is.
    #[default]
    Raw,
    /// The line is a JSON object whose keys become the event's.
    Json,
}

impl Format {
    /// Parses every event of a chunk in place (their messages are in `data`); returns how many
    /// failed to parse.
    pub fn parse_all(self, data: &[u8], events: &mut [Event]) -> u64 {
        let message = |e: &Event| {
            let start = e.start as usize;
            data.get(start..start + e.len as usize).unwrap_or_default()
        };
        match self {
            Format::Raw => 0,
            Format::Json => events
                .iter_mut()
                .map(|e| u64::from(!json::parse(e, message(e))))
                .sum(),
        }
    }
}
