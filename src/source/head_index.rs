//! Tracked files by the first bytes of their head, so that a scan that finds thousands of new
//! files does not compare each with every tracked file (which made such a scan quadratic).
//!
//! A new file is related to a tracked one when one head is a prefix of the other: the tracked
//! head is a prefix of the new one (same fingerprint: a copy, or the same file's content), or the
//! new head is a prefix of the tracked one (a copy still being written). The index gives those
//! candidates; the caller checks each.
//!
//! Invariant: the index holds file indices, ordered by the key of each file's head as the
//! caller's `heads` gives it, and those heads do not change while the index lives (one scan).
//! It copies of each key only its first 8 bytes (and the whole key of at most `MERGE_AT` files
//! added last): with 100,000 files found at once, copied keys (64 bytes each, in a tree) took
//! 12 MB for the first scan, and the holes they left in the heap stayed in the agent's RSS.

use std::cmp::Ordering;

/// How many first bytes of a head the index keys on: longer heads sharing them are told apart
/// by the caller.
pub const KEY_BYTES: usize = 64;
const _: () = assert!(KEY_BYTES < 128, "key lengths are bits of a u128");
const _: () = assert!(KEY_BYTES >= 8, "the start of a key is 8 bytes of it");

/// Files added at most before they are merged into the sorted ones: each lookup goes through
/// these one by one (their keys side by side), each merge moves the sorted ones once. With
/// 100,000 files found at once, 32 moved 2.5 GB in all; 128 a quarter of that, and a lookup
/// reads 9 KB of recent keys.
const MERGE_AT: usize = 128;

/// A key held by the index for a short while (see [`HeadIndex::recent`]).
#[derive(Debug, Clone, Copy)]
struct KeyCopy {
    len: u8,
    bytes: [u8; KEY_BYTES],
}

impl KeyCopy {
    fn of(key: &[u8]) -> Self {
        let mut bytes = [0; KEY_BYTES];
        bytes[..key.len()].copy_from_slice(key);
        KeyCopy {
            len: key.len() as u8,
            bytes,
        }
    }

    fn key(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// True when it may be related to a key starting with `start` at least 8 bytes long: a
    /// key as long whose start differs is not (most are told apart here, without a `memcmp`).
    fn may_relate(&self, start: u64) -> bool {
        self.len < 8 || start_of(&self.bytes) == start
    }
}

/// A file among the sorted ones, with the first bytes of its key: most comparisons end there,
/// without reading the key through the file (a cache miss or two).
#[derive(Debug, Clone, Copy)]
struct Sorted {
    start: u64,
    index: usize,
}

/// The first 8 bytes of `key`, zero after its end, as a number that orders as they do. Two
/// keys whose starts differ are in the order of their starts; equal starts say nothing.
fn start_of(key: &[u8]) -> u64 {
    let mut start = [0; 8];
    let n = key.len().min(8);
    start[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(start)
}

/// How a sorted file's key compares with `key` (whose start is `start`).
fn compare<'h>(
    file: &Sorted,
    key_wanted: &[u8],
    start: u64,
    heads: &impl Fn(usize) -> &'h [u8],
) -> Ordering {
    file.start
        .cmp(&start)
        .then_with(|| key(heads(file.index)).cmp(key_wanted))
}

/// The part of a head the index orders files by.
fn key(head: &[u8]) -> &[u8] {
    &head[..head.len().min(KEY_BYTES)]
}

/// File indices by the first [`KEY_BYTES`] of their head (the whole head when shorter).
#[derive(Debug, Default)]
pub struct HeadIndex {
    /// In increasing order of their key.
    sorted: Vec<Sorted>,
    /// Added since the last merge, in no order, with a copy of their key: every lookup reads
    /// them all, and reading them through their files cost a cache miss or two each.
    recent: Vec<(usize, KeyCopy)>,
    /// Bit `n` is set when some key is `n` bytes long: a lookup tries only those lengths (a
    /// directory of one-line files has keys of a few lengths, not of every length up to
    /// [`KEY_BYTES`]).
    key_lengths: u128,
    /// Files with no head yet (a generation that began empty): related to every head.
    unheaded: Vec<usize>,
}

impl HeadIndex {
    /// The index of the files at `indices`, whose heads `heads` gives (empty heads relate to
    /// nothing and are left out).
    pub fn of<'h>(indices: impl Iterator<Item = usize>, heads: impl Fn(usize) -> &'h [u8]) -> Self {
        let mut index = HeadIndex::default();
        for i in indices {
            let head = heads(i);
            if !head.is_empty() {
                index.key_lengths |= 1 << key(head).len();
                let start = start_of(key(head));
                index.sorted.push(Sorted { start, index: i });
            }
        }
        index.sorted.sort_by(|a, b| {
            let b_key = key(heads(b.index));
            compare(a, b_key, b.start, &heads)
        });
        index
    }

    /// Adds the file at `index`, which has no head yet, as related to every head.
    pub fn insert_unheaded(&mut self, index: usize) {
        self.unheaded.push(index);
    }

    /// Adds the file at `index`, whose head `heads` gives (an empty head relates to nothing
    /// and is left out).
    pub fn insert<'h>(&mut self, index: usize, heads: impl Fn(usize) -> &'h [u8]) {
        let head = heads(index);
        if head.is_empty() {
            return;
        }
        self.key_lengths |= 1 << key(head).len();
        self.recent.push((index, KeyCopy::of(key(head))));
        if self.recent.len() >= MERGE_AT {
            self.merge(heads);
        }
    }

    /// Moves the recent files among the sorted ones: each goes where a binary search puts it,
    /// the sorted ones after it moved once for all of them.
    fn merge<'h>(&mut self, heads: impl Fn(usize) -> &'h [u8]) {
        self.recent.sort_by(|(_, a), (_, b)| a.key().cmp(b.key()));
        let old = self.sorted.len();
        let placeholder = Sorted { start: 0, index: 0 };
        self.sorted.resize(old + self.recent.len(), placeholder);
        // From the back: the last recent file goes after every sorted one not above it, and
        // the sorted ones above it move to the end, and so on down.
        let mut unmoved = old;
        let mut end = self.sorted.len();
        for (added, added_key) in self.recent.iter().rev() {
            let added_key = added_key.key();
            let start = start_of(added_key);
            let at = self.sorted[..unmoved]
                .partition_point(|file| compare(file, added_key, start, &heads).is_le());
            let above = unmoved - at;
            self.sorted.copy_within(at..unmoved, end - above);
            end -= above + 1;
            self.sorted[end] = Sorted {
                start,
                index: *added,
            };
            unmoved = at;
        }
        self.recent.clear();
    }

    /// The indices, in increasing order, of the files whose head may be a prefix of `head` or
    /// have `head` as a prefix (a superset: heads longer than [`KEY_BYTES`] that share only
    /// their first bytes are among them). `heads` gives the heads of the files added.
    pub fn related<'h>(&self, head: &[u8], heads: impl Fn(usize) -> &'h [u8]) -> Vec<usize> {
        let mut found = self.unheaded.clone();
        if head.is_empty() {
            return found;
        }
        let head_key = key(head);
        // A head shorter than `KEY_BYTES` may be a copy still being written of a longer one:
        // the heads that go on from it are related too.
        let may_go_on = head.len() < KEY_BYTES;
        let related = |tracked: &[u8]| {
            head_key.starts_with(tracked) || (may_go_on && tracked.starts_with(head))
        };
        let head_start = start_of(head_key);
        let recent = self.recent.iter().filter(|(_, key)| {
            (head_key.len() < 8 || key.may_relate(head_start)) && related(key.key())
        });
        found.extend(recent.map(|(i, _)| *i));
        // Heads that are prefixes of `head` (keyed whole when short, by their first bytes when
        // long), and long heads sharing `head`'s first bytes: equal keys, in a row.
        let present = (1..=head_key.len()).filter(|len| self.key_lengths & (1 << len) != 0);
        for len in present {
            let wanted = &head_key[..len];
            let start = start_of(wanted);
            let from = self
                .sorted
                .partition_point(|file| compare(file, wanted, start, &heads).is_lt());
            let equal = self.sorted[from..]
                .iter()
                .take_while(|file| compare(file, wanted, start, &heads).is_eq());
            found.extend(equal.map(|file| file.index));
        }
        if may_go_on {
            // Heads that start with `head` and go on: keys in a row after `head`.
            let start = start_of(head_key);
            let from = self
                .sorted
                .partition_point(|file| compare(file, head_key, start, &heads).is_le());
            let longer = self.sorted[from..]
                .iter()
                .take_while(|file| key(heads(file.index)).starts_with(head));
            found.extend(longer.map(|file| file.index));
        }
        found.sort_unstable();
        found.dedup();
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn related_heads_table() {
        let long = |fill: u8, tail: &[u8]| {
            let mut head = vec![fill; KEY_BYTES + 10];
            head.extend_from_slice(tail);
            head
        };
        let tracked: Vec<Vec<u8>> = vec![
            b"abc".to_vec(),    // 0
            b"abcdef".to_vec(), // 1
            b"abd".to_vec(),    // 2
            b"x".to_vec(),      // 3
            long(b'l', b"one"), // 4
            long(b'l', b"two"), // 5
            b"".to_vec(),       // 6: never related
            b"abcdef".to_vec(), // 7: same head as 1
        ];
        let heads = |i: usize| &tracked[i][..];
        let mut index = HeadIndex::default();
        for i in 0..tracked.len() {
            index.insert(i, heads);
        }
        let built = HeadIndex::of(0..tracked.len(), heads);
        // (new head, related indices)
        let cases: Vec<(Vec<u8>, Vec<usize>)> = vec![
            (b"abc".to_vec(), vec![0, 1, 7]),
            (b"ab".to_vec(), vec![0, 1, 2, 7]),
            (b"abcdefgh".to_vec(), vec![0, 1, 7]),
            (b"abcx".to_vec(), vec![0]),
            (b"abe".to_vec(), vec![]),
            (b"xyz".to_vec(), vec![3]),
            (b"".to_vec(), vec![]),
            (b"l".to_vec(), vec![4, 5]),
            (long(b'l', b"one and more"), vec![4, 5]),
            (long(b'l', b""), vec![4, 5]),
            (long(b'm', b""), vec![]),
        ];
        for (head, want) in cases {
            let name = String::from_utf8_lossy(&head);
            assert_eq!(index.related(&head, heads), want, "{name:?}");
            assert_eq!(built.related(&head, heads), want, "{name:?}, built at once");
        }
    }

    #[test]
    fn every_truly_related_head_is_found() {
        // Brute force over short heads of a small alphabet (with the zero byte, which the
        // starts kept of the keys are padded with): whatever is a prefix either way is among
        // the candidates.
        let heads: Vec<Vec<u8>> = (0..200u32)
            .map(|n| {
                let len = 1 + (n % 5) as usize;
                (0..len).map(|k| b"\0a"[((n >> k) & 1) as usize]).collect()
            })
            .collect();
        // 200 files: some merged among the sorted ones, some recent, at every probe.
        let of = |i: usize| &heads[i][..];
        let mut index = HeadIndex::default();
        for added in 0..heads.len() {
            index.insert(added, of);
            for probe in &heads {
                let related = index.related(probe, of);
                let truly: Vec<usize> = (0..=added)
                    .filter(|&i| heads[i].starts_with(probe) || probe.starts_with(&heads[i]))
                    .collect();
                for i in &truly {
                    assert!(related.contains(i), "{probe:?} misses {:?}", heads[*i]);
                }
                // Short heads are keyed whole: nothing unrelated is named.
                assert_eq!(related, truly, "{probe:?}");
            }
        }
    }
}
