//! The pure halves of the pair: [`Watcher`] (what a standby decides) and [`Keeper`] (what the
//! active decides about its standby). No I/O, no clock: time comes in as `now`, decisions come out
//! of `poll_action()`, and `next_deadline()` says when to call `on_timeout` next. Calling
//! `on_timeout` early or twice is harmless.
//!
//! Neither core decides who is active: that is the kernel's `flock` on `nm.lock` (the driver feeds
//! its acquisition in as [`Watcher::on_lock_acquired`]). The cores decide when to fence, when to
//! relaunch a standby and how a shutdown of the pair is ordered.

mod keeper;
mod watcher;

/// The cores' tests' scripted clock: a start instant and offsets from it.
#[cfg(test)]
mod testing {
    use std::time::{Duration, Instant};

    #[allow(clippy::disallowed_methods)] // the one clock read of the core tests
    pub(super) fn t0() -> Instant {
        Instant::now()
    }

    pub(super) fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
}

use std::time::{Duration, Instant};

pub use keeper::{Keeper, KeeperAction, KeeperEvent, NotAttached, StandbyState, StandbyView};
pub use watcher::{TakeoverReason, Watcher, WatcherAction, WatcherEvent};

/// `at + d`, or a far-future instant when that is past what `Instant` holds.
///
/// The config reader bounds every duration (docs/config.md), so this is defence in depth: a
/// timing built some other way may make a deadline never come, but never panics the core.
pub(crate) fn later(at: Instant, d: Duration) -> Instant {
    /// About 30 years: later than any deadline that is meant to come.
    const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
    at.checked_add(d)
        .or_else(|| at.checked_add(FAR))
        .unwrap_or(at)
}

/// A process id.
pub type Pid = i32;

/// Heartbeat timing of the standby link (`standby_heartbeat`, `standby_timeout` in `nm.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How often each side sends a heartbeat.
    pub heartbeat: Duration,
    /// How long a side may stay silent before the other side counts it hung and fences it.
    pub timeout: Duration,
}

impl Default for Timing {
    /// 500 ms heartbeats, 3 s timeout: six heartbeats may be lost before a fence.
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(500),
            timeout: Duration::from_secs(3),
        }
    }
}

/// The active node manager as the standby learned it from the link's authenticated welcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveInfo {
    /// Its PID.
    pub pid: Pid,
    /// Its start time (clock ticks after boot): with the PID, its identity.
    pub start_time: u64,
    /// Takeovers since the pair started.
    pub takeovers: u64,
    /// When the pair started (unix milliseconds), kept across takeovers.
    pub pair_started_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::testing::{ms, t0};
    use super::*;

    #[test]
    fn a_deadline_past_what_an_instant_holds_is_far_away_not_a_panic() {
        let t0 = t0();
        assert_eq!(later(t0, ms(5)), t0 + ms(5));
        assert!(later(t0, Duration::MAX) > t0 + Duration::from_secs(10 * 365 * 24 * 3600));
    }
}
