//! What a `kill -9` repeats at full speed: the agent runs over one file into the NDJSON file
//! sink and is killed (SIGKILL) once its output holds the line at a given share of the input;
//! what it delivered (the output's last complete event's `offset`, to the end of that line) is
//! compared with what it would restart from (the persisted `data_dir/checkpoints.json`).
//!
//! The binary is the one built here, or an older build (`BENCH_BEFORE_BIN`) measured the same
//! way in the same run, so that the report shows before and after side by side.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::checkpoints::Checkpoints;
use super::measure::settle;

/// The shares of the input delivered at which the agent is killed (one run each).
pub const KILL_AT: [f64; 3] = [0.4, 0.6, 0.8];

/// A binary and the checkpoint interval it runs with.
pub struct KillSetup {
    pub name: String,
    pub bin: PathBuf,
    /// `checkpoint_interval_ms` written in the config; `None`: the binary's default.
    pub interval_ms: Option<u64>,
}

/// The set-ups: this build with its default interval, the same with
/// `checkpoint_interval_ms: 1000` for reference, and `BENCH_BEFORE_BIN` (an older build, its
/// own default) when set.
pub fn setups(agent: &str, commit: &str) -> Vec<KillSetup> {
    let mut setups = vec![
        KillSetup {
            name: format!("after: this build (`{commit}`), default `checkpoint_interval_ms`"),
            bin: agent.into(),
            interval_ms: None,
        },
        KillSetup {
            name: format!("this build (`{commit}`), `checkpoint_interval_ms: 1000`"),
            bin: agent.into(),
            interval_ms: Some(1000),
        },
    ];
    if let Some(before) = std::env::var_os("BENCH_BEFORE_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(before);
        let runs = Command::new(&bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            runs,
            "BENCH_BEFORE_BIN={} does not run (`--version` failed)",
            bin.display()
        );
        setups.push(KillSetup {
            name: format!(
                "before: `{}`, its default `checkpoint_interval_ms`",
                bin.display()
            ),
            bin,
            interval_ms: None,
        });
    }
    setups
}

/// One killed run.
#[derive(Clone, Copy, Debug)]
pub struct KillSample {
    /// Bytes delivered (the end of the last complete event's line).
    pub delivered: u64,
    /// The persisted checkpoint (0 when none was written).
    pub checkpoint: u64,
    /// Delivered lines at or past the checkpoint: sent again at a restart.
    pub lines: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Seconds from the agent's start to the kill.
    pub seconds: f64,
}

impl KillSample {
    /// The run's own throughput up to the kill, in bytes per millisecond.
    fn bytes_per_ms(&self) -> f64 {
        self.delivered as f64 / (self.seconds * 1000.0)
    }

    /// The bytes repeated in milliseconds of the run's own throughput.
    pub fn ms(&self) -> f64 {
        self.bytes as f64 / self.bytes_per_ms()
    }
}

/// Where each line of a file ends (the offset after its newline), in order.
pub fn line_ends(file: &Path) -> Vec<u64> {
    let data = fs::read(file).unwrap();
    memchr::memchr_iter(b'\n', &data)
        .map(|at| at as u64 + 1)
        .collect()
}

/// Runs `bin` over `file` (lines ending at `ends`) into the NDJSON file sink, kills it with
/// SIGKILL once the output holds the line at `share` of the input, and compares what was
/// delivered with the persisted checkpoint. Panics when the output is not the input's lines up
/// to where it ends, once each, or when the checkpoint is past what was delivered (a loss).
pub fn kill_run(
    work: &Path,
    setup: &KillSetup,
    file: &Path,
    ends: &[u64],
    format: &str,
    share: f64,
) -> KillSample {
    let total = ends.last().copied().unwrap_or(0);
    let _ = fs::remove_dir_all(work);
    let logs = work.join("logs");
    fs::create_dir_all(&logs).unwrap();
    let link = logs.join("f000.log");
    fs::hard_link(file, &link).unwrap();
    let data = work.join("data");
    let out_path = work.join("out.ndjson");
    let config = work.join("agent.yaml");
    let interval = setup.interval_ms.map_or(String::new(), |ms| {
        format!("checkpoint_interval_ms: {ms}\n")
    });
    fs::write(
        &config,
        format!(
            "data_dir: {data}\n{interval}sources:\n  app:\n    type: file\n    include: [\"{logs}/*.log\"]\n    format: {format}\nsinks:\n  out:\n    inputs: [app]\n    type: file\n    path: {out}\n    encoding: json\n",
            data = data.display(),
            logs = logs.display(),
            out = out_path.display(),
        ),
    )
    .unwrap();
    settle(&[file.to_path_buf()]);
    let target = (total as f64 * share) as u64;
    let start = Instant::now();
    let mut child = Command::new(&setup.bin)
        .args(["run", "--config"])
        .arg(&config)
        .env("LOG_AGENT_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = None;
    let seconds = loop {
        if out.is_none() {
            out = File::open(&out_path).ok();
        }
        if out
            .as_ref()
            .and_then(last_offset)
            .is_some_and(|o| o >= target)
        {
            let seconds = start.elapsed().as_secs_f64();
            child.kill().unwrap();
            break seconds;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{} exited ({status}) before delivering {share} of the input",
                setup.name
            );
        }
        if start.elapsed() > Duration::from_secs(600) {
            child.kill().unwrap();
            let _ = child.wait();
            panic!(
                "{} did not deliver {share} of the input in 600 s",
                setup.name
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let _ = child.wait();

    // What was delivered: the complete lines of the output (a torn last one is not).
    let (out_lines, last_line) = complete_lines(&out_path);
    let last: serde_json::Value = serde_json::from_slice(&last_line).unwrap_or_else(|e| {
        panic!(
            "{}: the output's last complete line is not JSON ({e}): {}",
            setup.name,
            String::from_utf8_lossy(&last_line)
        )
    });
    let offset = last["offset"]
        .as_u64()
        .unwrap_or_else(|| panic!("{}: no offset in the output's last line", setup.name));
    // Lines ending at or before a position.
    let lines_to = |at: u64| ends.partition_point(|&end| end <= at) as u64;
    let line = lines_to(offset) as usize;
    assert!(
        line < ends.len() && (line == 0 || ends[line - 1] == offset),
        "{}: the output's last offset {offset} is not a line start of the input",
        setup.name
    );
    let delivered = ends[line];
    assert_eq!(
        out_lines,
        lines_to(delivered),
        "{}: the output does not hold the input's lines up to {delivered} once each",
        setup.name
    );

    let checkpoint = checkpoint_of(&data, &link);
    assert!(
        checkpoint <= delivered,
        "{}: checkpoint {checkpoint} is past what was delivered ({delivered}): a restart would lose lines",
        setup.name
    );
    let _ = fs::remove_dir_all(work);
    KillSample {
        delivered,
        checkpoint,
        lines: lines_to(delivered) - lines_to(checkpoint),
        bytes: delivered - checkpoint,
        seconds,
    }
}

/// The `offset` of the last complete line of a growing NDJSON output, read off its tail (cheap
/// enough to poll every millisecond).
fn last_offset(out: &File) -> Option<u64> {
    let len = out.metadata().ok()?.len();
    let from = len.saturating_sub(16 << 10);
    let mut tail = vec![0; (len - from) as usize];
    out.read_exact_at(&mut tail, from).ok()?;
    let end = memchr::memrchr(b'\n', &tail)?;
    let start = memchr::memrchr(b'\n', &tail[..end]).map_or(0, |at| at + 1);
    let line = &tail[start..end];
    let key = b"\"offset\":";
    let at = memchr::memmem::rfind(line, key)? + key.len();
    let digits = line[at..].iter().take_while(|b| b.is_ascii_digit());
    Some(digits.fold(0, |n, b| n * 10 + u64::from(b - b'0')))
}

/// The number of complete lines of a file and its last complete line.
fn complete_lines(path: &Path) -> (u64, Vec<u8>) {
    let file = File::open(path).unwrap();
    let len = file.metadata().unwrap().len();
    let mut buf = vec![0; 4 << 20];
    let (mut lines, mut last_newline, mut at) = (0, None, 0);
    while at < len {
        let n = ((len - at) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], at).unwrap();
        for i in memchr::memchr_iter(b'\n', &buf[..n]) {
            lines += 1;
            last_newline = Some(at + i as u64);
        }
        at += n as u64;
    }
    let Some(end) = last_newline else {
        return (0, Vec::new());
    };
    // Lines are far shorter than this.
    let from = end.saturating_sub(1 << 20);
    let mut window = vec![0; (end - from) as usize];
    file.read_exact_at(&mut window, from).unwrap();
    let start = memchr::memrchr(b'\n', &window).map_or(0, |i| i + 1);
    (lines, window[start..].to_vec())
}

/// The persisted checkpoint of `file` in the checkpoint file of `data` (read as the tests read
/// it, `tests/common/checkpoints.rs`): 0 when there is none yet; a damaged file, or two records
/// of `file`, fail the run.
fn checkpoint_of(data: &Path, file: &Path) -> u64 {
    let checkpoints = Checkpoints::try_read(data)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_default();
    let mut offsets = checkpoints
        .records
        .iter()
        .filter(|r| Path::new(&r.path) == file)
        .map(|r| r.offset);
    let offset = offsets.next().unwrap_or(0);
    assert!(
        offsets.next().is_none(),
        "{} has two records of {}",
        data.join("checkpoints.json").display(),
        file.display()
    );
    offset
}

fn median_max(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let median = values.get(values.len() / 2).copied().unwrap_or(0.0);
    (median, values.last().copied().unwrap_or(0.0))
}

/// The report's section: a table and what it measures.
pub fn report(
    setups: &[KillSetup],
    samples: &[Vec<KillSample>],
    corpus_mib: f64,
    format: &str,
    runs: usize,
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "## Lines repeated after `kill -9` at full speed\n");
    let shares: Vec<String> = KILL_AT
        .iter()
        .map(|s| format!("{:.0}%", s * 100.0))
        .collect();
    let _ = writeln!(
        md,
        "The agent runs over the 1-file nginx corpus ({corpus_mib:.0} MiB, `format: {format}`) into the NDJSON file sink at full speed and is killed with SIGKILL once its output holds the line at {} of the input ({runs} run{} at each, set-ups taken in turn). What was delivered is read off the output: the last complete event's `offset`, to the end of that line in the input (the output's line count is checked against the input's lines up to there: nothing lost or doubled within the run). What a restart would resume from is the checkpoint persisted in `data_dir/checkpoints.json`. Lines repeated at a restart are the delivered lines at or past the checkpoint; \"ms\" gives their bytes in milliseconds of the run's own throughput (bytes delivered over the time from start to kill). A checkpoint past what was delivered would be a loss and fails the run. {}\n",
        shares.join(", "),
        if runs == 1 { "" } else { "s" },
        if format == "nginx_combined" {
            "The lines are parsed (`nginx_combined`) so that a run lasts long enough (about 12 s at the default 512 MiB) for the kills to fall at any point of a 1 s checkpoint interval; at `raw` speed the whole run would take about a second (`BENCH_KILL_FORMAT=raw` measures that path). A run shorter than the interval is killed before its second checkpoint write and repeats all it delivered."
        } else {
            "A run shorter than the checkpoint interval is killed before its second checkpoint write and repeats all it delivered."
        }
    );
    let _ = writeln!(
        md,
        "| set-up | kills | lines repeated, median | lines repeated, max | ms repeated, median | ms repeated, max | MiB/s to the kill, median |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
    for (setup, samples) in setups.iter().zip(samples) {
        let (lines, lines_max) = median_max(samples.iter().map(|s| s.lines as f64).collect());
        let (ms, ms_max) = median_max(samples.iter().map(KillSample::ms).collect());
        let (mib_s, _) = median_max(
            samples
                .iter()
                .map(|s| s.bytes_per_ms() * 1000.0 / 1048576.0)
                .collect(),
        );
        let _ = writeln!(
            md,
            "| {} | {} | {lines:.0} | {lines_max:.0} | {ms:.0} | {ms_max:.0} | {mib_s:.0} |",
            setup.name,
            samples.len(),
        );
    }
    md.push('\n');
    md
}
