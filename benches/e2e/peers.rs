//! The peers log-agent is measured against on the same bytes, in the same run: rsyslog (imfile
//! -> omfile, installed from Debian's packages when missing) and Fluent Bit (a prebuilt binary
//! and its one-shot configs, from `BENCH_FLUENT_BIT_DIR`; left out, and said so in the report,
//! when the binary is not there).

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::measure::{Sample, cpu_seconds, kill, settle, status_kib};
use super::root;

/// rsyslog imfile -> omfile on the same files, if rsyslogd can be had.
pub fn run_rsyslog(work: &Path, files: &[PathBuf], total: u64) -> Option<Sample> {
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

// ---------------------------------------------------------------------------------------------
// Fluent Bit

/// The Debian packages the prebuilt Fluent Bit needs at run time.
const FLUENT_BIT_LIBS: &str = "libyaml-0-2 libssl3 libsqlite3-0";

/// A Fluent Bit workload, and the log-agent set-up it is compared with (same corpus, same work).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FbWorkload {
    /// `raw.conf`: tail -> file, the line only; against `format: raw`, `encoding: text`.
    Raw,
    /// `json.conf`: tail with `Parser json` -> one JSON object a line; against `format: json`.
    Json,
    /// `nginx.conf`: tail with `Parser nginx` (a regex) -> one JSON object a line; against
    /// `format: nginx_combined`.
    Nginx,
}

impl FbWorkload {
    fn config(self) -> &'static str {
        match self {
            FbWorkload::Raw => "raw.conf",
            FbWorkload::Json => "json.conf",
            FbWorkload::Nginx => "nginx.conf",
        }
    }

    /// The row's name in the report.
    pub fn row(self, version: &str) -> String {
        match self {
            FbWorkload::Raw => format!("{version} tail -> file, raw text, 1 file (peer)"),
            FbWorkload::Json => {
                format!("{version} tail, Parser json -> file (JSON lines), JSON app lines (peer)")
            }
            FbWorkload::Nginx => {
                format!("{version} tail, Parser nginx -> file (JSON lines), 1 file (peer)")
            }
        }
    }

    /// What is compared, in a few words.
    pub fn label(self) -> &'static str {
        match self {
            FbWorkload::Raw => "raw -> text file",
            FbWorkload::Json => "JSON parsed -> JSON lines",
            FbWorkload::Nginx => "nginx parsed -> JSON lines",
        }
    }
}

/// A Fluent Bit that runs, with its configs.
pub struct FluentBit {
    pub dir: PathBuf,
    pub bin: PathBuf,
    /// `Fluent Bit v5.1.1`, from `--version`.
    pub version: String,
    /// The parsers file the json workload runs with (the one beside the binary, or a copy).
    pub json_parsers: PathBuf,
    /// How the json parser's time settings were matched with the JSON corpus, for the report.
    pub json_note: String,
    /// The configs' `Flush` (seconds), as written in `raw.conf`.
    pub flush: String,
}

/// The Fluent Bit of `BENCH_FLUENT_BIT_DIR` (default `../shared/peers/fluent-bit`, relative to
/// the repository), its runtime libraries installed from Debian's packages if it does not run
/// without them; or the report's line saying why there is none.
pub fn fluent_bit() -> Result<FluentBit, String> {
    let dir = std::env::var_os("BENCH_FLUENT_BIT_DIR").map_or_else(
        || PathBuf::from("../shared/peers/fluent-bit"),
        PathBuf::from,
    );
    // Relative to the repository; an absolute path replaces it.
    let dir = root().join(dir);
    let dir = dir.canonicalize().unwrap_or(dir);
    let bin = dir.join("fluent-bit");
    if !bin.is_file() {
        return Err(format!(
            "Fluent Bit: not found at `{}`; ratios omitted.",
            bin.display()
        ));
    }
    let files = ["raw.conf", "json.conf", "nginx.conf", "parsers.conf"];
    if let Some(missing) = files.iter().find(|f| !dir.join(f).is_file()) {
        return Err(format!(
            "Fluent Bit: not found at `{}` (no `{missing}` beside it); ratios omitted.",
            bin.display()
        ));
    }
    let version = || {
        Command::new(&bin)
            .arg("--version")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(|l| l.trim().to_owned())
            })
    };
    let version = match version() {
        Some(v) => v,
        None => {
            eprintln!("installing Fluent Bit's runtime libraries from Debian's packages");
            let _ = Command::new("sh")
                .args([
                    "-c",
                    &format!(
                        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {FLUENT_BIT_LIBS}"
                    ),
                ])
                .status();
            version().ok_or_else(|| {
                format!(
                    "Fluent Bit: `{}` does not run (it needs {FLUENT_BIT_LIBS}); ratios omitted.",
                    bin.display()
                )
            })?
        }
    };
    let flush = fs::read_to_string(dir.join("raw.conf"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            ["Flush", value] => Some(value.to_owned()),
            _ => None,
        })
        .unwrap_or_else(|| "?".into());
    Ok(FluentBit {
        flush,
        json_parsers: dir.join("parsers.conf"),
        json_note: String::new(),
        dir,
        bin,
        version,
    })
}

impl FluentBit {
    /// Matches the `json` parser's `Time_Key`/`Time_Format` with the JSON corpus: kept when the
    /// corpus's first line has a `time` key in that format; otherwise the workload runs with a
    /// copy of `parsers.conf` (in `conf_dir`) whose json parser has no time settings, so that
    /// times are left alone, as log-agent's `format: json` row leaves them.
    pub fn match_json_time(&mut self, conf_dir: &Path, corpus_file: &Path) {
        let mut head = String::new();
        let _ = File::open(corpus_file)
            .unwrap()
            .take(64 << 10)
            .read_to_string(&mut head);
        let first: serde_json::Value = head
            .lines()
            .next()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_default();
        // `%Y-%m-%dT%H:%M:%S.%LZ`, as `2026-11-25T04:01:02.123Z`.
        let iso = |s: &str| {
            let b = s.as_bytes();
            b.len() >= 21 && b[10] == b'T' && b[19] == b'.' && s.ends_with('Z')
        };
        match first.get("time").and_then(|t| t.as_str()) {
            Some(time) if iso(time) => {
                self.json_note = "The JSON corpus's `time` key matches the json parser's `Time_Key`/`Time_Format`: Fluent Bit ran with `parsers.conf` as shipped.".into();
            }
            _ => {
                let key = first
                    .as_object()
                    .and_then(|o| {
                        o.keys()
                            .find(|k| ["ts", "timestamp", "@timestamp"].contains(&k.as_str()))
                    })
                    .map_or("none".to_owned(), |k| format!("`{k}`"));
                let shipped = fs::read_to_string(self.dir.join("parsers.conf")).unwrap();
                let mut copy = String::new();
                let mut in_json = false;
                for line in shipped.lines() {
                    let t = line.trim();
                    if t.starts_with('[') {
                        in_json = false;
                    } else if t.split_whitespace().collect::<Vec<_>>() == ["Name", "json"] {
                        in_json = true;
                    }
                    if in_json && t.starts_with("Time_") {
                        continue;
                    }
                    copy.push_str(line);
                    copy.push('\n');
                }
                fs::create_dir_all(conf_dir).unwrap();
                let path = conf_dir.join("parsers.conf");
                fs::write(&path, copy).unwrap();
                self.json_parsers = path;
                self.json_note = format!(
                    "The JSON corpus has no `time` key (its time key: {key}), which the json parser's `Time_Key time` / `Time_Format %Y-%m-%dT%H:%M:%S.%LZ` expect: Fluent Bit ran with a copy of `parsers.conf` (written into the bench's temp dir) whose json parser has no `Time_*` settings, so times are left alone on both sides, as log-agent's `format: json` row (no `timestamp:`) leaves them."
                );
            }
        }
    }
}

/// One Fluent Bit run.
#[derive(Clone, Copy, Default)]
pub struct FbRun {
    /// `seconds`: from start until `out.log` reached its final size.
    pub sample: Sample,
    /// From start until its read position in the input reached the input's end.
    pub read_end: Option<f64>,
    /// From start until the process exited.
    pub exited: f64,
}

/// The output is polled this often for its size.
const FB_POLL: Duration = Duration::from_millis(2);

/// Runs Fluent Bit's one-shot config for `workload` over `input` (of `lines` lines) to its exit.
/// Times it until its output reached its final size (polled every 2 ms, and final once the
/// process has exited): with `Flush 1` its exit comes whole seconds after its output is done.
/// Panics when the output does not have the input's line count, or when the run fails.
pub fn run_fluent_bit(
    fb: &FluentBit,
    work: &Path,
    workload: FbWorkload,
    input: &Path,
    lines: u64,
) -> FbRun {
    let _ = fs::remove_dir_all(work);
    let out_dir = work.join("out");
    fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("out.log");
    let log_path = work.join("fluent-bit.log");
    let log = File::create(&log_path).unwrap();
    let parsers = match workload {
        FbWorkload::Json => fb.json_parsers.clone(),
        FbWorkload::Raw | FbWorkload::Nginx => fb.dir.join("parsers.conf"),
    };
    let input = input.canonicalize().unwrap();
    let input_len = fs::metadata(&input).unwrap().len();
    settle(std::slice::from_ref(&input));
    let start = Instant::now();
    // Reaped by `reap` (wait4, which also gives its CPU time and peak RSS), not `Child::wait`.
    #[allow(clippy::zombie_processes)]
    let mut child = Command::new(&fb.bin)
        .arg("-c")
        .arg(fb.dir.join(workload.config()))
        .env("FB_INPUT", &input)
        .env("FB_OUT_DIR", &out_dir)
        .env("FB_PARSERS", &parsers)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut size = (0, start);
    let mut input_fd = None;
    let mut read_end = None;
    let (status, usage) = loop {
        if let Some(done) = reap(pid) {
            break done;
        }
        let now = Instant::now();
        let len = fs::metadata(&out).map_or(0, |m| m.len());
        if len != size.0 {
            size = (len, now);
        }
        if read_end.is_none() {
            match input_fd {
                None => input_fd = fd_of(pid, &input),
                // A descriptor closed (or gone with its process) was read to its end.
                Some(fd) if fd_pos(pid, fd, &input).is_none_or(|pos| pos >= input_len) => {
                    read_end = Some(now);
                }
                Some(_) => {}
            }
        }
        if start.elapsed() > Duration::from_secs(900) {
            kill(&mut child, "-KILL");
            let _ = child.wait();
            panic!(
                "Fluent Bit ({}) did not exit within 900 s; its log: {}",
                workload.label(),
                log_path.display()
            );
        }
        std::thread::sleep(FB_POLL);
    };
    let exited = start.elapsed().as_secs_f64();
    // Written between the last poll and the exit.
    let len = fs::metadata(&out).map_or(0, |m| m.len());
    if len != size.0 {
        size = (len, Instant::now());
    }
    let log_tail = || {
        let text = fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "Fluent Bit ({}) failed (wait status {status}); the end of its log:\n{}",
        workload.label(),
        log_tail()
    );
    let written = count_lines(&out);
    assert!(
        written == lines,
        "Fluent Bit ({}) wrote {written} lines for {lines} input lines: a broken config or run, not a figure. The end of its log:\n{}",
        workload.label(),
        log_tail()
    );
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let run = FbRun {
        sample: Sample {
            seconds: size.1.duration_since(start).as_secs_f64(),
            cpu_seconds: seconds(usage.ru_utime) + seconds(usage.ru_stime),
            // Linux gives ru_maxrss in KiB.
            peak_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        },
        read_end: read_end.map(|t| t.duration_since(start).as_secs_f64()),
        exited,
    };
    let _ = fs::remove_dir_all(work);
    run
}

/// Reaps `pid` if it has exited: its wait status and resource usage (CPU, peak RSS).
fn reap(pid: u32) -> Option<(i32, libc::rusage)> {
    let mut status = 0;
    // SAFETY: `rusage` is plain data, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals of the right types.
    let reaped = unsafe { libc::wait4(pid as libc::pid_t, &mut status, libc::WNOHANG, &mut usage) };
    (reaped == pid as libc::pid_t).then_some((status, usage))
}

/// The descriptor under which process `pid` has `file` open.
fn fd_of(pid: u32, file: &Path) -> Option<u32> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .find(|e| fs::read_link(e.path()).is_ok_and(|p| p == file))
        .and_then(|e| e.file_name().to_str()?.parse().ok())
}

/// The file position of descriptor `fd` of process `pid`, while it is still `file`.
fn fd_pos(pid: u32, fd: u32, file: &Path) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    let pos = text
        .lines()
        .find_map(|l| l.strip_prefix("pos:"))
        .and_then(|v| v.trim().parse().ok())?;
    fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .is_ok_and(|p| p == file)
        .then_some(pos)
}

/// The report's paragraph on the Fluent Bit rows: how they were run and timed, and when each
/// run read its input to the end, completed its output and exited (medians).
pub fn fluent_bit_section(fb: &FluentBit, runs: &[(FbWorkload, &str, &[FbRun])]) -> String {
    let mut md = String::new();
    let flush = &fb.flush;
    let _ = writeln!(
        md,
        "Fluent Bit rows: {} (`{}`) with the one-shot configs beside it (tail with `Read_from_Head On` and `Exit_On_Eof On` -> file output, `Flush {flush}`), each run right after the log-agent run of the same workload on the same file, round-robin (the input warmed in the page cache before each run, outputs deleted between runs). Every run's output line count was checked against the input's; a difference fails the bench. Its time runs from its start until its `out.log` reached its final size (the size polled every {} ms; final once the process has exited), not until it exits: with `Flush {flush}` it writes its output in bursts {flush} s apart and exits only after a further flush and its shutdown (the exit column), whole seconds that would swamp short inputs. The figure still includes up to one flush interval between reading its last line and writing it (the first two columns), as log-agent's, until every input byte is checkpointed, includes its own delivery and ack. CPU (user + sys) and peak RSS are those of its whole run (`wait4`). {}\n",
        fb.version,
        fb.bin.display(),
        FB_POLL.as_millis(),
        fb.json_note,
    );
    let _ = writeln!(
        md,
        "| Fluent Bit workload | compared with | runs | input read to its end, s | output complete (timed), s | exit, s |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|");
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2)
            .map_or("-".to_owned(), |m| format!("{m:.2}"))
    };
    for (workload, agent_row, runs) in runs {
        let _ = writeln!(
            md,
            "| {} | {agent_row} | {} | {} | {} | {} |",
            workload.label(),
            runs.len(),
            median(runs.iter().filter_map(|r| r.read_end).collect()),
            median(runs.iter().map(|r| r.sample.seconds).collect()),
            median(runs.iter().map(|r| r.exited).collect()),
        );
    }
    md
}

/// Newlines in a file, read in pieces.
pub fn count_lines(path: &Path) -> u64 {
    let Ok(mut file) = File::open(path) else {
        return 0;
    };
    let mut buf = vec![0; 4 << 20];
    let mut lines = 0;
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            return lines;
        }
        lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
    }
}
