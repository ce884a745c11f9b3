//! `remap`: a VRL program run on each event.
//!
//! Invariant: every input event leaves as exactly one output event or is dropped and counted:
//! changed by the program, as it came when the program failed (unless `drop_on_error`) or
//! aborted (with `drop_on_abort: false`), or dropped.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::event_value::{Rendered, to_value};
use super::vrl_program::{Outcome, VrlProgram};
use super::{ErrorLog, Transform, TransformError, compile};
use crate::event::Chunk;
use crate::metrics::{TransformMetrics, add};

/// A `remap` transform's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemapConfig {
    /// The program's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// A file holding the program (instead of `source`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Drop an event the program fails on, rather than ship it as it came.
    #[serde(default)]
    pub drop_on_error: bool,
    /// Drop an event the program calls `abort` on (the default), rather than ship it as it came.
    #[serde(default = "yes")]
    pub drop_on_abort: bool,
}

fn yes() -> bool {
    true
}

impl RemapConfig {
    /// The program's text, from `source` or read from `file`.
    pub fn program_text(&self, key: &str) -> Result<String, TransformError> {
        match (&self.source, &self.file) {
            (Some(source), None) => Ok(source.clone()),
            (None, Some(file)) => {
                std::fs::read_to_string(file).map_err(|source| TransformError::Read {
                    key: format!("{key}.file"),
                    path: file.clone(),
                    source,
                })
            }
            _ => Err(TransformError::Invalid {
                key: key.to_owned(),
                message: "give the program as exactly one of `source` and `file`".to_owned(),
            }),
        }
    }
}

/// A running `remap`.
pub struct Remap {
    key: String,
    program: VrlProgram,
    drop_on_error: bool,
    drop_on_abort: bool,
    metrics: Arc<TransformMetrics>,
    errors: ErrorLog,
}

impl Remap {
    /// Compiles the program of transform `key`.
    pub fn new(
        key: &str,
        config: &RemapConfig,
        metrics: Arc<TransformMetrics>,
    ) -> Result<Remap, TransformError> {
        let text = config.program_text(key)?;
        let at = if config.source.is_some() {
            "source"
        } else {
            "file"
        };
        Ok(Remap {
            key: key.to_owned(),
            program: compile(&format!("{key}.{at}"), &text)?,
            drop_on_error: config.drop_on_error,
            drop_on_abort: config.drop_on_abort,
            metrics,
            errors: ErrorLog::default(),
        })
    }
}

impl Transform for Remap {
    fn apply(&self, chunk: &Chunk, out: &mut Vec<Chunk>) {
        let mut rendered = Rendered::default();
        let mut scratch = Vec::new();
        let (mut dropped, mut failed) = (0, 0);
        for event in &chunk.events {
            let value = to_value(chunk, event, &mut scratch);
            match self.program.run(value) {
                Outcome::Done { event: value, .. } => rendered.push_value(value, event.offset),
                Outcome::Aborted(_) if self.drop_on_abort => dropped += 1,
                Outcome::Aborted(_) => rendered.push_as_shipped(chunk, event),
                Outcome::Failed(_, error) => {
                    failed += 1;
                    self.errors.warn(&self.key, &error);
                    if self.drop_on_error {
                        dropped += 1;
                    } else {
                        rendered.push_as_shipped(chunk, event);
                    }
                }
            }
        }
        add(&self.metrics.events_in, chunk.events.len() as u64);
        add(&self.metrics.events_out, rendered.len() as u64);
        add(&self.metrics.events_dropped, dropped);
        add(&self.metrics.errors, failed);
        out.push(rendered.into_chunk(chunk));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FileMeta, testing};
    use std::sync::atomic::Ordering;

    fn remap(source: &str, drop_on_error: bool, drop_on_abort: bool) -> Remap {
        let config = RemapConfig {
            source: Some(source.to_owned()),
            file: None,
            drop_on_error,
            drop_on_abort,
        };
        Remap::new("transforms.t", &config, Arc::default()).unwrap()
    }

    fn messages(chunk: &Chunk) -> Vec<(u64, serde_json::Value)> {
        chunk
            .events
            .iter()
            .map(|e| (e.offset, serde_json::from_slice(chunk.message(e)).unwrap()))
            .collect()
    }

    #[test]
    fn errors_keep_or_drop_and_aborts_drop_or_keep_as_configured() {
        let program = "if .message == \"skip\" { abort }\n.n = to_int!(.message)\n";
        let input = testing::chunk(
            FileMeta::new(1, "app", "/l/a.log"),
            &[(b"1", 0), (b"x", 2), (b"skip", 4), (b"3", 9)],
            11,
        );
        // (drop_on_error, drop_on_abort, offsets out, errors, dropped)
        let cases = [
            (false, true, vec![0, 2, 9], 1, 1),
            (true, true, vec![0, 9], 1, 2),
            (false, false, vec![0, 2, 4, 9], 1, 0),
        ];
        for (drop_on_error, drop_on_abort, offsets, errors, dropped) in cases {
            let transform = remap(program, drop_on_error, drop_on_abort);
            let mut out = Vec::new();
            transform.apply(&input, &mut out);
            let [output] = &out[..] else { panic!() };
            assert_eq!(output.end_offset, 11, "acks reach the chunk's end");
            let got = messages(output);
            assert_eq!(got.iter().map(|(o, _)| *o).collect::<Vec<_>>(), offsets);
            assert_eq!(got[0].1["n"], 1, "changed by the program");
            if !drop_on_error {
                assert!(
                    got[1].1.get("n").is_none() && got[1].1["message"] == "x",
                    "as it came"
                );
            }
            assert_eq!(transform.metrics.errors.load(Ordering::Relaxed), errors);
            assert_eq!(
                transform.metrics.events_dropped.load(Ordering::Relaxed),
                dropped
            );
        }
    }

    #[test]
    fn a_typical_program_parses_drops_and_masks() {
        let transform = remap(
            ". |= object!(parse_json!(.message))\ndel(.message)\ndel(.password)\n.email = redact(string!(.email), filters: [r'[^@\\s]+@[^@\\s]+'])\n",
            false,
            true,
        );
        let line = br#"{"user":"ann","email":"ann@example.com","password":"hunter2"}"#;
        let input = testing::chunk(FileMeta::new(1, "app", "/l/a.log"), &[(line, 0)], 70);
        let mut out = Vec::new();
        transform.apply(&input, &mut out);
        let got = &messages(&out[0])[0].1;
        assert_eq!(got["user"], "ann");
        assert_eq!(got["email"], "[REDACTED]");
        assert!(
            got.get("password").is_none() && got.get("message").is_none(),
            "{got}"
        );
        assert_eq!(
            got["source"], "app",
            "the agent's keys are the program's to keep"
        );
    }

    #[test]
    fn the_program_is_given_exactly_once() {
        let both = RemapConfig {
            source: Some(".".into()),
            file: Some("/x.vrl".into()),
            drop_on_error: false,
            drop_on_abort: true,
        };
        assert!(Remap::new("t", &both, Arc::default()).is_err());
        let missing = RemapConfig {
            source: None,
            file: Some("/nonexistent/x.vrl".into()),
            ..both
        };
        let error = Remap::new("t", &missing, Arc::default())
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("t.file") && error.contains("/nonexistent/x.vrl"),
            "{error}"
        );
    }
}
