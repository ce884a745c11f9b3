//! `/healthz` and `/readyz`: the kubelet's liveness and readiness probes.
//!
//! Both answer a small JSON object: `200 {"status":"ok"}`, or `503` with the reasons
//! (`{"status":"failing","reasons":["sink `out`: deliveries failing: ..."]}`), so that
//! `kubectl describe pod` shows why a probe failed.

use std::time::Instant;

use axum::http::StatusCode;

use crate::health::Health;

/// A probe's answer: its status code and JSON body.
pub type ProbeAnswer = (StatusCode, String);

/// Liveness: every loop turns.
pub fn healthz(health: &Health) -> ProbeAnswer {
    answer(health.liveness(Instant::now()))
}

/// Readiness: every source started, every sink delivering, not shutting down.
pub fn readyz(health: &Health) -> ProbeAnswer {
    answer(health.readiness())
}

fn answer(result: Result<(), Vec<String>>) -> ProbeAnswer {
    match result {
        Ok(()) => (
            StatusCode::OK,
            serde_json::json!({"status": "ok"}).to_string(),
        ),
        Err(reasons) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "failing", "reasons": reasons}).to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::SinkHealth;
    use std::sync::Arc;

    #[test]
    fn answers_table() {
        let mut health = Health::default();
        let sink = Arc::new(SinkHealth::default());
        health.add_sink("out".into(), Arc::clone(&sink));
        // (sink failing?, expected readyz status, expected body)
        let cases = [
            (false, StatusCode::OK, r#"{"status":"ok"}"#),
            (
                true,
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"status":"failing","reasons":["sink `out`: deliveries failing: disk full"]}"#,
            ),
        ];
        for (failing, status, body) in cases {
            if failing {
                sink.failed("disk full");
            } else {
                sink.delivered();
            }
            assert_eq!(readyz(&health), (status, body.to_owned()));
            assert_eq!(
                healthz(&health).0,
                StatusCode::OK,
                "a failing sink is alive"
            );
        }
    }
}
