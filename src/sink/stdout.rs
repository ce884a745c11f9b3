//! `type: stdout`: write events to the agent's standard output.

use std::io::Write;

use serde::{Deserialize, Serialize};

use super::encoding::{Encoding, encode_batch};
use super::{BoxFuture, Sink, SinkError};
use crate::event::Batch;

/// Settings of a `type: stdout` sink.
#[derive(Debug, Clone, PartialEq, Copy, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {
    /// How events are written.
    #[serde(default)]
    pub encoding: Encoding,
}

/// Writes batches to standard output.
pub struct StdoutSink {
    config: StdoutSinkConfig,
    buf: Option<Vec<u8>>,
}

impl StdoutSink {
    /// A sink writing with `config`.
    pub fn new(config: StdoutSinkConfig) -> Self {
        StdoutSink {
            config,
            buf: Some(Vec::new()),
        }
    }
}

impl Sink for StdoutSink {
    fn deliver<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<u64, SinkError>> {
        Box::pin(async move {
            let mut buf = self.buf.take().unwrap_or_default();
            buf.clear();
            encode_batch(self.config.encoding, batch, &mut buf);
            let joined = tokio::task::spawn_blocking(move || {
                let mut out = std::io::stdout().lock();
                let result = out.write_all(&buf).and_then(|()| out.flush());
                (result, buf)
            })
            .await;
            let (result, buf) = joined.map_err(|e| SinkError::Retriable(format!("stdout: {e}")))?;
            let written = buf.len() as u64;
            self.buf = Some(buf);
            match result {
                Ok(()) => Ok(written),
                // Nobody reads our output any more: retrying cannot help.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    Err(SinkError::Permanent(format!("stdout: {e}")))
                }
                Err(e) => Err(SinkError::Retriable(format!("stdout: {e}"))),
            }
        })
    }
}
