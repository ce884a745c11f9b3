//! Opening files of the watched directory, which another container controls.
//!
//! Between the moment discovery saw a regular file and the moment it is opened, the file can be
//! replaced: by a link to the agent's own secrets, by a FIFO that would block the open or the
//! read forever, by a device node. So a file is opened with `O_NOFOLLOW` (unless
//! `follow_symlinks`), `O_NONBLOCK` and `O_NOCTTY`, and then the open descriptor, not the path,
//! is checked to be a regular file before a byte is read. `O_NOFOLLOW` guards only the last
//! name of the path; for a file in a subdirectory of the watch root, the path the kernel
//! actually resolved (`/proc/self/fd`) is compared with the one asked for, so a directory
//! swapped for a link on the way is caught too.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::discovery::SkipReason;

/// Why a file was not opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The open (or the check after it) failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// What is at the path now is not a regular file (or is a link, not followed).
    #[error("not a regular file but a {}", .0.as_str())]
    NotRegular(SkipReason),
    /// A directory on the way was a link leading elsewhere.
    #[error("resolves to {} through a symbolic link; not followed", .0.display())]
    Escaped(PathBuf),
}

impl OpenError {
    /// Why the file is skipped, when it is a file the agent never reads rather than an error.
    pub fn skip_reason(&self) -> Option<SkipReason> {
        match self {
            OpenError::NotRegular(reason) => Some(*reason),
            OpenError::Escaped(_) => Some(SkipReason::Symlink),
            OpenError::Io(_) => None,
        }
    }
}

/// Opens the regular file at `path` for reading, never blocking and, unless `follow_symlinks`,
/// never through a symbolic link below `root` (the glob's watch root, which is trusted).
pub fn open_regular(
    path: &Path,
    root: Option<&Path>,
    follow_symlinks: bool,
) -> Result<File, OpenError> {
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    if !follow_symlinks {
        flags |= libc::O_NOFOLLOW;
    }
    let file = match OpenOptions::new().read(true).custom_flags(flags).open(path) {
        Ok(file) => file,
        // O_NOFOLLOW on a link fails with ELOOP.
        Err(e) if !follow_symlinks && e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(OpenError::NotRegular(SkipReason::Symlink));
        }
        Err(e) => return Err(e.into()),
    };
    let md = file.metadata()?;
    if let Some(reason) = SkipReason::of(md.file_type()) {
        return Err(OpenError::NotRegular(reason));
    }
    if !follow_symlinks
        && let Some(root) = root
        && path.parent().is_some_and(|parent| parent != root)
    {
        check_resolved(&file, path, root)?;
    }
    Ok(file)
}

/// The metadata of what is at `path`: of a link itself unless `follow_symlinks`.
pub fn stat(path: &Path, follow_symlinks: bool) -> io::Result<fs::Metadata> {
    if follow_symlinks {
        fs::metadata(path)
    } else {
        fs::symlink_metadata(path)
    }
}

/// Checks that `file`, opened at `path` below `root`, is where `path` says once the root's own
/// links are resolved. Where `/proc` is not mounted the check cannot be made and is skipped.
fn check_resolved(file: &File, path: &Path, root: &Path) -> Result<(), OpenError> {
    let Ok(resolved) = fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) else {
        return Ok(());
    };
    let Ok(below) = path.strip_prefix(root) else {
        return Ok(());
    };
    let expected = fs::canonicalize(root)?.join(below);
    if resolved == expected {
        Ok(())
    } else {
        Err(OpenError::Escaped(resolved))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::time::{Duration, Instant};

    fn reason(result: Result<File, OpenError>) -> Option<SkipReason> {
        result.err().and_then(|e| e.skip_reason())
    }

    #[test]
    fn links_fifos_and_directories_are_refused_from_the_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("secret"), "token\n").unwrap();
        fs::write(d.join("app.log"), "x\n").unwrap();
        symlink(d.join("secret"), d.join("link.log")).unwrap();
        fs::create_dir(d.join("dir.log")).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(d.join("pipe.log"))
            .status()
            .unwrap();
        assert!(status.success());

        assert!(open_regular(&d.join("app.log"), Some(d), false).is_ok());
        assert_eq!(
            reason(open_regular(&d.join("link.log"), Some(d), false)),
            Some(SkipReason::Symlink)
        );
        assert!(open_regular(&d.join("link.log"), Some(d), true).is_ok());
        assert_eq!(
            reason(open_regular(&d.join("dir.log"), Some(d), false)),
            Some(SkipReason::Directory)
        );
        // A FIFO without a writer blocks a plain open forever; this one returns at once.
        let start = Instant::now();
        assert_eq!(
            reason(open_regular(&d.join("pipe.log"), Some(d), false)),
            Some(SkipReason::Fifo)
        );
        assert!(start.elapsed() < Duration::from_secs(5));
        // Followed, a link to a FIFO is refused all the same.
        symlink(d.join("pipe.log"), d.join("to-pipe.log")).unwrap();
        assert_eq!(
            reason(open_regular(&d.join("to-pipe.log"), Some(d), true)),
            Some(SkipReason::Fifo)
        );
        let missing = open_regular(&d.join("missing.log"), Some(d), false);
        assert!(
            matches!(missing, Err(OpenError::Io(ref e)) if e.kind() == io::ErrorKind::NotFound)
        );
    }

    #[test]
    fn a_directory_swapped_for_a_link_on_the_way_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pods");
        let outside = dir.path().join("secrets");
        fs::create_dir_all(root.join("web")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(root.join("web/0.log"), "x\n").unwrap();
        fs::write(outside.join("0.log"), "secret\n").unwrap();
        assert!(open_regular(&root.join("web/0.log"), Some(&root), false).is_ok());
        // Swapped after discovery saw a directory there.
        fs::rename(root.join("web"), dir.path().join("old")).unwrap();
        symlink(&outside, root.join("web")).unwrap();
        let result = open_regular(&root.join("web/0.log"), Some(&root), false);
        assert!(
            matches!(result, Err(OpenError::Escaped(ref to)) if to.ends_with("secrets/0.log")),
            "{result:?}"
        );
        assert!(open_regular(&root.join("web/0.log"), Some(&root), true).is_ok());
    }

    #[test]
    fn a_linked_watch_root_is_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::create_dir_all(real.join("sub")).unwrap();
        fs::write(real.join("sub/a.log"), "x\n").unwrap();
        let root = dir.path().join("logs");
        symlink(&real, &root).unwrap();
        assert!(open_regular(&root.join("sub/a.log"), Some(&root), false).is_ok());
    }
}
