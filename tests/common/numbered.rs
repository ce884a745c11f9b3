//! Numbered lines, the tests' unit of account: line `seq` of stream `tag` reads
//! `<tag> <seq, 9 digits> ....`, so that what a sink received can be checked number by number
//! (nothing missing, nothing twice, in order) whatever rotation or crash came in between.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::ops::Range;
use std::path::Path;

use serde_json::Value;

/// The numbered line `seq` of stream `tag`, padded with dots to `width` bytes (more when the
/// tag and number alone are longer), then a newline.
pub fn numbered(tag: &str, seq: u64, width: usize) -> String {
    let mut line = format!("{tag} {seq:09} ");
    let pad = width.saturating_sub(line.len());
    line.extend(std::iter::repeat_n('.', pad));
    line.push('\n');
    line
}

/// The numbered lines `range` of `tag`, one after another.
pub fn numbered_lines(tag: &str, range: Range<u64>, width: usize) -> String {
    range.map(|seq| numbered(tag, seq, width)).collect()
}

/// The events of numbered stream `tag`.
pub fn of_tag(events: &[Value], tag: &str) -> Vec<Value> {
    let prefix = format!("{tag} ");
    events
        .iter()
        .filter(|e| e["message"].as_str().unwrap().starts_with(&prefix))
        .cloned()
        .collect()
}

/// Appends numbered lines `range` of `tag` to `path` (created if missing), in one write.
pub fn append_numbered(path: &Path, tag: &str, range: Range<u64>, width: usize) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(numbered_lines(tag, range, width).as_bytes())
        .unwrap();
}

/// Appends numbered lines `range` of `tag` to `path` the way an application logs: in bursts of
/// `burst` lines, each in one write, calling `after(first)` with the first number of each
/// burst once it is written (to rotate the file, pause, or wait for a kill in between).
pub fn append_numbered_in_bursts(
    path: &Path,
    tag: &str,
    range: Range<u64>,
    burst: u64,
    width: usize,
    mut after: impl FnMut(u64),
) {
    let end = range.end;
    for first in range.step_by(usize::try_from(burst).unwrap()) {
        append_numbered(path, tag, first..(first + burst).min(end), width);
        after(first);
    }
}

/// How often each sequence number of each tag was delivered, from numbered messages.
pub fn counts(events: &[Value]) -> BTreeMap<String, BTreeMap<u64, usize>> {
    let mut counts: BTreeMap<String, BTreeMap<u64, usize>> = BTreeMap::new();
    for event in events {
        let message = event["message"].as_str().unwrap_or_default();
        let mut words = message.split(' ');
        let (Some(tag), Some(seq)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(seq) = seq.parse::<u64>() else {
            continue;
        };
        *counts
            .entry(tag.to_owned())
            .or_default()
            .entry(seq)
            .or_default() += 1;
    }
    counts
}

/// Asserts that stream `tag` arrived with every number of `0..n` exactly once.
pub fn assert_exactly_once(events: &[Value], tag: &str, n: u64) {
    let counts = counts(events);
    let seen = counts.get(tag).cloned().unwrap_or_default();
    let missing: Vec<u64> = (0..n).filter(|s| !seen.contains_key(s)).collect();
    let repeated: Vec<(u64, usize)> = seen
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(s, c)| (*s, *c))
        .collect();
    let extra: Vec<u64> = seen.keys().filter(|s| **s >= n).copied().collect();
    assert!(
        missing.is_empty() && repeated.is_empty() && extra.is_empty(),
        "{tag}: {} missing (first {:?}), {} repeated (first {:?}), {} unexpected",
        missing.len(),
        &missing[..missing.len().min(10)],
        repeated.len(),
        &repeated[..repeated.len().min(10)],
        extra.len()
    );
}

/// Asserts that stream `tag` arrived with every number of `0..n` at least once, in order of
/// first delivery.
pub fn assert_at_least_once_in_order(events: &[Value], tag: &str, n: u64) {
    let mut next = 0;
    let mut seen = std::collections::BTreeSet::new();
    for event in events {
        let message = event["message"].as_str().unwrap_or_default();
        let mut words = message.split(' ');
        if words.next() != Some(tag) {
            continue;
        }
        let seq: u64 = words.next().unwrap().parse().unwrap();
        if seen.insert(seq) {
            assert_eq!(
                seq, next,
                "{tag}: first delivery of {seq} came when {next} was expected"
            );
            next += 1;
        }
    }
    assert_eq!(next, n, "{tag}: only 0..{next} of 0..{n} delivered");
}
