//! Paths stored end to end in one buffer, each directory once: what a scan of the globs found.
//!
//! Invariant: the path at an index is its directory part (up to its last `/`) followed by its
//! name, as pushed; after [`PathList::sort_dedup`], the paths are in the order of their bytes,
//! each once. One allocation per list rather than one per path: a scan of 100,000 files held
//! 100,000 `PathBuf`s, each with its allocator overhead, beside every tracked file. The
//! directory is kept once for the paths pushed from it in a row (a walk pushes a directory's
//! files together): with 100,000 files in one directory, the names alone are a quarter of the
//! paths' bytes. Sorting orders indices, not the bytes: a copy of the list, made to sort it,
//! was the peak of the periodic scan of 100,000 tracked files.

use std::cmp::Ordering;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Bytes end to end, each piece ending where `ends` says.
#[derive(Debug, Default, Clone)]
struct Pieces {
    bytes: Vec<u8>,
    /// `u32`: a scan's paths are far from 4 GiB, and the list holds 4 bytes a piece less.
    ends: Vec<u32>,
}

impl Pieces {
    fn push(&mut self, piece: &[u8]) {
        self.bytes.extend_from_slice(piece);
        // Past 4 GiB of paths the end saturates: the pieces after it read as empty, which no
        // scan comes near (100,000 paths are a few megabytes).
        self.ends
            .push(u32::try_from(self.bytes.len()).unwrap_or(u32::MAX));
    }

    fn get(&self, index: usize) -> &[u8] {
        let start = index.checked_sub(1).map_or(0, |before| self.ends[before]) as usize;
        let end = (self.ends[index] as usize).max(start);
        &self.bytes[start..end]
    }

    fn last(&self) -> Option<&[u8]> {
        self.ends.len().checked_sub(1).map(|last| self.get(last))
    }

    fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
        self.ends.shrink_to_fit();
    }
}

/// A list of paths in one buffer.
#[derive(Debug, Default, Clone)]
pub struct PathList {
    /// Directory parts, with their last `/`.
    dirs: Pieces,
    /// What follows the directory part of each path, in the order they were pushed.
    names: Pieces,
    /// The directory part of each path (an index into `dirs`).
    dir_of: Vec<u32>,
    /// The paths' order once sorted (indices into `names`); empty while unsorted.
    order: Vec<u32>,
}

impl PathList {
    /// Adds `path` at the end (of an unsorted list).
    pub fn push(&mut self, path: &Path) {
        debug_assert!(self.order.is_empty(), "push after sort_dedup");
        let bytes = path.as_os_str().as_bytes();
        let split = memchr::memrchr(b'/', bytes).map_or(0, |slash| slash + 1);
        let (dir, name) = bytes.split_at(split);
        if self.dirs.last() != Some(dir) {
            self.dirs.push(dir);
        }
        let dir = self.dirs.ends.len().saturating_sub(1);
        self.dir_of.push(u32::try_from(dir).unwrap_or(u32::MAX));
        self.names.push(name);
    }

    /// How many paths it holds.
    pub fn len(&self) -> usize {
        if self.order.is_empty() {
            self.dir_of.len()
        } else {
            self.order.len()
        }
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.dir_of.is_empty()
    }

    /// The directory part and the name of the path pushed `pushed`-th.
    fn pushed(&self, pushed: usize) -> (&[u8], &[u8]) {
        (
            self.dirs.get(self.dir_of[pushed] as usize),
            self.names.get(pushed),
        )
    }

    /// The paths pushed `a`-th and `b`-th, compared by their bytes.
    fn compare(&self, a: u32, b: u32) -> Ordering {
        let (a, b) = (a as usize, b as usize);
        if self.dir_of[a] == self.dir_of[b] {
            return self.names.get(a).cmp(self.names.get(b));
        }
        let ((a_dir, a_name), (b_dir, b_name)) = (self.pushed(a), self.pushed(b));
        a_dir.iter().chain(a_name).cmp(b_dir.iter().chain(b_name))
    }

    /// The paths, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = PathBuf> + '_ {
        (0..self.len()).map(|index| {
            let pushed = self.order.get(index).map_or(index, |&at| at as usize);
            let (dir, name) = self.pushed(pushed);
            let mut path = Vec::with_capacity(dir.len() + name.len());
            path.extend_from_slice(dir);
            path.extend_from_slice(name);
            PathBuf::from(OsStr::from_bytes(&path))
        })
    }

    /// Sorts the paths by their bytes and drops repeats.
    pub fn sort_dedup(&mut self) {
        self.dirs.shrink_to_fit();
        self.names.shrink_to_fit();
        self.dir_of.shrink_to_fit();
        let count = u32::try_from(self.dir_of.len()).unwrap_or(u32::MAX);
        let mut order: Vec<u32> = (0..count).collect();
        order.sort_unstable_by(|&a, &b| self.compare(a, b));
        order.dedup_by(|a, b| self.compare(*a, *b) == Ordering::Equal);
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
            // Directories pushed again later, and names that sort across directories.
            (
                &["/a/b", "/a/a", "/a-/x", "/a/b", "/a/", "/a/b/c", "/a/0"],
                &["/a-/x", "/a/", "/a/0", "/a/a", "/a/b", "/a/b/c"],
            ),
            (&["x", "/x", "x"], &["/x", "x"]),
        ];
        for (pushed, want) in cases {
            let mut list = PathList::default();
            for path in *pushed {
                list.push(Path::new(path));
            }
            assert_eq!(list.len(), pushed.len());
            list.sort_dedup();
            let got: Vec<String> = list
                .iter()
                .map(|p| p.to_str().unwrap().to_owned())
                .collect();
            assert_eq!(got, *want, "{pushed:?}");
            assert_eq!(list.is_empty(), want.is_empty());
        }
    }
}
