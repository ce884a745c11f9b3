//! Delivery-driven retention against Debian's logrotate: a directory filled past
//! `retention.max_bytes` with real rotations (`create`, numbered) while the sink is down keeps
//! every file, since none is delivered, and says it is over the limit; once the sink is back,
//! every line arrives and the directory shrinks under the limit, oldest generations first, the
//! live file kept.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::process::AgentProcess;
use common::tools::Logrotate;
use common::*;

const MAX_BYTES: u64 = 60_000;

fn bytes_under(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("app.log"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

fn names_under(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("app.log"))
        .collect();
    names.sort();
    names
}

fn metric(api: u16, name: &str) -> f64 {
    source_metric(api, name, "app").unwrap_or(-1.0)
}

#[test]
fn rotated_files_are_deleted_only_once_delivered_and_the_directory_shrinks_under_the_limit() {
    let world = World::new();
    let logs = world.logs();
    let log = logs.join("app.log");
    let out_dir = world.path("later");
    let out = out_dir.join("out.ndjson");
    let api = closed_address().port();
    let config = world
        .yaml()
        .top(&format!(
            "api: {{ address: 127.0.0.1:{api} }}\ncheckpoint_interval_ms: 50"
        ))
        .file_source(
            "app",
            &[&logs.join("app.log*")],
            &format!("retention: {{ max_bytes: {MAX_BYTES} }}"),
        )
        .file_sink(
            "out",
            &["app"],
            &out,
            "retry: { initial_backoff_ms: 50, max_backoff_ms: 200 }",
        )
        .write(&world.path("agent.yaml"));
    let logrotate = Logrotate::new(
        world.dir.path(),
        &log,
        "rotate 20\n  missingok\n  create 0644",
    );
    let mut agent = AgentProcess::start(&config, &world.path("agent.log"));
    // Eight generations of 20,000 bytes each: 160 KB against a limit of 60 KB.
    let lines_per_generation = 200;
    for generation in 0..8u64 {
        let first = generation * lines_per_generation;
        append_numbered(&log, "ret", first..first + lines_per_generation, 100);
        logrotate.run(true);
    }
    append_numbered(&log, "ret", 1600..1650, 100);
    let total = 1650;
    let before = names_under(&logs);
    assert!(before.len() >= 9, "{before:?}");
    assert!(bytes_under(&logs) > MAX_BYTES);

    // The sink is down: the generations outlive the quiet time, and none goes.
    std::thread::sleep(Duration::from_secs(7));
    agent.assert_alive();
    assert_eq!(names_under(&logs), before, "nothing undelivered is deleted");
    assert!(metric(api, "log_agent_source_retention_over_limit_bytes") > 0.0);
    assert_eq!(
        metric(api, "log_agent_source_retention_deleted_files_total"),
        0.0
    );

    std::fs::create_dir(&out_dir).unwrap();
    agent.wait_until(
        Duration::from_secs(60),
        || format!("{} lines delivered", read_ndjson(&out).len()),
        || of_tag(&read_ndjson(&out), "ret").len() as u64 >= total,
    );
    agent.wait_until(
        Duration::from_secs(60),
        || {
            format!(
                "{} bytes under {}: {:?}",
                bytes_under(&logs),
                logs.display(),
                names_under(&logs)
            )
        },
        || bytes_under(&logs) <= MAX_BYTES,
    );
    let after = names_under(&logs);
    assert!(
        after.contains(&"app.log".to_owned()),
        "the live file stays: {after:?}"
    );
    // The oldest generations went first: what is left is the newest.
    assert!(!after.contains(&"app.log.8".to_owned()), "{after:?}");
    assert!(after.contains(&"app.log.1".to_owned()), "{after:?}");
    assert!(metric(api, "log_agent_source_retention_deleted_files_total") >= 1.0);
    assert_eq!(
        metric(api, "log_agent_source_retention_over_limit_bytes"),
        0.0
    );
    assert!(agent.terminate(Duration::from_secs(20)).success());
    assert_exactly_once(&read_ndjson(&out), "ret", total);
}
