//! Micro-benchmarks of the per-byte and per-line hot paths of `log-agent`, each on a corpus
//! generated in code from a fixed seed (no input files), so runs are comparable:
//!
//! - `framing`: [`Framer::push`] + [`Framer::frame`] over ~1 MiB of nginx-combined lines fed in
//!   `READ_SIZE` pieces as the tailer reads them; LF, CRLF, and lines all longer than
//!   `max_line_bytes` (cut and their tails skipped).
//! - `fingerprint`: [`Fingerprint::of`] and [`Fingerprint::matches`] over 1 KiB heads.
//! - `parse` (MiB/s) and `parse_lines` (lines/s): every format on ~1 MiB of its own lines:
//!   [`LineParser::parse_all`] for `json` (and nginx lines given to it: every line fails),
//!   `raw` (the baseline, a no-op), `logfmt`, `regex` (nginx combined with named groups),
//!   `nginx_combined`, `apache_common`, `nginx_error`; [`Assembler::assemble`] for `cri`,
//!   `docker` (escaped nginx lines) and the `java` multiline preset (one entry in ten a trace
//!   of 14 lines).
//! - `encode`: [`encode_batch`] of a batch of 1000 lines as NDJSON (`json`, raw and parsed
//!   events) and as `text`; [`write_json_str`] alone on one line.
//! - `batcher`: [`Batcher::push`] of chunks of 2000 events and [`Batcher::next_full`] until
//!   every full batch is out, with the default [`BatchConfig`].
//!
//! Every benchmark reports `Throughput::Bytes` (input bytes: the bytes pushed, hashed, parsed
//! or the message bytes encoded/batched). The `lines` group runs the line-oriented ones again
//! with `Throughput::Elements`, for lines per second; the size and bytes per line of each
//! corpus are printed first, to turn the MiB/s of the others into lines/s.
//!
//! Run with `cargo bench --bench micro` (about two minutes on two cores); pass a filter to run
//! some only, e.g. `cargo bench --bench micro -- framing/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use log_agent::checkpoint::Fingerprint;
use log_agent::event::json::write_json_str;
use log_agent::event::{Batch, BatchPart};
use log_agent::event::{Chunk, Event, FileMeta};
use log_agent::parse::assemble::{Assembler, FileState, Release, Runtime};
use log_agent::parse::multiline::{MultilineConfig, Preset, Rules};
use log_agent::parse::{Format, LineParser, Pattern};
use log_agent::pipeline::batcher::Batcher;
use log_agent::sink::delivery::BatchConfig;
use log_agent::sink::encoding::{Encoding, encode_batch};
use log_agent::source::framing::Framer;
use log_agent::source::tailer::READ_SIZE;

/// Seed of every generated corpus.
const SEED: u64 = 0x5EED_1065;
/// Size of the framing and parsing corpora.
const CORPUS_BYTES: usize = 1024 * 1024;
/// The agent's default `max_line_bytes`.
const DEFAULT_MAX_LINE: usize = 1024 * 1024;
/// `max_line_bytes` of the long-line variant; its lines are 6 to 40 KiB.
const LONG_MAX_LINE: usize = 4 * 1024;
/// The agent's default `fingerprint_bytes`.
const HEAD_BYTES: usize = 1024;
/// Lines in an encoded batch (the default `max_events`).
const BATCH_LINES: usize = 1000;
/// Events per chunk given to the batcher.
const BATCHER_CHUNK_EVENTS: usize = 2000;
/// Chunks pushed per batcher iteration.
const BATCHER_CHUNKS: usize = 16;

// ---------------------------------------------------------------------------------------------
// Corpora

const METHODS: [&str; 5] = ["GET", "GET", "GET", "POST", "PUT"];
const PATHS: [&str; 6] = [
    "/api/v1/items",
    "/api/v1/users",
    "/static/js/app.bundle.js",
    "/healthz",
    "/api/v2/orders",
    "/index.html",
];
const STATUSES: [u16; 6] = [200, 200, 200, 304, 404, 500];
const AGENTS: [&str; 4] = [
    "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0",
    "curl/8.5.0",
    "kube-probe/1.29",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1)",
];
const REFERERS: [&str; 3] = ["-", "-", "https://example.com/shop?q=a"];

/// One nginx `combined` line (about 130 bytes, with `"`), without its newline.
fn nginx_line(rng: &mut fastrand::Rng) -> String {
    format!(
        "10.{}.{}.{} - - [25/Nov/2026:04:{:02}:{:02} +0000] \"{} {}/{} HTTP/1.1\" {} {} \"{}\" \"{}\"",
        rng.u8(0..=255),
        rng.u8(0..=255),
        rng.u8(1..=254),
        rng.u8(0..60),
        rng.u8(0..60),
        METHODS[rng.usize(..METHODS.len())],
        PATHS[rng.usize(..PATHS.len())],
        rng.u32(1..100_000),
        STATUSES[rng.usize(..STATUSES.len())],
        rng.u32(0..60_000),
        REFERERS[rng.usize(..REFERERS.len())],
        AGENTS[rng.usize(..AGENTS.len())],
    )
}

const LEVELS: [&str; 4] = ["info", "info", "warn", "error"];
const MESSAGES: [&str; 4] = [
    "request completed",
    "cache miss",
    "user \\\"bob\\\" logged in",
    "upstream timeout, retrying",
];

/// One JSON application line (about 230 bytes), without its newline.
fn json_line(rng: &mut fastrand::Rng) -> String {
    format!(
        "{{\"timestamp\":\"2026-11-25T04:{:02}:{:02}.{:03}Z\",\"level\":\"{}\",\"msg\":\"{}\",\
         \"method\":\"{}\",\"path\":\"{}/{}\",\"status\":{},\"duration_ms\":{},\
         \"request_id\":\"{:016x}\",\"user_id\":{},\"cached\":{}}}",
        rng.u8(0..60),
        rng.u8(0..60),
        rng.u16(0..1000),
        LEVELS[rng.usize(..LEVELS.len())],
        MESSAGES[rng.usize(..MESSAGES.len())],
        METHODS[rng.usize(..METHODS.len())],
        PATHS[rng.usize(..PATHS.len())],
        rng.u32(1..100_000),
        STATUSES[rng.usize(..STATUSES.len())],
        rng.u32(0..2_000),
        rng.u64(..),
        rng.u32(1..1_000_000),
        rng.bool(),
    )
}

/// One over-long line of 6 to 40 KiB (a stack trace flattened into one line).
fn long_line(rng: &mut fastrand::Rng) -> String {
    let len = rng.usize(6 * 1024..40 * 1024);
    let mut line = String::with_capacity(len + 64);
    line.push_str("ERROR java.lang.IllegalStateException: \"boom\"");
    while line.len() < len {
        line.push_str(" at com.example.svc.Handler.handle(Handler.java:");
        line.push_str(&rng.u16(1..2000).to_string());
        line.push(')');
    }
    line
}

/// Lines from `gen` joined by `newline` until there are at least `bytes` bytes; the corpus
/// and its number of lines.
fn corpus(
    bytes: usize,
    newline: &str,
    mut generate: impl FnMut(&mut fastrand::Rng) -> String,
) -> (Vec<u8>, u64) {
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut data = Vec::with_capacity(bytes + 64 * 1024);
    let mut lines = 0;
    while data.len() < bytes {
        data.extend_from_slice(generate(&mut rng).as_bytes());
        data.extend_from_slice(newline.as_bytes());
        lines += 1;
    }
    (data, lines)
}

/// The events of the `\n`-terminated lines of `data`, as the framer would locate them.
fn events_of(data: &[u8]) -> Vec<Event> {
    let mut events = Vec::new();
    let mut start = 0;
    for newline in memchr::memchr_iter(b'\n', data) {
        events.push(Event::new(
            start as u32,
            (newline - start) as u32,
            start as u64,
        ));
        start = newline + 1;
    }
    events
}

/// A chunk holding `lines` generated lines, read at a fixed time.
fn chunk_of(lines: usize, generate: impl FnMut(&mut fastrand::Rng) -> String) -> Chunk {
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut generate = generate;
    let mut data = Vec::new();
    for _ in 0..lines {
        data.extend_from_slice(generate(&mut rng).as_bytes());
        data.push(b'\n');
    }
    let events = events_of(&data);
    assert_eq!(events.len(), lines);
    Chunk {
        file: Arc::new(FileMeta::new(
            0x00c0_ffee,
            "app",
            "/var/log/containers/web/access.log",
        )),
        read_time: "2026-11-25T04:00:00.000000Z".into(),
        end_offset: data.len() as u64,
        data: Bytes::from(data),
        events,
        fields: Vec::new(),
    }
}

/// Bytes of the messages of `chunk`'s events (what batch limits and encoders count).
fn message_bytes(chunk: &Chunk) -> u64 {
    chunk.events.iter().map(|e| u64::from(e.len)).sum()
}

/// A batch of every event of `chunk`, as the batcher would build it.
fn batch_of(chunk: Arc<Chunk>) -> Batch {
    let events = chunk.events.len();
    let bytes = message_bytes(&chunk) as usize;
    Batch {
        parts: vec![BatchPart {
            range: 0..events,
            chunk,
        }],
        events,
        bytes,
    }
}

// ---------------------------------------------------------------------------------------------
// Routines shared by the bytes and the lines groups

/// Pushes `data` in `READ_SIZE` pieces, framing after each as the tailer does; returns how
/// many lines were framed.
fn frame_all(data: &[u8], max_line_bytes: usize, events: &mut Vec<Event>) -> usize {
    let mut framer = Framer::new(0, max_line_bytes);
    let mut lines = 0;
    for piece in data.chunks(READ_SIZE) {
        framer.push(piece);
        events.clear();
        let framed = framer.frame(events);
        lines += events.len();
        black_box(&framed);
    }
    lines
}

/// Pushes every chunk and drains the full batches; returns how many batches came out.
fn batch_all(batcher: &mut Batcher, chunk: &Arc<Chunk>) -> usize {
    let mut batches = 0;
    for _ in 0..BATCHER_CHUNKS {
        batcher.push(Arc::clone(chunk));
        while let Some(batch) = batcher.next_full() {
            batches += 1;
            black_box(&batch);
        }
    }
    black_box(batcher.take());
    batches
}

struct Corpora {
    nginx: (Vec<u8>, u64),
    nginx_crlf: (Vec<u8>, u64),
    long: (Vec<u8>, u64),
    json: (Vec<u8>, u64),
    encode_raw: Arc<Chunk>,
    encode_parsed: Arc<Chunk>,
    batcher_chunk: Arc<Chunk>,
}

impl Corpora {
    fn new() -> Self {
        let nginx = corpus(CORPUS_BYTES, "\n", nginx_line);
        let json = corpus(CORPUS_BYTES, "\n", json_line);
        let mut parsed = chunk_of(BATCH_LINES, json_line);
        let failed = LineParser::new(Format::Json, None).parse_all(
            &parsed.data,
            &mut parsed.events,
            &mut parsed.fields,
        );
        assert_eq!(failed, 0, "the JSON corpus parses");
        let corpora = Corpora {
            nginx_crlf: corpus(CORPUS_BYTES, "\r\n", nginx_line),
            long: corpus(CORPUS_BYTES, "\n", long_line),
            nginx,
            json,
            encode_raw: Arc::new(chunk_of(BATCH_LINES, nginx_line)),
            encode_parsed: Arc::new(parsed),
            batcher_chunk: Arc::new(chunk_of(BATCHER_CHUNK_EVENTS, nginx_line)),
        };
        // Bytes per line, to turn the MiB/s of the `Throughput::Bytes` groups into lines/s.
        for (name, (data, lines)) in [
            ("nginx", &corpora.nginx),
            ("nginx_crlf", &corpora.nginx_crlf),
            ("long", &corpora.long),
            ("json", &corpora.json),
        ] {
            eprintln!(
                "corpus {name}: {} bytes, {lines} lines, {:.1} bytes/line",
                data.len(),
                data.len() as f64 / *lines as f64
            );
        }
        corpora
    }
}

fn corpora() -> &'static Corpora {
    static CORPORA: std::sync::OnceLock<Corpora> = std::sync::OnceLock::new();
    CORPORA.get_or_init(Corpora::new)
}

// ---------------------------------------------------------------------------------------------
// Benchmarks

fn framing(c: &mut Criterion) {
    let corpora = corpora();
    let mut group = c.benchmark_group("framing");
    let variants = [
        ("nginx_lf", &corpora.nginx, DEFAULT_MAX_LINE),
        ("nginx_crlf", &corpora.nginx_crlf, DEFAULT_MAX_LINE),
        ("long_lines_cut", &corpora.long, LONG_MAX_LINE),
    ];
    for (name, (data, lines), max) in variants {
        let mut events = Vec::new();
        assert_eq!(
            frame_all(data, max, &mut Vec::new()) as u64,
            *lines,
            "{name}"
        );
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| frame_all(black_box(data), max, &mut events))
        });
    }
    group.finish();
}

fn fingerprint(c: &mut Criterion) {
    let corpora = corpora();
    let head = &corpora.nginx.0[..HEAD_BYTES];
    let grown = &corpora.nginx.0[..4 * HEAD_BYTES];
    let print = Fingerprint::of(head);
    assert!(print.matches(head) && print.matches(grown));
    let mut group = c.benchmark_group("fingerprint");
    group.throughput(Throughput::Bytes(HEAD_BYTES as u64));
    group.bench_function("of_1KiB", |b| b.iter(|| Fingerprint::of(black_box(head))));
    group.bench_function("matches_1KiB", |b| {
        b.iter(|| black_box(&print).matches(black_box(head)))
    });
    // A stored 1 KiB fingerprint against a longer head: still hashes 1 KiB.
    group.bench_function("matches_1KiB_of_4KiB_head", |b| {
        b.iter(|| black_box(&print).matches(black_box(grown)))
    });
    group.finish();
}

/// A line format's corpus and how it is parsed.
struct FormatCase {
    name: &'static str,
    data: Vec<u8>,
    lines: u64,
    events: Vec<Event>,
    stage: Stage,
}

/// What a format bench runs: a line parser, or assembly (container lines, multiline) first.
enum Stage {
    Lines(LineParser),
    Assembled(Assembler),
}

impl FormatCase {
    /// ~1 MiB of lines from `generate`, parsed by `stage`.
    fn new(
        name: &'static str,
        generate: impl FnMut(&mut fastrand::Rng) -> String,
        stage: Stage,
    ) -> Self {
        let (data, lines) = corpus(CORPUS_BYTES, "\n", generate);
        let events = events_of(&data);
        FormatCase {
            name,
            data,
            lines,
            events,
            stage,
        }
    }

    /// Parses a fresh copy of the events and returns them (criterion drops them untimed).
    fn run(&self, data: &Bytes, events: Vec<Event>) -> Vec<Event> {
        match &self.stage {
            Stage::Lines(parser) => {
                let mut events = events;
                let mut fields = Vec::new();
                parser.parse_all(data, &mut events, &mut fields);
                black_box(&fields);
                events
            }
            Stage::Assembled(assembler) => {
                let mut state = FileState::default();
                let out = assembler.assemble(&mut state, data.clone(), events, Release::All);
                black_box(&out.data);
                out.events
            }
        }
    }
}

const CRI_TIME: &str = "2026-11-25T04:55:03.123456789Z";

/// nginx's error log line (about 250 bytes).
fn nginx_error_line(rng: &mut fastrand::Rng) -> String {
    format!(
        "2026/11/25 04:{:02}:{:02} [error] 31#31: *{} open() \"/usr/share/nginx/html{}\" failed (2: No such file or directory), client: 10.0.{}.{}, server: localhost, request: \"GET {} HTTP/1.1\", host: \"web.shop.svc\"",
        rng.u8(0..60),
        rng.u8(0..60),
        rng.u32(1..100_000),
        PATHS[rng.usize(..PATHS.len())],
        rng.u8(0..=255),
        rng.u8(1..=254),
        PATHS[rng.usize(..PATHS.len())],
    )
}

/// A logfmt application line (about 190 bytes).
fn logfmt_line(rng: &mut fastrand::Rng) -> String {
    format!(
        "ts=2026-11-25T04:{:02}:{:02}.{:03}Z level={} msg=\"{}\" method={} path={}/{} status={} duration_ms={}.{} request_id={:016x}",
        rng.u8(0..60),
        rng.u8(0..60),
        rng.u16(0..1000),
        LEVELS[rng.usize(..LEVELS.len())],
        MESSAGES[rng.usize(..MESSAGES.len())].replace('\\', ""),
        METHODS[rng.usize(..METHODS.len())],
        PATHS[rng.usize(..PATHS.len())],
        rng.u32(1..100_000),
        STATUSES[rng.usize(..STATUSES.len())],
        rng.u32(0..2_000),
        rng.u8(0..10),
        rng.u64(..),
    )
}

/// An application log where one entry in ten is a Java exception with 12 stack lines.
fn java_entry(rng: &mut fastrand::Rng) -> String {
    let mut entry = format!(
        "2026-11-25 04:{:02}:{:02} INFO  [http-nio-8080-exec-{}] c.e.shop.Api - {}",
        rng.u8(0..60),
        rng.u8(0..60),
        rng.u8(1..20),
        MESSAGES[rng.usize(..MESSAGES.len())],
    );
    if rng.u8(0..10) == 0 {
        entry.push_str("\njava.lang.IllegalStateException: order not found");
        for depth in 0..12 {
            entry.push_str(&format!(
                "\n\tat com.example.shop.Layer{depth}.call(Layer{depth}.java:{})",
                rng.u16(1..500)
            ));
        }
        entry.push_str("\n\t... 48 more");
    }
    entry
}

/// The regex of the `regex` bench: nginx combined with named groups.
const NGINX_REGEX: &str = r#"^(?P<client>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<protocol>[^"]+)" (?P<status>\d+) (?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<user_agent>[^"]*)"$"#;

/// Every format, on ~1 MiB of its own lines.
fn format_cases() -> Vec<FormatCase> {
    let pattern = Pattern::new(NGINX_REGEX).unwrap();
    let lines = |format| Stage::Lines(LineParser::new(format, Some(&pattern)));
    let cri = |rng: &mut fastrand::Rng| format!("{CRI_TIME} stdout F {}", nginx_line(rng));
    let docker = |rng: &mut fastrand::Rng| {
        let log = serde_json::to_string(&format!("{}\n", nginx_line(rng))).unwrap();
        format!("{{\"log\":{log},\"stream\":\"stdout\",\"time\":\"{CRI_TIME}\"}}")
    };
    let apache_common = |rng: &mut fastrand::Rng| {
        let line = nginx_line(rng);
        let end = line
            .match_indices(" \"")
            .nth(1)
            .map_or(line.len(), |(i, _)| i);
        line[..end].to_owned()
    };
    let java = MultilineConfig {
        preset: Some(Preset::Java),
        start_pattern: None,
        continue_pattern: None,
        timeout_ms: 1000,
        max_lines: 500,
        max_bytes: 1 << 20,
    };
    let java = Assembler::new(
        None,
        Some((Rules::new(&java).unwrap(), java)),
        DEFAULT_MAX_LINE,
    );
    vec![
        FormatCase::new("json", json_line, lines(Format::Json)),
        FormatCase::new("json_all_invalid", nginx_line, lines(Format::Json)),
        FormatCase::new("raw", nginx_line, lines(Format::Raw)),
        FormatCase::new("logfmt", logfmt_line, lines(Format::Logfmt)),
        FormatCase::new("regex_nginx", nginx_line, lines(Format::Regex)),
        FormatCase::new("nginx_combined", nginx_line, lines(Format::NginxCombined)),
        FormatCase::new("apache_common", apache_common, lines(Format::ApacheCommon)),
        FormatCase::new("nginx_error", nginx_error_line, lines(Format::NginxError)),
        FormatCase::new(
            "cri",
            cri,
            Stage::Assembled(Assembler::new(Some(Runtime::Cri), None, DEFAULT_MAX_LINE)),
        ),
        FormatCase::new(
            "docker",
            docker,
            Stage::Assembled(Assembler::new(
                Some(Runtime::Docker),
                None,
                DEFAULT_MAX_LINE,
            )),
        ),
        FormatCase::new("multiline_java", java_entry, Stage::Assembled(java)),
    ]
}

/// Each format in MiB/s (`parse`) and in lines/s (`parse_lines`). Each iteration parses fresh
/// (unparsed) events; dropping the parsed fields is not timed.
fn parse(c: &mut Criterion) {
    let cases = format_cases();
    for case in &cases {
        eprintln!(
            "corpus {}: {} bytes, {} lines, {:.1} bytes/line",
            case.name,
            case.data.len(),
            case.lines,
            case.data.len() as f64 / case.lines as f64
        );
    }
    for (group_name, bytes) in [("parse", true), ("parse_lines", false)] {
        let mut group = c.benchmark_group(group_name);
        for case in &cases {
            let data = Bytes::from(case.data.clone());
            assert!(
                !case.run(&data, case.events.clone()).is_empty(),
                "{}",
                case.name
            );
            group.throughput(if bytes {
                Throughput::Bytes(case.data.len() as u64)
            } else {
                Throughput::Elements(case.lines)
            });
            group.bench_function(case.name, |b| {
                b.iter_batched(
                    || case.events.clone(),
                    |events| case.run(black_box(&data), events),
                    BatchSize::LargeInput,
                )
            });
        }
        group.finish();
    }
}

fn encode(c: &mut Criterion) {
    let corpora = corpora();
    let mut group = c.benchmark_group("encode");
    let raw = batch_of(Arc::clone(&corpora.encode_raw));
    let parsed = batch_of(Arc::clone(&corpora.encode_parsed));
    let variants = [
        ("json_1000_nginx", Encoding::Json, &raw),
        ("json_1000_parsed", Encoding::Json, &parsed),
        ("text_1000_nginx", Encoding::Text, &raw),
    ];
    let mut out = Vec::new();
    for (name, encoding, batch) in variants {
        group.throughput(Throughput::Bytes(batch.bytes as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                encode_batch(encoding, black_box(batch), &mut out);
                out.len()
            })
        });
    }
    let quoted = nginx_line(&mut fastrand::Rng::with_seed(SEED));
    let plain = quoted.replace('"', "'");
    for (name, line) in [
        ("write_json_str_quoted", &quoted),
        ("write_json_str_plain", &plain),
    ] {
        group.throughput(Throughput::Bytes(line.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                write_json_str(&mut out, black_box(line.as_bytes()));
                out.len()
            })
        });
    }
    group.finish();
}

fn batcher(c: &mut Criterion) {
    let corpora = corpora();
    let chunk = &corpora.batcher_chunk;
    let mut batcher = Batcher::new(BatchConfig::default());
    let want = BATCHER_CHUNKS * BATCHER_CHUNK_EVENTS / BatchConfig::default().max_events;
    assert_eq!(batch_all(&mut batcher, chunk), want);
    let mut group = c.benchmark_group("batcher");
    group.throughput(Throughput::Bytes(
        message_bytes(chunk) * BATCHER_CHUNKS as u64,
    ));
    group.bench_function("chunks_of_2000_default_config", |b| {
        b.iter(|| batch_all(&mut batcher, black_box(chunk)))
    });
    group.finish();
}

/// The line-oriented benchmarks again, in lines per second.
fn lines(c: &mut Criterion) {
    let corpora = corpora();
    let mut group = c.benchmark_group("lines");
    let (data, lines) = &corpora.nginx;
    let mut events = Vec::new();
    group.throughput(Throughput::Elements(*lines));
    group.bench_function("framing_nginx_lf", |b| {
        b.iter(|| frame_all(black_box(data), DEFAULT_MAX_LINE, &mut events))
    });

    let raw = batch_of(Arc::clone(&corpora.encode_raw));
    let mut out = Vec::new();
    group.throughput(Throughput::Elements(raw.events as u64));
    group.bench_function("encode_json_1000_nginx", |b| {
        b.iter(|| {
            out.clear();
            encode_batch(Encoding::Json, black_box(&raw), &mut out);
            out.len()
        })
    });

    let chunk = &corpora.batcher_chunk;
    let mut batcher = Batcher::new(BatchConfig::default());
    group.throughput(Throughput::Elements(
        (BATCHER_CHUNKS * BATCHER_CHUNK_EVENTS) as u64,
    ));
    group.bench_function("batcher_chunks_of_2000", |b| {
        b.iter(|| batch_all(&mut batcher, black_box(chunk)))
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = framing, fingerprint, parse, encode, batcher, lines
}
criterion_main!(benches);
