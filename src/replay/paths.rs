//! Which files a replay reads, and in what order: the PATH arguments (files, directories,
//! globs) expanded into regular files, grouped into rotation families, each family read oldest
//! first (`app.log.3.gz`, `app.log.2.zst`, `app.log.1`, `app.log`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::source::rotation::{Generation, family_of};

/// A PATH argument that gives nothing to read.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// Neither a file, a directory nor a glob that matches something.
    #[error("{0}: no such file or directory")]
    Missing(PathBuf),
    /// A glob that matches no file.
    #[error("{0}: the pattern matches no file")]
    NoMatch(String),
    /// A glob that does not parse.
    #[error("{pattern}: {reason}")]
    BadPattern {
        /// The argument.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// A directory that cannot be listed.
    #[error("{path}: {source}")]
    Unreadable {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// How far down directories are walked: deep enough for `/var/log/pods/*/*/`, and a bound on
/// a tree that a hostile writer could make arbitrarily deep.
const MAX_DEPTH: usize = 16;

/// The regular files named by `args`, each once, in replay order. Directories are walked (not
/// following symlinks inside them); explicit arguments that are symlinks are followed. Other
/// entries (FIFOs, sockets, devices) are skipped and returned as warnings.
pub fn expand(args: &[String]) -> Result<(Vec<PathBuf>, Vec<String>), PathError> {
    let mut files = Vec::new();
    let mut warnings = Vec::new();
    for arg in args {
        let path = Path::new(arg);
        match fs::metadata(path) {
            Ok(md) if md.is_dir() => walk(path, 0, &mut files, &mut warnings)?,
            Ok(md) if md.is_file() => files.push(path.to_owned()),
            Ok(_) => warnings.push(format!("{arg}: not a regular file; skipped")),
            Err(_) if has_wildcards(arg) => {
                let matches = glob::glob(arg).map_err(|e| PathError::BadPattern {
                    pattern: arg.clone(),
                    reason: e.to_string(),
                })?;
                let before = files.len();
                for entry in matches.flatten() {
                    match fs::metadata(&entry) {
                        Ok(md) if md.is_file() => files.push(entry),
                        Ok(md) if md.is_dir() => {}
                        _ => warnings
                            .push(format!("{}: not a regular file; skipped", entry.display())),
                    }
                }
                if files.len() == before {
                    return Err(PathError::NoMatch(arg.clone()));
                }
            }
            Err(_) => return Err(PathError::Missing(path.to_owned())),
        }
    }
    Ok((in_replay_order(files), warnings))
}

fn has_wildcards(arg: &str) -> bool {
    arg.contains(['*', '?', '['])
}

fn walk(
    dir: &Path,
    depth: usize,
    files: &mut Vec<PathBuf>,
    warnings: &mut Vec<String>,
) -> Result<(), PathError> {
    if depth > MAX_DEPTH {
        warnings.push(format!(
            "{}: deeper than {MAX_DEPTH} directories; skipped",
            dir.display()
        ));
        return Ok(());
    }
    let entries = fs::read_dir(dir).map_err(|source| PathError::Unreadable {
        path: dir.to_owned(),
        source,
    })?;
    for entry in entries {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => walk(&path, depth + 1, files, warnings)?,
            Ok(kind) if kind.is_file() => files.push(path),
            Ok(kind) if kind.is_symlink() => warnings.push(format!(
                "{}: a symlink inside a directory is not followed; skipped",
                path.display()
            )),
            _ => warnings.push(format!("{}: not a regular file; skipped", path.display())),
        }
    }
    Ok(())
}

/// Sorts files by family (directory and family name), oldest generation first, dropping
/// duplicates.
fn in_replay_order(files: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut families: BTreeMap<(PathBuf, String), Vec<(Generation, PathBuf)>> = BTreeMap::new();
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (family, generation) = family_of(&name);
        let dir = path.parent().map(Path::to_owned).unwrap_or_default();
        let members = families.entry((dir, family.to_owned())).or_default();
        if !members.iter().any(|(_, p)| *p == path) {
            members.push((generation, path));
        }
    }
    families
        .into_values()
        .flat_map(|mut members| {
            members.sort_by(|(a, pa), (b, pb)| a.age_order(b).then_with(|| pa.cmp(pb)));
            members.into_iter().map(|(_, path)| path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_read_oldest_first() {
        let paths = |names: &[&str]| -> Vec<PathBuf> {
            names
                .iter()
                .map(|n| PathBuf::from(format!("/l/{n}")))
                .collect()
        };
        let cases: &[(&[&str], &[&str])] = &[
            (
                &["app.log", "app.log.1", "app.log.2.gz", "app.log.3.gz"],
                &["app.log.3.gz", "app.log.2.gz", "app.log.1", "app.log"],
            ),
            (
                &["app.log.10.gz", "app.log.9.gz", "app.log"],
                &["app.log.10.gz", "app.log.9.gz", "app.log"],
            ),
            (
                &["a.log-20261125", "a.log", "a.log-20261124.gz"],
                &["a.log-20261124.gz", "a.log-20261125", "a.log"],
            ),
            (
                &["web.log.1", "api.log", "web.log", "api.log.1", "api.log"],
                &["api.log.1", "api.log", "web.log.1", "web.log"],
            ),
        ];
        for (given, want) in cases {
            assert_eq!(in_replay_order(paths(given)), paths(want), "{given:?}");
        }
    }

    #[test]
    fn arguments_expand_to_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("sub/deeper")).unwrap();
        for name in ["a.log", "a.log.1", "sub/b.log", "sub/deeper/c.log"] {
            fs::write(root.join(name), "x\n").unwrap();
        }
        std::os::unix::fs::symlink("/etc/passwd", root.join("sub/link.log")).unwrap();
        let text = |p: &Path| p.to_string_lossy().into_owned();

        let (files, warnings) = expand(&[text(root)]).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| text(p.strip_prefix(root).unwrap()))
            .collect();
        assert_eq!(names, ["a.log.1", "a.log", "sub/b.log", "sub/deeper/c.log"]);
        assert!(
            warnings.iter().any(|w| w.contains("link.log")),
            "{warnings:?}"
        );

        let (files, _) = expand(&[format!("{}/*.log*", text(root))]).unwrap();
        assert_eq!(files.len(), 2);
        let (files, _) = expand(&[text(&root.join("a.log")), text(&root.join("a.log"))]).unwrap();
        assert_eq!(files.len(), 1, "the same file twice is read once");

        let missing = expand(&[text(&root.join("nope.log"))]).unwrap_err();
        assert!(matches!(missing, PathError::Missing(_)), "{missing}");
        let no_match = expand(&[format!("{}/*.txt", text(root))]).unwrap_err();
        assert!(matches!(no_match, PathError::NoMatch(_)), "{no_match}");
    }
}
