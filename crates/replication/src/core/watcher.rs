//! The standby's decisions: link to the active, exchange heartbeats, fence a silent active, take
//! over once the kernel hands over the lock, or terminate when the active says so.

use std::collections::VecDeque;
use std::time::Instant;

use super::{ActiveInfo, Pid, Timing, later};

/// What the standby driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatcherAction {
    /// Connect to the active's standby port and authenticate; answer with `on_linked`,
    /// `on_connect_failed` or `on_refused`.
    Connect,
    /// Send a heartbeat on the link.
    SendHeartbeat,
    /// The first verified link: start waiting for the data directory's lock. A standby that never
    /// linked to an active never waits for it, so never takes over: a free lock alone could be a
    /// different data directory (an edited config) rather than a dead active.
    AwaitLock,
    /// SIGKILL exactly this process (pinned by pidfd, identity checked); then `on_fenced`.
    Fence {
        /// The active's PID.
        pid: Pid,
    },
    /// The lock is ours: become the active node manager.
    TakeOver {
        /// Why the previous active is gone.
        reason: TakeoverReason,
        /// The previous active, when the link ever told us who it was.
        previous: Option<ActiveInfo>,
    },
    /// Close the link, log and exit: the active asked the pair to stop.
    Terminate,
    /// Exit: the active refused this standby (another one is attached).
    Leave {
        /// The active's reason.
        reason: String,
    },
}

/// Why a standby took over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeoverReason {
    /// The active died (the kernel released its lock).
    Died,
    /// The active stopped answering; the standby killed it first.
    Fenced,
}

/// Things worth a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatcherEvent {
    /// Linked to this active.
    Linked(ActiveInfo),
    /// The link broke.
    LinkLost {
        /// Why.
        reason: String,
    },
    /// The active could not be reached (logged once per outage).
    Unreachable {
        /// Why.
        reason: String,
    },
    /// The active has been silent for the timeout: it is fenced.
    Hung {
        /// Its PID.
        pid: Pid,
    },
    /// This process itself did not run for longer than two heartbeats (SIGSTOP, a frozen VM or
    /// container): its own timer fired that late. The active's silence is not its fault; its
    /// timeout starts again.
    Stalled,
    /// The fence was sent a timeout ago and the lock has not come: the active is still there
    /// (ignoring SIGKILL as a namespace's PID 1, or stuck in the kernel). Fenced again.
    FenceUnconfirmed {
        /// Its PID.
        pid: Pid,
    },
    /// The fence could not be carried out; it is tried again at the next timeout.
    FenceFailed {
        /// Its PID.
        pid: Pid,
        /// Why.
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Linked,
    Fencing,
    Done,
}

/// The standby's pure core. Call [`Watcher::on_start`] first.
#[derive(Debug)]
pub struct Watcher {
    timing: Timing,
    state: State,
    active: Option<ActiveInfo>,
    last_heard: Option<Instant>,
    next_heartbeat: Option<Instant>,
    next_connect: Option<Instant>,
    fence_retry: Option<Instant>,
    fenced: bool,
    unreachable_reported: bool,
    actions: VecDeque<WatcherAction>,
    events: VecDeque<WatcherEvent>,
}

impl Watcher {
    /// A standby that has not connected yet.
    pub fn new(timing: Timing) -> Self {
        Self {
            timing,
            state: State::Connecting,
            active: None,
            last_heard: None,
            next_heartbeat: None,
            next_connect: None,
            fence_retry: None,
            fenced: false,
            unreachable_reported: false,
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The standby started: connect.
    pub fn on_start(&mut self, _now: Instant) {
        self.actions.push_back(WatcherAction::Connect);
    }

    /// The link is up and the active authenticated itself. A different active than before means
    /// another standby won the lock and we now watch it.
    pub fn on_linked(&mut self, now: Instant, active: ActiveInfo) {
        if self.state != State::Connecting {
            return;
        }
        if self.active.is_none() {
            self.actions.push_back(WatcherAction::AwaitLock);
        }
        self.state = State::Linked;
        self.active = Some(active);
        self.last_heard = Some(now);
        self.next_heartbeat = Some(later(now, self.timing.heartbeat));
        self.unreachable_reported = false;
        self.events.push_back(WatcherEvent::Linked(active));
    }

    /// A valid heartbeat (or any authenticated message) came from the active.
    pub fn on_heard(&mut self, now: Instant) {
        if self.state == State::Linked {
            self.last_heard = Some(now);
        }
    }

    /// The connection could not be made or authenticated; try again one heartbeat later.
    pub fn on_connect_failed(&mut self, now: Instant, reason: String) {
        if self.state != State::Connecting {
            return;
        }
        self.next_connect = Some(later(now, self.timing.heartbeat));
        if !self.unreachable_reported {
            self.unreachable_reported = true;
            self.events.push_back(WatcherEvent::Unreachable { reason });
        }
    }

    /// The link broke. The silence clock keeps running from the last heartbeat: an active that
    /// stays unreachable for the timeout is fenced.
    pub fn on_link_lost(&mut self, now: Instant, reason: String) {
        if self.state != State::Linked {
            return;
        }
        self.state = State::Connecting;
        // the heartbeat timer keeps ticking (sending nothing) while it reconnects, so that a freeze
        // of this process shows as a late timer within two heartbeats (see `on_timeout`)
        self.next_connect = Some(now);
        self.events.push_back(WatcherEvent::LinkLost { reason });
    }

    /// The active refused us: another standby watches it.
    pub fn on_refused(&mut self, _now: Instant, reason: String) {
        if matches!(self.state, State::Done) {
            return;
        }
        self.state = State::Done;
        self.actions.push_back(WatcherAction::Leave { reason });
    }

    /// The active asked the pair to stop: terminate, never take over.
    pub fn on_shutdown_requested(&mut self, _now: Instant) {
        if matches!(self.state, State::Done) {
            return;
        }
        self.state = State::Done;
        self.actions.push_back(WatcherAction::Terminate);
    }

    /// The fence was carried out (SIGKILL sent) or failed.
    pub fn on_fenced(&mut self, now: Instant, result: Result<(), String>) {
        if self.state != State::Fencing {
            return;
        }
        match result {
            Ok(()) => {
                // the lock should come at once; if it has not within a timeout, fence again
                self.fenced = true;
                self.fence_retry = Some(later(now, self.timing.timeout));
            }
            Err(reason) => {
                let pid = self.active.map_or(0, |a| a.pid);
                self.events
                    .push_back(WatcherEvent::FenceFailed { pid, reason });
                self.fence_retry = Some(later(now, self.timing.timeout));
            }
        }
    }

    /// The kernel gave us the exclusive lock on the data directory: the previous holder is gone.
    /// Take over, unless the pair is terminating (or, defensively, no active was ever linked: the
    /// lock is only awaited after [`WatcherAction::AwaitLock`]).
    pub fn on_lock_acquired(&mut self, _now: Instant) {
        if self.state == State::Done || self.active.is_none() {
            return;
        }
        self.state = State::Done;
        let reason = if self.fenced {
            TakeoverReason::Fenced
        } else {
            TakeoverReason::Died
        };
        self.actions.push_back(WatcherAction::TakeOver {
            reason,
            previous: self.active,
        });
    }

    /// Sends due heartbeats, reconnects, and fences an active silent for the timeout.
    ///
    /// A call more than two heartbeats after the deadline it answers means this process did not
    /// run ([`WatcherEvent::Stalled`]): the active gets a whole timeout from `now`. Only the
    /// lateness of our own timer counts, never how long the active or the connection attempts
    /// kept quiet: a silent active, a refused connection and a handshake that hangs (the active
    /// stopped, its kernel still accepting) all leave the timers on time, so the active is fenced
    /// a timeout after its last word.
    pub fn on_timeout(&mut self, now: Instant) {
        // the driver sleeps until `next_deadline()` and calls this at once: no input came in
        // between, so the deadline it answers is the one the state still gives
        let stalled = self.next_deadline().is_some_and(|due| {
            now.saturating_duration_since(due) > self.timing.heartbeat.saturating_mul(2)
        });
        match self.state {
            State::Linked | State::Connecting => {
                if stalled && self.last_heard.is_some() {
                    // we did not run: give the active a whole timeout from now
                    self.last_heard = Some(now);
                    self.events.push_back(WatcherEvent::Stalled);
                }
                if let (Some(active), Some(heard)) = (self.active, self.last_heard) {
                    if now >= later(heard, self.timing.timeout) {
                        self.fence(active.pid);
                        return;
                    }
                }
                if self.next_heartbeat.is_some_and(|t| now >= t) {
                    if self.state == State::Linked {
                        self.actions.push_back(WatcherAction::SendHeartbeat);
                    }
                    self.next_heartbeat = Some(later(now, self.timing.heartbeat));
                }
                if self.next_connect.is_some_and(|t| now >= t) {
                    self.next_connect = None;
                    self.actions.push_back(WatcherAction::Connect);
                }
            }
            State::Fencing => {
                if let (Some(t), Some(active)) = (self.fence_retry, self.active) {
                    if now >= t {
                        self.fence_retry = None;
                        if self.fenced {
                            self.events
                                .push_back(WatcherEvent::FenceUnconfirmed { pid: active.pid });
                        }
                        self.actions
                            .push_back(WatcherAction::Fence { pid: active.pid });
                    }
                }
            }
            State::Done => {}
        }
    }

    /// The next action, if any.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<WatcherAction> {
        self.actions.pop_front()
    }

    /// The next event worth a log line, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<WatcherEvent> {
        self.events.pop_front()
    }

    /// When `on_timeout` must be called next.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Linked | State::Connecting => {
                let silence = self
                    .active
                    .and(self.last_heard)
                    .map(|h| later(h, self.timing.timeout));
                [silence, self.next_heartbeat, self.next_connect]
                    .into_iter()
                    .flatten()
                    .min()
            }
            State::Fencing => self.fence_retry,
            State::Done => None,
        }
    }

    /// The active this standby watches (or watched last).
    pub fn active(&self) -> Option<ActiveInfo> {
        self.active
    }

    fn fence(&mut self, pid: Pid) {
        self.state = State::Fencing;
        self.next_heartbeat = None;
        self.next_connect = None;
        self.events.push_back(WatcherEvent::Hung { pid });
        self.actions.push_back(WatcherAction::Fence { pid });
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ms, t0};
    use super::*;
    fn timing() -> Timing {
        Timing {
            heartbeat: ms(500),
            timeout: ms(3000),
        }
    }
    fn active() -> ActiveInfo {
        ActiveInfo {
            pid: 42,
            start_time: 7,
            takeovers: 2,
            pair_started_ms: 1,
        }
    }
    fn drain(w: &mut Watcher) -> Vec<WatcherAction> {
        std::iter::from_fn(|| w.poll_action()).collect()
    }
    fn linked(t0: Instant) -> Watcher {
        let mut w = Watcher::new(timing());
        w.on_start(t0);
        assert_eq!(drain(&mut w), [WatcherAction::Connect]);
        w.on_linked(t0, active());
        assert_eq!(drain(&mut w), [WatcherAction::AwaitLock]);
        w
    }

    #[test]
    fn a_heard_active_is_never_fenced_and_gets_heartbeats() {
        let t0 = t0();
        let mut w = linked(t0);
        for i in 1..=20 {
            let now = t0 + ms(500 * i);
            w.on_heard(now);
            w.on_timeout(now);
            assert_eq!(drain(&mut w), [WatcherAction::SendHeartbeat]);
        }
    }

    #[test]
    fn an_active_silent_for_the_timeout_is_fenced_then_taken_over_when_the_lock_comes() {
        let t0 = t0();
        let mut w = linked(t0);
        w.on_heard(t0 + ms(1000));
        // our own heartbeat timer keeps firing while the active stays silent
        for i in 3..8 {
            w.on_timeout(t0 + ms(500 * i));
            assert_eq!(drain(&mut w), [WatcherAction::SendHeartbeat]);
        }
        w.on_timeout(t0 + ms(3999));
        assert!(!drain(&mut w).contains(&WatcherAction::Fence { pid: 42 }));
        assert_eq!(w.next_deadline(), Some(t0 + ms(4000)));
        w.on_timeout(t0 + ms(4000));
        assert_eq!(drain(&mut w), [WatcherAction::Fence { pid: 42 }]);
        w.on_fenced(t0 + ms(4001), Ok(()));
        assert_eq!(
            w.next_deadline(),
            Some(t0 + ms(7001)),
            "the fence is checked"
        );
        w.on_lock_acquired(t0 + ms(4002));
        assert_eq!(
            drain(&mut w),
            [WatcherAction::TakeOver {
                reason: TakeoverReason::Fenced,
                previous: Some(active())
            }]
        );
    }

    #[test]
    fn a_dead_active_is_taken_over_without_a_fence() {
        let t0 = t0();
        let mut w = linked(t0);
        w.on_link_lost(t0 + ms(10), "closed".into());
        w.on_lock_acquired(t0 + ms(11));
        assert_eq!(
            drain(&mut w),
            [WatcherAction::TakeOver {
                reason: TakeoverReason::Died,
                previous: Some(active())
            }]
        );
        w.on_timeout(t0 + ms(10_000));
        assert_eq!(drain(&mut w), []);
    }

    #[test]
    fn an_unreachable_but_living_active_is_fenced_after_the_timeout_from_its_last_heartbeat() {
        let t0 = t0();
        let mut w = linked(t0);
        w.on_link_lost(t0 + ms(100), "reset".into());
        w.on_timeout(t0 + ms(100));
        assert_eq!(drain(&mut w), [WatcherAction::Connect]);
        let mut now = t0 + ms(100);
        while now + ms(500) < t0 + ms(3000) {
            w.on_connect_failed(now, "refused".into());
            now += ms(500);
            w.on_timeout(now);
            assert_eq!(drain(&mut w), [WatcherAction::Connect]);
        }
        w.on_connect_failed(now + ms(1), "refused".into());
        w.on_timeout(t0 + ms(3000));
        assert_eq!(drain(&mut w), [WatcherAction::Fence { pid: 42 }]);
    }

    #[test]
    fn a_reconnection_hanging_in_its_handshake_is_not_taken_for_a_stall_of_the_standby() {
        // the active accepts the connection but never finishes the handshake (its thread hung,
        // the kernel's listen backlog still accepting): no input reaches the core until the
        // attempt times out, yet the active is fenced a timeout after its last word
        let t0 = t0();
        let mut w = linked(t0);
        w.on_link_lost(t0 + ms(100), "closed".into());
        w.on_timeout(t0 + ms(100));
        assert_eq!(drain(&mut w), [WatcherAction::Connect]);
        let mut actions = vec![];
        while let Some(at) = w.next_deadline().filter(|&d| d <= t0 + ms(3000)) {
            w.on_timeout(at);
            actions.extend(drain(&mut w));
        }
        assert_eq!(
            actions,
            [WatcherAction::Fence { pid: 42 }],
            "no heartbeat sent while unlinked"
        );
        assert!(
            !std::iter::from_fn(|| w.poll_event()).any(|e| e == WatcherEvent::Stalled),
            "not a stall"
        );
    }

    /// Plays the standby driver, on time, against an active that never answers again: every
    /// `Connect` fails `attempt(n)` later (n = 0, 1, …): at once for a refused or reset
    /// connection, after the whole timeout for a handshake that hangs (the active stopped, its
    /// kernel still accepting). `on_timeout` runs at each deadline exactly, as the driver's
    /// sleep does. Returns what the core asked for, with when, up to the fence or `until`.
    fn against_a_silent_active(
        w: &mut Watcher,
        until: Instant,
        attempt: impl Fn(usize) -> std::time::Duration,
    ) -> Vec<(Instant, WatcherAction)> {
        let mut asked = vec![];
        let mut in_flight: Option<Instant> = None;
        let mut attempts = 0;
        loop {
            let Some(now) = [w.next_deadline(), in_flight].into_iter().flatten().min() else {
                return asked;
            };
            if now > until {
                return asked;
            }
            if in_flight == Some(now) {
                in_flight = None;
                w.on_connect_failed(now, "no answer".into());
            } else {
                w.on_timeout(now);
            }
            for action in drain(w) {
                if action == WatcherAction::Connect {
                    assert!(in_flight.is_none(), "two connection attempts at once");
                    in_flight = Some(now + attempt(attempts));
                    attempts += 1;
                }
                let fence = matches!(action, WatcherAction::Fence { .. });
                asked.push((now, action));
                if fence {
                    return asked;
                }
            }
        }
    }

    fn events(w: &mut Watcher) -> Vec<WatcherEvent> {
        std::iter::from_fn(|| w.poll_event()).collect()
    }

    #[test]
    fn a_hung_active_is_fenced_when_the_link_dropped_first_and_its_kernel_still_accepts() {
        // issue 11 §4: the link drops (a reset); while the active still runs the first attempts
        // are refused at once; then it is SIGSTOPped and every handshake hangs for the whole
        // timeout. No input reaches the core while an attempt hangs, yet that is no stall of
        // the standby: the active is fenced a timeout after its last heartbeat.
        let t0 = t0();
        let mut w = linked(t0);
        w.on_heard(t0 + ms(400));
        w.on_link_lost(t0 + ms(450), "connection reset by peer".into());
        let asked = against_a_silent_active(&mut w, t0 + ms(60_000), |n| {
            if n < 2 { ms(1) } else { timing().timeout }
        });
        assert_eq!(
            asked.last(),
            Some(&(t0 + ms(3400), WatcherAction::Fence { pid: 42 })),
            "{asked:?}"
        );
        assert!(
            asked
                .iter()
                .all(|(_, a)| matches!(a, WatcherAction::Connect | WatcherAction::Fence { .. })),
            "no heartbeat on a lost link: {asked:?}"
        );
        let events = events(&mut w);
        assert!(!events.contains(&WatcherEvent::Stalled), "{events:?}");
        assert!(events.contains(&WatcherEvent::Hung { pid: 42 }));
    }

    #[test]
    fn an_active_whose_every_reconnection_hangs_is_fenced_however_long_each_attempt_lasts() {
        let t = timing();
        for hang in [
            ms(1),
            t.heartbeat,
            2 * t.heartbeat + ms(1),
            t.timeout - ms(1),
            t.timeout,
        ] {
            let t0 = t0();
            let mut w = linked(t0);
            w.on_link_lost(t0 + ms(10), "closed by the peer".into());
            let asked = against_a_silent_active(&mut w, t0 + ms(60_000), |_| hang);
            assert_eq!(
                asked.last(),
                Some(&(t0 + t.timeout, WatcherAction::Fence { pid: 42 })),
                "attempts hanging {hang:?}: {asked:?}"
            );
            assert!(!events(&mut w).contains(&WatcherEvent::Stalled));
        }
    }

    #[test]
    fn a_standby_frozen_while_it_reconnects_gives_the_active_a_fresh_timeout() {
        // the standby itself is SIGSTOPped while a reconnection hangs: its timer fires 10 s late,
        // which is its own stall, not the active's silence; the active is fenced only if it
        // stays silent for a whole timeout after the standby runs again
        let t0 = t0();
        let mut w = linked(t0);
        w.on_link_lost(t0 + ms(100), "closed by the peer".into());
        w.on_timeout(t0 + ms(100));
        assert_eq!(drain(&mut w), [WatcherAction::Connect]);
        let _ = events(&mut w);
        w.on_timeout(t0 + ms(10_000));
        assert_eq!(drain(&mut w), []);
        assert_eq!(events(&mut w), [WatcherEvent::Stalled]);
        // the attempt that hung through the freeze fails at last; the next ones hang too
        w.on_connect_failed(t0 + ms(10_001), "handshake timed out".into());
        let asked = against_a_silent_active(&mut w, t0 + ms(60_000), |_| timing().timeout);
        assert_eq!(
            asked.last(),
            Some(&(t0 + ms(13_000), WatcherAction::Fence { pid: 42 })),
            "{asked:?}"
        );
        assert!(!events(&mut w).contains(&WatcherEvent::Stalled));
    }

    #[test]
    fn a_timer_late_by_less_than_two_heartbeats_is_no_stall() {
        // a busy machine: the silence deadline fires a little late; the active is fenced
        let t0 = t0();
        let mut w = linked(t0);
        w.on_link_lost(t0 + ms(10), "closed by the peer".into());
        let _ = against_a_silent_active(&mut w, t0 + ms(2999), |_| timing().timeout);
        w.on_timeout(t0 + ms(3999));
        assert_eq!(drain(&mut w), [WatcherAction::Fence { pid: 42 }]);
        assert!(!events(&mut w).contains(&WatcherEvent::Stalled));
    }

    proptest::proptest! {
        /// However the link drops and however each reconnection to an active that never answers
        /// again ends (refused at once, hung for up to the timeout), a standby whose timers run
        /// on time fences it exactly a timeout after its last word, and never takes that for a
        /// stall of its own.
        #[test]
        fn a_silent_active_is_fenced_a_timeout_after_its_last_word(
            heard in 0u64..3000,
            lost_after in 0u64..3000,
            hangs in proptest::collection::vec(0u64..=3000, 1..40),
        ) {
            let t0 = t0();
            let mut w = linked(t0);
            for i in 1..=heard / 500 {
                w.on_timeout(t0 + ms(500 * i));
            }
            w.on_heard(t0 + ms(heard));
            let lost = t0 + ms(heard + lost_after);
            // what fell due before the link dropped: heartbeats sent, or already the fence
            let mut asked = against_a_silent_active(&mut w, lost, |_| ms(0));
            if !asked.iter().any(|(_, a)| matches!(a, WatcherAction::Fence { .. })) {
                w.on_link_lost(lost, "connection reset by peer".into());
                asked = against_a_silent_active(&mut w, t0 + ms(60_000), |n| {
                    ms(hangs[n % hangs.len()])
                });
            }
            proptest::prop_assert_eq!(
                asked.last(),
                Some(&(t0 + ms(heard + 3000), WatcherAction::Fence { pid: 42 }))
            );
            proptest::prop_assert!(!events(&mut w).contains(&WatcherEvent::Stalled));
        }
    }

    #[test]
    fn a_standby_that_did_not_run_for_a_while_gives_the_active_a_fresh_timeout() {
        let t0 = t0();
        let mut w = linked(t0);
        // SIGSTOP of the standby for 10 s: its timer fires late, the active long unheard
        w.on_timeout(t0 + ms(10_000));
        assert_eq!(drain(&mut w), [WatcherAction::SendHeartbeat]);
        assert_eq!(w.poll_event(), Some(WatcherEvent::Linked(active())));
        assert_eq!(w.poll_event(), Some(WatcherEvent::Stalled));
        w.on_heard(t0 + ms(10_100));
        w.on_timeout(t0 + ms(10_500));
        assert_eq!(drain(&mut w), [WatcherAction::SendHeartbeat]);
    }

    #[test]
    fn an_active_that_outlives_its_fence_is_fenced_again() {
        let t0 = t0();
        let mut w = linked(t0);
        for i in 1..=6 {
            w.on_timeout(t0 + ms(500 * i));
        }
        assert!(drain(&mut w).contains(&WatcherAction::Fence { pid: 42 }));
        w.on_fenced(t0 + ms(3000), Ok(()));
        while w.poll_event().is_some() {}
        w.on_timeout(t0 + ms(6000));
        assert_eq!(drain(&mut w), [WatcherAction::Fence { pid: 42 }]);
        assert_eq!(
            w.poll_event(),
            Some(WatcherEvent::FenceUnconfirmed { pid: 42 })
        );
    }

    #[test]
    fn a_standby_that_never_linked_fences_nobody_and_never_takes_over() {
        let t0 = t0();
        let mut w = Watcher::new(timing());
        w.on_start(t0);
        let _ = drain(&mut w);
        for i in 0..100 {
            let now = t0 + ms(500 * i);
            w.on_connect_failed(now, "refused".into());
            w.on_timeout(now + ms(500));
            assert_eq!(
                drain(&mut w),
                [WatcherAction::Connect],
                "no AwaitLock, no Fence"
            );
        }
        w.on_lock_acquired(t0 + ms(60_000));
        assert_eq!(drain(&mut w), []);
    }

    #[test]
    fn a_terminating_standby_never_takes_over() {
        let t0 = t0();
        let mut w = linked(t0);
        w.on_shutdown_requested(t0 + ms(1));
        assert_eq!(drain(&mut w), [WatcherAction::Terminate]);
        w.on_lock_acquired(t0 + ms(2));
        w.on_timeout(t0 + ms(60_000));
        assert_eq!(drain(&mut w), []);
    }

    #[test]
    fn a_refused_standby_leaves_and_does_nothing_else() {
        let t0 = t0();
        let mut w = Watcher::new(timing());
        w.on_start(t0);
        let _ = drain(&mut w);
        w.on_refused(t0, "standby 9 is attached".into());
        assert_eq!(
            drain(&mut w),
            [WatcherAction::Leave {
                reason: "standby 9 is attached".into()
            }]
        );
        w.on_lock_acquired(t0);
        assert_eq!(drain(&mut w), []);
    }

    #[test]
    fn a_failed_fence_is_retried_after_the_timeout() {
        let t0 = t0();
        let mut w = linked(t0);
        for i in 1..6 {
            w.on_timeout(t0 + ms(500 * i));
        }
        let _ = drain(&mut w);
        w.on_timeout(t0 + ms(3000));
        assert_eq!(drain(&mut w), [WatcherAction::Fence { pid: 42 }]);
        w.on_fenced(t0 + ms(3001), Err("EPERM".into()));
        assert_eq!(w.next_deadline(), Some(t0 + ms(6001)));
        w.on_timeout(t0 + ms(6001));
        assert_eq!(drain(&mut w), [WatcherAction::Fence { pid: 42 }]);
    }
}
