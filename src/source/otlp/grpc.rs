//! OTLP/gRPC: the `LogsService/Export` method, gzip or zstd requests, journaled before the
//! answer.
//!
//! Invariant: `OK` only once every record of the request is in the journal; a full journal is
//! `RESOURCE_EXHAUSTED` with a retry delay (in the status details, and in the
//! `google.rpc.retryinfo-bin` trailer that OpenTelemetry's Python exporter reads), which SDKs
//! retry; nothing of a refused request is kept.

use std::net::SocketAddr;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::write_records;
use crate::metrics::add;
use crate::source::journal::{Journal, JournalError};
use crate::source::tls::Pem;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// How long a sender is told to wait when the journal is full.
const RETRY_DELAY: Duration = Duration::from_secs(1);

struct Export {
    journal: Journal,
}

#[tonic::async_trait]
impl LogsService for Export {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let metrics = self.journal.metrics();
        let peer = request
            .remote_addr()
            .map_or_else(String::new, |a| a.to_string());
        let mut records = Vec::new();
        let count = write_records(
            request.get_ref(),
            &peer,
            &mut records,
            self.journal.max_append(),
        )
        .map_err(|e| {
            add(&metrics.requests_rejected, 1);
            Status::invalid_argument(e)
        })?;
        if count == 0 {
            return Ok(Response::new(ExportLogsServiceResponse::default()));
        }
        match self.journal.append(records).await {
            Ok(()) => {
                add(&metrics.records_received, count);
                Ok(Response::new(ExportLogsServiceResponse::default()))
            }
            Err(e) => {
                add(&metrics.requests_rejected, 1);
                Err(status_of(&e))
            }
        }
    }
}

/// The status a sender gets for what the journal refused.
fn status_of(e: &JournalError) -> Status {
    let retry = |code: Code| {
        let mut status = Status::with_error_details(
            code,
            e.to_string(),
            ErrorDetails::with_retry_info(Some(RETRY_DELAY)),
        );
        let mut info = tonic_types::pb::RetryInfo::default();
        let mut delay = info.retry_delay.unwrap_or_default();
        delay.seconds = RETRY_DELAY.as_secs() as i64;
        info.retry_delay = Some(delay);
        let encoded = prost::Message::encode_to_vec(&info);
        status.metadata_mut().insert_bin(
            "google.rpc.retryinfo-bin",
            MetadataValue::from_bytes(&encoded),
        );
        status
    };
    match e {
        JournalError::Full { .. } => retry(Code::ResourceExhausted),
        JournalError::TooLarge { .. } => Status::invalid_argument(e.to_string()),
        JournalError::Closed | JournalError::Write(_) | JournalError::Open { .. } => {
            retry(Code::Unavailable)
        }
    }
}

/// Serves OTLP/gRPC on `listener` until `stopping` turns true.
pub fn spawn(
    listener: std::net::TcpListener,
    max_request_bytes: usize,
    tls: Option<Pem>,
    journal: Journal,
    mut stopping: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let pem = tls;
    tokio::spawn(async move {
        let address = listener
            .local_addr()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!(%address, error = %e, "otlp source cannot serve gRPC");
                return;
            }
        };
        let service = LogsServiceServer::new(Export { journal })
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(max_request_bytes);
        tracing::info!(%address, "otlp source (gRPC) listening");
        let stop = async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        };
        let mut builder = tonic::transport::Server::builder();
        if let Some(pem) = pem {
            let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(pem.cert, pem.key));
            if let Some(ca) = pem.client_ca {
                tls = tls.client_ca_root(Certificate::from_pem(ca));
            }
            builder = match builder.tls_config(tls) {
                Ok(builder) => builder,
                Err(e) => {
                    tracing::error!(%address, error = %e, "otlp source cannot serve gRPC over TLS");
                    return;
                }
            };
        }
        let served = builder
            .add_service(service)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                stop,
            )
            .await;
        if let Err(e) = served {
            tracing::error!(%address, error = %e, "otlp source stopped serving gRPC");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_journal_is_resource_exhausted_with_a_retry_delay_both_ways() {
        let status = status_of(&JournalError::Full { max_bytes: 1 });
        assert_eq!(status.code(), Code::ResourceExhausted);
        let details = status.get_details_retry_info().unwrap();
        assert_eq!(details.retry_delay, Some(RETRY_DELAY));
        let trailer = status
            .metadata()
            .get_bin("google.rpc.retryinfo-bin")
            .unwrap()
            .to_bytes()
            .unwrap();
        let info: tonic_types::pb::RetryInfo = prost::Message::decode(&trailer[..]).unwrap();
        assert_eq!(info.retry_delay.unwrap().seconds, 1);
        assert_eq!(
            status_of(&JournalError::TooLarge {
                size: 2,
                max_bytes: 1
            })
            .code(),
            Code::InvalidArgument
        );
        assert_eq!(status_of(&JournalError::Closed).code(), Code::Unavailable);
    }
}
