//! Emitting: framed lines are parsed and handed on as chunks, and the checkpoint store is
//! told what each chunk covers.
//!
//! Invariant: a checkpoint never passes a line held back (a partial line, an open multi-line
//! event).

use std::sync::Arc;
use std::time::Instant;

use super::tracked::TrackedFile;
use super::{Context, Emit, Stopped};
use crate::event::FileMeta;
use crate::metrics::add;
use crate::parse::assemble::Release;
use crate::source::chunking::parse_framed;

impl<E: Emit> Context<E> {
    /// Emits what is left of a file that is let go, and closes it.
    pub(super) fn finish(&mut self, tracked: &mut TrackedFile) -> Result<(), Stopped> {
        if tracked.is_retired() {
            // A generation truncated or rewritten under the agent, with no copy of it: the rest
            // of the line it was reading was destroyed with its content, so that piece is not
            // shipped as if it were a line (what parsing held still goes out).
            self.emit_parsed(tracked, false, Release::All)?;
            let partial = tracked.framer.pending_bytes() as u64;
            let unread = tracked
                .seen_size
                .saturating_sub(tracked.framer.read_offset());
            if partial + unread > 0 {
                // copytruncate's own loss: what the writer added after the agent's last read
                // and before the truncation, with no copy holding it.
                add(&self.metrics.truncation_lost_bytes, partial + unread);
                tracing::warn!(source = %self.name, file = %tracked.meta.path, partial_line_bytes = partial, unread_bytes = unread, "file truncated before the agent read all of it, with no copy of the rest: those bytes are lost");
            }
        } else {
            self.emit_framed(tracked, true)?;
        }
        tracing::debug!(source = %self.name, file = %tracked.meta.path, "file let go");
        tracked.file = None;
        tracked.finish();
        Ok(())
    }

    /// Frames what was read and hands it on as one chunk.
    pub(super) fn emit_framed(
        &mut self,
        tracked: &mut TrackedFile,
        at_end: bool,
    ) -> Result<(), Stopped> {
        let release = if at_end {
            Release::All
        } else {
            Release::Due(Instant::now())
        };
        self.emit_parsed(tracked, at_end, release)
    }

    /// Frames what was read, parses it, and hands it on as one chunk; `release` says what
    /// parsing may stop holding back. The chunk's checkpoint stops at the first line held.
    pub(super) fn emit_parsed(
        &mut self,
        tracked: &mut TrackedFile,
        at_end: bool,
        release: Release,
    ) -> Result<(), Stopped> {
        let mut events = Vec::with_capacity(self.chunk_hint);
        let framed = if at_end {
            tracked.framer.finish(&mut events)
        } else {
            tracked.framer.frame(&mut events)
        };
        let key = tracked.meta.key;
        let mut state = self.held.remove(&key).unwrap_or_default();
        let commit_offset = tracked.framer.commit_offset();
        let step = parse_framed(
            &self.parser,
            &mut state,
            framed,
            events,
            commit_offset,
            release,
            &self.metrics,
        );
        if !state.is_idle() {
            self.held.insert(key, state);
        }
        if step.parsed.events.is_empty() && step.end_offset == tracked.emitted {
            return Ok(());
        }
        self.chunk_hint = (step.lines as usize).clamp(16, 1 << 16);
        self.store
            .emitted_after(key, step.end_offset, tracked.framer.marks().all());
        tracked.emitted = step.end_offset;
        let chunk = step.into_chunk(self.file_meta(tracked));
        let emit = &mut self.emit;
        self.heartbeat.waiting_on(|| emit(chunk))
    }

    /// What the events of a chunk of `tracked` share: the last chunk's while the file is the
    /// same generation at the same path with the source's enrichment, else made anew.
    fn file_meta(&self, tracked: &mut TrackedFile) -> Arc<FileMeta> {
        let enrichment = self.parser.enrichment();
        let current = |meta: &FileMeta| {
            let attached = Arc::ptr_eq(&meta.enrichment, enrichment)
                || (enrichment.is_empty() && meta.enrichment.is_empty());
            meta.key == tracked.meta.key && Arc::ptr_eq(&meta.path, &tracked.meta.path) && attached
        };
        if let Some(meta) = tracked.shipped.as_ref().filter(|meta| current(meta)) {
            return Arc::clone(meta);
        }
        let mut meta = FileMeta::new(
            tracked.meta.key,
            Arc::clone(&self.name),
            Arc::clone(&tracked.meta.path),
        );
        if !enrichment.is_empty() {
            meta = meta.with_enrichment(Arc::clone(enrichment));
        }
        let meta = Arc::new(meta);
        tracked.shipped = Some(Arc::clone(&meta));
        meta
    }

    /// When the earliest open multiline group is due.
    pub(super) fn next_group_deadline(&self) -> Option<Instant> {
        let timeout = self.parser.group_timeout()?;
        self.held.values().filter_map(|s| s.deadline(timeout)).min()
    }
}
