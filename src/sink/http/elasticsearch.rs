//! `encoding: elasticsearch`: the `_bulk` API of Elasticsearch and OpenSearch.
//!
//! Each event is an action line (`create` or `index`, with the rendered index and the event's
//! `id` as `_id`) and its JSON document. The response says, item by item, what happened:
//! delivered, worth retrying (429, 5xx) or rejected (a mapping error...). The sink remembers
//! that for the batch, so that when the pipeline retries the batch only the items still to
//! deliver are sent again; when none is left, the rejected ones are handed back as
//! [`SinkError::Partial`] and dead-lettered alone. Because `_id` is the event id, an item that
//! is sent twice anyway (after a lost response) is a conflict or an overwrite, not a duplicate.

use serde::Deserialize;

use super::config::{BulkAction, ElasticsearchConfig};
use super::{Endpoint, MAX_BULK_RESPONSE_BYTES, NDJSON};
use crate::event::json::write_json_str;
use crate::event::{Batch, BatchPart};
use crate::event::{Chunk, Event};
use crate::sink::encoding::encode_json;
use crate::sink::template::{EventClock, Template, TemplateError, push_field};
use crate::sink::{Rejected, SinkError};

/// How long a rejection reason may get in logs.
const MAX_REASON_CHARS: usize = 300;

/// The bulk settings of a sink.
pub(super) struct Bulk {
    index: Template,
    action: BulkAction,
}

impl Bulk {
    /// Bulk settings from the configuration.
    pub(super) fn new(config: &ElasticsearchConfig) -> Result<Self, TemplateError> {
        Ok(Bulk {
            index: Template::parse_dated(&config.index)?,
            action: config.action,
        })
    }

    /// Appends the action line and the document of `event`.
    fn encode(
        &self,
        chunk: &Chunk,
        event: &Event,
        clock: &mut EventClock,
        index: &mut String,
        out: &mut Vec<u8>,
    ) {
        let time = if self.index.is_dated() {
            clock.time_of(chunk, event)
        } else {
            chrono::DateTime::UNIX_EPOCH
        };
        self.index.render(chunk, event, time, index);
        out.extend_from_slice(match self.action {
            BulkAction::Create => b"{\"create\":{\"_index\":",
            BulkAction::Index => b"{\"index\":{\"_index\":",
        });
        write_json_str(out, index.as_bytes());
        out.extend_from_slice(b",\"_id\":\"");
        let mut id = String::new();
        push_field(chunk, event, "id", &mut id);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b"\"}}\n");
        encode_json(chunk, event, out);
    }

    /// What the response item of one event means.
    fn outcome(&self, item: &BulkItem) -> Outcome {
        match item.status {
            200..=299 => Outcome::Delivered,
            // The document is there already: this item was sent before and its reply lost.
            409 if self.action == BulkAction::Create => Outcome::Delivered,
            408 | 429 | 500..=599 => Outcome::Retry(item.reason()),
            _ => Outcome::Reject(item.reason()),
        }
    }
}

/// What became of one item.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Retry(String),
    Reject(String),
}

#[derive(Debug, Deserialize)]
struct BulkResponse {
    #[serde(default)]
    errors: bool,
    #[serde(default)]
    items: Vec<std::collections::BTreeMap<String, BulkItem>>,
}

#[derive(Debug, Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

impl BulkItem {
    fn reason(&self) -> String {
        let text = match &self.error {
            Some(serde_json::Value::Object(error)) => {
                let field = |name| error.get(name).and_then(serde_json::Value::as_str);
                format!(
                    "{} {}: {}",
                    self.status,
                    field("type").unwrap_or("error"),
                    field("reason").unwrap_or("")
                )
            }
            Some(other) => format!("{} {other}", self.status),
            None => format!("status {}", self.status),
        };
        text.chars().take(MAX_REASON_CHARS).collect()
    }
}

/// Reads a bulk response: one outcome per item sent, in order.
fn read_response(bulk: &Bulk, body: &[u8], sent: usize) -> Result<Vec<Outcome>, String> {
    let response: BulkResponse =
        serde_json::from_slice(body).map_err(|e| format!("unreadable bulk response: {e}"))?;
    if !response.errors {
        return Ok((0..sent).map(|_| Outcome::Delivered).collect());
    }
    if response.items.len() != sent {
        return Err(format!(
            "bulk response has {} items for {sent} actions",
            response.items.len()
        ));
    }
    response
        .items
        .iter()
        .map(|item| {
            item.values()
                .next()
                .map(|item| bulk.outcome(item))
                .ok_or_else(|| "bulk response item without an action".to_owned())
        })
        .collect()
}

/// How far the delivery of one batch has come, kept between the pipeline's retries of it.
#[derive(Default)]
pub(super) struct Progress {
    current: Option<BatchProgress>,
}

struct BatchProgress {
    /// The batch's parts (holding its chunks, so no other batch can look the same).
    parts: Vec<BatchPart>,
    /// Positions of the events still to deliver, ascending.
    pending: Vec<usize>,
    /// Events refused for good so far.
    rejected: Vec<Rejected>,
    /// Encoded bytes of the events delivered so far.
    bytes: u64,
}

impl BatchProgress {
    fn new(batch: &Batch) -> Self {
        BatchProgress {
            parts: batch.parts.clone(),
            pending: (0..batch.events).collect(),
            rejected: Vec::new(),
            bytes: 0,
        }
    }

    fn is_for(&self, batch: &Batch) -> bool {
        self.parts.len() == batch.parts.len()
            && self.parts.iter().zip(&batch.parts).all(|(mine, theirs)| {
                std::sync::Arc::ptr_eq(&mine.chunk, &theirs.chunk) && mine.range == theirs.range
            })
    }
}

impl Progress {
    /// Sends the events of `batch` not delivered yet in one bulk request and sorts them by the
    /// response's items.
    pub(super) async fn deliver(
        &mut self,
        endpoint: &Endpoint,
        bulk: &Bulk,
        batch: &Batch,
        clock: &mut EventClock,
    ) -> Result<u64, SinkError> {
        let mut progress = match self.current.take() {
            Some(progress) if progress.is_for(batch) => progress,
            _ => BatchProgress::new(batch),
        };
        let mut body = Vec::with_capacity(batch.bytes + progress.pending.len() * 256);
        let mut sizes = Vec::with_capacity(progress.pending.len());
        let mut index = String::new();
        let mut wanted = progress.pending.iter().peekable();
        for (position, (chunk, event)) in batch.iter().enumerate() {
            if wanted.peek() == Some(&&position) {
                wanted.next();
                let before = body.len();
                bulk.encode(chunk, event, clock, &mut index, &mut body);
                sizes.push((body.len() - before) as u64);
            }
        }
        let reply = match endpoint.send(body, NDJSON, MAX_BULK_RESPONSE_BYTES).await {
            Ok(reply) => reply,
            Err(error) => {
                self.current = Some(progress);
                return Err(error);
            }
        };
        let outcomes = read_response(bulk, &reply.body, progress.pending.len())
            .map_err(|e| endpoint.with_context(SinkError::Permanent(e)))?;
        let mut still_pending = Vec::new();
        let mut first_retry_reason = None;
        for ((position, size), outcome) in progress.pending.iter().zip(&sizes).zip(outcomes) {
            match outcome {
                Outcome::Delivered => progress.bytes += size,
                Outcome::Retry(reason) => {
                    first_retry_reason.get_or_insert(reason);
                    still_pending.push(*position);
                }
                Outcome::Reject(reason) => progress.rejected.push(Rejected {
                    index: *position,
                    reason,
                }),
            }
        }
        if let Some(reason) = first_retry_reason {
            let message = format!(
                "{} of {} bulk items to retry; the first: {reason}",
                still_pending.len(),
                progress.pending.len()
            );
            progress.pending = still_pending;
            self.current = Some(progress);
            return Err(endpoint.with_context(SinkError::Retriable(message)));
        }
        if progress.rejected.is_empty() {
            Ok(progress.bytes)
        } else {
            progress.rejected.sort_by_key(|r| r.index);
            Err(SinkError::Partial {
                bytes: progress.bytes,
                rejected: progress.rejected,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FileMeta, testing};
    use serde_json::{Value, json};

    fn bulk(action: BulkAction) -> Bulk {
        Bulk::new(&ElasticsearchConfig {
            index: "logs-{{ source }}-%Y.%m.%d".into(),
            action,
        })
        .unwrap()
    }

    #[test]
    fn action_lines_name_the_dated_index_and_the_event_id() {
        let chunk = testing::chunk(FileMeta::new(0xab, "web", "/l/a.log"), &[(b"hi", 5)], 9);
        let mut out = Vec::new();
        let mut index = String::new();
        bulk(BulkAction::Create).encode(
            &chunk,
            &chunk.events[0],
            &mut EventClock::default(),
            &mut index,
            &mut out,
        );
        let lines: Vec<Value> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(
            lines[0],
            json!({"create": {"_index": "logs-web-2026.11.25", "_id": "00000000000000ab-5"}})
        );
        assert_eq!(lines[1]["message"], json!("hi"));
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn responses_table() {
        let item = |status: u16| json!({"create": {"status": status, "error": {"type": "t", "reason": "r"}}});
        // (action, response, items sent, expected outcomes as D/R/X, or an error)
        let cases: Vec<(BulkAction, Value, usize, Result<&str, ()>)> = vec![
            (
                BulkAction::Create,
                json!({"errors": false, "items": []}),
                3,
                Ok("DDD"),
            ),
            (
                BulkAction::Create,
                json!({"errors": true, "items": [item(201), item(429), item(400), item(409), item(503), item(404)]}),
                6,
                Ok("DRXDRX"),
            ),
            (
                BulkAction::Index,
                json!({"errors": true, "items": [item(409), item(200)]}),
                2,
                Ok("XD"),
            ),
            (
                BulkAction::Create,
                json!({"errors": true, "items": [item(201)]}),
                2,
                Err(()),
            ),
            (BulkAction::Create, json!("<html>"), 1, Err(())),
        ];
        for (action, response, sent, want) in cases {
            let body = serde_json::to_vec(&response).unwrap();
            let got = read_response(&bulk(action), &body, sent).map(|outcomes| {
                outcomes
                    .iter()
                    .map(|o| match o {
                        Outcome::Delivered => 'D',
                        Outcome::Retry(_) => 'R',
                        Outcome::Reject(_) => 'X',
                    })
                    .collect::<String>()
            });
            match want {
                Ok(want) => assert_eq!(got.as_deref(), Ok(want), "{response}"),
                Err(()) => assert!(got.is_err(), "{response}: {got:?}"),
            }
        }
    }

    #[test]
    fn reasons_name_status_type_and_reason() {
        let item: BulkItem = serde_json::from_value(json!({
            "status": 400,
            "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [status]"}
        }))
        .unwrap();
        assert_eq!(
            item.reason(),
            "400 mapper_parsing_exception: failed to parse field [status]"
        );
    }
}
