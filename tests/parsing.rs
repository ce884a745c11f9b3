//! Parsing end to end, in-process: formats, multiline groups written in pieces, container
//! runtime partial lines, timestamps, enrichment and filters, checked in what the file sink
//! received and in the checkpoints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use log_agent::Config;
use serde_json::json;

/// Waits until the checkpoint sum is `offset`; false if it does not get there in 10 s.
async fn checkpoint_reaches(world: &World, offset: u64) -> bool {
    wait_for(Duration::from_secs(10), || {
        checkpointed(&world.data()) == offset
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_java_trace_written_in_pieces_is_one_event_and_is_acked_whole() {
    let world = World::new();
    let path = world.log("app.log");
    let source = "    multiline: { preset: java, timeout_ms: 60000 }";
    let agent = Agent::start(world.config("app.log", source, ""));
    let head = "INFO started\nERROR request failed\n";
    let trace_start =
        "java.lang.IllegalStateException: order 42\n\tat com.example.Orders.find(Orders.java:57)\n";
    append(&path, format!("{head}{trace_start}").as_bytes());
    let events = wait_for_events(&world, 1).await;
    assert_eq!(events[0]["message"], "INFO started");
    // The entry with its trace has begun but may go on: it is neither shipped nor passed by
    // the checkpoint.
    let trace_offset = "INFO started\n".len() as u64;
    assert!(checkpoint_reaches(&world, trace_offset).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(world.events().len(), 1);
    assert_eq!(checkpointed(&world.data()), trace_offset);

    let trace_rest = "\tat com.example.Api.get(Api.java:31)\nCaused by: java.sql.SQLException: closed\n\t... 12 more\n";
    append(&path, format!("{trace_rest}INFO next\n").as_bytes());
    let events = wait_for_events(&world, 2).await;
    let trace = &events[1];
    assert_eq!(
        trace["message"],
        format!("ERROR request failed\n{trace_start}{trace_rest}").trim_end()
    );
    assert_eq!(trace["offset"], trace_offset);
    let next_offset = (head.len() + trace_start.len() + trace_rest.len()) as u64;
    assert!(checkpoint_reaches(&world, next_offset).await);

    // Shutdown ships the group still open ("INFO next") and checkpoints the whole file.
    let summary = agent.stop().await;
    assert!(summary.drained);
    let events = world.events();
    assert_eq!(events.len(), 3);
    assert_eq!(events[2]["message"], "INFO next");
    assert_eq!(
        checkpointed(&world.data()),
        next_offset + "INFO next\n".len() as u64
    );
    assert_eq!(summary.metrics.sources["app"].multiline_groups, 1);
    assert_eq!(summary.metrics.sources["app"].events_in, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_group_ships_once_its_timeout_passes_without_a_new_line() {
    let world = World::new();
    let source = "    multiline: { preset: python, timeout_ms: 200 }";
    let agent = Agent::start(world.config("app.log", source, ""));
    let traceback = "Traceback (most recent call last):\n  File \"/app/main.py\", line 7, in handle\n    return 1 / x\nZeroDivisionError: division by zero\n";
    append(&world.log("app.log"), traceback.as_bytes());
    // No line follows: only the timeout can end the group, while the agent keeps running.
    let events = wait_for_events(&world, 1).await;
    assert_eq!(events[0]["message"], traceback.trim_end());
    assert!(checkpoint_reaches(&world, traceback.len() as u64).await);
    agent.stop().await;
}

const T: &str = "2026-11-25T04:55:03.123456789Z";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_partials_are_joined_and_events_carry_static_fields_and_the_pod() {
    let world = World::new();
    let path = world.log("web.log");
    let include = world.log("*.log");
    let yaml = config_yaml(
        &world.data(),
        &[include.to_str().unwrap()],
        &world.out(),
        "    format: cri\n    fields: { env: prod, tier: 2, offset_note: kept }",
        "",
    ) + "kubernetes: { pod_name: \"${POD_NAME}\", pod_namespace: \"${POD_NAMESPACE}\" }\n";
    // The identity is what the config names, through the same lookup as any `${VAR}`: the
    // container's name is in the environment, but not asked for.
    let env = |name: &str| match name {
        "POD_NAME" => Some("web-7d9f".to_owned()),
        "POD_NAMESPACE" => Some("shop".to_owned()),
        "CONTAINER_NAME" => Some("unasked".to_owned()),
        _ => None,
    };
    let config = Config::from_yaml(&yaml, env, Path::new("/")).unwrap();
    let agent = Agent::start(config);
    append(
        &path,
        format!("{T} stdout P GET /a \n{T} stderr F oops\n").as_bytes(),
    );
    let events = wait_for_events(&world, 1).await;
    assert_eq!(events[0]["message"], "oops");
    append(
        &path,
        format!("{T} stdout P HTTP/1.1 \n{T} stdout F 200\nnot cri\n").as_bytes(),
    );
    let events = wait_for_events(&world, 3).await;
    let summary = agent.stop().await;
    assert!(summary.drained);

    let joined = &events[1];
    assert_eq!(joined["message"], "GET /a HTTP/1.1 200");
    assert_eq!(joined["stream"], "stdout");
    assert_eq!(joined["offset"], 0);
    assert_eq!(joined["timestamp"], "2026-11-25T04:55:03.123456789Z");
    for event in &events {
        assert_eq!(event["env"], "prod");
        assert_eq!(event["tier"], 2);
        assert_eq!(
            event["kubernetes"],
            json!({"pod_name": "web-7d9f", "pod_namespace": "shop"})
        );
    }
    assert_eq!(events[2]["message"], "not cri");
    assert!(
        events[2]["parse_error"]
            .as_str()
            .unwrap()
            .starts_with("cri:")
    );
    assert_eq!(summary.metrics.sources["app"].parse_errors, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_logs_are_typed_and_health_checks_filtered_without_holding_the_checkpoint() {
    let world = World::new();
    let path = world.log("access.log");
    let source = "    format: nginx_combined\n    filter: { field: user_agent, pattern: '^kube-probe/', action: drop }";
    let agent = Agent::start(world.config("access.log", source, ""));
    let lines = [
        r#"10.0.0.1 - - [25/Nov/2026:04:55:03 +0000] "GET /api/items HTTP/1.1" 200 512 "-" "curl/8.5.0""#,
        r#"10.0.0.9 - - [25/Nov/2026:04:55:04 +0000] "GET /healthz HTTP/1.1" 200 2 "-" "kube-probe/1.29""#,
        r#"10.0.0.2 - - [25/Nov/2026:04:55:05 +0000] "POST /api/orders HTTP/1.1" 503 0 "-" "Mozilla/5.0""#,
        "garbage line",
        r#"10.0.0.9 - - [25/Nov/2026:04:55:06 +0000] "GET /healthz HTTP/1.1" 200 2 "-" "kube-probe/1.29""#,
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    append(&path, text.as_bytes());
    let events = wait_for_events(&world, 3).await;
    // The last line was dropped, and still the checkpoint passes it.
    assert!(checkpoint_reaches(&world, text.len() as u64).await);
    let summary = agent.stop().await;
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["status"], 200);
    assert_eq!(events[0]["bytes"], 512);
    assert_eq!(events[0]["path"], "/api/items");
    assert_eq!(events[0]["timestamp"], "2026-11-25T04:55:03.000000Z");
    assert!(events[0].get("message").is_none());
    assert_eq!(events[1]["status"], 503);
    assert_eq!(events[2]["message"], "garbage line");
    assert!(events[2]["parse_error"].is_string());
    let metrics = &summary.metrics.sources["app"];
    assert_eq!(metrics.filtered_events, 2);
    assert_eq!(metrics.parse_errors, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timestamp_field_sets_the_event_time_or_flags_the_read_time() {
    let world = World::new();
    let source = "    format: logfmt\n    timestamp: { field: ts, format: unix_ms }";
    let agent = Agent::start(world.config("app.log", source, ""));
    append(
        &world.log("app.log"),
        b"ts=1700000000123 level=info msg=\"ok\" took_ms=12.5\nts=soon level=warn\n",
    );
    let events = wait_for_events(&world, 2).await;
    let summary = agent.stop().await;
    assert_eq!(events[0]["timestamp"], "2023-11-14T22:13:20.123000Z");
    assert_eq!(events[0]["took_ms"], 12.5);
    assert!(events[0].get("timestamp_parse_failed").is_none());
    assert_eq!(events[1]["timestamp_parse_failed"], true);
    assert_eq!(events[1]["ts"], "soon");
    assert!(chrono::DateTime::parse_from_rfc3339(events[1]["timestamp"].as_str().unwrap()).is_ok());
    assert_eq!(summary.metrics.sources["app"].timestamp_failures, 1);
}
