//! `type: blackhole`: accept every batch and keep nothing (tests, benchmarks, dry runs).

use serde::{Deserialize, Serialize};

use super::{BoxFuture, Sink, SinkError};
use crate::event::Batch;

/// Settings of a `type: blackhole` sink (it has none).
#[derive(Debug, Clone, PartialEq, Copy, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeSinkConfig {}

/// Counts batches as delivered at once.
pub struct BlackholeSink;

impl Sink for BlackholeSink {
    fn deliver<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<u64, SinkError>> {
        Box::pin(async move { Ok(batch.bytes as u64) })
    }
}
