//! End-to-end throughput and memory harness: `cargo bench --bench e2e`.
//!
//! Generates a deterministic corpus under `target/bench-corpus/` (nginx combined access lines,
//! and JSON application lines with multi-line stack traces), runs the release `log-agent` binary
//! over it in several set-ups, and measures for each the input MiB/s, lines/s, CPU seconds per
//! GiB (user + sys, from /proc) and peak RSS (VmHWM), taking the median of a few runs. In the same
//! run it times the physical limit (`wc -l` over the same files) and a peer, rsyslog's imfile ->
//! omfile (installed from Debian's packages if missing), and gives every figure as a ratio to
//! both. A last set-up blocks the sink (a FIFO nobody reads) while 1 GiB is appended and records
//! the agent's RSS curve. Results go to `outputs/bench.md` and `outputs/bench.png`.
//!
//! Knobs (environment): `BENCH_MIB` corpus size in MiB (default 512), `BENCH_RUNS` runs per
//! set-up (default 3), `BENCH_BACKPRESSURE_MIB` bytes appended behind the blocked sink (1024),
//! `BENCH_SKIP_PEER=1` to leave rsyslog out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The Tansu broker helper the Kafka tests use.
#[path = "../tests/common/broker.rs"]
#[allow(dead_code)]
mod broker;

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
// Corpus

/// One nginx combined line, deterministic from the generator.
fn nginx_line(rng: &mut fastrand::Rng, out: &mut Vec<u8>) {
    const PATHS: &[&str] = &[
        "/",
        "/api/orders",
        "/static/app.js",
        "/favicon.ico",
        "/api/users/42?expand=orders",
        "/healthz",
        "/login",
    ];
    const AGENTS: &[&str] = &[
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
        "curl/8.5.0",
        "kube-probe/1.31",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    ];
    const STATUS: &[u16] = &[200, 200, 200, 200, 201, 304, 404, 500];
    let _ = writeln!(
        Fmt(out),
        "10.{}.{}.{} - - [25/Nov/2026:{:02}:{:02}:{:02} +0000] \"{} {} HTTP/1.1\" {} {} \"{}\" \"{}\"",
        rng.u8(..),
        rng.u8(..),
        rng.u8(..),
        rng.u8(0..24),
        rng.u8(0..60),
        rng.u8(0..60),
        if rng.u8(0..5) == 0 { "POST" } else { "GET" },
        PATHS[rng.usize(..PATHS.len())],
        STATUS[rng.usize(..STATUS.len())],
        rng.u32(10..60_000),
        if rng.bool() {
            "-"
        } else {
            "https://example.test/"
        },
        AGENTS[rng.usize(..AGENTS.len())],
    );
}

/// One JSON application line, one in 50 followed by a multi-line stack trace.
fn app_lines(rng: &mut fastrand::Rng, seq: u64, out: &mut Vec<u8>) {
    const LEVELS: &[&str] = &["info", "info", "info", "debug", "warn", "error"];
    let _ = writeln!(
        Fmt(out),
        "{{\"ts\":\"2026-11-25T04:{:02}:{:02}.{:03}Z\",\"level\":\"{}\",\"msg\":\"request served\",\"path\":\"/api/orders/{}\",\"status\":{},\"duration_ms\":{},\"request_id\":\"{:016x}\"}}",
        rng.u8(0..60),
        rng.u8(0..60),
        rng.u16(0..1000),
        LEVELS[rng.usize(..LEVELS.len())],
        seq,
        if rng.u8(0..10) == 0 { 500 } else { 200 },
        rng.u32(1..2000),
        rng.u64(..),
    );
    if rng.u8(0..50) == 0 {
        out.extend_from_slice(
            b"Exception in thread \"main\" java.lang.IllegalStateException: order not found\n",
        );
        for depth in 0..rng.usize(5..25) {
            let _ = writeln!(
                Fmt(out),
                "\tat com.example.orders.Service.step{depth}(Service.java:{})",
                rng.u16(10..900)
            );
        }
    }
}

struct Fmt<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Fmt<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Writes `files` files of lines from `generate` totalling about `mib` MiB into `dir` (kept
/// between runs: regenerated only when missing). Returns the files, total bytes and lines.
fn corpus(
    dir: &Path,
    files: usize,
    mib: usize,
    seed: u64,
    generate: fn(&mut fastrand::Rng, u64, &mut Vec<u8>),
) -> (Vec<PathBuf>, u64, u64) {
    let done = dir.join(".complete");
    let paths: Vec<PathBuf> = (0..files)
        .map(|i| dir.join(format!("f{i:03}.log")))
        .collect();
    if !done.exists() {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir).unwrap();
        let per_file = (mib << 20) / files;
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut seq = 0;
        for path in &paths {
            let mut out = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
            let mut written = 0;
            let mut line = Vec::with_capacity(4096);
            while written < per_file {
                line.clear();
                generate(&mut rng, seq, &mut line);
                seq += 1;
                out.write_all(&line).unwrap();
                written += line.len();
            }
            out.flush().unwrap();
        }
        fs::write(&done, b"").unwrap();
    }
    let (bytes, lines) = paths.iter().fold((0, 0), |(b, l), p| {
        let data = fs::read(p).unwrap();
        (
            b + data.len() as u64,
            l + memchr::memchr_iter(b'\n', &data).count() as u64,
        )
    });
    (paths, bytes, lines)
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

/// Sum of the checkpoint offsets in a data_dir. Read off the text, not parsed: polled every few
/// milliseconds, a full parse of 100,000 records would take the agent's CPU.
fn checkpointed(data_dir: &Path) -> u64 {
    let Ok(text) = fs::read(data_dir.join("checkpoints.json")) else {
        return 0;
    };
    let key = b"\"offset\":";
    memchr::memmem::find_iter(&text, key)
        .map(|at| {
            text[at + key.len()..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'))
        })
        .sum()
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
    while checkpointed(&data) < expected {
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

/// rsyslog imfile -> omfile on the same files, if rsyslogd can be had.
fn run_rsyslog(work: &Path, files: &[PathBuf], total: u64) -> Option<Sample> {
    if Command::new("rsyslogd").arg("-v").output().is_err() {
        eprintln!("installing rsyslog from Debian's packages for the peer comparison");
        let ok = Command::new("sh")
            .args(["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsyslog"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("rsyslog unavailable; peer left out");
            return None;
        }
    }
    let _ = fs::remove_dir_all(work);
    let logs = work.join("logs");
    fs::create_dir_all(&logs).unwrap();
    for (i, file) in files.iter().enumerate() {
        fs::hard_link(file, logs.join(format!("f{i:03}.log"))).unwrap();
    }
    let out = work.join("out.log");
    settle(files);
    let config = work.join("rsyslog.conf");
    fs::write(
        &config,
        format!(
            "global(workDirectory=\"{work}\" maxMessageSize=\"64k\")\nmodule(load=\"imfile\")\ntemplate(name=\"msg\" type=\"string\" string=\"%msg%\\n\")\ninput(type=\"imfile\" file=\"{logs}/*.log\" tag=\"app\" ruleset=\"out\")\nruleset(name=\"out\") {{ action(type=\"omfile\" file=\"{out}\" template=\"msg\") }}\n",
            work = work.display(),
            logs = logs.display(),
            out = out.display(),
        ),
    )
    .unwrap();
    let start = Instant::now();
    let mut child = Command::new("rsyslogd")
        .args(["-n", "-f"])
        .arg(&config)
        .arg("-i")
        .arg(work.join("rsyslog.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let pid = child.id();
    // Done when the output has (about) the input's size and stopped growing.
    let mut last = (0, Instant::now());
    let mut cpu = 0.0;
    let mut rss = 0;
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let size = fs::metadata(&out).map_or(0, |m| m.len());
        cpu = f64::max(cpu, cpu_seconds(pid));
        rss = rss.max(status_kib(pid, "VmHWM:"));
        if size != last.0 {
            last = (size, Instant::now());
        } else if size > 0 && last.1.elapsed() > Duration::from_secs(2) {
            break;
        }
        if start.elapsed() > Duration::from_secs(900) {
            break;
        }
    }
    let seconds = last.1.duration_since(start).as_secs_f64();
    kill(&mut child, "-TERM");
    let _ = child.wait();
    let written = fs::metadata(&out).map_or(0, |m| m.len());
    let _ = fs::remove_dir_all(work);
    if written + written / 50 < total {
        eprintln!("rsyslog wrote {written} of {total} bytes; peer figure is incomplete");
    }
    Some(Sample {
        seconds,
        cpu_seconds: cpu,
        peak_rss_kib: rss,
    })
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
        "Each figure is the median of {runs} runs; time runs from the agent's start until every input byte is checkpointed (delivered and acked). CPU is user + sys of the process; RSS is its peak (VmHWM). Ratios compare with `wc -l` over the same files (the physical limit) and with rsyslog imfile -> omfile (the peer) in the same run.\n"
    );
    let _ = writeln!(
        md,
        "| set-up | input MiB | MiB/s | lines/s | CPU s/GiB | peak RSS MiB | x wc -l | x rsyslog |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut rows: Vec<&Scenario> = scenarios.iter().collect();
    rows.push(limit);
    if let Some(peer) = peer {
        rows.push(peer);
    }
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
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} | {:.0} | {} | {} | {:.3} | {} |",
            s.name,
            s.bytes as f64 / 1048576.0,
            s.mib_s(),
            s.lines as f64 / m.seconds,
            cpu,
            rss,
            s.mib_s() / limit.mib_s(),
            vs_peer,
        );
    }
    let max_rss = curve.iter().map(|(_, r)| *r).fold(0.0, f64::max);
    let first = curve.first().map_or(0.0, |(_, r)| *r);
    let _ = writeln!(
        md,
        "\nMemory under backpressure: the sink blocked (a FIFO nobody reads) while {} MiB were appended; RSS went from {:.1} MiB to at most {:.1} MiB over {} samples (curve in `bench.png`).\n",
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
        mib / 4
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
    let (app, app_bytes, app_lines_n) = corpus(
        &base.join(format!("app-1x{}", mib / 4)),
        1,
        mib / 4,
        3,
        app_lines,
    );

    let file_sink = |encoding: &str| {
        format!(
            "    type: file\n    path: {}\n    encoding: {encoding}",
            // Inside the run's own directory, which every run removes: outputs do not pile up.
            work.join("agent").join("out.ndjson").display()
        )
    };
    let blackhole = "    type: blackhole".to_owned();
    type Setup<'a> = (&'a str, &'a [PathBuf], u64, u64, &'a str, String, bool);
    let setups: Vec<Setup> = vec![
        (
            "run 1 file -> blackhole",
            &one,
            one_bytes,
            one_lines,
            "raw",
            blackhole.clone(),
            false,
        ),
        (
            "run 1 file -> file (text)",
            &one,
            one_bytes,
            one_lines,
            "raw",
            file_sink("text"),
            false,
        ),
        (
            "run 1 file -> file (NDJSON)",
            &one,
            one_bytes,
            one_lines,
            "raw",
            file_sink("json"),
            false,
        ),
        (
            "run 1 growing file -> file (NDJSON)",
            &one,
            one_bytes,
            one_lines,
            "raw",
            file_sink("json"),
            true,
        ),
        (
            "run 100 files -> blackhole",
            &many,
            many_bytes,
            many_lines,
            "raw",
            blackhole.clone(),
            false,
        ),
        (
            "run 100 files -> file (NDJSON)",
            &many,
            many_bytes,
            many_lines,
            "raw",
            file_sink("json"),
            false,
        ),
        (
            &crowd_name,
            &crowd,
            crowd_bytes,
            crowd_lines,
            "raw",
            blackhole.clone(),
            false,
        ),
        (
            "run JSON app lines, format json -> file (NDJSON)",
            &app,
            app_bytes,
            app_lines_n,
            "json",
            file_sink("json"),
            false,
        ),
    ];
    let mut scenarios = Vec::new();
    for (name, files, bytes, lines, format, sink, grow) in setups {
        let mut samples = Vec::new();
        for run in 0..runs {
            let sample = run_agent(
                &work.join("agent"),
                files,
                bytes,
                format,
                &sink,
                grow.then(|| files[0].as_path()),
            );
            eprintln!(
                "{name} #{run}: {:.0} MiB/s, {:.2} CPU s, {} KiB peak",
                bytes as f64 / 1048576.0 / sample.seconds,
                sample.cpu_seconds,
                sample.peak_rss_kib
            );
            samples.push(sample);
        }
        scenarios.push(Scenario {
            name: name.to_owned(),
            bytes,
            lines,
            samples,
        });
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
        });
    } else {
        eprintln!("tansu unavailable: the kafka row is left out");
    }
    let limit = Scenario {
        name: "wc -l, 1 file (physical limit)".into(),
        bytes: one_bytes,
        lines: one_lines,
        samples: (0..runs).map(|_| run_wc(&one)).collect(),
    };
    let peer = if std::env::var("BENCH_SKIP_PEER").is_ok() {
        None
    } else {
        let samples: Vec<Sample> = (0..runs)
            .filter_map(|_| run_rsyslog(&work.join("rsyslog"), &one, one_bytes))
            .collect();
        (!samples.is_empty()).then(|| Scenario {
            name: "rsyslog imfile -> omfile, 1 file (peer)".into(),
            bytes: one_bytes,
            lines: one_lines,
            samples,
        })
    };
    eprintln!("memory under backpressure");
    let curve = backpressure_curve(
        &work.join("backpressure"),
        &one[0],
        env_usize("BENCH_BACKPRESSURE_MIB", 1024),
    );
    let outputs = root().join("outputs");
    fs::create_dir_all(&outputs).unwrap();
    let md = report(&scenarios, &limit, peer.as_ref(), &curve, runs);
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
