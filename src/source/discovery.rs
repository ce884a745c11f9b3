//! Finding the files a source reads: include globs minus exclude globs, regular files only.
//!
//! The watched directory is shared with the container whose logs are read, so what is in it is
//! untrusted. The directories named literally at the start of an include glob (its watch root,
//! e.g. `/var/log/app` of `/var/log/app/*.log`) are the operator's and are resolved as usual;
//! below them the walk never follows a symbolic link unless `follow_symlinks` is set, so a
//! link to the agent's own secrets (`/var/run/secrets/...`) is reported, not read, and a link
//! loop cannot make the walk spin. Matches that are not regular files (directories, FIFOs,
//! sockets, device nodes, links not followed) are handed back as [`Skipped`] for the caller
//! to report and count; they are never opened.

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsString;
use std::fs::{self, FileType, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use super::path_list::PathList;

/// Directory levels a `**` walks down at most: deeper trees are a hostile volume, not logs.
const MAX_DEPTH: usize = 32;

/// The compiled globs of one source.
#[derive(Debug, Clone)]
pub struct Globs {
    include: Vec<String>,
    compiled: Vec<Include>,
    exclude: Vec<glob::Pattern>,
    follow_symlinks: bool,
}

/// One include glob split at its watch root.
#[derive(Debug, Clone)]
struct Include {
    root: PathBuf,
    parts: Vec<Part>,
}

/// A path component of an include glob below its watch root.
#[derive(Debug, Clone)]
enum Part {
    /// A name without wildcards.
    Literal(OsString),
    /// A name with wildcards (`*.log`).
    Wild(glob::Pattern),
    /// `**`: any number of directories, none included.
    AnyDirs,
}

/// A directory to watch for one include glob, and whether its subdirectories matter too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatchRoot {
    /// The deepest directory named without wildcards.
    pub dir: PathBuf,
    /// True when the glob has wildcards in directory names below `dir`.
    pub recursive: bool,
}

/// Why a path an include glob matched is not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// A symbolic link, and `follow_symlinks` is off.
    Symlink,
    /// A directory where a file was expected.
    Directory,
    /// A FIFO: opening or reading it could block.
    Fifo,
    /// A Unix socket.
    Socket,
    /// A character or block device.
    Device,
}

impl SkipReason {
    /// The reason as one word, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Symlink => "symbolic link (follow_symlinks is off)",
            SkipReason::Directory => "directory",
            SkipReason::Fifo => "FIFO",
            SkipReason::Socket => "socket",
            SkipReason::Device => "device node",
        }
    }

    /// The reason for a file of type `kind`, or `None` for a regular file.
    pub fn of(kind: FileType) -> Option<SkipReason> {
        if kind.is_file() {
            None
        } else if kind.is_symlink() {
            Some(SkipReason::Symlink)
        } else if kind.is_dir() {
            Some(SkipReason::Directory)
        } else if kind.is_fifo() {
            Some(SkipReason::Fifo)
        } else if kind.is_socket() {
            Some(SkipReason::Socket)
        } else {
            Some(SkipReason::Device)
        }
    }
}

/// A match that is not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Where it is.
    pub path: PathBuf,
    /// What it is.
    pub reason: SkipReason,
}

/// What one expansion of the globs found.
#[derive(Debug, Default)]
pub struct Expansion {
    /// Regular files matched, sorted by their bytes, each once.
    pub files: PathList,
    /// Matches that are not regular files (or links not followed), sorted.
    pub skipped: Vec<Skipped>,
    /// Errors met on the way (unreadable directories, link loops), to be logged.
    pub errors: Vec<String>,
}

impl Globs {
    /// Compiles the globs; invalid patterns (already rejected by config checks) are left out.
    /// With `follow_symlinks`, links below the watch roots are followed (their targets must
    /// still be regular files).
    pub fn new(include: &[String], exclude: &[String], follow_symlinks: bool) -> Self {
        Globs {
            include: include.to_vec(),
            compiled: include.iter().filter_map(|p| compile(p)).collect(),
            exclude: exclude
                .iter()
                .filter_map(|p| glob::Pattern::new(p).ok())
                .collect(),
            follow_symlinks,
        }
    }

    /// Walks the include globs now.
    pub fn expand(&self) -> Expansion {
        let mut walk = Walk {
            globs: self,
            files: PathList::default(),
            skipped: BTreeSet::new(),
            errors: Vec::new(),
            visited: HashSet::new(),
        };
        for include in &self.compiled {
            // Per glob: two globs may walk the same directories for different names.
            walk.visited.clear();
            match fs::metadata(&include.root) {
                Ok(md) if md.is_dir() => walk.dir(&include.root, &md, &include.parts, 0),
                Ok(_) => {}
                // A root that does not exist yet is watched for and walked once it does.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => walk.errors.push(format!("{}: {e}", include.root.display())),
            }
        }
        // Sorted once at the end, by the bytes of the path: comparing paths component by
        // component at every insert was a fifth of a scan's time with 50,000 files.
        let mut files = walk.files;
        files.sort_dedup();
        Expansion {
            files,
            skipped: walk
                .skipped
                .into_iter()
                .map(|(path, reason)| Skipped { path, reason })
                .collect(),
            errors: walk.errors,
        }
    }

    /// The watch root under which `path` was found: the operator's own directories, whose
    /// links are trusted.
    pub fn root_of(&self, path: &Path) -> Option<&Path> {
        self.compiled
            .iter()
            .map(|i| i.root.as_path())
            .filter(|root| path.starts_with(root))
            .max_by_key(|root| root.as_os_str().len())
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

/// Splits an include glob at its watch root.
fn compile(pattern: &str) -> Option<Include> {
    let root = watch_root(pattern).dir;
    let rest = Path::new(pattern).strip_prefix(&root).ok()?;
    let mut parts = Vec::new();
    for component in rest.components() {
        let Component::Normal(name) = component else {
            // `.` and `..` below the root: not something a log glob needs.
            return None;
        };
        let text = name.to_string_lossy();
        parts.push(if text == "**" {
            Part::AnyDirs
        } else if has_wildcard(&text) {
            Part::Wild(glob::Pattern::new(&text).ok()?)
        } else {
            Part::Literal(name.to_owned())
        });
    }
    (!parts.is_empty()).then_some(Include { root, parts })
}

/// One expansion in progress.
struct Walk<'a> {
    globs: &'a Globs,
    /// Regular files matched, in the order found; two globs may match one file.
    files: PathList,
    skipped: BTreeSet<(PathBuf, SkipReason)>,
    errors: Vec<String>,
    /// Directories walked, with how many parts were left: each is walked once per expansion,
    /// however many links lead to it, so followed links cannot loop or multiply the work.
    visited: HashSet<(u64, u64, usize)>,
}

/// What a directory entry is, links resolved or not as configured.
enum Kind {
    File,
    Dir(Metadata),
    Skip(SkipReason),
}

impl Walk<'_> {
    /// Matches `parts` in directory `dir` (whose metadata is `md`), `depth` levels below a root.
    fn dir(&mut self, dir: &Path, md: &Metadata, parts: &[Part], depth: usize) {
        let Some((part, rest)) = parts.split_first() else {
            return;
        };
        if depth > MAX_DEPTH || !self.visited.insert((md.dev(), md.ino(), parts.len())) {
            return;
        }
        match part {
            Part::Literal(name) => {
                let path = dir.join(name);
                match fs::symlink_metadata(&path) {
                    Ok(md) => self.entry(path, md.file_type(), rest, depth),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => self.errors.push(format!("{}: {e}", path.display())),
                }
            }
            Part::Wild(pattern) => {
                // Entries taken as they are read, a path made only for a name that matches: a
                // directory of 100,000 files is not listed whole first.
                let Some(entries) = self.read_dir(dir) else {
                    return;
                };
                for entry in entries {
                    let Some((entry, kind)) = self.typed(dir, entry) else {
                        continue;
                    };
                    let name = entry.file_name();
                    if name.to_str().is_some_and(|n| pattern.matches(n)) {
                        self.entry(dir.join(name), kind, rest, depth);
                    }
                }
            }
            Part::AnyDirs => {
                // `**` matches no directory at all, or any below this one.
                self.dir(dir, md, rest, depth);
                for (path, kind) in self.list(dir) {
                    // Links met on the way down are only followed when configured, and are not
                    // reported: they are not matches.
                    if let Kind::Dir(md) = self.kind(&path, kind) {
                        self.dir(&path, &md, parts, depth + 1);
                    }
                }
            }
        }
    }

    /// The entries of `dir`, with their types as listed (links not resolved).
    fn list(&mut self, dir: &Path) -> Vec<(PathBuf, FileType)> {
        let Some(entries) = self.read_dir(dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| self.typed(dir, entry))
            .map(|(entry, kind)| (entry.path(), kind))
            .collect()
    }

    /// Opens `dir` for reading its entries; an error is noted.
    fn read_dir(&mut self, dir: &Path) -> Option<fs::ReadDir> {
        fs::read_dir(dir)
            .map_err(|e| self.errors.push(format!("{}: {e}", dir.display())))
            .ok()
    }

    /// An entry of `dir` with its type as listed; an error is noted.
    fn typed(
        &mut self,
        dir: &Path,
        entry: io::Result<fs::DirEntry>,
    ) -> Option<(fs::DirEntry, FileType)> {
        entry
            .and_then(|e| {
                let kind = e.file_type()?;
                Ok((e, kind))
            })
            .map_err(|e| self.errors.push(format!("{}: {e}", dir.display())))
            .ok()
    }

    /// What the entry at `path` of listed type `kind` is to the walk.
    fn kind(&mut self, path: &Path, kind: FileType) -> Kind {
        let resolved = if kind.is_symlink() && self.globs.follow_symlinks {
            match fs::metadata(path) {
                Ok(md) => md,
                Err(e) => {
                    // A loop (ELOOP) or a dangling link.
                    self.errors.push(format!("{}: {e}", path.display()));
                    return Kind::Skip(SkipReason::Symlink);
                }
            }
        } else if kind.is_dir() {
            match fs::symlink_metadata(path) {
                Ok(md) => md,
                Err(e) => {
                    self.errors.push(format!("{}: {e}", path.display()));
                    return Kind::Skip(SkipReason::Directory);
                }
            }
        } else {
            return match SkipReason::of(kind) {
                None => Kind::File,
                Some(reason) => Kind::Skip(reason),
            };
        };
        match SkipReason::of(resolved.file_type()) {
            None => Kind::File,
            Some(SkipReason::Directory) => Kind::Dir(resolved),
            Some(reason) => Kind::Skip(reason),
        }
    }

    /// A matched entry: the file found, a directory to go on in, or something skipped.
    fn entry(&mut self, path: PathBuf, kind: FileType, rest: &[Part], depth: usize) {
        if self.globs.is_excluded(&path) {
            return;
        }
        let kind = self.kind(&path, kind);
        match (kind, rest.is_empty()) {
            (Kind::File, true) => {
                self.files.push(&path);
            }
            (Kind::Dir(md), false) => self.dir(&path, &md, rest, depth + 1),
            (Kind::Dir(_), true) => {
                self.skipped.insert((path, SkipReason::Directory));
            }
            // A link not followed stands where a directory or a file was expected.
            (Kind::Skip(reason), _) if reason == SkipReason::Symlink || rest.is_empty() => {
                self.skipped.insert((path, reason));
            }
            // A file, FIFO... where a directory was expected: no match.
            _ => {}
        }
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
        let globs = Globs::new(
            &[p("*.log"), p("sub/*.log"), p("a.log")],
            &[p("skip*")],
            false,
        );
        let found = globs.expand();
        assert!(found.errors.is_empty(), "{:?}", found.errors);
        assert_eq!(
            found.skipped,
            [Skipped {
                path: d.join("dir.log"),
                reason: SkipReason::Directory
            }]
        );
        let names: Vec<PathBuf> = found
            .files
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

#[cfg(test)]
mod hostile_tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::os::unix::net::UnixListener;

    fn names(paths: &PathList, base: &Path) -> Vec<String> {
        paths
            .iter()
            .map(|f| f.strip_prefix(base).unwrap().to_string_lossy().into_owned())
            .collect()
    }

    fn skipped(found: &Expansion, base: &Path) -> Vec<(String, SkipReason)> {
        found
            .skipped
            .iter()
            .map(|s| {
                let name = s.path.strip_prefix(base).unwrap().to_string_lossy();
                (name.into_owned(), s.reason)
            })
            .collect()
    }

    /// A watched directory with a regular file, a link out of it to a "secret", a link loop,
    /// a link to a directory outside, a FIFO and a socket.
    fn hostile_dir() -> (tempfile::TempDir, PathBuf, UnixListener) {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let outside = dir.path().join("secrets");
        fs::create_dir_all(&logs).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("token.log"), "secret\n").unwrap();
        fs::write(logs.join("app.log"), "x\n").unwrap();
        symlink(outside.join("token.log"), logs.join("token.log")).unwrap();
        symlink(logs.join("loop.log"), logs.join("loop.log")).unwrap();
        symlink(&outside, logs.join("outside.log")).unwrap();
        let fifo = logs.join("pipe.log");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let socket = UnixListener::bind(logs.join("sock.log")).unwrap();
        (dir, logs, socket)
    }

    #[test]
    fn links_are_reported_not_followed_and_special_files_skipped() {
        let (dir, logs, _socket) = hostile_dir();
        let globs = Globs::new(&[format!("{}/*.log", logs.display())], &[], false);
        let found = globs.expand();
        assert_eq!(names(&found.files, &logs), ["app.log"]);
        assert_eq!(
            skipped(&found, &logs),
            [
                ("loop.log".into(), SkipReason::Symlink),
                ("outside.log".into(), SkipReason::Symlink),
                ("pipe.log".into(), SkipReason::Fifo),
                ("sock.log".into(), SkipReason::Socket),
                ("token.log".into(), SkipReason::Symlink),
            ]
        );
        assert!(found.errors.is_empty(), "{:?}", found.errors);
        drop(dir);
    }

    #[test]
    fn followed_links_must_still_lead_to_regular_files() {
        let (dir, logs, _socket) = hostile_dir();
        let globs = Globs::new(&[format!("{}/*.log", logs.display())], &[], true);
        let found = globs.expand();
        assert_eq!(names(&found.files, &logs), ["app.log", "token.log"]);
        assert_eq!(
            skipped(&found, &logs),
            [
                ("loop.log".into(), SkipReason::Symlink),
                ("outside.log".into(), SkipReason::Directory),
                ("pipe.log".into(), SkipReason::Fifo),
                ("sock.log".into(), SkipReason::Socket),
            ]
        );
        // The loop is an error of its own (ELOOP), reported rather than followed forever.
        assert_eq!(found.errors.len(), 1, "{:?}", found.errors);
        assert!(found.errors[0].contains("loop.log"), "{:?}", found.errors);
        drop(dir);
    }

    #[test]
    fn directory_link_loops_under_double_star_end() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        fs::create_dir_all(logs.join("a/b")).unwrap();
        fs::write(logs.join("a/b/deep.log"), "x\n").unwrap();
        // Two links back up at each level: followed blindly, 2^depth paths.
        symlink(&logs, logs.join("a/up")).unwrap();
        symlink(&logs, logs.join("a/b/up")).unwrap();
        symlink("..", logs.join("a/b/parent")).unwrap();
        for follow in [false, true] {
            let globs = Globs::new(&[format!("{}/**/*.log", logs.display())], &[], follow);
            let found = globs.expand();
            assert_eq!(names(&found.files, &logs), ["a/b/deep.log"], "{follow}");
        }
    }

    #[test]
    fn a_link_to_a_directory_in_the_middle_of_a_glob_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("pods");
        let outside = dir.path().join("secrets");
        fs::create_dir_all(logs.join("web")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(logs.join("web/0.log"), "x\n").unwrap();
        fs::write(outside.join("0.log"), "secret\n").unwrap();
        symlink(&outside, logs.join("evil")).unwrap();
        let include = [format!("{}/*/0.log", logs.display())];
        let found = Globs::new(&include, &[], false).expand();
        assert_eq!(names(&found.files, &logs), ["web/0.log"]);
        assert_eq!(
            skipped(&found, &logs),
            [("evil".into(), SkipReason::Symlink)]
        );
        let found = Globs::new(&include, &[], true).expand();
        assert_eq!(names(&found.files, &logs), ["evil/0.log", "web/0.log"]);
    }

    #[test]
    fn the_watch_root_itself_may_be_a_link() {
        // The operator's own directories (the glob's literal prefix) are trusted.
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::create_dir_all(&real).unwrap();
        fs::write(real.join("a.log"), "x\n").unwrap();
        symlink(&real, dir.path().join("logs")).unwrap();
        let logs = dir.path().join("logs");
        let globs = Globs::new(&[format!("{}/*.log", logs.display())], &[], false);
        assert_eq!(names(&globs.expand().files, &logs), ["a.log"]);
        assert_eq!(globs.root_of(&logs.join("a.log")), Some(logs.as_path()));
    }

    #[test]
    fn literal_names_are_checked_like_wildcards() {
        let (dir, logs, _socket) = hostile_dir();
        let include: Vec<String> = ["app.log", "token.log", "pipe.log", "missing.log"]
            .iter()
            .map(|n| format!("{}/{n}", logs.display()))
            .collect();
        let found = Globs::new(&include, &[], false).expand();
        assert_eq!(names(&found.files, &logs), ["app.log"]);
        assert_eq!(
            skipped(&found, &logs),
            [
                ("pipe.log".into(), SkipReason::Fifo),
                ("token.log".into(), SkipReason::Symlink),
            ]
        );
        drop(dir);
    }
}
