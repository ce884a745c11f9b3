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
/// OTLP receivers that discard, for the `-> otlp` rows.
#[path = "e2e/otlp.rs"]
mod otlp;
/// rsyslog and Fluent Bit, run on the same bytes.
#[path = "e2e/peers.rs"]
mod peers;

use corpus::{
    apache_common_line, app_lines, corpus, cri_line, docker_line, logfmt_line, nginx_line,
};
use peers::FbWorkload;

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const AGENT: &str = env!("CARGO_BIN_EXE_log-agent");

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
// Measuring a process

/// CPU seconds (user + sys) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// A `VmRSS:`-like field of a process, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    status_line(&format!("/proc/{pid}/status"), field)
}

/// One measured run.
#[derive(Clone, Copy, Default)]
struct Sample {
    seconds: f64,
    cpu_seconds: f64,
    peak_rss_kib: u64,
}

struct Scenario {
    name: String,
    bytes: u64,
    lines: u64,
    samples: Vec<Sample>,
    /// The Fluent Bit workload doing the same work on the same bytes (for Fluent Bit's own rows,
    /// the one it ran).
    fluent_bit: Option<FbWorkload>,
}

impl Scenario {
    fn median(&self) -> Sample {
        let mut s = self.samples.clone();
        s.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
        s[s.len() / 2]
    }
    fn mib_s(&self) -> f64 {
        self.bytes as f64 / 1048576.0 / self.median().seconds
    }
}

fn kill(child: &mut Child, signal: &str) {
    let _ = Command::new("kill")
        .arg(signal)
        .arg(child.id().to_string())
        .status();
}

/// `format: regex` with the fields of `nginx_combined` (written into the source's YAML after
/// `format:`): the cost of a user's own pattern against the hand-written parser.
const NGINX_REGEX_FORMAT: &str = r#"regex
    pattern: '^(?P<client>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<protocol>[^"]+)" (?P<status>\d+) (?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<user_agent>[^"]*)"'"#;

/// Runs the agent over `files` into the sink described by `sink_yaml` until every byte is
/// checkpointed; `grow` appends to the first file while it runs.
fn run_agent(
    work: &Path,
    files: &[PathBuf],
    total: u64,
    format: &str,
    sink_yaml: &str,
    grow: Option<&Path>,
) -> Sample {
    let data = work.join("data");
    let _ = fs::remove_dir_all(work);
    fs::create_dir_all(work).unwrap();
    let logs = work.join("logs");
    fs::create_dir(&logs).unwrap();
    let mut expected = total;
    for (i, file) in files.iter().enumerate() {
        let link = logs.join(format!("f{i:03}.log"));
        if grow.is_some() && i == 0 {
            File::create(&link).unwrap();
        } else {
            // Hard links: the same bytes without copying them (the page cache is shared).
            fs::hard_link(file, &link).unwrap();
        }
    }
    settle(files);
    let config = work.join("agent.yaml");
    fs::write(
        &config,
        format!(
            "data_dir: {data}\ncheckpoint_interval_ms: 20\nsources:\n  app:\n    type: file\n    include: [\"{logs}/*.log\"]\n    format: {format}\nsinks:\n  out:\n    inputs: [app]\n{sink_yaml}\n",
            data = data.display(),
            logs = logs.display(),
        ),
    )
    .unwrap();
    let start = Instant::now();
    let mut child = Command::new(AGENT)
        .args(["run", "--config"])
        .arg(&config)
        .env("LOG_AGENT_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    if let Some(source) = grow {
        // Append the first file's corpus in 4 MiB pieces while the agent reads.
        let bytes = fs::read(source).unwrap();
        let mut out = OpenOptions::new()
            .append(true)
            .open(logs.join("f000.log"))
            .unwrap();
        for piece in bytes.chunks(4 << 20) {
            out.write_all(piece).unwrap();
        }
        expected = total;
    }
    while checkpoints::offsets_unparsed(&data) < expected {
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "agent did not finish"
        );
    }
    let seconds = start.elapsed().as_secs_f64();
    let sample = Sample {
        seconds,
        cpu_seconds: cpu_seconds(pid),
        peak_rss_kib: status_kib(pid, "VmHWM:"),
    };
    kill(&mut child, "-TERM");
    let _ = child.wait();
    let _ = fs::remove_dir_all(work);
    sample
}

/// Runs `log-agent replay --to blackhole` over `files` to its end.
fn run_replay(files: &[PathBuf]) -> Sample {
    settle(files);
    let start = Instant::now();
    let mut child = Command::new(AGENT)
        .args(["replay", "--to", "blackhole"])
        .args(files)
        .env("LOG_AGENT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // The figures of a process that is gone cannot be read: sample them until it exits.
    let mut sample = Sample::default();
    loop {
        let cpu = cpu_seconds(pid);
        let rss = status_kib(pid, "VmHWM:");
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "replay failed: {status}");
            break;
        }
        sample.cpu_seconds = sample.cpu_seconds.max(cpu);
        sample.peak_rss_kib = sample.peak_rss_kib.max(rss);
        std::thread::sleep(Duration::from_millis(5));
    }
    sample.seconds = start.elapsed().as_secs_f64();
    sample
}

/// A gzip copy of `file` next to it (made once).
fn gzip_copy(file: &Path) -> PathBuf {
    let compressed = file.with_extension("log.gz");
    let done = file.with_extension("gz.complete");
    if !done.exists() {
        let mut encoder = flate2::write::GzEncoder::new(
            BufWriter::new(File::create(&compressed).unwrap()),
            flate2::Compression::fast(),
        );
        std::io::copy(&mut File::open(file).unwrap(), &mut encoder).unwrap();
        encoder.finish().unwrap().flush().unwrap();
        fs::write(&done, b"").unwrap();
    }
    compressed
}

/// Puts the machine in the same state before every measured run: the dirty pages earlier runs
/// left are flushed (a previous output is gigabytes), the page cache is dropped where allowed
/// (otherwise a full cache makes each run's output pay for reclaiming it, in system time), and
/// the input is read once so that it is cached for every contender alike.
fn settle(files: &[PathBuf]) {
    let _ = Command::new("sync").status();
    let _ = fs::write("/proc/sys/vm/drop_caches", b"1");
    for file in files {
        let _ = Command::new("cat").arg(file).stdout(Stdio::null()).status();
    }
}

/// Times `wc -l` over the files.
fn run_wc(files: &[PathBuf]) -> Sample {
    settle(files);
    let start = Instant::now();
    let out = Command::new("wc").arg("-l").args(files).output().unwrap();
    assert!(out.status.success());
    Sample {
        seconds: start.elapsed().as_secs_f64(),
        ..Sample::default()
    }
}

/// RSS of the agent, every 100 ms, while `mib` MiB are appended behind a sink that never
/// accepts anything.
fn backpressure_curve(work: &Path, corpus_file: &Path, mib: usize) -> Vec<(f64, f64)> {
    let _ = fs::remove_dir_all(work);
    let logs = work.join("logs");
    fs::create_dir_all(&logs).unwrap();
    let fifo = work.join("blocked.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let config = work.join("agent.yaml");
    fs::write(
        &config,
        format!(
            "data_dir: {}\nsources:\n  app:\n    type: file\n    include: [\"{}/*.log\"]\nsinks:\n  out:\n    type: file\n    inputs: [app]\n    path: {}\n",
            work.join("data").display(),
            logs.display(),
            fifo.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(AGENT)
        .args(["run", "--config"])
        .arg(&config)
        .env("LOG_AGENT_LOG", "warn")
        .spawn()
        .unwrap();
    let pid = child.id();
    let source = fs::read(corpus_file).unwrap();
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join("app.log"))
        .unwrap();
    let start = Instant::now();
    let mut curve = Vec::new();
    let mut appended = 0;
    let mut next_sample = Instant::now();
    while appended < mib << 20 {
        let piece = &source[(appended % source.len()).min(source.len() - (8 << 20))..][..8 << 20];
        log.write_all(piece).unwrap();
        appended += piece.len();
        if Instant::now() >= next_sample {
            curve.push((
                start.elapsed().as_secs_f64(),
                status_kib(pid, "VmRSS:") as f64 / 1024.0,
            ));
            next_sample += Duration::from_millis(100);
        }
    }
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(100));
        curve.push((
            start.elapsed().as_secs_f64(),
            status_kib(pid, "VmRSS:") as f64 / 1024.0,
        ));
    }
    child.kill().unwrap();
    let _ = child.wait();
    let _ = fs::remove_dir_all(work);
    curve
}

// ---------------------------------------------------------------------------------------------
// Report

fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".into(), |(_, m)| m.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = status_line("/proc/meminfo", "MemTotal:") as f64 / 1048576.0;
    format!("{cores} cores ({cpu}), {mem_gib:.0} GiB")
}

/// The number after `field` in a `/proc` file of `field value unit` lines.
fn status_line(path: &str, field: &str) -> u64 {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn report(
    scenarios: &[Scenario],
    limit: &Scenario,
    peer: Option<&Scenario>,
    fluent_bit: &[Scenario],
    fluent_bit_section: &str,
    curve: &[(f64, f64)],
    runs: usize,
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# log-agent benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `cargo bench --bench e2e` on {}, commit `{}`, {}.",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        commit(),
        machine()
    );
    let _ = writeln!(
        md,
        "Each figure is the median of {runs} runs; time runs from the agent's start until every input byte is checkpointed (delivered and acked). CPU is user + sys of the process; RSS is its peak (VmHWM). Ratios compare with `wc -l` over the same files (the physical limit), with rsyslog imfile -> omfile (the peer) in the same run, and, where it ran the same workload on the same file, with Fluent Bit (`x Fluent Bit`: log-agent's MiB/s over Fluent Bit's; `-` where it has no counterpart).\n"
    );
    let _ = writeln!(
        md,
        "| set-up | input MiB | MiB/s | lines/s | CPU s/GiB | peak RSS MiB | x wc -l | x rsyslog | x Fluent Bit |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut rows: Vec<&Scenario> = scenarios.iter().collect();
    rows.push(limit);
    if let Some(peer) = peer {
        rows.push(peer);
    }
    rows.extend(fluent_bit);
    for s in rows {
        let m = s.median();
        let gib = s.bytes as f64 / (1u64 << 30) as f64;
        let cpu = if m.cpu_seconds > 0.0 {
            format!("{:.2}", m.cpu_seconds / gib)
        } else {
            "-".into()
        };
        let rss = if m.peak_rss_kib > 0 {
            format!("{:.1}", m.peak_rss_kib as f64 / 1024.0)
        } else {
            "-".into()
        };
        let vs_peer = peer.map_or("-".into(), |p| format!("{:.2}", s.mib_s() / p.mib_s()));
        let vs_fluent_bit = s
            .fluent_bit
            .and_then(|w| fluent_bit.iter().find(|f| f.fluent_bit == Some(w)))
            .map_or("-".into(), |f| format!("{:.2}", s.mib_s() / f.mib_s()));
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} | {:.0} | {} | {} | {:.3} | {} | {} |",
            s.name,
            s.bytes as f64 / 1048576.0,
            s.mib_s(),
            s.lines as f64 / m.seconds,
            cpu,
            rss,
            s.mib_s() / limit.mib_s(),
            vs_peer,
            vs_fluent_bit,
        );
    }
    let _ = writeln!(md, "\n{fluent_bit_section}");
    let max_rss = curve.iter().map(|(_, r)| *r).fold(0.0, f64::max);
    let first = curve.first().map_or(0.0, |(_, r)| *r);
    let _ = writeln!(
        md,
        "Memory under backpressure: the sink blocked (a FIFO nobody reads) while {} MiB were appended; RSS went from {:.1} MiB to at most {:.1} MiB over {} samples (curve in `bench.png`).\n",
        env_usize("BENCH_BACKPRESSURE_MIB", 1024),
        first,
        max_rss,
        curve.len()
    );
    md
}

fn plot(path: &Path, scenarios: &[Scenario], curve: &[(f64, f64)]) {
    use plotters::prelude::*;
    let font = ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"]
        .iter()
        .find_map(|p| fs::read(p).ok());
    let Some(font) = font else {
        eprintln!("no DejaVuSans.ttf (Debian's fonts-dejavu-core); bench.png not drawn");
        return;
    };
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    if plotters::style::register_font("sans-serif", FontStyle::Normal, font).is_err() {
        eprintln!("cannot load the font; bench.png not drawn");
        return;
    }
    let root = BitMapBackend::new(path, (1200, 900)).into_drawing_area();
    root.fill(&WHITE).unwrap();
    let (top, bottom) = root.split_vertically(520);
    let max = scenarios.iter().map(Scenario::mib_s).fold(0.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&top)
        .caption("Throughput (MiB/s, median)", ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(330)
        .build_cartesian_2d(0.0..max, (0..scenarios.len()).into_segmented())
        .unwrap();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => {
                scenarios.get(*i).map_or(String::new(), |s| s.name.clone())
            }
            _ => String::new(),
        })
        .y_labels(scenarios.len())
        .label_style(("sans-serif", 14))
        .draw()
        .unwrap();
    chart
        .draw_series(scenarios.iter().enumerate().map(|(i, s)| {
            let mut bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(i)),
                    (s.mib_s(), SegmentValue::Exact(i + 1)),
                ],
                BLUE.mix(0.6).filled(),
            );
            bar.set_margin(8, 8, 0, 0);
            bar
        }))
        .unwrap();
    let t_max = curve.last().map_or(1.0, |(t, _)| *t).max(1.0);
    let r_max = curve.iter().map(|(_, r)| *r).fold(1.0, f64::max) * 1.3;
    let mut chart = ChartBuilder::on(&bottom)
        .caption(
            "RSS while 1 GiB is appended behind a blocked sink (MiB)",
            ("sans-serif", 24),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.0..r_max)
        .unwrap();
    chart
        .configure_mesh()
        .x_desc("seconds")
        .label_style(("sans-serif", 14))
        .draw()
        .unwrap();
    chart
        .draw_series(LineSeries::new(curve.iter().copied(), RED.stroke_width(2)))
        .unwrap();
    root.present().unwrap();
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
