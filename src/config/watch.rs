//! The config file of a running agent, read again on demand (SIGHUP) or when its content
//! changes (`--watch-config`).
//!
//! Changes are found by reading the file every so often and comparing its content with what
//! was last loaded: a Kubernetes ConfigMap volume swaps a symbolic link to a new directory,
//! which file events on the path do not report, while a read through the path sees it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Config, ConfigError};

/// A config file and the content last loaded from it.
#[derive(Debug)]
pub struct ConfigFile {
    path: PathBuf,
    /// Hash of the text last loaded (or found unreadable): the content a change is told from.
    loaded: Option<u64>,
}

fn hash(text: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(text.as_bytes())
}

impl ConfigFile {
    /// The file at `path`, as if its current content was loaded.
    pub fn new(path: &Path) -> Self {
        let loaded = std::fs::read_to_string(path).ok().map(|text| hash(&text));
        ConfigFile {
            path: path.to_owned(),
            loaded,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads the file now; its content is the one later changes are told from.
    pub fn load(&mut self) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(&self.path).map_err(|source| ConfigError::Read {
            path: self.path.clone(),
            source,
        })?;
        self.loaded = Some(hash(&text));
        Config::from_file_text(&text)
    }

    /// Resolves once the file's content differs from what was last loaded, reading it every
    /// `every`. A file that cannot be read is not a change: it is read again at the next turn.
    pub async fn changed(&mut self, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            let path = self.path.clone();
            let read = tokio::task::spawn_blocking(move || std::fs::read_to_string(path)).await;
            if let Ok(Ok(text)) = read
                && Some(hash(&text)) != self.loaded
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_of_content_is_told_and_loading_makes_it_the_reference() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.yaml");
        let text = "sources: {}\nsinks: {}\n";
        std::fs::write(&path, text).unwrap();
        let mut file = ConfigFile::new(&path);
        let every = Duration::from_millis(10);
        let quiet = tokio::time::timeout(Duration::from_millis(100), file.changed(every)).await;
        assert!(quiet.is_err(), "unchanged content is no change");
        // Written the same again (an editor saving without an edit): no change either.
        std::fs::write(&path, text).unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(100), file.changed(every)).await;
        assert!(quiet.is_err(), "the same content is no change");
        std::fs::write(&path, "sources: {}\nsinks: { x: 1 }\n").unwrap();
        tokio::time::timeout(Duration::from_secs(5), file.changed(every))
            .await
            .expect("a change of content");
        assert!(
            file.load().is_err(),
            "not a valid config, but loaded all the same"
        );
        let quiet = tokio::time::timeout(Duration::from_millis(100), file.changed(every)).await;
        assert!(quiet.is_err(), "what was loaded is the reference");
        // A file that disappears (a ConfigMap being swapped) is not a change.
        std::fs::remove_file(&path).unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(100), file.changed(every)).await;
        assert!(quiet.is_err());
    }
}
