//! The real binary driven as a subprocess: `validate` output and exit codes, `run` drained by
//! SIGTERM, `kill -9` and restart mid-stream, and memory behind a sink that never accepts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use common::process::{AgentProcess, proc_field};
use common::{
    Checkpoints, LineCounter, World, append_numbered, append_numbered_in_bursts,
    assert_at_least_once_in_order, assert_exactly_once, config_yaml, numbered, numbered_lines,
    read_ndjson,
};
use serde_json::Value;

/// The tests that run the agent take turns: on a small machine, one writing hundreds of MiB or
/// stealing the CPU would distort what another measures (checkpoint lag, duplicates).
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> MutexGuard<'static, ()> {
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How long any single wait of these tests may take before it is declared a failure.
const PATIENCE: Duration = Duration::from_secs(60);

/// The binary with `args`, without the environment variables that would change its behaviour
/// (`$LOG_AGENT_LOG` too: `validate` must print nothing on stderr).
fn agent(args: &[&str]) -> Command {
    let mut cmd = common::process::command(args);
    cmd.env_remove("LOG_AGENT_LOG");
    cmd
}

fn output(mut cmd: impl std::borrow::BorrowMut<Command>) -> Output {
    cmd.borrow_mut()
        .output()
        .expect("cannot start the log-agent binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The standard test config (see `common::config_yaml`) over `logs/*.log` of `world`, writing
/// to `sink_path`, stored as `agent.yaml`; returns the file's path.
fn write_config(world: &World, sink_path: &Path) -> PathBuf {
    let include = world.log("*.log");
    let yaml = config_yaml(
        &world.data(),
        &[include.to_str().unwrap()],
        sink_path,
        "",
        "",
    );
    let path = world.path("agent.yaml");
    fs::write(&path, yaml).unwrap();
    path
}

/// [`write_config`] writing to the world's `out.ndjson`.
fn standard_config(world: &World) -> PathBuf {
    write_config(world, &world.out())
}

/// Asserts a bad-config outcome: exit code 2, nothing on stdout, one `log-agent: ` line on
/// stderr for each error, the first of them containing `needle`.
fn assert_bad_config(out: &Output, needle: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected exit code 2, got {:?}; stderr: {stderr}",
        out.status
    );
    assert!(
        out.stdout.is_empty(),
        "nothing should be printed on stdout, got: {}",
        text(&out.stdout)
    );
    assert!(
        !stderr.is_empty() && stderr.lines().all(|l| l.starts_with("log-agent: ")),
        "expected one `log-agent: ` line per error, got: {stderr:?}"
    );
    assert!(
        stderr.lines().next().unwrap_or_default().contains(needle),
        "the first error should name `{needle}`, got: {stderr}"
    );
}

#[test]
fn validate_prints_the_resolved_config_and_reads_log_agent_config() {
    let world = World::new();
    let config = standard_config(&world);
    let config_arg = config.to_str().unwrap();

    let out = output(agent(&["validate", "--config", config_arg]));
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "validate failed: {}",
        text(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "stderr should be empty: {}",
        text(&out.stderr)
    );
    // Defaults are filled in, given values are kept.
    assert!(stdout.contains("max_line_bytes: 1048576"), "{stdout}");
    assert!(stdout.contains("max_events: 10000"), "{stdout}");
    assert!(stdout.contains("checkpoint_interval_ms: 100"), "{stdout}");
    assert!(
        stdout.contains(world.data().to_str().unwrap()),
        "data_dir missing: {stdout}"
    );

    // What validate prints is itself a valid config that resolves to the same text.
    let resolved = world.path("resolved.yaml");
    fs::write(&resolved, &stdout).unwrap();
    let again = output(agent(&["validate", "--config", resolved.to_str().unwrap()]));
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout), stdout);

    // Without --config, $LOG_AGENT_CONFIG is read.
    let from_env = output(agent(&["validate"]).env("LOG_AGENT_CONFIG", &config));
    assert_eq!(
        from_env.status.code(),
        Some(0),
        "validate with LOG_AGENT_CONFIG failed: {}",
        text(&from_env.stderr)
    );
    assert_eq!(text(&from_env.stdout), stdout);

    // ... and it is that path that is reported when it is missing (not the default path).
    let missing = world.path("not-there.yaml");
    let from_env = output(agent(&["validate"]).env("LOG_AGENT_CONFIG", &missing));
    assert_bad_config(&from_env, missing.to_str().unwrap());

    // --config wins over $LOG_AGENT_CONFIG.
    let both =
        output(agent(&["validate", "--config", config_arg]).env("LOG_AGENT_CONFIG", &missing));
    assert_eq!(both.status.code(), Some(0), "{}", text(&both.stderr));
    assert_eq!(text(&both.stdout), stdout);
}

#[test]
fn bad_configs_exit_2_with_one_line_naming_the_key() {
    let world = World::new();
    let good = fs::read_to_string(standard_config(&world)).unwrap();
    let unset_var = "LOG_AGENT_CLI_TEST_SURELY_UNSET";
    assert!(good.contains("    inputs: [app]\n"), "{good}");
    let cases: Vec<(&str, String, String)> = vec![
        (
            "unknown key",
            good.replace(
                "    inputs: [app]\n",
                "    inputs: [app]\n    colour: red\n",
            ),
            "sinks.out.colour".to_owned(),
        ),
        (
            "unknown input",
            good.replace("    inputs: [app]\n", "    inputs: [nope]\n"),
            "sinks.out.inputs".to_owned(),
        ),
        (
            "unset variable",
            good.replacen("data_dir: ", &format!("data_dir: ${{{unset_var}}}/"), 1),
            unset_var.to_owned(),
        ),
    ];
    for (what, yaml, needle) in cases {
        assert_ne!(yaml, good, "{what}: the edit did not apply");
        let path = world.path("bad.yaml");
        fs::write(&path, &yaml).unwrap();
        let path = path.to_str().unwrap();
        for command in ["validate", "run"] {
            let out = output(agent(&[command, "--config", path]).env_remove(unset_var));
            println!("{command} / {what}: {}", text(&out.stderr).trim_end());
            assert_bad_config(&out, &needle);
        }
    }

    let missing = world.path("missing/agent.yaml");
    let missing = missing.to_str().unwrap();
    for command in ["validate", "run"] {
        let out = output(agent(&[command, "--config", missing]));
        println!("{command} / missing file: {}", text(&out.stderr).trim_end());
        assert_bad_config(&out, missing);
    }
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn run_ships_every_line_and_sigterm_drains_checkpoints_and_exits_0() {
    let _turn = heavy();
    let world = World::new();
    let log = world.log("app.log");
    append_numbered(&log, "t", 0..1_000, 60);
    let mut agent = AgentProcess::start(&standard_config(&world), &world.path("agent.stderr"));

    let out = world.out();
    let mut delivered = LineCounter::new(out.clone());
    agent.wait_until(
        PATIENCE,
        || format!("1000 lines delivered to {}", out.display()),
        || delivered.count() >= 1_000,
    );
    // Lines appended just before SIGTERM are read and delivered by the drain.
    append_numbered(&log, "t", 1_000..2_000, 60);
    let status = agent.terminate(PATIENCE);
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM should end the agent with 0, got {status}; its logs:\n{}",
        agent.logs(30)
    );

    assert_exactly_once(&read_ndjson(&out), "t", 2_000);
    let records = Checkpoints::read(&world.data()).live_at(&log);
    assert_eq!(
        records.len(),
        1,
        "expected one checkpoint record for {}, got {records:?} in {}",
        log.display(),
        fs::read_to_string(world.data().join("checkpoints.json")).unwrap_or_default()
    );
    assert_eq!(
        records[0].offset,
        file_len(&log),
        "the checkpoint should be at the end of the file: {:?}",
        records[0]
    );
}

/// Every event of an NDJSON file that a crash may have torn: a line cut short by `kill -9` is
/// closed with a newline by the next run's sink (or, written by something that does not, has
/// the next run's first line glued to it, which is recovered from the glued text). Returns the
/// events and how many torn lines were seen.
fn read_ndjson_after_crash(path: &Path) -> (Vec<Value>, usize) {
    let bytes = fs::read(path).unwrap();
    let mut events = Vec::new();
    let mut torn = 0;
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if let Ok(event) = serde_json::from_slice(line) {
            events.push(event);
            continue;
        }
        torn += 1;
        let start = b"{\"message\":";
        let last_start = (1..line.len())
            .rev()
            .find(|&i| line[i..].starts_with(start));
        match last_start.and_then(|i| serde_json::from_slice(&line[i..]).ok()) {
            Some(event) => events.push(event),
            // Only the start of an event: its line was not acked, and is shipped again.
            None if line.starts_with(start) => {}
            None => panic!("unreadable line: {}", text(line)),
        }
    }
    (events, torn)
}

#[test]
fn kill_9_mid_stream_then_restart_loses_nothing() {
    let _turn = heavy();
    const TOTAL: u64 = 100_000;
    const BURST: u64 = 1_000;
    /// The writer stops after this line until the agent was killed (and restarted), and the
    /// kill comes right after it wrote the burst ending here: the agent is busy with it.
    const KILL_AT: u64 = 40_000;
    /// Lines delivered before the kill: enough that a checkpoint that did not advance while
    /// running fails the test.
    const BEFORE_KILL: usize = 25_000;
    const WIDTH: usize = 60;

    let world = World::new();
    let config = standard_config(&world);
    let stderr = world.path("agent.stderr");
    let log = world.log("app.log");
    let out = world.out();
    let mut agent = AgentProcess::start(&config, &stderr);

    let (wrote_tx, wrote_rx) = mpsc::channel::<()>();
    let (killed_tx, killed_rx) = mpsc::channel::<()>();
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            append_numbered_in_bursts(&log, "k", 0..TOTAL, BURST, WIDTH, |seq| {
                if seq + BURST == KILL_AT {
                    wrote_tx.send(()).unwrap();
                    killed_rx.recv().unwrap();
                }
                // About 50,000 lines a second at most: the lines delivered within one
                // checkpoint interval (100 ms), which a crash repeats, stay well below the bound.
                std::thread::sleep(Duration::from_millis(20));
            });
        })
    };

    let mut delivered = LineCounter::new(out.clone());
    agent.wait_until(
        PATIENCE,
        || format!("{BEFORE_KILL} lines delivered before the kill"),
        || delivered.count() >= BEFORE_KILL,
    );
    wrote_rx
        .recv_timeout(PATIENCE)
        .expect("the writer did not reach the kill point");
    agent.kill9();
    let at_kill = delivered.count() as u64;
    let line_len = numbered("k", 0, WIDTH).len() as u64;
    let checkpointed = Checkpoints::read(&world.data())
        .live_at(&log)
        .first()
        .map_or(0, |r| r.offset);
    println!(
        "killed with {at_kill} lines delivered, {} checkpointed",
        checkpointed / line_len
    );
    assert!(at_kill < TOTAL, "everything was delivered before the kill");
    assert_eq!(checkpointed % line_len, 0, "checkpoint inside a line");
    let checkpointed = checkpointed / line_len;
    assert!(
        checkpointed <= at_kill,
        "the checkpoint ({checkpointed} lines) passed lines not delivered ({at_kill})"
    );

    let mut agent = AgentProcess::start(&config, &stderr);
    killed_tx.send(()).unwrap();
    writer.join().expect("the writer thread panicked");
    let size = file_len(&log);
    assert_eq!(size, TOTAL * line_len);
    let data = world.data();
    agent.wait_until(
        PATIENCE,
        || {
            format!(
                "the checkpoint to reach the end of the log ({size} bytes), got {:?}",
                Checkpoints::read(&data).live_at(&log)
            )
        },
        || {
            Checkpoints::read(&data)
                .live_at(&log)
                .iter()
                .any(|r| r.offset == size)
        },
    );
    let status = agent.terminate(PATIENCE);
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM should end the agent with 0, got {status}; its logs:\n{}",
        agent.logs(30)
    );

    let (events, torn) = read_ndjson_after_crash(&out);
    assert!(torn <= 1, "{torn} torn lines, but there was one crash");
    assert_at_least_once_in_order(&events, "k", TOTAL);
    let duplicates = events.len() as u64 - TOTAL;
    println!("{duplicates} duplicates, {torn} torn line(s)");
    assert_eq!(
        duplicates,
        at_kill - checkpointed,
        "the restart should repeat exactly the lines delivered past the checkpoint"
    );
    // How far the checkpoint trails the deliveries depends on the machine's speed (a checkpoint
    // write is spaced by its own cost); that it moved at all while the agent ran does not.
    assert!(
        checkpointed > 0,
        "the checkpoint did not advance while the agent ran ({at_kill} lines delivered)"
    );
}

const MIB: u64 = 1024 * 1024;

#[test]
fn memory_stays_bounded_behind_a_sink_that_never_accepts() {
    let _turn = heavy();
    const TOTAL_BYTES: u64 = 300 * MIB;
    const WIDTH: usize = 200;
    const LIMIT_KIB: u64 = 200 * 1024;

    let world = World::new();
    // A FIFO nobody reads: the file sink blocks forever opening it.
    let fifo = world.path("sink.fifo");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success(), "mkfifo failed: {status}");
    let config = write_config(&world, &fifo);
    let mut agent = AgentProcess::start(&config, &world.path("agent.stderr"));
    let pid = agent.pid();

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                if let Some(rss) = proc_field(pid, "status", "VmRSS") {
                    peak = peak.max(rss);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    };

    // Numbered lines of WIDTH bytes (the newline included), written 1 MiB at a time.
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(world.log("app.log"))
        .unwrap();
    let per_piece = MIB.div_ceil(WIDTH as u64);
    let mut written = 0;
    let mut seq = 0u64;
    while written < TOTAL_BYTES {
        let piece = numbered_lines("m", seq..seq + per_piece, WIDTH - 1);
        file.write_all(piece.as_bytes()).unwrap();
        written += piece.len() as u64;
        seq += per_piece;
    }
    drop(file);
    agent.assert_alive();

    // Give the agent the chance to read on: wait until its reads stop growing.
    let start = Instant::now();
    let mut read = proc_field(pid, "io", "rchar").unwrap_or(0);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        agent.assert_alive();
        let now = proc_field(pid, "io", "rchar").unwrap_or(read);
        if now.saturating_sub(read) < MIB / 2 || start.elapsed() > PATIENCE {
            read = now;
            break;
        }
        read = now;
    }
    stop.store(true, Ordering::Relaxed);
    let sampled_peak = sampler.join().unwrap();
    let high_water = proc_field(pid, "status", "VmHWM").unwrap_or(0);
    let logs = agent.logs(30);
    agent.kill9();

    println!(
        "wrote {} MiB; the agent read {} MiB, peak RSS sampled {} MiB, high-water mark {} MiB",
        written / MIB,
        read / MIB,
        sampled_peak / 1024,
        high_water / 1024
    );
    assert!(
        read > MIB,
        "the agent read only {read} bytes: it did not tail the log; its logs:\n{logs}"
    );
    let peak = sampled_peak.max(high_water);
    assert!(
        peak < LIMIT_KIB,
        "peak RSS {} MiB (sampled {} MiB) behind a blocked sink, over the {} MiB bound; \
         the agent read {} MiB of the {} MiB log",
        peak / 1024,
        sampled_peak / 1024,
        LIMIT_KIB / 1024,
        read / MIB,
        written / MIB
    );
    assert!(
        read < written / 2,
        "the agent read {} MiB of the {} MiB log although its sink accepts nothing: \
         it should stop reading and leave the file as the buffer",
        read / MIB,
        written / MIB
    );
}
