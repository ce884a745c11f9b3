//! The Kafka sink against a real Kafka-API broker process (Tansu) started on loopback by each
//! test: rotation with every line once and in order; every compression codec, keys and headers;
//! the broker stopped and restarted mid-stream and the agent killed with `kill -9` mid-stream,
//! with nothing lost; an unknown topic and a wrong SASL password dead-lettered. `tansu` must be
//! on the PATH (or in `$TANSU`); `.ci/test` installs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::time::Duration;

use common::broker::Broker;
use common::compress::compress;
use common::process::{AgentProcess, command};
use common::*;

/// The values of `n` messages of `topic`, read from its start.
fn consume_values(bootstrap: &str, topic: &str, n: usize) -> Vec<serde_json::Value> {
    consume(bootstrap, topic, n)
        .into_iter()
        .map(|r| r.value)
        .collect()
}

/// The agent's config over `logs/<include>` into topic `logs`; `idempotence` as given.
fn kafka_config(
    world: &World,
    include: &str,
    bootstrap: &str,
    idempotence: bool,
) -> log_agent::Config {
    kafka_yaml(
        world,
        include,
        bootstrap,
        &[("kafka", &format!("topic: logs\nidempotence: {idempotence}"))],
    )
    .config()
}

/// A config over `logs/<include>` with one Kafka sink per `(name, settings)`; `settings` are
/// YAML lines (`topic:` at least) added to the sink's common ones.
fn kafka_yaml(world: &World, include: &str, bootstrap: &str, sinks: &[(&str, &str)]) -> AgentYaml {
    let mut yaml = world.app_yaml(include).top("shutdown_timeout_ms: 5000");
    for (name, settings) in sinks {
        // Undelivered messages fail within 5 s (rather than librdkafka's 5 minutes) unless the
        // test sets its own options.
        let timeout = if settings.contains("librdkafka_options") {
            ""
        } else {
            "librdkafka_options: { message.timeout.ms: \"5000\" }"
        };
        let keys = format!(
            "brokers: {bootstrap}
batch: {{ max_events: 500, timeout_ms: 10 }}
retry: {{ initial_backoff_ms: 100, max_backoff_ms: 500 }}
{settings}
{timeout}"
        );
        yaml = yaml.sink(name, "kafka", &["app"], &keys);
    }
    yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_lines_reach_the_broker_once_and_in_order() {
    let world = World::new();
    let broker = Broker::start(world.dir.path(), 0, "memory://tansu/");
    broker.create_topic("logs");
    let agent = Agent::start(kafka_config(&world, "app.log", &broker.bootstrap(), true));
    let path = world.log("app.log");
    let rotated = world.log("app.log.1");
    let writer = std::thread::spawn(move || {
        append_numbered_in_bursts(&path, "b", 0..10_000, 100, 80, |seq| {
            if seq % 2_500 == 2_400 {
                let _ = fs::remove_file(&rotated);
                fs::rename(&path, &rotated).unwrap();
            }
            std::thread::sleep(Duration::from_millis(2));
        });
    });
    tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    let bootstrap = broker.bootstrap();
    let received = tokio::task::spawn_blocking(move || consume_values(&bootstrap, "logs", 10_000))
        .await
        .unwrap();
    let summary = agent.stop().await;
    assert!(summary.drained);
    assert_exactly_once(&received, "b", 10_000);
    assert_at_least_once_in_order(&received, "b", 10_000);
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_stopped_mid_stream_loses_nothing() {
    let world = World::new();
    // SQLite storage: what the broker had survives its restart.
    let broker = Broker::start(world.dir.path(), 0, "sqlite://tansu.db");
    let port = broker.port;
    broker.create_topic("logs");
    let agent = Agent::start(kafka_config(
        &world,
        "*.log",
        &broker.bootstrap(),
        // Tansu 0.6 answers every produce of an idempotent producer with an unknown error once
        // it has restarted, even for a fresh producer id, so this test runs without it.
        false,
    ));
    append_numbered(&world.log("app.log"), "s", 0..2_000, 80);
    let bootstrap = broker.bootstrap();
    let first = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        move || consume_values(&bootstrap, "logs", 2_000)
    })
    .await
    .unwrap();
    assert!(
        first.len() >= 2_000,
        "only {} before the outage",
        first.len()
    );
    broker.stop();
    // Written while the broker is down: the agent keeps running and holds these back.
    append_numbered(&world.log("app.log"), "s", 2_000..4_000, 80);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let broker = Broker::start(world.dir.path(), port, "sqlite://tansu.db");
    append_numbered(&world.log("app.log"), "s", 4_000..5_000, 80);
    let received = tokio::task::spawn_blocking(move || consume_values(&bootstrap, "logs", 5_000))
        .await
        .unwrap();
    // Batches whose delivery reports were lost in the outage are sent again (at least once);
    // once everything is acked the checkpoint reaches the end of the file.
    let size = fs::metadata(world.log("app.log")).unwrap().len();
    let data = world.data();
    let acked = wait_for(Duration::from_secs(60), || checkpointed(&data) == size).await;
    let summary = agent.stop().await;
    assert!(acked, "the checkpoint did not reach the end of the file");
    assert!(summary.drained);
    assert_at_least_once_in_order(&received, "s", 5_000);
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_with_keys_and_headers_round_trips() {
    const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
    let world = World::new();
    let broker = Broker::start(world.dir.path(), 0, "memory://tansu/");
    let settings: Vec<(String, String)> = CODECS
        .iter()
        .map(|codec| {
            broker.create_topic(&format!("logs-{codec}"));
            (
                format!("to_{codec}"),
                format!(
                    "topic: logs-{codec}\ncompression: {codec}\nkey: file\n\
                     headers: {{ origin: source, at: offset }}"
                ),
            )
        })
        .collect();
    let sinks: Vec<(&str, &str)> = settings
        .iter()
        .map(|(name, yaml)| (name.as_str(), yaml.as_str()))
        .collect();
    let agent = Agent::start(kafka_yaml(&world, "app.log", &broker.bootstrap(), &sinks).config());
    let path = world.log("app.log");
    append_numbered(&path, "z", 0..2_000, 120);
    let file = path.to_str().unwrap().to_owned();
    for codec in CODECS {
        let bootstrap = broker.bootstrap();
        let topic = format!("logs-{codec}");
        let received = tokio::task::spawn_blocking(move || consume(&bootstrap, &topic, 2_000))
            .await
            .unwrap();
        let values: Vec<_> = received.iter().map(|r| r.value.clone()).collect();
        assert_exactly_once(&values, "z", 2_000);
        assert_at_least_once_in_order(&values, "z", 2_000);
        for message in &received {
            assert_eq!(message.key, file, "{codec}: key is the file");
            assert_eq!(message.headers["origin"], "app", "{codec}");
            assert_eq!(
                message.headers["at"],
                message.value["offset"].to_string(),
                "{codec}: header from the offset field"
            );
        }
    }
    let summary = agent.stop().await;
    assert!(summary.drained);
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_topic_is_dead_lettered_and_the_checkpoint_moves_on() {
    let world = World::new();
    let broker = Broker::start(world.dir.path(), 0, "memory://tansu/");
    // Tansu does not create topics on produce: `missing` stays unknown.
    let yaml = kafka_yaml(
        &world,
        "app.log",
        &broker.bootstrap(),
        &[(
            "kafka",
            "topic: missing\nlibrdkafka_options: { message.timeout.ms: \"5000\", \
             topic.metadata.propagation.max.ms: \"1000\" }",
        )],
    );
    let agent = Agent::start(yaml.config());
    append_numbered(&world.log("app.log"), "u", 0..300, 60);
    let size = fs::metadata(world.log("app.log")).unwrap().len();
    let dead = world.data().join("dead_letter").join("kafka.ndjson");
    let data = world.data();
    let settled = wait_for(Duration::from_secs(60), || {
        read_ndjson(&dead).len() >= 300 && checkpointed(&data) == size
    })
    .await;
    let summary = agent.stop().await;
    assert!(
        settled,
        "dead-lettered {} of 300, checkpoint {} of {size}",
        read_ndjson(&dead).len(),
        checkpointed(&data)
    );
    assert_exactly_once(&read_ndjson(&dead), "u", 300);
    let sink = &summary.metrics.sinks["kafka"];
    assert_eq!(sink.dead_lettered, 300);
    assert_eq!(sink.events_out, 0);
    assert!(sink.errors > 0);
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_with_the_right_password_delivers_and_a_wrong_one_is_dead_lettered() {
    let world = World::new();
    // Users are created while the broker still accepts anyone, then it restarts (same SQLite
    // storage, same port) requiring SCRAM authentication.
    let setup = Broker::start(world.dir.path(), 0, "sqlite://tansu.db");
    let port = setup.port;
    setup.create_user("shipper", "right-password");
    setup.create_topic("logs");
    setup.stop();
    let broker = Broker::start_with(
        world.dir.path(),
        port,
        "sqlite://tansu.db",
        &["--authentication"],
    );
    let secrets = world.dir.path().join("secrets");
    fs::create_dir_all(&secrets).unwrap();
    // The agent's config over `world`, signing in with `password` (kept in a file).
    let config = |world: &World, password: &str| {
        let file = secrets.join(password);
        fs::write(&file, format!("{password}\n")).unwrap();
        let settings = format!(
            "topic: logs\nsasl_password_file: {file:?}\nlibrdkafka_options: {{ \
             security.protocol: SASL_PLAINTEXT, sasl.mechanism: SCRAM-SHA-512, \
             sasl.username: shipper, message.timeout.ms: \"30000\" }}"
        );
        kafka_yaml(
            world,
            "app.log",
            &broker.bootstrap(),
            &[("kafka", &settings)],
        )
        .config()
    };

    let right = World::new();
    let agent = Agent::start(config(&right, "right-password"));
    append_numbered(&right.log("app.log"), "a", 0..500, 60);
    let bootstrap = broker.bootstrap();
    let received = tokio::task::spawn_blocking(move || {
        consume_with(
            &bootstrap,
            "logs",
            500,
            &[
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.username", "shipper"),
                ("sasl.password", "right-password"),
            ],
        )
    })
    .await
    .unwrap();
    let summary = agent.stop().await;
    assert!(summary.drained);
    let values: Vec<_> = received.into_iter().map(|r| r.value).collect();
    assert_exactly_once(&values, "a", 500);

    let wrong = World::new();
    let agent = Agent::start(config(&wrong, "wrong-password"));
    append_numbered(&wrong.log("app.log"), "w", 0..200, 60);
    let size = fs::metadata(wrong.log("app.log")).unwrap().len();
    let dead = wrong.data().join("dead_letter").join("kafka.ndjson");
    let data = wrong.data();
    // Well within message.timeout.ms: the authentication failure itself ends the wait.
    let settled = wait_for(Duration::from_secs(20), || {
        read_ndjson(&dead).len() >= 200 && checkpointed(&data) == size
    })
    .await;
    let summary = agent.stop().await;
    assert!(
        settled,
        "dead-lettered {} of 200, checkpoint {} of {size}",
        read_ndjson(&dead).len(),
        checkpointed(&data)
    );
    assert_exactly_once(&read_ndjson(&dead), "w", 200);
    assert_eq!(summary.metrics.sinks["kafka"].events_out, 0);
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_killed_mid_stream_loses_nothing() {
    const TOTAL: u64 = 20_000;
    let world = World::new();
    let broker = Broker::start(world.dir.path(), 0, "memory://tansu/");
    broker.create_topic("logs");
    let config_path = kafka_yaml(
        &world,
        "app.log",
        &broker.bootstrap(),
        &[("kafka", "topic: logs")],
    )
    .write(&world.path("agent.yaml"));
    let stderr = world.dir.path().join("agent.stderr");
    let mut agent = AgentProcess::start(&config_path, &stderr);
    let path = world.log("app.log");
    let writer = {
        let path = path.clone();
        std::thread::spawn(move || {
            append_numbered_in_bursts(&path, "k", 0..TOTAL, 200, 80, |_| {
                std::thread::sleep(Duration::from_millis(5));
            });
        })
    };
    // Killed once a part is acked and while lines are still coming.
    let data = world.data();
    let line_len = numbered("k", 0, 80).len() as u64;
    let acked = wait_for(Duration::from_secs(60), || {
        checkpointed(&data) >= 3_000 * line_len
    })
    .await;
    assert!(
        acked,
        "nothing acked before the kill: {}",
        fs::read_to_string(&stderr).unwrap_or_default()
    );
    agent.kill9();
    let written_at_kill = fs::metadata(&path).unwrap().len();
    let at_kill = checkpointed(&data);
    assert!(
        at_kill < TOTAL * line_len,
        "everything was acked before the kill"
    );
    let mut agent = AgentProcess::start(&config_path, &stderr);
    tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    let size = fs::metadata(&path).unwrap().len();
    let done = wait_for(Duration::from_secs(60), || checkpointed(&data) == size).await;
    assert!(
        done,
        "the checkpoint did not reach the end after the restart: {}",
        fs::read_to_string(&stderr).unwrap_or_default()
    );
    let bootstrap = broker.bootstrap();
    let received = tokio::task::spawn_blocking(move || consume(&bootstrap, "logs", TOTAL as usize))
        .await
        .unwrap();
    agent.kill9();
    let values: Vec<_> = received.into_iter().map(|r| r.value).collect();
    assert_at_least_once_in_order(&values, "k", TOTAL);
    let duplicates = values.len() as u64 - TOTAL;
    println!("{duplicates} duplicates after the kill");
    // Only lines delivered but not yet checkpointed at the kill come again, and those were
    // written by then.
    assert!(
        duplicates * line_len <= written_at_kill - at_kill,
        "{duplicates} duplicates: more than was written past the checkpoint at the kill"
    );
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_to_a_kafka_url_ships_every_line_of_a_rotation_family() {
    let world = World::new();
    let broker = Broker::start(world.dir.path(), 0, "memory://tansu/");
    broker.create_topic("replayed");
    let rotated = numbered_lines("q", 0..1_000, 60);
    fs::write(
        world.log("app.log.1.gz"),
        compress("gz", rotated.as_bytes()),
    )
    .unwrap();
    append_numbered(&world.log("app.log"), "q", 1_000..1_500, 60);
    let output = command(&["replay", "--to"])
        .arg(format!("kafka://{}/replayed", broker.bootstrap()))
        .arg(world.logs())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("delivered: 1500, undelivered: 0"),
        "{stdout}"
    );
    let bootstrap = broker.bootstrap();
    let values = tokio::task::spawn_blocking(move || consume_values(&bootstrap, "replayed", 1_500))
        .await
        .unwrap();
    assert_exactly_once(&values, "q", 1_500);
    assert_at_least_once_in_order(&values, "q", 1_500);
    broker.stop();
}
