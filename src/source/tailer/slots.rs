//! Open slots: files take turns when more have data than `max_open_files` allows open.
//!
//! Invariant: never more than `max_open_files` descriptors, and every waiting file gets its
//! turn (the longest idle open file is closed for one that waits).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::tracked::TrackedFile;
use super::{Emit, Stopped, TURN_BYTES, Tailer};
use crate::source::open::stat;

/// Files waiting for a slot that take their turn per call of `pass_turns`, at least.
const QUEUED_TURNS_PER_PASS: usize = 1024;
/// Besides, per call of `pass_turns`, one in this many tracked files: between two calls the
/// tailer's loop goes over every tracked file a few times (read pass, letting files go), which
/// with 100,000 files and 1,024 turns a call took a tenth of the CPU; so the calls needed to
/// give every file a turn stay about this many, whatever the number of files.
const TURNS_PER_PASS_FRACTION: usize = 32;

/// How many waiting files take their turn per call of `pass_turns` when `tracked` files are
/// tracked.
fn turns_per_pass(tracked: usize) -> usize {
    (tracked / TURNS_PER_PASS_FRACTION).max(QUEUED_TURNS_PER_PASS)
}

/// An open file that has had its turn (read to its end) and can make room for one waiting: a
/// gzip file keeps its slot to its end (it cannot be resumed without reading it again from its
/// start), a held one until it is decided, one gone or finished until it is let go.
fn done_with_turn(f: &TrackedFile) -> bool {
    f.file.is_some()
        && f.eof_since.is_some()
        && f.gone_since.is_none()
        && !f.is_finished()
        && !f.is_compressed()
        && !f.is_held()
}

/// No size seen by the scan (not an `Option`: the scan of 100,000 files holds one a file, and
/// this halves them). No file is that long.
pub(super) const UNSEEN: u64 = u64::MAX;

impl<E: Emit> Tailer<E> {
    pub(super) fn open_count(&self) -> usize {
        self.files.iter().filter(|f| f.file.is_some()).count()
    }

    /// Called with a file just found while `max_open_files` are open already: closes it (it
    /// waits its turn like any file closed for the cap), or, for a file that cannot wait
    /// closed (gzip, possible copy), closes an idle file instead. False when no room was made
    /// for a gzip file, which is then left for a later scan.
    pub(super) fn make_room_for(&mut self, file: &mut TrackedFile) -> bool {
        if !file.is_compressed() && !file.is_held() {
            file.close_for_turn();
            return true;
        }
        let victim = (0..self.files.len())
            .filter(|&i| {
                let f = &self.files[i];
                f.file.is_some()
                    && f.gone_since.is_none()
                    && !f.is_finished()
                    && !f.is_compressed()
                    && !f.is_held()
            })
            .min_by_key(|&i| (self.files[i].eof_since.is_none(), self.files[i].opened_at));
        match victim {
            Some(i) => {
                self.files[i].close_for_turn();
                true
            }
            None if file.is_compressed() => false,
            None => {
                // A possible copy closed is released as a file of its own when reviewed: read
                // from its start (duplicates, never loss).
                file.close_for_turn();
                true
            }
        }
    }

    /// Opens waiting files with data while slots are free, closing open files that have had
    /// their turn when more files wait than slots are free.
    /// While `draining`, an open file makes room as soon as it has been read. `sizes` holds
    /// the files' sizes where a scan just found them (by index; [`UNSEEN`] where it did not);
    /// the others are looked up.
    pub(super) fn share_open_slots(&mut self, draining: bool, sizes: &[u64]) {
        let cap = self.ctx.config.max_open_files;
        let waiting: Vec<usize> = (0..self.files.len())
            .filter(|&i| {
                let f = &self.files[i];
                let unread = if f.is_compressed() {
                    // Never grows: it waits for a slot only until it has been read.
                    !f.is_exhausted() && !f.is_held()
                } else {
                    let seen = sizes.get(i).copied().filter(|&size| size != UNSEEN);
                    let size = seen.or_else(|| {
                        stat(Path::new(&*f.meta.path), self.ctx.config.follow_symlinks)
                            .ok()
                            .map(|md| md.len())
                    });
                    size.is_some_and(|size| size != f.framer.read_offset())
                };
                f.file.is_none() && !f.is_finished() && f.gone_since.is_none() && unread
            })
            .collect();
        let open = self.open_count();
        // New files are opened as they are found; past the cap, the excess closes right away.
        let excess = open.saturating_sub(cap);
        let mut free = cap.saturating_sub(open);
        let wanted = excess + waiting.len().saturating_sub(free);
        if wanted > 0 {
            let min_turn = if draining {
                Duration::ZERO
            } else {
                Duration::from_millis(self.ctx.config.scan_interval_ms)
            };
            // Files that can be reopened by path: live, not held, not finished.
            let mut candidates: Vec<usize> = (0..self.files.len())
                .filter(|&i| {
                    let f = &self.files[i];
                    f.file.is_some()
                        && f.gone_since.is_none()
                        && !f.is_finished()
                        // A gzip file being decompressed cannot be resumed without reading it
                        // again from its start: it keeps its slot until its end.
                        && !f.has_decoder()
                        && !f.is_held()
                })
                .collect();
            // Idle files first, then those open the longest.
            candidates
                .sort_by_key(|&i| (self.files[i].eof_since.is_none(), self.files[i].opened_at));
            let mut closed = 0;
            for i in candidates {
                if closed >= wanted {
                    break;
                }
                // Beyond the excess, only files that had a turn make room for waiting ones.
                if closed >= excess && self.files[i].opened_at.elapsed() < min_turn {
                    continue;
                }
                self.files[i].close_for_turn();
                closed += 1;
                if closed > excess {
                    free += 1;
                }
            }
        }
        let mut waiting = waiting.into_iter();
        for i in waiting.by_ref().take(free) {
            self.ctx.reopen(&mut self.files[i]);
        }
        self.turn_queue = waiting.map(|i| (i, self.files[i].meta.key)).collect();
    }

    /// Between scans, gives the slots of files read to their end to files waiting for one (see
    /// `turn_queue`), and has each take its turn at once: one read to its end in its turn hands
    /// its slot straight on, so that thousands of small files waiting go through in one call,
    /// not in one loop (with its passes over every tracked file) per `max_open_files` of them.
    /// At most [`turns_per_pass`] files, and as many bytes as a read pass of the open
    /// files may read, take their turn per call. True when anything was read.
    pub(super) fn pass_turns(&mut self) -> Result<bool, Stopped> {
        if self.turn_queue.is_empty() {
            return Ok(false);
        }
        let cap = self.ctx.config.max_open_files;
        let mut open = self.open_count();
        let mut to_close = self
            .turn_queue
            .len()
            .saturating_sub(cap.saturating_sub(open));
        for f in &mut self.files {
            if to_close == 0 {
                break;
            }
            if done_with_turn(f) {
                f.close_for_turn();
                open -= 1;
                to_close -= 1;
            }
        }
        let byte_budget = (cap as u64).saturating_mul(TURN_BYTES as u64);
        let (mut turns, mut bytes, mut progressed) = (0, 0u64, false);
        let max_turns = turns_per_pass(self.files.len());
        while open < cap && turns < max_turns && bytes < byte_budget {
            let Some((i, key)) = self.turn_queue.pop_front() else {
                break;
            };
            let Some(f) = self.files.get_mut(i) else {
                continue;
            };
            if f.meta.key != key || f.file.is_some() || f.is_finished() || f.gone_since.is_some() {
                continue;
            }
            self.ctx.reopen(f);
            if f.file.is_none() {
                continue;
            }
            turns += 1;
            let before = f.framer.read_offset();
            progressed |= self.ctx.read_turn(f)?;
            bytes += f.framer.read_offset().saturating_sub(before);
            if done_with_turn(f) {
                f.close_for_turn();
            } else {
                open += 1;
            }
        }
        // Generations a turn found truncated join the files (after the indices queued).
        self.files.append(&mut self.ctx.retired);
        self.ctx
            .metrics
            .open_files
            .store(self.open_count() as u64, Ordering::Relaxed);
        // Out of budget with files still waiting: the loop goes on without sleeping.
        Ok(progressed || (!self.turn_queue.is_empty() && open < cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_per_call_grow_with_the_files_tracked() {
        // (files tracked, waiting files taking their turn per call)
        let cases = [
            (0, QUEUED_TURNS_PER_PASS),
            (1_000, QUEUED_TURNS_PER_PASS),
            (32 * 1024, QUEUED_TURNS_PER_PASS),
            (100_000, 3_125),
            (1_000_000, 31_250),
        ];
        for (tracked, want) in cases {
            assert_eq!(turns_per_pass(tracked), want, "{tracked} files");
        }
    }
}
