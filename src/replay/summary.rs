//! What a replay did, as its summary prints it: files, lines, deliveries, damage, the time
//! range's outcome and where dead letters went.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// What a replay did.
#[derive(Debug, Clone, Default)]
pub struct ReplaySummary {
    /// Files read (to their end, or to their damage).
    pub files: u64,
    /// Lines read.
    pub lines: u64,
    /// Bytes of content read (uncompressed).
    pub bytes: u64,
    /// Lines that failed to parse (shipped anyway, with `parse_error`).
    pub parse_errors: u64,
    /// Lines left out by `--since`/`--until`.
    pub outside_time_range: u64,
    /// Events dropped by a source's `filter`.
    pub filtered: u64,
    /// Lines without a time that `--since`/`--until` could judge (kept).
    pub undated: u64,
    /// Events delivered, summed over sinks.
    pub delivered: u64,
    /// Events sent to a sink and not delivered there (dead-lettered, dropped, or interrupted),
    /// summed over sinks.
    pub undelivered: u64,
    /// Files that could not be opened, with the reason.
    pub unreadable: Vec<String>,
    /// Files read up to damage (a corrupt or truncated compressed file), with where and why.
    pub damaged: Vec<String>,
    /// True when stopped by a signal before every file was read.
    pub interrupted: bool,
    /// Whether `--since`/`--until` were given.
    pub time_range: bool,
    /// Events a sink failed on for good, by sink: how many, and the file that keeps them.
    pub dead_letters: Vec<DeadLetters>,
    /// True when a sink writes events to standard output: the summary then goes to standard
    /// error, so that standard output carries events only.
    pub events_on_stdout: bool,
    /// How long it took.
    pub elapsed: Duration,
}

/// Events a sink gave up on, kept in a file to replay once the sink works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetters {
    /// The sink.
    pub sink: String,
    /// How many events.
    pub events: u64,
    /// The file they are in.
    pub path: PathBuf,
}

impl ReplaySummary {
    /// True when every line read was delivered and nothing was damaged or left unread.
    pub fn succeeded(&self) -> bool {
        self.undelivered == 0
            && self.damaged.is_empty()
            && self.unreadable.is_empty()
            && !self.interrupted
    }
}

impl fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.elapsed.as_secs_f64().max(1e-6);
        writeln!(
            f,
            "replay: {} files, {} lines, {} bytes in {:.2} s ({:.0} events/s)",
            self.files,
            self.lines,
            self.bytes,
            seconds,
            self.lines as f64 / seconds
        )?;
        writeln!(
            f,
            "  delivered: {}, undelivered: {}, parse errors: {}",
            self.delivered, self.undelivered, self.parse_errors
        )?;
        if self.filtered > 0 {
            writeln!(f, "  dropped by filter: {}", self.filtered)?;
        }
        if self.time_range {
            writeln!(
                f,
                "  outside --since/--until: {}, without a time (kept): {}",
                self.outside_time_range, self.undated
            )?;
            if self.undated > 0 {
                let how_many = if self.undated == self.lines {
                    "none of the lines has".to_owned()
                } else {
                    format!("{} of the {} lines have", self.undated, self.lines)
                };
                writeln!(
                    f,
                    "  note: {how_many} a time to judge by (a time the format carries, or a parsed \
                     `timestamp`, `time`, `@timestamp` or `ts` field): --since/--until kept them \
                     (give --format, or a config whose source parses the time)"
                )?;
            }
        }
        for dead in &self.dead_letters {
            writeln!(
                f,
                "  dead-lettered: {} events of sink `{}`, kept in {} (replay that file once the sink works)",
                dead.events,
                dead.sink,
                dead.path.display()
            )?;
        }
        for line in &self.unreadable {
            writeln!(f, "  unreadable: {line}")?;
        }
        for line in &self.damaged {
            writeln!(f, "  damaged: {line}")?;
        }
        if self.interrupted {
            writeln!(f, "  interrupted: files were left unread")?;
        }
        Ok(())
    }
}
