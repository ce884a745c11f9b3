//! The deterministic corpus, one generator per format (nginx and Apache access lines, JSON
//! application lines, logfmt, CRI, Docker json-file), written once under `target/bench-corpus/`
//! and kept between runs.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// One nginx combined line (Apache's combined format too), deterministic from the generator.
pub fn nginx_line(rng: &mut fastrand::Rng, out: &mut Vec<u8>) {
    const AGENTS: &[&str] = &[
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
        "curl/8.5.0",
        "kube-probe/1.31",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    ];
    common_log_fields(rng, out);
    let _ = writeln!(
        Fmt(out),
        " \"{}\" \"{}\"",
        if rng.bool() {
            "-"
        } else {
            "https://example.test/"
        },
        AGENTS[rng.usize(..AGENTS.len())],
    );
}

/// One line of Apache's common log format (the combined line without referer and user agent).
pub fn apache_common_line(rng: &mut fastrand::Rng, _seq: u64, out: &mut Vec<u8>) {
    common_log_fields(rng, out);
    out.push(b'\n');
}

/// Client, identity, user, time, request, status and size: what both access-log formats start
/// with.
fn common_log_fields(rng: &mut fastrand::Rng, out: &mut Vec<u8>) {
    const PATHS: &[&str] = &[
        "/",
        "/api/orders",
        "/static/app.js",
        "/favicon.ico",
        "/api/users/42?expand=orders",
        "/healthz",
        "/login",
    ];
    const STATUS: &[u16] = &[200, 200, 200, 200, 201, 304, 404, 500];
    let _ = write!(
        Fmt(out),
        "10.{}.{}.{} - - [25/Nov/2026:{:02}:{:02}:{:02} +0000] \"{} {} HTTP/1.1\" {} {}",
        rng.u8(..),
        rng.u8(..),
        rng.u8(..),
        rng.u8(0..24),
        rng.u8(0..60),
        rng.u8(0..60),
        if rng.u8(0..5) == 0 { "POST" } else { "GET" },
        PATHS[rng.usize(..PATHS.len())],
        STATUS[rng.usize(..STATUS.len())],
        rng.u32(10..60_000),
    );
}

/// One JSON application line as a Java service's JSON logger writes it: 14 keys, about 330
/// bytes; one in 50 is an error carrying its stack trace in a `stack` key (newlines and tabs
/// escaped), so that escaped strings are part of the load.
pub fn app_lines(rng: &mut fastrand::Rng, seq: u64, out: &mut Vec<u8>) {
    const LEVELS: &[&str] = &["info", "info", "info", "debug", "warn"];
    const METHODS: &[&str] = &["GET", "GET", "GET", "POST", "PUT", "DELETE"];
    let failed = rng.u8(0..50) == 0;
    let _ = write!(
        Fmt(out),
        "{{\"ts\":\"2026-11-25T04:{:02}:{:02}.{:03}Z\",\"level\":\"{}\",\"logger\":\"com.example.orders.Service\",\"thread\":\"http-nio-8080-exec-{}\",\"msg\":\"{}\",\"method\":\"{}\",\"path\":\"/api/orders/{}\",\"status\":{},\"duration_ms\":{},\"bytes\":{},\"user\":\"u{}\",\"request_id\":\"{:016x}\",\"trace_id\":\"{:016x}{:016x}\",\"ok\":{}",
        rng.u8(0..60),
        rng.u8(0..60),
        rng.u16(0..1000),
        if failed {
            "error"
        } else {
            LEVELS[rng.usize(..LEVELS.len())]
        },
        rng.u8(0..200),
        if failed {
            "order not found"
        } else {
            "request served in time"
        },
        METHODS[rng.usize(..METHODS.len())],
        seq,
        if failed { 500 } else { 200 },
        rng.u32(1..2000),
        rng.u32(100..100_000),
        rng.u16(0..5000),
        rng.u64(..),
        rng.u64(..),
        rng.u64(..),
        !failed,
    );
    if failed {
        out.extend_from_slice(b",\"stack\":\"java.lang.IllegalStateException: order not found");
        for depth in 0..rng.usize(5..25) {
            let _ = write!(
                Fmt(out),
                "\\n\\tat com.example.orders.Service.step{depth}(Service.java:{})",
                rng.u16(10..900)
            );
        }
        out.push(b'"');
    }
    out.extend_from_slice(b"}\n");
}

/// An [`app_lines`] line that also names the customer's email (personal data a remap masks).
pub fn app_lines_with_email(rng: &mut fastrand::Rng, seq: u64, out: &mut Vec<u8>) {
    let start = out.len();
    app_lines(rng, seq, out);
    // Before its closing `}` and newline.
    out.truncate(out.len() - 2);
    let _ = writeln!(
        Fmt(out),
        ",\"email\":\"customer.{}@example.com\"}}",
        rng.u32(..)
    );
    debug_assert!(out[start..].ends_with(b"}\n"));
}

/// One logfmt line of the same service as [`app_lines`]: 12 keys, one quoted value.
pub fn logfmt_line(rng: &mut fastrand::Rng, seq: u64, out: &mut Vec<u8>) {
    const LEVELS: &[&str] = &["info", "info", "info", "debug", "warn", "error"];
    let _ = writeln!(
        Fmt(out),
        "ts=2026-11-25T04:{:02}:{:02}.{:03}Z level={} logger=com.example.orders.Service msg=\"request served in time\" method=GET path=/api/orders/{} status={} duration_ms={} bytes={} user=u{} request_id={:016x} trace_id={:016x}{:016x}",
        rng.u8(0..60),
        rng.u8(0..60),
        rng.u16(0..1000),
        LEVELS[rng.usize(..LEVELS.len())],
        seq,
        if rng.u8(0..10) == 0 { 500 } else { 200 },
        rng.u32(1..2000),
        rng.u32(100..100_000),
        rng.u16(0..5000),
        rng.u64(..),
        rng.u64(..),
        rng.u64(..),
    );
}

/// One nginx line as the kubelet writes a container's stdout (CRI): time, stream, tag; one in
/// 100 split into a partial piece (`P`) and its end (`F`).
pub fn cri_line(rng: &mut fastrand::Rng, _seq: u64, out: &mut Vec<u8>) {
    let mut line = Vec::with_capacity(256);
    nginx_line(rng, &mut line);
    let time = kubelet_time(rng);
    if rng.u8(0..100) == 0 {
        let cut = line.len() / 2;
        let _ = write!(Fmt(out), "{time} stdout P ");
        out.extend_from_slice(&line[..cut]);
        out.push(b'\n');
        let _ = write!(Fmt(out), "{time} stdout F ");
        out.extend_from_slice(&line[cut..]);
    } else {
        let _ = write!(Fmt(out), "{time} stdout F ");
        out.extend_from_slice(&line);
    }
}

/// One nginx line as Docker's json-file driver writes a container's stdout.
pub fn docker_line(rng: &mut fastrand::Rng, _seq: u64, out: &mut Vec<u8>) {
    let mut line = Vec::with_capacity(256);
    nginx_line(rng, &mut line);
    out.extend_from_slice(b"{\"log\":\"");
    for &byte in line.strip_suffix(b"\n").unwrap_or(&line) {
        if byte == b'"' || byte == b'\\' {
            out.push(b'\\');
        }
        out.push(byte);
    }
    let _ = writeln!(
        Fmt(out),
        "\\n\",\"stream\":\"stdout\",\"time\":\"{}\"}}",
        kubelet_time(rng)
    );
}

fn kubelet_time(rng: &mut fastrand::Rng) -> String {
    format!(
        "2026-11-25T04:{:02}:{:02}.{:09}Z",
        rng.u8(0..60),
        rng.u8(0..60),
        rng.u32(0..1_000_000_000)
    )
}

struct Fmt<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Fmt<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Writes `files` files of lines from `generate` totalling about `mib` MiB into `dir` (kept
/// between runs: regenerated only when missing). Returns the files, total bytes and lines.
pub fn corpus(
    dir: &Path,
    files: usize,
    mib: usize,
    seed: u64,
    generate: fn(&mut fastrand::Rng, u64, &mut Vec<u8>),
) -> (Vec<PathBuf>, u64, u64) {
    let done = dir.join(".complete");
    let paths: Vec<PathBuf> = (0..files)
        .map(|i| dir.join(format!("f{i:03}.log")))
        .collect();
    if !done.exists() {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir).unwrap();
        let per_file = (mib << 20) / files;
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut seq = 0;
        for path in &paths {
            let mut out = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
            let mut written = 0;
            let mut line = Vec::with_capacity(4096);
            while written < per_file {
                line.clear();
                generate(&mut rng, seq, &mut line);
                seq += 1;
                out.write_all(&line).unwrap();
                written += line.len();
            }
            out.flush().unwrap();
        }
        fs::write(&done, b"").unwrap();
    }
    let (bytes, lines) = paths.iter().fold((0, 0), |(b, l), p| {
        let data = fs::read(p).unwrap();
        (
            b + data.len() as u64,
            l + memchr::memchr_iter(b'\n', &data).count() as u64,
        )
    });
    (paths, bytes, lines)
}
