//! The HTTP API on `api.address`: `/healthz`, `/readyz`, `/readyz/sinks` and `/metrics`; and,
//! on `tap.address` of its own, the live taps ([`tap`]).
//!
//! Served by axum on the agent's runtime from [`crate::agent::run`] until the agent has drained
//! (so the last metrics of a shutdown can still be scraped); it reads only shared state that
//! the pipeline keeps anyway (see [`metrics`] and [`crate::health`]).

mod derived;
pub mod metrics;
pub mod probes;
mod process;
pub mod tap;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::health::Health;

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The address could not be bound (in use, not local, no permission).
    #[error("api.address {address}: {source}")]
    Bind {
        /// The configured address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The tap address could not be bound.
    #[error("tap.address {address}: {source}")]
    TapBind {
        /// The configured address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// What the handlers read.
#[derive(Clone)]
pub struct ApiState {
    /// Liveness and readiness.
    pub health: Arc<Health>,
    /// The metrics, rendered at each scrape.
    pub registry: Arc<Registry>,
}

/// Binds `address` (port 0 picks a free port); the listener tells the bound address.
pub async fn bind(address: SocketAddr) -> Result<TcpListener, ApiError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| ApiError::Bind { address, source })
}

/// The routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/readyz/sinks", get(readyz_sinks))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

/// Serves the API on `listener` until `stop` completes.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    if let Err(e) = axum::serve(listener, router(state))
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "the HTTP API stopped");
    }
}

fn json(answer: probes::ProbeAnswer) -> Response {
    let (status, body) = answer;
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn healthz(State(state): State<ApiState>) -> Response {
    json(probes::healthz(&state.health))
}

async fn readyz(State(state): State<ApiState>) -> Response {
    json(probes::readyz(&state.health))
}

async fn readyz_sinks(State(state): State<ApiState>) -> Response {
    json(probes::readyz_sinks(&state.health))
}

async fn metrics_text(State(state): State<ApiState>) -> Response {
    // Stat-ing the tracked files is blocking I/O: off the async threads.
    let registry = Arc::clone(&state.registry);
    match tokio::task::spawn_blocking(move || metrics::render(&registry)).await {
        Ok(Ok(text)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        Ok(Err(_)) | Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot render the metrics\n",
        )
            .into_response(),
    }
}
