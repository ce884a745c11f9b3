//! The HTTP sink against a real HTTP server that each test starts on a loopback port
//! (`tests/common/http_server.rs`): it records what it receives and can answer 500, 429 with
//! `Retry-After`, slowly, or drop the connection. The guarantee checked is at-least-once
//! delivery, exactly once when the server answers: every line arrives once and in order despite
//! those faults, gzipped with its headers and auth; a batch the server refuses for good is
//! dead-lettered while the rest flows; requests in flight overlap and the checkpoint waits for
//! the slowest; Elasticsearch bulk items are retried or dead-lettered one by one; Loki streams
//! are grouped by labels and ordered. HTTPS is in `tests/http_tls.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::http_server::{Fault, Mode, Server, http_config, ndjson, wait_for_accepted};
use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_lines_arrive_once_in_order_despite_faults_gzipped_with_headers_and_auth() {
    let faults = vec![
        Fault::Status(500, "boom"),
        Fault::Slow(Duration::from_millis(1500)),
        Fault::Drop,
        Fault::Status(503, "unavailable"),
        Fault::Status(408, "request timeout"),
        Fault::Status(429, "no Retry-After"),
    ];
    let server = Server::start(Mode::Ndjson, faults, 0).await;
    let world = World::new();
    let token = world.dir.path().join("token");
    std::fs::write(&token, "s3cr3t\n").unwrap();
    append_numbered(&world.log("a.log"), "n", 0..3000, 60);
    let extra = format!(
        "    compression: gzip
    timeout_ms: 500
    headers: {{ X-Tenant: acme, X-Api-Key: {{ file: {token} }} }}
    auth: {{ strategy: bearer, token: {{ file: {token} }} }}",
        token = token.display()
    );
    let agent = Agent::start(http_config(&world, &server.uri("/ingest"), &extra));
    wait_for_accepted(&server, &world, 3000).await;
    let summary = agent.stop().await;
    let events = server.accepted();
    assert_exactly_once(&events, "n", 3000);
    assert_at_least_once_in_order(&events, "n", 3000);
    let posts = server.posts();
    assert!(posts.len() >= 15 + 6, "{} requests", posts.len());
    for post in &posts {
        assert_eq!(post.path, "/ingest");
        assert_eq!(post.headers["content-encoding"], "gzip");
        assert_eq!(post.headers["content-type"], "application/x-ndjson");
        assert_eq!(post.headers["authorization"], "Bearer s3cr3t");
        assert_eq!(post.headers["x-tenant"], "acme");
        assert_eq!(post.headers["x-api-key"], "s3cr3t");
    }
    let sink = &summary.metrics.sinks["web"];
    assert!(sink.errors >= 6, "{sink:?}");
    assert_eq!(sink.events_out, 3000);
    assert_eq!(sink.dead_lettered, 0);
    assert!(
        server.state().requests.iter().all(|r| r.method == "POST"),
        "ndjson has no healthcheck unless a uri is given"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_waited_for() {
    let server = Server::start(Mode::Ndjson, vec![Fault::RetryAfter(1)], 0).await;
    let world = World::new();
    append_numbered(&world.log("a.log"), "r", 0..10, 40);
    let agent = Agent::start(http_config(
        &world,
        &server.uri("/"),
        "    retry: { initial_backoff_ms: 10, max_backoff_ms: 5000 }",
    ));
    wait_for_accepted(&server, &world, 10).await;
    agent.stop().await;
    assert_exactly_once(&server.accepted(), "r", 10);
    let posts = server.posts();
    assert!(matches!(posts[0].fault, Some(Fault::RetryAfter(1))));
    let waited = posts[1].at - posts[0].at;
    assert!(
        waited >= Duration::from_secs(1),
        "retried after {waited:?}, before the server's Retry-After"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_4xx_dead_letter_the_batch_and_the_rest_flows() {
    let server = Server::start(
        Mode::Ndjson,
        vec![Fault::Status(400, "field [x] is not allowed")],
        0,
    )
    .await;
    let world = World::new();
    let agent = Agent::start(http_config(&world, &server.uri("/"), ""));
    append_numbered(&world.log("a.log"), "p", 0..10, 40);
    let dead = world.data().join("dead_letter").join("web.ndjson");
    assert!(wait_for(Duration::from_secs(20), || read_ndjson(&dead).len() == 10).await);
    append_numbered(&world.log("a.log"), "p", 10..20, 40);
    wait_for_accepted(&server, &world, 10).await;
    let summary = agent.stop().await;
    assert_exactly_once(&read_ndjson(&dead), "p", 10);
    let delivered: Vec<Value> = server.accepted();
    assert_eq!(
        counts(&delivered)["p"].keys().copied().collect::<Vec<_>>(),
        (10..20).collect::<Vec<_>>()
    );
    assert_eq!(summary.metrics.sinks["web"].dead_lettered, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_overlap_and_every_file_is_acked_to_its_end() {
    let faults = vec![
        Fault::Status(500, "a"),
        Fault::Drop,
        Fault::Status(502, "b"),
    ];
    let server = Server::start(Mode::Ndjson, faults, 30).await;
    let world = World::new();
    append_numbered(&world.log("a.log"), "a", 0..2000, 50);
    append_numbered(&world.log("b.log"), "b", 0..2000, 50);
    let agent = Agent::start(http_config(
        &world,
        &server.uri("/"),
        "    in_flight: 4\n    batch: { max_events: 50, timeout_ms: 10 }",
    ));
    wait_for_accepted(&server, &world, 4000).await;
    let summary = agent.stop().await;
    let events = server.accepted();
    assert_exactly_once(&events, "a", 2000);
    assert_exactly_once(&events, "b", 2000);
    assert!(server.state().most_active > 1, "requests never overlapped");
    assert_eq!(summary.metrics.sinks["web"].events_out, 4000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_first_request_holds_the_checkpoint_while_later_ones_are_delivered() {
    let hold = Fault::Hold(Duration::from_secs(3));
    let server = Server::start(Mode::Ndjson, vec![hold], 0).await;
    let world = World::new();
    append_numbered(&world.log("a.log"), "h", 0..200, 40);
    let agent = Agent::start(http_config(
        &world,
        &server.uri("/"),
        "    in_flight: 4\n    batch: { max_events: 50, timeout_ms: 10 }",
    ));
    assert!(wait_for(Duration::from_secs(20), || server.accepted().len() >= 150).await);
    // Let a checkpoint write happen, should anything (wrongly) have been acked.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let checkpoint = checkpointed(&world.data());
    // Requests race to the server: the one held may be any of the four batches.
    let held = server.posts().first().cloned().unwrap();
    assert!(
        held.at.elapsed() < Duration::from_secs(3),
        "too slow to tell"
    );
    let held_from = ndjson(&held.body)[0]["offset"].as_u64().unwrap();
    assert_eq!(
        checkpoint, held_from,
        "the checkpoint must stop at the batch still in flight, after every batch before it"
    );
    wait_for_accepted(&server, &world, 200).await;
    agent.stop().await;
    assert_exactly_once(&server.accepted(), "h", 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_bulk_items_are_retried_or_dead_lettered_one_by_one() {
    let server = Server::start(Mode::Elasticsearch, vec![Fault::Status(503, "busy")], 0).await;
    let world = World::new();
    let mut text = String::new();
    for seq in 0..300u64 {
        if seq % 10 == 3 {
            text.push_str(&format!("bad {seq:09} unparseable\n"));
        } else {
            text.push_str(&numbered("e", seq, 40));
        }
    }
    append(&world.log("a.log"), text.as_bytes());
    let agent = Agent::start(http_config(
        &world,
        &server.uri("/_bulk"),
        "    encoding: elasticsearch\n    elasticsearch: { index: \"logs-{{ source }}-%Y.%m.%d\" }",
    ));
    wait_for_accepted(&server, &world, 270).await;
    let summary = agent.stop().await;
    let good: Vec<u64> = (0..300).filter(|s| s % 10 != 3).collect();
    let docs = server.accepted();
    let seen = counts(&docs);
    assert_eq!(seen["e"].keys().copied().collect::<Vec<_>>(), good);
    assert!(seen["e"].values().all(|&n| n == 1));
    let state = server.state();
    assert_eq!(state.conflicts, 0, "items already indexed were sent again");
    for (id, attempts) in &state.bulk_attempts {
        let doc_seq = id.rsplit('-').next().unwrap();
        assert!(
            *attempts <= 2,
            "{id} sent {attempts} times (offset {doc_seq})"
        );
    }
    let today = chrono::Utc::now().format("logs-app-%Y.%m.%d").to_string();
    assert!(
        state.indices.iter().all(|i| *i == today),
        "{:?}",
        &state.indices[..3]
    );
    assert!(
        state
            .requests
            .iter()
            .any(|r| r.method == "GET" && r.path == "/_cluster/health"),
        "no healthcheck"
    );
    drop(state);
    let dead = read_ndjson(&world.data().join("dead_letter").join("web.ndjson"));
    let bad: Vec<String> = dead
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(bad.len(), 30, "{bad:?}");
    assert!(bad.iter().all(|m| m.starts_with("bad ")), "{bad:?}");
    let sink = &summary.metrics.sinks["web"];
    assert_eq!(sink.dead_lettered, 30);
    assert_eq!(sink.events_out, 270);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_streams_are_grouped_by_labels_and_ordered() {
    let server = Server::start(Mode::Loki, vec![Fault::Status(500, "ingester down")], 0).await;
    let world = World::new();
    append_numbered(&world.log("a.log"), "a", 0..500, 40);
    append_numbered(&world.log("b.log"), "b", 0..500, 40);
    let agent = Agent::start(http_config(
        &world,
        &server.uri("/loki/api/v1/push"),
        "    encoding: loki
    compression: gzip
    loki: { labels: { app: \"{{ source }}\", file: \"{{ file }}\" }, line: text }",
    ));
    wait_for_accepted(&server, &world, 1000).await;
    agent.stop().await;
    let events = server.accepted();
    assert_exactly_once(&events, "a", 500);
    assert_exactly_once(&events, "b", 500);
    let state = server.state();
    assert!(
        state
            .requests
            .iter()
            .any(|r| r.method == "GET" && r.path == "/ready")
    );
    // Per stream, over every push in arrival order: lines in file order, times never back.
    let mut per_stream: BTreeMap<String, Vec<(u128, String)>> = BTreeMap::new();
    for (labels, entries) in &state.streams {
        assert_eq!(labels["app"], "app");
        let file = labels["file"].as_str().unwrap().to_owned();
        per_stream.entry(file).or_default().extend(entries.clone());
    }
    assert_eq!(per_stream.len(), 2);
    for (file, entries) in per_stream {
        let tag = if file.ends_with("a.log") { "a " } else { "b " };
        assert!(
            entries.iter().all(|(_, line)| line.starts_with(tag)),
            "{file}"
        );
        assert!(
            entries.windows(2).all(|w| w[0].0 <= w[1].0),
            "{file}: time went back"
        );
        assert!(
            entries.windows(2).all(|w| w[0].1 < w[1].1),
            "{file}: lines out of order"
        );
    }
}
