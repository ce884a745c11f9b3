//! Running the contenders once and measuring them: `log-agent run` over a set of files into a
//! sink until every byte is checkpointed (optionally appending to the first file as it runs),
//! `log-agent replay --to blackhole`, `wc -l` (the physical limit), and the agent's RSS curve
//! while bytes pile up behind a sink that never accepts anything.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::AGENT;
use super::checkpoints;
use super::measure::{Sample, cpu_seconds, kill, settle, status_kib};

/// `format: regex` with the fields of `nginx_combined` (written into the source's YAML after
/// `format:`): the cost of a user's own pattern against the hand-written parser.
pub const NGINX_REGEX_FORMAT: &str = r#"regex
    pattern: '^(?P<client>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<protocol>[^"]+)" (?P<status>\d+) (?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<user_agent>[^"]*)"'"#;

/// Runs the agent over `files` into the sink described by `sink_yaml` until every byte is
/// checkpointed; `remap`, when not empty, is a VRL program on the way; `grow` appends to the
/// first file while it runs.
#[allow(clippy::too_many_arguments)]
pub fn run_agent(
    work: &Path,
    files: &[PathBuf],
    total: u64,
    format: &str,
    remap: &str,
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
    let (transforms, input) = if remap.is_empty() {
        (String::new(), "app")
    } else {
        let program: String = remap.lines().map(|l| format!("      {l}\n")).collect();
        (
            format!(
                "transforms:\n  t:\n    type: remap\n    inputs: [app]\n    source: |\n{program}"
            ),
            "t",
        )
    };
    fs::write(
        &config,
        format!(
            "data_dir: {data}\ncheckpoint_interval_ms: 20\nsources:\n  app:\n    type: file\n    include: [\"{logs}/*.log\"]\n    format: {format}\n{transforms}sinks:\n  out:\n    inputs: [{input}]\n{sink_yaml}\n",
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
pub fn run_replay(files: &[PathBuf]) -> Sample {
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
pub fn gzip_copy(file: &Path) -> PathBuf {
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

/// Times `wc -l` over the files.
pub fn run_wc(files: &[PathBuf]) -> Sample {
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
pub fn backpressure_curve(work: &Path, corpus_file: &Path, mib: usize) -> Vec<(f64, f64)> {
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
