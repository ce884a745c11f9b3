//! Paths stored end to end in one buffer: what a scan of the globs found.
//!
//! Invariant: after [`PathList::sort_dedup`], the paths are in the order of their bytes, each
//! once. One allocation per list rather than one per path: a scan of 100,000 files held 100,000
//! `PathBuf`s, each with its allocator overhead, beside every tracked file. Sorting orders
//! indices, not the bytes: a copy of the list, made to sort it, was the peak of the periodic
//! scan of 100,000 tracked files.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A list of paths in one buffer.
#[derive(Debug, Default, Clone)]
pub struct PathList {
    bytes: Vec<u8>,
    /// Where each path ends in `bytes`, in the order they were pushed. `u32`: a scan's paths
    /// are far from 4 GiB, and the list holds 4 bytes a path less.
    ends: Vec<u32>,
    /// The paths' order once sorted (indices into `ends`); empty while unsorted.
    order: Vec<u32>,
}

impl PathList {
    /// Adds `path` at the end (of an unsorted list).
    pub fn push(&mut self, path: &Path) {
        debug_assert!(self.order.is_empty(), "push after sort_dedup");
        self.bytes.extend_from_slice(path.as_os_str().as_bytes());
        // Past 4 GiB of paths the end saturates: the paths after it read as empty, which no
        // scan comes near (100,000 paths are a few megabytes).
        self.ends
            .push(u32::try_from(self.bytes.len()).unwrap_or(u32::MAX));
    }

    /// How many paths it holds.
    pub fn len(&self) -> usize {
        if self.order.is_empty() {
            self.ends.len()
        } else {
            self.order.len()
        }
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The path pushed `pushed`-th.
    fn pushed(&self, pushed: usize) -> &Path {
        let start = pushed.checked_sub(1).map_or(0, |before| self.ends[before]) as usize;
        let end = (self.ends[pushed] as usize).max(start);
        Path::new(OsStr::from_bytes(&self.bytes[start..end]))
    }

    fn get(&self, index: usize) -> &Path {
        match self.order.get(index) {
            Some(&pushed) => self.pushed(pushed as usize),
            None => self.pushed(index),
        }
    }

    /// The paths, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Path> + '_ {
        (0..self.len()).map(|index| self.get(index))
    }

    /// Sorts the paths by their bytes and drops repeats.
    pub fn sort_dedup(&mut self) {
        self.bytes.shrink_to_fit();
        self.ends.shrink_to_fit();
        let count = u32::try_from(self.ends.len()).unwrap_or(u32::MAX);
        let mut order: Vec<u32> = (0..count).collect();
        let bytes_of = |pushed: u32| self.pushed(pushed as usize).as_os_str().as_bytes();
        order.sort_unstable_by(|&a, &b| bytes_of(a).cmp(bytes_of(b)));
        order.dedup_by(|a, b| bytes_of(*a) == bytes_of(*b));
        order.shrink_to_fit();
        self.order = order;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_by_bytes_each_once() {
        // (pushed, after sort_dedup)
        let cases: &[(&[&str], &[&str])] = &[
            (&[], &[]),
            (&["/b", "/a"], &["/a", "/b"]),
            (
                &["/a/x.log", "/a", "/a/x.log", "/a-b"],
                &["/a", "/a-b", "/a/x.log"],
            ),
            (&["", "/"], &["", "/"]),
        ];
        for (pushed, want) in cases {
            let mut list = PathList::default();
            for path in *pushed {
                list.push(Path::new(path));
            }
            assert_eq!(list.len(), pushed.len());
            list.sort_dedup();
            let got: Vec<&str> = list.iter().map(|p| p.to_str().unwrap()).collect();
            assert_eq!(got, *want, "{pushed:?}");
            assert_eq!(list.is_empty(), want.is_empty());
        }
    }
}
