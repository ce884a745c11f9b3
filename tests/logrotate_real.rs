//! The agent against the real tools: Debian's nginx under a sustained load on loopback, its
//! access log rotated by Debian's logrotate every second or so in each mode a user runs
//! (create with a USR1 reopen, compress, delaycompress, copytruncate with and without
//! compress, copy, dateext, olddir, rotate N deleting generations while the agent is stopped,
//! size), and copytruncate of a file that one process appends to through one `O_APPEND`
//! descriptor. The agent binary tails `access.log*` in the log directory and in the olddir.
//!
//! Why real tools: self-written simulations all passed while the real ones broke the agent.
//! logrotate (with gzip) creates the `.gz` empty and fills it afterwards, and an agent that
//! decided "plain text" on the empty file shipped gzip bytes as lines; with copytruncate the
//! writer goes on appending between logrotate's copy and its truncation, so the copy can end
//! before the agent's read offset in the original and was not recognised as its copy: most
//! lines were shipped twice. Here nothing is simulated.
//!
//! The oracle (`common/oracle.rs`): once the load and the rotations stop and the agent has
//! shipped what is on disk (and has stopped cleanly, SIGTERM), every generation left on disk is
//! read (`.gz` decompressed) and each test asserts that every request number on disk was
//! shipped, that every shipped event is a line nginx wrote (no gzip bytes, no `invalid_utf8`),
//! and that no number was shipped twice (no kill happened). Lines sent that are neither on disk
//! nor shipped are counted as lost: legitimate for copytruncate (written between the copy and
//! the truncation) and for generations deleted before the agent read them, a broken test
//! anywhere else. Each test prints its counts.
//!
//! `TOOLS_SECS` (8) sets how long the load runs; `TOOLS_KEEP=1` keeps a failed test's
//! directory (logs, agent config, stderr and output). Runs as root in CI (nginx's workers then
//! run as root too, see `common/tools.rs`); loopback only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::config_yaml;
use common::oracle::{Disk, Lines, Run, Shipped, check};
use common::process::AgentProcess;
use common::tools::{Logrotate, Nginx, Scene, Worker, appender, load, signal};

const TAG: &str = "t";
/// Requests per second from the load client: about 0.5 MiB of access log a second, a few
/// hundred KiB per generation, while the agent and the tools share two cores with whatever
/// else the machine runs.
const NGINX_RATE: u32 = 5_000;
/// Lines per second of the `O_APPEND` writer, each its own `write(2)` (`TOOLS_APPEND_RATE`
/// sets another, 0 for flat out).
const APPEND_RATE: u32 = 20_000;
const APPEND_WIDTH: usize = 64;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

enum Writer {
    Nginx,
    Appender,
}

/// One test: the writer, logrotate's directives and how often it runs.
struct Case {
    name: &'static str,
    writer: Writer,
    /// Inside the log's block; `REOPEN` stands for nginx's postrotate script, `OLDDIR` for the
    /// olddir's path. `rotate 1000` unless they say otherwise.
    directives: &'static str,
    every: Duration,
    force: bool,
    /// SIGSTOP the agent from a quarter of the run to three quarters.
    freeze: bool,
    loss_allowed: bool,
}

impl Case {
    fn nginx(name: &'static str, directives: &'static str) -> Case {
        Case {
            name,
            writer: Writer::Nginx,
            directives,
            every: Duration::from_millis(700),
            force: true,
            freeze: false,
            loss_allowed: false,
        }
    }

    fn appender(name: &'static str, directives: &'static str) -> Case {
        Case {
            writer: Writer::Appender,
            ..Case::nginx(name, directives)
        }
    }

    fn every(self, millis: u64) -> Case {
        Case {
            every: Duration::from_millis(millis),
            ..self
        }
    }

    /// Lines may be legitimately lost (copytruncate, generations deleted).
    fn lossy(self) -> Case {
        Case {
            loss_allowed: true,
            ..self
        }
    }

    /// Runs the case: the writer and the rotations for `TOOLS_SECS`, then the oracle.
    fn run(self) {
        let scene = Scene::new(self.name);
        let logs = scene.subdir("logs");
        let old = scene.subdir("old");
        let log = logs.join("access.log");
        let nginx = match self.writer {
            Writer::Nginx => Some(Nginx::start(&scene.subdir("nginx"), &log)),
            Writer::Appender => None,
        };
        let mut directives = self.directives.replace("OLDDIR", old.to_str().unwrap());
        if let Some(nginx) = &nginx {
            directives = directives.replace("REOPEN", &nginx.postrotate_reopen());
        }
        if !directives.contains("rotate ") {
            directives = format!("rotate 1000\n  {directives}");
        }
        let logrotate = Arc::new(Logrotate::new(scene.path(), &log, &directives));
        let out = scene.path().join("out.ndjson");
        let config = scene.path().join("agent.yaml");
        let include = [logs.join("access.log*"), old.join("access.log*")];
        let include: Vec<&str> = include.iter().map(|p| p.to_str().unwrap()).collect();
        let yaml = config_yaml(
            &scene.path().join("data"),
            &include,
            &out,
            "    format: raw",
            "",
        );
        std::fs::write(&config, yaml).unwrap();
        let mut agent = AgentProcess::start(&config, &scene.path().join("agent.stderr"));

        let (writer, lines): (Worker, Lines) = match &nginx {
            Some(nginx) => (
                load(nginx.address(), TAG, Some(NGINX_RATE)),
                Lines::Nginx { tag: TAG.into() },
            ),
            None => (
                appender(&log, TAG, APPEND_WIDTH, {
                    let rate = env_or("TOOLS_APPEND_RATE", APPEND_RATE.into());
                    (rate > 0).then(|| u32::try_from(rate).unwrap())
                }),
                Lines::Numbered {
                    tag: TAG.into(),
                    width: APPEND_WIDTH,
                },
            ),
        };
        let rotator = logrotate.every(self.every, self.force);
        let run_for = Duration::from_secs(env_or("TOOLS_SECS", 8));
        let start = Instant::now();
        if self.freeze {
            // The agent is behind: stopped while logrotate rotates and deletes generations.
            std::thread::sleep(run_for / 4);
            agent.assert_alive();
            assert!(signal(agent.pid(), libc::SIGSTOP));
            std::thread::sleep(run_for / 2);
            assert!(signal(agent.pid(), libc::SIGCONT));
        }
        std::thread::sleep(run_for.saturating_sub(start.elapsed()));
        let logrotate_runs = rotator.stop();
        let sent = writer.stop();
        // nginx logs a request just after answering it.
        std::thread::sleep(Duration::from_millis(200));

        let disk = Disk::read(&lines, &[logs, old], "access.log");
        let mut shipped = Shipped::new(&out);
        shipped.wait_for(&lines, &disk, &mut agent);
        let status = agent.terminate(Duration::from_secs(30));
        assert!(
            status.success(),
            "the agent exited with {status}; its logs:\n{}",
            agent.logs(40)
        );
        shipped.update(&lines);
        let run = Run {
            name: self.name,
            sent,
            logrotate_runs,
            loss_allowed: self.loss_allowed,
        };
        if let Err(failure) = check(&run, &disk, &shipped) {
            // What the agent decided about each file (copies held, taken for copies, read as
            // files of their own) is in its log.
            panic!("{failure}\nthe agent's last log lines:\n{}", agent.logs(80));
        }
        drop(nginx);
        drop(scene);
    }
}

/// Rename, then nginx reopens its path on USR1 (Debian's own nginx logrotate config, less the
/// compression).
#[test]
fn create_and_usr1_reopen() {
    Case::nginx("create", "create\n  REOPEN").run();
}

/// The rotated file is gzipped right away: logrotate creates `access.log.1.gz` empty, gzip
/// fills it, then `access.log.1` is unlinked.
#[test]
fn compress() {
    Case::nginx("compress", "create\n  compress\n  REOPEN").run();
}

/// The previous generation is gzipped at the next rotation (`.1` -> `.2.gz`), while the newest
/// stays plain: Debian's default for nginx.
#[test]
fn delaycompress() {
    Case::nginx(
        "delaycompress",
        "create\n  compress\n  delaycompress\n  REOPEN",
    )
    .run();
}

/// Copy, then truncate the file nginx goes on appending to; what nginx writes between the two
/// is lost (logrotate's doing).
#[test]
fn copytruncate() {
    Case::nginx("copytruncate", "copytruncate").lossy().run();
}

/// copytruncate, then the copy is gzipped and removed.
#[test]
fn copytruncate_and_compress() {
    Case::nginx("copytruncate_compress", "copytruncate\n  compress")
        .lossy()
        .run();
}

/// A copy and no truncation: the original goes on growing, each copy is a prefix of it.
#[test]
fn copy() {
    // Each copy holds the whole log so far: fewer of them.
    Case::nginx("copy", "copy").every(1000).run();
}

/// Dated names (`access.log-20261206-021550`). A name is taken once a second: rotations come
/// more than a second apart so that two never collide.
#[test]
fn dateext() {
    Case::nginx(
        "dateext",
        "create\n  dateext\n  dateformat -%Y%m%d-%H%M%S\n  REOPEN",
    )
    .every(1100)
    .run();
}

/// Rotated files go to another directory, which the agent's `include` matches too.
#[test]
fn olddir() {
    Case::nginx("olddir", "create\n  olddir OLDDIR\n  REOPEN").run();
}

/// `rotate 2`: the oldest generation is deleted at each rotation, while the agent is stopped
/// (SIGSTOP) for half the run; the generations it never opened are legitimately lost, what is
/// left on disk must all arrive.
#[test]
fn rotate_2_deletes_generations_while_the_agent_is_stopped() {
    Case {
        freeze: true,
        ..Case::nginx("rotate_2", "rotate 2\n  create\n  REOPEN")
            .every(500)
            .lossy()
    }
    .run();
}

/// No `-f`: logrotate runs often and rotates only once the log has passed 256 KiB (`maxsize`
/// with `hourly` would rotate the same way, by size, between the hourly rotations).
#[test]
fn size() {
    Case {
        force: false,
        ..Case::nginx("size", "size 256k\n  create\n  REOPEN").every(150)
    }
    .run();
}

/// copytruncate of a file one process appends to through a single `O_APPEND` descriptor.
#[test]
fn copytruncate_of_one_o_append_writer() {
    Case::appender("append_copytruncate", "copytruncate")
        .lossy()
        .run();
}

/// The same, with the copy gzipped.
#[test]
fn copytruncate_and_compress_of_one_o_append_writer() {
    Case::appender("append_copytruncate_compress", "copytruncate\n  compress")
        .lossy()
        .run();
}
