//! Background work that repeats on its own (scans of the globs, checkpoint writes) is spaced by
//! its own cost, so that it cannot crowd out the work it serves (reading, shipping) when it
//! grows slow: a scan of 100,000 files or a rewrite of their checkpoints takes a good part of a
//! second in a debug build.
//!
//! Invariant: work spaced by [`gap`] takes at most one part in [`SHARE`] of the time.

use std::time::Duration;

/// Work spaced by [`gap`] takes at most one part in this many of the time (a fifth).
pub const SHARE: u32 = 5;

/// The least time from the start of one run of some work to the start of the next: `every`
/// (the interval it asks for, zero when it is wanted at once), but at least [`SHARE`] times
/// what its last run cost.
pub fn gap(every: Duration, cost: Duration) -> Duration {
    every.max(cost * SHARE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_keeps_its_interval_unless_it_is_slow() {
        let ms = Duration::from_millis;
        // (interval, the last run's cost, gap from its start to the next)
        let cases = [
            (ms(100), ms(0), ms(100)),
            (ms(100), ms(20), ms(100)),
            (ms(100), ms(30), ms(150)),
            (ms(0), ms(1), ms(5)),
            (ms(0), ms(0), ms(0)),
            (ms(1_000), ms(2_000), ms(10_000)),
        ];
        for (every, cost, want) in cases {
            assert_eq!(gap(every, cost), want, "{every:?} {cost:?}");
        }
    }
}
