//! A tracked file's entry in the store: its record less what the entry is known by (the key)
//! and what its deliveries say (the offset), and what each sink delivered of it.
//!
//! Invariant: [`Tracked::record`] gives back the record the file was tracked with, as changed
//! since, at the least offset its sinks delivered. With 100,000 files every byte of an entry
//! counts 100 KB.

use std::sync::Arc;

use smallvec::SmallVec;

use super::SinkId;
use super::record::{FilePosition, FileRecord, Fingerprint, StreamMark};
use crate::event::FileKey;

/// A tracked file in the store.
#[derive(Debug)]
pub(super) struct Tracked {
    pub(super) source: Arc<str>,
    pub(super) path: Arc<str>,
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) fingerprint: Fingerprint,
    /// See [`FileRecord::marks`]; exactly as many as there are.
    pub(super) marks: Box<[StreamMark]>,
    /// As loaded: a record let go for now ([`super::CheckpointStore::untrack`]) keeps it.
    pub(super) updated_unix: u64,
    pub(super) finished: bool,
    pub(super) copy: bool,
    /// Offset delivered by each routed sink: most sources route to one, kept inline (an
    /// allocation less per tracked file).
    pub(super) delivered: SmallVec<[(SinkId, u64); 1]>,
    /// Offset up to which chunks were handed to the pipeline.
    pub(super) emitted: u64,
}

impl Tracked {
    /// The entry of a file tracked from `record`, its offset delivered by each of `sinks`.
    pub(super) fn new(record: FileRecord, sinks: &[SinkId]) -> (FileKey, Tracked) {
        let offset = record.offset;
        let tracked = Tracked {
            source: record.source,
            path: record.path,
            dev: record.dev,
            ino: record.ino,
            fingerprint: record.fingerprint,
            marks: record.marks.into_boxed_slice(),
            updated_unix: record.updated_unix,
            finished: record.finished,
            copy: record.copy,
            delivered: sinks.iter().map(|&sink| (sink, offset)).collect(),
            emitted: offset,
        };
        (record.key, tracked)
    }

    /// The least offset its sinks delivered (what was handed on, when it goes to no sink).
    pub(super) fn checkpoint(&self) -> u64 {
        self.delivered
            .iter()
            .map(|(_, offset)| *offset)
            .min()
            .unwrap_or(self.emitted)
    }

    /// How far it is delivered.
    pub(super) fn position(&self) -> FilePosition {
        FilePosition {
            source: self.source.to_string(),
            path: self.path.to_string(),
            dev: self.dev,
            ino: self.ino,
            fingerprint: self.fingerprint,
            checkpoint: self.checkpoint(),
        }
    }

    /// Its record, known by `key`, at its checkpoint.
    pub(super) fn record(&self, key: FileKey) -> FileRecord {
        FileRecord {
            source: Arc::clone(&self.source),
            path: Arc::clone(&self.path),
            dev: self.dev,
            ino: self.ino,
            fingerprint: self.fingerprint,
            key,
            offset: self.checkpoint(),
            updated_unix: self.updated_unix,
            finished: self.finished,
            marks: self.marks.to_vec(),
            copy: self.copy,
        }
    }

    /// [`Tracked::record`], without copying.
    pub(super) fn into_record(self, key: FileKey) -> FileRecord {
        let offset = self.checkpoint();
        FileRecord {
            source: self.source,
            path: self.path,
            dev: self.dev,
            ino: self.ino,
            fingerprint: self.fingerprint,
            key,
            offset,
            updated_unix: self.updated_unix,
            finished: self.finished,
            marks: self.marks.into_vec(),
            copy: self.copy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: u64, marks: Vec<StreamMark>) -> FileRecord {
        FileRecord {
            source: "app".into(),
            path: "/logs/a.log".into(),
            dev: 1,
            ino: 2,
            fingerprint: Fingerprint::of(b"head"),
            key: 7,
            offset,
            updated_unix: 1_700_000_000,
            finished: false,
            marks,
            copy: true,
        }
    }

    #[test]
    fn an_entry_stays_small() {
        // 100,000 files: every 8 bytes here are a megabyte. It was 152 while it held a whole
        // record (its key and offset twice).
        let size = std::mem::size_of::<Tracked>();
        assert!(size <= 128, "a tracked file's entry is {size} bytes");
    }

    #[test]
    fn an_entry_gives_back_its_record_at_its_checkpoint() {
        let mark = StreamMark::of(10, b"0123456789");
        type Acks<'a> = &'a [(SinkId, u64)];
        // (sinks, acks as (sink, offset), expected offset)
        let cases: &[(&[SinkId], Acks, u64)] = &[
            (&[0], &[], 100),
            (&[0], &[(0, 150)], 150),
            (&[0, 1], &[(0, 150)], 100),
            (&[0, 1], &[(0, 150), (1, 120)], 120),
            (&[], &[], 100),
        ];
        for &(sinks, acks, expected) in cases {
            let (key, mut tracked) = Tracked::new(record(100, vec![mark]), sinks);
            for &(sink, offset) in acks {
                if let Some((_, at)) = tracked.delivered.iter_mut().find(|(s, _)| *s == sink) {
                    *at = offset;
                }
            }
            assert_eq!(key, 7);
            assert_eq!(
                tracked.record(key),
                record(expected, vec![mark]),
                "{sinks:?} {acks:?}"
            );
            assert_eq!(tracked.into_record(key), record(expected, vec![mark]));
        }
    }
}
