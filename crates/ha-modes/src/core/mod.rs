//! The pure HA manager of one node of the pair: no I/O, no clock. Inputs are facts fed to `on_*`
//! with the current time, operator commands go through [`Ha::check`] then [`Ha::apply`], and
//! decisions come out of [`Ha::poll_action`]. [`Ha::next_deadline`] says when to call
//! [`Ha::on_timeout`]; calling it early or twice is harmless.
//!
//! What it keeps is the persisted [`Record`] and what it can re-derive: whether the HA-managed
//! servers run here (told at construction), and the peer's last report with when it came (the
//! StorNext HA Manager: "mostly stateless").
//!
//! Safety rules, in the order [`Ha`] applies them on every input:
//! 1. A peer certified `peerdown` that communicates erases the certification; the local mode
//!    becomes `default` and the HA-managed servers are stopped (the StorNext HA Manager).
//! 2. `locked` never runs the HA-managed servers.
//! 3. A prohibited pair state is corrected by the node whose own mode is at fault (`single` or
//!    `config` beside a `default`, `single` or `config` peer): it returns to `default`; in
//!    `config` mode it stops the servers; if it runs them while the peer does not communicate (the
//!    peer is assumed `default` and may take over) it HA-resets itself. The other node holds: it
//!    starts nothing while the state is prohibited.
//! 4. Two primaries that communicate: the node with the greater name HA-resets itself.
//! 5. A node becomes primary only (a) with its communicating peer's consent (a promotion claim
//!    the peer grants only when it neither runs nor claims the servers), (b) after fencing a
//!    silent peer, (c) when the operator certified the peer `peerdown`, or (d) when the peer left
//!    in a planned stop and said in its leave that its HA-managed servers are verified stopped.
//!
//! A planned stop (SIGTERM, `nm-cli shutdown`, a systemd stop: the StorNext HA Manager stops
//! after the service, Sailfin GMS's `PEER_STOP_EVENT`) is not a failure: the leaving node calls
//! [`Ha::begin_leave`], which persists `left` in its record and stops the HA-managed servers; once
//! they are verified down its driver sends the peer a leave naming its incarnation, and the peer
//! feeds it to [`Ha::on_peer_left`]. A leave is honoured only from the incarnation the peer hears
//! now ([`Ha::on_peer_left`] says why a stale one is harmless). The peer then counts the leaver as
//! certified down for now (no fence) until a new incarnation of it is heard. A node whose record
//! says `left` neither claims nor fences until it has heard its peer again (it rejoins as
//! secondary when the peer took over), or an operator starts HA on it.

mod ops;
pub mod plan;
#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;

/// The core tests' one clock read.
#[cfg(test)]
#[allow(clippy::disallowed_methods)]
fn tests_clock() -> Instant {
    Instant::now()
}

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::mode::{Mode, Status, Verdict, verdict};

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

pub use ops::{Op, Refused};

/// What a node persists (atomically, in `data_dir/ha.json`): the only state it cannot re-derive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The node's own mode (never `peerdown`).
    pub mode: Mode,
    /// The operator certified the peer powered off (`ha peerdown`).
    pub peerdown: bool,
    /// HA is started here (`ha start`), stopped by `ha stop`. A new pair starts stopped.
    pub started: bool,
    /// A start of the HA-managed servers failed; starts are blocked until `ha clear`.
    pub ha_idle_failed_startup: bool,
    /// This node left the pair in a planned stop (its HA-managed servers stopped, its peer told):
    /// it neither claims nor fences until it hears its peer again, or `ha start` runs here.
    /// Absent in the file when `false` (so older daemons read a file without it).
    #[serde(default, skip_serializing_if = "is_false")]
    pub left: bool,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_false(b: &bool) -> bool {
    !*b
}

impl Default for Record {
    fn default() -> Self {
        Self {
            mode: Mode::Default,
            peerdown: false,
            started: false,
            ha_idle_failed_startup: false,
            left: false,
        }
    }
}

/// A leave from the peer (its planned stop), as the link delivers it to [`Ha::on_peer_left`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerLeave {
    /// The leaver's state as it sends the leave; its `incarnation` names the daemon start that
    /// leaves.
    pub state: PeerState,
    /// The leaver's boot (`/proc/sys/kernel/random/boot_id`), for people and the logs.
    pub boot: String,
    /// The leaver stopped its HA-managed servers and saw them gone before it sent this.
    pub servers_stopped: bool,
}

/// Something that happened to the pair, for people ([`Ha::poll_event`]; the driver stamps the
/// time and shows the last few in `ha status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairEvent {
    /// This node leaves in a planned stop.
    Leaving,
    /// The peer left in a planned stop (`PEER_STOP_EVENT`).
    PeerLeft {
        /// Its HA-managed servers were verified stopped: this node may take them over unfenced.
        servers_stopped: bool,
        /// Its boot id.
        boot: String,
    },
    /// A leave was refused (stale: not from the incarnation heard now).
    LeaveRefused(String),
    /// The peer that had left is heard again (a new incarnation).
    PeerRejoined,
    /// This node, back from its planned stop, hears its peer again.
    Rejoined,
    /// This node (HA stopped since its daemon started) found its peer primary with HA started:
    /// it started HA and is the armed secondary.
    JoinedAsSecondary,
}

/// What a node tells its peer about itself, on every exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerState {
    /// Its node name.
    pub node: String,
    /// Random per daemon start: tells a restarted peer from the one before.
    pub incarnation: u64,
    /// Its own mode.
    pub mode: Mode,
    /// Its status.
    pub status: Status,
    /// It certified *us* powered off.
    pub peerdown: bool,
    /// HA is started there.
    pub started: bool,
    /// Its starts are blocked by `ha_idle_failed_startup`.
    pub ha_idle_failed_startup: bool,
    /// It has asked us for consent to become primary and waits for the answer.
    pub promoting: bool,
    /// The last promotion claim it finished (granted or not).
    pub claims_done: u64,
    /// Numbers the reports of one incarnation (stamped by the driver as it publishes them): an
    /// older report that arrives after a newer one is dropped.
    pub seq: u64,
    /// How long its HA manager has run (a duration, never an instant: clocks of two machines
    /// are not compared). Between two nodes that could both become primary, the one up longer
    /// claims first, so a node that just came back from an HA reset or a crash does not take the
    /// servers straight back.
    pub up_ms: u64,
}

/// How a node's HA manager starts ([`Ha::new`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaInit {
    /// This node's name.
    pub node: String,
    /// The peer's node name.
    pub peer: String,
    /// Random per daemon start: tells this run from the one before (the peer sees it).
    pub incarnation: u64,
    /// The persisted record, as loaded.
    pub record: Record,
    /// What the supervisor shows of the HA-managed servers at start.
    pub servers: Observed,
    /// Timing of the pair.
    pub timing: Timing,
}

/// What the supervisor shows of the HA-managed servers on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// None runs, and none is meant to.
    Down,
    /// One has a live process or is meant to run (starting, running, suspended, stopping,
    /// restarting).
    Up,
    /// nm cannot tell about one (`UNKNOWN`: e.g. its lock file names a live process whose start
    /// token cannot be read): it may run, and counts as up.
    Unknown,
}

impl Observed {
    /// Whether a server may run here ([`Observed::Up`] or [`Observed::Unknown`]).
    #[must_use]
    pub fn may_run(self) -> bool {
        matches!(self, Self::Up | Self::Unknown)
    }
}

/// Timing of the pair (`[ha]` keys in `nm.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How often each node exchanges its state with the peer.
    pub heartbeat: Duration,
    /// A peer not heard from for this long is not communicating.
    pub peer_timeout: Duration,
    /// Wait this long after losing the peer before fencing it (set on one node of the pair only,
    /// so that in a partition the other node fences first).
    pub fence_delay: Duration,
    /// After a failed fence, try again after this long.
    pub fence_retry: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(500),
            peer_timeout: Duration::from_secs(3),
            fence_delay: Duration::ZERO,
            fence_retry: Duration::from_secs(5),
        }
    }
}

/// Work for the driver. Each result comes back as an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write this record atomically; on failure call [`Ha::on_persist_failed`].
    Persist(Record),
    /// Start the HA-managed servers; then [`Ha::on_servers_started`].
    StartServers {
        /// Why this node becomes primary.
        reason: String,
    },
    /// Stop the HA-managed servers gracefully; then [`Ha::on_servers_stopped`].
    StopServers {
        /// Why.
        reason: String,
    },
    /// Run the fence command against the peer; then [`Ha::on_fence_result`].
    Fence,
    /// Ask the peer's consent to become primary; then [`Ha::on_promote_answer`].
    AskPromote {
        /// The claim's number.
        claim: u64,
    },
    /// HA reset of this node: write the smith log line (fsync'd), kill the HA-managed servers,
    /// act (exit the daemon). Nothing else is decided after it.
    HaReset {
        /// The descriptive line.
        reason: String,
    },
}

/// Where fencing of a silent peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceState {
    /// Nothing to fence.
    Idle,
    /// The peer is lost; fencing starts at this instant (`fence_delay`).
    Delaying(Instant),
    /// The fence command runs.
    Fencing,
    /// The last fence failed; the next attempt is at this instant.
    Failed(Instant),
    /// The peer was fenced and has not communicated since.
    Fenced,
}

impl FenceState {
    /// The state's name, as `ha status` shows it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Delaying(_) => "delaying",
            Self::Fencing => "fencing",
            Self::Failed(_) => "failed",
            Self::Fenced => "fenced",
        }
    }
}

/// The HA manager of one node.
#[derive(Debug, Clone)]
pub struct Ha {
    me: String,
    peer_name: String,
    incarnation: u64,
    timing: Timing,
    record: Record,
    since: Instant,
    now: Instant,
    /// Primary: this node runs (or is starting, or still stopping) the HA-managed servers.
    holding: bool,
    starting: bool,
    stopping: bool,
    peer: Option<PeerState>,
    heard: Option<Instant>,
    /// When this node last came back from a stall ([`Ha::on_stalled`]): the peer's silence is
    /// counted from here at the earliest.
    stalled_at: Option<Instant>,
    fence: FenceState,
    promoting: Option<(u64, Instant)>,
    next_claim: u64,
    claims_done: u64,
    granted: Option<(u64, u64)>,
    /// A claim was denied: the next one waits for the peer's next report.
    denied: bool,
    reset: Option<String>,
    persist_again: bool,
    actions: VecDeque<Action>,
    /// This incarnation is leaving (a planned stop): it never becomes primary again.
    leaving: bool,
    /// The peer left in a planned stop: which incarnation, and whether its servers were verified
    /// stopped. Cleared when another incarnation of the peer is heard.
    peer_left: Option<(u64, bool)>,
    /// The peer's incarnation this node last heard of (a report or a claim).
    peer_incarnation: Option<u64>,
    /// HA stopped as loaded at daemon start and no command since: a primary peer arms this node.
    joining: bool,
    /// Fence commands that reported success.
    fences: u64,
    events: VecDeque<PairEvent>,
}

impl Ha {
    /// A node's HA manager at daemon start ([`HaInit`]: the record as loaded, whether the
    /// HA-managed servers already run here, which makes the node primary).
    #[must_use]
    pub fn new(now: Instant, init: HaInit) -> Self {
        let HaInit {
            node,
            peer,
            incarnation,
            record,
            servers,
            timing,
        } = init;
        let mut ha = Self {
            me: node,
            peer_name: peer,
            incarnation,
            timing,
            record,
            since: now,
            now,
            holding: servers.may_run(),
            starting: false,
            stopping: false,
            peer: None,
            heard: None,
            stalled_at: None,
            fence: FenceState::Idle,
            promoting: None,
            next_claim: 0,
            claims_done: 0,
            granted: None,
            denied: false,
            reset: None,
            persist_again: false,
            actions: VecDeque::new(),
            leaving: false,
            peer_left: None,
            peer_incarnation: None,
            joining: !record.started,
            fences: 0,
            events: VecDeque::new(),
        };
        ha.evaluate(now);
        ha
    }

    /// The peer's state arrived (an exchange in either direction).
    pub fn on_peer_state(&mut self, now: Instant, state: PeerState) {
        if self.take_state(now, state) {
            self.evaluate(now);
        }
    }

    /// Takes in the peer's report; `false` when it is dropped (overtaken, or the leaver's).
    fn take_state(&mut self, now: Instant, state: PeerState) -> bool {
        // the two directions of the link are two TCP streams: a report can overtake a newer one
        if let Some(last) = &self.peer
            && last.incarnation == state.incarnation
            && state.seq < last.seq
        {
            return false;
        }
        match self.peer_left {
            // the leaver's last reports, still on their way: it is gone
            Some((inc, _)) if inc == state.incarnation => return false,
            Some(_) => {
                self.peer_left = None;
                self.events.push_back(PairEvent::PeerRejoined);
            }
            None => {}
        }
        self.peer_incarnation = Some(state.incarnation);
        if self.record.left && !self.leaving {
            // back from a planned stop: the rules below decide with the peer (it took over)
            self.record.left = false;
            self.persist();
            self.events.push_back(PairEvent::Rejoined);
        }
        let r = self.record;
        if self.joining
            && !r.started
            && r.mode == Mode::Default
            && !r.peerdown
            && !r.ha_idle_failed_startup
            && !self.leaving
            && state.status == Status::Primary
            && state.started
            && state.mode == Mode::Default
            && !state.peerdown
        {
            // a daemon that comes up beside a started primary joins as the armed secondary
            // (an `ha start` whose peer was not up yet, or was fenced, leaves it to this)
            self.joining = false;
            self.record.started = true;
            self.persist();
            self.events.push_back(PairEvent::JoinedAsSecondary);
        }
        if let Some((incarnation, claim)) = self.granted
            && (state.incarnation != incarnation || state.claims_done >= claim)
        {
            self.granted = None;
        }
        if self.fence != FenceState::Fencing {
            self.fence = FenceState::Idle;
        }
        self.peer = Some(state);
        self.heard = Some(now);
        self.denied = false;
        true
    }

    /// Time passed; see [`Ha::next_deadline`].
    pub fn on_timeout(&mut self, now: Instant) {
        self.evaluate(now);
    }

    /// This node did not run for a while: the driver's timer fired more than two heartbeats after
    /// the deadline it was set for (SIGSTOP, a frozen VM, a blocked thread). The peer's silence
    /// meanwhile says nothing about the peer — its messages wait unread — so it is counted again
    /// from now: like a daemon start, nothing is decided from the peer's absence (no fence, no
    /// correction, no reset) until a full `peer_timeout` passes without a word from it. A peer that
    /// really died costs one more `peer_timeout` (as with the standby node manager's watcher).
    pub fn on_stalled(&mut self, now: Instant) {
        self.stalled_at = Some(now);
        self.evaluate(now);
    }

    /// The peer asks consent to become primary; the answer is whether it is granted. A grant
    /// holds (this node claims nothing) until the peer reports the claim finished, restarts, or
    /// stops communicating.
    pub fn on_promote_request(&mut self, now: Instant, incarnation: u64, claim: u64) -> bool {
        self.now = self.now.max(now);
        if self.peer_left.is_some() {
            // the leaver's claim, late; or a new incarnation's claim that overtook its first
            // report: refused until that report clears the leave (the claim is asked again)
            return false;
        }
        // a claim names the incarnation that makes it: a later leave of an older one is stale
        self.peer_incarnation = Some(incarnation);
        // a node that is fencing its peer, or fenced it, is about to take over itself
        let fencing = matches!(self.fence, FenceState::Fencing | FenceState::Fenced);
        if self.reset.is_some() || self.holding || self.starting || fencing {
            return false;
        }
        if let Some((mine, _)) = self.promoting {
            // both claim at once: the lesser name wins
            if self.me < self.peer_name {
                return false;
            }
            self.promoting = None;
            self.claims_done = mine;
        }
        self.granted = Some((incarnation, claim));
        true
    }

    /// The peer answered our claim (`granted = false` also for no answer).
    pub fn on_promote_answer(&mut self, now: Instant, claim: u64, granted: bool) {
        if self.promoting.map(|(c, _)| c) != Some(claim) {
            return;
        }
        self.promoting = None;
        self.claims_done = claim;
        self.denied = !granted;
        let peer_primary = self
            .peer
            .as_ref()
            .is_some_and(|p| p.status == Status::Primary);
        if granted && self.may_promote() && !peer_primary && self.reset.is_none() {
            self.promote("the peer consented".into());
        }
        self.evaluate(now);
    }

    /// The fence command finished.
    pub fn on_fence_result(&mut self, now: Instant, result: Result<(), String>) {
        if self.fence == FenceState::Fencing {
            self.fence = match result {
                Ok(()) => {
                    self.fences += 1;
                    FenceState::Fenced
                }
                Err(_) => FenceState::Failed(later(now, self.timing.fence_retry)),
            };
        }
        self.evaluate(now);
    }

    /// The HA-managed servers were started (`Ok`), or a start failed: the node sets
    /// `ha_idle_failed_startup` and stops what did start.
    pub fn on_servers_started(&mut self, now: Instant, result: Result<(), String>) {
        self.starting = false;
        // a stop asked for while starting makes the start "fail": that is not a failed start
        if let Err(why) = result
            && !self.stopping
        {
            self.record.ha_idle_failed_startup = true;
            self.actions.push_back(Action::Persist(self.record));
            self.stop_servers(format!("a start of the HA-managed servers failed: {why}"));
        }
        self.evaluate(now);
    }

    /// The stop of the HA-managed servers finished: `Ok` when none runs any more (the node is no
    /// longer primary), `Err` when some survived SIGKILL (e.g. stuck in uninterruptible I/O):
    /// the node stays primary and HA-resets itself, since its peer must not start a second copy.
    pub fn on_servers_stopped(&mut self, now: Instant, result: Result<(), String>) {
        if self.stopping {
            self.stopping = false;
            match result {
                Ok(()) => self.holding = false,
                Err(why) => {
                    self.ha_reset(format!("the HA-managed servers survive their stop: {why}"));
                }
            }
        }
        self.evaluate(now);
    }

    /// What the supervisor shows of the HA-managed servers here. One running, or one nm cannot
    /// tell about (`UNKNOWN`), makes the node primary whatever it decided, so its peer never
    /// starts a second copy. (Only a stop makes a node not primary: [`Observed::Down`] changes
    /// nothing by itself.)
    pub fn on_servers_observed(&mut self, now: Instant, servers: Observed) {
        if servers.may_run() && !self.holding && self.reset.is_none() {
            self.holding = true;
        }
        self.evaluate(now);
    }

    /// The planned stop of this node (SIGTERM, `nm-cli shutdown`, a systemd stop): from now on
    /// this incarnation never becomes primary, grants nothing it could not keep, and stops the
    /// HA-managed servers (verified: [`Ha::on_servers_stopped`]). With HA started, `left` is
    /// persisted first, so that the next daemon start waits for its peer. Returns whether there is
    /// a hand-over to announce (HA started here); then, once [`Ha::leave_ready`] is `true` and the
    /// record is durable, the driver sends the peer a [`PeerLeave`]. Calling it twice is harmless.
    pub fn begin_leave(&mut self, now: Instant) -> bool {
        self.now = self.now.max(now);
        if self.reset.is_some() {
            return false;
        }
        if !self.leaving {
            self.leaving = true;
            self.joining = false;
            self.events.push_back(PairEvent::Leaving);
            if self.record.started && !self.record.left {
                self.record.left = true;
                self.persist(); // persist, then act: the Persist is queued before the stop
            }
        }
        // the HA-managed servers cannot run without an HA manager watching them
        self.stop_servers("planned stop of this node: handing the HA-managed servers over".into());
        self.evaluate(now);
        self.record.started
    }

    /// Whether a leave may be sent now: this node is leaving and its HA-managed servers are
    /// verified down (not primary, no stop under way).
    #[must_use]
    pub fn leave_ready(&self) -> bool {
        self.leaving && !self.holding && !self.stopping && !self.starting && self.reset.is_none()
    }

    /// The peer's leave (its planned stop) arrived over the authenticated link.
    ///
    /// It is honoured only from the incarnation this node hears now (the last report or claim
    /// it had from the peer). Why a stale leave is harmless: a frame cannot be replayed into
    /// another session (each session's key comes from both sides' fresh nonces, frames carry
    /// sequence numbers), so a stale leave can only be a late one of an earlier daemon start. The
    /// incarnation is random per daemon start; once any report or claim of a newer start was
    /// heard, the older leave names the wrong incarnation and is refused. A late leave that
    /// arrives before anything of the newer start is harmless too: that start persisted `left`
    /// and neither claims nor fences until it has heard this node (which then hears it too), and
    /// the leave says only what its sender did (stopped and verified its servers) before it sent it.
    ///
    /// With `servers_stopped` (and the leaver's state not primary) this node counts the peer as
    /// certified down for now: if its HA is started it becomes primary without fencing. Without
    /// it the peer is treated as lost (fenced after `peer_timeout`, as a silent node).
    ///
    /// # Errors
    /// [`Refused`] for a stale leave or during an HA reset; nothing changed but an event.
    pub fn on_peer_left(&mut self, now: Instant, leave: PeerLeave) -> Result<(), Refused> {
        self.now = self.now.max(now);
        if self.reset.is_some() {
            return Err(Refused("an HA reset is under way".into()));
        }
        let inc = leave.state.incarnation;
        if self.peer_incarnation != Some(inc) || self.peer_left.is_some() {
            let why = format!(
                "a leave of {} from incarnation {inc:016x}, not the one this node hears: stale, ignored",
                self.peer_name
            );
            self.events.push_back(PairEvent::LeaveRefused(why.clone()));
            return Err(Refused(why));
        }
        let stopped = leave.servers_stopped && leave.state.status != Status::Primary;
        self.take_state(now, leave.state);
        self.peer_left = Some((inc, stopped));
        if let Some((claim, _)) = self.promoting.take() {
            self.claims_done = claim; // a claim to the leaver is moot
        }
        self.granted = None;
        self.denied = false;
        if matches!(self.fence, FenceState::Delaying(_) | FenceState::Failed(_)) {
            self.fence = FenceState::Idle;
        }
        self.events.push_back(PairEvent::PeerLeft {
            servers_stopped: stopped,
            boot: leave.boot,
        });
        self.evaluate(now);
        Ok(())
    }

    /// A [`Action::Persist`] failed: it is tried again at the next input.
    pub fn on_persist_failed(&mut self, now: Instant) {
        self.persist_again = true;
        self.now = self.now.max(now);
    }

    /// The next action, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event for people, if any.
    pub fn poll_event(&mut self) -> Option<PairEvent> {
        self.events.pop_front()
    }

    /// When to call [`Ha::on_timeout`] next (always after the last input's time).
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        let silent = later(self.silence_since(), self.timing.peer_timeout);
        let mut d = vec![silent];
        match self.fence {
            FenceState::Delaying(t) | FenceState::Failed(t) => d.push(t),
            _ => {}
        }
        if let Some((_, at)) = self.promoting {
            d.push(later(at, self.timing.peer_timeout));
        }
        d.into_iter().filter(|&t| t > self.now).min()
    }

    /// The persisted record as it stands.
    #[must_use]
    pub fn record(&self) -> Record {
        self.record
    }

    /// Whether this node is primary (runs, starts or still stops the HA-managed servers).
    #[must_use]
    pub fn is_primary(&self) -> bool {
        self.holding
    }

    /// This node's status.
    #[must_use]
    pub fn status(&self) -> Status {
        if self.holding {
            Status::Primary
        } else if self.record.started && self.record.mode != Mode::Locked {
            Status::Running
        } else {
            Status::Stopped
        }
    }

    /// Whether the peer has been silent for `peer_timeout` at `now` (since this core started,
    /// when it never was heard). Neither communicating nor silent is the start-up window, when
    /// nothing is decided from the peer's absence.
    #[must_use]
    pub fn silent(&self, now: Instant) -> bool {
        self.certified_left() || now >= later(self.silence_since(), self.timing.peer_timeout)
    }

    /// Where the peer's silence is counted from: its last word (or this core's start), or this
    /// node's return from a stall, whichever is later.
    fn silence_since(&self) -> Instant {
        let base = self.heard.unwrap_or(self.since);
        self.stalled_at.map_or(base, |s| base.max(s))
    }

    /// Whether the peer left in a planned stop with its servers verified stopped, and no newer
    /// incarnation of it was heard since: it counts as certified down for now.
    #[must_use]
    pub fn certified_left(&self) -> bool {
        self.peer_left.is_some_and(|(_, stopped)| stopped)
    }

    /// Whether the peer left in a planned stop (and was not heard again since).
    #[must_use]
    pub fn peer_left(&self) -> bool {
        self.peer_left.is_some()
    }

    /// Fence commands that reported success since this core started.
    #[must_use]
    pub fn fences(&self) -> u64 {
        self.fences
    }

    /// Whether this node is leaving (a planned stop is under way).
    #[must_use]
    pub fn leaving(&self) -> bool {
        self.leaving
    }

    /// How long ago the peer was last heard from; `None` when never.
    #[must_use]
    pub fn heard_ago(&self, now: Instant) -> Option<Duration> {
        self.heard.map(|h| now.saturating_duration_since(h))
    }

    /// Whether the peer counts as communicating at `now`.
    #[must_use]
    pub fn communicating(&self, now: Instant) -> bool {
        self.peer_left.is_none()
            && self
                .heard
                .is_some_and(|h| now.saturating_duration_since(h) < self.timing.peer_timeout)
    }

    /// The peer's last report, if it communicates at `now`.
    #[must_use]
    pub fn peer(&self, now: Instant) -> Option<&PeerState> {
        self.peer.as_ref().filter(|_| self.communicating(now))
    }

    /// The pair state `left-right` at `now`, from this node's point of view (module docs of
    /// [`crate::mode`]), and its verdict.
    #[must_use]
    pub fn pair(&self, now: Instant) -> (Mode, Mode, Verdict) {
        let comm = self.communicating(now);
        let peer = self.peer(now);
        let left = if peer.is_some_and(|p| p.peerdown) {
            Mode::Peerdown
        } else {
            self.record.mode
        };
        // a peer that left with its servers verified stopped certified itself down, for now
        let right = if self.record.peerdown || self.certified_left() {
            Mode::Peerdown
        } else {
            peer.map_or(Mode::Default, |p| p.mode)
        };
        (left, right, verdict(left, right, comm))
    }

    /// Where fencing stands.
    #[must_use]
    pub fn fence_state(&self) -> FenceState {
        self.fence
    }

    /// Why an HA reset was decided, once it was.
    #[must_use]
    pub fn reset_reason(&self) -> Option<&str> {
        self.reset.as_deref()
    }

    /// Whether a start of the HA-managed servers is under way (the node is primary already).
    #[must_use]
    pub fn starting(&self) -> bool {
        self.starting
    }

    /// Whether a stop of the HA-managed servers is under way (the node is primary until done).
    #[must_use]
    pub fn stopping(&self) -> bool {
        self.stopping
    }

    /// What this node tells its peer.
    #[must_use]
    pub fn state_for_peer(&self) -> PeerState {
        PeerState {
            node: self.me.clone(),
            incarnation: self.incarnation,
            mode: self.record.mode,
            status: self.status(),
            peerdown: self.record.peerdown,
            started: self.record.started,
            ha_idle_failed_startup: self.record.ha_idle_failed_startup,
            promoting: self.promoting.is_some(),
            claims_done: self.claims_done,
            seq: 0,
            up_ms: u64::try_from(self.now.saturating_duration_since(self.since).as_millis())
                .unwrap_or(u64::MAX),
        }
    }

    /// Between two nodes that could both claim: the one up longer by more than two heartbeats
    /// (a reported uptime is up to a heartbeat old), else the lesser name. This only decides who
    /// *tries* first: should both claim, the claims are settled by name alone
    /// ([`Ha::on_promote_request`]).
    fn peer_goes_first(&self, now: Instant, p: &PeerState) -> bool {
        let mine = now.saturating_duration_since(self.since);
        let theirs = Duration::from_millis(p.up_ms);
        let margin = self.timing.heartbeat.saturating_mul(2);
        if theirs > mine.saturating_add(margin) {
            true
        } else if mine > theirs.saturating_add(margin) {
            false
        } else {
            self.peer_name < self.me
        }
    }

    fn may_promote(&self) -> bool {
        self.record.started
            && self.record.mode != Mode::Locked
            && !self.record.ha_idle_failed_startup
            && !self.record.left
            && !self.leaving
            && !self.holding
            && !self.starting
            && !self.stopping
    }

    fn promote(&mut self, reason: String) {
        self.holding = true;
        self.starting = true;
        self.actions.push_back(Action::StartServers { reason });
    }

    fn stop_servers(&mut self, reason: String) {
        if self.holding && !self.stopping {
            self.stopping = true;
            self.actions.push_back(Action::StopServers { reason });
        }
    }

    fn ha_reset(&mut self, reason: String) {
        if self.reset.is_none() {
            self.reset = Some(reason.clone());
            self.actions.push_back(Action::HaReset { reason });
        }
    }

    fn persist(&mut self) {
        self.actions.push_back(Action::Persist(self.record));
    }

    #[allow(clippy::too_many_lines)] // the rules read best in one place, in the module docs' order
    fn evaluate(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if self.reset.is_some() {
            return;
        }
        if std::mem::take(&mut self.persist_again) {
            self.persist();
        }
        if let Some((claim, at)) = self.promoting
            && now >= later(at, self.timing.peer_timeout)
        {
            self.promoting = None;
            self.claims_done = claim;
        }
        let comm = self.communicating(now);
        if !comm {
            // a silent peer's grant is void: fencing decides from here
            self.granted = None;
        }
        // rule 1 (the StorNext HA Manager): a certified-down peer that communicates erases the certification
        if comm && self.record.peerdown {
            self.record.peerdown = false;
            self.record.mode = Mode::Default;
            self.record.started = false;
            self.joining = false;
            self.persist();
            self.stop_servers("the peer certified peerdown communicates: certification erased, mode default, HA-managed servers stopped".into());
        }
        // rule 2
        if self.record.mode == Mode::Locked {
            self.stop_servers("mode locked".into());
        }
        if !comm && !self.silent(now) {
            return; // the start-up window: the peer's absence is not known yet
        }
        // rule 3
        let (left, right, v) = self.pair(now);
        if v == Verdict::Prohibited {
            if matches!(left, Mode::Single | Mode::Config) {
                if !comm && self.holding && !self.stopping {
                    self.ha_reset(format!(
                        "prohibited state {left}-{right}: the peer stopped communicating and is assumed in default mode while this node runs the HA-managed servers in {left} mode"
                    ));
                    return;
                }
                self.record.mode = Mode::Default;
                self.persist();
                let peer_primary = self.peer(now).is_some_and(|p| p.status == Status::Primary);
                if left == Mode::Config || peer_primary {
                    self.stop_servers(format!(
                        "prohibited state {left}-{right}: mode set to default"
                    ));
                }
            }
            if self.pair(now).2 == Verdict::Prohibited {
                return; // hold: the peer corrects its side
            }
        }
        // rule 4
        let peer = self.peer(now).cloned();
        if let Some(p) = &peer
            && self.holding
            && !self.stopping
            && p.status == Status::Primary
        {
            if self.me > self.peer_name {
                self.ha_reset(format!(
                    "both nodes primary: {} and {} run the HA-managed servers; {} yields (the greater name)",
                    self.me, self.peer_name, self.me
                ));
            }
            return;
        }
        // rule 5
        if !self.may_promote() || self.promoting.is_some() {
            return;
        }
        match peer {
            Some(p) => {
                if matches!(
                    self.fence,
                    FenceState::Delaying(_) | FenceState::Failed(_) | FenceState::Fenced
                ) {
                    self.fence = FenceState::Idle;
                }
                if p.status == Status::Primary || p.promoting || self.granted.is_some() {
                    return; // the peer runs the servers or is about to: secondary
                }
                if self.denied {
                    return; // the next claim waits for the peer's next report
                }
                let peer_can = p.started && p.mode != Mode::Locked && !p.ha_idle_failed_startup;
                if peer_can && self.peer_goes_first(now, &p) {
                    return; // both could: the peer claims first
                }
                self.next_claim += 1;
                self.promoting = Some((self.next_claim, now));
                self.actions.push_back(Action::AskPromote {
                    claim: self.next_claim,
                });
            }
            None if self.record.peerdown => {
                self.promote("the peer is certified peerdown".into());
            }
            // rule 5 (d): a planned stop of the peer, its servers verified stopped: no fence
            None if self.certified_left() => {
                self.promote(format!(
                    "the peer {} left in a planned stop with its HA-managed servers stopped",
                    self.peer_name
                ));
            }
            None => match self.fence {
                FenceState::Idle if !self.timing.fence_delay.is_zero() => {
                    self.fence = FenceState::Delaying(later(now, self.timing.fence_delay));
                }
                FenceState::Idle => self.start_fence(),
                FenceState::Delaying(t) | FenceState::Failed(t) if now >= t => {
                    self.start_fence();
                }
                FenceState::Fenced => {
                    self.promote(format!("the peer {} was fenced", self.peer_name));
                }
                _ => {}
            },
        }
    }

    fn start_fence(&mut self) {
        self.fence = FenceState::Fencing;
        self.actions.push_back(Action::Fence);
    }
}
