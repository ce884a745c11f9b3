//! The store's tracked files by key: the entries side by side in one array, a table of their
//! positions beside it.
//!
//! Invariant: [`TrackedMap`] answers as a map from key to entry would; `positions` holds the
//! position of every entry, and only theirs. A `HashMap` of 100,000 entries kept a quarter of its
//! room free, each slot as large as an entry (18 MB, the largest thing in the agent after the
//! tailer's own files); here the free room is a table of positions (8 bytes a slot).

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

use super::tracked::Tracked;
use crate::event::FileKey;

/// Tracked files by key.
#[derive(Debug, Default)]
pub(super) struct TrackedMap {
    entries: Vec<(FileKey, Tracked)>,
    /// Positions in `entries`, found by the hash of their key.
    positions: HashTable<usize>,
    hasher: DefaultHashBuilder,
}

impl TrackedMap {
    fn position(&self, key: FileKey) -> Option<usize> {
        let entries = &self.entries;
        self.positions
            .find(self.hasher.hash_one(key), |&at| entries[at].0 == key)
            .copied()
    }

    /// The entry of `key`.
    pub(super) fn get(&self, key: FileKey) -> Option<&Tracked> {
        self.position(key).map(|at| &self.entries[at].1)
    }

    /// The entry of `key`, to change.
    pub(super) fn get_mut(&mut self, key: FileKey) -> Option<&mut Tracked> {
        self.position(key).map(|at| &mut self.entries[at].1)
    }

    /// Sets the entry of `key`, giving back the one it replaces.
    pub(super) fn insert(&mut self, key: FileKey, tracked: Tracked) -> Option<Tracked> {
        if let Some(at) = self.position(key) {
            return Some(std::mem::replace(&mut self.entries[at].1, tracked));
        }
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.positions
            .insert_unique(hasher.hash_one(key), entries.len(), |&at| {
                hasher.hash_one(entries[at].0)
            });
        self.entries.push((key, tracked));
        None
    }

    /// Takes the entry of `key` out; the last entry takes its place in the array.
    pub(super) fn remove(&mut self, key: FileKey) -> Option<Tracked> {
        let entries = &self.entries;
        let found = self
            .positions
            .find_entry(self.hasher.hash_one(key), |&at| entries[at].0 == key)
            .ok()?;
        let (at, _) = found.remove();
        let last = self.entries.len() - 1;
        if at != last {
            let moved = self.entries[last].0;
            if let Some(position) = self
                .positions
                .find_mut(self.hasher.hash_one(moved), |&p| p == last)
            {
                *position = at;
            }
        }
        Some(self.entries.swap_remove(at).1)
    }

    /// Makes room for `additional` more entries at once.
    pub(super) fn reserve(&mut self, additional: usize) {
        self.entries.reserve_exact(additional);
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.positions
            .reserve(additional, |&at| hasher.hash_one(entries[at].0));
    }

    /// Every entry with its key, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (FileKey, &Tracked)> {
        self.entries.iter().map(|(key, tracked)| (*key, tracked))
    }

    /// Every entry, in no particular order.
    pub(super) fn values(&self) -> impl Iterator<Item = &Tracked> {
        self.entries.iter().map(|(_, tracked)| tracked)
    }

    /// Every entry, to change, in no particular order.
    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut Tracked> {
        self.entries.iter_mut().map(|(_, tracked)| tracked)
    }

    /// True when no file is tracked.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;
    use crate::checkpoint::record::{FileRecord, Fingerprint};

    fn entry(key: FileKey, offset: u64) -> Tracked {
        let record = FileRecord {
            source: Arc::from("app"),
            path: Arc::from(format!("/logs/{key}.log").as_str()),
            dev: 1,
            ino: key,
            fingerprint: Fingerprint::of(b""),
            key,
            offset,
            updated_unix: 0,
            finished: false,
            marks: Vec::new(),
            copy: false,
        };
        Tracked::new(record, &[0]).1
    }

    #[test]
    fn answers_as_a_map_through_inserts_and_removals() {
        let mut rng = fastrand::Rng::with_seed(21);
        let mut tracked = TrackedMap::default();
        let mut map: HashMap<FileKey, u64> = HashMap::new();
        tracked.reserve(100);
        for step in 0..20_000u64 {
            let key = rng.u64(..500);
            match rng.u8(..3) {
                0 => {
                    let replaced = tracked.insert(key, entry(key, step));
                    assert_eq!(
                        replaced.map(|t| t.checkpoint()),
                        map.insert(key, step),
                        "insert {key} at {step}"
                    );
                }
                1 => {
                    let removed = tracked.remove(key);
                    assert_eq!(removed.map(|t| t.checkpoint()), map.remove(&key));
                }
                _ => {
                    if let Some(t) = tracked.get_mut(key) {
                        t.emitted += 1;
                    }
                }
            }
            let probe = rng.u64(..500);
            assert_eq!(
                tracked.get(probe).map(Tracked::checkpoint),
                map.get(&probe).copied(),
                "get {probe} at {step}"
            );
        }
        let mut all: Vec<(FileKey, u64)> =
            tracked.iter().map(|(k, t)| (k, t.checkpoint())).collect();
        let mut want: Vec<(FileKey, u64)> = map.into_iter().collect();
        all.sort_unstable();
        want.sort_unstable();
        assert_eq!(all, want);
        assert_eq!(tracked.values().count(), tracked.positions.len());
        assert_eq!(tracked.is_empty(), all.is_empty());
    }
}
