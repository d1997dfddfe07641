//! The restart budget: at most `restart_max` restarts within a sliding `restart_interval`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What to do after an unexpected exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartDecision {
    /// Start again at `at`; this is restart number `attempt` in the current window.
    RestartAt {
        /// When to spawn.
        at: Instant,
        /// 1 for the first restart in the window.
        attempt: u32,
    },
    /// `restart_max` restarts already happened within the window.
    GiveUp {
        /// Exits counted in the window, this one included.
        exits_in_window: u32,
    },
    /// `auto_restart` is off.
    StayDown,
}

/// The sliding-window restart counter of one server (WebLogic `RestartMax` in `RestartInterval`).
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    auto_restart: bool,
    restart_max: u32,
    window: Duration,
    delay: Duration,
    restarts: VecDeque<Instant>,
}

impl RestartPolicy {
    /// A policy with an empty window.
    #[must_use]
    pub fn new(auto_restart: bool, restart_max: u32, window: Duration, delay: Duration) -> Self {
        Self {
            auto_restart,
            restart_max,
            window,
            delay,
            restarts: VecDeque::new(),
        }
    }

    /// Decides about an unexpected exit at `now`. A `RestartAt` is counted in the window at once,
    /// stamped with the instant the restart will happen.
    pub fn on_exit(&mut self, now: Instant) -> RestartDecision {
        if !self.auto_restart {
            return RestartDecision::StayDown;
        }
        self.forget_before(now);
        let used = u32::try_from(self.restarts.len()).unwrap_or(u32::MAX);
        if used >= self.restart_max {
            return RestartDecision::GiveUp {
                exits_in_window: used.saturating_add(1),
            };
        }
        // counted at the instant the restart happens, so the window bounds real restarts
        let at = super::later(now, self.delay);
        self.restarts.push_back(at);
        RestartDecision::RestartAt {
            at,
            attempt: used + 1,
        }
    }

    /// Adds restarts that happened before this policy existed (from a previous daemon's lock
    /// file), oldest first, so a daemon restart does not hand out a fresh budget.
    pub fn seed(&mut self, mut restarts: Vec<Instant>) {
        restarts.sort();
        self.restarts.extend(restarts);
    }

    /// The restarts counted in the window ending at `now`, oldest first.
    pub fn in_window(&self, now: Instant) -> impl Iterator<Item = Instant> + '_ {
        self.restarts
            .iter()
            .copied()
            .filter(move |&t| now.saturating_duration_since(t) < self.window)
    }

    /// Forgets every counted restart (an operator `start`).
    pub fn reset(&mut self) {
        self.restarts.clear();
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .restarts
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= self.window)
        {
            self.restarts.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RestartDecision::{GiveUp, RestartAt, StayDown};
    use super::*;

    #[allow(clippy::disallowed_methods)] // tests' fixed origin
    fn t0() -> Instant {
        Instant::now()
    }
    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn gives_up_after_restart_max_restarts_within_the_interval() {
        let t0 = t0();
        let mut p = RestartPolicy::new(true, 2, secs(60), secs(1));
        assert_eq!(
            p.on_exit(t0),
            RestartAt {
                at: t0 + secs(1),
                attempt: 1
            }
        );
        assert_eq!(
            p.on_exit(t0 + secs(9)),
            RestartAt {
                at: t0 + secs(10),
                attempt: 2
            }
        );
        assert_eq!(p.on_exit(t0 + secs(20)), GiveUp { exits_in_window: 3 });
    }

    #[test]
    fn restarts_older_than_the_interval_are_forgotten() {
        let t0 = t0();
        let mut p = RestartPolicy::new(true, 1, secs(60), secs(0));
        assert_eq!(p.on_exit(t0), RestartAt { at: t0, attempt: 1 });
        assert_eq!(p.on_exit(t0 + secs(59)), GiveUp { exits_in_window: 2 });
        assert_eq!(
            p.on_exit(t0 + secs(60)),
            RestartAt {
                at: t0 + secs(60),
                attempt: 1
            }
        );
    }

    #[test]
    fn auto_restart_off_stays_down_and_zero_max_gives_up() {
        let t0 = t0();
        assert_eq!(
            RestartPolicy::new(false, 5, secs(60), secs(0)).on_exit(t0),
            StayDown
        );
        assert_eq!(
            RestartPolicy::new(true, 0, secs(60), secs(0)).on_exit(t0),
            GiveUp { exits_in_window: 1 }
        );
    }

    #[test]
    fn seeded_restarts_count_against_the_budget() {
        let t0 = t0();
        let mut p = RestartPolicy::new(true, 2, secs(60), secs(0));
        p.seed(vec![t0 + secs(5), t0]);
        assert_eq!(
            p.in_window(t0 + secs(10)).collect::<Vec<_>>(),
            vec![t0, t0 + secs(5)]
        );
        assert_eq!(
            p.in_window(t0 + secs(62)).collect::<Vec<_>>(),
            vec![t0 + secs(5)]
        );
        assert_eq!(p.on_exit(t0 + secs(10)), GiveUp { exits_in_window: 3 });
        assert_eq!(
            p.on_exit(t0 + secs(61)),
            RestartAt {
                at: t0 + secs(61),
                attempt: 2
            }
        );
    }

    #[test]
    fn reset_forgets_the_window() {
        let t0 = t0();
        let mut p = RestartPolicy::new(true, 1, secs(60), secs(0));
        let _ = p.on_exit(t0);
        p.reset();
        assert_eq!(
            p.on_exit(t0 + secs(1)),
            RestartAt {
                at: t0 + secs(1),
                attempt: 1
            }
        );
    }
}
