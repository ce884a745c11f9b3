//! Network ingest harness: `cargo bench --bench ingest`.
//!
//! Runs the release `log-agent` with an `otlp` source (or an `http` one) into a blackhole sink,
//! journal synced by group commit (`durability: fsync`) unless the row says otherwise, and
//! drives it from this process with concurrent senders, each sending requests of a batch of
//! OpenTelemetry-SDK-shaped log records (a body, five attributes, a resource of five) and
//! waiting for each answer before the next, as an SDK's exporter does. For each row: the
//! records/s answered with success during the measured window, the agent's CPU seconds per
//! million records (user + sys, from /proc), its peak RSS, and the latency a sender saw per
//! request (p50, p99). The row ends only once the blackhole has counted every record answered:
//! the journal's records were shipped, not only written.
//!
//! No peer row: the Fluent Bit build beside the project has only the tail input (no
//! OpenTelemetry or HTTP input), so there is nothing of its to run on the same requests.
//!
//! Knobs (environment): `INGEST_SECONDS` measured seconds per row (default 10),
//! `INGEST_ONLY` runs only the rows whose name contains it. Results go to `outputs/ingest.md`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "ingest/load.rs"]
mod load;
#[path = "e2e/measure.rs"]
#[allow(dead_code)]
mod measure;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use load::{Protocol, Totals};

const AGENT: &str = env!("CARGO_BIN_EXE_log-agent");

/// One row: how records are sent, how many senders at once, records per request, durability.
struct Row {
    name: &'static str,
    protocol: Protocol,
    senders: usize,
    batch: usize,
    durability: &'static str,
}

const ROWS: &[Row] = &[
    Row {
        name: "OTLP/gRPC, 32 senders x 100 records, fsync",
        protocol: Protocol::Grpc,
        senders: 32,
        batch: 100,
        durability: "fsync",
    },
    Row {
        name: "OTLP/HTTP protobuf, 32 senders x 100 records, fsync",
        protocol: Protocol::HttpProtobuf,
        senders: 32,
        batch: 100,
        durability: "fsync",
    },
    Row {
        name: "OTLP/gRPC, 1 sender x 100 records, fsync",
        protocol: Protocol::Grpc,
        senders: 1,
        batch: 100,
        durability: "fsync",
    },
    Row {
        name: "OTLP/gRPC, 32 senders x 100 records, durability none",
        protocol: Protocol::Grpc,
        senders: 32,
        batch: 100,
        durability: "none",
    },
    Row {
        name: "http NDJSON, 32 senders x 100 records, fsync",
        protocol: Protocol::Ndjson,
        senders: 32,
        batch: 100,
        durability: "fsync",
    },
];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Measured {
    totals: Totals,
    seconds: f64,
    cpu_seconds: f64,
    peak_rss_kib: u64,
    drain_seconds: f64,
}

fn run_row(row: &Row, seconds: u64) -> Measured {
    let work = std::env::temp_dir().join("log-agent-ingest");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let (port, api) = (free_port(), free_port());
    let source = match row.protocol {
        Protocol::Ndjson => format!("type: http\n    address: 127.0.0.1:{port}"),
        Protocol::Grpc => {
            format!("type: otlp\n    grpc_address: 127.0.0.1:{port}\n    http_address: null")
        }
        Protocol::HttpProtobuf => {
            format!("type: otlp\n    http_address: 127.0.0.1:{port}\n    grpc_address: null")
        }
    };
    let config = format!(
        "data_dir: {data}\napi: {{ address: 127.0.0.1:{api} }}\nsources:\n  in:\n    {source}\n    journal: {{ durability: {durability} }}\nsinks:\n  out:\n    type: blackhole\n    inputs: [in]\n",
        data = work.join("data").display(),
        durability = row.durability,
    );
    let config_path = work.join("agent.yaml");
    std::fs::write(&config_path, config).unwrap();
    let mut agent = Command::new(AGENT)
        .args(["run", "--config"])
        .arg(&config_path)
        .env("LOG_AGENT_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = agent.id();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let target = format!("127.0.0.1:{port}");
    runtime.block_on(load::wait_until_listening(&target));
    // A warm-up the figures leave out: connections made, the journal's first segment started.
    let warm_up = runtime.block_on(load::drive(
        row.protocol,
        &target,
        row.senders,
        row.batch,
        Duration::from_secs(2),
    ));
    let cpu_before = measure::cpu_seconds(pid);
    let started = Instant::now();
    let totals = runtime.block_on(load::drive(
        row.protocol,
        &target,
        row.senders,
        row.batch,
        Duration::from_secs(seconds),
    ));
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_seconds = measure::cpu_seconds(pid) - cpu_before;
    // Every record answered is shipped: the blackhole's count catches up.
    let drain_started = Instant::now();
    let answered_in_all = warm_up.records + totals.records;
    loop {
        let delivered = load::metric(api, "log_agent_sink_events_out_total{sink=\"out\"}");
        if delivered >= answered_in_all as f64 {
            break;
        }
        assert!(
            drain_started.elapsed() < Duration::from_secs(120),
            "{delivered} of {answered_in_all} records delivered after 120 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let drain_seconds = drain_started.elapsed().as_secs_f64();
    eprintln!(
        "  the agent refused {} requests (journal full or malformed); journal at {} bytes once drained",
        load::metric(
            api,
            "log_agent_source_requests_rejected_total{source=\"in\"}"
        ),
        load::metric(api, "log_agent_source_journal_bytes{source=\"in\"}"),
    );
    let peak_rss_kib = measure::status_kib(pid, "VmHWM:");
    measure::kill(&mut agent, "-TERM");
    let _ = agent.wait();
    Measured {
        totals,
        seconds: elapsed,
        cpu_seconds,
        peak_rss_kib,
        drain_seconds,
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let seconds: u64 = std::env::var("INGEST_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let only = std::env::var("INGEST_ONLY").ok();
    let mut table = String::new();
    table.push_str("| set-up | records/s | CPU s per million records | peak RSS MiB | request p50 ms | request p99 ms | refused | drained after |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for row in ROWS {
        if only.as_deref().is_some_and(|o| !row.name.contains(o)) {
            continue;
        }
        eprintln!("ingest: {}", row.name);
        let m = run_row(row, seconds);
        let rate = m.totals.records as f64 / m.seconds;
        let cpu_per_million = m.cpu_seconds / (m.totals.records as f64 / 1e6);
        let line = format!(
            "| {} | {:.0} | {:.2} | {:.1} | {:.2} | {:.2} | {} | {:.2} s |",
            row.name,
            rate,
            cpu_per_million,
            m.peak_rss_kib as f64 / 1024.0,
            m.totals.percentile(0.50).as_secs_f64() * 1e3,
            m.totals.percentile(0.99).as_secs_f64() * 1e3,
            m.totals.refused,
            m.drain_seconds,
        );
        eprintln!("{line}");
        let _ = writeln!(table, "{line}");
    }
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let report = format!(
        "# Network ingest: `cargo bench --bench ingest`\n\n\
         Commit {commit}, {cores} cores; the senders run in the harness's process on the same \
         cores as the agent. {seconds} s measured per row after 2 s of warm-up; a sender waits \
         for each answer before its next request (as an SDK's exporter does). Records are \
         SDK-shaped: a 60-byte body, five attributes, a resource of five. `refused`: requests \
         answered with backpressure (the journal at its 256 MiB: a delivered segment's room \
         comes back only once the tailer has let it go, and at these rates 100-130 MiB of \
         delivered segments were still held when a row ended), retried by their sender after \
         100 ms and not counted in records/s. `drained after`: \
         from the end of the window until the blackhole had counted every record answered.\n\n\
         No Fluent Bit row: the build beside the project has only the tail input.\n\n{table}"
    );
    if only.is_none() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("outputs/ingest.md");
        std::fs::write(&path, report).unwrap();
        eprintln!("wrote {}", path.display());
    } else {
        eprintln!("{report}");
    }
}
