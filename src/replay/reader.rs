//! The reader thread of a replay: each file read once, to its end (or to damage), framed,
//! parsed, filtered by time and handed to the pipeline, paced by `--rate-limit`.

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset};

use super::PlannedFile;
use super::progress::ProgressState;
use crate::checkpoint::Fingerprint;
use crate::checkpoint::{CheckpointStore, FileRecord, SinkId};
use crate::event::{Event, Field, FieldsView, FileMeta};
use crate::metrics::{Metrics, add};
use crate::parse::SourceParser;
use crate::parse::assemble::{FileState, Release};
use crate::pipeline::Router;
use crate::source::chunking::parse_framed;
use crate::source::compression::{Decoded, SNIFF_BYTES, codec_of, decompressed_head};
use crate::source::fingerprint::read_head;
use crate::source::framing::{Framed, Framer};
use crate::source::open::open_regular;

/// Bytes read at once.
const READ_SIZE: usize = 256 * 1024;
/// Bytes read at once under `--rate-limit`, so that pacing is smooth.
const PACED_READ_SIZE: usize = 16 * 1024;

/// Where a source's lines go, and how they are read.
pub(super) struct Route {
    pub(super) router: Router,
    pub(super) sinks: Vec<SinkId>,
    /// The source's parsing stages (format, multiline, timestamp, enrichment, filter).
    pub(super) parser: SourceParser,
    pub(super) max_line_bytes: usize,
}

/// What the reader thread did.
#[derive(Debug, Default)]
pub(super) struct ReaderReport {
    pub(super) files: u64,
    pub(super) lines: u64,
    pub(super) bytes: u64,
    pub(super) outside_time_range: u64,
    pub(super) filtered: u64,
    pub(super) undated: u64,
    /// Events handed to the pipeline, per source.
    pub(super) shipped: BTreeMap<String, u64>,
    pub(super) unreadable: Vec<String>,
    pub(super) damaged: Vec<String>,
    pub(super) interrupted: bool,
}

/// Reads the files one after another on its own thread.
pub(super) struct Reader {
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) routes: BTreeMap<String, Route>,
    pub(super) store: Arc<CheckpointStore>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) progress: Arc<ProgressState>,
    pub(super) stopping: Arc<AtomicBool>,
    pub(super) since: Option<DateTime<FixedOffset>>,
    pub(super) until: Option<DateTime<FixedOffset>>,
    pub(super) pacer: Option<Pacer>,
    pub(super) report: ReaderReport,
}

/// The pipeline is closed: nothing more can be sent.
struct Closed;

impl Reader {
    pub(super) fn read_all(mut self, files: &[PlannedFile]) -> ReaderReport {
        for file in files {
            if self.stopping.load(Ordering::Acquire) {
                self.report.interrupted = true;
                break;
            }
            match self.read_file(file) {
                Ok(()) => {}
                Err(Closed) => {
                    self.report.interrupted = true;
                    break;
                }
            }
            self.progress.files_done.fetch_add(1, Ordering::Relaxed);
        }
        self.report
    }

    fn read_file(&mut self, planned: &PlannedFile) -> Result<(), Closed> {
        // Taken out while its file is read (emitting needs `self` mutably), then put back.
        let Some(route) = self.routes.remove(&planned.source) else {
            return Ok(());
        };
        let result = self.read_file_to(planned, &route);
        self.routes.insert(planned.source.clone(), route);
        result
    }

    fn read_file_to(&mut self, planned: &PlannedFile, route: &Route) -> Result<(), Closed> {
        let path_text = std::path::absolute(&planned.path)
            .unwrap_or_else(|_| planned.path.clone())
            .to_string_lossy()
            .into_owned();
        // The operator named these paths (links included), but what is opened must be a regular
        // file that never blocks: a FIFO swapped in after listing is refused, not waited on.
        let consumed = Arc::new(AtomicU64::new(0));
        let opened = open_regular(&planned.path, None, true)
            .map_err(std::io::Error::other)
            .and_then(|file| {
                let raw_head = read_head(&file, SNIFF_BYTES)?;
                let head = match codec_of(&raw_head) {
                    // Damage at the very start shows when the file is read, where it is reported.
                    Some(codec) => {
                        decompressed_head(&file, codec, HEAD_FOR_KEY).unwrap_or_default()
                    }
                    None => read_head(&file, HEAD_FOR_KEY)?,
                };
                let reader = Decoded::new(file, &raw_head, Arc::clone(&consumed))?;
                Ok((reader, head))
            });
        let (mut reader, head) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                tracing::warn!(file = %path_text, error = %e, "cannot read file");
                self.report.unreadable.push(format!("{path_text}: {e}"));
                return Ok(());
            }
        };
        // Stable across replays of the same file, so that consumers can drop the duplicates of
        // a replay repeated.
        let key = xxhash_rust::xxh3::xxh3_64(&[path_text.as_bytes(), b"\0", &head].concat());
        let meta = Arc::new(
            FileMeta::new(key, planned.source.as_str(), path_text.as_str())
                .with_enrichment(Arc::clone(route.parser.enrichment())),
        );
        self.store.track(
            FileRecord {
                source: Arc::clone(&meta.source),
                path: Arc::clone(&meta.path),
                dev: 0,
                ino: 0,
                fingerprint: Fingerprint::of(&head),
                key,
                offset: 0,
                updated_unix: 0,
                finished: false,
                marks: Vec::new(),
                copy: false,
            },
            &route.sinks,
        );
        let mut framer = Framer::new(0, route.max_line_bytes);
        let mut held = FileState::default();
        let read_size = if self.pacer.is_some() {
            PACED_READ_SIZE
        } else {
            READ_SIZE
        };
        let source_metrics = self.metrics.source(&planned.source);
        let mut progress_seen = 0;
        self.report.files += 1;
        // Whole lines go out as they are read; at the end, the unterminated last line too. At an
        // interruption or damage, not the piece of a line read last: only what parsing held
        // (whole lines of an open multiline group).
        let finish_last_line = loop {
            if self.stopping.load(Ordering::Acquire) {
                self.report.interrupted = true;
                break false;
            }
            let read = framer.read_from(&mut reader, read_size);
            let seen = consumed.load(Ordering::Relaxed);
            self.progress
                .bytes_done
                .fetch_add(seen - progress_seen, Ordering::Relaxed);
            progress_seen = seen;
            match read {
                Ok(0) => break true,
                Ok(got) => {
                    self.report.bytes += got as u64;
                    add(&source_metrics.bytes_in, got as u64);
                    let mut events = Vec::new();
                    let framed = framer.frame(&mut events);
                    let end = framer.commit_offset();
                    let release = Release::Due(std::time::Instant::now());
                    self.emit(route, &meta, &mut held, framed, events, end, release)?;
                }
                Err(e) => {
                    let at = if let Some(codec) = reader.codec() {
                        format!("{codec} byte {seen}")
                    } else {
                        format!("byte {seen}")
                    };
                    let cut = framer.pending_bytes();
                    tracing::error!(file = %path_text, error = %e, at = %at, cut_line_bytes = cut, "file damaged; the lines before the damage are shipped");
                    self.report.damaged.push(format!(
                        "{path_text}: at {at}: {e} (a cut line of {cut} bytes left out)"
                    ));
                    break false;
                }
            }
        };
        let mut events = Vec::new();
        let framed = if finish_last_line {
            framer.finish(&mut events)
        } else {
            Framed::default()
        };
        let end = framer.commit_offset();
        self.emit(route, &meta, &mut held, framed, events, end, Release::All)
    }

    /// Parses, filters by time and hands on one chunk of a file; `held` is what parsing holds
    /// back between its chunks, `release` what of it may go now.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        route: &Route,
        meta: &Arc<FileMeta>,
        held: &mut FileState,
        framed: Framed,
        events: Vec<Event>,
        end_offset: u64,
        release: Release,
    ) -> Result<(), Closed> {
        let source_metrics = self.metrics.source(&meta.source);
        let mut step = parse_framed(
            &route.parser,
            held,
            framed,
            events,
            end_offset,
            release,
            &source_metrics,
        );
        self.report.lines += step.lines;
        self.report.filtered += step.counts().filtered;
        if step.parsed.events.is_empty() {
            return Ok(());
        }
        if self.since.is_some() || self.until.is_some() {
            let (since, until) = (self.since, self.until);
            let parsed = &mut step.parsed;
            let before = parsed.events.len();
            let mut undated = 0;
            let (data, fields) = (&parsed.data, &parsed.fields);
            parsed
                .events
                .retain(|event| match event_time(event, data, fields) {
                    Some(at) => since.is_none_or(|s| at >= s) && until.is_none_or(|u| at < u),
                    None => {
                        undated += 1;
                        true
                    }
                });
            self.report.undated += undated;
            self.report.outside_time_range += (before - parsed.events.len()) as u64;
        }
        let shipped = step.parsed.events.len() as u64;
        *self
            .report
            .shipped
            .entry(meta.source.to_string())
            .or_default() += shipped;
        self.store.emitted(meta.key, step.end_offset);
        let chunk = step.into_chunk(Arc::clone(meta));
        self.runtime
            .block_on(route.router.send(chunk))
            .map_err(|_| Closed)?;
        if let Some(pacer) = &mut self.pacer {
            pacer.pace(shipped);
        }
        Ok(())
    }
}

/// The time an event says it happened: the time parsed out of its line (the access and error
/// log formats, `timestamp:`), else an RFC 3339 `timestamp`, `time`, `@timestamp` or `ts` field.
fn event_time(event: &Event, data: &[u8], store: &[Field]) -> Option<DateTime<FixedOffset>> {
    if let Some(nanos) = event.time {
        return Some(DateTime::from_timestamp_nanos(nanos).fixed_offset());
    }
    let fields = FieldsView::new(data, store, event.fields?);
    ["timestamp", "time", "@timestamp", "ts"]
        .iter()
        .filter_map(|key| fields.get(key)?.as_str())
        .find_map(|text| DateTime::parse_from_rfc3339(&text).ok())
}

/// Bytes of a file's (uncompressed) head that go into its key.
const HEAD_FOR_KEY: usize = 1024;

/// Paces lines to a rate.
pub(super) struct Pacer {
    lines_per_second: u64,
    started: Instant,
    sent: u64,
}

impl Pacer {
    pub(super) fn new(rate: NonZeroU64) -> Self {
        Pacer {
            lines_per_second: rate.get(),
            started: Instant::now(),
            sent: 0,
        }
    }

    /// Counts `lines` more and sleeps until they are due.
    fn pace(&mut self, lines: u64) {
        self.sent += lines;
        let due = Duration::from_secs_f64(self.sent as f64 / self.lines_per_second as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}
