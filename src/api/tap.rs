//! The tap server on `tap.address`: `GET /tap?point=GLOB` streams the events passing the
//! matching points as NDJSON, for `log-agent tap`.
//!
//! Invariant: it is served only when the config has `tap:` and only on its own address (never
//! the API's, which the manifests expose on the pod IP for probes): events carry log content.
//! It only reads, through [`TapHub`], whose queues are bounded.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::pipeline::tap::{TapError, TapHub};

/// The routes.
pub fn router(hub: Arc<TapHub>) -> Router {
    Router::new().route("/tap", get(tap)).with_state(hub)
}

/// Serves taps on `listener` until `stop` completes (open streams are cut then).
pub async fn serve(
    listener: TcpListener,
    hub: Arc<TapHub>,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    tokio::select! {
        served = axum::serve(listener, router(hub)) => {
            if let Err(e) = served {
                tracing::error!(error = %e, "the tap server stopped");
            }
        }
        () = stop => {}
    }
}

async fn tap(
    State(hub): State<Arc<TapHub>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let filter = query.get("point").map_or("*", String::as_str);
    match hub.subscribe(filter) {
        Ok(lines) => {
            let stream = futures_util::stream::unfold(lines, |mut lines| async move {
                let line = lines.recv().await?;
                Some((Ok::<_, Infallible>(line), lines))
            });
            (
                [(header::CONTENT_TYPE, "application/x-ndjson")],
                Body::from_stream(stream),
            )
                .into_response()
        }
        Err(e @ TapError::Pattern(_)) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        Err(e @ TapError::Busy) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}
