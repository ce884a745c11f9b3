//! The Kafka sink against librdkafka's own mock cluster (in-process, no broker to install):
//! delivery with keys and headers, request errors, a broker going down (also at shutdown), an
//! oversized message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::time::Duration;

use common::*;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

/// A config over `logs/*.log` into one Kafka sink `kafka` writing to topic `logs-<source>`, with
/// `extra` keys for it.
fn kafka_config(world: &World, bootstrap: &str, extra: &str) -> log_agent::Config {
    let keys = format!(
        "brokers: {bootstrap}
topic: \"logs-{{{{ source }}}}\"
headers: {{ origin: file }}
batch: {{ max_events: 200, timeout_ms: 10 }}
retry: {{ initial_backoff_ms: 50, max_backoff_ms: 200 }}
{}",
        common::yaml::dedent(extra)
    );
    world
        .app_yaml("*.log")
        .top("shutdown_timeout_ms: 3000")
        .sink("kafka", "kafka", &["app"], &keys)
        .config()
}

fn messages(received: &[Received]) -> Vec<serde_json::Value> {
    received.iter().map(|r| r.value.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_arrive_once_in_order_with_ids_as_keys_and_headers() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("logs-app", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let world = World::new();
    append_numbered(&world.log("a.log"), "k", 0..2000, 60);
    let agent = Agent::start(kafka_config(&world, &bootstrap, ""));
    let received = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        move || consume(&bootstrap, "logs-app", 2000)
    })
    .await
    .unwrap();
    let summary = agent.stop().await;
    assert!(summary.drained);
    let values = messages(&received);
    assert_exactly_once(&values, "k", 2000);
    assert_at_least_once_in_order(&values, "k", 2000);
    for r in &received {
        assert_eq!(r.key, r.value["id"].as_str().unwrap());
        assert_eq!(r.headers["origin"], world.log("a.log").to_str().unwrap());
    }
    assert_eq!(summary.metrics.sinks["kafka"].events_out, 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_request_errors_are_retried_by_the_producer() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("logs-app", 1, 1).unwrap();
    let errors = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 4];
    cluster.request_errors(RDKafkaApiKey::Produce, &errors);
    let bootstrap = cluster.bootstrap_servers();
    let world = World::new();
    append_numbered(&world.log("a.log"), "r", 0..500, 60);
    let agent = Agent::start(kafka_config(&world, &bootstrap, ""));
    let received = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        move || consume(&bootstrap, "logs-app", 500)
    })
    .await
    .unwrap();
    agent.stop().await;
    // The idempotent producer retried without duplicating.
    assert_exactly_once(&messages(&received), "r", 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_down_holds_the_checkpoint_and_everything_arrives_once_it_is_back() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("logs-app", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.broker_down(1).unwrap();
    let world = World::new();
    append_numbered(&world.log("a.log"), "d", 0..300, 60);
    let agent = Agent::start(kafka_config(
        &world,
        &bootstrap,
        "    librdkafka_options: { message.timeout.ms: \"1000\" }",
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        checkpointed(&world.data()),
        0,
        "nothing is acked while the broker is down"
    );
    cluster.broker_up(1).unwrap();
    let received = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        move || consume(&bootstrap, "logs-app", 300)
    })
    .await
    .unwrap();
    let size = fs::metadata(world.log("a.log")).unwrap().len();
    assert!(
        wait_for(Duration::from_secs(20), || checkpointed(&world.data())
            == size)
        .await
    );
    let summary = agent.stop().await;
    assert_at_least_once_in_order(&messages(&received), "d", 300);
    assert!(summary.metrics.sinks["kafka"].errors >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_size_limit_is_dead_lettered_and_the_rest_flows() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("logs-app", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let world = World::new();
    let agent = Agent::start(kafka_config(
        &world,
        &bootstrap,
        "    librdkafka_options: { message.max.bytes: \"2000\" }",
    ));
    append_numbered(&world.log("a.log"), "s", 0..10, 60);
    assert!(wait_for(Duration::from_secs(20), || checkpointed(&world.data()) > 0).await);
    append(
        &world.log("a.log"),
        format!("big {}\n", "x".repeat(5000)).as_bytes(),
    );
    let dead = world.data().join("dead_letter").join("kafka.ndjson");
    assert!(wait_for(Duration::from_secs(20), || read_ndjson(&dead).len() == 1).await);
    append_numbered(&world.log("a.log"), "s", 10..20, 60);
    let received = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        move || consume(&bootstrap, "logs-app", 20)
    })
    .await
    .unwrap();
    let summary = agent.stop().await;
    assert_exactly_once(&messages(&received), "s", 20);
    assert!(
        read_ndjson(&dead)[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("big x")
    );
    assert_eq!(summary.metrics.sinks["kafka"].dead_lettered, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_the_broker_down_ends_at_the_deadline_and_the_next_start_delivers() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("logs-app", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.broker_down(1).unwrap();
    let world = World::new();
    append_numbered(&world.log("a.log"), "s", 0..300, 60);
    // librdkafka would keep the messages for 5 minutes: the shutdown deadline (3 s) must win.
    let extra = "    librdkafka_options: { message.timeout.ms: \"300000\" }";
    let agent = Agent::start(kafka_config(&world, &bootstrap, extra));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let summary = agent.stop().await;
    assert!(!summary.drained, "nothing could be delivered");
    assert_eq!(checkpointed(&world.data()), 0);

    cluster.broker_up(1).unwrap();
    let agent = Agent::start(kafka_config(&world, &bootstrap, extra));
    let received = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        move || consume(&bootstrap, "logs-app", 300)
    })
    .await
    .unwrap();
    let summary = agent.stop().await;
    assert!(summary.drained);
    assert_at_least_once_in_order(&messages(&received), "s", 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_sinks_says_not_ready_while_every_broker_is_down_and_ready_once_one_is_back() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("logs-app", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let world = World::new();
    let mut config = kafka_config(&world, &bootstrap, "");
    config.api = Some(log_agent::config::ApiConfig {
        address: "127.0.0.1:0".parse().unwrap(),
    });
    let (agent, api) = Agent::start_with_api(config).await;
    append_numbered(&world.log("a.log"), "r", 0..10, 60);
    wait_for_readyz(api, 200).await;
    // The lines delivered first: the sink is idle and connected when the broker goes (the
    // outage is then told by librdkafka while the sink task waits for lines).
    let size = fs::metadata(world.log("a.log")).unwrap().len();
    assert!(
        wait_for(Duration::from_secs(20), || checkpointed(&world.data())
            == size)
        .await
    );
    cluster.broker_down(1).unwrap();
    // Nothing needs to be written: librdkafka's own connection tells that the brokers are gone.
    let reason = wait_for_probe(api, "/readyz/sinks", 503).await;
    assert!(reason.contains("kafka"), "{reason}");
    assert_eq!(
        get(api, "/readyz").await.0,
        200,
        "plain readiness leaves sinks out"
    );
    cluster.broker_up(1).unwrap();
    // With nothing to deliver, the sink's healthcheck finds the cluster back.
    wait_for_probe(api, "/readyz/sinks", 200).await;
    agent.stop().await;
}
