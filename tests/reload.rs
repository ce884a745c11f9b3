//! Config reloads in-process (`run_with` and its reload hook): sinks added, removed and changed
//! and sources changed take effect while lines are written; unchanged sources go on; nothing
//! delivered is lost or delivered twice; a bad config is refused and the running one kept.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use log_agent::config::ConfigError;

/// Appends numbered lines of `tag` to `path`, a few every 2 ms, until stopped; the thread
/// returns how many it wrote.
struct Writer {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl Writer {
    fn start(path: PathBuf, tag: &'static str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                let mut seq = 0;
                while !stop.load(Ordering::Relaxed) {
                    append_numbered(&path, tag, seq..seq + 5, 50);
                    seq += 5;
                    std::thread::sleep(Duration::from_millis(2));
                }
                seq
            }
        });
        Writer { stop, thread }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// A config over `logs/app*.log` (source `app`) and `logs/web*.log` (source `web`, with
/// `web_extra` keys), for [`file_sink`]s to be added to.
fn two_sources(world: &World, web_extra: &str) -> AgentYaml {
    world
        .yaml()
        .top("checkpoint_interval_ms: 50\nshutdown_timeout_ms: 10000")
        .file_source("app", &[&world.log("app*.log")], "")
        .file_source("web", &[&world.log("web*.log")], web_extra)
}

/// `yaml` with a file sink `name` fed by `inputs` into `path` in small batches, with `extra`
/// keys.
fn file_sink(yaml: AgentYaml, name: &str, inputs: &[&str], path: &Path, extra: &str) -> AgentYaml {
    let keys = format!(
        "batch: {{ max_events: 50, timeout_ms: 20 }}\n{}",
        common::yaml::dedent(extra)
    );
    yaml.file_sink(name, inputs, path, &keys)
}

fn out(world: &World, name: &str) -> PathBuf {
    world.dir.path().join(format!("{name}.ndjson"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_sinks_added_removed_and_changed_while_unchanged_sources_go_on() {
    let world = World::new();
    let (all, gone, extra) = (
        out(&world, "all"),
        out(&world, "gone"),
        out(&world, "extra"),
    );
    let before = two_sources(&world, "");
    let before = file_sink(before, "all", &["app", "web"], &all, "");
    let before = file_sink(before, "gone", &["web"], &gone, "");
    let after = two_sources(&world, "fields: { generation: 2 }");
    let after = file_sink(
        after,
        "all",
        &["app", "web"],
        &all,
        "buffer: { max_events: 300 }",
    );
    let after = file_sink(after, "extra", &["app"], &extra, "");
    let (agent, mut reloads) = Agent::start_reloadable(before.config());
    let app = Writer::start(world.log("app.log"), "a");
    let web = Writer::start(world.log("web.log"), "w");
    assert!(wait_for(Duration::from_secs(30), || read_ndjson(&all).len() > 500).await);

    let report = reloads.reload(Ok(after.config())).await.unwrap();
    assert_eq!(report.sources_kept, ["app"]);
    assert_eq!(report.sources_restarted, ["web"]);
    assert_eq!(report.sinks_added, ["extra"]);
    assert_eq!(report.sinks_removed, ["gone"]);
    assert_eq!(report.sinks_reconfigured, ["all"]);
    assert!(wait_for(Duration::from_secs(30), || read_ndjson(&extra).len() > 500).await);
    let (app_lines, web_lines) = (app.finish(), web.finish());
    assert!(
        wait_for(Duration::from_secs(30), || {
            read_ndjson(&all).len() as u64 == app_lines + web_lines
        })
        .await,
        "{} of {} lines",
        read_ndjson(&all).len(),
        app_lines + web_lines
    );
    let summary = agent.stop().await;
    assert!(summary.drained);
    assert_eq!(summary.metrics.reloads_applied, 1);

    // The sink that stayed has every line once, in order, across the reload.
    let delivered = read_ndjson(&all);
    assert_exactly_once(&delivered, "a", app_lines);
    assert_exactly_once(&delivered, "w", web_lines);
    assert_at_least_once_in_order(&delivered, "a", app_lines);
    assert_at_least_once_in_order(&delivered, "w", web_lines);
    // The restarted source resumed where it was, under its new settings.
    let web_events = of_tag(&delivered, "w");
    let first_new = web_events
        .iter()
        .position(|e| e["generation"] == 2)
        .expect("no event of the new generation");
    assert!(
        web_events[first_new..].iter().all(|e| e["generation"] == 2),
        "old settings after the restart"
    );
    // The sink added gets what was read from the reload on, once, in order, without a gap.
    let added = of_tag(&read_ndjson(&extra), "a");
    let seqs: Vec<u64> = added
        .iter()
        .map(|e| e["message"].as_str().unwrap()[2..11].parse().unwrap())
        .collect();
    let first = seqs[0];
    assert_eq!(
        seqs,
        (first..app_lines).collect::<Vec<_>>(),
        "the added sink's lines"
    );
    assert!(of_tag(&read_ndjson(&extra), "w").is_empty());
    // The sink removed got a part of `web` before the reload, and nothing after.
    let removed = read_ndjson(&gone);
    assert!(!removed.is_empty());
    assert!(removed.iter().all(|e| e["generation"].is_null()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_fixed_by_a_reload_delivers_what_it_held_while_it_was_down() {
    let world = World::new();
    let fixed = out(&world, "fixed");
    let broken = world.dir.path().join("no-such-dir").join("out.ndjson");
    let config = |path: &Path| {
        let retry = "retry: { initial_backoff_ms: 20, max_backoff_ms: 200 }";
        file_sink(two_sources(&world, ""), "out", &["app", "web"], path, retry).config()
    };
    let (agent, mut reloads) = Agent::start_reloadable(config(&broken));
    append_numbered(&world.log("app.log"), "d", 0..2_000, 50);
    // Read, batched and failing: the sink holds the lines (the source waits on it).
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(read_ndjson(&fixed).is_empty());

    let report = reloads.reload(Ok(config(&fixed))).await.unwrap();
    assert_eq!(report.sinks_reconfigured, ["out"]);
    assert_eq!(report.sources_kept, ["app", "web"]);
    append_numbered(&world.log("app.log"), "d", 2_000..2_500, 50);
    assert!(
        wait_for(Duration::from_secs(30), || read_ndjson(&fixed).len()
            >= 2_500)
        .await
    );
    let summary = agent.stop().await;
    assert!(summary.drained);
    let delivered = read_ndjson(&fixed);
    assert_exactly_once(&delivered, "d", 2_500);
    assert_at_least_once_in_order(&delivered, "d", 2_500);
    assert_eq!(
        checkpointed(&world.data()),
        std::fs::metadata(world.log("app.log")).unwrap().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_is_refused_and_counted_and_the_running_one_goes_on() {
    let world = World::new();
    let all = out(&world, "all");
    let good = file_sink(two_sources(&world, ""), "all", &["app", "web"], &all, "");
    let (agent, mut reloads) = Agent::start_reloadable(good.config());
    append_numbered(&world.log("app.log"), "g", 0..100, 50);
    assert!(wait_for(Duration::from_secs(30), || read_ndjson(&all).len() >= 100).await);

    // Invalid: the loader says why, the agent counts it.
    let invalid = reloads
        .reload(Err(ConfigError::invalid("sinks.all.batch", "bad")))
        .await;
    assert!(invalid.unwrap_err().contains("sinks.all.batch"));
    // Valid, but a sink of it cannot be built (its secret is missing): nothing changes.
    let unbuildable = file_sink(
        two_sources(&world, ""),
        "all",
        &["app", "web"],
        &all,
        "fsync: true",
    )
    .sink(
        "http",
        "http",
        &["app"],
        "uri: http://127.0.0.1:9/\nheaders: { X-Key: { file: /nonexistent/key } }",
    );
    let refused = reloads.reload(Ok(unbuildable.config())).await;
    assert!(
        refused.unwrap_err().contains("http"),
        "refused for the sink"
    );

    append_numbered(&world.log("app.log"), "g", 100..200, 50);
    assert!(wait_for(Duration::from_secs(30), || read_ndjson(&all).len() >= 200).await);
    let summary = agent.stop().await;
    assert_eq!(summary.metrics.reloads_failed, 2);
    assert_eq!(summary.metrics.reloads_applied, 0);
    assert!(!summary.metrics.sinks.contains_key("http"));
    assert_exactly_once(&read_ndjson(&all), "g", 200);
}
