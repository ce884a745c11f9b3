//! End-to-end throughput and memory harness: `cargo bench --bench e2e`.
//!
//! Generates a deterministic corpus under `target/bench-corpus/` (nginx combined access lines,
//! and JSON application lines of 14 keys, one in 50 with a stack trace in an escaped string),
//! runs the release `log-agent` binary over it in several set-ups, and measures for each the
//! input MiB/s, lines/s, CPU seconds per GiB (user + sys, from /proc) and peak RSS (VmHWM),
//! taking the median of a few runs. In the same run it times the physical limit (`wc -l` over
//! the same files) and two peers: rsyslog's imfile -> omfile (installed from Debian's packages
//! if missing), and Fluent Bit (tail -> file, raw, JSON-parsed and nginx-parsed, each run in
//! turn with the log-agent row of the same workload, its output's line count checked against
//! the input's; see `e2e/peers.rs`). Every figure is
//! given as a ratio to `wc -l` and rsyslog, and to Fluent Bit where it has a counterpart. A
//! set-up blocks the sink (a FIFO nobody reads) while 1 GiB is appended and records the agent's
//! RSS curve, and another kills the agent with SIGKILL part-way at full speed and compares what it
//! delivered with its persisted checkpoint: the lines a restart repeats (`e2e/kill9.rs`).
//! Results go to `outputs/bench.md` and `outputs/bench.png`.
//!
//! Knobs (environment): `BENCH_MIB` corpus size in MiB (default 512), `BENCH_RUNS` runs per
//! set-up (default 3), `BENCH_BACKPRESSURE_MIB` bytes appended behind the blocked sink (1024),
//! `BENCH_SKIP_PEER=1` to leave rsyslog out, `BENCH_FLUENT_BIT_DIR` the directory of the Fluent
//! Bit binary and its configs (default `../shared/peers/fluent-bit`, relative to the repository;
//! when the binary is missing the report says so and the Fluent Bit ratios are left out),
//! `BENCH_BEFORE_BIN` an older `log-agent` binary whose `kill -9` repeats are measured beside
//! this build's, `BENCH_KILL_FORMAT` the source format of the `kill -9` runs (default
//! `nginx_combined`), `BENCH_ONLY` runs only the `log-agent run` set-ups whose name contains
//! it (a quick look at one row; the report is then partial: do not commit it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The Tansu broker helper the Kafka tests use.
#[path = "../tests/common/broker.rs"]
#[allow(dead_code)]
mod broker;
/// The checkpoint file read back, as the tests read it.
#[path = "../tests/common/checkpoints.rs"]
#[allow(dead_code)]
mod checkpoints;

/// The generated corpus.
#[path = "e2e/corpus.rs"]
mod corpus;
/// What a `kill -9` at full speed repeats at a restart.
#[path = "e2e/kill9.rs"]
mod kill9;
/// Measuring a process: CPU, RSS, and the state every run starts from.
#[path = "e2e/measure.rs"]
mod measure;
/// OTLP receivers that discard, for the `-> otlp` rows.
#[path = "e2e/otlp.rs"]
mod otlp;
/// rsyslog and Fluent Bit, run on the same bytes.
#[path = "e2e/peers.rs"]
mod peers;
/// The markdown report and its charts.
#[path = "e2e/report.rs"]
mod report;
/// One run of each contender: the agent, replay, `wc -l`, the backpressure curve.
#[path = "e2e/runs.rs"]
mod runs;

use corpus::{
    apache_common_line, app_lines, app_lines_with_email, corpus, cri_line, docker_line,
    logfmt_line, nginx_line,
};
use measure::Sample;
use peers::FbWorkload;
use report::{Scenario, commit, plot, report};
use runs::{NGINX_REGEX_FORMAT, backpressure_curve, gzip_copy, run_agent, run_replay, run_wc};

use std::fs;
use std::path::PathBuf;
use std::process::Command;

const AGENT: &str = env!("CARGO_BIN_EXE_log-agent");

/// The typical remap over parsed JSON lines: two fields dropped, an email masked.
const TYPICAL_REMAP: &str =
    "del(.thread)\ndel(.logger)\n.email = redact(string!(.email), filters: [r'[^@\\s]+@[^@\\s]+'])";

/// The same, parsing the JSON line in VRL (a `format: raw` source), as Vector users write it.
const PARSING_REMAP: &str = ". |= object!(parse_json!(string!(.message)))\ndel(.message)\ndel(.thread)\ndel(.logger)\n.email = redact(string!(.email), filters: [r'[^@\\s]+@[^@\\s]+'])";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would run us with no argument.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let mib = env_usize("BENCH_MIB", 512);
    let runs = env_usize("BENCH_RUNS", 3).max(1);
    let base = root().join("target").join("bench-corpus");
    let work = std::env::temp_dir().join("log-agent-bench");
    eprintln!(
        "generating the corpus ({mib} MiB of nginx lines, {} MiB of JSON lines)",
        mib / 2
    );
    let nginx = |rng: &mut fastrand::Rng, _seq: u64, out: &mut Vec<u8>| nginx_line(rng, out);
    let (one, one_bytes, one_lines) =
        corpus(&base.join(format!("nginx-1x{mib}")), 1, mib, 1, nginx);
    let (many, many_bytes, many_lines) =
        corpus(&base.join(format!("nginx-100x{mib}")), 100, mib, 2, nginx);
    // A hostile or crowded volume: a quarter of the bytes in 100,000 small files, more than
    // `max_open_files` (1,024 by default) can hold open, so they take turns.
    let small_files = env_usize("BENCH_SMALL_FILES", 100_000);
    let (crowd, crowd_bytes, crowd_lines) = corpus(
        &base.join(format!("nginx-{small_files}x{}", mib / 4)),
        small_files,
        mib / 4,
        5,
        nginx,
    );
    let crowd_name = format!(
        "run {small_files} files of {:.1} KiB -> blackhole",
        crowd_bytes as f64 / 1024.0 / small_files as f64
    );
    // Half the size of the nginx file, as the issue that set the targets measured it (256 MiB).
    let (app, app_bytes, app_lines_n) = corpus(
        &base.join(format!("app14-1x{}", mib / 2)),
        1,
        mib / 2,
        3,
        app_lines,
    );
    // The other formats, a quarter of the size each: no peer row (Fluent Bit's configs here
    // cover raw, JSON and nginx lines only).
    let quarter = |name: &str, seed: u64, generate: fn(&mut fastrand::Rng, u64, &mut Vec<u8>)| {
        corpus(&base.join(name), 1, mib / 4, seed, generate)
    };
    let (logfmt, logfmt_bytes, logfmt_lines) =
        quarter(&format!("logfmt-1x{}", mib / 4), 6, logfmt_line);
    let (cri, cri_bytes, cri_lines) = quarter(&format!("cri-1x{}", mib / 4), 7, cri_line);
    let (docker, docker_bytes, docker_lines) =
        quarter(&format!("docker-1x{}", mib / 4), 8, docker_line);
    let (email, email_bytes, email_lines) = quarter(
        &format!("app-email-1x{}", mib / 4),
        10,
        app_lines_with_email,
    );
    let (common, common_bytes, common_lines) = quarter(
        &format!("apache-common-1x{}", mib / 4),
        9,
        apache_common_line,
    );

    let file_sink = |encoding: &str| {
        format!(
            "    type: file\n    path: {}\n    encoding: {encoding}",
            // Inside the run's own directory, which every run removes: outputs do not pile up.
            work.join("agent").join("out.ndjson").display()
        )
    };
    let blackhole = "    type: blackhole".to_owned();
    let receivers = otlp::start();
    let otlp_sink = |protocol: &str, address: std::net::SocketAddr| {
        format!("    type: otlp\n    protocol: {protocol}\n    endpoint: http://{address}")
    };
    /// A set-up of `log-agent run`, and the Fluent Bit workload run in turn with it.
    struct Setup<'a> {
        name: &'a str,
        files: &'a [PathBuf],
        bytes: u64,
        lines: u64,
        format: &'a str,
        /// A VRL program between the source and the sink ("": none).
        remap: &'a str,
        sink: String,
        grow: bool,
        fluent_bit: Option<FbWorkload>,
    }
    impl<'a> Setup<'a> {
        fn new(
            name: &'a str,
            (files, bytes, lines): (&'a [PathBuf], u64, u64),
            format: &'a str,
            sink: String,
        ) -> Self {
            Setup {
                name,
                files,
                bytes,
                lines,
                format,
                remap: "",
                sink,
                grow: false,
                fluent_bit: None,
            }
        }
    }
    let one_c = (&one[..], one_bytes, one_lines);
    let many_c = (&many[..], many_bytes, many_lines);
    let setups: Vec<Setup> = vec![
        Setup::new("run 1 file -> blackhole", one_c, "raw", blackhole.clone()),
        Setup {
            fluent_bit: Some(FbWorkload::Raw),
            ..Setup::new("run 1 file -> file (text)", one_c, "raw", file_sink("text"))
        },
        Setup::new(
            "run 1 file -> file (NDJSON)",
            one_c,
            "raw",
            file_sink("json"),
        ),
        Setup {
            grow: true,
            ..Setup::new(
                "run 1 growing file -> file (NDJSON)",
                one_c,
                "raw",
                file_sink("json"),
            )
        },
        Setup::new(
            "run 100 files -> blackhole",
            many_c,
            "raw",
            blackhole.clone(),
        ),
        Setup::new(
            "run 100 files -> file (NDJSON)",
            many_c,
            "raw",
            file_sink("json"),
        ),
        Setup::new(
            &crowd_name,
            (&crowd[..], crowd_bytes, crowd_lines),
            "raw",
            blackhole.clone(),
        ),
        Setup {
            fluent_bit: Some(FbWorkload::Json),
            ..Setup::new(
                "run JSON app lines, format json -> file (NDJSON)",
                (&app[..], app_bytes, app_lines_n),
                "json",
                file_sink("json"),
            )
        },
        Setup {
            fluent_bit: Some(FbWorkload::Nginx),
            ..Setup::new(
                "run 1 file, format nginx_combined -> file (NDJSON)",
                one_c,
                "nginx_combined",
                file_sink("json"),
            )
        },
        // The same lines: nginx's `combined` is Apache's combined log format.
        Setup::new(
            "run 1 file, format apache_combined -> file (NDJSON)",
            one_c,
            "apache_combined",
            file_sink("json"),
        ),
        Setup::new(
            "run Apache common lines, format apache_common -> file (NDJSON)",
            (&common[..], common_bytes, common_lines),
            "apache_common",
            file_sink("json"),
        ),
        Setup::new(
            "run 1 file, format regex (nginx fields) -> file (NDJSON)",
            one_c,
            NGINX_REGEX_FORMAT,
            file_sink("json"),
        ),
        Setup::new(
            "run logfmt app lines, format logfmt -> file (NDJSON)",
            (&logfmt[..], logfmt_bytes, logfmt_lines),
            "logfmt",
            file_sink("json"),
        ),
        Setup::new(
            "run CRI lines, format cri -> file (NDJSON)",
            (&cri[..], cri_bytes, cri_lines),
            "cri",
            file_sink("json"),
        ),
        Setup::new(
            "run Docker json-file lines, format docker -> file (NDJSON)",
            (&docker[..], docker_bytes, docker_lines),
            "docker",
            file_sink("json"),
        ),
        // The typical remap (drop two fields, mask an email), against the same lines without
        // it: what a transform costs. No Fluent Bit row: its build here has no filters.
        Setup::new(
            "run JSON app lines with emails, format json -> file (NDJSON)",
            (&email[..], email_bytes, email_lines),
            "json",
            file_sink("json"),
        ),
        Setup {
            remap: TYPICAL_REMAP,
            ..Setup::new(
                "run JSON app lines with emails, format json, remap (drop 2 fields, mask email) -> file (NDJSON)",
                (&email[..], email_bytes, email_lines),
                "json",
                file_sink("json"),
            )
        },
        Setup {
            remap: PARSING_REMAP,
            ..Setup::new(
                "run JSON app lines with emails, remap (parse_json, drop 2 fields, mask email) -> file (NDJSON)",
                (&email[..], email_bytes, email_lines),
                "raw",
                file_sink("json"),
            )
        },
        // Into a receiver of this process that decodes every request and discards it.
        Setup::new(
            "run 1 file -> otlp (gRPC)",
            one_c,
            "raw",
            otlp_sink("grpc", receivers.grpc),
        ),
        Setup::new(
            "run 1 file -> otlp (HTTP/protobuf)",
            one_c,
            "raw",
            otlp_sink("http/protobuf", receivers.http),
        ),
        Setup::new(
            "run JSON app lines, format json -> otlp (gRPC)",
            (&app[..], app_bytes, app_lines_n),
            "json",
            otlp_sink("grpc", receivers.grpc),
        ),
    ];
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    // Fluent Bit, when it is there: each of its runs follows the log-agent run of the same
    // workload on the same file (round-robin), and is reported in rows of its own.
    let mut fluent_bit = peers::fluent_bit();
    if let Ok(fb) = &mut fluent_bit {
        fb.match_json_time(&work.join("fluent-bit-conf"), &app[0]);
        eprintln!("peer: {} at {}", fb.version, fb.bin.display());
    }
    if let Err(why) = &fluent_bit {
        eprintln!("{why}");
    }
    let mut fb_runs: Vec<(FbWorkload, &Setup, Vec<peers::FbRun>)> = Vec::new();
    let mut scenarios = Vec::new();
    for setup in setups.iter().filter(|s| s.name.contains(&only)) {
        let Setup {
            name,
            files,
            bytes,
            lines,
            ..
        } = *setup;
        let mut samples = Vec::new();
        let mut fb_samples = Vec::new();
        for run in 0..runs {
            let decoded_before = receivers.records.load(std::sync::atomic::Ordering::Relaxed);
            let sample = run_agent(
                &work.join("agent"),
                files,
                bytes,
                setup.format,
                setup.remap,
                &setup.sink,
                setup.grow.then(|| files[0].as_path()),
            );
            if setup.sink.contains("type: otlp") {
                let decoded =
                    receivers.records.load(std::sync::atomic::Ordering::Relaxed) - decoded_before;
                assert_eq!(decoded, lines, "{name}: records the receiver decoded");
            }
            eprintln!(
                "{name} #{run}: {:.0} MiB/s, {:.2} CPU s, {} KiB peak",
                bytes as f64 / 1048576.0 / sample.seconds,
                sample.cpu_seconds,
                sample.peak_rss_kib
            );
            samples.push(sample);
            if let (Some(workload), Ok(fb)) = (setup.fluent_bit, &fluent_bit) {
                assert_eq!(files.len(), 1, "Fluent Bit's configs read one file");
                let fb_run =
                    peers::run_fluent_bit(fb, &work.join("fluent-bit"), workload, &files[0], lines);
                eprintln!(
                    "Fluent Bit, {} #{run}: {:.0} MiB/s (output complete at {:.2} s, input read at {}, exit at {:.2} s), {:.2} CPU s, {} KiB peak",
                    workload.label(),
                    bytes as f64 / 1048576.0 / fb_run.sample.seconds,
                    fb_run.sample.seconds,
                    fb_run.read_end.map_or("?".into(), |t| format!("{t:.2} s")),
                    fb_run.exited,
                    fb_run.sample.cpu_seconds,
                    fb_run.sample.peak_rss_kib
                );
                fb_samples.push(fb_run);
            }
        }
        scenarios.push(Scenario {
            name: name.to_owned(),
            bytes,
            lines,
            samples,
            fluent_bit: setup.fluent_bit,
        });
        if let Some(workload) = setup.fluent_bit.filter(|_| !fb_samples.is_empty()) {
            fb_runs.push((workload, setup, fb_samples));
        }
    }
    let one_gzip = [gzip_copy(&one[0])];
    for (name, files) in [
        ("replay 1 file -> blackhole", &one[..]),
        ("replay 1 gzip file -> blackhole", &one_gzip[..]),
    ] {
        let samples: Vec<Sample> = (0..runs).map(|_| run_replay(files)).collect();
        eprintln!("{name}: {:.1} s", samples[0].seconds);
        scenarios.push(Scenario {
            name: name.to_owned(),
            bytes: one_bytes,
            lines: one_lines,
            samples,
            fluent_bit: None,
        });
    }
    let tansu_dir = tempfile::tempdir().unwrap();
    let tansu_here = Command::new(broker::tansu())
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if tansu_here {
        let broker = broker::Broker::start(tansu_dir.path(), 0, "memory://tansu/");
        broker.create_topic("bench");
        let kafka = format!(
            "    type: kafka\n    brokers: 127.0.0.1:{}\n    topic: bench\n    batch: {{ max_events: 10000, max_bytes: 4194304, timeout_ms: 50 }}",
            broker.port
        );
        let (small, small_bytes, small_lines) = corpus(
            &base.join(format!("nginx-1x{}", mib / 8)),
            1,
            mib / 8,
            4,
            nginx,
        );
        let samples: Vec<Sample> = (0..runs)
            .map(|_| {
                run_agent(
                    &work.join("agent"),
                    &small,
                    small_bytes,
                    "raw",
                    "",
                    &kafka,
                    None,
                )
            })
            .collect();
        eprintln!("kafka: {:.1} s", samples[0].seconds);
        scenarios.push(Scenario {
            name: format!(
                "run 1 file ({} MiB) -> kafka (Tansu on loopback, zstd, acks all)",
                mib / 8
            ),
            bytes: small_bytes,
            lines: small_lines,
            samples,
            fluent_bit: None,
        });
    } else {
        eprintln!("tansu unavailable: the kafka row is left out");
    }
    let limit = Scenario {
        name: "wc -l, 1 file (physical limit)".into(),
        bytes: one_bytes,
        lines: one_lines,
        samples: (0..runs).map(|_| run_wc(&one)).collect(),
        fluent_bit: None,
    };
    let peer = if std::env::var("BENCH_SKIP_PEER").is_ok() {
        None
    } else {
        let samples: Vec<Sample> = (0..runs)
            .filter_map(|_| peers::run_rsyslog(&work.join("rsyslog"), &one, one_bytes))
            .collect();
        (!samples.is_empty()).then(|| Scenario {
            name: "rsyslog imfile -> omfile, 1 file (peer)".into(),
            bytes: one_bytes,
            lines: one_lines,
            samples,
            fluent_bit: None,
        })
    };
    eprintln!("memory under backpressure");
    let curve = backpressure_curve(
        &work.join("backpressure"),
        &one[0],
        env_usize("BENCH_BACKPRESSURE_MIB", 1024),
    );
    let fb_rows: Vec<Scenario> = match &fluent_bit {
        Ok(fb) => fb_runs
            .iter()
            .map(|(workload, setup, runs)| Scenario {
                name: workload.row(&fb.version),
                bytes: setup.bytes,
                lines: setup.lines,
                samples: runs.iter().map(|r| r.sample).collect(),
                fluent_bit: Some(*workload),
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let fb_section = match &fluent_bit {
        Ok(fb) => {
            let runs: Vec<(FbWorkload, &str, &[peers::FbRun])> = fb_runs
                .iter()
                .map(|(w, setup, runs)| (*w, setup.name, &runs[..]))
                .collect();
            peers::fluent_bit_section(fb, &runs)
        }
        Err(why) => format!("{why}\n"),
    };

    // What a kill -9 repeats: every set-up at each share of the input, in turn.
    let kill_format =
        std::env::var("BENCH_KILL_FORMAT").unwrap_or_else(|_| "nginx_combined".into());
    let kill_setups = kill9::setups(AGENT, &commit());
    let ends = kill9::line_ends(&one[0]);
    let mut kills = vec![Vec::new(); kill_setups.len()];
    for run in 0..runs {
        for share in kill9::KILL_AT {
            for (setup, samples) in kill_setups.iter().zip(&mut kills) {
                let k = kill9::kill_run(
                    &work.join("kill9"),
                    setup,
                    &one[0],
                    &ends,
                    &kill_format,
                    share,
                );
                eprintln!(
                    "kill -9 at {share}, {} #{run}: delivered {} B in {:.2} s, checkpoint {}, {} lines ({} B, {:.0} ms) repeated",
                    setup.name,
                    k.delivered,
                    k.seconds,
                    k.checkpoint,
                    k.lines,
                    k.bytes,
                    k.ms()
                );
                samples.push(k);
            }
        }
    }
    drop(ends);
    let kill_md = kill9::report(
        &kill_setups,
        &kills,
        one_bytes as f64 / 1048576.0,
        &kill_format,
        runs,
    );

    let outputs = root().join("outputs");
    fs::create_dir_all(&outputs).unwrap();
    let md = report(
        &scenarios,
        &limit,
        peer.as_ref(),
        &fb_rows,
        &fb_section,
        &curve,
        runs,
    );
    let md = format!("{md}{kill_md}");
    let notes = outputs.join("bench-notes.md");
    let md = match fs::read_to_string(&notes) {
        Ok(notes) => format!("{md}\n{notes}"),
        Err(_) => md,
    };
    fs::write(outputs.join("bench.md"), &md).unwrap();
    plot(&outputs.join("bench.png"), &scenarios, &curve);
    let _ = fs::remove_dir_all(&work);
    println!("{md}");
}
