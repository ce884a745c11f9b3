//! OTLP over gRPC: the `LogsService/Export` call through `tonic`, on one channel that every
//! instance of the sink shares. The request is lent to the call and given back once it is
//! encoded, so that the sink builds the next one over its records; the response is read with
//! the generated types.
//!
//! Invariant: a status is retried only where the OTLP specification says it may succeed later:
//! `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`, `UNAVAILABLE`, `DATA_LOSS`, and
//! `RESOURCE_EXHAUSTED` when the server sent `RetryInfo` (then not before its delay). Any other
//! status is permanent.

use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BufMut;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;
use reqwest::Url;
use reqwest::header::HeaderMap;
use tonic::client::Grpc;
use tonic::codec::{BufferSettings, Codec, CompressionEncoding, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};
use tonic_prost::{ProstCodec, ProstDecoder};
use tonic_types::StatusExt;

use super::config::{OtlpCompression, OtlpSinkConfig};
use crate::sink::SinkError;
use crate::sink::http::client::{ClientError, TlsFiles};

/// A gRPC client of one receiver.
#[derive(Debug, Clone)]
pub struct GrpcExporter {
    client: Grpc<Channel>,
    metadata: MetadataMap,
    timeout: Duration,
}

impl GrpcExporter {
    /// A client of `url` (it connects when first used: a receiver that is down is not an
    /// error here), sending `headers` as metadata.
    pub fn new(
        config: &OtlpSinkConfig,
        url: &Url,
        headers: &HeaderMap,
    ) -> Result<Self, ClientError> {
        let error = |key: &str, message: String| ClientError {
            key: key.to_owned(),
            message,
        };
        let timeout = Duration::from_millis(config.timeout_ms);
        let mut endpoint = Endpoint::from_shared(url.as_str().trim_end_matches('/').to_owned())
            .map_err(|e| error("endpoint", e.to_string()))?
            .timeout(timeout)
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .user_agent(concat!("log-agent/", env!("CARGO_PKG_VERSION")))
            .map_err(|e| error("endpoint", e.to_string()))?;
        if url.scheme() == "https" {
            let files = TlsFiles::read(&config.tls)?;
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(host) = url.host_str() {
                tls = tls.domain_name(host.trim_matches(['[', ']']));
            }
            if let Some(ca) = files.ca {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = files.identity {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| error("tls", error_text(&e)))?;
        }
        let mut client = Grpc::new(endpoint.connect_lazy());
        client = client.max_decoding_message_size(4 * 1024 * 1024);
        match config.compression {
            OtlpCompression::None => {}
            OtlpCompression::Gzip => client = client.send_compressed(CompressionEncoding::Gzip),
            OtlpCompression::Zstd => client = client.send_compressed(CompressionEncoding::Zstd),
        }
        client = client
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd);
        let mut metadata = MetadataMap::new();
        for (name, value) in headers {
            let key = format!("headers.{name}");
            let name = MetadataKey::from_bytes(name.as_str().to_ascii_lowercase().as_bytes())
                .map_err(|e| error(&key, e.to_string()))?;
            let value = value
                .to_str()
                .ok()
                .and_then(|v| MetadataValue::try_from(v).ok())
                .ok_or_else(|| error(&key, "not a valid metadata value".into()))?;
            metadata.insert(name, value);
        }
        Ok(GrpcExporter {
            client,
            metadata,
            timeout,
        })
    }

    /// Sends `request`; what the receiver says of records it refused, if anything. The request
    /// is given back (when the call is over) with the bytes it took.
    pub async fn export(
        &self,
        request: ExportLogsServiceRequest,
    ) -> (
        Option<ExportLogsServiceRequest>,
        u64,
        Result<Option<ExportLogsPartialSuccess>, SinkError>,
    ) {
        let outgoing = Arc::new(Outgoing {
            request,
            encoded: AtomicU64::new(0),
        });
        let result = self.call(Arc::clone(&outgoing)).await;
        // tonic drops its reference once the request is encoded: the records come back.
        match Arc::try_unwrap(outgoing) {
            Ok(Outgoing { request, encoded }) => (Some(request), encoded.into_inner(), result),
            Err(shared) => (None, shared.encoded.load(Ordering::Relaxed), result),
        }
    }

    async fn call(
        &self,
        outgoing: Arc<Outgoing>,
    ) -> Result<Option<ExportLogsPartialSuccess>, SinkError> {
        let mut call = tonic::Request::new(outgoing);
        *call.metadata_mut() = self.metadata.clone();
        call.set_timeout(self.timeout);
        let mut client = self.client.clone();
        client
            .ready()
            .await
            .map_err(|e| SinkError::Retriable(format!("gRPC channel: {}", error_text(&e))))?;
        match client
            .unary(call, PathAndQuery::from_static(EXPORT), Lent)
            .await
        {
            Ok(response) => Ok(response.into_inner().partial_success),
            Err(status) => Err(status_error(&status)),
        }
    }
}

/// The method every OTLP logs receiver serves.
const EXPORT: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// A request lent to a call, and the bytes it was encoded into.
pub struct Outgoing {
    request: ExportLogsServiceRequest,
    encoded: AtomicU64,
}

/// Encodes a lent request straight into tonic's buffer; reads the response with prost.
struct Lent;

impl Codec for Lent {
    type Encode = Arc<Outgoing>;
    type Decode = ExportLogsServiceResponse;
    type Encoder = LentEncoder;
    type Decoder = ProstDecoder<ExportLogsServiceResponse>;

    fn encoder(&mut self) -> Self::Encoder {
        LentEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<ExportLogsServiceResponse, ExportLogsServiceResponse>::raw_decoder(
            BufferSettings::default(),
        )
    }
}

struct LentEncoder;

impl Encoder for LentEncoder {
    type Item = Arc<Outgoing>;
    type Error = Status;

    fn encode(&mut self, item: Arc<Outgoing>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        let before = dst.remaining_mut();
        item.request
            .encode(dst)
            .map_err(|e| Status::internal(format!("encoding the request: {e}")))?;
        let written = before.saturating_sub(dst.remaining_mut());
        item.encoded.store(written as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// The error a failed call means, by the OTLP specification's table.
fn status_error(status: &Status) -> SinkError {
    let message = format!("gRPC {:?}: {}", status.code(), status.message());
    // A status tonic made itself for a failed connection (refused, reset, a TLS alert) has
    // the transport error as its source: no receiver answered, so it is worth another try.
    if let Some(cause) = std::error::Error::source(status) {
        return SinkError::Retriable(format!("{message}: {}", error_text(cause)));
    }
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => match retry_delay(status) {
            Some(after) => SinkError::RetriableAfter { message, after },
            None => SinkError::Retriable(message),
        },
        Code::ResourceExhausted => match retry_delay(status) {
            Some(after) => SinkError::RetriableAfter { message, after },
            None => SinkError::Permanent(format!("{message} (without retry info: not retried)")),
        },
        _ => SinkError::Permanent(message),
    }
}

/// The delay of the `RetryInfo` detail of a status, if it has one.
fn retry_delay(status: &Status) -> Option<Duration> {
    status.get_details_retry_info()?.retry_delay
}

/// An error and its sources on one line.
fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, StatusExt};

    #[test]
    fn statuses_table() {
        let with_retry = |code: Code, seconds: u64| {
            Status::with_error_details(
                code,
                "busy",
                ErrorDetails::with_retry_info(Some(Duration::from_secs(seconds))),
            )
        };
        // (status, expected: "R" retriable, "A" retriable after (seconds), "P" permanent)
        let cases = [
            (Status::unavailable("down"), "R", 0),
            (Status::cancelled("x"), "R", 0),
            (Status::deadline_exceeded("x"), "R", 0),
            (Status::aborted("x"), "R", 0),
            (Status::out_of_range("x"), "R", 0),
            (Status::data_loss("x"), "R", 0),
            (Status::resource_exhausted("full"), "P", 0),
            (with_retry(Code::ResourceExhausted, 3), "A", 3),
            (with_retry(Code::Unavailable, 2), "A", 2),
            (Status::invalid_argument("bad"), "P", 0),
            (Status::unauthenticated("who"), "P", 0),
            (Status::permission_denied("no"), "P", 0),
            (Status::unimplemented("no"), "P", 0),
            (Status::internal("bug"), "P", 0),
            (
                Status::from_error(Box::new(std::io::Error::other("connection reset"))),
                "R",
                0,
            ),
        ];
        for (status, want, seconds) in cases {
            let got = match status_error(&status) {
                SinkError::Retriable(_) => "R",
                SinkError::RetriableAfter { after, .. } => {
                    assert_eq!(after.as_secs(), seconds, "{status:?}");
                    "A"
                }
                SinkError::Permanent(_) => "P",
                SinkError::Partial { .. } => "partial",
            };
            assert_eq!(got, want, "{status:?}");
        }
    }
}
