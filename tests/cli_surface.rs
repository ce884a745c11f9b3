//! The command line's own surface: `--version` names the build's commit, shell completions and
//! manual pages come from the CLI itself, and the README's synopsis lists every flag.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::process::{command, outcome};

/// `log-agent <args>`: (exit code, stdout).
fn run(args: &[&str]) -> (Option<i32>, String) {
    let (code, stdout, _) = outcome(&mut command(args));
    (code, stdout)
}

/// The flags (`--to`, `-c`) a command's `--help` lists, but for `--help` and `--version`.
fn flags(command: &str) -> BTreeSet<String> {
    let (code, help) = run(&[command, "--help"]);
    assert_eq!(code, Some(0));
    help.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
        .filter(|word| word.starts_with('-') && word.len() > 1)
        .map(|word| word.split('=').next().unwrap().to_owned())
        .filter(|word| !["-h", "--help", "-V", "--version"].contains(&word.as_str()))
        .collect()
}

#[test]
fn version_names_the_commit_of_the_build() {
    let (code, stdout) = run(&["--version"]);
    assert_eq!(code, Some(0));
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        stdout.starts_with(&format!("log-agent {version} (commit ")),
        "{stdout}"
    );
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match commit {
        // Built from a checkout: its commit (the test and the binary come from one build).
        Some(commit) => assert!(stdout.contains(&format!("(commit {commit})")), "{stdout}"),
        None => assert!(stdout.contains("(commit unknown)"), "{stdout}"),
    }
}

#[test]
fn completions_and_manual_pages_name_every_flag() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, script) = run(&["completions", shell]);
        assert_eq!(code, Some(0), "{shell}");
        // fish names long flags without their dashes (`-l watch-config`).
        for flag in ["watch-config", "since", "rate-limit", "log-format"] {
            assert!(script.contains(flag), "{shell}: {flag}");
        }
    }
    let (code, page) = run(&["man"]);
    assert_eq!(code, Some(0));
    assert!(page.contains(".TH log-agent 1"), "{page}");
    // The flag every command takes is on the agent's own page.
    assert!(page.contains("\\-\\-log\\-format"), "{page}");
    for command in ["run", "validate", "replay"] {
        let (code, page) = run(&["man", command]);
        assert_eq!(code, Some(0), "{command}");
        assert!(
            page.contains(&format!(".TH log-agent-{command} 1")),
            "{page}"
        );
        for flag in flags(command).into_iter().filter(|f| f != "--log-format") {
            // roff escapes each `-`.
            let escaped = flag.replace('-', "\\-");
            assert!(page.contains(&escaped), "man {command}: {flag}");
        }
    }
    assert_eq!(run(&["man", "nope"]).0, Some(2));
}

#[test]
fn the_readme_synopsis_lists_every_flag() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("## Command line")
        .nth(1)
        .expect("a Command line section");
    let synopsis = section
        .split("```")
        .nth(1)
        .expect("a code block with the synopsis");
    for command in ["run", "validate", "replay", "completions", "man"] {
        assert!(
            synopsis
                .lines()
                .any(|l| l.starts_with("log-agent ") && l.contains(&format!(" {command} "))),
            "{command} not in the synopsis"
        );
        for flag in flags(command) {
            assert!(
                synopsis.contains(&flag),
                "log-agent {command} {flag} not in the synopsis"
            );
        }
    }
    assert!(synopsis.contains("--log-format"));
    assert!(synopsis.contains("--version"));
}
