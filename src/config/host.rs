//! A valid configuration checked against the machine it runs on: what is missing there is not
//! an error (a volume may be mounted later, a directory created by the app), but it is said,
//! by `validate` and while the agent runs.
//!
//! - An include glob whose directory does not exist reads nothing until it does.
//! - A file sink whose directory does not exist fails every delivery until it does (the sink
//!   creates its file, never its directory).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::Config;
use crate::sink::{SinkKind, missing_directory};
use crate::source::SourceKind;
use crate::source::discovery::Globs;

/// The directories each source's include globs start from that do not exist (or are not
/// directories), by source name; sources with none are left out.
pub fn missing_include_dirs(config: &Config) -> BTreeMap<String, Vec<PathBuf>> {
    config
        .sources
        .iter()
        .filter_map(|(name, source)| {
            // A network source's journal directory is made when it starts.
            let SourceKind::File(file) = &source.kind else {
                return None;
            };
            let globs = Globs::new(&file.include, &file.exclude, file.follow_symlinks);
            let missing: Vec<PathBuf> = globs
                .watch_roots()
                .into_iter()
                .map(|root| root.dir)
                .filter(|dir| !dir.is_dir())
                .collect();
            (!missing.is_empty()).then(|| (name.clone(), missing))
        })
        .collect()
}

/// What looks wrong for `config` on this machine, one line each.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut lines = Vec::new();
    for (source, dirs) in missing_include_dirs(config) {
        for dir in dirs {
            lines.push(format!(
                "sources.{source}.include: directory {} does not exist; nothing is read from it until it does",
                dir.display()
            ));
        }
    }
    for (name, sink) in &config.sinks {
        if let SinkKind::File(file) = &sink.kind
            && let Some(reason) = missing_directory(&file.path)
        {
            lines.push(format!(
                "sinks.{name}.path: {reason}; every delivery fails until it exists (the sink creates its file, not its directory)"
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn warnings_table() {
        let dir = tempfile::tempdir().unwrap();
        let there = dir.path().join("logs");
        std::fs::create_dir(&there).unwrap();
        std::fs::write(dir.path().join("a-file"), b"").unwrap();
        let missing = dir.path().join("nonexistent");
        // (include globs, file sink path, how many warnings, fragments they hold)
        let cases: Vec<(Vec<PathBuf>, PathBuf, usize, Vec<&str>)> = vec![
            (
                vec![there.join("*.log")],
                there.join("out.ndjson"),
                0,
                vec![],
            ),
            (
                vec![missing.join("dir/*.log")],
                there.join("out.ndjson"),
                1,
                vec![
                    "sources.app.include: directory",
                    "nonexistent/dir does not exist",
                ],
            ),
            // Only the directory named without wildcards can be said missing.
            (vec![there.join("*/x/*.log")], there.join("o"), 0, vec![]),
            (
                vec![there.join("*.log"), missing.join("*.log")],
                missing.join("out.ndjson"),
                2,
                vec!["sources.app.include", "sinks.out.path"],
            ),
            (
                vec![there.join("*.log")],
                dir.path().join("a-file/out.ndjson"),
                1,
                vec!["sinks.out.path: ", "is not a directory"],
            ),
        ];
        for (include, out, count, want) in cases {
            let include: Vec<String> = include.iter().map(|p| format!("{p:?}")).collect();
            let yaml = format!(
                "sources:\n  app:\n    type: file\n    include: [{}]\nsinks:\n  out:\n    type: file\n    inputs: [app]\n    path: {}\n",
                include.join(", "),
                out.display()
            );
            let config = Config::from_yaml(&yaml, |_| None, Path::new("/")).unwrap();
            let got = warnings(&config);
            assert_eq!(got.len(), count, "{got:?}");
            for fragment in &want {
                assert!(
                    got.iter().any(|line| line.contains(fragment)),
                    "{fragment}: {got:?}"
                );
            }
        }
    }
}
