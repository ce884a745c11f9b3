//! Build script: the commit the build comes from, for `log-agent --version` and the
//! `log_agent_build_info` metric. `$LOG_AGENT_COMMIT` gives it where there is no git checkout
//! (the image build: `docker build --build-arg LOG_AGENT_COMMIT=$(git rev-parse --short=12 HEAD)`);
//! without either it is `unknown`.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=LOG_AGENT_COMMIT");
    let commit = std::env::var("LOG_AGENT_COMMIT")
        .ok()
        .filter(|commit| !commit.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=LOG_AGENT_COMMIT={}", commit.trim());
}

/// What `git` prints for `args`, if it runs and succeeds.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

/// The short commit of HEAD; the build script runs again when HEAD moves.
fn git_commit() -> Option<String> {
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name])
            && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    Some(commit)
}
