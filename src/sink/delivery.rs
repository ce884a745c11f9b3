//! How a sink's events are delivered, as every sink's config says it (`batch:`, `buffer:`,
//! `retry:`): the settings and their checks. The pipeline applies them; they live beside the
//! sinks so that a sink's config needs nothing from the layers above it.
//!
//! Invariant: a value that passed `check` is one the pipeline can run with (no empty batch, a
//! buffer the semaphores can count, a backoff that grows).

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::config::errors::ConfigError;

/// `batch:` settings of a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// A batch is sent once it has this many events.
    pub max_events: usize,
    /// ...or this many bytes of messages.
    pub max_bytes: usize,
    /// ...or once its first event has waited this long.
    pub timeout_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: 1000,
            max_bytes: 1024 * 1024,
            timeout_ms: 200,
        }
    }
}

impl BatchConfig {
    /// Checks the values; `key` is the sink's.
    pub fn check(&self, key: &str) -> Result<(), ConfigError> {
        for (field, value) in [
            ("max_events", self.max_events),
            ("max_bytes", self.max_bytes),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(
                    format!("{key}.batch.{field}"),
                    "must be at least 1",
                ));
            }
        }
        Ok(())
    }
}

/// What to do with new events when a sink's buffer is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Stop reading until there is room: nothing is lost.
    #[default]
    Block,
    /// Drop the new events for this sink, counted in `dropped_buffer_full`.
    DropNewest,
}

/// `buffer:` settings of a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferConfig {
    /// Events held at most between the sources and the sink's destination.
    pub max_events: usize,
    /// Bytes of read data held at most for those events.
    pub max_bytes: usize,
    /// What happens when either is reached.
    pub when_full: WhenFull,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            max_events: 10_000,
            max_bytes: 8 * 1024 * 1024,
            when_full: WhenFull::Block,
        }
    }
}

/// Byte permits are KiB.
pub(crate) const BYTES_PER_PERMIT: usize = 1024;

impl BufferConfig {
    /// Checks the values; `key` is the sink's.
    pub fn check(&self, key: &str) -> Result<(), ConfigError> {
        let limits = [
            ("max_events", self.max_events, 1, Semaphore::MAX_PERMITS),
            ("max_bytes", self.max_bytes, BYTES_PER_PERMIT, 1 << 40),
        ];
        for (field, value, min, max) in limits {
            if value < min || value > max {
                return Err(ConfigError::invalid(
                    format!("{key}.buffer.{field}"),
                    format!("must be between {min} and {max}"),
                ));
            }
        }
        Ok(())
    }

    /// The byte bound in permits (KiB).
    pub(crate) fn max_kib(&self) -> usize {
        self.max_bytes / BYTES_PER_PERMIT
    }
}

/// `retry:` settings of a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Wait before the first retry.
    pub initial_backoff_ms: u64,
    /// The wait doubles after each failure up to this.
    pub max_backoff_ms: u64,
    /// Attempts before a batch is given up and dead-lettered; absent means retry forever.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff_ms: 100,
            max_backoff_ms: 30_000,
            max_attempts: None,
        }
    }
}

impl RetryConfig {
    /// Checks the values; `key` is the sink's.
    pub fn check(&self, key: &str) -> Result<(), ConfigError> {
        if self.initial_backoff_ms == 0 {
            return Err(ConfigError::invalid(
                format!("{key}.retry.initial_backoff_ms"),
                "must be at least 1",
            ));
        }
        if self.max_backoff_ms < self.initial_backoff_ms {
            return Err(ConfigError::invalid(
                format!("{key}.retry.max_backoff_ms"),
                "must be at least initial_backoff_ms",
            ));
        }
        if self.max_attempts == Some(0) {
            return Err(ConfigError::invalid(
                format!("{key}.retry.max_attempts"),
                "must be at least 1",
            ));
        }
        Ok(())
    }
}
