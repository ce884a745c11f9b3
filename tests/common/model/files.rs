//! What the application and logrotate do to the model's files: writes and partial lines,
//! rotation, copytruncate, truncation, deletion, creation, compression (at once or in pieces)
//! and piecewise copies under a live writer.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use super::*;
use crate::common::compress::compress;
use crate::common::numbered;

impl Model {
    pub(super) fn write(&mut self, slot: usize, lines: u64) {
        let stream = self.live_stream(slot);
        let mut text = self.complete_partial(stream);
        let s = &mut self.streams[stream];
        for _ in 0..lines {
            let line = numbered(&s.tag, s.lines.len() as u64, WIDTH);
            text.push_str(&line);
            s.lines.push(line.trim_end().to_owned());
        }
        self.append(&Model::live(slot), &text);
    }

    pub(super) fn partial(&mut self, slot: usize) {
        let stream = self.live_stream(slot);
        let s = &mut self.streams[stream];
        if s.partial.is_some() {
            return;
        }
        let line = numbered(&s.tag, s.lines.len() as u64, WIDTH);
        // The tag and the number are whole: the oracle knows which line a cut one is.
        let cut = s.tag.len() + 1 + 9 + 1 + 3;
        let text = line[..cut].to_owned();
        s.lines.push(line.trim_end().to_owned());
        s.partial = Some(cut);
        self.append(&Model::live(slot), &text);
    }

    pub(super) fn next_rotated(&mut self, slot: usize) -> String {
        self.rotations += 1;
        format!("app{slot}.log.{}", self.rotations)
    }

    pub(super) fn rotate(&mut self, slot: usize) {
        let Some(entry) = self.files.remove(&Model::live(slot)) else {
            return;
        };
        let to = self.next_rotated(slot);
        fs::rename(self.logs.join(Model::live(slot)), self.logs.join(&to)).unwrap();
        self.journal
            .push(format!("  {} -> {to}", Model::live(slot)));
        self.files.insert(to, entry);
    }

    pub(super) fn copytruncate(&mut self, slot: usize) {
        let live = Model::live(slot);
        let Some(entry) = self.files.get(&live).copied() else {
            return;
        };
        let to = self.next_rotated(slot);
        fs::copy(self.logs.join(&live), self.logs.join(&to)).unwrap();
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.logs.join(&live))
            .unwrap();
        self.files.insert(to.clone(), entry);
        let stream = self.new_stream();
        self.files.insert(live.clone(), FileEntry::plain(stream));
        self.journal.push(format!(
            "  {live} copied to {to} ({}), then truncated ({})",
            self.streams[entry.stream].tag, self.streams[stream].tag
        ));
    }

    pub(super) fn truncate(&mut self, slot: usize) {
        let live = Model::live(slot);
        let Some(entry) = self.files.get(&live).copied() else {
            return;
        };
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.logs.join(&live))
            .unwrap();
        let undelivered = self.mark_undelivered_optional(entry.stream, false);
        let old = &mut self.streams[entry.stream];
        old.gone = true;
        old.frozen = true;
        let stream = self.new_stream();
        self.files.insert(live.clone(), FileEntry::plain(stream));
        self.journal.push(format!(
            "  {live} truncated: {undelivered} undelivered lines of {} optional",
            self.streams[entry.stream].tag
        ));
    }

    pub(super) fn delete(&mut self, pick: usize) {
        if self.files.is_empty() {
            return;
        }
        let name = self
            .files
            .keys()
            .nth(pick % self.files.len())
            .unwrap()
            .clone();
        let entry = self.files[&name];
        let path = self.logs.join(&name);
        if entry.prefix {
            fs::remove_file(&path).unwrap();
            self.files.remove(&name);
            self.journal
                .push(format!("  {name} (a copy of a prefix) deleted"));
            return;
        }
        let mut opened = false;
        if let Some(agent) = &self.agent {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(1) {
                if agent.has_open(&path) || self.all_delivered(entry.stream) {
                    opened = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let optional = if opened {
            0
        } else {
            self.mark_undelivered_optional(entry.stream, false)
        };
        fs::remove_file(&path).unwrap();
        self.files.remove(&name);
        let s = &mut self.streams[entry.stream];
        s.gone = true;
        s.frozen = true;
        self.journal.push(format!(
            "  {name} ({}) deleted, {}",
            s.tag,
            if opened {
                "open in the agent".to_owned()
            } else {
                format!("not open in the agent: {optional} undelivered lines optional")
            }
        ));
    }

    pub(super) fn create(&mut self, slot: usize) {
        if !self.files.contains_key(&Model::live(slot)) {
            self.live_stream(slot);
        }
    }

    /// Compresses a rotated plain file in place, as logrotate does: the compressed file is
    /// written aside, dated in the past (finished: the agent takes a gzip file once it has not
    /// changed for `rotate_wait_ms`), moved in, and the plain file removed.
    pub(super) fn gzip(&mut self, pick: usize) {
        let candidates: Vec<String> = self
            .files
            .iter()
            .filter(|(name, f)| !f.gz && name.contains(".log."))
            .map(|(name, _)| name.clone())
            .collect();
        if candidates.is_empty() {
            return;
        }
        let name = candidates[pick % candidates.len()].clone();
        let plain = self.logs.join(&name);
        let aside = self.root().join("tmp").join("partial.gz");
        fs::write(&aside, compress("gz", &fs::read(&plain).unwrap())).unwrap();
        File::options()
            .write(true)
            .open(&aside)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
            .unwrap();
        let gz = format!("{name}.gz");
        fs::rename(&aside, self.logs.join(&gz)).unwrap();
        fs::remove_file(&plain).unwrap();
        let entry = self.files.remove(&name).unwrap();
        // A copy of a prefix leaves its stream going on in its original.
        self.streams[entry.stream].frozen |= !entry.prefix;
        self.journal.push(format!(
            "  {name} ({}) compressed",
            self.streams[entry.stream].tag
        ));
        self.files.insert(gz, FileEntry { gz: true, ..entry });
    }

    /// Compresses a rotated plain file as logrotate's `compress` does: the compressed file is
    /// created empty, written in pieces as `how` says (the agent may see a valid but partial
    /// stream), synced, then the plain file is removed and, with `rename`, the compressed one
    /// moved on to a new name a moment later (delaycompress's `.1.gz` -> `.2.gz`).
    pub(super) fn compress_in_pieces(&mut self, pick: usize, how: Compressor) {
        let Compressor {
            codec,
            pieces,
            ms,
            stall_ms,
            rename,
        } = how;
        let candidates: Vec<String> = self
            .files
            .iter()
            .filter(|(name, f)| !f.gz && name.contains(".log."))
            .map(|(name, _)| name.clone())
            .collect();
        if candidates.is_empty() {
            return;
        }
        let name = candidates[pick % candidates.len()].clone();
        let plain = self.logs.join(&name);
        let bytes = codec.compress(&fs::read(&plain).unwrap());
        let mut to = format!("{name}.{}", codec.ext());
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.logs.join(&to))
            .unwrap();
        std::thread::sleep(Duration::from_millis(ms.max(5)));
        let chunks: Vec<&[u8]> = bytes.chunks(bytes.len().div_ceil(pieces)).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            if i > 0 {
                let pause = if i == chunks.len() / 2 { stall_ms } else { ms };
                std::thread::sleep(Duration::from_millis(pause));
            }
            out.write_all(chunk).unwrap();
        }
        out.sync_all().unwrap();
        drop(out);
        fs::remove_file(&plain).unwrap();
        let entry = self.files.remove(&name).unwrap();
        self.streams[entry.stream].frozen |= !entry.prefix;
        self.journal.push(format!(
            "  {name} ({}) compressed to {to} in {} pieces",
            self.streams[entry.stream].tag,
            chunks.len()
        ));
        if rename {
            std::thread::sleep(Duration::from_millis(ms));
            let slot = usize::from(name.as_bytes()[3] - b'0');
            let next = format!("{}.{}", self.next_rotated(slot), codec.ext());
            fs::rename(self.logs.join(&to), self.logs.join(&next)).unwrap();
            self.journal.push(format!("  {to} -> {next}"));
            to = next;
        }
        self.files.insert(to, FileEntry { gz: true, ..entry });
    }

    /// Copies the live file of `slot` to a new rotated name as cp and logrotate do: the copy is
    /// created empty and filled in pieces (see [`Piecewise`]) until a read returns nothing,
    /// while the application appends lines after each piece. The application writes whole
    /// lines (its first write completes a partial line): the copy holds the stream's first
    /// lines, every line written before its last read. Returns the copy's name, the original's
    /// entry and how many lines the copy holds.
    pub(super) fn copy_live(
        &mut self,
        slot: usize,
        how: Piecewise,
    ) -> Option<(String, FileEntry, usize)> {
        let Piecewise { piece, lines, ms } = how;
        let live = Model::live(slot);
        let entry = self.files.get(&live).copied()?;
        if self.streams[entry.stream].partial.is_some() {
            self.write(slot, 1);
        }
        let to = self.next_rotated(slot);
        let mut from = File::open(self.logs.join(&live)).unwrap();
        let mut copy = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.logs.join(&to))
            .unwrap();
        let mut buf = vec![0u8; piece.max(from.metadata().unwrap().len() as usize / 8)];
        let mut pieces = 0;
        loop {
            let n = from.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            copy.write_all(&buf[..n]).unwrap();
            pieces += 1;
            // Bounded, so that the copy catches up with the writer.
            if pieces <= 16 {
                self.write(slot, lines);
            }
            std::thread::sleep(Duration::from_millis(ms));
        }
        let held = self.streams[entry.stream].lines.len();
        copy.sync_all().unwrap();
        self.journal.push(format!(
            "  {live} ({}) copied to {to} in {pieces} pieces, lines {}:0..{held}",
            self.streams[entry.stream].tag, self.streams[entry.stream].tag
        ));
        Some((to, entry, held))
    }

    /// logrotate's copytruncate under a live writer: the copy as [`Model::copy_live`], then the
    /// writer appends `how.lines.max(1)` more lines and the agent gets `ms` (the copy's fsync) to
    /// read them before the original is truncated. The copy carries the stream on; the lines
    /// written after its last read are in neither file unless the agent read them in time
    /// (copytruncate's own loss): optional.
    pub(super) fn copytruncate_live(&mut self, slot: usize, how: Piecewise) {
        let Some((to, entry, held)) = self.copy_live(slot, how) else {
            return;
        };
        let Piecewise { lines, ms, .. } = how;
        self.write(slot, lines.max(1));
        std::thread::sleep(Duration::from_millis(ms));
        let live = Model::live(slot);
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.logs.join(&live))
            .unwrap();
        self.files.insert(to, entry);
        let s = &mut self.streams[entry.stream];
        let n = s.lines.len() as u64;
        s.optional.extend(held as u64..n);
        let stream = self.new_stream();
        self.files.insert(live.clone(), FileEntry::plain(stream));
        self.journal.push(format!(
            "  {live} truncated ({}); {}:{held}..{n} written after the copy, optional",
            self.streams[stream].tag, self.streams[entry.stream].tag
        ));
    }
}
