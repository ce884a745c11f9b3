//! The configuration as a user writes it: every key checked, every error in the user's terms, presets and reloads.

use super::*;
use crate::source::SourceKind;

const MINIMAL: &str = "
data_dir: /tmp/la
sources:
  app:
    type: file
    include: [\"/logs/*.log\"]
sinks:
  out:
    type: file
    inputs: [app]
    path: /tmp/out.ndjson
";

fn parse(text: &str) -> Result<Config, ConfigError> {
    let env = |name: &str| (name == "DIR").then(|| "/from-env".to_owned());
    Config::from_yaml(text, env, Path::new("/base"))
}

#[test]
fn minimal_config_gets_defaults() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.data_dir, PathBuf::from("/tmp/la"));
    assert_eq!(config.shutdown_timeout_ms, 20_000);
    let sink = &config.sinks["out"];
    assert_eq!(sink.common.batch.max_events, 1000);
    assert_eq!(sink.common.buffer.max_events, 10_000);
    assert_eq!(config.branches_of("app").sinks, vec!["out"]);
    let printed = config.to_yaml();
    assert!(printed.contains("max_line_bytes: 1048576"), "{printed}");
    // What validate prints parses back to the same configuration.
    let again = parse(&printed).unwrap();
    assert_eq!(again.to_yaml(), printed);
}

#[test]
fn a_batch_waits_for_more_events_only_where_the_sink_sends_over_the_network() {
    // (the sink's own keys, the batch timeout it gets)
    let cases = [
        ("type: file\n    path: /tmp/out", 10),
        ("type: stdout", 10),
        ("type: blackhole", 10),
        (
            "type: file\n    path: /tmp/out\n    batch: { max_events: 5 }",
            10,
        ),
        (
            "type: file\n    path: /tmp/out\n    batch: { timeout_ms: 300 }",
            300,
        ),
        ("type: http\n    uri: http://127.0.0.1:9/", 200),
        (
            "type: kafka\n    brokers: 127.0.0.1:9092\n    topic: t",
            200,
        ),
        (
            "type: kafka\n    brokers: 127.0.0.1:9092\n    topic: t\n    batch: { timeout_ms: 0 }",
            0,
        ),
    ];
    for (sink, want) in cases {
        let text = format!(
            "data_dir: /tmp/la\nsources:\n  app:\n    type: file\n    include: [\"/l/*.log\"]\nsinks:\n  out:\n    inputs: [app]\n    {sink}\n"
        );
        let config = parse(&text).unwrap_or_else(|e| panic!("{sink}: {e}"));
        assert_eq!(config.sinks["out"].common.batch.timeout_ms, want, "{sink}");
    }
}

#[test]
fn relative_paths_are_taken_from_the_base_dir() {
    let text = MINIMAL
        .replace("/tmp/la", "state")
        .replace("/logs/*.log", "logs/*.log")
        .replace("/tmp/out.ndjson", "out/x.ndjson");
    let config = parse(&text).unwrap();
    assert_eq!(config.data_dir, PathBuf::from("/base/state"));
    let SourceKind::File(file) = &config.sources["app"].kind else {
        panic!("a file source")
    };
    assert_eq!(file.include, vec!["/base/logs/*.log".to_owned()]);
    let printed = config.to_yaml();
    assert!(printed.contains("/base/out/x.ndjson"), "{printed}");
}

#[test]
fn interpolates_environment() {
    let config = parse(&MINIMAL.replace("/tmp/la", "${DIR}/data")).unwrap();
    assert_eq!(config.data_dir, PathBuf::from("/from-env/data"));
    let config = parse(&MINIMAL.replace("/tmp/la", "${NOPE:-/dflt}")).unwrap();
    assert_eq!(config.data_dir, PathBuf::from("/dflt"));
}

/// (edit applied to MINIMAL, the key the error must name)
const BAD: &[(&str, &str, &str)] = &[
    ("data_dir: /tmp/la", "data_dirr: /tmp/la", "data_dirr"),
    (
        "    path: /tmp/out.ndjson",
        "    path: /tmp/out.ndjson\n    colour: red",
        "sinks.out.colour",
    ),
    ("    inputs: [app]", "    inputs: [ap]", "sinks.out.inputs"),
    ("    inputs: [app]", "    inputs: []", "sinks.out.inputs"),
    (
        "    type: file\n    inputs",
        "    type: kafkaa\n    inputs",
        "sinks.out.type",
    ),
    (
        "    type: file\n    include",
        "    type: socket\n    include",
        "sources.app.type",
    ),
    (
        "    include: [\"/logs/*.log\"]",
        "    include: []",
        "sources.app.include",
    ),
    (
        "    include: [\"/logs/*.log\"]",
        "    include: [\"/logs/[.log\"]",
        "sources.app.include",
    ),
    (
        "    include: [\"/logs/*.log\"]",
        "    include: [\"/l/*\"]\n    format: xml",
        "sources.app.format",
    ),
    (
        "    include: [\"/logs/*.log\"]",
        "    include: [\"/l/*\"]\n    max_line_bytes: 0",
        "sources.app.max_line_bytes",
    ),
    (
        "    include: [\"/logs/*.log\"]",
        "    include: [\"/l/*\"]\n    read_from: middle",
        "sources.app.read_from",
    ),
    (
        "    path: /tmp/out.ndjson",
        "    path: /tmp/o\n    batch: { max_events: lots }",
        "sinks.out.batch.max_events",
    ),
    (
        "    path: /tmp/out.ndjson",
        "    path: /tmp/o\n    batch: { max_events: 0 }",
        "sinks.out.batch.max_events",
    ),
    (
        "    path: /tmp/out.ndjson",
        "    path: /tmp/o\n    buffer: { when_full: explode }",
        "sinks.out.buffer.when_full",
    ),
    (
        "    path: /tmp/out.ndjson",
        "    path: /tmp/o\n    encoding: xml",
        "sinks.out.encoding",
    ),
    (
        "    path: /tmp/out.ndjson",
        "    encoding: json",
        "sinks.out.path",
    ),
    ("  app:\n", "  bad name:\n", "sources.bad name"),
    (
        "data_dir: /tmp/la",
        "data_dir: /tmp/la\napi: { address: nowhere }",
        "api.address",
    ),
    (
        "data_dir: /tmp/la",
        "data_dir: /tmp/la\nshutdown_timeout_ms: -1",
        "shutdown_timeout_ms",
    ),
    (
        "    include: [\"/logs/*.log\"]",
        "    include: [\"/l/*\"]\n    format: regex\n    pattern: '(unclosed'",
        "sources.app.pattern",
    ),
    (
        "    include: [\"/logs/*.log\"]",
        "    include: [\"/l/*\"]\n    format: regex",
        "sources.app.pattern",
    ),
    (
        "    include: [\"/logs/*.log\"]",
        "    include: [\"/l/*\"]\n    format: regex\n    pattern: '^(\\d+)$'",
        "sources.app.pattern",
    ),
    (
        "    include: [\"/logs/*.log\"]",
        "    include: [\"/l/*\"]\n    pattern: '^(?P<a>.*)$'",
        "sources.app.pattern",
    ),
    (
        "    include: [\"/logs/*.log\"]",
        "    include: [\"/l/*\"]\n    multiline: { timeout_ms: 5 }",
        "sources.app.multiline",
    ),
    (
        "    include: [\"/logs/*.log\"]",
        "    include: [\"/l/*\"]\n    multiline: { preset: cobol }",
        "sources.app.multiline.preset",
    ),
    (
        "    include: [\"/logs/*.log\"]",
        "    include: [\"/l/*\"]\n    multiline: { start_pattern: '[z-a]' }",
        "sources.app.multiline.start_pattern",
    ),
    (
        "    include: [\"/logs/*.log\"]",
        "    include: [\"/l/*\"]\n    format: json\n    timestamp: { field: t, format: iso }",
        "sources.app.timestamp.format",
    ),
    (
        "    include: [\"/logs/*.log\"]",
        "    include: [\"/l/*\"]\n    timestamp: { field: t, format: rfc3339 }",
        "sources.app.timestamp",
    ),
    (
        "    include: [\"/logs/*.log\"]",
        "    include: [\"/l/*\"]\n    fields: { offset: 1 }",
        "sources.app.fields.offset",
    ),
    (
        "    include: [\"/logs/*.log\"]",
        "    include: [\"/l/*\"]\n    filter: { pattern: '(', action: drop }",
        "sources.app.filter.pattern",
    ),
    (
        "    include: [\"/logs/*.log\"]",
        "    include: [\"/l/*\"]\n    filter: { pattern: 'x', action: maybe }",
        "sources.app.filter.action",
    ),
    (
        "data_dir: /tmp/la",
        "data_dir: /tmp/la\nmode: cluster",
        "mode",
    ),
];

#[test]
fn errors_name_the_key() {
    for (from, to, key) in BAD {
        assert!(MINIMAL.contains(from), "bad case: {from}");
        let text = MINIMAL.replacen(from, to, 1);
        let errors = match parse(&text) {
            Err(e) => e.flatten(),
            Ok(_) => panic!("{to}: expected an error about {key}"),
        };
        let keys: Vec<&str> = errors
            .iter()
            .filter_map(|e| match e {
                ConfigError::Invalid { key, .. } => Some(key.as_str()),
                _ => None,
            })
            .collect();
        assert!(keys.contains(key), "{to}: expected {key} among {errors:?}");
    }
}

#[test]
fn every_error_of_the_file_is_reported_with_its_full_path() {
    // A typo'd top-level key, a bad value in a sink, an unknown key of a source, a bad
    // source name, an input that does not name a source: all at once.
    let text = MINIMAL
        .replace("data_dir: /tmp/la", "data_dirr: /tmp/la")
        .replace(
            "    path: /tmp/out.ndjson",
            "    path: /tmp/out.ndjson\n    batch: { max_events: lots }",
        )
        .replace(
            "    include: [\"/logs/*.log\"]",
            "    include: [\"/logs/*.log\"]\n    formt: json",
        )
        .replace("    inputs: [app]", "    inputs: [ap, my.app]")
        + "  other:\n    type: stdout\n    inputs: [my.app]\n";
    let text = text.replace(
        "sinks:\n",
        "  my.app:\n    type: file\n    include: [/x/*]\nsinks:\n",
    );
    let got: Vec<String> = parse(&text)
        .unwrap_err()
        .flatten()
        .iter()
        .map(ToString::to_string)
        .collect();
    let want = [
        "config key `data_dirr`: unknown key; did you mean `data_dir`?",
        "config key `sources.app.formt`: unknown key; did you mean `format`?",
        "config key `sinks.out.batch.max_events`: expected a whole number (0 or more), got the text \"lots\"",
        "config key `sources.my.app`: names use only letters, digits, `_` and `-`",
        "config key `sinks.out.inputs`: unknown source or transform `ap`; did you mean `app`?",
    ];
    for fragment in want {
        assert!(
            got.iter().any(|line| line.starts_with(fragment)),
            "no `{fragment}` in {got:#?}"
        );
    }
    // `my.app` is a source (a bad name, but a source): no input naming it is unknown.
    assert_eq!(got.len(), want.len() + 1, "{got:#?}");
    assert!(
        got.iter()
            .any(|l| l.contains("sources.app") && l.contains("is not an input"))
    );
    // Shown one a line.
    let shown = parse(&text).unwrap_err().to_string();
    assert_eq!(shown.lines().count(), got.len(), "{shown}");
}

#[test]
fn parsing_settings_print_back_and_the_pod_is_what_the_config_names() {
    let text = MINIMAL.replace(
        "    include: [\"/logs/*.log\"]",
        "    include: [\"/logs/*.log\"]
    format: regex
    pattern: '^(?P<level>\\w+) (?P<msg>.*)$'
    multiline: { start_pattern: '^\\w+ ', timeout_ms: 500 }
    timestamp: { field: ts, format: '%Y-%m-%d %H:%M:%S' }
    fields: { env: prod, tier: 2 }
    filter: { field: level, pattern: '^DEBUG$', action: drop }",
    );
    // The environment has more, but only what the config names is stamped.
    let lookup = |name: &str| match name {
        "POD_NAME" => Some("web-1".to_owned()),
        "CONTAINER_NAME" | "NODE_NAME" | "POD_NAMESPACE" => Some("unasked".to_owned()),
        _ => None,
    };
    let config = Config::from_yaml(&text, lookup, Path::new("/base")).unwrap();
    let SourceKind::File(file) = &config.sources["app"].kind else {
        panic!("a file source")
    };
    assert!(
        file.kubernetes.0.is_empty(),
        "nothing without `kubernetes:`"
    );
    let text = format!("{text}\nkubernetes: {{ pod_name: \"${{POD_NAME}}\" }}\n");
    let config = Config::from_yaml(&text, lookup, Path::new("/base")).unwrap();
    let SourceKind::File(file) = &config.sources["app"].kind else {
        panic!("a file source")
    };
    assert_eq!(
        file.kubernetes.0,
        [("pod_name".to_owned(), "web-1".to_owned())]
    );
    let printed = config.to_yaml();
    for fragment in [
        "kubernetes:\n  pod_name: web-1",
        "format: regex",
        "(?P<level>",
        "start_pattern",
        "'%Y-%m-%d %H:%M:%S'",
        "env: prod",
        "action: drop",
    ] {
        assert!(printed.contains(fragment), "{fragment}: {printed}");
    }
    assert_eq!(parse(&printed).unwrap().to_yaml(), printed);
}

#[test]
fn the_api_listens_on_loopback_unless_told_otherwise() {
    let cases = [
        ("api: {}", "127.0.0.1:8686"),
        ("api: { address: \"0.0.0.0:9000\" }", "0.0.0.0:9000"),
    ];
    for (api, want) in cases {
        let text = format!("{MINIMAL}{api}\n");
        let config = parse(&text).unwrap();
        assert_eq!(config.api.unwrap().address.to_string(), want, "{api}");
    }
}

#[test]
fn daemonset_mode_presets_the_pods_source_and_leaves_out_its_own_pod() {
    const DAEMONSET: &str = "
mode: daemonset
pods_root: /host/pods
kubernetes: { pod_name: \"${POD_NAME:-}\", pod_namespace: \"${POD_NAMESPACE:-}\" }
sinks:
  out:
    type: file
    inputs: [pods]
    path: /tmp/out.ndjson
";
    let env = |name: &str| match name {
        "POD_NAME" => Some("agent-1".to_owned()),
        "POD_NAMESPACE" => Some("logging".to_owned()),
        _ => None,
    };
    // (config text, environment, expected include and exclude of source `pods`)
    type Case<'a> = (
        String,
        &'a dyn Fn(&str) -> Option<String>,
        &'a [&'a str],
        &'a [&'a str],
    );
    let no_env = |_: &str| None;
    let given = DAEMONSET.replace(
        "sinks:",
        "sources:\n  pods:\n    type: file\n    include: [/x/*.log]\nsinks:",
    );
    let cases: Vec<Case> = vec![
        (
            DAEMONSET.into(),
            &env,
            &["/host/pods/*/*/*.log"],
            &["/host/pods/logging_agent-1_*/**"],
        ),
        (DAEMONSET.into(), &no_env, &["/host/pods/*/*/*.log"], &[]),
        (
            DAEMONSET.replace("pods_root: /host/pods\n", ""),
            &env,
            &["/var/log/pods/*/*/*.log"],
            &["/var/log/pods/logging_agent-1_*/**"],
        ),
        // Sources of its own: no preset, still no own logs.
        (
            given,
            &env,
            &["/x/*.log"],
            &["/host/pods/logging_agent-1_*/**"],
        ),
    ];
    for (text, lookup, include, exclude) in cases {
        let config = Config::from_yaml(&text, lookup, Path::new("/base")).unwrap();
        assert_eq!(config.mode, Mode::Daemonset);
        let SourceKind::File(file) = &config.sources["pods"].kind else {
            panic!("a file source")
        };
        assert_eq!(file.include, include, "{text}");
        assert_eq!(file.exclude, exclude, "{text}");
        let preset = include[0].ends_with("/*/*/*.log");
        let format = if preset {
            kubernetes::DAEMONSET_FORMAT
        } else {
            "raw"
        };
        assert_eq!(
            serde_json::to_value(file.format).unwrap(),
            serde_json::json!(format),
            "the preset reads CRI logs; given sources keep their format"
        );
        // What validate prints parses back to the same configuration.
        let printed = config.to_yaml();
        let again = Config::from_yaml(&printed, lookup, Path::new("/base")).unwrap();
        assert_eq!(again.to_yaml(), printed);
    }
    // The sidecar mode (the default) presets nothing and reads no POD_NAME.
    let err = Config::from_yaml(
        &DAEMONSET.replace("mode: daemonset\n", ""),
        env,
        Path::new("/"),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(err, "config key `sources`: at least one source is needed");
    let config = Config::from_yaml(MINIMAL, env, Path::new("/")).unwrap();
    assert_eq!(config.mode, Mode::Sidecar);
    let SourceKind::File(file) = &config.sources["app"].kind else {
        panic!("a file source")
    };
    assert!(file.exclude.is_empty());
}

#[test]
fn a_source_without_a_sink_is_an_error() {
    let text = MINIMAL.replace(
        "sinks:",
        "  lonely:\n    type: file\n    include: [\"/x/*\"]\nsinks:",
    );
    let err = parse(&text).unwrap_err().to_string();
    assert_eq!(
        err,
        "config key `sources.lonely`: is not an input of any sink or transform"
    );
}

#[test]
fn syntax_and_interpolation_errors_name_their_line_one_line_each() {
    let cases = [
        (
            "sources: {app: [1,",
            "config: did not find expected node content at line 2",
        ),
        (
            "data_dir: b: c",
            "config: mapping values are not allowed in this context at line 1",
        ),
        (
            "sources: [unclosed]",
            "config key `sources`: expected a mapping (`key: value` lines), got a list",
        ),
        (
            "data_dir: ${UNSET}\n",
            "config line 1: environment variable `UNSET` is not set",
        ),
        ("", "config key `sinks`: missing (required)"),
    ];
    for (text, prefix) in cases {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.starts_with(prefix), "{text:?}: {err}");
        // One line an error (`sources: [unclosed]` also lacks `sinks`).
        assert!(err.lines().all(|l| l.starts_with("config")), "{err}");
    }
}
