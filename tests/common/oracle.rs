//! The oracle of the real-tools tests: what the tools left on disk (every generation, gzip ones
//! decompressed) against what the agent shipped to its NDJSON file sink, by request (or line)
//! number. Every number on disk must have been shipped, once, and every shipped event must be
//! a line the writer wrote; the report prints the counts whether the test passes or not.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::process::AgentProcess;
use super::tools::USER_AGENT;

/// The lines a test's writer produces, and how to read their number back.
pub enum Lines {
    /// nginx's `combined` lines for `GET /r/<tag>-<n>` from the load client.
    Nginx { tag: String },
    /// `numbered(tag, n, width)` lines.
    Numbered { tag: String, width: usize },
}

impl Lines {
    /// The number of a whole line (without its newline) the writer wrote; `None` for anything
    /// else.
    pub fn number(&self, line: &str) -> Option<u64> {
        match self {
            Lines::Nginx { tag } => {
                // 127.0.0.1 - - [06/Dec/2026:02:15:50 +0000] "GET /r/t-7 HTTP/1.1" 204 0 "-" "ua"
                let rest = line.strip_prefix("127.0.0.1 - - [")?;
                let (time, rest) = rest.split_once("] \"GET /r/")?;
                if time.len() != "06/Dec/2026:02:15:50 +0000".len() {
                    return None;
                }
                let rest = rest.strip_prefix(tag.as_str())?.strip_prefix('-')?;
                let (number, rest) = rest.split_once(' ')?;
                let expected = format!("HTTP/1.1\" 204 0 \"-\" \"{USER_AGENT}\"");
                (rest == expected).then_some(())?;
                digits(number)
            }
            Lines::Numbered { tag, width } => {
                let rest = line.strip_prefix(tag.as_str())?.strip_prefix(' ')?;
                let (number, dots) = rest.split_once(' ')?;
                let whole = line.len() == *width && dots.bytes().all(|b| b == b'.');
                whole.then_some(())?;
                digits(number)
            }
        }
    }
}

fn digits(text: &str) -> Option<u64> {
    let ok = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| text.parse().ok()).flatten()
}

/// The numbers in every generation left on disk.
#[derive(Default)]
pub struct Disk {
    pub numbers: HashSet<u64>,
    /// Each file read: name, size on disk, lines.
    pub files: Vec<(String, u64, usize)>,
    /// Lines on disk that are not whole lines of the writer: a copy that ended inside a line
    /// (logrotate copies what it reads, and a read can see half of a write). Shipping them is
    /// shipping what is on disk, not garbage.
    pub fragments: HashSet<String>,
}

impl Disk {
    /// Reads every file whose name starts with `prefix` in `dirs`; a file starting with gzip's
    /// magic bytes is decompressed (every member).
    pub fn read(lines: &Lines, dirs: &[PathBuf], prefix: &str) -> Disk {
        let mut disk = Disk::default();
        for dir in dirs {
            let mut names: Vec<PathBuf> = fs::read_dir(dir)
                .unwrap()
                .map(|entry| entry.unwrap().path())
                .filter(|path| {
                    let name = path.file_name().unwrap().to_string_lossy();
                    name.starts_with(prefix) && path.is_file()
                })
                .collect();
            names.sort();
            for path in names {
                let raw = fs::read(&path).unwrap();
                let text = if raw.starts_with(&[0x1f, 0x8b]) {
                    let mut out = Vec::new();
                    flate2::read::MultiGzDecoder::new(&raw[..])
                        .read_to_end(&mut out)
                        .unwrap_or_else(|e| panic!("{} is damaged gzip: {e}", path.display()));
                    out
                } else {
                    raw.clone()
                };
                let mut count = 0;
                for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    count += 1;
                    let line = String::from_utf8_lossy(line);
                    match lines.number(&line) {
                        Some(n) => {
                            disk.numbers.insert(n);
                        }
                        None => {
                            disk.fragments.insert(line.into_owned());
                        }
                    }
                }
                let name = path.strip_prefix(dir.parent().unwrap()).unwrap();
                disk.files
                    .push((name.display().to_string(), raw.len() as u64, count));
            }
        }
        disk
    }
}

#[derive(serde::Deserialize)]
struct Event<'a> {
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    file: Option<Cow<'a, str>>,
    offset: Option<u64>,
    #[serde(default)]
    invalid_utf8: bool,
}

/// An event that is not a line of the writer (kept to report, or to excuse as a fragment).
struct Unparsed {
    /// At most [`KEPT`] bytes of the message.
    message: String,
    whole: bool,
    invalid_utf8: bool,
    at: String,
}

const KEPT: usize = 300;

/// What the sink received, read incrementally (each byte once, as the sink appends).
pub struct Shipped {
    path: PathBuf,
    read_to: u64,
    pub events: u64,
    counts: HashMap<u64, u32>,
    /// Where each number was shipped from (file, offset), for the report on repeats.
    places: HashMap<u64, Vec<String>>,
    unparsed: Vec<Unparsed>,
}

impl Shipped {
    pub fn new(path: &Path) -> Shipped {
        Shipped {
            path: path.to_owned(),
            read_to: 0,
            events: 0,
            counts: HashMap::new(),
            places: HashMap::new(),
            unparsed: Vec::new(),
        }
    }

    pub fn contains(&self, n: u64) -> bool {
        self.counts.contains_key(&n)
    }

    /// Reads the whole lines the sink appended since the last call.
    pub fn update(&mut self, lines: &Lines) {
        let mut new = Vec::new();
        let Ok(mut file) = fs::File::open(&self.path) else {
            return;
        };
        file.seek(SeekFrom::Start(self.read_to)).unwrap();
        file.read_to_end(&mut new).unwrap();
        // A line without its newline is still being written by the sink.
        let whole = new.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.read_to += whole as u64;
        for line in new[..whole]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
        {
            let event: Event = serde_json::from_slice(line).unwrap_or_else(|e| {
                panic!("bad NDJSON line {e}: {}", String::from_utf8_lossy(line))
            });
            self.events += 1;
            let at = format!(
                "{}@{}",
                event.file.as_deref().unwrap_or("?"),
                event.offset.map_or("?".into(), |o| o.to_string())
            );
            let message = event.message.as_deref().unwrap_or_default();
            match lines.number(message).filter(|_| !event.invalid_utf8) {
                Some(n) => {
                    *self.counts.entry(n).or_default() += 1;
                    self.places.entry(n).or_default().push(at);
                }
                None => {
                    let mut end = message.len().min(KEPT);
                    while !message.is_char_boundary(end) {
                        end -= 1;
                    }
                    self.unparsed.push(Unparsed {
                        message: message[..end].to_owned(),
                        whole: end == message.len(),
                        invalid_utf8: event.invalid_utf8,
                        at,
                    });
                }
            }
        }
    }

    /// Polls the sink until every number on disk was shipped and nothing new came for 1.5 s
    /// (late repeats show), or nothing came for 8 s (what is missing will not come), 60 s at
    /// most; panics if the agent died.
    pub fn wait_for(&mut self, lines: &Lines, disk: &Disk, agent: &mut AgentProcess) {
        let start = Instant::now();
        let mut last_change = Instant::now();
        let mut seen = u64::MAX;
        loop {
            agent.assert_alive();
            self.update(lines);
            if self.events != seen {
                seen = self.events;
                last_change = Instant::now();
            }
            let quiet = last_change.elapsed();
            let complete = quiet > Duration::from_millis(1500)
                && disk.numbers.iter().all(|n| self.contains(*n));
            if complete || quiet > Duration::from_secs(8) || start.elapsed().as_secs() > 60 {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// What a test ran, for the report.
pub struct Run<'a> {
    pub name: &'a str,
    /// Requests (or lines) written: numbers `0..sent`.
    pub sent: u64,
    /// logrotate runs (each a rotation with `-f`).
    pub logrotate_runs: u64,
    /// Whether lines may be legitimately lost (neither on disk nor shipped): copytruncate's
    /// writes between its copy and its truncation, generations deleted before the agent read
    /// them. Elsewhere a loss means the test itself is broken (a line was never written).
    pub loss_allowed: bool,
}

/// Prints the counts and returns every failed check as the error: a number on disk never
/// shipped, an event that is not a line the writer wrote, a number shipped twice.
pub fn check(run: &Run, disk: &Disk, shipped: &Shipped) -> Result<(), String> {
    let mut missing: Vec<u64> = disk
        .numbers
        .iter()
        .copied()
        .filter(|n| !shipped.contains(*n))
        .collect();
    missing.sort_unstable();
    let mut repeated: Vec<(u64, u32)> = shipped
        .counts
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, c)| (*n, *c))
        .collect();
    repeated.sort_unstable();
    let extra_events: u64 = repeated.iter().map(|(_, c)| u64::from(*c - 1)).sum();
    let never_sent = shipped.counts.keys().filter(|n| **n >= run.sent).count();
    let garbage: Vec<&Unparsed> = shipped
        .unparsed
        .iter()
        .filter(|u| u.invalid_utf8 || !u.whole || !disk.fragments.contains(&u.message))
        .collect();
    let invalid_utf8 = garbage.iter().filter(|u| u.invalid_utf8).count();
    let lost = (0..run.sent)
        .filter(|n| !disk.numbers.contains(n) && !shipped.contains(*n))
        .count();
    let size: u64 = disk.files.iter().map(|f| f.1).sum();
    println!(
        "{}: sent {}, logrotate runs {}, on disk {} numbers in {} files ({} KiB), shipped {} events \
         ({} numbers), missing {}, repeated {} numbers ({} extra events), garbage {} events \
         ({} invalid_utf8), fragments on disk {}, never sent {}, lost {}{}",
        run.name,
        run.sent,
        run.logrotate_runs,
        disk.numbers.len(),
        disk.files.len(),
        size / 1024,
        shipped.events,
        shipped.counts.len(),
        missing.len(),
        repeated.len(),
        extra_events,
        garbage.len(),
        invalid_utf8,
        disk.fragments.len(),
        never_sent,
        lost,
        if run.loss_allowed { " (allowed)" } else { "" },
    );
    let mut failures = String::new();
    if !garbage.is_empty() {
        let _ = writeln!(
            failures,
            "{} shipped events are not lines the writer wrote ({} flagged invalid_utf8); first:",
            garbage.len(),
            invalid_utf8
        );
        for u in garbage.iter().take(5) {
            let start: String = u.message.chars().take(80).collect();
            let _ = writeln!(failures, "  {} {start:?}", u.at);
        }
    }
    if !repeated.is_empty() {
        let _ = writeln!(
            failures,
            "{} numbers shipped more than once ({} extra events; no kill happened); first:",
            repeated.len(),
            extra_events
        );
        for (n, count) in repeated.iter().take(5) {
            let _ = writeln!(failures, "  {n} x{count} from {:?}", shipped.places[n]);
        }
    }
    if !missing.is_empty() {
        let _ = writeln!(
            failures,
            "{} numbers on disk were never shipped; first {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
    }
    if never_sent > 0 {
        let _ = writeln!(failures, "{never_sent} shipped numbers were never sent");
    }
    if lost > 0 && !run.loss_allowed {
        let _ = writeln!(
            failures,
            "{lost} numbers sent are neither on disk nor shipped, though nothing here deletes \
             or truncates a file: the test is broken"
        );
    }
    if !failures.is_empty() {
        let files: Vec<String> = disk
            .files
            .iter()
            .map(|(name, size, lines)| format!("{name} ({size} B, {lines} lines)"))
            .collect();
        return Err(format!(
            "{}: the agent against the real tools:\n{failures}files on disk: {}",
            run.name,
            files.join(", ")
        ));
    }
    Ok(())
}
