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

/// The generated corpora.
#[path = "micro/corpus.rs"]
mod corpus;
/// Every format, parsed.
#[path = "micro/formats.rs"]
mod formats;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use log_agent::checkpoint::Fingerprint;
use log_agent::event::json::write_json_str;
use log_agent::event::{Chunk, Event};
use log_agent::pipeline::batcher::Batcher;
use log_agent::sink::delivery::BatchConfig;
use log_agent::sink::encoding::{Encoding, encode_batch};
use log_agent::source::framing::Framer;
use log_agent::source::tailer::READ_SIZE;

use corpus::{batch_of, corpora, message_bytes, nginx_line};
use formats::parse;

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
