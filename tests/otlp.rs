//! The OTLP sink against real OTLP receivers that each test starts on a loopback port: a gRPC
//! server built with `tonic` on the official `LogsService` definitions, and an HTTP one
//! (hyper) that reads protobuf and OTLP JSON. Both record the records they accept and can
//! fail on demand: UNAVAILABLE, RESOURCE_EXHAUSTED with and without retry info, 429/503 with
//! `Retry-After`, permanent errors, partial success, slow answers, dropped connections, a
//! receiver that is not there yet. Checked: every line delivered once, records mapped as the
//! README's table says, compression on the wire as set, dead letters where the specification
//! says a failure is permanent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::otlp::{Fault, Receiver, retried_after};
use common::pki::Pki;
use common::*;
use serde_json::json;

/// A config with source `app` over `logs/*.log` (with `source_keys`) and one otlp sink `otel`
/// to `endpoint`, with small batches and quick retries unless `extra` sets them.
fn otlp_config(world: &World, source_keys: &str, endpoint: &str, extra: &str) -> log_agent::Config {
    let mut keys = format!("endpoint: {endpoint}\ntimeout_ms: 1000\n");
    if !extra.contains("batch:") {
        keys.push_str("batch: { max_events: 200, timeout_ms: 10 }\n");
    }
    if !extra.contains("retry:") {
        keys.push_str("retry: { initial_backoff_ms: 10, max_backoff_ms: 100 }\n");
    }
    keys.push_str(extra);
    world
        .yaml()
        .top("checkpoint_interval_ms: 50\nshutdown_timeout_ms: 5000")
        .file_source("app", &[&world.log("*.log")], source_keys)
        .sink("otel", "otlp", &["app"], &keys)
        .config()
}

/// Waits until `n` records were accepted, then until the checkpoint covers every log file.
async fn wait_for_accepted(receiver: &Receiver, world: &World, n: usize) {
    wait_for_accepted_and_checkpointed(world, n, "records", || receiver.accepted().len()).await;
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_delivers_every_line_once_through_faults_mapped_and_gzipped() {
    let faults = vec![
        Fault::Unavailable,
        Fault::Exhausted(Some(1)),
        Fault::Slow(Duration::from_millis(1500)),
        Fault::Unavailable,
    ];
    let receiver = Receiver::grpc(loopback(), faults).await;
    let world = World::new();
    let token = world.path("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    append_numbered(&world.log("a.log"), "g", 0..2000, 60);
    let extra = format!(
        "compression: gzip\nheaders: {{ x-tenant: acme, authorization: {{ file: {} }} }}\n\
         resource: {{ service.name: shop }}\nretry: {{ initial_backoff_ms: 10, max_backoff_ms: 5000 }}\n",
        token.display()
    );
    let endpoint = format!("http://{}", receiver.addr);
    let agent = Agent::start(otlp_config(
        &world,
        "fields: { env: prod }",
        &endpoint,
        &extra,
    ));
    wait_for_accepted(&receiver, &world, 2000).await;
    let summary = agent.stop().await;
    let accepted = receiver.accepted();
    // Four exports in flight (the default): they may arrive in any order, once each.
    assert_exactly_once(&accepted, "g", 2000);
    let path = world.log("a.log").display().to_string();
    let first = accepted
        .iter()
        .find(|r| r["message"].as_str().unwrap().starts_with("g 000000000 "))
        .unwrap();
    assert_eq!(first["resource"], json!({ "service.name": "shop" }));
    assert_eq!(first["scope"], json!("log-agent"));
    let attributes = &first["attributes"];
    assert_eq!(attributes["log.file.path"], json!(path));
    assert_eq!(attributes["log.file.name"], json!("a.log"));
    assert_eq!(attributes["env"], json!("prod"));
    assert!(
        attributes["log.record.uid"]
            .as_str()
            .unwrap()
            .ends_with("-0"),
        "{attributes}"
    );
    assert!(first["observed"].as_u64().unwrap() > 1_700_000_000_000_000_000);
    let exports = receiver.exports();
    for export in &exports {
        assert_eq!(export.headers["x-tenant"], "acme");
        assert_eq!(export.headers["authorization"], "t0ken");
        assert_eq!(
            export.headers["grpc-encoding"], "gzip",
            "{:?}",
            export.headers
        );
        assert!(export.headers["user-agent"].contains("log-agent/"));
    }
    let waited = retried_after(&exports, &Fault::Exhausted(Some(1)));
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    let sink = &summary.metrics.sinks["otel"];
    assert_eq!(sink.events_out, 2000);
    assert_eq!(sink.dead_lettered, 0);
    assert!(sink.errors >= 4, "{sink:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_permanent_statuses_and_partial_success_go_to_the_dead_letters() {
    // A batch a line: each fault meets one known line.
    let faults = vec![Fault::Invalid, Fault::Exhausted(None), Fault::Partial(1)];
    let receiver = Receiver::grpc(loopback(), faults).await;
    let world = World::new();
    let endpoint = format!("http://{}", receiver.addr);
    let config = otlp_config(
        &world,
        "",
        &endpoint,
        "batch: { max_events: 1, timeout_ms: 10 }\nretry: { initial_backoff_ms: 10, max_backoff_ms: 50 }\n\
         in_flight: 1\n",
    );
    let agent = Agent::start(config);
    append_numbered(&world.log("a.log"), "d", 0..10, 40);
    wait_for_accepted(&receiver, &world, 8).await;
    let summary = agent.stop().await;
    let dead = read_ndjson(&world.data().join("dead_letter").join("otel.ndjson"));
    // Two refused for good, and the one whose batch was partly rejected (also accepted).
    assert_exactly_once(&dead, "d", 3);
    assert_eq!(counts(&receiver.accepted())["d"].len(), 8);
    assert_eq!(summary.metrics.sinks["otel"].dead_lettered, 3);
    let mut both = receiver.accepted();
    both.extend(dead.iter().take(2).cloned());
    assert_exactly_once(&both, "d", 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_receiver_that_comes_up_late_gets_every_line_once_and_nothing_is_acked_before() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let world = World::new();
    append_numbered(&world.log("a.log"), "l", 0..500, 50);
    let agent = Agent::start(otlp_config(
        &world,
        "",
        &format!("http://{addr}"),
        "compression: zstd\n",
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(checkpointed(&world.data()), 0, "acked with no receiver");
    let receiver = Receiver::grpc(addr, Vec::new()).await;
    wait_for_accepted(&receiver, &world, 500).await;
    agent.stop().await;
    assert_exactly_once(&receiver.accepted(), "l", 500);
    assert!(
        receiver
            .exports()
            .iter()
            .all(|e| e.headers["grpc-encoding"] == "zstd")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_delivers_every_line_once_through_faults_zstd_and_retry_after() {
    let faults = vec![
        Fault::Exhausted(Some(1)),
        Fault::Unavailable,
        Fault::Drop,
        Fault::Slow(Duration::from_millis(1500)),
        Fault::Exhausted(None),
    ];
    let receiver = Receiver::http(faults).await;
    let world = World::new();
    append_numbered(&world.log("a.log"), "h", 0..2000, 60);
    let endpoint = format!("http://{}", receiver.addr);
    let agent = Agent::start(otlp_config(
        &world,
        "",
        &endpoint,
        "protocol: http/protobuf\ncompression: zstd\nheaders: { x-tenant: acme }\n\
         retry: { initial_backoff_ms: 10, max_backoff_ms: 5000 }\n",
    ));
    wait_for_accepted(&receiver, &world, 2000).await;
    let summary = agent.stop().await;
    assert_exactly_once(&receiver.accepted(), "h", 2000);
    let exports = receiver.exports();
    for export in &exports {
        assert_eq!(export.headers["content-type"], "application/x-protobuf");
        assert_eq!(export.headers["content-encoding"], "zstd");
        assert_eq!(export.headers["x-tenant"], "acme");
    }
    let waited = retried_after(&exports, &Fault::Exhausted(Some(1)));
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    assert_eq!(summary.metrics.sinks["otel"].dead_lettered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_maps_parsed_lines_and_dead_letters_a_400() {
    let receiver = Receiver::http(vec![Fault::Invalid]).await;
    let world = World::new();
    let endpoint = format!("http://{}", receiver.addr);
    let agent = Agent::start(otlp_config(
        &world,
        "format: json",
        &endpoint,
        "protocol: http/json\ncompression: gzip\nbatch: { max_events: 1, timeout_ms: 10 }\n\
         in_flight: 1\n",
    ));
    let lines = [
        r#"{"level":"error","message":"first","status":500}"#,
        r#"{"level":"warn","message":"disk low","status":507,"user":{"id":7}}"#,
        r#"{"msg":"no message field","lvl":"x"}"#,
    ];
    append(&world.log("a.log"), (lines.join("\n") + "\n").as_bytes());
    wait_for_accepted(&receiver, &world, 2).await;
    agent.stop().await;
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 2, "{accepted:?}");
    assert_eq!(accepted[0]["body"], json!("disk low"));
    assert_eq!(accepted[0]["severity_text"], json!("warn"));
    assert_eq!(accepted[0]["severity_number"], json!(13));
    assert_eq!(accepted[0]["attributes"]["status"], json!(507));
    assert_eq!(accepted[0]["attributes"]["user"], json!({ "id": 7 }));
    assert_eq!(
        accepted[1]["body"],
        json!({ "msg": "no message field", "lvl": "x" })
    );
    for export in receiver.exports() {
        assert_eq!(export.headers["content-type"], "application/json");
        assert_eq!(export.headers["content-encoding"], "gzip");
    }
    let dead = read_ndjson(&world.data().join("dead_letter").join("otel.ndjson"));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["message"], json!("first"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pod_s_lines_carry_their_resource_once_per_request() {
    let receiver = Receiver::grpc(loopback(), Vec::new()).await;
    let world = World::new();
    let pods = world.logs().join("shop_web-1_0a1b-2c");
    for container in ["nginx", "app"] {
        std::fs::create_dir_all(pods.join(container)).unwrap();
        append_numbered(&pods.join(container).join("0.log"), container, 0..300, 40);
    }
    let config = world
        .yaml()
        .top("checkpoint_interval_ms: 50\nkubernetes: { node_name: node-7 }")
        .file_source("app", &[&world.logs().join("*/*/*.log")], "")
        .sink(
            "otel",
            "otlp",
            &["app"],
            &format!(
                "endpoint: http://{}\nbatch: {{ max_events: 1000, timeout_ms: 300 }}\n",
                receiver.addr
            ),
        )
        .config();
    let agent = Agent::start(config);
    assert!(wait_for(Duration::from_secs(30), || receiver.accepted().len() >= 600).await);
    agent.stop().await;
    let accepted = receiver.accepted();
    assert_exactly_once(&accepted, "nginx", 300);
    assert_exactly_once(&accepted, "app", 300);
    let nginx = accepted
        .iter()
        .find(|r| r["message"].as_str().unwrap().starts_with("nginx "))
        .unwrap();
    assert_eq!(
        nginx["resource"],
        json!({
            "k8s.namespace.name": "shop",
            "k8s.pod.name": "web-1",
            "k8s.pod.uid": "0a1b-2c",
            "k8s.container.name": "nginx",
            "k8s.container.restart_count": 0,
            "k8s.node.name": "node-7",
            "service.name": "nginx",
        })
    );
    // Two containers: at most two resources in any request, never one per record.
    let state = receiver.state();
    assert!(state.resources_per_request.iter().all(|n| *n <= 2));
    assert!(state.exports.iter().any(|e| e.records > 2));
}

/// The `tls:` keys of a sink: the CA file and, with `client`, the client certificate.
fn tls_keys(pki: &Pki, client: bool) -> String {
    let mut keys = format!("tls: {{ ca_file: {}", pki.ca_file.display());
    if client {
        let issued = pki.client();
        keys.push_str(&format!(
            ", cert_file: {}, key_file: {}",
            issued.cert_file.display(),
            issued.key_file.display()
        ));
    }
    keys.push_str(" }\n");
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_tls_and_mutual_tls_delivers_every_line_once() {
    for client_auth in [false, true] {
        let world = World::new();
        let pki = Pki::new(&world.path("pki"));
        let receiver = Receiver::grpc_tls(&pki, client_auth).await;
        append_numbered(&world.log("a.log"), "t", 0..300, 40);
        let endpoint = format!("https://localhost:{}", receiver.addr.port());
        let agent = Agent::start(otlp_config(
            &world,
            "",
            &endpoint,
            &tls_keys(&pki, client_auth),
        ));
        wait_for_accepted(&receiver, &world, 300).await;
        agent.stop().await;
        assert_exactly_once(&receiver.accepted(), "t", 300);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_mutual_tls_without_a_client_certificate_is_retried_and_nothing_is_acked() {
    let world = World::new();
    let pki = Pki::new(&world.path("pki"));
    let receiver = Receiver::grpc_tls(&pki, true).await;
    append_numbered(&world.log("a.log"), "n", 0..50, 40);
    let endpoint = format!("https://localhost:{}", receiver.addr.port());
    let agent = Agent::start(otlp_config(&world, "", &endpoint, &tls_keys(&pki, false)));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let summary = agent.stop().await;
    assert!(receiver.exports().is_empty());
    assert_eq!(checkpointed(&world.data()), 0, "acked without a delivery");
    let sink = &summary.metrics.sinks["otel"];
    assert!(sink.errors >= 2, "{sink:?}");
    assert_eq!(sink.dead_lettered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_to_otlp_and_otlp_http_ships_every_line_once() {
    for grpc in [true, false] {
        let receiver = if grpc {
            Receiver::grpc(loopback(), vec![Fault::Unavailable]).await
        } else {
            Receiver::http(vec![Fault::Unavailable]).await
        };
        let world = World::new();
        append_numbered(&world.log("app.log"), "r", 0..400, 40);
        let scheme = if grpc { "otlp" } else { "otlp+http" };
        let to = format!("{scheme}://{}", receiver.addr);
        let dir = world.logs();
        let output = tokio::task::spawn_blocking(move || {
            common::process::command(&["replay", "--to", &to, "app.log"])
                .current_dir(dir)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{scheme}: {stdout}");
        assert_exactly_once(&receiver.accepted(), "r", 400);
        assert!(
            receiver.exports().len() >= 2,
            "{scheme}: the first was refused"
        );
    }
}
