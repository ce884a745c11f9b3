//! `encoding: loki`: the Loki push API, JSON flavour.
//!
//! A batch becomes one push of streams; a stream is the events whose configured labels render
//! to the same values. Entries keep the batch's order within each stream, and their timestamps
//! (the event's time, in nanoseconds) never go backwards within a stream: an event whose own
//! timestamp is older than the one before it in its stream gets that one's, since Loki may
//! refuse entries out of order.

use std::collections::HashMap;
use std::ops::Range;

use super::config::{LokiConfig, LokiLine};
use crate::event::Batch;
use crate::event::json::write_json_str;
use crate::sink::encoding::encode_json;
use crate::sink::template::{EventClock, Template, TemplateError};

/// The push settings of a sink.
pub(super) struct Push {
    labels: Vec<(String, Template)>,
    line: LokiLine,
}

/// One stream of a push being built.
struct Stream {
    /// Label values, in the order of [`Push::labels`].
    values: Vec<String>,
    /// Entries: timestamp in nanoseconds and the line's JSON string in the line buffer.
    entries: Vec<(i64, Range<usize>)>,
}

impl Push {
    /// Push settings from the configuration.
    pub(super) fn new(config: &LokiConfig) -> Result<Self, TemplateError> {
        let labels = config
            .labels
            .iter()
            .map(|(name, template)| Ok((name.clone(), Template::parse(template)?)))
            .collect::<Result<_, TemplateError>>()?;
        Ok(Push {
            labels,
            line: config.line,
        })
    }

    /// The push request body of `batch`.
    pub(super) fn encode(&self, batch: &Batch, clock: &mut EventClock) -> Vec<u8> {
        let mut streams: Vec<Stream> = Vec::new();
        let mut by_values: HashMap<Vec<String>, usize> = HashMap::new();
        let mut values: Vec<String> = vec![String::new(); self.labels.len()];
        // Every line as a JSON string, one after the other.
        let mut lines = Vec::with_capacity(batch.bytes + batch.events * 8);
        let mut scratch = Vec::new();
        for (chunk, event) in batch.iter() {
            let time = clock.time_of(chunk, event);
            for ((_, template), value) in self.labels.iter().zip(&mut values) {
                template.render(chunk, event, time, value);
            }
            let stream = match by_values.get(&values) {
                Some(&stream) => stream,
                None => {
                    streams.push(Stream {
                        values: values.clone(),
                        entries: Vec::new(),
                    });
                    by_values.insert(values.clone(), streams.len() - 1);
                    streams.len() - 1
                }
            };
            let start = lines.len();
            match self.line {
                LokiLine::Json => {
                    scratch.clear();
                    encode_json(chunk, event, &mut scratch);
                    scratch.pop(); // the NDJSON newline
                    write_json_str(&mut lines, &scratch);
                }
                LokiLine::Text => write_json_str(
                    &mut lines,
                    String::from_utf8_lossy(&chunk.text(event)).as_bytes(),
                ),
            }
            let entries = &mut streams[stream].entries;
            let nanos = time.timestamp_nanos_opt().unwrap_or_default();
            let nanos = entries.last().map_or(nanos, |(last, _)| nanos.max(*last));
            entries.push((nanos, start..lines.len()));
        }
        let mut out = Vec::with_capacity(lines.len() + batch.events * 32 + 64);
        out.extend_from_slice(b"{\"streams\":[");
        for (i, stream) in streams.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"stream\":{");
            let mut first = true;
            // An empty value is no label at all, for Loki as for Prometheus.
            for ((name, _), value) in self.labels.iter().zip(&stream.values) {
                if value.is_empty() {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                write_json_str(&mut out, name.as_bytes());
                out.push(b':');
                write_json_str(&mut out, value.as_bytes());
            }
            out.extend_from_slice(b"},\"values\":[");
            let mut digits = itoa::Buffer::new();
            for (j, (nanos, line)) in stream.entries.iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"[\"");
                out.extend_from_slice(digits.format(*nanos).as_bytes());
                out.extend_from_slice(b"\",");
                out.extend_from_slice(&lines[line.clone()]);
                out.push(b']');
            }
            out.extend_from_slice(b"]}");
        }
        out.extend_from_slice(b"]}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::BatchPart;
    use crate::event::{FileMeta, testing};
    use serde_json::{Value, json};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn part(key: u64, source: &str, path: &str, lines: &[(&[u8], u64)]) -> BatchPart {
        let chunk = testing::chunk(FileMeta::new(key, source, path), lines, 1000);
        BatchPart {
            range: 0..chunk.events.len(),
            chunk: Arc::new(chunk),
        }
    }

    fn push(labels: &[(&str, &str)], line: LokiLine) -> Push {
        Push::new(&LokiConfig {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            line,
        })
        .unwrap()
    }

    fn batch(parts: Vec<BatchPart>) -> Batch {
        let events = parts.iter().map(|p| p.range.len()).sum();
        Batch {
            parts,
            events,
            bytes: 0,
        }
    }

    #[test]
    fn streams_group_by_label_values_in_order() {
        let batch = batch(vec![
            part(1, "web", "/a.log", &[(b"a0", 0), (b"a1", 3)]),
            part(2, "web", "/b.log", &[(b"b0", 0)]),
            part(1, "web", "/a.log", &[(b"a2", 6)]),
        ]);
        let body = push(
            &[("app", "{{ source }}"), ("file", "{{ file }}")],
            LokiLine::Text,
        )
        .encode(&batch, &mut EventClock::default());
        let got: Value = serde_json::from_slice(&body).unwrap();
        let nanos = "1795579200000000000";
        assert_eq!(
            got,
            json!({"streams": [
                {"stream": {"app": "web", "file": "/a.log"},
                 "values": [[nanos, "a0"], [nanos, "a1"], [nanos, "a2"]]},
                {"stream": {"app": "web", "file": "/b.log"}, "values": [[nanos, "b0"]]},
            ]})
        );
    }

    #[test]
    fn json_lines_and_timestamps_that_never_go_back() {
        let mut late = part(1, "web", "/a.log", &[(b"x", 0), (b"y", 2), (b"z", 4)]);
        let chunk = Arc::get_mut(&mut late.chunk).unwrap();
        let times = [
            "2026-01-01T00:00:02Z",
            "2026-01-01T00:00:01Z",
            "2026-01-01T00:00:03Z",
        ];
        for (index, time) in times.iter().enumerate() {
            testing::set_fields(chunk, index, &json!({"timestamp": time, "level": "warn"}));
        }
        let body = push(
            &[("level", "{{ level }}"), ("none", "{{ missing }}")],
            LokiLine::Json,
        )
        .encode(&batch(vec![late]), &mut EventClock::default());
        let got: Value = serde_json::from_slice(&body).unwrap();
        let stream = &got["streams"][0];
        assert_eq!(
            stream["stream"],
            json!({"level": "warn"}),
            "empty labels are left out"
        );
        let stamps: Vec<&str> = stream["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v[0].as_str().unwrap())
            .collect();
        assert_eq!(
            stamps,
            [
                "1767225602000000000",
                "1767225602000000000",
                "1767225603000000000"
            ]
        );
        let line: Value = serde_json::from_str(stream["values"][0][1].as_str().unwrap()).unwrap();
        assert_eq!(line["level"], json!("warn"));
        assert_eq!(line["offset"], json!(0));
    }
}
