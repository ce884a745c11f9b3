//! The HTTP sink over HTTPS (rustls), against the test HTTP server of
//! `tests/common/http_server.rs` with certificates a CA made by the test signs
//! (`tests/common/pki.rs`): with the CA file every line arrives once; a server the sink does not
//! trust, or mutual TLS without a client certificate, is retried without end and nothing is
//! acked, checkpointed or dead-lettered (a TLS failure is not permanent), and the agent's log
//! and the server say why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::http_server::{Mode, Server, http_config, logged, wait_for_accepted};
use common::pki::{Issued, Pki};
use common::*;
use tokio_rustls::rustls::pki_types::CertificateDer;

/// A world, a CA made for it and an HTTPS server on loopback for `localhost`, with a
/// certificate that CA signed; with `client_auth` the server requires a client certificate
/// the CA signed too.
async fn https_world(client_auth: bool) -> (World, Pki, Server) {
    let world = World::new();
    let pki = Pki::new(&world.dir.path().join("pki"));
    let tls = pki.server_config(&pki.server(), client_auth);
    let server = Server::start_tls(Mode::Ndjson, tls).await;
    (world, pki, server)
}

/// The `tls:` section of a sink: the CA file and, when given, the client certificate.
fn tls_yaml(ca_file: Option<&Path>, client: Option<&Issued>) -> String {
    let mut keys = Vec::new();
    if let Some(ca) = ca_file {
        keys.push(format!("ca_file: {}", ca.display()));
    }
    if let Some(client) = client {
        keys.push(format!("cert_file: {}", client.cert_file.display()));
        keys.push(format!("key_file: {}", client.key_file.display()));
    }
    format!("    tls: {{ {} }}", keys.join(", "))
}

/// Runs an agent over `world` whose requests to `server` cannot get through TLS: waits for
/// several failed handshakes (the sink retries, the agent runs on), then stops it. Checks that
/// nothing was received, acked or dead-lettered, that the agent's log gives `sink_reason` for a
/// retry and that every handshake failed on the server for `server_reason`.
async fn run_refused(
    server: &Server,
    world: &World,
    extra: &str,
    sink_reason: &str,
    server_reason: &str,
) {
    let log = world.log("a.log");
    append_numbered(&log, "x", 0..100, 40);
    // A path of its own, so that this run's log lines are told from any other's.
    let uri = server.uri(&format!("/ingest/{:016x}", fastrand::u64(..)));
    let agent = Agent::start(http_config(world, &uri, extra));
    let failed = || server.state().handshake_failures.len();
    assert!(
        wait_for(Duration::from_secs(20), || failed() >= 3).await,
        "{} failed handshakes, {} sessions",
        failed(),
        server.state().sessions.len()
    );
    assert!(
        wait_for(Duration::from_secs(20), || logged(&uri).len() >= 3).await,
        "no retries logged for {uri}"
    );
    let handshake_failures = server.state().handshake_failures.clone();
    // Let a checkpoint write happen, should anything (wrongly) have been acked.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(checkpointed(&world.data()), 0, "acked while refused");
    let summary = agent.stop().await;
    assert!(!summary.drained, "nothing could be delivered");
    assert_eq!(
        Checkpoints::read(&world.data()).offset_of(&log),
        Some(0),
        "the file is tracked and nothing of it is acked"
    );
    let sink = &summary.metrics.sinks["web"];
    assert!(sink.errors >= 3, "{sink:?}");
    assert!(sink.retries >= 2, "{sink:?}");
    assert_eq!(sink.events_out, 0, "{sink:?}");
    assert_eq!(
        sink.dead_lettered, 0,
        "a TLS failure is not permanent: {sink:?}"
    );
    assert!(
        !world.data().join("dead_letter").join("web.ndjson").exists(),
        "dead-lettered"
    );
    let state = server.state();
    assert!(state.sessions.is_empty(), "a handshake succeeded");
    assert!(state.requests.is_empty(), "a request got through");
    assert!(state.accepted.is_empty());
    let lines = logged(&uri);
    for line in &lines {
        assert!(
            line.contains("delivery failed; will retry"),
            "not a retry: {line}"
        );
    }
    assert!(
        lines.iter().any(|line| line.contains(sink_reason)),
        "no `{sink_reason}` in {lines:#?}"
    );
    assert!(
        handshake_failures.iter().all(|e| e.contains(server_reason)),
        "not all `{server_reason}`: {handshake_failures:?}"
    );
}

/// Runs an agent over `world` that sends 1000 numbered lines of `tag` to `server` with the
/// sink settings `extra`: each arrives exactly once. Returns the client certificate each TLS
/// session presented.
async fn run_delivered(
    server: &Server,
    world: &World,
    tag: &str,
    extra: &str,
) -> Vec<Option<CertificateDer<'static>>> {
    append_numbered(&world.log("a.log"), tag, 0..1000, 60);
    let agent = Agent::start(http_config(world, &server.uri("/ingest"), extra));
    wait_for_accepted(server, world, 1000).await;
    let summary = agent.stop().await;
    let events = server.accepted();
    assert_exactly_once(&events, tag, 1000);
    assert_at_least_once_in_order(&events, tag, 1000);
    assert_eq!(summary.metrics.sinks["web"].events_out, 1000);
    let state = server.state();
    assert!(state.requests.iter().all(|r| r.path == "/ingest"));
    assert_eq!(state.handshake_failures, Vec::<String>::new());
    assert!(!state.sessions.is_empty());
    state.sessions.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_ca_file_delivers_every_line_once() {
    let (world, pki, server) = https_world(false).await;
    assert!(server.uri("/").starts_with("https://localhost:"));
    let extra = tls_yaml(Some(&pki.ca_file), None);
    let sessions = run_delivered(&server, &world, "t", &extra).await;
    assert!(
        sessions.iter().all(Option::is_none),
        "no client certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_without_the_ca_file_is_retried_and_nothing_is_acked() {
    let (world, _pki, server) = https_world(false).await;
    // The sink does not trust the server's certificate, says so, and tells the server.
    run_refused(
        &server,
        &world,
        "",
        "invalid peer certificate: UnknownIssuer",
        "received fatal alert: UnknownCA",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_the_client_certificate_delivers_every_line_once() {
    let (world, pki, server) = https_world(true).await;
    let client = pki.client();
    let extra = tls_yaml(Some(&pki.ca_file), Some(&client));
    let sessions = run_delivered(&server, &world, "m", &extra).await;
    assert!(
        sessions
            .iter()
            .all(|presented| presented.as_ref() == Some(&client.cert)),
        "every session must present the configured client certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_without_a_client_certificate_is_retried_and_nothing_is_acked() {
    let (world, pki, server) = https_world(true).await;
    // The server wants a certificate the sink does not have, and tells it so.
    run_refused(
        &server,
        &world,
        &tls_yaml(Some(&pki.ca_file), None),
        "received fatal alert: CertificateRequired",
        "peer sent no certificates",
    )
    .await;
}
