//! Finding the files a source reads: include globs minus exclude globs, regular files only.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// The compiled globs of one source.
#[derive(Debug, Clone)]
pub struct Globs {
    include: Vec<String>,
    exclude: Vec<glob::Pattern>,
}

/// A directory to watch for one include glob, and whether its subdirectories matter too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatchRoot {
    /// The deepest directory named without wildcards.
    pub dir: PathBuf,
    /// True when the glob has wildcards in directory names below `dir`.
    pub recursive: bool,
}

impl Globs {
    /// Compiles the globs; invalid exclude patterns (already rejected by config checks) are
    /// left out.
    pub fn new(include: &[String], exclude: &[String]) -> Self {
        Globs {
            include: include.to_vec(),
            exclude: exclude
                .iter()
                .filter_map(|p| glob::Pattern::new(p).ok())
                .collect(),
        }
    }

    /// Regular files matched now, sorted, each once; and the errors met on the way (unreadable
    /// directories), to be counted and logged by the caller.
    pub fn expand(&self) -> (Vec<PathBuf>, Vec<String>) {
        let mut found = BTreeSet::new();
        let mut errors = Vec::new();
        for pattern in &self.include {
            let paths = match glob::glob(pattern) {
                Ok(paths) => paths,
                Err(e) => {
                    errors.push(format!("{pattern}: {e}"));
                    continue;
                }
            };
            for entry in paths {
                match entry {
                    Ok(path) => {
                        if !self.is_excluded(&path) && path.is_file() {
                            found.insert(path);
                        }
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
        }
        (found.into_iter().collect(), errors)
    }

    fn is_excluded(&self, path: &Path) -> bool {
        self.exclude.iter().any(|p| p.matches_path(path))
    }

    /// The directories to watch so that every file the include globs can match is seen.
    pub fn watch_roots(&self) -> Vec<WatchRoot> {
        let roots: BTreeSet<WatchRoot> = self.include.iter().map(|p| watch_root(p)).collect();
        roots.into_iter().collect()
    }
}

fn has_wildcard(part: &str) -> bool {
    part.contains(['*', '?', '['])
}

/// The watch root of one glob: its leading directories without wildcards.
fn watch_root(pattern: &str) -> WatchRoot {
    let mut dir = PathBuf::new();
    let components: Vec<Component> = Path::new(pattern).components().collect();
    let mut wild_at = components.len().saturating_sub(1);
    for (i, component) in components.iter().enumerate() {
        let text = component.as_os_str().to_string_lossy();
        if i + 1 == components.len() || has_wildcard(&text) {
            wild_at = i;
            break;
        }
        dir.push(component);
    }
    WatchRoot {
        dir,
        recursive: wild_at + 1 < components.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn watch_roots_table() {
        let cases = [
            ("/var/log/app/*.log", "/var/log/app", false),
            ("/var/log/app/app.log", "/var/log/app", false),
            ("/var/log/pods/*/*/*.log", "/var/log/pods", true),
            ("/var/log/**/*.log", "/var/log", true),
            ("/a/b[0-9]/c.log", "/a", true),
        ];
        for (pattern, dir, recursive) in cases {
            let root = watch_root(pattern);
            assert_eq!(root.dir, PathBuf::from(dir), "{pattern}");
            assert_eq!(root.recursive, recursive, "{pattern}");
        }
    }

    #[test]
    fn expands_includes_minus_excludes_regular_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in ["a.log", "b.log", "skip.log", "c.txt"] {
            fs::write(d.join(name), "x\n").unwrap();
        }
        fs::create_dir(d.join("dir.log")).unwrap();
        fs::create_dir(d.join("sub")).unwrap();
        fs::write(d.join("sub/d.log"), "x\n").unwrap();
        let p = |s: &str| d.join(s).to_string_lossy().into_owned();
        let globs = Globs::new(&[p("*.log"), p("sub/*.log"), p("a.log")], &[p("skip*")]);
        let (found, errors) = globs.expand();
        assert!(errors.is_empty(), "{errors:?}");
        let names: Vec<PathBuf> = found
            .iter()
            .map(|f| f.strip_prefix(d).unwrap().to_owned())
            .collect();
        let want: Vec<PathBuf> = ["a.log", "b.log", "sub/d.log"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(names, want);
    }
}
