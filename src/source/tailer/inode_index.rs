//! Which tracked file a scan finds at a device and inode: the files tracked when the scan
//! began in a sorted array, what the scan changes beside it (moved into the array once many).
//!
//! Invariant: [`InodeIndex::get`] answers as a map from (device, inode) to file index would,
//! filled with the files it was made of (the last one where two share an inode) and then
//! changed by every [`InodeIndex::insert`] and [`InodeIndex::remove`] in turn. The periodic scan
//! of 100,000 tracked files made such a map, 3.3 MB at the peak of the agent's memory; the array
//! is half of that.

use std::collections::HashMap;

/// Changes kept in the map at least before they are moved into the array.
const FOLD_AT: usize = 1024;

/// A file tracked when the scan began: 16 bytes (a device that does not fit 32 bits goes to
/// the map of changes instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Tracked {
    ino: u64,
    dev: u32,
    index: u32,
}

/// A file index by (device, inode), for one scan.
#[derive(Debug, Default)]
pub(super) struct InodeIndex {
    /// Sorted by inode and device, one entry for each.
    tracked: Vec<Tracked>,
    /// Set during the scan (or not fitting `tracked`): the file index, or `None` once removed.
    changed: HashMap<(u64, u64), Option<usize>>,
}

impl InodeIndex {
    /// The index of `files` ((device, inode), file index, in increasing order of index), the
    /// later of two with one inode.
    pub(super) fn new(files: impl Iterator<Item = ((u64, u64), usize)>) -> Self {
        let mut index = InodeIndex::default();
        // Room for every file at once (at most as many as the files): grown by doublings, the
        // array held the last one beside it.
        let (low, high) = files.size_hint();
        index.tracked.reserve_exact(high.unwrap_or(low));
        for ((dev, ino), i) in files {
            match (u32::try_from(dev), u32::try_from(i)) {
                (Ok(dev), Ok(i)) => index.tracked.push(Tracked { ino, dev, index: i }),
                _ => {
                    index.changed.insert((dev, ino), Some(i));
                }
            }
        }
        // By inode, device and then file index: of two with one inode, the later is kept.
        index.tracked.sort_unstable();
        index.tracked.dedup_by(|later, kept| {
            let same = (later.ino, later.dev) == (kept.ino, kept.dev);
            if same {
                kept.index = later.index;
            }
            same
        });
        index.tracked.shrink_to_fit();
        index
    }

    /// The file at `id` (device, inode).
    pub(super) fn get(&self, id: (u64, u64)) -> Option<usize> {
        if let Some(&changed) = self.changed.get(&id) {
            return changed;
        }
        let (dev, ino) = id;
        let dev = u32::try_from(dev).ok()?;
        self.tracked
            .binary_search_by(|t| (t.ino, t.dev).cmp(&(ino, dev)))
            .ok()
            .map(|at| self.tracked[at].index as usize)
    }

    /// True when a file is at `id`.
    pub(super) fn contains(&self, id: (u64, u64)) -> bool {
        self.get(id).is_some()
    }

    /// The file at `id` is now the one at `index`.
    pub(super) fn insert(&mut self, id: (u64, u64), index: usize) {
        self.changed.insert(id, Some(index));
        self.fold_when_large();
    }

    /// No file is at `id` any more.
    pub(super) fn remove(&mut self, id: (u64, u64)) {
        self.changed.insert(id, None);
        self.fold_when_large();
    }

    /// Moves the changes into the array once they are many: a first scan inserts every file
    /// it finds, and the map of 100,000 changes took 4.3 MB (the array a third of that).
    fn fold_when_large(&mut self) {
        if self.changed.len() <= FOLD_AT.max(self.tracked.len() / 8) {
            return;
        }
        let changed = &self.changed;
        self.tracked
            .retain(|t| !changed.contains_key(&(u64::from(t.dev), t.ino)));
        let mut added = Vec::with_capacity(self.changed.len());
        // Changes the array cannot hold stay in the map; removals are done (retained out).
        self.changed.retain(|&(dev, ino), index| {
            let Some(i) = *index else { return false };
            match (u32::try_from(dev), u32::try_from(i)) {
                (Ok(dev), Ok(index)) => {
                    added.push(Tracked { ino, dev, index });
                    false
                }
                _ => true,
            }
        });
        added.sort_unstable();
        // Merged from the back, in place: no second array beside this one.
        let mut kept = self.tracked.len();
        self.tracked.extend_from_slice(&added);
        let mut end = self.tracked.len();
        while let Some(&last_added) = added.last() {
            end -= 1;
            match kept.checked_sub(1).map(|k| self.tracked[k]) {
                Some(last_kept) if last_kept > last_added => {
                    self.tracked[end] = last_kept;
                    kept -= 1;
                }
                _ => {
                    self.tracked[end] = last_added;
                    added.pop();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    enum Step {
        Insert((u64, u64), usize),
        Remove((u64, u64)),
    }

    #[test]
    fn answers_as_a_map_through_many_changes() {
        // Enough changes to be moved into the array several times, some devices too large for
        // it, inodes found again after their removal.
        let big_dev = u64::from(u32::MAX) + 1;
        let mut rng = fastrand::Rng::with_seed(16);
        let start: Vec<((u64, u64), usize)> =
            (0..3000).map(|i| ((1, rng.u64(..5000)), i)).collect();
        let mut index = InodeIndex::new(start.iter().copied());
        let mut map: HashMap<(u64, u64), usize> = start.iter().copied().collect();
        for step in 0..20_000 {
            let dev = if rng.u8(..50) == 0 { big_dev } else { 1 };
            let id = (dev, rng.u64(..5000));
            if rng.bool() {
                index.insert(id, step);
                map.insert(id, step);
            } else {
                index.remove(id);
                map.remove(&id);
            }
            let probe = (dev, rng.u64(..5000));
            assert_eq!(
                index.get(probe),
                map.get(&probe).copied(),
                "{probe:?} at {step}"
            );
        }
        for ino in 0..5000 {
            for dev in [1, big_dev] {
                assert_eq!(index.get((dev, ino)), map.get(&(dev, ino)).copied());
            }
        }
        assert!(index.changed.len() <= FOLD_AT.max(index.tracked.len() / 8));
    }

    #[test]
    fn answers_as_a_map_changed_in_turn() {
        let big_dev = u64::from(u32::MAX) + 7;
        // (files it is made of, changes, (id, expected) asked after them)
        #[allow(clippy::type_complexity)]
        let cases: &[(
            &[((u64, u64), usize)],
            &[Step],
            &[((u64, u64), Option<usize>)],
        )] = &[
            (&[], &[], &[((1, 1), None)]),
            (
                &[((1, 10), 0), ((1, 5), 1), ((2, 5), 2)],
                &[],
                &[
                    ((1, 10), Some(0)),
                    ((1, 5), Some(1)),
                    ((2, 5), Some(2)),
                    ((3, 5), None),
                ],
            ),
            // Two files at one inode: the later.
            (
                &[((1, 5), 1), ((1, 5), 2), ((1, 5), 3)],
                &[],
                &[((1, 5), Some(3))],
            ),
            // A device too large for the array.
            (
                &[((big_dev, 5), 0), ((1, 5), 1)],
                &[],
                &[((big_dev, 5), Some(0)), ((1, 5), Some(1))],
            ),
            (
                &[((1, 5), 0), ((1, 6), 1)],
                &[
                    Step::Remove((1, 5)),
                    Step::Insert((1, 7), 2),
                    Step::Insert((1, 6), 0),
                    Step::Remove((1, 8)),
                ],
                &[
                    ((1, 5), None),
                    ((1, 6), Some(0)),
                    ((1, 7), Some(2)),
                    ((1, 8), None),
                ],
            ),
            // Removed, then found again under another index.
            (
                &[((1, 5), 0)],
                &[Step::Remove((1, 5)), Step::Insert((1, 5), 4)],
                &[((1, 5), Some(4))],
            ),
        ];
        for (files, steps, asked) in cases {
            let mut index = InodeIndex::new(files.iter().copied());
            let mut map: HashMap<(u64, u64), usize> = files.iter().copied().collect();
            for step in *steps {
                match *step {
                    Step::Insert(id, i) => {
                        index.insert(id, i);
                        map.insert(id, i);
                    }
                    Step::Remove(id) => {
                        index.remove(id);
                        map.remove(&id);
                    }
                }
            }
            for &(id, expected) in *asked {
                assert_eq!(index.get(id), expected, "{id:?} in {files:?}");
                assert_eq!(index.get(id), map.get(&id).copied(), "as a map, {id:?}");
                assert_eq!(index.contains(id), expected.is_some());
            }
        }
    }
}
