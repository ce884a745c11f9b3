//! The lifecycle of a tracked file: the phase it is in, and every change of phase, here.
//!
//! Invariant: a tracked file is in exactly one [`Phase`], which changes only through the
//! transitions below (each checks, in debug builds, that it starts from a phase it may); what
//! is not a phase (open or closed descriptor, gone since, at its end since) stays in fields
//! of the [`TrackedFile`], orthogonal to it.
//!
//! ```text
//!                start_tracking         a truncation (the old generation)
//!                      │                             │
//!                      ▼                             ▼
//!   Held ◄── hold ── Reading ◄──── adopt ──────── Retired
//!    │ └─ release ──►  │ │ ⟲ adopt (a longer copy)    │
//!    │                 │ └── exhaust ──► Exhausted    │
//!    ├─ exhaust ───────┼───────────────►    │         │
//!    │                 │ finish             │ finish  │ finish
//!    │                 ▼                    ▼         │
//!    └── finish ──► Finished { truncated } ◄──────────┘
//!                  (forgotten once acked)
//! ```
//!
//! Transitions (from → to), and what triggers them:
//! - start → `Reading`: `start_tracking`, every file found;
//!   start → `Retired`: `restart_from_zero`, the generation a truncation or rewrite leaves (the
//!   file itself goes on as a new generation, in the phase it was in);
//! - `hold`, Reading → Held: a scan finds a new file that looks like a copy
//!   (`Lineage::PossibleCopy`, `Copying`, `Behind`);
//! - `prove`, Held → Held: compared again (`review_held_files`, `compressed_prefix`);
//! - `release`, Held → Reading: decided: no copy (`Context::release`), a copy of lines read
//!   already (`Lineage::ReadAlready`), a gzip copy resuming its original's record
//!   (`resume_compressed`);
//! - `adopt`, Retired or Reading → Reading: its copy found (`Lineage::Continues`), read on
//!   from its offset (`adopt_copy`);
//! - `exhaust`, Reading or Held → Exhausted: a gzip file at its end or damage
//!   (`end_compressed`), a gzip copy of lines read already (`compressed_read_already`);
//! - `finish`, any but Finished → Finished: gone (and not grown) for `rotate_wait_ms`, a
//!   retired one also with no copy by a scan after that (`let_go_of_gone_files`); a held copy
//!   that continues a retired generation, which takes its descriptor (`review_held_files`); a
//!   file taken for text that turns out to be compressed, taken again as such by a scan
//!   (`looks_like_text`).
//!
//! - `Reading`: read in turns, whenever it has a descriptor (it may be closed for
//!   `max_open_files`, waiting for a slot) and has grown; it may be gone (renamed away,
//!   deleted) and still read through its descriptor.
//! - `Held`: looks like a copy of a tracked file (logrotate's `copy`, `copytruncate`, or a gzip
//!   copy of a file still read): not read until decided (`lineage`). `proof`: what it was
//!   shown to hold (see [`CopyProof`]), which matters only while it is held.
//! - `Retired`: a generation whose file was truncated or rewritten under it; it has no
//!   descriptor and waits `rotate_wait_ms` (and a scan after that) for a copy of it
//!   (copytruncate). Finished with no copy, what was not read of it is lost, and counted.
//! - `Exhausted`: a gzip file read to its end (or to damage), or one holding only lines read
//!   already: closed, kept only to be known by its inode, until it is gone.
//! - `Finished`: let go; kept until its lines are acked, then forgotten. `truncated`: it was
//!   `Retired`: its content is gone, its head cannot be read again.
//!
//! Not phases, orthogonal to them (fields of [`TrackedFile`]): `file` (open, or closed for
//! `max_open_files` or for good), `gone_since` (found at no included path: a reading file is
//! still read, a held one still compared), `eof_since`, `identity_checked`, `continues` (the
//! record of another file it resumed), `decoder`, `stamp`.
//! Two facts the phases imply: a retired generation has no descriptor (it goes before its
//! file goes on), and only gzip files are exhausted, only plain ones retired.

use super::moment::Moment;
use super::tracked::{CopyProof, TrackedFile};

/// Where a tracked file is in its lifecycle (see the module's doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Phase {
    /// Read in turns while it has a descriptor.
    Reading,
    /// Looks like a copy of a tracked file: not read until that is decided. Boxed: few files
    /// are ever held, and every tracked file has a phase.
    Held(Box<Holding>),
    /// A generation truncated or rewritten under the agent, waiting for a copy of it.
    Retired,
    /// A gzip file read to its end (or to damage): closed, known by its inode.
    Exhausted,
    /// Let go, waiting for its last acks. `truncated`: it was [`Phase::Retired`].
    Finished { truncated: bool },
}

/// A file held as a possible copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Holding {
    since: Moment,
    /// What it was shown to be a copy of, and at which size (see [`CopyProof`]).
    proof: Option<CopyProof>,
}

impl TrackedFile {
    /// True once it is let go: nothing more is read of it, it waits for its acks.
    pub(super) fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished { .. })
    }

    /// True while it is held as a possible copy.
    pub(super) fn is_held(&self) -> bool {
        matches!(self.phase, Phase::Held(_))
    }

    /// Since when it is held as a possible copy.
    pub(super) fn held_since(&self) -> Option<Moment> {
        match &self.phase {
            Phase::Held(holding) => Some(holding.since),
            _ => None,
        }
    }

    /// What a held file was shown to be a copy of (none once it is no longer held).
    pub(super) fn copy_proof(&self) -> Option<&CopyProof> {
        match &self.phase {
            Phase::Held(holding) => holding.proof.as_ref(),
            _ => None,
        }
    }

    /// True for a generation truncated away that waits for a copy of it.
    pub(super) fn is_retired(&self) -> bool {
        self.phase == Phase::Retired
    }

    /// True for a generation truncated away, waiting for a copy or let go: its head cannot be
    /// read again (the file at its inode is another generation).
    pub(super) fn is_truncated_away(&self) -> bool {
        matches!(
            self.phase,
            Phase::Retired | Phase::Finished { truncated: true }
        )
    }

    /// True for a gzip file read to its end (or damage).
    pub(super) fn is_exhausted(&self) -> bool {
        self.phase == Phase::Exhausted
    }

    /// True when its turn may read it (if it has a descriptor). A retired generation has none.
    pub(super) fn may_read(&self) -> bool {
        debug_assert!(
            !(self.is_retired() && self.file.is_some()),
            "a retired generation has no descriptor"
        );
        self.phase == Phase::Reading
    }

    /// Reading → Held: a scan found it looking like a copy, shown to hold `proof` if any.
    pub(super) fn hold(&mut self, since: Moment, proof: Option<CopyProof>) {
        debug_assert_eq!(self.phase, Phase::Reading, "only a file read may be held");
        self.phase = Phase::Held(Box::new(Holding { since, proof }));
    }

    /// Held: what it was shown (or last tried) to be a copy of.
    pub(super) fn prove(&mut self, shown: Option<CopyProof>) {
        match &mut self.phase {
            Phase::Held(holding) => holding.proof = shown,
            other => debug_assert!(false, "proof of a file not held ({other:?})"),
        }
    }

    /// Held → Reading: decided (a file of its own, a copy of lines read already, or a gzip
    /// copy resuming its original's record).
    pub(super) fn release(&mut self) {
        debug_assert!(self.is_held(), "released while {:?}", self.phase);
        self.phase = Phase::Reading;
    }

    /// Reading | Retired → Reading: its stream goes on in a copy of it (the caller gives it the
    /// copy's descriptor).
    pub(super) fn adopt(&mut self) {
        debug_assert!(
            matches!(self.phase, Phase::Reading | Phase::Retired),
            "a copy adopted while {:?}",
            self.phase
        );
        self.phase = Phase::Reading;
    }

    /// Reading | Held → Exhausted: a gzip file read to its end, or one holding only lines read
    /// already.
    pub(super) fn exhaust(&mut self) {
        debug_assert!(
            matches!(self.phase, Phase::Reading | Phase::Held(_)),
            "exhausted while {:?}",
            self.phase
        );
        self.phase = Phase::Exhausted;
    }

    /// Any phase but Finished → Finished: let go; it waits for its last acks.
    pub(super) fn finish(&mut self) {
        debug_assert!(!self.is_finished(), "finished twice");
        let truncated = self.is_retired();
        self.phase = Phase::Finished { truncated };
    }
}
