//! The network sources against real clients nobody on the project wrote: curl for `http`,
//! util-linux `logger` and Python's `logging.handlers.SysLogHandler` for `syslog` over UDP, TCP
//! and a Unix socket. What a client was told succeeded arrives at the sink, through a `kill -9`
//! of the agent and through a full journal that pushes back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::process::AgentProcess;
use common::*;
use serde_json::Value;

/// Runs `program` with `args`; panics with its output unless it exits 0.
fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// POSTs `body` with curl; returns the HTTP status and the `Retry-After` header, if any.
fn curl_post(url: &str, body: &Path, extra: &[&str]) -> (u16, Option<String>) {
    let body_arg = format!("@{}", body.display());
    let mut args = vec![
        "-s",
        "-o",
        "/dev/null",
        "-D",
        "-",
        "-w",
        "status=%{http_code}\n",
        "--data-binary",
        &body_arg,
    ];
    args.extend_from_slice(extra);
    args.push(url);
    let output = Command::new("curl").args(&args).output().expect("curl");
    let text = String::from_utf8_lossy(&output.stdout);
    let status = text
        .lines()
        .find_map(|l| l.strip_prefix("status="))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let retry_after = text.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("retry-after:")
            .map(|v| v.trim().to_owned())
    });
    (status, retry_after)
}

fn wait_for_events(agent: &mut AgentProcess, out: &Path, n: usize) -> Vec<Value> {
    agent.wait_until(
        Duration::from_secs(30),
        || {
            format!(
                "{n} events in {}, found {}",
                out.display(),
                read_ndjson(out).len()
            )
        },
        || read_ndjson(out).len() >= n,
    );
    read_ndjson(out)
}

#[test]
fn curl_posts_ndjson_lines_and_compressed_bodies() {
    let world = World::new();
    let (ndjson_port, lines_port) = (closed_address().port(), closed_address().port());
    let out = world.out();
    let config = world
        .yaml()
        .source(
            "api",
            &format!("type: http\naddress: 127.0.0.1:{ndjson_port}\npath: /logs"),
        )
        .source(
            "text",
            &format!(
                "type: http\naddress: 127.0.0.1:{lines_port}\nbody: lines\nfields: {{ app: shop }}\nmax_request_bytes: 4096"
            ),
        )
        .file_sink("out", &["api", "text"], &out, "")
        .write(&world.path("agent.yaml"));
    let mut agent = AgentProcess::start(&config, &world.path("agent.log"));
    agent.wait_for_log(Duration::from_secs(20), "http source listening");
    agent.wait_for_log(Duration::from_secs(20), &format!("{lines_port}"));

    let ndjson = world.path("body.ndjson");
    std::fs::write(
        &ndjson,
        "{\"level\":\"info\",\"msg\":\"one\"}\n\n{\"msg\":\"two\",\"n\":2}\n",
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{ndjson_port}/logs");
    assert_eq!(
        curl_post(&url, &ndjson, &["-H", "Content-Type: application/x-ndjson"]).0,
        200
    );
    // Not JSON: refused whole.
    let bad = world.path("bad.ndjson");
    std::fs::write(&bad, "{\"msg\":\"three\"}\nnot json\n").unwrap();
    assert_eq!(curl_post(&url, &bad, &[]).0, 400);
    // Another path: not found.
    assert_eq!(
        curl_post(
            &format!("http://127.0.0.1:{ndjson_port}/other"),
            &ndjson,
            &[]
        )
        .0,
        404
    );

    let text = world.path("body.txt");
    std::fs::write(&text, "first line\nsecond \"line\"\n").unwrap();
    let gzipped = world.path("body.txt.gz");
    let plain = std::fs::read(&text).unwrap();
    std::fs::write(&gzipped, common::compress::compress("gz", &plain)).unwrap();
    let lines_url = format!("http://127.0.0.1:{lines_port}/");
    assert_eq!(
        curl_post(&lines_url, &gzipped, &["-H", "Content-Encoding: gzip"]).0,
        200
    );
    // Past max_request_bytes, as sent or once decompressed: 413, nothing taken.
    let big = world.path("big.txt");
    std::fs::write(&big, "x".repeat(5000)).unwrap();
    assert_eq!(curl_post(&lines_url, &big, &[]).0, 413);
    let bomb = world.path("big.txt.gz");
    std::fs::write(&bomb, common::compress::compress("gz", &[b'y'; 100_000])).unwrap();
    assert_eq!(
        curl_post(&lines_url, &bomb, &["-H", "Content-Encoding: gzip"]).0,
        413
    );

    let events = wait_for_events(&mut agent, &out, 4);
    let messages: BTreeSet<String> = events
        .iter()
        .map(|e| {
            e["msg"]
                .as_str()
                .or_else(|| e["message"].as_str())
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        messages,
        BTreeSet::from(["one", "two", "first line", "second \"line\""].map(str::to_owned))
    );
    for event in &events {
        assert!(
            event["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{event}"
        );
        if event["source"] == "text" {
            assert_eq!(event["app"], "shop");
        } else {
            assert!(event.get("app").is_none());
        }
    }
    assert_eq!(events.iter().find(|e| e["msg"] == "two").unwrap()["n"], 2);
    assert!(agent.terminate(Duration::from_secs(20)).success());
    assert_eq!(read_ndjson(&out).len(), 4, "nothing shipped twice");
}

#[test]
fn logger_and_python_syslog_over_udp_tcp_and_a_unix_socket() {
    let world = World::new();
    let (udp, tcp) = (closed_address().port(), closed_address().port());
    let socket = world.path("log.sock");
    let out = world.out();
    let config = world
        .yaml()
        .source(
            "udp",
            &format!("type: syslog\nmode: udp\naddress: 127.0.0.1:{udp}"),
        )
        .source(
            "tcp",
            &format!("type: syslog\nmode: tcp\naddress: 127.0.0.1:{tcp}"),
        )
        .source(
            "unix",
            &format!(
                "type: syslog\nmode: unix_datagram\npath: {}",
                socket.display()
            ),
        )
        .file_sink("out", &["udp", "tcp", "unix"], &out, "")
        .write(&world.path("agent.yaml"));
    let mut agent = AgentProcess::start(&config, &world.path("agent.log"));
    agent.wait_until(
        Duration::from_secs(20),
        || "the unix socket".into(),
        || socket.exists(),
    );
    agent.wait_for_log(Duration::from_secs(20), &format!("127.0.0.1:{tcp}"));
    agent.wait_for_log(Duration::from_secs(20), &format!("127.0.0.1:{udp}"));

    let (udp, tcp) = (udp.to_string(), tcp.to_string());
    // RFC 5424 (logger's default), over UDP, with structured data.
    run(
        "logger",
        &[
            "-n",
            "127.0.0.1",
            "-P",
            &udp,
            "-d",
            "-t",
            "shop",
            "--sd-id",
            "order@32473",
            "--sd-param",
            "id=\"42\"",
            "udp five-four-two-four",
        ],
    );
    // RFC 3164 over TCP, newline framed; and RFC 5424 octet counted.
    run(
        "logger",
        &[
            "-n",
            "127.0.0.1",
            "-P",
            &tcp,
            "-T",
            "--rfc3164",
            "-t",
            "cart",
            "-p",
            "local3.err",
            "tcp bsd",
        ],
    );
    run(
        "logger",
        &[
            "-n",
            "127.0.0.1",
            "-P",
            &tcp,
            "-T",
            "--octet-count",
            "-t",
            "cart",
            "tcp counted",
        ],
    );
    // The Unix datagram socket, as /dev/log.
    run(
        "logger",
        &["-u", socket.to_str().unwrap(), "-t", "web", "unix socket"],
    );
    // Python's handler: TCP (NUL-terminated), UDP and the Unix socket.
    let script = [
        "import logging, logging.handlers, socket".to_owned(),
        "log = logging.getLogger('app')".to_owned(),
        format!(
            "targets = [(('127.0.0.1', {tcp}), socket.SOCK_STREAM, 'python tcp'), \
             (('127.0.0.1', {udp}), socket.SOCK_DGRAM, 'python udp'), ({:?}, None, 'python unix')]",
            socket.to_str().unwrap()
        ),
        "for address, kind, text in targets:".to_owned(),
        "    handler = logging.handlers.SysLogHandler(address=address, socktype=kind, facility='local0')".to_owned(),
        "    log.addHandler(handler)".to_owned(),
        "    log.warning(text)".to_owned(),
        "    log.removeHandler(handler)".to_owned(),
        "    handler.close()".to_owned(),
    ]
    .join("\n");
    run("python3", &["-c", &script]);

    let events = wait_for_events(&mut agent, &out, 7);
    let by_message = |text: &str| -> Value {
        events
            .iter()
            .find(|e| e["message"] == text)
            .unwrap_or_else(|| panic!("`{text}` not among {events:#?}"))
            .clone()
    };
    let five = by_message("udp five-four-two-four");
    assert_eq!(five["source"], "udp");
    assert_eq!(five["appname"], "shop");
    assert_eq!(five["version"], 1);
    assert_eq!(five["structured_data"]["order@32473"]["id"], "42");
    assert!(five["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    let bsd = by_message("tcp bsd");
    assert_eq!(
        (bsd["facility"].as_str(), bsd["severity"].as_str()),
        (Some("local3"), Some("err"))
    );
    assert_eq!(bsd["appname"], "cart");
    assert!(bsd["syslog_timestamp"].is_string(), "{bsd}");
    assert_eq!(by_message("tcp counted")["appname"], "cart");
    assert_eq!(by_message("unix socket")["source"], "unix");
    for (text, source) in [
        ("python tcp", "tcp"),
        ("python udp", "udp"),
        ("python unix", "unix"),
    ] {
        let event = by_message(text);
        assert_eq!(event["source"], source, "{event}");
        assert_eq!(
            (event["facility"].as_str(), event["severity"].as_str()),
            (Some("local0"), Some("warning"))
        );
    }
    assert!(agent.terminate(Duration::from_secs(20)).success());
    assert!(!socket.exists(), "the socket is removed at exit");
    assert_eq!(read_ndjson(&out).len(), 7, "nothing shipped twice");
}

/// A shell loop of curl POSTs of numbered records, one request each, noting the numbers that
/// were answered 200 (and only those).
fn curl_loop(url: &str, acked: &Path, from: u64, to: u64) -> std::process::Child {
    let script = format!(
        "for i in $(seq {from} {to}); do \
           n=$(printf '%09d' $i); \
           code=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 --data-binary \"{{\\\"message\\\":\\\"crash $n\\\"}}\" {url}); \
           if [ \"$code\" = 200 ]; then echo $i >> {acked}; fi; \
         done",
        acked = acked.display()
    );
    Command::new("bash").args(["-c", &script]).spawn().unwrap()
}

fn acked_numbers(path: &Path) -> BTreeSet<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn delivered_numbers(out: &Path, tag: &str) -> BTreeSet<u64> {
    counts(&read_ndjson(out))
        .get(tag)
        .map(|c| c.keys().copied().collect())
        .unwrap_or_default()
}

#[test]
fn kill_9_mid_stream_loses_nothing_that_was_answered() {
    let world = World::new();
    let port = closed_address().port();
    // Nothing is delivered before the kill (the sink's directory is made after it): every
    // record answered is in the journal only.
    let out_dir = world.path("later");
    let out = out_dir.join("out.ndjson");
    let acked = world.path("acked.txt");
    let config = world
        .yaml()
        .source("api", &format!("type: http\naddress: 127.0.0.1:{port}"))
        .file_sink("out", &["api"], &out, "")
        .write(&world.path("agent.yaml"));
    let url = format!("http://127.0.0.1:{port}/");
    let mut agent = AgentProcess::start(&config, &world.path("agent.log"));
    agent.wait_for_log(Duration::from_secs(20), "http source listening");
    let mut client = curl_loop(&url, &acked, 0, 399);
    agent.wait_until(
        Duration::from_secs(60),
        || "100 answered records".into(),
        || acked_numbers(&acked).len() >= 100,
    );
    agent.kill9();
    let answered_before = acked_numbers(&acked);
    assert!(read_ndjson(&out).is_empty());
    std::fs::create_dir(&out_dir).unwrap();
    let mut agent = AgentProcess::start(&config, &world.path("agent.log"));
    assert!(client.wait().unwrap().success());
    let answered = acked_numbers(&acked);
    assert!(
        answered.len() > answered_before.len(),
        "the restarted agent answers again"
    );
    agent.wait_until(
        Duration::from_secs(60),
        || {
            let delivered = delivered_numbers(&out, "crash");
            format!(
                "{:?} delivered",
                answered.difference(&delivered).take(10).collect::<Vec<_>>()
            )
        },
        || delivered_numbers(&out, "crash").is_superset(&answered),
    );
    assert!(agent.terminate(Duration::from_secs(20)).success());
    // Records refused while the agent was down were never answered: the sender kept them.
    let delivered = delivered_numbers(&out, "crash");
    assert!(delivered.is_superset(&answered));
}

#[test]
fn a_full_journal_pushes_back_and_loses_nothing_once_the_sink_is_back() {
    let world = World::new();
    let (port, api) = (closed_address().port(), closed_address().port());
    // The sink writes into a directory that does not exist yet: every delivery fails.
    let out_dir = world.path("later");
    let out = out_dir.join("out.ndjson");
    let config = world
        .yaml()
        .top(&format!("api: {{ address: 127.0.0.1:{api} }}"))
        .source(
            "api",
            &format!("type: http\naddress: 127.0.0.1:{port}\njournal: {{ max_bytes: 65536, segment_bytes: 8192 }}"),
        )
        .file_sink("out", &["api"], &out, "retry: { initial_backoff_ms: 50, max_backoff_ms: 200 }")
        .write(&world.path("agent.yaml"));
    let url = format!("http://127.0.0.1:{port}/");
    let mut agent = AgentProcess::start(&config, &world.path("agent.log"));
    agent.wait_for_log(Duration::from_secs(20), "http source listening");
    let body = world.path("batch.ndjson");
    let mut answered = BTreeSet::new();
    let mut refused = None;
    for batch in 0..200u64 {
        let lines: String = (batch * 10..batch * 10 + 10)
            .map(|n| {
                format!("{{\"message\":\"full {n:09} ....................................\"}}\n")
            })
            .collect();
        std::fs::write(&body, lines).unwrap();
        match curl_post(&url, &body, &[]) {
            (200, _) => answered.extend(batch * 10..batch * 10 + 10),
            (429, retry_after) => {
                refused = Some(retry_after);
                break;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    let retry_after = refused.expect("the journal never filled");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert!(
        answered.len() >= 400,
        "{} records taken before the journal filled",
        answered.len()
    );

    std::fs::create_dir(&out_dir).unwrap();
    agent.wait_until(
        Duration::from_secs(60),
        || {
            format!(
                "{} of {} delivered",
                delivered_numbers(&out, "full").len(),
                answered.len()
            )
        },
        || delivered_numbers(&out, "full").is_superset(&answered),
    );
    // Delivered segments are deleted: there is room again.
    let mut taken_again = false;
    for _ in 0..100 {
        if curl_post(&url, &body, &[]).0 == 200 {
            taken_again = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        taken_again,
        "the journal took requests again once delivered"
    );
    let value = |name: &str| -> f64 {
        source_metric(api, name, "api").unwrap_or_else(|| panic!("{name} not scraped"))
    };
    assert!(value("log_agent_source_requests_rejected_total") >= 1.0);
    assert!(value("log_agent_source_journal_segments_deleted_total") >= 1.0);
    assert!(value("log_agent_source_journal_bytes") <= 65536.0);
    assert!(agent.terminate(Duration::from_secs(20)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_restarts_a_changed_network_source_on_the_same_port() {
    let world = World::new();
    let port = closed_address().port();
    let out = world.out();
    let yaml = |version: u32| {
        world
            .yaml()
            .source(
                "api",
                &format!("type: http\naddress: 127.0.0.1:{port}\nfields: {{ version: {version} }}"),
            )
            .file_sink("out", &["api"], &out, "")
    };
    let (agent, mut reloads) = Agent::start_reloadable(yaml(1).config());
    let post = |n: u32| async move {
        let body = format!("{{\"message\":\"reload {n:09}\"}}");
        for _ in 0..200 {
            if let Ok(answer) = reqwest::Client::new()
                .post(format!("http://127.0.0.1:{port}/"))
                .body(body.clone())
                .send()
                .await
                && answer.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("record {n} was never taken");
    };
    post(0).await;
    let report = reloads.reload(Ok(yaml(2).config())).await.unwrap();
    assert_eq!(report.sources_restarted, vec!["api".to_owned()]);
    post(1).await;
    let summary = agent.stop().await;
    assert!(summary.drained);
    let events = read_ndjson(&out);
    assert_exactly_once(&events, "reload", 2);
    let version_of = |n: u64| {
        events
            .iter()
            .find(|e| e["message"].as_str().unwrap().ends_with(&format!("{n:09}")))
            .unwrap()["version"]
            .clone()
    };
    assert_eq!((version_of(0), version_of(1)), (1.into(), 2.into()));
}

#[test]
fn syslog_over_tcp_is_not_read_while_the_journal_is_full_and_nothing_is_lost() {
    let world = World::new();
    let (port, api) = (closed_address().port(), closed_address().port());
    let out_dir = world.path("later");
    let out = out_dir.join("out.ndjson");
    let config = world
        .yaml()
        .top(&format!("api: {{ address: 127.0.0.1:{api} }}"))
        .source(
            "tcp",
            &format!(
                "type: syslog\nmode: tcp\naddress: 127.0.0.1:{port}\njournal: {{ max_bytes: 1048576, segment_bytes: 65536 }}"
            ),
        )
        .file_sink("out", &["tcp"], &out, "retry: { initial_backoff_ms: 50, max_backoff_ms: 200 }")
        .write(&world.path("agent.yaml"));
    let mut agent = AgentProcess::start(&config, &world.path("agent.log"));
    agent.wait_for_log(Duration::from_secs(20), &format!("127.0.0.1:{port}"));
    // 20 MB: more than the loopback socket's buffers hold, so the sender has to wait.
    let total = 200_000u64;
    let sender = std::thread::spawn(move || {
        use std::io::Write;
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        for n in 0..total {
            let message =
                format!("<14>1 - host app - - - tcpfull {n:09} ..........................");
            stream
                .write_all(format!("{} {message}", message.len()).as_bytes())
                .unwrap();
        }
    });
    let journal_bytes =
        || source_metric(api, "log_agent_source_journal_bytes", "tcp").unwrap_or(0.0);
    // The journal fills and stays within its cap while the sink is down.
    agent.wait_until(
        Duration::from_secs(30),
        || "the journal to fill".into(),
        // Full: what is left is less than one read's records (a 64 KiB read makes ~150 KB).
        || journal_bytes() > 700_000.0,
    );
    std::thread::sleep(Duration::from_secs(1));
    let held = journal_bytes();
    assert!(held <= 1048576.0, "{held} bytes in the journal");
    assert!(!sender.is_finished(), "the sender is held back");
    std::fs::create_dir(&out_dir).unwrap();
    sender.join().unwrap();
    agent.wait_until(
        Duration::from_secs(60),
        || format!("{} of {total} delivered", read_ndjson(&out).len()),
        || read_ndjson(&out).len() as u64 >= total,
    );
    assert!(agent.terminate(Duration::from_secs(20)).success());
    assert_exactly_once(&read_ndjson(&out), "tcpfull", total);
}

#[test]
fn tls_on_http_with_client_certificates_syslog_over_tcp_and_otlp() {
    let world = World::new();
    let pki = common::pki::Pki::new(&world.path("pki"));
    let server = pki.server();
    let client = pki.client();
    let (http, syslog, grpc, otlp_http) = (
        closed_address().port(),
        closed_address().port(),
        closed_address().port(),
        closed_address().port(),
    );
    let tls = format!(
        "tls: {{ cert_file: {}, key_file: {} }}",
        server.cert_file.display(),
        server.key_file.display()
    );
    let mutual = format!(
        "tls: {{ cert_file: {}, key_file: {}, client_ca_file: {} }}",
        server.cert_file.display(),
        server.key_file.display(),
        pki.ca_file.display()
    );
    let out = world.out();
    let config = world
        .yaml()
        .source("api", &format!("type: http\naddress: 127.0.0.1:{http}\n{mutual}"))
        .source("sys", &format!("type: syslog\nmode: tcp\naddress: 127.0.0.1:{syslog}\n{tls}"))
        .source(
            "otel",
            &format!("type: otlp\ngrpc_address: 127.0.0.1:{grpc}\nhttp_address: 127.0.0.1:{otlp_http}\n{tls}"),
        )
        .file_sink("out", &["api", "sys", "otel"], &out, "")
        .write(&world.path("agent.yaml"));
    let mut agent = AgentProcess::start(&config, &world.path("agent.log"));
    agent.wait_for_log(Duration::from_secs(20), "otlp source (HTTP) listening");
    agent.wait_for_log(Duration::from_secs(20), &format!("127.0.0.1:{syslog}"));

    // curl with the client's certificate is let in; without one, or in clear text, it is not.
    let body = world.path("body.ndjson");
    std::fs::write(
        &body,
        "{\"message\":\"tls 000000001 with a client certificate\"}\n",
    )
    .unwrap();
    let url = format!("https://127.0.0.1:{http}/");
    let ca = pki.ca_file.to_str().unwrap();
    let (cert, key) = (
        client.cert_file.to_str().unwrap(),
        client.key_file.to_str().unwrap(),
    );
    assert_eq!(
        curl_post(&url, &body, &["--cacert", ca, "--cert", cert, "--key", key]).0,
        200
    );
    assert_eq!(
        curl_post(&url, &body, &["--cacert", ca]).0,
        0,
        "no client certificate"
    );
    assert_eq!(
        curl_post(&format!("http://127.0.0.1:{http}/"), &body, &[]).0,
        0,
        "clear text"
    );

    // Python's ssl module, sending an octet-counted syslog message over TLS.
    let script = format!(
        "import socket, ssl\n\
         context = ssl.create_default_context(cafile={ca:?})\n\
         with socket.create_connection(('127.0.0.1', {syslog})) as raw:\n    \
             with context.wrap_socket(raw, server_hostname='localhost') as s:\n        \
                 m = b'<14>1 - host app - - - tls 000000002 over syslog'\n        \
                 s.sendall(str(len(m)).encode() + b' ' + m)\n"
    );
    run("python3", &["-c", &script]);

    // The OpenTelemetry SDK over gRPC and HTTP, trusting the test's CA.
    for (protocol, endpoint, tag) in [
        ("grpc", format!("https://127.0.0.1:{grpc}"), "tlsgrpc"),
        (
            "http",
            format!("https://127.0.0.1:{otlp_http}/v1/logs"),
            "tlshttp",
        ),
    ] {
        let acked = world.path(&format!("acked-{tag}"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/otlp_sender.py");
        let status = Command::new("python3")
            .arg(script)
            .args([protocol, &endpoint, tag, "0", "5"])
            .arg(&acked)
            .env("OTEL_EXPORTER_OTLP_CERTIFICATE", ca)
            // requests lets these take over from the exporter's own CA file.
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE")
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(
            acked_numbers(&acked).len(),
            5,
            "{protocol}: every record exported"
        );
    }

    let events = wait_for_events(&mut agent, &out, 12);
    assert_eq!(of_tag(&events, "tls").len(), 2);
    assert_eq!(of_tag(&events, "tlsgrpc").len(), 5);
    assert_eq!(of_tag(&events, "tlshttp").len(), 5);
    assert!(agent.terminate(Duration::from_secs(20)).success());
}
