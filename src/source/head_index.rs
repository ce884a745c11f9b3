//! Tracked files by the first bytes of their head, so that a scan that finds thousands of new
//! files does not compare each with every tracked file (which made such a scan quadratic).
//!
//! A new file is related to a tracked one when one head is a prefix of the other: the tracked
//! head is a prefix of the new one (same fingerprint: a copy, or the same file's content), or the
//! new head is a prefix of the tracked one (a copy still being written). The index gives those
//! candidates; the caller checks each.

use std::collections::BTreeMap;
use std::ops::Bound;

use smallvec::{SmallVec, smallvec};

/// How many first bytes of a head the index keys on: longer heads sharing them are told apart
/// by the caller.
pub const KEY_BYTES: usize = 64;
const _: () = assert!(KEY_BYTES < 128, "key lengths are bits of a u128");

/// File indices by the first [`KEY_BYTES`] of their head (the whole head when shorter).
#[derive(Debug, Default)]
pub struct HeadIndex {
    /// Most keys are one file's (an allocation less each, inline).
    by_key: BTreeMap<Box<[u8]>, SmallVec<[usize; 1]>>,
    /// Bit `n` is set when some key is `n` bytes long: a lookup tries only those lengths (a
    /// directory of one-line files has keys of a few lengths, not of every length up to
    /// [`KEY_BYTES`]).
    key_lengths: u128,
    /// Files with no head yet (a generation that began empty): related to every head.
    unheaded: Vec<usize>,
}

impl HeadIndex {
    /// Adds the file at `index`, which has no head yet, as related to every head.
    pub fn insert_unheaded(&mut self, index: usize) {
        self.unheaded.push(index);
    }

    /// Adds the file at `index` with `head` (an empty head relates to nothing and is left out).
    pub fn insert(&mut self, index: usize, head: &[u8]) {
        if head.is_empty() {
            return;
        }
        let key = &head[..head.len().min(KEY_BYTES)];
        self.key_lengths |= 1 << key.len();
        match self.by_key.get_mut(key) {
            Some(indices) => indices.push(index),
            None => {
                self.by_key.insert(key.into(), smallvec![index]);
            }
        }
    }

    /// The indices, in increasing order, of the files whose head may be a prefix of `head` or
    /// have `head` as a prefix (a superset: heads longer than [`KEY_BYTES`] that share only
    /// their first bytes are among them).
    pub fn related(&self, head: &[u8]) -> Vec<usize> {
        let mut found = self.unheaded.clone();
        if head.is_empty() {
            return found;
        }
        let key_len = head.len().min(KEY_BYTES);
        // Heads that are prefixes of `head` (keyed whole when short, by their first bytes when
        // long), and long heads sharing `head`'s first bytes.
        let present = (1..=key_len).filter(|len| self.key_lengths & (1 << len) != 0);
        for len in present {
            if let Some(indices) = self.by_key.get(&head[..len]) {
                found.extend_from_slice(indices);
            }
        }
        if head.len() < KEY_BYTES {
            // Heads that start with `head` and go on: keys in a row from `head` on.
            let longer = self
                .by_key
                .range::<[u8], _>((Bound::Excluded(head), Bound::Unbounded))
                .take_while(|(key, _)| key.starts_with(head));
            for (_, indices) in longer {
                found.extend_from_slice(indices);
            }
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
        let mut index = HeadIndex::default();
        for (i, head) in tracked.iter().enumerate() {
            index.insert(i, head);
        }
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
            assert_eq!(
                index.related(&head),
                want,
                "{:?}",
                String::from_utf8_lossy(&head)
            );
        }
    }

    #[test]
    fn every_truly_related_head_is_found() {
        // Brute force over short heads of a small alphabet: whatever is a prefix either way is
        // among the candidates.
        let heads: Vec<Vec<u8>> = (0..200u32)
            .map(|n| {
                let len = 1 + (n % 5) as usize;
                (0..len).map(|k| b"ab"[((n >> k) & 1) as usize]).collect()
            })
            .collect();
        let mut index = HeadIndex::default();
        for (i, head) in heads.iter().enumerate() {
            index.insert(i, head);
        }
        for probe in &heads {
            let related = index.related(probe);
            for (i, head) in heads.iter().enumerate() {
                if head.starts_with(probe) || probe.starts_with(head) {
                    assert!(related.contains(&i), "{probe:?} misses {head:?}");
                }
            }
        }
    }
}
