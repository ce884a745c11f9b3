//! The HTTP API while the agent runs (probes, metrics), and `mode: daemonset` over a fake
//! `/var/log/pods` tree.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Samples of a Prometheus text exposition, keyed by name and labels (sorted). Panics on any
/// line that is not a `# HELP`/`# TYPE` comment or a well-formed sample, on a sample whose
/// family has no `# TYPE` before it, and on a series given twice.
fn parse_prometheus(text: &str) -> BTreeMap<(String, Vec<(String, String)>), f64> {
    let is_name = |s: &str| {
        !s.is_empty()
            && s.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut typed: Vec<String> = Vec::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let (kind, name) = (words.next().unwrap(), words.next().unwrap());
            assert!(is_name(name), "bad name in {line:?}");
            match kind {
                "HELP" => {}
                "TYPE" => {
                    let metric_type = words.next().unwrap();
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"]
                            .contains(&metric_type),
                        "{line:?}"
                    );
                    typed.push(name.to_owned());
                }
                _ => panic!("unexpected comment {line:?}"),
            }
            continue;
        }
        assert!(!line.is_empty(), "empty line in the exposition");
        let name_end = line.find(['{', ' ']).unwrap();
        let name = &line[..name_end];
        assert!(is_name(name), "bad name in {line:?}");
        assert!(
            typed.iter().any(|t| t == name),
            "{name} has no # TYPE before it"
        );
        let mut labels = Vec::new();
        let mut rest = &line[name_end..];
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices();
            loop {
                let (start, _) = chars.next().unwrap();
                if inner[start..].starts_with('}') {
                    rest = &inner[start + 1..];
                    break;
                }
                let eq = inner[start..].find("=\"").unwrap() + start;
                let key = inner[start..eq].to_owned();
                assert!(is_name(&key), "bad label name in {line:?}");
                for _ in start..eq + 1 {
                    chars.next();
                }
                let mut value = String::new();
                loop {
                    match chars.next().unwrap().1 {
                        '\\' => match chars.next().unwrap().1 {
                            'n' => value.push('\n'),
                            c @ ('\\' | '"') => value.push(c),
                            c => panic!("bad escape \\{c} in {line:?}"),
                        },
                        '"' => break,
                        c => value.push(c),
                    }
                }
                labels.push((key, value));
                let mut next = chars.clone();
                if let Some((_, ',')) = next.next() {
                    chars = next;
                }
            }
        }
        let value: f64 = rest
            .strip_prefix(' ')
            .unwrap()
            .parse()
            .unwrap_or_else(|e| panic!("bad value in {line:?}: {e}"));
        labels.sort();
        assert!(
            samples.insert((name.to_owned(), labels), value).is_none(),
            "series given twice: {line:?}"
        );
    }
    samples
}

type Samples = BTreeMap<(String, Vec<(String, String)>), f64>;

/// The value of series `name{labels}`.
fn sample(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    samples.get(&(name.to_owned(), labels)).copied()
}

async fn scrape(address: SocketAddr) -> Samples {
    let (status, body) = get(address, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    parse_prometheus(&body)
}

/// Polls the metrics until `condition` holds for them; panics with the last scrape if it does
/// not within 30 s.
async fn wait_for_metrics(address: SocketAddr, what: &str, condition: impl Fn(&Samples) -> bool) {
    let mut last = Samples::new();
    for _ in 0..1500 {
        last = scrape(address).await;
        if condition(&last) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not seen within 30 s; last scrape: {last:#?}");
}

#[test]
fn the_prometheus_parser_rejects_malformed_text() {
    let good = "# HELP a_total x.\n# TYPE a_total counter\na_total{s=\"q\\\"\\\\\",t=\"\"} 3\n";
    let samples = parse_prometheus(good);
    assert_eq!(
        sample(&samples, "a_total", &[("s", "q\"\\"), ("t", "")]),
        Some(3.0)
    );
    let bad = [
        "a_total 1\n",                        // no TYPE
        "# TYPE a counter\na{s=\"x} 1\n",     // unterminated value
        "# TYPE a counter\na 1\na 2\n",       // same series twice
        "# TYPE a counter\na one\n",          // not a number
        "# TYPE 1a counter\n",                // bad name
        "# TYPE a counter\na{s=\"\\q\"} 1\n", // bad escape
    ];
    for text in bad {
        let result = std::panic::catch_unwind(|| parse_prometheus(text));
        assert!(result.is_err(), "accepted {text:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_metrics_follow_what_was_written_and_a_sink_going_down_and_back() {
    let world = World::new();
    let out_dir = world.dir.path().join("outdir");
    fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("out.ndjson");
    let log = world.log("app.log");
    let yaml = format!(
        "api: {{ address: \"127.0.0.1:0\" }}\n{}",
        config_yaml(
            &world.data(),
            &[world.log("*.log").to_str().unwrap()],
            &out,
            "",
            "    retry: { initial_backoff_ms: 20, max_backoff_ms: 100 }",
        )
    );
    let (agent, address) = Agent::start_with_api(config(&yaml)).await;
    let log_path = log.to_str().unwrap().to_owned();

    // Before any line: alive, and ready once the source has scanned.
    assert_eq!(
        get(address, "/healthz").await,
        (200, r#"{"status":"ok"}"#.to_owned())
    );
    wait_for_readyz(address, 200).await;

    append_numbered(&log, "a", 0..10, 40);
    let size = fs::metadata(&log).unwrap().len();
    assert_eq!(wait_for_events_in(&out, 10).await, 10);
    wait_for_metrics(address, "the file fully shipped", |m| {
        sample(
            m,
            "log_agent_file_bytes_behind",
            &[("source", "app"), ("path", &log_path)],
        ) == Some(0.0)
    })
    .await;
    let m = scrape(address).await;
    let source = [("source", "app")];
    let sink = [("sink", "out")];
    type Expectation<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);
    let expectations: &[Expectation] = &[
        ("log_agent_source_events_in_total", &source, 10.0),
        ("log_agent_source_bytes_in_total", &source, size as f64),
        ("log_agent_source_parse_errors_total", &source, 0.0),
        ("log_agent_source_tracked_files", &source, 1.0),
        ("log_agent_source_bytes_behind", &source, 0.0),
        ("log_agent_sink_events_out_total", &sink, 10.0),
        ("log_agent_sink_errors_total", &sink, 0.0),
        ("log_agent_sink_retries_total", &sink, 0.0),
        ("log_agent_sink_buffer_events", &sink, 0.0),
        ("log_agent_sink_buffer_max_events", &sink, 10_000.0),
        ("log_agent_sink_oldest_unshipped_age_seconds", &sink, 0.0),
        ("log_agent_sink_healthy", &sink, 1.0),
        (
            "log_agent_sink_events_dropped_total",
            &[("sink", "out"), ("reason", "buffer_full")],
            0.0,
        ),
        (
            "log_agent_sink_events_dropped_total",
            &[("sink", "out"), ("reason", "dead_letter")],
            0.0,
        ),
        ("log_agent_file_series_omitted", &[], 0.0),
    ];
    for (name, labels, want) in expectations {
        assert_eq!(sample(&m, name, labels), Some(*want), "{name}{labels:?}");
    }
    assert!(sample(&m, "log_agent_source_open_files", &source).unwrap() >= 1.0);

    // The sink's directory becomes a regular file: deliveries fail (even for root).
    let aside = world.dir.path().join("outdir.aside");
    fs::rename(&out_dir, &aside).unwrap();
    fs::write(&out_dir, b"not a directory").unwrap();
    append_numbered(&log, "a", 10..15, 40);
    let grown = fs::metadata(&log).unwrap().len();
    let body = wait_for_probe(address, "/readyz/sinks", 503).await;
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["status"], json!("failing"));
    let reasons = answer["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{body}");
    assert!(
        reasons[0]
            .as_str()
            .unwrap()
            .starts_with("sink `out`: deliveries failing: "),
        "{body}"
    );
    assert_eq!(
        get(address, "/healthz").await.0,
        200,
        "a failing sink is no reason to restart"
    );
    assert_eq!(
        get(address, "/readyz").await,
        (200, r#"{"status":"ok"}"#.to_owned()),
        "nor to take the pod out of its Service: plain readiness leaves the sinks out"
    );
    let behind = (grown - size) as f64;
    wait_for_metrics(address, "the new lines read but not shipped", |m| {
        sample(
            m,
            "log_agent_file_bytes_behind",
            &[("source", "app"), ("path", &log_path)],
        ) == Some(behind)
            && sample(m, "log_agent_sink_retries_total", &sink).is_some_and(|r| r >= 1.0)
    })
    .await;
    let m = scrape(address).await;
    assert_eq!(sample(&m, "log_agent_sink_healthy", &sink), Some(0.0));
    assert_eq!(
        sample(&m, "log_agent_source_events_in_total", &source),
        Some(15.0)
    );
    assert_eq!(
        sample(&m, "log_agent_source_bytes_behind", &source),
        Some(behind)
    );
    assert_eq!(
        sample(&m, "log_agent_sink_events_out_total", &sink),
        Some(10.0)
    );
    assert_eq!(sample(&m, "log_agent_sink_buffer_events", &sink), Some(5.0));
    assert!(sample(&m, "log_agent_sink_errors_total", &sink).unwrap() >= 1.0);
    assert!(sample(&m, "log_agent_sink_buffer_fill_ratio", &sink).unwrap() > 0.0);
    assert!(sample(&m, "log_agent_sink_oldest_unshipped_age_seconds", &sink).unwrap() > 0.0);
    assert!(sample(&m, "log_agent_oldest_unshipped_age_seconds", &[]).unwrap() > 0.0);

    // Back: ready again, and everything shipped.
    fs::remove_file(&out_dir).unwrap();
    fs::rename(&aside, &out_dir).unwrap();
    assert_eq!(
        wait_for_probe(address, "/readyz/sinks", 200).await,
        r#"{"status":"ok"}"#
    );
    assert_eq!(wait_for_events_in(&out, 15).await, 15);
    wait_for_metrics(
        address,
        "everything shipped after the sink came back",
        |m| {
            sample(
                m,
                "log_agent_file_bytes_behind",
                &[("source", "app"), ("path", &log_path)],
            ) == Some(0.0)
                && sample(m, "log_agent_sink_events_out_total", &sink) == Some(15.0)
        },
    )
    .await;
    let m = scrape(address).await;
    assert_eq!(sample(&m, "log_agent_sink_healthy", &sink), Some(1.0));
    assert_eq!(sample(&m, "log_agent_sink_buffer_events", &sink), Some(0.0));
    assert_eq!(
        sample(&m, "log_agent_sink_oldest_unshipped_age_seconds", &sink),
        Some(0.0)
    );
    assert!(sample(&m, "log_agent_checkpoint_writes_total", &[]).unwrap() >= 1.0);
    assert_eq!(
        sample(&m, "log_agent_checkpoint_write_errors_total", &[]),
        Some(0.0)
    );

    let summary = agent.stop().await;
    assert!(summary.drained);
    assert_exactly_once(&read_ndjson(&out), "a", 15);
    // The API is gone with the agent.
    assert!(tokio::net::TcpStream::connect(address).await.is_err());
}

/// Every metric name the README's metrics table lists (its first column, names written in
/// full).
fn documented_metrics() -> std::collections::BTreeSet<String> {
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let table = readme
        .split("| metric | labels | what |")
        .nth(1)
        .expect("the README has a metrics table");
    let mut names = std::collections::BTreeSet::new();
    for row in table
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
    {
        let first = row.split('|').nth(1).unwrap();
        for name in first.split('`').skip(1).step_by(2) {
            assert!(
                name.starts_with("log_agent_") || name.starts_with("process_"),
                "not a full metric name in the README's table: {name}"
            );
            names.insert(name.to_owned());
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_readme_lists_is_served_and_every_one_served_is_listed() {
    let world = World::new();
    // A transform too, for the transforms' own metrics (and one of the user's, which the
    // table does not list by name).
    let yaml = format!(
        "api: {{ address: \"127.0.0.1:0\" }}\n{}",
        config_yaml(
            &world.data(),
            &[world.log("*.log").to_str().unwrap()],
            &world.out(),
            "",
            "",
        )
        .replace(
            "sinks:\n",
            "transforms:\n  count:\n    type: log_to_metric\n    inputs: [app]\n    metrics:\n      - { type: counter, field: message, name: lines_total }\nsinks:\n",
        )
    );
    let (agent, address) = Agent::start_with_api(config(&yaml)).await;
    append_numbered(&world.log("app.log"), "m", 0..3, 40);
    wait_for_events(&world, 3).await;
    let documented = documented_metrics();
    let names = |m: &Samples| -> std::collections::BTreeSet<String> {
        m.keys().map(|(name, _)| name.clone()).collect()
    };
    wait_for_metrics(address, "every documented metric", |m| {
        documented.is_subset(&names(m))
    })
    .await;
    let m = scrape(address).await;
    agent.stop().await;
    let served = names(&m);
    assert!(
        served.contains("lines_total"),
        "the user's own metric: {served:?}"
    );
    let undocumented: Vec<&String> = served
        .difference(&documented)
        .filter(|name| name.starts_with("log_agent_") || name.starts_with("process_"))
        .collect();
    assert!(
        undocumented.is_empty(),
        "served on /metrics but not in the README's table: {undocumented:?}"
    );
    let build = m
        .iter()
        .find(|((name, _), _)| name == "log_agent_build_info")
        .unwrap();
    assert_eq!(*build.1, 1.0);
    let labels: BTreeMap<&str, &str> = build
        .0
        .1
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(labels["version"], env!("CARGO_PKG_VERSION"));
    assert!(!labels["commit"].is_empty());
    assert!(sample(&m, "process_resident_memory_bytes", &[]).unwrap() > 0.0);
    assert!(sample(&m, "process_open_fds", &[]).unwrap() >= 3.0);
}

/// Waits until `out` holds `n` events; returns how many it holds then.
async fn wait_for_events_in(out: &Path, n: usize) -> usize {
    wait_for(Duration::from_secs(30), || read_ndjson(out).len() >= n).await;
    read_ndjson(out).len()
}

#[tokio::test]
async fn an_address_in_use_fails_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let world = World::new();
    let yaml = format!(
        "api: {{ address: \"{}\" }}\n{}",
        taken.local_addr().unwrap(),
        config_yaml(
            &world.data(),
            &[world.log("*.log").to_str().unwrap()],
            &world.out(),
            "",
            ""
        )
    );
    let result = log_agent::run(config(&yaml), std::future::pending()).await;
    let error = result
        .expect_err("the agent started on an address in use")
        .to_string();
    assert!(error.starts_with("api.address 127.0.0.1:"), "{error}");
}

const UID_WEB: &str = "0f5c7d7e-8a4b-4a5e-9a53-2d1c3b4a5e6f";
const UID_API: &str = "7b1d9e0c-1111-4c3b-8f00-0123456789ab";
const UID_AGENT: &str = "c0ffee00-2222-4d4d-9e9e-ba9876543210";
const UID_LATE: &str = "5a5a5a5a-3333-4e4e-8d8d-000000000001";

/// Appends a whole line in the CRI format (`<time> <stream> F <text>`), as the kubelet writes
/// container logs.
fn write_cri(path: &Path, stream: &str, text: &str) {
    write_cri_piece(path, stream, "F", text);
}

/// Appends a CRI line with its tag: `P` for a piece of a longer line, `F` for its last piece.
fn write_cri_piece(path: &Path, stream: &str, tag: &str, text: &str) {
    append(
        path,
        format!("2026-11-25T10:00:00.000000000Z {stream} {tag} {text}\n").as_bytes(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_mode_reads_every_pod_but_its_own_and_names_each_events_pod() {
    let world = World::new();
    let pods = world.dir.path().join("pods");
    let web = pods
        .join(format!("shop_web-5d8f7c-x2x5q_{UID_WEB}"))
        .join("nginx");
    let api = pods.join(format!("default_api.v2-0_{UID_API}")).join("app");
    let own = pods
        .join(format!("logging_log-agent-k7p2m_{UID_AGENT}"))
        .join("log-agent");
    for dir in [&web, &api, &own] {
        fs::create_dir_all(dir).unwrap();
    }
    write_cri(&web.join("0.log"), "stdout", "web first run");
    write_cri(&api.join("0.log"), "stderr", "api line");
    write_cri(&own.join("0.log"), "stderr", "the agent's own line");
    // Not a container log (the glob is */*/*.log): never read.
    append(&pods.join("stray.log"), b"stray\n");

    let out = world.out();
    let yaml = format!(
        "mode: daemonset
pods_root: {pods}
data_dir: {data}
checkpoint_interval_ms: 100
kubernetes: {{ pod_name: \"${{POD_NAME}}\", pod_namespace: \"${{POD_NAMESPACE}}\", node_name: \"${{NODE_NAME}}\" }}
sinks:
  out:
    type: file
    inputs: [pods]
    path: {out}
    batch: {{ max_events: 100, timeout_ms: 20 }}
",
        pods = pods.display(),
        data = world.data().display(),
        out = out.display(),
    );
    let env = |name: &str| match name {
        "POD_NAME" => Some("log-agent-k7p2m".to_owned()),
        "POD_NAMESPACE" => Some("logging".to_owned()),
        "NODE_NAME" => Some("node-a".to_owned()),
        _ => None,
    };
    let config = log_agent::Config::from_yaml(&yaml, env, Path::new("/")).unwrap();
    let agent = Agent::start(config);
    assert_eq!(wait_for_events_in(&out, 2).await, 2);

    // The web container restarts: the kubelet starts 1.log beside 0.log. A new pod appears.
    // A long line the runtime split into pieces: one event again.
    write_cri_piece(&web.join("1.log"), "stdout", "P", "web after ");
    write_cri_piece(&web.join("1.log"), "stdout", "P", "rest");
    write_cri(&web.join("1.log"), "stdout", "art");
    write_cri(&web.join("1.log"), "stdout", "web again");
    let late = pods.join(format!("shop_late-0_{UID_LATE}")).join("c");
    fs::create_dir_all(&late).unwrap();
    write_cri(&late.join("0.log"), "stdout", "late pod");
    write_cri(&own.join("0.log"), "stderr", "more of its own");
    assert!(wait_for_events_in(&out, 5).await >= 5);
    let summary = agent.stop().await;
    assert!(summary.drained);

    // Each event's pod from its path, and the node every pod of it runs on.
    let pod = |namespace: &str, name: &str, uid: &str, container: &str, restarts: u64| {
        json!({
            "namespace": namespace,
            "pod_name": name,
            "pod_uid": uid,
            "container_name": container,
            "restart_count": restarts,
            "node_name": "node-a",
        })
    };
    let web_pod = |restarts| pod("shop", "web-5d8f7c-x2x5q", UID_WEB, "nginx", restarts);
    // (message, file, kubernetes object): the `cri` format leaves the container's text alone in
    // `message`, with its stream beside it, and joins the pieces of a split line.
    let want = [
        ("web first run", web.join("0.log"), web_pod(0)),
        (
            "api line",
            api.join("0.log"),
            pod("default", "api.v2-0", UID_API, "app", 0),
        ),
        ("web after restart", web.join("1.log"), web_pod(1)),
        ("web again", web.join("1.log"), web_pod(1)),
        (
            "late pod",
            late.join("0.log"),
            pod("shop", "late-0", UID_LATE, "c", 0),
        ),
    ];
    let events = read_ndjson(&out);
    assert_eq!(events.len(), want.len(), "{events:#?}");
    for (text, file, kubernetes) in &want {
        let matching: Vec<&Value> = events
            .iter()
            .filter(|e| e["message"].as_str().unwrap() == *text)
            .collect();
        assert_eq!(matching.len(), 1, "{text}: {events:#?}");
        let event = matching[0];
        assert_eq!(event["file"], json!(file.to_str().unwrap()), "{text}");
        assert_eq!(event["source"], json!("pods"));
        let stream = if *text == "api line" {
            "stderr"
        } else {
            "stdout"
        };
        assert_eq!(event["stream"], json!(stream), "{text}");
        assert_eq!(&event["kubernetes"], kubernetes, "{text}");
    }
    assert!(
        events
            .iter()
            .all(|e| !e["file"].as_str().unwrap().contains("log-agent-k7p2m")),
        "the agent read its own logs"
    );
}
