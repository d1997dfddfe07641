//! The tokio driver of one node's [`Ha`] core: it runs the core's actions (persist the mode,
//! start/stop/kill the HA-managed servers through the supervisor, run the fence command, ask the
//! peer's consent, HA reset), carries the peer link, and runs the pair-wide commands of
//! `nm-cli ha` as sequences of steps on both nodes ([`crate::core::plan`]).
//!
//! No task that carries heartbeats or link traffic waits on the disk: `ha.json` is written by a
//! writer that runs each write on a blocking thread, in order, and reports it back as an event.
//! The link answers the peer's exchanges with the state the driver last published, and the
//! driver publishes a record of the core only once it is durable. An operator's command is
//! checked, written, then checked again and applied when the write finished (refused if the
//! pair moved meanwhile). Only an HA reset waits for its smith log line, on a blocking thread:
//! nothing else is decided after it.

mod effects;
mod link;
mod pair;
mod servers;
pub mod store;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use supervisor_core::{Accepted, Command, CommandError, SupervisorHandle};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc, oneshot, watch};

use crate::core::plan;
use crate::core::{
    Action, Ha, HaInit, Observed, Op, PairEvent, PeerLeave, PeerState, Record, Timing,
};
use crate::mode::{Mode, Status};
use crate::report::{HaReply, HaReport};

pub use effects::{ResetEffects, reset_effects};
pub use servers::{any_up, kill_all, observe};

use effects::{fence, run};
use pair::describe;

use link::{LinkConfig, Outgoing, Reply, Request};

/// What the driver needs (the `[ha]` section of `nm.toml`, resolved).
#[derive(Debug, Clone)]
pub struct HaConfig {
    /// The data directory (`ha.json`, `smithlog`).
    pub data_dir: PathBuf,
    /// This node's name.
    pub node: String,
    /// The peer's node name.
    pub peer: String,
    /// The peer's HA address.
    pub peer_addr: SocketAddr,
    /// The cluster key both nodes hold.
    pub key: Vec<u8>,
    /// The HA-managed servers (they run on the primary only).
    pub servers: Vec<String>,
    /// The fence command (argv): exit status 0 means the peer is powered off.
    pub fence_command: Vec<String>,
    /// How long the fence command may run before it counts as failed (and is killed).
    pub fence_timeout: Duration,
    /// Run at an HA reset after the HA-managed servers are killed, before the daemon exits.
    pub reset_command: Option<Vec<String>>,
    /// How long the HA-managed servers may take to be `RUNNING` before the start failed.
    pub start_timeout: Duration,
    /// How long they may take to stop before they are killed.
    pub stop_timeout: Duration,
    /// Heartbeat, peer timeout, fence delay and retry.
    pub timing: Timing,
}

/// A command of `nm-cli ha` (the StorNext HA Manager's command table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairCommand {
    /// Report both nodes; change nothing.
    Status,
    /// Both nodes to default, this node primary, the peer secondary.
    Start,
    /// Both nodes stopped in default mode, without an HA reset.
    Stop,
    /// This node to config mode (the peer must be locked or certified peerdown).
    Config,
    /// Lift `ha_idle_failed_startup`.
    Clear,
    /// HA reset of this node now (default mode only).
    ForceSmith,
    /// Certify the peer powered off.
    Peerdown,
    /// Withdraw the certification.
    Peerup,
    /// Set this node's mode.
    Mode(Mode),
}

/// Why a command did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HaError {
    /// The HA Manager's tables forbid it; nothing changed.
    #[error("{0}")]
    Refused(String),
    /// A step failed; the steps before it stand (the reply's report says where the pair is).
    #[error("{0}")]
    Failed(String),
    /// The HA manager has stopped (daemon shutting down or reset).
    #[error("the HA manager has stopped")]
    Gone,
}

/// Why no leave can be sent.
#[derive(Debug)]
pub(crate) enum NoLeave {
    /// Not yet (a write or the stop under way): the peer will fence this node if it leaves now.
    NotYet(String),
    /// An HA-managed server runs here although the stop was verified.
    ServerUp(String),
}

/// How the driver ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HaExit {
    /// An HA reset: the smith log line is written, the HA-managed servers are killed; the
    /// daemon must now exit with its distinct status.
    Reset(String),
    /// The handle was dropped.
    Stopped,
    /// This node left the pair in a planned stop ([`HaHandle::leave`]).
    Left,
}

/// How a planned stop of this node went ([`HaHandle::leave`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaveOutcome {
    /// HA is not started here: nothing to hand over (the HA manager has ended).
    NotStarted,
    /// The HA-managed servers are stopped (verified) and the peer took the leave: it takes them
    /// over without fencing this node.
    Delivered,
    /// The HA-managed servers are stopped (verified) but the peer did not take the leave (it is
    /// unreachable, or refused): it will fence this node as a lost one, which is safe.
    NotDelivered(String),
    /// The hand-over did not happen: the HA manager reset this node (a server survived its
    /// stop) or had already ended. The daemon must exit as after an HA reset when `reset`.
    Failed {
        /// Why.
        why: String,
        /// An HA reset was done (smith log written, HA-managed servers killed).
        reset: bool,
    },
}

/// What reaches the driver task.
#[derive(Debug)]
pub(crate) enum Event {
    /// The peer's state, from an exchange in either direction.
    Peer(PeerState),
    /// The oldest write in flight finished (writes finish in the order they were queued).
    Persisted(Result<(), String>),
    /// The peer asks consent to become primary.
    PromoteRequest {
        incarnation: u64,
        claim: u64,
        reply: oneshot::Sender<bool>,
    },
    /// The peer's answer to our claim.
    PromoteAnswer {
        claim: u64,
        granted: bool,
    },
    /// The peer asks us to run a step of `ha start` / `ha stop`.
    Remote {
        op: Op,
        reply: oneshot::Sender<Result<PeerState, String>>,
    },
    /// An operator command on this node.
    Local {
        op: Op,
        reply: oneshot::Sender<Result<PeerState, String>>,
    },
    /// An operator's start, restart or resume of an HA-managed server: decided here, against
    /// the core's own promote/demote decisions.
    ServerCommand {
        name: String,
        command: Command,
        reply: oneshot::Sender<Result<Result<Accepted, CommandError>, HaError>>,
    },
    /// Answer once everything before is handled and published.
    Sync(oneshot::Sender<()>),
    Started(Result<(), String>),
    Stopped(Result<(), String>),
    /// The supervisor's snapshot changed what it shows of the HA-managed servers here.
    Observed(Observed),
    Fenced(Result<(), String>),
    /// A frame or handshake that failed authentication or decoding: dropped, counted.
    Rejected(String),
    /// The peer leaves (its planned stop).
    PeerLeft {
        leave: PeerLeave,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// This node leaves: the answer says whether HA is started (a hand-over to announce).
    Leave(oneshot::Sender<bool>),
    /// The leave to send, once the HA-managed servers are verified down and `left` is durable.
    MakeLeave(oneshot::Sender<Result<PeerLeave, NoLeave>>),
    /// End the driver (after a leave).
    End,
}

/// A cloneable handle to a node's HA manager.
#[derive(Debug, Clone)]
pub struct HaHandle {
    events: mpsc::UnboundedSender<Event>,
    outbox: mpsc::Sender<Outgoing>,
    report: watch::Receiver<HaReport>,
    mine: watch::Receiver<PeerState>,
    one_at_a_time: Arc<Mutex<()>>,
    rejected: Arc<AtomicU64>,
    node: String,
    peer: String,
    stop_wait: Duration,
    start_wait: Duration,
    peer_timeout: Duration,
}

/// Starts the HA manager on the current tokio runtime: loads `ha.json`, serves the peer on
/// `listener` (the `[ha] listen` address, bound by the caller before anything else started),
/// dials the peer.
///
/// # Errors
/// The mode file is unusable; nothing was started.
pub fn start(
    cfg: HaConfig,
    listener: TcpListener,
    sup: SupervisorHandle,
) -> Result<(HaHandle, tokio::task::JoinHandle<HaExit>), StartError> {
    let record = store::load(&cfg.data_dir)?;
    let incarnation = nm_wire::frame::nonce()
        .map(|n| u64::from_be_bytes(n[..8].try_into().expect("8 bytes")))
        .map_err(StartError::Random)?;
    let observed = servers::observe(&sup.snapshot(), &cfg.servers);
    let t = now();
    let core = Ha::new(
        t,
        HaInit {
            node: cfg.node.clone(),
            peer: cfg.peer.clone(),
            incarnation,
            record,
            servers: observed,
            timing: cfg.timing,
        },
    );
    if observed.may_run() {
        tracing::info!("HA-managed servers run here: this node is primary");
    }
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let (outbox_tx, outbox_rx) = mpsc::channel(16);
    let (mine_tx, mine_rx) = watch::channel(core.state_for_peer());
    let (report_tx, report_rx) = watch::channel(HaReport::of(&core, t, &cfg.peer, &cfg.servers));
    let stop_wait = cfg.stop_timeout + Duration::from_secs(10);
    let link_cfg = LinkConfig {
        me: cfg.node.clone(),
        peer: cfg.peer.clone(),
        peer_addr: cfg.peer_addr,
        key: Arc::new(cfg.key.clone()),
        heartbeat: cfg.timing.heartbeat,
        peer_timeout: cfg.timing.peer_timeout,
        stop_wait,
    };
    let rejected = Arc::new(AtomicU64::new(0));
    let handle = HaHandle {
        events: events_tx.clone(),
        outbox: outbox_tx.clone(),
        report: report_rx.clone(),
        mine: mine_rx.clone(),
        one_at_a_time: Arc::new(Mutex::new(())),
        rejected: rejected.clone(),
        node: cfg.node.clone(),
        peer: cfg.peer.clone(),
        stop_wait,
        start_wait: cfg.start_timeout
            + cfg.timing.peer_timeout * 2
            + cfg.timing.fence_delay
            + cfg.fence_timeout,
        peer_timeout: cfg.timing.peer_timeout,
    };
    let client = tokio::spawn(link::client(
        link_cfg.clone(),
        mine_rx.clone(),
        outbox_rx,
        events_tx.clone(),
    ));
    let server = tokio::spawn(link::server(
        link_cfg,
        listener,
        events_tx.clone(),
        report_rx,
        mine_rx,
    ));
    // every supervisor snapshot: does an HA-managed server run (or may it) here?
    let watcher = {
        let (mut snaps, names, ev) = (sup.subscribe(), cfg.servers.clone(), events_tx.clone());
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let up = servers::observe(&snaps.borrow_and_update(), &names);
                if last != Some(up) {
                    last = Some(up);
                    if ev.send(Event::Observed(up)).is_err() {
                        return;
                    }
                }
                if snaps.changed().await.is_err() {
                    return;
                }
            }
        })
    };
    let (writes_tx, writes_rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(writer(cfg.data_dir.clone(), writes_rx, events_tx.clone()));
    let driver = Driver {
        durable: record,
        writes: writes_tx,
        in_flight: VecDeque::new(),
        syncs: vec![],
        core,
        cfg: Arc::new(cfg),
        sup,
        events: events_tx,
        outbox: outbox_tx,
        mine: mine_tx,
        report: report_tx,
        rejected,
        incarnation,
        history: VecDeque::new(),
        ended: false,
    };
    let task = tokio::spawn(async move {
        let exit = driver.run(events_rx).await;
        client.abort();
        server.abort();
        watcher.abort();
        // a write under way finishes on its blocking thread; the ones queued after it are dropped
        writer.abort();
        exit
    });
    Ok((handle, task))
}

/// Why the HA manager could not start. Nothing was started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// `ha.json` is unusable.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// No randomness for the incarnation number.
    #[error("cannot draw an incarnation number")]
    Random(#[source] std::io::Error),
}

impl HaHandle {
    /// The latest report of the pair.
    #[must_use]
    pub fn report(&self) -> HaReport {
        self.report.borrow().clone()
    }

    /// Whether this node is primary (runs the HA-managed servers).
    #[must_use]
    pub fn is_primary(&self) -> bool {
        self.report.borrow().local.status == Some(Status::Primary)
    }

    /// Frames and handshakes on the HA link that failed authentication or decoding.
    #[must_use]
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Runs an operator's `command` on the HA-managed server `name` through the supervisor,
    /// decided by the HA manager itself: a `Start`, `Restart` or `Resume` only while this node is
    /// primary, checked and issued by the driver task before it handles anything else, so that no
    /// promote or demote decision comes between the check and the command. Other commands
    /// (`Stop`, `Kill`, `Suspend`) are passed through the same way.
    ///
    /// # Errors
    /// [`HaError::Refused`] when this node is not primary (nothing was sent to the supervisor);
    /// [`HaError::Gone`] when the HA manager or the supervisor has stopped. `Ok(Err(..))` is the
    /// supervisor's own refusal.
    pub async fn server_command(
        &self,
        name: &str,
        command: Command,
    ) -> Result<Result<Accepted, CommandError>, HaError> {
        let (reply, rx) = oneshot::channel();
        self.events
            .send(Event::ServerCommand {
                name: name.to_owned(),
                command,
                reply,
            })
            .map_err(|_| HaError::Gone)?;
        rx.await.map_err(|_| HaError::Gone)?
    }

    /// A planned stop of this node (SIGTERM, `nm-cli shutdown`, a systemd stop; the StorNext HA
    /// Manager stops after the service): with HA started, stops the HA-managed servers and waits
    /// until they are verified gone and `left` is durable in `ha.json`, then tells the peer,
    /// which takes them over without fencing this node (Sailfin GMS's `PEER_STOP_EVENT`). If the
    /// peer cannot be told, it fences this node as a lost one (safe: nothing runs here). The HA
    /// manager ends afterwards in every case; commands in flight fail. Call it once, from the
    /// node's shutdown, after the standby node manager has stopped.
    pub async fn leave(&self) -> LeaveOutcome {
        let gone = |why: &str| LeaveOutcome::Failed {
            why: why.to_owned(),
            reset: false,
        };
        let (tx, rx) = oneshot::channel();
        if self.events.send(Event::Leave(tx)).is_err() {
            return gone("the HA manager has stopped");
        }
        let Ok(started) = rx.await else {
            return gone("the HA manager has stopped");
        };
        let outcome = if started {
            self.hand_over().await
        } else {
            // nothing to announce, but nothing HA-managed is left running either
            match link::wait_not_primary(self.report.clone(), self.stop_wait).await {
                Ok(()) => LeaveOutcome::NotStarted,
                Err(why) => LeaveOutcome::Failed { why, reset: true },
            }
        };
        let _ = self.events.send(Event::End);
        outcome
    }

    async fn hand_over(&self) -> LeaveOutcome {
        let stopped = link::wait_not_primary(self.report.clone(), self.stop_wait).await;
        // the HA manager resets itself when a server survives its stop: nothing is announced
        let reset = |why: String| LeaveOutcome::Failed { why, reset: true };
        if let Err(why) = stopped {
            return reset(why);
        }
        self.sync().await; // `left` durable, the stop's outcome taken in
        let (tx, rx) = oneshot::channel();
        if self.events.send(Event::MakeLeave(tx)).is_err() {
            return reset("the HA manager ended during the hand-over".into());
        }
        let leave = match rx.await {
            Ok(Ok(leave)) => leave,
            Ok(Err(NoLeave::NotYet(why))) => return LeaveOutcome::NotDelivered(why),
            // a server runs although the stop was verified (a start raced it): no leave, and
            // the node resets (its servers killed) rather than leave one running unwatched
            Ok(Err(NoLeave::ServerUp(why))) => return reset(why),
            Err(_) => return reset("the HA manager ended during the hand-over".into()),
        };
        let (reply, rx) = oneshot::channel();
        let out = Outgoing {
            request: Request::Leave(leave),
            timeout: self.peer_timeout,
            reply,
        };
        if self.outbox.send(out).await.is_err() {
            return LeaveOutcome::NotDelivered("the HA link has stopped".into());
        }
        // bounded: a peer that does not answer is a peer that will fence this node
        match tokio::time::timeout(self.peer_timeout * 2, rx).await {
            Ok(Ok(Ok(Reply::Left(Ok(()))))) => LeaveOutcome::Delivered,
            Ok(Ok(Ok(Reply::Left(Err(why))))) => LeaveOutcome::NotDelivered(why),
            Ok(Ok(Ok(_))) => LeaveOutcome::NotDelivered("unexpected answer".into()),
            Ok(Ok(Err(why))) => LeaveOutcome::NotDelivered(why),
            Ok(Err(_)) => LeaveOutcome::NotDelivered("the HA link has stopped".into()),
            Err(_) => {
                LeaveOutcome::NotDelivered(format!("no answer within {:?}", self.peer_timeout * 2))
            }
        }
    }

    /// Runs an `nm-cli ha` command (one at a time) and reports both nodes afterwards.
    ///
    /// # Errors
    /// [`HaError`]: refused (nothing changed), failed at a step, or the manager is gone.
    pub async fn run(&self, cmd: PairCommand) -> Result<HaReply, HaError> {
        let _one = self.one_at_a_time.lock().await;
        // the StorNext HA Manager: talk to the peer at every decision point
        self.refresh().await;
        let mut steps = vec![];
        let done = match cmd {
            PairCommand::Status => Ok(()),
            PairCommand::Start => self.start_pair(&mut steps).await,
            PairCommand::Stop => match plan::plan_stop(&self.report()) {
                Ok(plan) => {
                    let done = self.carry_out(plan, &mut steps).await.map(|_| ());
                    self.sync().await;
                    done
                }
                Err(refused) => Err(HaError::Refused(refused.0)),
            },
            PairCommand::Config => self.local(Op::Mode(Mode::Config), &mut steps).await,
            PairCommand::Clear => self.local(Op::Clear, &mut steps).await,
            PairCommand::ForceSmith => self.local(Op::ForceSmith, &mut steps).await,
            PairCommand::Peerdown => self.local(Op::Peerdown, &mut steps).await,
            PairCommand::Peerup => self.local(Op::Peerup, &mut steps).await,
            PairCommand::Mode(m) => self.local(Op::Mode(m), &mut steps).await,
        };
        if let Err(e) = done {
            // say what was done before the failing step: the pair is between two states
            return Err(match e {
                HaError::Failed(why) | HaError::Refused(why) if !steps.is_empty() => {
                    HaError::Failed(format!("{why} (steps done: {})", steps.join("; ")))
                }
                e => e,
            });
        }
        if cmd != PairCommand::ForceSmith {
            self.refresh().await;
        }
        Ok(HaReply {
            steps,
            report: self.report(),
        })
    }
}

struct Driver {
    core: Ha,
    cfg: Arc<HaConfig>,
    sup: SupervisorHandle,
    events: mpsc::UnboundedSender<Event>,
    outbox: mpsc::Sender<Outgoing>,
    mine: watch::Sender<PeerState>,
    report: watch::Sender<HaReport>,
    rejected: Arc<AtomicU64>,
    incarnation: u64,
    /// The pair's last events, stamped, for the report.
    history: VecDeque<String>,
    /// [`Event::End`] arrived.
    ended: bool,
    /// The writer of `ha.json`, off the runtime thread ([`writer`]).
    writes: mpsc::UnboundedSender<Record>,
    /// What was queued to it and has not finished, oldest first.
    in_flight: VecDeque<Write>,
    /// The record on disk as far as known (the last write that succeeded, or the one loaded).
    durable: Record,
    /// [`Event::Sync`]s waiting for the writes of the core's records to finish.
    syncs: Vec<oneshot::Sender<()>>,
}

/// A write of `ha.json` in flight, and what its completion does.
#[derive(Debug)]
enum Write {
    /// The core's [`Action::Persist`] (the core holds this record already).
    Core(Record),
    /// An operator's or the peer's command: applied once its record is durable.
    Command {
        op: Op,
        rec: Record,
        reply: oneshot::Sender<Result<PeerState, String>>,
    },
}

impl Write {
    fn record(&self) -> Record {
        match self {
            Self::Core(rec) | Self::Command { rec, .. } => *rec,
        }
    }
}

/// Writes each record it receives to `data_dir/ha.json` (write, fsync, rename, fsync of the
/// directory) on a blocking thread, one at a time in the order received, and reports each
/// outcome as an [`Event::Persisted`]. The driver task, which answers the peer and runs the
/// timers, never waits on the disk. Ends when the driver drops its sender.
async fn writer(
    data_dir: PathBuf,
    mut records: mpsc::UnboundedReceiver<Record>,
    events: mpsc::UnboundedSender<Event>,
) {
    while let Some(rec) = records.recv().await {
        let dir = data_dir.clone();
        let done = match tokio::task::spawn_blocking(move || store::save(&dir, &rec)).await {
            Ok(r) => r.map_err(|e| format!("{e:#}")),
            Err(e) => Err(format!("the writer of {}: {e}", store::MODE_FILE)),
        };
        if events.send(Event::Persisted(done)).is_err() {
            return;
        }
    }
}

impl Driver {
    async fn run(mut self, mut events: mpsc::UnboundedReceiver<Event>) -> HaExit {
        loop {
            while let Some(action) = self.core.poll_action() {
                if let Some(reason) = self.act(action) {
                    // an HA reset: nothing else is decided; it may await the disk now
                    let exit = self.reset(&reason).await;
                    self.publish();
                    return exit;
                }
            }
            self.publish();
            let deadline = self.core.next_deadline();
            tokio::select! {
                // what has arrived (the peer's heartbeats above all) is taken in before a timer
                // that fell due meanwhile decides on a stale view of the peer
                biased;
                ev = events.recv() => match ev {
                    Some(Event::ServerCommand { name, command, reply }) => {
                        self.server_command(&name, command, reply);
                    }
                    Some(ev) => self.on_event(ev),
                    None => return HaExit::Stopped,
                },
                () = sleep_until(deadline) => {
                    let t = now();
                    // a timer this late means this process did not run (its peer's messages
                    // wait unread): the peer's silence meanwhile proves nothing
                    let stall = 2 * self.cfg.timing.heartbeat;
                    if deadline.is_some_and(|d| t.saturating_duration_since(d) > stall) {
                        tracing::warn!(late = ?deadline.map(|d| t.saturating_duration_since(d)), "this node did not run for more than two heartbeats: the peer's silence is counted again from now");
                        self.core.on_stalled(t);
                    } else {
                        self.core.on_timeout(t);
                    }
                }
            }
            if self.ended {
                self.publish();
                return HaExit::Left;
            }
        }
    }

    /// Publishes the report and what the peer is told, unless a record of the core is still
    /// being written: a mode is durable before it is reported (until then both show the state
    /// before it, and the link keeps answering the peer with that).
    fn publish(&mut self) {
        // a core record still being written, or whose write failed (retried), is not shown
        if self.in_flight.iter().any(|w| matches!(w, Write::Core(_)))
            || self.core.record() != self.durable
        {
            return;
        }
        for sync in self.syncs.drain(..) {
            let _ = sync.send(());
        }
        let t = now();
        self.take_events();
        let mut report = HaReport::of(&self.core, t, &self.cfg.peer, &self.cfg.servers);
        report.rejected_frames = self.rejected.load(Ordering::Relaxed);
        report.events = self.history.iter().cloned().collect();
        self.report.send_if_modified(|old| {
            let changed = *old != report;
            *old = report;
            changed
        });
        // what the peer is told, numbered so that it can drop a report overtaken by a newer one
        let mut mine = self.core.state_for_peer();
        mine.seq = self.mine.borrow().seq;
        if *self.mine.borrow() != mine {
            mine.seq += 1;
            self.mine.send_replace(mine);
        }
    }

    /// The core's events, logged and kept (the last [`HISTORY`]) with their time for the report.
    fn take_events(&mut self) {
        let peer = &self.cfg.peer;
        while let Some(ev) = self.core.poll_event() {
            let line = match ev {
                PairEvent::Leaving => {
                    "this node leaves in a planned stop: HA-managed servers stopped, then the peer told"
                        .to_owned()
                }
                PairEvent::PeerLeft {
                    servers_stopped: true,
                    boot,
                } => format!(
                    "peer {peer} left (planned stop, boot {boot}), its HA-managed servers stopped: no fence"
                ),
                PairEvent::PeerLeft {
                    servers_stopped: false,
                    boot,
                } => format!(
                    "peer {peer} left (planned stop, boot {boot}) without its HA-managed servers verified stopped: treated as lost"
                ),
                PairEvent::LeaveRefused(why) => format!("refused: {why}"),
                PairEvent::PeerRejoined => {
                    format!("peer {peer} rejoined after its planned stop")
                }
                PairEvent::Rejoined => "this node rejoined after its planned stop".to_owned(),
                PairEvent::JoinedAsSecondary => format!(
                    "the peer {peer} is primary with HA started: HA started here (armed secondary)"
                ),
            };
            tracing::warn!("HA pair: {line}");
            let at = humantime::format_rfc3339_millis(supervisor_core::driver::wall_now());
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(format!("{at} {line}"));
        }
    }

    /// Our state as the peer must see it now: published (and numbered) first.
    fn stamped(&mut self) -> PeerState {
        self.publish();
        self.mine.borrow().clone()
    }

    fn on_event(&mut self, ev: Event) {
        let t = now();
        match ev {
            Event::Peer(s) => self.core.on_peer_state(t, s),
            Event::PromoteRequest {
                incarnation,
                claim,
                reply,
            } => {
                let granted = self.core.on_promote_request(t, incarnation, claim);
                tracing::info!(peer = %self.cfg.peer, claim, granted, "the peer asks to become primary");
                let _ = reply.send(granted);
            }
            Event::PromoteAnswer { claim, granted } => {
                self.core.on_promote_answer(t, claim, granted);
            }
            Event::Remote { op, reply } => {
                if matches!(op, Op::Mode(_) | Op::Start | Op::Stop) {
                    self.command(t, op, reply);
                } else {
                    let _ = reply.send(Err(format!("{op:?} is not a command a peer may send")));
                }
            }
            Event::Local { op, reply } => self.command(t, op, reply),
            Event::ServerCommand { reply, .. } => {
                // handled by the run loop, which awaits the supervisor
                let _ = reply.send(Err(HaError::Gone));
            }
            Event::Sync(reply) => {
                // answered at the next publication, after the writes of the core's records
                self.syncs.push(reply);
                self.publish();
            }
            Event::Persisted(result) => self.on_persisted(t, result),
            Event::Started(r) => {
                match &r {
                    Ok(()) => tracing::info!("HA-managed servers running: this node is primary"),
                    Err(why) => {
                        tracing::error!(error = %why, "start of the HA-managed servers failed: ha_idle_failed_startup set")
                    }
                }
                self.core.on_servers_started(t, r);
            }
            Event::Stopped(r) => {
                match &r {
                    Ok(()) => tracing::info!("HA-managed servers stopped"),
                    Err(why) => {
                        tracing::error!(error = %why, "HA-managed servers survive their stop")
                    }
                }
                self.core.on_servers_stopped(t, r);
            }
            Event::Observed(up) => {
                if up.may_run() && !self.core.is_primary() {
                    tracing::warn!(
                        "an HA-managed server runs here (or may: UNKNOWN): this node is primary"
                    );
                }
                self.core.on_servers_observed(t, up);
            }
            Event::Fenced(r) => {
                match &r {
                    Ok(()) => tracing::warn!(peer = %self.cfg.peer, "the peer is fenced"),
                    Err(why) => {
                        tracing::error!(peer = %self.cfg.peer, error = %why, "fencing the peer failed; retrying in {:?}", self.cfg.timing.fence_retry)
                    }
                }
                self.core.on_fence_result(t, r);
            }
            Event::PeerLeft { leave, reply } => {
                let _ = reply.send(self.core.on_peer_left(t, leave).map_err(|r| r.0));
            }
            Event::Leave(reply) => {
                let started = self.core.begin_leave(t);
                let _ = reply.send(started);
            }
            Event::MakeLeave(reply) => {
                let _ = reply.send(self.make_leave());
            }
            Event::End => self.ended = true,
            Event::Rejected(why) => {
                let n = self.rejected.fetch_add(1, Ordering::Relaxed) + 1;
                if n <= 10 || n.is_power_of_two() {
                    tracing::warn!(rejected = n, "HA link: dropped: {why}");
                }
            }
        }
    }

    /// The leave for the peer: only once the HA-managed servers are verified down and the record
    /// saying `left` is durable (persist, then act).
    fn make_leave(&mut self) -> Result<PeerLeave, NoLeave> {
        if !self.core.leave_ready() {
            return Err(NoLeave::NotYet(
                "the HA-managed servers are not verified stopped".into(),
            ));
        }
        if !self.in_flight.is_empty() || self.durable != self.core.record() {
            return Err(NoLeave::NotYet(
                "the HA mode file is not written yet".into(),
            ));
        }
        // the supervisor's own word too: a start that raced the stop may have left one running
        if observe(&self.sup.snapshot(), &self.cfg.servers) != Observed::Down {
            return Err(NoLeave::ServerUp(
                "an HA-managed server still runs here (or may: UNKNOWN) after the stop".into(),
            ));
        }
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map_or_else(|_| "unknown".to_owned(), |b| b.trim().to_owned());
        Ok(PeerLeave {
            state: self.stamped(),
            boot,
            servers_stopped: true,
        })
    }

    /// [`HaHandle::server_command`]: decided here, between this core's own decisions. An
    /// allowed command is queued in the supervisor's FIFO before the driver takes any other
    /// event (so a later stop of the HA-managed servers comes after it), and its answer is
    /// awaited beside the driver: the driver never waits for the supervisor (which may be
    /// waiting for the disk).
    fn server_command(
        &mut self,
        name: &str,
        command: Command,
        reply: oneshot::Sender<Result<Result<Accepted, CommandError>, HaError>>,
    ) {
        let starts = matches!(command, Command::Start | Command::Restart | Command::Resume);
        // the StorNext HA Manager: an HA-managed server runs on the primary only; a primary that
        // is stopping its servers (or resetting) is leaving that role, and starts nothing
        let refusal = if !starts {
            None
        } else if !self.core.is_primary() {
            Some(format!(
                "server {name:?} is HA-managed: it runs only on the HA primary, and this node is not primary (see `nm-cli ha status`)"
            ))
        } else if self.core.stopping() || self.core.leaving() || self.core.reset_reason().is_some()
        {
            Some(format!(
                "server {name:?} is HA-managed and this node's HA manager is stopping the HA-managed servers: it is not started (see `nm-cli ha status`)"
            ))
        } else {
            None
        };
        if let Some(why) = refusal {
            let _ = reply.send(Err(HaError::Refused(why)));
            return;
        }
        match self.sup.queue_command(name, command) {
            Ok(answer) => {
                tokio::spawn(async move {
                    let _ = reply.send(answer.await.map_err(|_| HaError::Gone));
                });
            }
            Err(supervisor_core::driver::QueueError::Busy) => {
                let _ = reply.send(Err(HaError::Failed(
                    "the supervisor is busy (its command queue is full): nothing changed; try again"
                        .into(),
                )));
            }
            Err(_) => {
                let _ = reply.send(Err(HaError::Gone));
            }
        }
    }

    /// check → persist → apply: a refused command or a failed write changes nothing. The write
    /// goes to the [`writer`]; [`Driver::on_persisted`] applies the command and answers `reply`.
    fn command(&mut self, t: Instant, op: Op, reply: oneshot::Sender<Result<PeerState, String>>) {
        let rec = match self.core.check(t, op) {
            Ok(rec) => rec,
            Err(refused) => {
                let _ = reply.send(Err(refused.0));
                return;
            }
        };
        if rec == self.core.record() {
            let _ = reply.send(self.apply(t, op));
        } else {
            self.write(Write::Command { op, rec, reply });
        }
    }

    /// The second half of [`Driver::command`], once its record is durable.
    fn apply(&mut self, t: Instant, op: Op) -> Result<PeerState, String> {
        self.core.apply(t, op).map_err(|r| r.0)?;
        tracing::info!(op = describe(op), "HA command");
        Ok(self.stamped())
    }

    fn write(&mut self, w: Write) {
        if self.writes.send(w.record()).is_err() {
            // the writer ended: only when the driver is ending too
            if let Write::Command { reply, .. } = w {
                let _ = reply.send(Err("the HA manager is stopping: nothing changed".into()));
            }
            return;
        }
        self.in_flight.push_back(w);
    }

    /// The oldest write finished.
    fn on_persisted(&mut self, t: Instant, result: Result<(), String>) {
        let Some(w) = self.in_flight.pop_front() else {
            return; // not ours: every write queued is in `in_flight`
        };
        if result.is_ok() {
            self.durable = w.record();
        }
        match (w, result) {
            (Write::Core(_), Ok(())) => {}
            (Write::Core(_), Err(e)) => {
                tracing::error!(error = %e, "cannot persist the HA mode; retrying");
                self.core.on_persist_failed(t);
            }
            (Write::Command { reply, .. }, Err(e)) => {
                let _ = reply.send(Err(format!("{e}: nothing changed")));
            }
            (Write::Command { op, rec, reply }, Ok(())) => {
                // the pair may have moved while the record was written: check again
                let answer = match self.core.check(t, op) {
                    Ok(now) if now == rec => self.apply(t, op),
                    Ok(_) => Err(format!(
                        "the pair changed while \"{}\" was being written: nothing changed; try again",
                        describe(op)
                    )),
                    Err(refused) => Err(refused.0),
                };
                let _ = reply.send(answer);
                // the disk must end up holding the core's record, whatever was applied
                let last = self.in_flight.back().map_or(self.durable, Write::record);
                if last != self.core.record() {
                    self.write(Write::Core(self.core.record()));
                }
            }
        }
    }

    /// Runs one action (none waits: the work goes beside the driver and comes back as an
    /// event); `Some(reason)` for an HA reset, which the caller carries out.
    fn act(&mut self, action: Action) -> Option<String> {
        match action {
            Action::Persist(rec) => self.write(Write::Core(rec)),
            Action::StartServers { reason } => {
                tracing::warn!(%reason, servers = ?self.cfg.servers, "becoming primary: starting the HA-managed servers");
                let (sup, cfg) = (self.sup.clone(), self.cfg.clone());
                self.then(async move {
                    Event::Started(servers::start_all(&sup, &cfg.servers, cfg.start_timeout).await)
                });
            }
            Action::StopServers { reason } => {
                tracing::warn!(%reason, "stopping the HA-managed servers");
                let (sup, cfg) = (self.sup.clone(), self.cfg.clone());
                self.then(async move {
                    Event::Stopped(servers::stop_all(&sup, &cfg.servers, cfg.stop_timeout).await)
                });
            }
            Action::Fence => {
                tracing::warn!(peer = %self.cfg.peer, command = ?self.cfg.fence_command, "fencing the silent peer");
                let cfg = self.cfg.clone();
                self.then(async move { Event::Fenced(fence(&cfg).await) });
            }
            Action::AskPromote { claim } => {
                let (outbox, incarnation) = (self.outbox.clone(), self.incarnation);
                let timeout = self.cfg.timing.peer_timeout;
                self.then(async move {
                    let (reply, rx) = oneshot::channel();
                    let out = Outgoing {
                        request: Request::Promote { incarnation, claim },
                        timeout,
                        reply,
                    };
                    let granted = outbox.send(out).await.is_ok()
                        && matches!(rx.await, Ok(Ok(Reply::Promote(true))));
                    Event::PromoteAnswer { claim, granted }
                });
            }
            Action::HaReset { reason } => return Some(reason),
        }
        None
    }

    /// Runs `work` beside the driver; its result comes back as an event.
    fn then(&self, work: impl Future<Output = Event> + Send + 'static) {
        let events = self.events.clone();
        tokio::spawn(async move {
            let _ = events.send(work.await);
        });
    }

    async fn reset(&self, reason: &str) -> HaExit {
        reset_effects(
            &self.cfg.data_dir,
            &self.cfg.node,
            &self.cfg.servers,
            &self.sup,
            reason,
        )
        .await;
        if let Some(argv) = &self.cfg.reset_command {
            match run(argv, &self.cfg, Duration::from_secs(10)).await {
                Ok(()) => tracing::info!(command = ?argv, "reset command done"),
                Err(e) => tracing::error!(command = ?argv, error = %e, "reset command failed"),
            }
        }
        HaExit::Reset(reason.to_owned())
    }
}

/// How many of the pair's events the report keeps.
const HISTORY: usize = 8;

/// The driver's one clock read.
#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
