//! The `log-agent` binary run as a subprocess: [`command`] for one-shot commands (`validate`,
//! `replay`, `--help`), [`AgentProcess`] for `run --config`, for the tests that kill it with
//! `kill -9` (which an in-process agent cannot survive), signal it or sample its memory.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary under test: the package's own build, or `$LOG_AGENT_BIN` (another build of it, a
/// release one say, or a copy kept apart from a target directory that other builds overwrite).
pub fn binary() -> PathBuf {
    std::env::var_os("LOG_AGENT_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_log-agent")),
        PathBuf::from,
    )
}

/// `log-agent <args>`, without `$LOG_AGENT_CONFIG` (a developer's own config must not change
/// what a test runs) and with nothing on stdin.
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env_remove("LOG_AGENT_CONFIG")
        .stdin(Stdio::null());
    command
}

/// Runs `command` to its end: (exit code, `None` when a signal ended it; stdout; stderr).
pub fn outcome(command: &mut Command) -> (Option<i32>, String, String) {
    let output = command.output().expect("cannot start the log-agent binary");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The agent running as a subprocess, its stderr appended to a file; killed when dropped.
pub struct AgentProcess {
    child: Child,
    stderr: PathBuf,
}

impl AgentProcess {
    /// Starts `log-agent run --config <config>` with `info` logs appended to `stderr`.
    pub fn start(config: &Path, stderr: &Path) -> AgentProcess {
        AgentProcess::start_with(config, &[], stderr)
    }

    /// [`AgentProcess::start`] with more arguments after `run --config <config>`.
    pub fn start_with(config: &Path, args: &[&str], stderr: &Path) -> AgentProcess {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(stderr)
            .unwrap();
        let child = command(&["run", "--config", config.to_str().unwrap()])
            .args(args)
            // `info` unless the test is run with LOG_AGENT_LOG set (`log_agent=debug`).
            .env(
                "LOG_AGENT_LOG",
                std::env::var("LOG_AGENT_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start the log-agent binary");
        AgentProcess {
            child,
            stderr: stderr.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last `n` lines the agent (all of its runs with this stderr file) logged.
    pub fn logs(&self, n: usize) -> String {
        last_lines(&self.stderr, n)
    }

    /// Panics (with the agent's logs) unless the agent is still running.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "the agent exited unexpectedly with {status}; its logs:\n{}",
                self.logs(40)
            );
        }
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        self.assert_alive();
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert_eq!(status.code(), None, "the agent was not killed: {status}");
    }

    /// Sends SIGTERM (once the agent handles it) and waits up to `patience` for the exit.
    pub fn terminate(&mut self, patience: Duration) -> ExitStatus {
        self.signal("TERM", patience);
        self.wait_exit(patience)
    }

    /// Sends `SIG<name>` (`TERM`, `INT`, `HUP`) once the agent handles it, waiting up to
    /// `patience` for its handler.
    pub fn signal(&mut self, name: &str, patience: Duration) {
        let start = Instant::now();
        while !catches(self.pid(), name) {
            self.assert_alive();
            assert!(
                start.elapsed() < patience,
                "the agent did not install its SIG{name} handler within {patience:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        send_signal(self.pid(), name);
    }

    /// Waits up to `patience` for the agent to exit.
    pub fn wait_exit(&mut self, patience: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < patience,
                "the agent did not exit within {patience:?}; its logs:\n{}",
                self.logs(40)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls `condition` every 20 ms until it holds; panics, with `what()` and the agent's
    /// logs, if the agent exits or `patience` runs out first.
    pub fn wait_until(
        &mut self,
        patience: Duration,
        what: impl Fn() -> String,
        mut condition: impl FnMut() -> bool,
    ) {
        let start = Instant::now();
        while !condition() {
            self.assert_alive();
            assert!(
                start.elapsed() < patience,
                "gave up after {patience:?} waiting for {}; the agent's logs:\n{}",
                what(),
                self.logs(40)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `patience` for `needle` in the agent's last 200 lines of logs.
    pub fn wait_for_log(&mut self, patience: Duration, needle: &str) {
        let stderr = self.stderr.clone();
        self.wait_until(
            patience,
            || format!("`{needle}` to be logged"),
            || last_lines(&stderr, 200).contains(needle),
        );
    }

    /// Resident memory in KiB, from `/proc/<pid>/status` (`None` once it has exited).
    pub fn rss_kib(&self) -> Option<u64> {
        proc_field(self.pid(), "status", "VmRSS")
    }

    /// True when the agent holds a descriptor open on the file at `path` (that very file: a
    /// descriptor on an earlier file deleted from the same path does not count).
    pub fn has_open(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(file) = fs::metadata(path) else {
            return false;
        };
        let Ok(fds) = fs::read_dir(format!("/proc/{}/fd", self.pid())) else {
            return false;
        };
        // stat through /proc/<pid>/fd/<n> reaches the open file itself, deleted or not.
        fds.filter_map(Result::ok)
            .filter_map(|fd| fs::metadata(fd.path()).ok())
            .any(|open| (open.dev(), open.ino()) == (file.dev(), file.ino()))
    }
}

/// The last `n` lines of the file at `path` (none if it cannot be read).
fn last_lines(path: &Path, n: usize) -> String {
    let all = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = all.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A number field of `/proc/<pid>/<file>`, such as `VmRSS:  1234 kB` of `status` (in KiB) or
/// `rchar: 5678` of `io` (`None` once the process has exited).
pub fn proc_field(pid: u32, file: &str, field: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The number of signal `SIG<name>`.
fn signal_number(name: &str) -> u32 {
    match name {
        "HUP" => 1,
        "INT" => 2,
        "TERM" => 15,
        other => panic!("no number for SIG{other}"),
    }
}

/// True once process `pid` has installed a handler for `SIG<name>` (`SigCgt` of
/// `/proc/<pid>/status`): a signal sent before that gets its default action (for SIGTERM,
/// SIGINT and SIGHUP: the process dies) instead of the agent's handling.
pub fn catches(pid: u32, name: &str) -> bool {
    let bit = 1u64 << (signal_number(name) - 1);
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    text.lines()
        .find_map(|line| line.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & bit != 0)
}

/// `kill -<name> <pid>`.
pub fn send_signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid} failed: {status}");
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
