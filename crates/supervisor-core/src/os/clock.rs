//! Wall-clock time, for people: timestamps in lock files, the API and the node manager pair.
//! Decisions use monotonic instants, read by each driver's own `now()`.

use std::time::SystemTime;

/// Wall-clock time, for people (timestamps in lock files and the API).
#[allow(clippy::disallowed_methods)] // the one wall-clock read of the drivers
#[must_use]
pub fn wall_now() -> SystemTime {
    SystemTime::now()
}

/// Milliseconds since the Unix epoch (0 before it), as lock files and the node manager pair
/// record wall-clock times.
#[must_use]
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// [`unix_ms`] of [`wall_now`].
#[must_use]
pub fn unix_ms_now() -> u64 {
    unix_ms(wall_now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_ms_counts_from_the_epoch_and_is_zero_before_it() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1234);
        assert_eq!(unix_ms(t), 1234);
        assert_eq!(
            unix_ms(SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(1)),
            0
        );
    }
}
