//! OTLP over gRPC: the `LogsService/Export` call through `tonic`, on one channel that every
//! instance of the sink shares.
//!
//! Invariant: a status is retried only where the OTLP specification says it may succeed later:
//! `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`, `UNAVAILABLE`, `DATA_LOSS`, and
//! `RESOURCE_EXHAUSTED` when the server sent `RetryInfo` (then not before its delay). Any other
//! status is permanent.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest,
};
use reqwest::Url;
use reqwest::header::HeaderMap;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::config::{OtlpCompression, OtlpSinkConfig};
use crate::sink::SinkError;
use crate::sink::http::client::{ClientError, TlsFiles};

/// A gRPC client of one receiver.
#[derive(Debug, Clone)]
pub struct GrpcExporter {
    client: LogsServiceClient<Channel>,
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
        let mut client = LogsServiceClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(4 * 1024 * 1024);
        client = match config.compression {
            OtlpCompression::None => client,
            OtlpCompression::Gzip => client.send_compressed(CompressionEncoding::Gzip),
            OtlpCompression::Zstd => client.send_compressed(CompressionEncoding::Zstd),
        }
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

    /// Sends one request; what the receiver says of records it refused, if anything.
    pub async fn export(
        &self,
        request: ExportLogsServiceRequest,
    ) -> Result<Option<ExportLogsPartialSuccess>, SinkError> {
        let mut call = tonic::Request::new(request);
        *call.metadata_mut() = self.metadata.clone();
        call.set_timeout(self.timeout);
        match self.client.clone().export(call).await {
            Ok(response) => Ok(response.into_inner().partial_success),
            Err(status) => Err(status_error(&status)),
        }
    }
}

/// The error a failed call means, by the OTLP specification's table.
fn status_error(status: &Status) -> SinkError {
    let message = format!("gRPC {:?}: {}", status.code(), status.message());
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
fn error_text(error: &dyn std::error::Error) -> String {
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
