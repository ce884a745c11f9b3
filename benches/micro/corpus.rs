//! The corpora of the micro-benchmarks, generated in code from `SEED`: one line generator per
//! kind of log (nginx access and error lines, JSON and logfmt application lines, over-long
//! lines, Java entries with stack traces), the framed events and chunks made of them, and the
//! corpora shared by the framing, fingerprint, encode and batcher benchmarks (`corpora`).

use std::sync::Arc;

use bytes::Bytes;
use log_agent::event::{Batch, BatchPart};
use log_agent::event::{Chunk, Event, FileMeta};
use log_agent::parse::{Format, LineParser};

use super::{BATCH_LINES, BATCHER_CHUNK_EVENTS, CORPUS_BYTES, SEED};

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
pub fn nginx_line(rng: &mut fastrand::Rng) -> String {
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
pub fn json_line(rng: &mut fastrand::Rng) -> String {
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
pub fn corpus(
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
pub fn events_of(data: &[u8]) -> Vec<Event> {
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
        fields: Arc::default(),
        lane: 0,
    }
}

/// Bytes of the messages of `chunk`'s events (what batch limits and encoders count).
pub fn message_bytes(chunk: &Chunk) -> u64 {
    chunk.events.iter().map(|e| u64::from(e.len)).sum()
}

/// A batch of every event of `chunk`, as the batcher would build it.
pub fn batch_of(chunk: Arc<Chunk>) -> Batch {
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

/// nginx's error log line (about 250 bytes).
pub fn nginx_error_line(rng: &mut fastrand::Rng) -> String {
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
pub fn logfmt_line(rng: &mut fastrand::Rng) -> String {
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
pub fn java_entry(rng: &mut fastrand::Rng) -> String {
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

pub struct Corpora {
    pub nginx: (Vec<u8>, u64),
    pub nginx_crlf: (Vec<u8>, u64),
    pub long: (Vec<u8>, u64),
    pub json: (Vec<u8>, u64),
    pub encode_raw: Arc<Chunk>,
    pub encode_parsed: Arc<Chunk>,
    pub batcher_chunk: Arc<Chunk>,
}

impl Corpora {
    fn new() -> Self {
        let nginx = corpus(CORPUS_BYTES, "\n", nginx_line);
        let json = corpus(CORPUS_BYTES, "\n", json_line);
        let mut parsed = chunk_of(BATCH_LINES, json_line);
        let failed = LineParser::new(Format::Json, None).parse_all(
            &parsed.data,
            &mut parsed.events,
            Arc::make_mut(&mut parsed.fields),
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

pub fn corpora() -> &'static Corpora {
    static CORPORA: std::sync::OnceLock<Corpora> = std::sync::OnceLock::new();
    CORPORA.get_or_init(Corpora::new)
}
