//! The tokio halves of the pair. [`run_standby`] is the whole life of a standby process up to
//! its takeover; [`start_active`] runs the active's side (standby port, launching and replacing
//! the standby, the pair's shutdown) beside the rest of the daemon.

mod active;
#[cfg(test)]
mod race_tests;
#[cfg(test)]
mod stall_tests;
mod standby;

use std::time::Instant;

pub use active::{ActiveConfig, ActiveHandle, PairStatus, bind_standby_port, start_active};
pub use standby::{StandbyConfig, StandbyOutcome, Takeover, run_standby};

/// The data directory's lock and the pair's wall clock: defined once, in
/// [`supervisor_core::os`].
pub use supervisor_core::os::{lock_blocking, lock_holder, try_lock, unix_ms_now as unix_ms};

/// Sleeps until the core's next deadline; forever when it has none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// The drivers' one monotonic clock read (tokio's, so paused-time tests control it).
#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
