//! OTLP/HTTP: `POST /v1/logs` with a protobuf or JSON `ExportLogsServiceRequest`, gzip or zstd
//! bodies too, journaled before the answer.
//!
//! Invariant: 200 only once every record of the request is in the journal; a full journal is
//! 429 with `Retry-After` (the answer the OTLP specification gives throttled senders), and
//! nothing of a refused request is kept.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use super::{request_from_json, write_records};
use crate::metrics::add;
use crate::source::http::{MAX_CONCURRENT_REQUESTS, decode, read_body, refusal};
use crate::source::journal::Journal;
use crate::source::tls::{Peer, serve};
use tokio_rustls::TlsAcceptor;

/// The path OTLP/HTTP exporters post logs to.
pub const LOGS_PATH: &str = "/v1/logs";

struct Ingest {
    journal: Journal,
    max_request_bytes: usize,
    /// Requests worked on at once (each holds its body and records).
    requests: Semaphore,
}

/// Serves OTLP/HTTP on `listener` until `stopping` turns true.
pub fn spawn(
    listener: std::net::TcpListener,
    tls: Option<TlsAcceptor>,
    max_request_bytes: usize,
    journal: Journal,
    stopping: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let state = Arc::new(Ingest {
        journal,
        max_request_bytes,
        requests: Semaphore::new(MAX_CONCURRENT_REQUESTS),
    });
    let app = Router::new()
        .route(LOGS_PATH, axum::routing::post(export))
        .with_state(state);
    serve(listener, tls, app, "otlp source (HTTP)", stopping)
}

/// What the sender wrote, and is answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

async fn export(
    State(state): State<Arc<Ingest>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let metrics = state.journal.metrics();
    let Ok(_turn) = state.requests.acquire().await else {
        return refusal(&crate::source::journal::JournalError::Closed);
    };
    let refuse = |status: StatusCode, message: String| {
        add(&metrics.requests_rejected, 1);
        (status, format!("{message}\n")).into_response()
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let encoding = match content_type.split(';').next().map(str::trim) {
        Some("application/x-protobuf") | Some("application/protobuf") => Encoding::Protobuf,
        Some("application/json") => Encoding::Json,
        _ => {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Type `{content_type}`: application/x-protobuf or application/json"
                ),
            );
        }
    };
    let body = match read_body(body, state.max_request_bytes).await {
        Ok(body) => body,
        Err(e) => return refuse(e.status(), e.to_string()),
    };
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (max, limit) = (state.max_request_bytes, state.journal.max_append());
    // Decompressing, decoding and mapping are CPU work: off the threads that serve connections.
    let taken = tokio::task::spawn_blocking(move || {
        let decoded = decode(&body, content_encoding.as_deref(), max)
            .map_err(|e| (e.status(), e.to_string()))?;
        let request = match encoding {
            Encoding::Protobuf => {
                <ExportLogsServiceRequest as prost::Message>::decode(&decoded[..])
                    .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?
            }
            Encoding::Json => {
                request_from_json(&decoded).map_err(|e| (StatusCode::BAD_REQUEST, e))?
            }
        };
        let mut records = Vec::new();
        let count = write_records(&request, &peer.to_string(), &mut records, limit)
            .map_err(|e| (StatusCode::PAYLOAD_TOO_LARGE, e))?;
        Ok((count, records))
    })
    .await
    .unwrap_or_else(|e| Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())));
    let (count, records) = match taken {
        Ok(taken) => taken,
        Err((status, message)) => return refuse(status, message),
    };
    if count > 0 {
        if let Err(e) = state.journal.append(records).await {
            add(&metrics.requests_rejected, 1);
            return refusal(&e);
        }
        add(&metrics.records_received, count);
    }
    match encoding {
        Encoding::Protobuf => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            prost::Message::encode_to_vec(&ExportLogsServiceResponse::default()),
        )
            .into_response(),
        Encoding::Json => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{}",
        )
            .into_response(),
    }
}
