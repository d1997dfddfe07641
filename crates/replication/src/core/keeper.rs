//! The active's decisions about its standby: launch one, accept exactly one on the link, replace
//! one that dies, hangs or never attaches (with a backoff when replacements keep dying young), and
//! order the pair's shutdown: the standby goes first, the active only after it is gone.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Pid, Timing, later};

/// A standby that lived at least this long before dying is replaced at once; one that died
/// younger counts toward the relaunch backoff.
const STABLE: Duration = Duration::from_secs(10);
/// The longest wait between relaunches of a standby that keeps dying young.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the active's replication driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeeperAction {
    /// Launch a standby process; answer with `on_spawned` or `on_spawn_failed`.
    SpawnStandby,
    /// Send a heartbeat to the attached standby.
    SendHeartbeat,
    /// Tell the attached standby to terminate (`nm-cli shutdown`).
    SendShutdown,
    /// SIGKILL exactly this standby process (our child, or pinned by pidfd); its exit comes back
    /// as `on_standby_exited`.
    Kill {
        /// The standby's PID.
        pid: Pid,
    },
    /// The standby is gone and none will be launched: the active may exit now.
    ShutdownComplete,
}

/// Things worth a log line (and a place in `nm-cli status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeeperEvent {
    /// A standby process was launched.
    Launched {
        /// Its PID.
        pid: Pid,
    },
    /// A standby authenticated on the link and now watches us.
    Attached {
        /// Its PID.
        pid: Pid,
    },
    /// A standby process exited.
    Exited {
        /// Its PID.
        pid: Pid,
        /// How, as the driver saw it.
        how: String,
        /// Whether the pair was stopping (an expected exit).
        expected: bool,
    },
    /// The standby stopped answering for the timeout, lost its link or never attached: killed.
    Replacing {
        /// Its PID.
        pid: Pid,
        /// Why.
        reason: String,
    },
    /// A standby could not be launched.
    LaunchFailed {
        /// Why.
        reason: String,
    },
    /// The next launch waits this long (standbys keep dying young).
    Backoff {
        /// The wait.
        delay: Duration,
    },
}

/// Why a standby was not attached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotAttached {
    /// Another standby already watches this active. Nothing changed.
    #[error("standby {pid} already watches this node manager")]
    AnotherAttached {
        /// The attached standby's PID.
        pid: Pid,
    },
    /// The pair is shutting down. Nothing changed.
    #[error("the node manager is shutting down")]
    ShuttingDown,
}

/// Where the standby is, for `nm-cli status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandbyState {
    /// Launched, not yet attached on the link.
    Launching,
    /// Attached and heartbeating.
    Attached,
    /// Being killed and replaced.
    Replacing,
    /// None running; the next launch is due at the deadline.
    Down,
    /// Being told to terminate (shutdown of the pair).
    Stopping,
    /// Gone for good: the pair stopped.
    Stopped,
}

impl StandbyState {
    /// The state's name in the API (`attached`, `launching`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Launching => "launching",
            Self::Attached => "attached",
            Self::Replacing => "replacing",
            Self::Down => "down",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
        }
    }
}

/// The standby as the active sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandbyView {
    /// Where it is.
    pub state: StandbyState,
    /// Its PID, when one exists.
    pub pid: Option<Pid>,
    /// When it entered `state` (for `Attached`: when it was launched or attached).
    pub since: Instant,
    /// Standbys launched by this active so far.
    pub launches: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standby {
    /// None running; launch at `at` (None: never, the pair is stopping).
    Down {
        at: Option<Instant>,
    },
    /// Launch requested, PID not known yet.
    Spawning,
    Launching {
        pid: Pid,
        deadline: Instant,
    },
    Attached {
        pid: Pid,
        last_heard: Instant,
    },
    /// Killed (or told to terminate); waiting for its exit.
    Leaving {
        pid: Pid,
    },
}

/// The active's pure core for its standby. Call [`Keeper::on_start`] first.
#[derive(Debug)]
pub struct Keeper {
    timing: Timing,
    standby: Standby,
    since: Instant,
    /// When the current standby was launched (or attached, for one started by hand): how young
    /// it died decides the relaunch backoff, however it ended (died, hung, replaced).
    born: Instant,
    launches: u64,
    quick_deaths: u32,
    stopping: Option<Instant>,
    complete: bool,
    next_heartbeat: Option<Instant>,
    actions: VecDeque<KeeperAction>,
    events: VecDeque<KeeperEvent>,
}

impl Keeper {
    /// An active with no standby yet.
    pub fn new(now: Instant, timing: Timing) -> Self {
        Self {
            timing,
            standby: Standby::Down { at: None },
            since: now,
            born: now,
            launches: 0,
            quick_deaths: 0,
            stopping: None,
            complete: false,
            next_heartbeat: None,
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The active is up (its standby port bound): launch the first standby.
    pub fn on_start(&mut self, now: Instant) {
        if matches!(self.standby, Standby::Down { .. }) && self.stopping.is_none() {
            self.launch(now);
        }
    }

    /// The standby process was launched.
    pub fn on_spawned(&mut self, now: Instant, pid: Pid) {
        if self.standby != Standby::Spawning {
            // not asked for: make sure it does not linger
            self.actions.push_back(KeeperAction::Kill { pid });
            return;
        }
        self.events.push_back(KeeperEvent::Launched { pid });
        self.born = now;
        if self.stopping.is_some() {
            self.leave(now, pid, Some(KeeperAction::Kill { pid }));
            return;
        }
        self.set(
            now,
            Standby::Launching {
                pid,
                // a fresh process needs time to start, read its config and connect
                deadline: later(now, self.timing.timeout.saturating_mul(2)),
            },
        );
    }

    /// The standby process could not be launched: try again after the backoff.
    pub fn on_spawn_failed(&mut self, now: Instant, reason: String) {
        if self.standby != Standby::Spawning {
            return;
        }
        self.events.push_back(KeeperEvent::LaunchFailed { reason });
        if self.stopping.is_some() {
            self.finish(now);
        } else {
            self.died_young(now);
        }
    }

    /// A standby (ours or one started by hand) authenticated on the link. Exactly one may watch
    /// the active: a second one is refused and changes nothing.
    pub fn on_attach(&mut self, now: Instant, pid: Pid) -> Result<(), NotAttached> {
        if self.stopping.is_some() {
            return Err(NotAttached::ShuttingDown);
        }
        match self.standby {
            Standby::Attached { pid: other, .. } | Standby::Leaving { pid: other } => {
                return Err(NotAttached::AnotherAttached { pid: other });
            }
            Standby::Down { .. } | Standby::Spawning | Standby::Launching { .. } => {}
        }
        self.events.push_back(KeeperEvent::Attached { pid });
        // our own launch keeps its launch time (the standby's uptime); a stranger starts now
        if !matches!(self.standby, Standby::Launching { pid: p, .. } if p == pid) {
            self.since = now;
            self.born = now;
        }
        self.standby = Standby::Attached {
            pid,
            last_heard: now,
        };
        self.next_heartbeat = Some(later(now, self.timing.heartbeat));
        Ok(())
    }

    /// An authenticated message came from standby `pid`.
    pub fn on_heard(&mut self, now: Instant, pid: Pid) {
        if let Standby::Attached { pid: p, last_heard } = &mut self.standby {
            if *p == pid {
                *last_heard = now;
            }
        }
    }

    /// Standby `pid`'s link broke. Unless the pair is stopping, it is killed and replaced: a
    /// standby without a link cannot watch us.
    pub fn on_link_lost(&mut self, now: Instant, pid: Pid, reason: String) {
        let Standby::Attached { pid: p, .. } = self.standby else {
            return;
        };
        if p != pid {
            return;
        }
        if self.stopping.is_some() {
            // the standby closes the link on its way out: wait for its exit
            self.leave(now, pid, None);
        } else {
            self.events
                .push_back(KeeperEvent::Replacing { pid, reason });
            self.leave(now, pid, Some(KeeperAction::Kill { pid }));
        }
    }

    /// A standby process exited (ours, reaped; or a pinned one whose pidfd fired).
    pub fn on_standby_exited(&mut self, now: Instant, pid: Pid, how: String) {
        let current = match self.standby {
            Standby::Launching { pid: p, .. }
            | Standby::Attached { pid: p, .. }
            | Standby::Leaving { pid: p } => p == pid,
            Standby::Down { .. } | Standby::Spawning => false,
        };
        self.events.push_back(KeeperEvent::Exited {
            pid,
            how,
            expected: self.stopping.is_some(),
        });
        if !current {
            return; // a refused extra standby, or one already replaced
        }
        self.next_heartbeat = None;
        if self.stopping.is_some() {
            self.finish(now);
            return;
        }
        if now.saturating_duration_since(self.born) < STABLE {
            self.died_young(now);
        } else {
            self.quick_deaths = 0;
            self.launch(now);
        }
    }

    /// `nm-cli shutdown` or SIGTERM: tell the standby to terminate first. `ShutdownComplete`
    /// comes once it has exited (killed after the timeout if it does not leave by itself).
    pub fn on_shutdown(&mut self, now: Instant) {
        if self.stopping.is_some() {
            return;
        }
        self.stopping = Some(later(now, self.timing.timeout));
        self.next_heartbeat = None;
        match self.standby {
            Standby::Attached { pid, .. } => self.leave(now, pid, Some(KeeperAction::SendShutdown)),
            // never attached: it must not outlive us and take over
            Standby::Launching { pid, .. } => {
                self.leave(now, pid, Some(KeeperAction::Kill { pid }))
            }
            Standby::Leaving { .. } | Standby::Spawning => {}
            Standby::Down { .. } => self.finish(now),
        }
    }

    /// Sends heartbeats, replaces a silent or never-attached standby, relaunches when due, and
    /// kills a standby that does not leave within the timeout of a shutdown.
    pub fn on_timeout(&mut self, now: Instant) {
        if let Some(deadline) = self.stopping {
            if now >= deadline && !self.complete {
                if let Standby::Leaving { pid } = self.standby {
                    self.actions.push_back(KeeperAction::Kill { pid });
                }
                // one kill is enough: its exit completes the shutdown
                self.stopping = Some(later(now, Duration::from_secs(3600)));
            }
            return;
        }
        // our own timer more than two heartbeats late: this process did not run, and the
        // standby's silence is not its fault (the driver calls this at `next_deadline()`, with no
        // input in between). A gap since the last input is no measure: an attach does not tick.
        let stalled = self.next_deadline().is_some_and(|due| {
            now.saturating_duration_since(due) > self.timing.heartbeat.saturating_mul(2)
        });
        if stalled {
            if let Standby::Attached { last_heard, .. } = &mut self.standby {
                // we did not run (stopped, frozen): the standby gets a whole timeout from now
                *last_heard = now;
            }
        }
        match self.standby {
            Standby::Attached { pid, last_heard } => {
                if now >= later(last_heard, self.timing.timeout) {
                    self.events.push_back(KeeperEvent::Replacing {
                        pid,
                        reason: format!("silent for {:?}", self.timing.timeout),
                    });
                    self.leave(now, pid, Some(KeeperAction::Kill { pid }));
                } else if self.next_heartbeat.is_some_and(|t| now >= t) {
                    self.actions.push_back(KeeperAction::SendHeartbeat);
                    self.next_heartbeat = Some(later(now, self.timing.heartbeat));
                }
            }
            Standby::Launching { pid, deadline } if now >= deadline => {
                self.events.push_back(KeeperEvent::Replacing {
                    pid,
                    reason: "it never attached".into(),
                });
                self.leave(now, pid, Some(KeeperAction::Kill { pid }));
            }
            Standby::Down { at: Some(at) } if now >= at => self.launch(now),
            _ => {}
        }
    }

    /// The next action, if any.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<KeeperAction> {
        self.actions.pop_front()
    }

    /// The next event worth a log line, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<KeeperEvent> {
        self.events.pop_front()
    }

    /// When `on_timeout` must be called next.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.complete {
            return None;
        }
        if let Some(d) = self.stopping {
            return Some(d);
        }
        match self.standby {
            Standby::Attached { last_heard, .. } => {
                let silence = later(last_heard, self.timing.timeout);
                Some(self.next_heartbeat.map_or(silence, |h| h.min(silence)))
            }
            Standby::Launching { deadline, .. } => Some(deadline),
            Standby::Down { at } => at,
            Standby::Spawning | Standby::Leaving { .. } => None,
        }
    }

    /// The standby as `nm-cli status` shows it.
    pub fn view(&self) -> StandbyView {
        let (state, pid) = match self.standby {
            _ if self.complete => (StandbyState::Stopped, None),
            Standby::Leaving { pid } if self.stopping.is_some() => {
                (StandbyState::Stopping, Some(pid))
            }
            Standby::Leaving { pid } => (StandbyState::Replacing, Some(pid)),
            Standby::Down { .. } => (StandbyState::Down, None),
            Standby::Spawning => (StandbyState::Launching, None),
            Standby::Launching { pid, .. } => (StandbyState::Launching, Some(pid)),
            Standby::Attached { pid, .. } => (StandbyState::Attached, Some(pid)),
        };
        StandbyView {
            state,
            pid,
            since: self.since,
            launches: self.launches,
        }
    }

    /// Whether the shutdown is complete (the standby is gone).
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    fn set(&mut self, now: Instant, standby: Standby) {
        self.standby = standby;
        self.since = now;
    }

    fn launch(&mut self, now: Instant) {
        self.launches += 1;
        self.set(now, Standby::Spawning);
        self.actions.push_back(KeeperAction::SpawnStandby);
    }

    fn leave(&mut self, now: Instant, pid: Pid, action: Option<KeeperAction>) {
        self.next_heartbeat = None;
        self.set(now, Standby::Leaving { pid });
        self.actions.extend(action);
    }

    fn died_young(&mut self, now: Instant) {
        self.quick_deaths = self.quick_deaths.saturating_add(1);
        // the first replacement is immediate; then 1 s, 2 s, 4 s ... up to MAX_BACKOFF
        let delay = match self.quick_deaths {
            0 | 1 => Duration::ZERO,
            n => Duration::from_secs(1u64 << (n - 2).min(5)).min(MAX_BACKOFF),
        };
        if delay.is_zero() {
            self.launch(now);
        } else {
            self.events.push_back(KeeperEvent::Backoff { delay });
            self.set(
                now,
                Standby::Down {
                    at: Some(later(now, delay)),
                },
            );
        }
    }

    fn finish(&mut self, now: Instant) {
        self.complete = true;
        self.set(now, Standby::Down { at: None });
        self.actions.push_back(KeeperAction::ShutdownComplete);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ms, t0};
    use super::*;
    fn keeper(t0: Instant) -> Keeper {
        let mut k = Keeper::new(
            t0,
            Timing {
                heartbeat: ms(500),
                timeout: ms(3000),
            },
        );
        k.on_start(t0);
        assert_eq!(drain(&mut k), [KeeperAction::SpawnStandby]);
        k
    }
    fn drain(k: &mut Keeper) -> Vec<KeeperAction> {
        std::iter::from_fn(|| k.poll_action()).collect()
    }
    fn attached(t0: Instant, pid: Pid) -> Keeper {
        let mut k = keeper(t0);
        k.on_spawned(t0, pid);
        k.on_attach(t0 + ms(5), pid).unwrap();
        k
    }

    #[test]
    fn the_launched_standby_attaches_and_gets_heartbeats() {
        let t0 = t0();
        let mut k = attached(t0, 10);
        assert_eq!(k.view().state, StandbyState::Attached);
        assert_eq!(k.view().pid, Some(10));
        assert_eq!(k.view().since, t0, "uptime counts from the launch");
        k.on_heard(t0 + ms(400), 10);
        k.on_timeout(t0 + ms(505));
        assert_eq!(drain(&mut k), [KeeperAction::SendHeartbeat]);
    }

    #[test]
    fn a_second_standby_is_refused_and_changes_nothing() {
        let t0 = t0();
        let mut k = attached(t0, 10);
        assert_eq!(
            k.on_attach(t0 + ms(6), 11),
            Err(NotAttached::AnotherAttached { pid: 10 })
        );
        assert_eq!(k.view().pid, Some(10));
        k.on_standby_exited(t0 + ms(7), 11, "exit 0".into());
        assert_eq!(drain(&mut k), []);
        assert_eq!(k.view().state, StandbyState::Attached);
    }

    #[test]
    fn a_dead_standby_is_replaced_at_once() {
        let t0 = t0();
        let mut k = attached(t0, 10);
        k.on_standby_exited(t0 + ms(20_000), 10, "killed by SIGKILL".into());
        assert_eq!(drain(&mut k), [KeeperAction::SpawnStandby]);
        k.on_spawned(t0 + ms(20_001), 12);
        assert_eq!(k.view().state, StandbyState::Launching);
        assert_eq!(k.view().launches, 2);
    }

    #[test]
    fn a_silent_standby_is_killed_then_replaced_when_it_is_gone() {
        let t0 = t0();
        let mut k = attached(t0, 10);
        k.on_heard(t0 + ms(1000), 10);
        for i in 3..8 {
            k.on_timeout(t0 + ms(500 * i));
            assert_eq!(drain(&mut k), [KeeperAction::SendHeartbeat]);
        }
        k.on_timeout(t0 + ms(4000));
        assert_eq!(drain(&mut k), [KeeperAction::Kill { pid: 10 }]);
        assert_eq!(k.view().state, StandbyState::Replacing);
        k.on_timeout(t0 + ms(5000));
        assert_eq!(
            drain(&mut k),
            [],
            "no second standby before the first is gone"
        );
        k.on_standby_exited(t0 + ms(20_000), 10, "killed".into());
        assert_eq!(drain(&mut k), [KeeperAction::SpawnStandby]);
    }

    #[test]
    fn an_active_that_did_not_run_for_a_while_does_not_blame_its_standby() {
        let t0 = t0();
        let mut k = attached(t0, 10);
        k.on_timeout(t0 + ms(500));
        let _ = drain(&mut k);
        // the active was stopped for 10 s: its timer fires late, the standby long unheard
        k.on_timeout(t0 + ms(10_500));
        assert_eq!(drain(&mut k), [KeeperAction::SendHeartbeat]);
        assert_eq!(k.view().state, StandbyState::Attached);
    }

    #[test]
    fn a_silent_standby_attached_after_a_quiet_spell_is_replaced_a_timeout_after_it_attached() {
        // the first standby dies; its replacement attaches 1.4 s later, then never speaks: no
        // timer of the active was late, so nothing passes for a stall of the active
        let t0 = t0();
        let mut k = attached(t0, 10);
        k.on_timeout(t0 + ms(505));
        assert_eq!(drain(&mut k), [KeeperAction::SendHeartbeat]);
        k.on_standby_exited(t0 + ms(600), 10, "killed by SIGKILL".into());
        assert_eq!(drain(&mut k), [KeeperAction::SpawnStandby]);
        k.on_spawned(t0 + ms(601), 11);
        k.on_attach(t0 + ms(2000), 11).unwrap();
        let mut killed = None;
        while let Some(now) = k.next_deadline().filter(|&d| d <= t0 + ms(60_000)) {
            k.on_timeout(now);
            if drain(&mut k).contains(&KeeperAction::Kill { pid: 11 }) {
                killed = Some(now);
                break;
            }
        }
        assert_eq!(killed, Some(t0 + ms(5000)));
    }

    #[test]
    fn a_standby_replaced_after_a_long_life_is_relaunched_at_once() {
        let t0 = t0();
        let mut k = attached(t0, 10);
        let mut now = t0;
        for _ in 0..3 {
            // each standby lives an hour, then hangs and is replaced
            let mut pid = 0;
            for step in 1..=7200 {
                now += ms(500);
                if step < 7200 - 6 {
                    k.on_heard(now, k.view().pid.unwrap());
                }
                k.on_timeout(now);
                for a in drain(&mut k) {
                    if let KeeperAction::Kill { pid: p } = a {
                        pid = p;
                    }
                }
                if pid != 0 {
                    break;
                }
            }
            assert_ne!(pid, 0, "the hung standby is killed");
            k.on_standby_exited(now, pid, "killed".into());
            assert_eq!(drain(&mut k), [KeeperAction::SpawnStandby], "no backoff");
            k.on_spawned(now, pid + 1);
            k.on_attach(now, pid + 1).unwrap();
        }
    }

    #[test]
    fn a_standby_that_never_attaches_is_killed() {
        let t0 = t0();
        let mut k = keeper(t0);
        k.on_spawned(t0, 10);
        k.on_timeout(t0 + ms(5999));
        assert_eq!(drain(&mut k), []);
        k.on_timeout(t0 + ms(6000));
        assert_eq!(drain(&mut k), [KeeperAction::Kill { pid: 10 }]);
    }

    #[test]
    fn standbys_that_keep_dying_young_are_relaunched_with_a_growing_delay() {
        let t0 = t0();
        let mut k = keeper(t0);
        let mut now = t0;
        let mut delays = vec![];
        for pid in 10..18 {
            k.on_spawned(now, pid);
            now += ms(100);
            k.on_standby_exited(now, pid, "exit 1".into());
            if drain(&mut k) == [KeeperAction::SpawnStandby] {
                delays.push(Duration::ZERO);
                continue;
            }
            let at = k.next_deadline().unwrap();
            delays.push(at - now);
            now = at;
            k.on_timeout(now);
            assert_eq!(drain(&mut k), [KeeperAction::SpawnStandby]);
        }
        let secs: Vec<u64> = delays.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [0, 1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn shutdown_tells_the_standby_and_completes_only_once_it_has_exited() {
        let t0 = t0();
        let mut k = attached(t0, 10);
        k.on_shutdown(t0 + ms(10));
        assert_eq!(drain(&mut k), [KeeperAction::SendShutdown]);
        k.on_link_lost(t0 + ms(11), 10, "closed".into());
        assert_eq!(drain(&mut k), [], "the link closing is expected, no kill");
        assert!(!k.is_complete());
        k.on_standby_exited(t0 + ms(12), 10, "exit 0".into());
        assert_eq!(drain(&mut k), [KeeperAction::ShutdownComplete]);
        assert_eq!(k.view().state, StandbyState::Stopped);
        k.on_timeout(t0 + ms(60_000));
        assert_eq!(drain(&mut k), []);
    }

    #[test]
    fn a_standby_that_ignores_the_shutdown_is_killed_after_the_timeout() {
        let t0 = t0();
        let mut k = attached(t0, 10);
        k.on_shutdown(t0);
        let _ = drain(&mut k);
        k.on_timeout(t0 + ms(3000));
        assert_eq!(drain(&mut k), [KeeperAction::Kill { pid: 10 }]);
        k.on_timeout(t0 + ms(6000));
        assert_eq!(drain(&mut k), []);
        k.on_standby_exited(t0 + ms(6001), 10, "killed".into());
        assert_eq!(drain(&mut k), [KeeperAction::ShutdownComplete]);
    }

    #[test]
    fn shutdown_kills_a_standby_that_has_not_attached_so_it_cannot_take_over() {
        let t0 = t0();
        let mut k = keeper(t0);
        k.on_spawned(t0, 10);
        k.on_shutdown(t0 + ms(1));
        assert_eq!(drain(&mut k), [KeeperAction::Kill { pid: 10 }]);
        assert_eq!(k.on_attach(t0 + ms(2), 10), Err(NotAttached::ShuttingDown));
        k.on_standby_exited(t0 + ms(3), 10, "killed".into());
        assert_eq!(drain(&mut k), [KeeperAction::ShutdownComplete]);
    }

    #[test]
    fn shutdown_without_a_standby_completes_at_once_and_launches_nothing() {
        let t0 = t0();
        let mut k = keeper(t0);
        k.on_spawn_failed(t0, "no such file".into());
        assert_eq!(drain(&mut k), [KeeperAction::SpawnStandby]);
        k.on_spawn_failed(t0, "no such file".into());
        assert_eq!(drain(&mut k), []);
        k.on_shutdown(t0 + ms(1));
        assert_eq!(drain(&mut k), [KeeperAction::ShutdownComplete]);
        k.on_timeout(t0 + ms(60_000));
        assert_eq!(drain(&mut k), []);
    }

    proptest::proptest! {
        /// Whatever happens, the active never launches a standby while one it launched may
        /// still be alive, never has two attached, and launches nothing once it is stopping.
        #[test]
        fn never_two_standbys_and_nothing_launched_after_shutdown(
            ops in proptest::collection::vec((0u8..8, 0u64..4000, 0usize..3), 1..80)
        ) {
            let t0 = t0();
            let mut now = t0;
            let mut k = keeper(t0);
            let mut next_pid = 100;
            let mut alive: Vec<Pid> = vec![];   // standby processes launched and not exited
            let mut pending_spawn = true;        // a SpawnStandby not answered yet
            let mut stopping = false;
            for (op, dt, pick) in ops {
                now += ms(dt);
                let pick = alive.get(pick).copied();
                match op {
                    0 if pending_spawn => {
                        pending_spawn = false;
                        next_pid += 1;
                        alive.push(next_pid);
                        k.on_spawned(now, next_pid);
                    }
                    1 if pending_spawn => {
                        pending_spawn = false;
                        k.on_spawn_failed(now, "failed".into());
                    }
                    2 => if let Some(p) = pick { let _ = k.on_attach(now, p); },
                    3 => if let Some(p) = pick { k.on_heard(now, p); },
                    4 => if let Some(p) = pick { k.on_link_lost(now, p, "lost".into()); },
                    5 => if let Some(p) = pick {
                        alive.retain(|&a| a != p);
                        k.on_standby_exited(now, p, "exit".into());
                    },
                    6 => { stopping = true; k.on_shutdown(now); }
                    _ => k.on_timeout(now),
                }
                while let Some(a) = k.poll_action() {
                    if a == KeeperAction::SpawnStandby {
                        proptest::prop_assert!(!stopping, "launch after shutdown");
                        proptest::prop_assert!(!pending_spawn, "two launches at once");
                        proptest::prop_assert!(
                            alive.is_empty(),
                            "launch while standby {:?} may be alive", alive
                        );
                        pending_spawn = true;
                    }
                    if a == KeeperAction::ShutdownComplete {
                        proptest::prop_assert!(stopping);
                        proptest::prop_assert!(alive.is_empty(), "complete while {:?} lives", alive);
                    }
                }
            }
        }
    }
}
