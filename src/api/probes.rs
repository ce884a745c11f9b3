//! `/healthz` and `/readyz`: the kubelet's liveness and readiness probes; `/readyz/sinks`:
//! readiness that also follows the sinks, for those who opt into it.
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

/// Readiness: every source started, not shutting down. Sinks are left out: a sidecar's
/// readiness is its pod's, which a log destination that is down must not take out of its
/// Service.
pub fn readyz(health: &Health) -> ProbeAnswer {
    answer(health.readiness())
}

/// [`readyz`], and every sink delivering.
pub fn readyz_sinks(health: &Health) -> ProbeAnswer {
    answer(health.readiness_with_sinks())
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
        let health = Health::default();
        let sink = Arc::new(SinkHealth::default());
        health.add_sink("out".into(), Arc::clone(&sink));
        // (sink failing?, expected /readyz/sinks status, expected body)
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
            assert_eq!(readyz_sinks(&health), (status, body.to_owned()));
            assert_eq!(
                readyz(&health).0,
                StatusCode::OK,
                "plain readiness does not follow the sink"
            );
            assert_eq!(
                healthz(&health).0,
                StatusCode::OK,
                "a failing sink is alive"
            );
        }
    }
}
