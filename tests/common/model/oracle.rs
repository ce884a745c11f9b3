//! The model's oracle: what the sink delivered (its output and the FIFO captures, in delivery
//! order), the persisted checkpoints, and the checks over them that the module doc of
//! `tests/model.rs` describes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::time::{Duration, Instant};

use super::support::{Delivered, tag_and_seq};
use super::*;
use crate::common::Checkpoints;

impl Model {
    /// Every event delivered so far, in delivery order.
    pub(super) fn delivered(&self) -> Delivered {
        super::support::merge(&fs::read(self.output()).unwrap_or_default(), &self.captures)
    }

    /// `(key, offset)` of every record of the persisted checkpoint file.
    pub(super) fn checkpoints(&self) -> Vec<(u64, u64)> {
        Checkpoints::read(&self.root().join("data"))
            .records
            .iter()
            .filter_map(|r| Some((r.key?, r.offset)))
            .collect()
    }

    /// The line numbers of `stream` delivered so far.
    pub(super) fn delivered_seqs(&self, stream: usize) -> BTreeSet<u64> {
        let tag = &self.streams[stream].tag;
        self.delivered()
            .events
            .iter()
            .filter_map(tag_and_seq)
            .filter(|(t, _)| t == tag)
            .map(|(_, seq)| seq)
            .collect()
    }

    pub(super) fn all_delivered(&self, stream: usize) -> bool {
        let seen = self.delivered_seqs(stream);
        (0..self.streams[stream].lines.len() as u64).all(|seq| seen.contains(&seq))
    }

    /// Makes the undelivered lines of `stream` optional (only its partial last line when
    /// `partial_only`); returns how many.
    pub(super) fn mark_undelivered_optional(&mut self, stream: usize, partial_only: bool) -> usize {
        let seen = self.delivered_seqs(stream);
        let s = &mut self.streams[stream];
        let n = s.lines.len() as u64;
        let candidates = if partial_only {
            match s.partial {
                Some(_) => n - 1..n,
                None => 0..0,
            }
        } else {
            0..n
        };
        let mut marked = 0;
        for seq in candidates {
            if !seen.contains(&seq) && s.optional.insert(seq) {
                marked += 1;
            }
        }
        marked
    }
    /// The required lines not delivered yet, as `tag:seq`.
    pub(super) fn missing(&self, delivered: &Delivered) -> Vec<String> {
        let mut seen: HashSet<(&str, u64)> = HashSet::new();
        for event in &delivered.events {
            if let Some(line) = tag_and_seq(event) {
                seen.insert(line);
            }
        }
        let mut missing = Vec::new();
        for s in &self.streams {
            for seq in 0..s.lines.len() as u64 {
                if !s.optional.contains(&seq) && !seen.contains(&(s.tag.as_str(), seq)) {
                    missing.push(format!("{}:{seq}", s.tag));
                }
            }
        }
        missing
    }

    /// The end of a run: the sink back, the agent running, partial lines of files still
    /// written to completed; waits for every required line, gives duplicates the time to
    /// show, stops the agent (the drain must exit 0) and checks what was delivered.
    pub(super) fn finish_and_check(&mut self) -> Result<(), String> {
        self.journal
            .push("-- end: restore, restart, complete partial lines".into());
        self.sink_restore();
        self.restart();
        let plain: Vec<(String, usize)> = self
            .files
            .iter()
            .filter(|(_, f)| !f.gz && !f.prefix)
            .map(|(name, f)| (name.clone(), f.stream))
            .collect();
        for (name, stream) in plain {
            let rest = self.complete_partial(stream);
            self.append(&name, &rest);
        }
        let start = Instant::now();
        loop {
            let missing = self.missing(&self.delivered());
            if missing.is_empty() {
                break;
            }
            if start.elapsed() > PATIENCE {
                return Err(format!(
                    "{} lines never delivered (first: {:?})",
                    missing.len(),
                    &missing[..missing.len().min(10)]
                ));
            }
            self.agent.as_mut().unwrap().assert_alive();
            std::thread::sleep(Duration::from_millis(50));
        }
        // A wrongly re-read file (a copy, a compressed file) shows within a few scans and
        // rotate waits.
        std::thread::sleep(Duration::from_millis(1_000));
        self.stop();
        self.check()
    }

    /// The oracle (see the module doc).
    pub(super) fn check(&self) -> Result<(), String> {
        let delivered = self.delivered();
        let mut problems = Vec::new();
        if delivered.torn > self.kills {
            problems.push(format!(
                "{} torn output lines for {} kills",
                delivered.torn, self.kills
            ));
        }
        let by_tag: HashMap<&str, &Stream> =
            self.streams.iter().map(|s| (s.tag.as_str(), s)).collect();
        let mut count: HashMap<(String, u64), usize> = HashMap::new();
        // Through transforms, the route sends even and odd lines along two paths into the
        // sink: order holds within each, not between them.
        let mut next_first: HashMap<(&str, u64), u64> = HashMap::new();
        for event in &delivered.events {
            let Some((tag, seq)) = tag_and_seq(event) else {
                problems.push(format!("unexpected event {event}"));
                continue;
            };
            let Some(stream) = by_tag.get(tag) else {
                problems.push(format!("a stream never written: {event}"));
                continue;
            };
            if seq >= stream.lines.len() as u64 {
                problems.push(format!("a line never written: {event}"));
                continue;
            }
            if self.through_transforms && event["through"] != "stamp" {
                problems.push(format!("{tag}:{seq} did not go through the remap: {event}"));
            }
            let message = event["message"].as_str().unwrap();
            let whole = &stream.lines[seq as usize];
            // The cut text is right for a line let go partial; a partial line that was
            // completed later must arrive whole.
            if message != stream.expected_text(seq) && message != whole.as_str() {
                problems.push(format!("{tag}:{seq} delivered as {message:?}"));
            }
            let n = count.entry((tag.to_owned(), seq)).or_default();
            *n += 1;
            if *n == 1 {
                let path = if self.through_transforms { seq % 2 } else { 0 };
                let next = next_first.entry((tag, path)).or_default();
                if seq < *next {
                    problems.push(format!(
                        "{tag}:{seq} first delivered after {tag}:{} (out of order)",
                        *next - 1
                    ));
                }
                *next = (*next).max(seq + 1);
            }
        }
        for ((tag, seq), n) in &count {
            let allowed = 1 + self
                .allowed_repeats
                .get(&(tag.clone(), *seq))
                .copied()
                .unwrap_or(0);
            if *n > allowed {
                problems.push(format!(
                    "{tag}:{seq} delivered {n} times, {allowed} allowed by the kills"
                ));
            }
        }
        let missing = self.missing(&delivered);
        if !missing.is_empty() {
            problems.push(format!("missing: {missing:?}"));
        }
        if problems.is_empty() {
            return Ok(());
        }
        problems.sort();
        let shown = problems.len().min(20);
        Err(format!(
            "{} problems, first {shown}:\n  {}",
            problems.len(),
            problems[..shown].join("\n  ")
        ))
    }
}
