//! `--to` shortcuts: a sink named in one word or URL on the command line (`stdout`,
//! `blackhole`, `file:PATH`, `kafka://HOST:PORT[,HOST:PORT]/TOPIC`, `http://…`, `https://…`,
//! `otlp://HOST:PORT` (gRPC), `otlp+http://…` and `otlp+https://…` (HTTP/protobuf)), with
//! each type's defaults.

use std::path::PathBuf;

use super::otlp::Protocol;
use super::{
    BlackholeSinkConfig, FileSinkConfig, HttpSinkConfig, KafkaSinkConfig, OtlpSinkConfig, SinkKind,
    StdoutSinkConfig,
};

/// The sink a `--to` value names.
pub fn parse_target(target: &str) -> Result<SinkKind, String> {
    let from_yaml = |yaml: String| -> Result<SinkKind, String> {
        let mapping: serde_norway::Mapping =
            serde_norway::from_str(&yaml).map_err(|e| format!("`{target}`: {e}"))?;
        let kind = mapping
            .get("type")
            .and_then(serde_norway::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut rest = mapping;
        rest.remove("type");
        SinkKind::from_parts("--to", &kind, rest).map_err(|e| e.to_string())
    };
    if target == "stdout" {
        return Ok(SinkKind::Stdout(StdoutSinkConfig::default()));
    }
    if target == "blackhole" {
        return Ok(SinkKind::Blackhole(BlackholeSinkConfig::default()));
    }
    if let Some(path) = target.strip_prefix("file:") {
        if path.is_empty() {
            return Err("`file:` needs a path, as in file:/tmp/out.ndjson".into());
        }
        let config: FileSinkConfig = serde_norway::from_value(serde_norway::Value::Mapping(
            [("path".into(), path.into())].into_iter().collect(),
        ))
        .map_err(|e| format!("`{target}`: {e}"))?;
        let path = std::env::current_dir()
            .map(|cwd| cwd.join(&config.path))
            .unwrap_or_else(|_| PathBuf::from(&config.path));
        return Ok(SinkKind::File(FileSinkConfig { path, ..config }));
    }
    if target.starts_with("http://") || target.starts_with("https://") {
        let config = HttpSinkConfig::from_uri(target).map_err(|e| e.to_string())?;
        return Ok(SinkKind::Http(config));
    }
    for (scheme, protocol, endpoint_scheme) in [
        ("otlp://", Protocol::Grpc, "http://"),
        ("otlp+http://", Protocol::HttpProtobuf, "http://"),
        ("otlp+https://", Protocol::HttpProtobuf, "https://"),
    ] {
        if let Some(rest) = target.strip_prefix(scheme) {
            let config = OtlpSinkConfig::new(Some(format!("{endpoint_scheme}{rest}")), protocol);
            config.check("--to").map_err(|e| e.to_string())?;
            return Ok(SinkKind::Otlp(config));
        }
    }
    if let Some(rest) = target.strip_prefix("kafka://") {
        let (brokers, topic) = rest
            .split_once('/')
            .filter(|(b, t)| !b.is_empty() && !t.is_empty())
            .ok_or_else(|| format!("`{target}`: expected kafka://HOST:PORT[,HOST:PORT]/TOPIC"))?;
        let yaml = serde_json::json!({ "type": "kafka", "brokers": brokers, "topic": topic });
        let kind = from_yaml(yaml.to_string())?;
        if let SinkKind::Kafka(KafkaSinkConfig { .. }) = &kind {
            return Ok(kind);
        }
    }
    Err(format!(
        "`{target}`: expected stdout, blackhole, file:PATH, kafka://HOST:PORT/TOPIC, an http(s) URL, otlp://HOST:PORT or otlp+http(s)://HOST:PORT[/PATH]"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_table() {
        let ok: &[(&str, &str)] = &[
            ("stdout", "stdout"),
            ("blackhole", "blackhole"),
            ("file:/tmp/out.ndjson", "/tmp/out.ndjson"),
            ("kafka://b1:9092,b2:9092/logs", "b1:9092,b2:9092 logs"),
            (
                "http://127.0.0.1:9000/ingest",
                "http://127.0.0.1:9000/ingest",
            ),
            ("https://logs.example/bulk", "https://logs.example/bulk"),
            ("otlp://127.0.0.1:4317", "grpc http://127.0.0.1:4317/"),
            ("otlp+http://c:4318", "http http://c:4318/v1/logs"),
            ("otlp+https://c/otlp/v1/logs", "http https://c/otlp/v1/logs"),
        ];
        for (target, want) in ok {
            let got = match parse_target(target).unwrap() {
                SinkKind::Stdout(_) => "stdout".to_owned(),
                SinkKind::Blackhole(_) => "blackhole".to_owned(),
                SinkKind::File(f) => f.path.display().to_string(),
                SinkKind::Kafka(k) => format!("{} {}", k.brokers, k.topic),
                SinkKind::Http(h) => h.uri.clone(),
                SinkKind::Otlp(o) => {
                    let protocol = if o.protocol == Protocol::Grpc {
                        "grpc"
                    } else {
                        "http"
                    };
                    format!("{protocol} {}", o.url().unwrap())
                }
            };
            assert_eq!(got, *want, "{target}");
        }
        for bad in [
            "",
            "file:",
            "kafka://",
            "kafka://b:9092",
            "kafka://b:9092/",
            "kafka:///logs",
            "ftp://x",
            "http://",
            "stdout2",
            "otlp://",
            "otlp+http://",
        ] {
            assert!(parse_target(bad).is_err(), "{bad:?} should be refused");
        }
        match parse_target("file:rel.ndjson").unwrap() {
            SinkKind::File(f) => assert!(f.path.is_absolute(), "{}", f.path.display()),
            _ => panic!("not a file sink"),
        }
    }
}
