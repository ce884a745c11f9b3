//! Paths stored end to end in one buffer: what a scan of the globs found.
//!
//! Invariant: after [`PathList::sort_dedup`], the paths are in the order of their bytes, each
//! once. One allocation per list rather than one per path: a scan of 100,000 files held 100,000
//! `PathBuf`s, each with its allocator overhead, beside every tracked file.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A list of paths in one buffer.
#[derive(Debug, Default, Clone)]
pub struct PathList {
    bytes: Vec<u8>,
    /// Where each path ends in `bytes`.
    ends: Vec<usize>,
}

impl PathList {
    /// Adds `path` at the end.
    pub fn push(&mut self, path: &Path) {
        self.bytes.extend_from_slice(path.as_os_str().as_bytes());
        self.ends.push(self.bytes.len());
    }

    /// How many paths it holds.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn get(&self, index: usize) -> &Path {
        let start = index.checked_sub(1).map_or(0, |before| self.ends[before]);
        Path::new(OsStr::from_bytes(&self.bytes[start..self.ends[index]]))
    }

    /// The paths, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Path> + '_ {
        (0..self.len()).map(|index| self.get(index))
    }

    /// Sorts the paths by their bytes and drops repeats.
    pub fn sort_dedup(&mut self) {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_unstable_by(|&a, &b| {
            self.get(a)
                .as_os_str()
                .as_bytes()
                .cmp(self.get(b).as_os_str().as_bytes())
        });
        order.dedup_by(|a, b| self.get(*a) == self.get(*b));
        let mut sorted = PathList {
            bytes: Vec::with_capacity(self.bytes.len()),
            ends: Vec::with_capacity(order.len()),
        };
        for index in order {
            sorted.push(self.get(index));
        }
        *self = sorted;
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
