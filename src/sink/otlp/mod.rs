//! `type: otlp`: send batches to any OpenTelemetry receiver (a Collector, Loki 3, Elastic...)
//! as OTLP log records, over gRPC or HTTP (protobuf or JSON).
//!
//! One export request per batch ([`mapping`] says how events become records). The pipeline
//! acks a batch only when the receiver answered with success; retriable failures follow the
//! OTLP specification ([`grpc`], [`http`]). A `partial_success` that rejects records cannot
//! say which ones, so the agent logs it and writes the whole batch to the dead letters with
//! the receiver's message (see [`rejected_batch`]): nothing is lost, and a replay of the dead
//! letters may repeat records the receiver had accepted.

mod config;
mod grpc;
mod http;
pub mod mapping;
mod values;

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess;
use prost::Message;

pub use config::{OtlpCompression, OtlpSinkConfig, Protocol};

use super::http::client::resolve_headers;
use super::{BoxFuture, BuildError, Rejected, Sink, SinkError};
use crate::event::Batch;
use crate::sink::secret::redact_uri;

/// The transport of a sink.
#[derive(Debug)]
enum Exporter {
    /// One channel (HTTP/2 connection) per instance: one connection's frames are written by
    /// one task, which exports in flight would otherwise queue behind.
    Grpc(Vec<grpc::GrpcExporter>),
    /// One client whose pool keeps a connection per request in flight.
    Http(http::HttpExporter),
}

/// What the instances of one sink share.
#[derive(Debug)]
struct Shared {
    name: String,
    shown_endpoint: String,
    exporter: Exporter,
    mapper: mapping::Mapper,
    in_flight: usize,
}

/// Sends batches to an OTLP receiver; each instance has one request in flight, and keeps the
/// records of its last one to build the next.
#[derive(Debug)]
pub struct OtlpSink {
    shared: Arc<Shared>,
    /// Which of the sink's instances this is (its gRPC channel).
    instance: usize,
    scratch: mapping::Scratch,
}

impl OtlpSink {
    /// Builds the client and reads the secrets and TLS files (it connects when first used: a
    /// receiver that is down is not an error here). Errors name the key at fault.
    pub fn new(name: &str, config: &OtlpSinkConfig) -> Result<Self, BuildError> {
        let error = |key: &str, message: String| BuildError {
            sink: name.to_owned(),
            message: format!("{key}: {message}"),
        };
        let url = config.url().map_err(|e| error("endpoint", e))?;
        let headers = resolve_headers(&config.headers).map_err(|e| error(&e.key, e.message))?;
        let shown_endpoint = redact_uri(url.as_str());
        let exporter = match config.protocol {
            Protocol::Grpc => (0..config.in_flight)
                .map(|_| grpc::GrpcExporter::new(config, &url, &headers))
                .collect::<Result<_, _>>()
                .map(Exporter::Grpc),
            Protocol::HttpProtobuf | Protocol::HttpJson => {
                http::HttpExporter::new(config, url, headers).map(Exporter::Http)
            }
        }
        .map_err(|e| error(&e.key, e.message))?;
        Ok(OtlpSink {
            shared: Arc::new(Shared {
                name: name.to_owned(),
                shown_endpoint,
                exporter,
                mapper: mapping::Mapper::new(config),
                in_flight: config.in_flight,
            }),
            instance: 0,
            scratch: mapping::Scratch::default(),
        })
    }

    fn context(&self, error: SinkError) -> SinkError {
        let shared = &*self.shared;
        error.prefixed(&format!(
            "otlp sink `{}`: {}",
            shared.name, shared.shown_endpoint
        ))
    }
}

impl Sink for OtlpSink {
    fn deliver<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<u64, SinkError>> {
        Box::pin(async move {
            let shared = Arc::clone(&self.shared);
            let request = shared.mapper.fill(batch, &mut self.scratch);
            let (bytes, answer) = match &shared.exporter {
                Exporter::Grpc(channels) => {
                    let Some(exporter) = channels.get(self.instance % channels.len().max(1)) else {
                        return Err(SinkError::Permanent("no gRPC channel".into()));
                    };
                    let (request, bytes, answer) = exporter.export(self.scratch.lend()).await;
                    if let Some(request) = request {
                        self.scratch.give_back(request);
                    }
                    (bytes, answer)
                }
                Exporter::Http(exporter) => {
                    let body = if exporter.is_json() {
                        serde_json::to_vec(request).map_err(|e| {
                            self.context(SinkError::Permanent(format!("OTLP JSON: {e}")))
                        })?
                    } else {
                        request.encode_to_vec()
                    };
                    (body.len() as u64, exporter.export(body).await)
                }
            };
            match answer.map_err(|e| self.context(e))? {
                Some(partial) => {
                    if let Some(error) = rejected_batch(&partial, batch, bytes) {
                        tracing::warn!(
                            sink = %shared.name,
                            rejected = partial.rejected_log_records,
                            records = batch.events,
                            message = %partial.error_message,
                            "the receiver rejected records of a batch without saying which: \
                             the whole batch goes to the dead letters"
                        );
                        return Err(error);
                    }
                    if !partial.error_message.is_empty() {
                        tracing::warn!(
                            sink = %shared.name,
                            message = %partial.error_message,
                            "the receiver accepted the batch with a warning"
                        );
                    }
                    Ok(bytes)
                }
                None => Ok(bytes),
            }
        })
    }

    fn replicas(&self) -> Vec<Box<dyn Sink>> {
        (1..self.shared.in_flight)
            .map(|instance| {
                Box::new(OtlpSink {
                    shared: Arc::clone(&self.shared),
                    instance,
                    scratch: mapping::Scratch::default(),
                }) as Box<dyn Sink>
            })
            .collect()
    }
}

/// What a partial success that rejected records means for `batch`: every event of it is
/// dead-lettered (OTLP does not say which records were refused), the batch acked. `None`
/// when nothing was rejected.
fn rejected_batch(
    partial: &ExportLogsPartialSuccess,
    batch: &Batch,
    bytes: u64,
) -> Option<SinkError> {
    if partial.rejected_log_records <= 0 {
        return None;
    }
    let reason = format!(
        "the OTLP receiver rejected {} of the batch's {} records without saying which; every \
         record of the batch is kept here: {}",
        partial.rejected_log_records, batch.events, partial.error_message
    );
    Some(SinkError::Partial {
        bytes,
        rejected: (0..batch.events)
            .map(|index| Rejected {
                index,
                reason: reason.clone(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_successes_table() {
        let batch = Batch {
            events: 3,
            ..Batch::default()
        };
        // (rejected, message, dead-lettered events)
        let cases = [
            (0, "", 0),
            (0, "slow down", 0),
            (-1, "", 0),
            (2, "too old", 3),
        ];
        for (rejected, message, want) in cases {
            let partial = ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message: message.into(),
            };
            let got = match rejected_batch(&partial, &batch, 10) {
                None => 0,
                Some(SinkError::Partial { rejected, bytes }) => {
                    assert_eq!(bytes, 10);
                    assert!(rejected[0].reason.ends_with(message), "{rejected:?}");
                    rejected.len()
                }
                Some(other) => panic!("{other}"),
            };
            assert_eq!(got, want, "{rejected} {message}");
        }
    }
}
