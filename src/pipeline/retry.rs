//! Retries of failed deliveries: exponential backoff with jitter, forever unless limited.

use std::time::Duration;

use crate::sink::delivery::RetryConfig;

/// The waits between attempts at one batch.
#[derive(Debug)]
pub struct Backoff {
    config: RetryConfig,
    attempts: u32,
}

impl Backoff {
    /// A fresh backoff, before the first attempt.
    pub fn new(config: RetryConfig) -> Self {
        Backoff {
            config,
            attempts: 0,
        }
    }

    /// Counts a failed attempt and returns how long to wait before the next one, or `None` when
    /// the attempts are used up. The wait is drawn between half and all of the exponential step,
    /// so sinks that failed together do not retry in lockstep.
    pub fn next_wait(&mut self) -> Option<Duration> {
        self.attempts += 1;
        if self
            .config
            .max_attempts
            .is_some_and(|max| self.attempts >= max)
        {
            return None;
        }
        let step = self
            .config
            .initial_backoff_ms
            .saturating_mul(1u64 << (self.attempts - 1).min(32))
            .min(self.config.max_backoff_ms);
        let half = step / 2;
        Some(Duration::from_millis(half + fastrand::u64(0..=step - half)))
    }

    /// Failed attempts so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_exponentially_within_jitter_and_cap() {
        let mut backoff = Backoff::new(RetryConfig {
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
            max_attempts: None,
        });
        // (attempt, lowest, highest) in ms
        let bounds = [
            (1, 50, 100),
            (2, 100, 200),
            (3, 200, 400),
            (4, 400, 800),
            (5, 500, 1000),
            (40, 500, 1000),
        ];
        let mut attempt = 0;
        for (n, low, high) in bounds {
            let mut wait = Duration::ZERO;
            while attempt < n {
                wait = backoff.next_wait().unwrap();
                attempt += 1;
            }
            let ms = wait.as_millis() as u64;
            assert!((low..=high).contains(&ms), "attempt {n}: {ms}ms");
        }
    }

    #[test]
    fn attempts_run_out_when_limited() {
        let mut backoff = Backoff::new(RetryConfig {
            max_attempts: Some(3),
            ..RetryConfig::default()
        });
        assert!(backoff.next_wait().is_some());
        assert!(backoff.next_wait().is_some());
        assert!(backoff.next_wait().is_none());
        assert_eq!(backoff.attempts(), 3);
    }
}
