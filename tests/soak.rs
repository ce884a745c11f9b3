//! Soak test, sized for CI: 200 files written at different rates with rename rotation, shipped
//! by the `log-agent` binary to a Kafka-API broker (Tansu, SQLite storage) that is stopped and
//! restarted twice while the agent is killed with `kill -9` and restarted twice. At the end
//! every line is read back from the topic at least once, first deliveries in order within each
//! file, and the agent's resident memory, sampled from `/proc/<pid>/status` all along, stayed
//! flat: the agent that runs from the second kill to the end (three quarters of the run,
//! through both outages) peaks over the later half of its run within 1.5 times its peak over
//! the earlier half plus 16 MiB (a bound on growth, not a timing figure).
//!
//! `SOAK_SECS` (60 by default) sets how long the files are written, `SOAK_FILES` (200) how
//! many; the outages and kills come at the same fractions of the run whatever its length.
//! `tansu` must be on the PATH (or in `$TANSU`); `.ci/test` installs it. The producer runs
//! without idempotence: Tansu 0.6 refuses an idempotent producer after a restart (README).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::broker::Broker;
use common::process::{AgentProcess, proc_field};
use common::{AgentYaml, append_numbered, checkpointed, consume_within};

/// Bytes per line, the newline included.
const WIDTH: usize = 100;
/// A live file is renamed away (to `f<i>.log.<n>`, still included) past this size.
const ROTATE_BYTES: u64 = 32 * 1024;
/// Writes come in ticks; file `i` writes every `PERIODS[i % 5]` ticks, `1 + (i / 5) % 4`
/// lines at a time: from 25 lines/s down to 0.25 lines/s.
const TICK: Duration = Duration::from_millis(100);
const PERIODS: [u64; 5] = [1, 2, 5, 10, 20];

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn tag(i: usize) -> String {
    format!("f{i:04}")
}

/// What the writer thread has written: lines per file.
type Written = Arc<Mutex<Vec<u64>>>;

/// Writes the files until `stop`, rotating each past [`ROTATE_BYTES`].
fn write_files(logs: PathBuf, files: usize, stop: Arc<AtomicBool>, written: Written) {
    let mut sizes = vec![0u64; files];
    let mut rotations = 0;
    let mut tick = 0u64;
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        for (i, size) in sizes.iter_mut().enumerate() {
            if !tick.is_multiple_of(PERIODS[i % PERIODS.len()]) {
                continue;
            }
            let burst = 1 + (i as u64 / 5) % 4;
            let live = logs.join(format!("f{i:04}.log"));
            let from = written.lock().unwrap()[i];
            append_numbered(&live, &tag(i), from..from + burst, WIDTH);
            written.lock().unwrap()[i] = from + burst;
            *size += burst * WIDTH as u64;
            if *size > ROTATE_BYTES {
                rotations += 1;
                fs::rename(&live, logs.join(format!("f{i:04}.log.{rotations}"))).unwrap();
                *size = 0;
            }
        }
        tick += 1;
        // On schedule, not TICK after the last write: a slow tick does not slow the rates.
        let next = start + TICK * tick as u32;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

/// Samples the resident memory of the agent whose pid is in `pid` every 250 ms until `stop`:
/// `(seconds since the start, pid, KiB)`.
fn sample_rss(pid: Arc<AtomicU32>, stop: Arc<AtomicBool>) -> Vec<(f64, u32, u64)> {
    let start = Instant::now();
    let mut samples = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let pid = pid.load(Ordering::Relaxed);
        if let Some(kib) = proc_field(pid, "status", "VmRSS") {
            samples.push((start.elapsed().as_secs_f64(), pid, kib));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    samples
}

/// The agent's config: rotated files read too, into Kafka, paced as in production (slower
/// scans and checkpoints than the other tests' `FAST` settings).
fn config(root: &Path, logs: &Path, bootstrap: &str) -> PathBuf {
    let include = logs.join("*.log*");
    AgentYaml::new(&root.join("data"))
        .top("checkpoint_interval_ms: 200\nshutdown_timeout_ms: 10000")
        .source(
            "app",
            &format!(
                "type: file
include: [{:?}]
scan_interval_ms: 200
rotate_wait_ms: 1000",
                include.to_str().unwrap()
            ),
        )
        .sink(
            "kafka",
            "kafka",
            &["app"],
            &format!(
                "brokers: {bootstrap}
topic: soak
idempotence: false
batch: {{ max_events: 1000, timeout_ms: 50 }}
retry: {{ initial_backoff_ms: 100, max_backoff_ms: 1000 }}
librdkafka_options: {{ message.timeout.ms: \"5000\" }}"
            ),
        )
        .write(&root.join("agent.yaml"))
}

#[test]
fn files_rotating_through_broker_outages_and_kills_lose_nothing_and_memory_stays_flat() {
    let secs = env_or("SOAK_SECS", 60);
    let files = env_or("SOAK_FILES", 200) as usize;
    let run = Duration::from_secs(secs);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let logs = root.join("logs");
    let broker_dir = root.join("broker");
    fs::create_dir(&logs).unwrap();
    fs::create_dir(&broker_dir).unwrap();
    // SQLite storage: what the broker acknowledged survives its restarts.
    let storage = "sqlite://tansu.db";
    let mut broker = Some(Broker::start(&broker_dir, 0, storage));
    let port = broker.as_ref().unwrap().port;
    broker.as_ref().unwrap().create_topic("soak");
    let bootstrap = format!("127.0.0.1:{port}");
    let config = config(root, &logs, &bootstrap);
    let stderr = root.join("agent.stderr");

    let mut agent = AgentProcess::start(&config, &stderr);
    let pid = Arc::new(AtomicU32::new(agent.pid()));
    let stop = Arc::new(AtomicBool::new(false));
    let written: Written = Arc::new(Mutex::new(vec![0; files]));
    let writer = {
        let (logs, stop, written) = (logs.clone(), Arc::clone(&stop), Arc::clone(&written));
        std::thread::spawn(move || write_files(logs, files, stop, written))
    };
    let sampler = {
        let (pid, stop) = (Arc::clone(&pid), Arc::clone(&stop));
        std::thread::spawn(move || sample_rss(pid, stop))
    };

    // What happens when, as fractions of the run.
    enum Event {
        BrokerDown,
        BrokerUp,
        Kill,
    }
    // The kills come first, so that the last agent runs through both outages: its memory is
    // what is watched.
    let schedule = [
        (0.12, Event::Kill),
        (0.25, Event::Kill),
        (0.40, Event::BrokerDown),
        (0.50, Event::BrokerUp),
        (0.65, Event::BrokerDown),
        (0.75, Event::BrokerUp),
    ];
    let start = Instant::now();
    for (at, event) in schedule {
        std::thread::sleep((run.mul_f64(at)).saturating_sub(start.elapsed()));
        match event {
            Event::BrokerDown => broker.take().unwrap().stop(),
            Event::BrokerUp => broker = Some(Broker::start(&broker_dir, port, storage)),
            Event::Kill => {
                agent.kill9();
                std::thread::sleep(Duration::from_millis(500));
                agent = AgentProcess::start(&config, &stderr);
                pid.store(agent.pid(), Ordering::Relaxed);
            }
        }
        println!(
            "{:5.1} s: {}",
            start.elapsed().as_secs_f64(),
            match event {
                Event::BrokerDown => "broker stopped",
                Event::BrokerUp => "broker restarted",
                Event::Kill => "agent killed with -9 and restarted",
            }
        );
    }
    std::thread::sleep(run.saturating_sub(start.elapsed()));
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("the writer panicked");
    let samples = sampler.join().unwrap();
    agent.assert_alive();

    // Everything written is acked: every checkpoint at its file's end.
    let written = written.lock().unwrap().clone();
    let total: u64 = written.iter().sum();
    let bytes = total * WIDTH as u64;
    let data = root.join("data");
    let caught_up = Instant::now();
    while checkpointed(&data) < bytes {
        agent.assert_alive();
        assert!(
            caught_up.elapsed() < Duration::from_secs(120),
            "checkpoints at {} of {bytes} bytes 120 s after the writes stopped; logs:\n{}",
            checkpointed(&data),
            agent.logs(30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let drain = caught_up.elapsed();
    let status = agent.terminate(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "logs:\n{}", agent.logs(30));

    let received = consume_within(
        &bootstrap,
        "soak",
        total as usize,
        &[],
        Duration::from_secs(120),
    );
    drop(broker);

    // Zero lines lost; first deliveries in order within each file (generation key).
    let by_tag: HashMap<String, usize> = (0..files).map(|i| (tag(i), i)).collect();
    let mut seen: Vec<BTreeMap<u64, usize>> = vec![BTreeMap::new(); files];
    let mut last_first: HashMap<String, u64> = HashMap::new();
    let mut problems = Vec::new();
    for message in &received {
        let value = &message.value;
        let text = value["message"].as_str().unwrap_or_default();
        let mut words = text.split(' ');
        let (Some(i), Some(seq)) = (
            words.next().and_then(|t| by_tag.get(t)),
            words.next().and_then(|s| s.parse::<u64>().ok()),
        ) else {
            problems.push(format!("not a line written: {value}"));
            continue;
        };
        if seq >= written[*i] {
            problems.push(format!("{text}: never written"));
            continue;
        }
        let count = seen[*i].entry(seq).or_default();
        *count += 1;
        if *count == 1 {
            let stem = value["id"].as_str().unwrap().split('-').next().unwrap();
            if let Some(last) = last_first.insert(stem.to_owned(), seq)
                && last > seq
            {
                problems.push(format!("{}: {seq} first delivered after {last}", tag(*i)));
            }
        }
    }
    let mut missing = 0;
    for (i, n) in written.iter().enumerate() {
        let lost: Vec<u64> = (0..*n).filter(|s| !seen[i].contains_key(s)).collect();
        if !lost.is_empty() {
            missing += lost.len();
            problems.push(format!(
                "{}: {} of {n} lines lost (first {:?})",
                tag(i),
                lost.len(),
                &lost[..lost.len().min(5)]
            ));
        }
    }
    let duplicates = received.len() as u64 - (total - missing as u64).min(received.len() as u64);
    let rotated = fs::read_dir(&logs).unwrap().count() - files;
    println!(
        "{files} files, {total} lines ({} MiB), {rotated} rotations; {} messages read back, \
         {duplicates} duplicates; caught up {:.1} s after the writes stopped",
        bytes / (1024 * 1024),
        received.len(),
        drain.as_secs_f64()
    );
    problems.truncate(20);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(missing, 0);

    // Memory flat: the last agent, which ran from the second kill to the end through both
    // outages, peaked over the later half of its run within 1.5 times (plus 16 MiB) its peak
    // over the earlier half, each half holding one outage.
    let last = agent.pid();
    let watched: Vec<(f64, u64)> = samples
        .iter()
        .filter(|(_, pid, _)| *pid == last)
        .map(|(t, _, kib)| (*t, *kib))
        .collect();
    let (Some(from), Some(to)) = (watched.first(), watched.last()) else {
        panic!("no RSS samples of the last agent: {samples:?}");
    };
    let half = (from.0 + to.0) / 2.0;
    let peak = |later: bool| {
        watched
            .iter()
            .filter(|(t, _)| (*t >= half) == later)
            .map(|(_, kib)| *kib)
            .max()
            .unwrap_or(0)
    };
    let (first, second) = (peak(false), peak(true));
    println!(
        "RSS peak of the last agent ({:.0} s to {:.0} s, {} samples): {} MiB over the first \
         half, {} MiB over the second",
        from.0,
        to.0,
        watched.len(),
        first / 1024,
        second / 1024,
    );
    assert!(first > 0 && second > 0, "no RSS samples: {watched:?}");
    assert!(
        second <= first * 3 / 2 + 16 * 1024,
        "RSS grew: peak {second} KiB over the second half against {first} KiB over the first"
    );
}
