//! The documentation stands alone and its quick start is what it says: every link of the README
//! and of `docs/` leads to a file or heading inside the repository, and the quick start has
//! exactly two commands, one running the agent on the embedded example (no external service),
//! one running every test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The documents: the README and every file under `docs/`.
fn documents() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// GitHub's anchor of a heading: lower case, punctuation but `-` and `_` dropped, spaces to
/// `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            found.push(anchor(line));
        }
    }
    found
}

/// The targets of the Markdown links of `text` (`[x](target)`).
fn links(text: &str) -> Vec<String> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_link_leads_inside_the_repository() {
    let root = root().canonicalize().unwrap();
    for document in documents() {
        let text = fs::read_to_string(&document).unwrap();
        let dir = document.parent().unwrap();
        for link in links(&text) {
            let where_ = format!("{}: ({link})", document.display());
            assert!(
                !link.contains("://"),
                "{where_}: a link outside the repository"
            );
            let (path, fragment) = match link.split_once('#') {
                Some((path, fragment)) => (path, Some(fragment)),
                None => (link.as_str(), None),
            };
            let target = if path.is_empty() {
                document.clone()
            } else {
                dir.join(path)
            };
            let resolved = target
                .canonicalize()
                .unwrap_or_else(|e| panic!("{where_}: {e}"));
            assert!(
                resolved.starts_with(&root),
                "{where_}: outside the repository"
            );
            if let Some(fragment) = fragment {
                let text = fs::read_to_string(&resolved).unwrap();
                assert!(
                    anchors(&text).iter().any(|a| a == fragment),
                    "{where_}: no heading #{fragment}"
                );
            }
        }
    }
}

#[test]
fn the_readme_has_a_table_of_contents_of_its_sections() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let contents = readme
        .split("## Contents")
        .nth(1)
        .expect("a Contents section")
        .split("\n## ")
        .next()
        .unwrap();
    let listed = links(contents);
    for heading in readme
        .lines()
        .filter(|l| l.starts_with("## ") && *l != "## Contents")
    {
        assert!(
            listed.contains(&format!("#{}", anchor(heading))),
            "{heading} not in the contents"
        );
    }
}

#[test]
fn the_quick_start_is_two_commands_and_the_first_needs_no_external_service() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme.split("## Quick start").nth(1).unwrap();
    let block = section
        .split("```sh")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let commands: Vec<&str> = block
        .lines()
        .map(|l| l.split(" # ").next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(commands.len(), 2, "{commands:?}");
    // The build's system packages are installed by the command itself.
    assert_eq!(
        commands[0],
        "bash .ci/deps build && cargo run --release -- run --config examples/quickstart.yaml"
    );
    assert_eq!(commands[1], "bash .ci/test");
    let deps = fs::read_to_string(root().join(".ci/deps")).unwrap();
    for package in [
        "build-essential",
        "pkg-config",
        "libssl-dev",
        "libsasl2-dev",
    ] {
        assert!(deps.contains(package), ".ci/deps build installs {package}");
    }
    // The example ships to stdout only.
    let config = log_agent::Config::from_yaml(
        &fs::read_to_string(root().join("examples/quickstart.yaml")).unwrap(),
        |_| None,
        Path::new("/"),
    )
    .unwrap();
    assert!(
        config
            .sinks
            .values()
            .all(|sink| matches!(sink.kind, log_agent::sink::SinkKind::Stdout(_))),
        "the quick start needs no external service"
    );
}
