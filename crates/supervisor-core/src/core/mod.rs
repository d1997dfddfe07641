//! The pure decision core: every server's lifecycle, restart budget and health, driven by inputs
//! and the current time, producing [`Action`]s and [`Event`]s. No I/O, no clock.
//!
//! Call order: [`Supervisor::new`], then one [`Supervisor::on_recovered`] per server (crash
//! recovery's decision, from the pure [`decide`]: adopted, started or left down), then any `on_*` input
//! in any order. After each input drain [`Supervisor::poll_action`] and [`Supervisor::poll_event`]
//! and sleep until [`Supervisor::next_deadline`]. Time never goes backwards between calls.

mod recovery;
mod restart;
mod state;
mod types;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

pub use recovery::{
    AutoStart, Boot, CrashRecovery, Down, Found, Leftovers, LockFile, LockFileStep, OperatorStops,
    Process, Recovered, Recovery, RecoveryPolicy, StopMarker, StopMarkerStep, decide,
};
pub use restart::{RestartDecision, RestartPolicy};
pub use state::ServerState;
pub use types::{
    Accepted, Action, Command, CommandError, DownCause, Event, Exit, Generation, Pid, ProbeResult,
    ServerView, Signal,
};

use crate::spec::{AutoRestart, ServerName, ServerSpec};

/// Timers a server can wait on, one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// `restart_delay` is over: spawn.
    Restart,
    /// `stop_timeout` is over: SIGKILL.
    StopKill,
    /// `health.start_timeout` is over without a good probe: the start failed.
    StartTimeout,
}

/// Who is stopping a server; decides what its stop leaves on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopBy {
    /// An operator (`stop`, `kill`, `restart`): the stop is recorded and stands across daemon
    /// restarts of the same boot.
    Operator,
    /// The node (`shutdown --stop-servers`): nothing is recorded; the next daemon start applies
    /// `auto_start`.
    Node,
}

/// Why the current process was started; decides what an exit during `STARTING` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StartKind {
    /// By an operator or `auto_start`: an exit during startup is a failed start, not restarted.
    Fresh,
    /// By the restart policy: an exit during startup counts as one more failure.
    Restart,
}

#[derive(Debug)]
struct Server {
    spec: Arc<ServerSpec>,
    state: ServerState,
    since: Instant,
    reason: String,
    generation: Generation,
    start_kind: StartKind,
    policy: RestartPolicy,
    restart_count: u32,
    timer: Option<(Instant, Timer)>,
    next_probe: Option<Instant>,
    probe_in_flight: bool,
    health_failures: u32,
    /// Start again once the current process is gone (operator `restart`).
    start_after_stop: bool,
    /// A failed start is being killed (start timeout).
    start_failed: bool,
    /// Who the current stop (`SHUTTING_DOWN`) is by.
    stop_by: StopBy,
    last_exit: Option<Exit>,
}

/// The decision core for all servers of one node.
#[derive(Debug)]
pub struct Supervisor {
    servers: BTreeMap<ServerName, Server>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
}

impl Supervisor {
    /// A core for these servers, all `UNKNOWN` until [`Supervisor::on_recovered`] is called for
    /// each. Names must be unique (the config layer checks); a later duplicate replaces an earlier.
    #[must_use]
    pub fn new(now: Instant, specs: impl IntoIterator<Item = Arc<ServerSpec>>) -> Self {
        let servers = specs
            .into_iter()
            .map(|spec| {
                let policy = RestartPolicy::new(
                    spec.auto_restart.after_failure(),
                    spec.restart_max,
                    spec.restart_interval,
                    spec.restart_delay,
                );
                let server = Server {
                    state: ServerState::Unknown,
                    since: now,
                    reason: "daemon starting".to_owned(),
                    generation: 0,
                    start_kind: StartKind::Fresh,
                    policy,
                    restart_count: 0,
                    timer: None,
                    next_probe: None,
                    probe_in_flight: false,
                    health_failures: 0,
                    start_after_stop: false,
                    start_failed: false,
                    stop_by: StopBy::Operator,
                    last_exit: None,
                    spec,
                };
                (server.spec.name.clone(), server)
            })
            .collect();
        Self {
            servers,
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Crash recovery's decision for `server` (from [`decide`]): adopt it, finish its interrupted
    /// stop, restart it (counted), start it fresh, leave it down or `UNKNOWN`. Unknown names are
    /// ignored.
    pub fn on_recovered(&mut self, now: Instant, server: &ServerName, decision: Recovered) {
        let Some(s) = self.servers.get_mut(server) else {
            return;
        };
        match decision {
            Recovered::StartFresh => {
                Self::spawn(
                    s,
                    &mut self.actions,
                    &mut self.events,
                    now,
                    StartKind::Fresh,
                    "auto_start",
                );
            }
            Recovered::LeaveDown(Down::NotAutoStarted) => {
                Self::set_state(
                    s,
                    &mut self.events,
                    now,
                    ServerState::Shutdown,
                    "not started (auto_start = false)",
                );
            }
            Recovered::FinishStop {
                pid,
                suspended,
                restart_count,
            } => {
                s.generation += 1;
                s.restart_count = restart_count;
                s.start_kind = StartKind::Restart;
                s.state = if suspended {
                    ServerState::Suspended
                } else {
                    ServerState::Running
                };
                let why = format!(
                    "adopted pid {pid}; finishing the operator stop the previous daemon began"
                );
                Self::stop(
                    s,
                    &mut self.actions,
                    &mut self.events,
                    now,
                    (Signal::Term, StopBy::Operator),
                    &why,
                );
            }
            Recovered::Adopt {
                pid,
                suspended,
                restart_count,
            } => {
                s.generation += 1;
                s.restart_count = restart_count;
                s.start_kind = StartKind::Restart;
                if suspended {
                    let why = format!("adopted pid {pid} (stopped)");
                    Self::set_state(s, &mut self.events, now, ServerState::Suspended, &why);
                } else if let Some(start_timeout) = s.spec.health.as_ref().map(|h| h.start_timeout)
                {
                    // RUNNING only after a good health check, adopted or not; a failing one is
                    // a failed restart (start_kind), answered by the restart policy
                    let why = format!("adopted pid {pid}; waiting for a good health check");
                    Self::set_state(s, &mut self.events, now, ServerState::Starting, &why);
                    s.timer = Some((later(now, start_timeout), Timer::StartTimeout));
                    s.next_probe = Some(now);
                } else {
                    let why = format!("adopted pid {pid}");
                    Self::set_state(s, &mut self.events, now, ServerState::Running, &why);
                }
            }
            Recovered::Restart {
                restart_count,
                detail,
            } => {
                s.restart_count = restart_count;
                Self::set_state(s, &mut self.events, now, ServerState::Failed, &detail);
                Self::after_crash(s, &mut self.actions, &mut self.events, now);
            }
            Recovered::LeaveDown(Down::NotMeantToRun {
                restart_count,
                detail,
            }) => {
                // the lock file stays: a server that gave up stays given up across daemon
                // restarts, until an operator starts it
                s.restart_count = restart_count;
                Self::set_state(
                    s,
                    &mut self.events,
                    now,
                    ServerState::FailedNotRestartable,
                    &format!("{detail}; it was not meant to run"),
                );
            }
            Recovered::LeaveDown(Down::Stopped { cause, at }) => {
                Self::set_state(
                    s,
                    &mut self.events,
                    now,
                    ServerState::Shutdown,
                    &cause.reason(at.as_deref()),
                );
            }
            Recovered::Unknown { detail } => {
                Self::set_state(s, &mut self.events, now, ServerState::Unknown, &detail);
            }
        }
    }

    /// Restarts a previous daemon counted for `server`, as their age at `now`; call before
    /// [`Supervisor::on_recovered`], so the restart budget carries over a daemon restart.
    /// Unknown names are ignored.
    pub fn on_restart_history(
        &mut self,
        now: Instant,
        server: &ServerName,
        ages: &[std::time::Duration],
    ) {
        if let Some(s) = self.servers.get_mut(server) {
            s.policy.seed(
                ages.iter()
                    .filter_map(|&age| now.checked_sub(age))
                    .collect(),
            );
        }
    }

    /// The restarts counted in `server`'s current window (what a lock file keeps), oldest first.
    #[must_use]
    pub fn restart_history(&self, server: &ServerName, now: Instant) -> Vec<Instant> {
        self.servers
            .get(server)
            .map_or_else(Vec::new, |s| s.policy.in_window(now).collect())
    }

    /// An operator's command. `Err` changes nothing.
    ///
    /// # Errors
    /// [`CommandError::NoSuchServer`], or [`CommandError::NotNow`] when the command does not apply
    /// in the server's state (e.g. `resume` of a server that is not `SUSPENDED`).
    pub fn on_command(
        &mut self,
        now: Instant,
        server: &str,
        command: Command,
    ) -> Result<Accepted, CommandError> {
        let name =
            ServerName::new(server).map_err(|_| CommandError::NoSuchServer(server.to_owned()))?;
        let s = self
            .servers
            .get_mut(&name)
            .ok_or_else(|| CommandError::NoSuchServer(server.to_owned()))?;
        let not_now = |s: &Server| CommandError::NotNow {
            server: name.clone(),
            command,
            state: s.state,
        };
        let (actions, events) = (&mut self.actions, &mut self.events);
        use ServerState as St;
        match command {
            Command::Start => match s.state {
                St::Starting | St::Running | St::Suspended => Ok(Accepted::AlreadyDone),
                St::Failed => Err(not_now(s)), // its process still runs: stop or restart it
                St::ShuttingDown => {
                    s.start_after_stop = true;
                    Ok(Accepted::Changed)
                }
                St::Shutdown | St::FailedRestarting | St::FailedNotRestartable | St::Unknown => {
                    Self::operator_start(s, actions, events, now, "operator start");
                    Ok(Accepted::Changed)
                }
            },
            Command::Stop | Command::Kill => {
                s.start_after_stop = false;
                let signal = if command == Command::Stop {
                    Signal::Term
                } else {
                    Signal::Kill
                };
                if s.state.has_process() {
                    if s.state == St::ShuttingDown && signal == Signal::Term {
                        return Ok(Accepted::AlreadyDone);
                    }
                    Self::stop(
                        s,
                        actions,
                        events,
                        now,
                        (signal, StopBy::Operator),
                        &format!("operator {}", command.as_str()),
                    );
                    Ok(Accepted::Changed)
                } else if s.state == St::Shutdown {
                    Ok(Accepted::AlreadyDone)
                } else {
                    s.timer = None;
                    actions.push_back(Action::RecordDown {
                        server: name.clone(),
                        cause: DownCause::Operator,
                    });
                    Self::set_state(
                        s,
                        events,
                        now,
                        St::Shutdown,
                        &DownCause::Operator.reason(None),
                    );
                    Ok(Accepted::Changed)
                }
            }
            Command::Restart => {
                if s.state == St::ShuttingDown {
                    // already stopping: start once it is down, without re-arming the SIGKILL
                    s.start_after_stop = true;
                } else if s.state.has_process() {
                    Self::stop(
                        s,
                        actions,
                        events,
                        now,
                        (Signal::Term, StopBy::Operator),
                        "operator restart",
                    );
                    s.start_after_stop = true;
                } else {
                    Self::operator_start(s, actions, events, now, "operator restart");
                }
                Ok(Accepted::Changed)
            }
            Command::Suspend => match s.state {
                St::Suspended => Ok(Accepted::AlreadyDone),
                // not STARTING: a suspended start could never pass its first health check
                St::Running | St::Failed => {
                    actions.push_back(Action::Signal {
                        server: name.clone(),
                        generation: s.generation,
                        signal: Signal::Stop,
                    });
                    s.timer = None;
                    s.next_probe = None;
                    Self::set_state(s, events, now, St::Suspended, "operator suspend");
                    Ok(Accepted::Changed)
                }
                _ => Err(not_now(s)),
            },
            Command::Resume => match s.state {
                St::Suspended => {
                    actions.push_back(Action::Signal {
                        server: name.clone(),
                        generation: s.generation,
                        signal: Signal::Cont,
                    });
                    s.health_failures = 0;
                    Self::set_state(s, events, now, St::Running, "operator resume");
                    Self::schedule_probe(s, now);
                    Ok(Accepted::Changed)
                }
                St::Running | St::Starting => Ok(Accepted::AlreadyDone),
                _ => Err(not_now(s)),
            },
        }
    }

    /// The executor spawned `generation`'s process. A server without a health check is
    /// `RUNNING` at once; with one, it stays `STARTING` until its first good probe.
    pub fn on_spawned(
        &mut self,
        now: Instant,
        server: &ServerName,
        generation: Generation,
        pid: Pid,
    ) {
        let Some(s) = self.servers.get_mut(server) else {
            return;
        };
        if s.generation != generation || s.state != ServerState::Starting {
            return;
        }
        match &s.spec.health {
            None => Self::set_state(
                s,
                &mut self.events,
                now,
                ServerState::Running,
                &format!("started, pid {pid}"),
            ),
            Some(h) => {
                s.reason = format!("started, pid {pid}; waiting for its first good health check");
                s.timer = Some((later(now, h.start_timeout), Timer::StartTimeout));
                s.next_probe = Some(now);
            }
        }
    }

    /// The process of `generation` exited. Older generations are ignored.
    pub fn on_exited(
        &mut self,
        now: Instant,
        server: &ServerName,
        generation: Generation,
        exit: Exit,
    ) {
        let Some(s) = self.servers.get_mut(server) else {
            return;
        };
        if s.generation != generation || !s.state.has_process() {
            return;
        }
        s.last_exit = Some(exit);
        s.next_probe = None;
        s.probe_in_flight = false;
        let (actions, events) = (&mut self.actions, &mut self.events);
        if let (ServerState::Running | ServerState::Suspended | ServerState::Failed, Some(cause)) =
            (s.state, Self::stopped_on_purpose(s, exit))
        {
            // the WebLogic Node Manager "determines from the … process exit code" whether a
            // server needs a restart: this one stopped itself. Not counted, not restarted, and
            // recorded so that a daemon restart does not start it again (not meant to run
            // first: a crash between the two writes still leaves it down)
            s.timer = None;
            actions.push_back(Action::MarkIntent {
                server: server.clone(),
                meant_to_run: false,
            });
            actions.push_back(Action::RecordDown {
                server: server.clone(),
                cause,
            });
            Self::set_state(s, events, now, ServerState::Shutdown, &cause.reason(None));
            return;
        }
        match s.state {
            ServerState::ShuttingDown => {
                s.timer = None;
                if s.start_after_stop {
                    s.start_after_stop = false;
                    Self::set_state(
                        s,
                        events,
                        now,
                        ServerState::Shutdown,
                        &format!("stopped ({exit})"),
                    );
                    Self::operator_start(s, actions, events, now, "operator restart");
                } else if s.stop_by == StopBy::Operator {
                    actions.push_back(Action::RecordDown {
                        server: server.clone(),
                        cause: DownCause::Operator,
                    });
                    // the time is added once the stop is recorded (on_down_recorded)
                    let why = format!("{} ({exit})", DownCause::Operator.reason(None));
                    Self::set_state(s, events, now, ServerState::Shutdown, &why);
                } else {
                    actions.push_back(Action::RemoveLock {
                        server: server.clone(),
                    });
                    let why = format!("stopped with the node ({exit})");
                    Self::set_state(s, events, now, ServerState::Shutdown, &why);
                }
            }
            ServerState::Starting if s.start_kind == StartKind::Fresh => {
                let why = if s.start_failed {
                    format!("start failed: no good health check within start_timeout ({exit})")
                } else {
                    format!("start failed: {exit} during startup")
                };
                Self::give_up(s, actions, events, now, &why);
            }
            _ => {
                let why = if s.start_failed {
                    format!("start failed ({exit})")
                } else {
                    exit.to_string()
                };
                Self::set_state(s, events, now, ServerState::Failed, &why);
                Self::after_crash(s, actions, events, now);
            }
        }
    }

    /// The executor recorded that `server` is down on purpose ([`Action::RecordDown`]), at
    /// `at` (wall clock, RFC 3339): its reason now says when. Ignored unless it is still
    /// `SHUTDOWN`.
    pub fn on_down_recorded(&mut self, server: &ServerName, cause: DownCause, at: &str) {
        if let Some(s) = self.servers.get_mut(server)
            && s.state == ServerState::Shutdown
        {
            s.reason = cause.reason(Some(at));
        }
    }

    /// The node is stopping with its servers (`shutdown --stop-servers`): every server with a
    /// process gets SIGTERM (SIGKILL after its `stop_timeout`) and a pending restart is dropped.
    /// This is no operator stop: nothing is recorded, so the next daemon start applies
    /// `auto_start`. A stop already under way is left to finish as it began. Returns the servers
    /// it stops, by name.
    pub fn on_node_stop(&mut self, now: Instant) -> Vec<ServerName> {
        let mut stopped = vec![];
        for (name, s) in &mut self.servers {
            let (actions, events) = (&mut self.actions, &mut self.events);
            match s.state {
                ServerState::ShuttingDown => s.start_after_stop = false,
                st if st.has_process() => {
                    s.start_after_stop = false;
                    Self::stop(
                        s,
                        actions,
                        events,
                        now,
                        (Signal::Term, StopBy::Node),
                        "stopping with the node",
                    );
                }
                ServerState::FailedRestarting => {
                    s.timer = None;
                    actions.push_back(Action::RemoveLock {
                        server: name.clone(),
                    });
                    Self::set_state(
                        s,
                        events,
                        now,
                        ServerState::Shutdown,
                        "stopped with the node",
                    );
                }
                _ => continue,
            }
            stopped.push(name.clone());
        }
        stopped
    }

    /// A health probe of `generation` finished.
    pub fn on_probe(
        &mut self,
        now: Instant,
        server: &ServerName,
        generation: Generation,
        result: ProbeResult,
    ) {
        let Some(s) = self.servers.get_mut(server) else {
            return;
        };
        if s.generation != generation || !s.probe_in_flight {
            return;
        }
        s.probe_in_flight = false;
        let Some(health) = s.spec.health.clone() else {
            return;
        };
        let (actions, events) = (&mut self.actions, &mut self.events);
        match (s.state, result) {
            (ServerState::Starting, ProbeResult::Healthy) if !s.start_failed => {
                s.timer = None;
                s.health_failures = 0;
                Self::set_state(
                    s,
                    events,
                    now,
                    ServerState::Running,
                    "first health check passed",
                );
            }
            (ServerState::Starting, ProbeResult::Unhealthy(_)) => {} // not counted until start_timeout
            (ServerState::Running, ProbeResult::Healthy) => s.health_failures = 0,
            (ServerState::Failed, ProbeResult::Healthy) if !s.spec.auto_kill_if_failed => {
                s.health_failures = 0;
                Self::set_state(
                    s,
                    events,
                    now,
                    ServerState::Running,
                    "health check passed again",
                );
            }
            (ServerState::Running | ServerState::Failed, ProbeResult::Unhealthy(why)) => {
                s.health_failures = s.health_failures.saturating_add(1);
                if s.state == ServerState::Running && s.health_failures >= health.failure_threshold
                {
                    let why = format!(
                        "health check failed {} times in a row: {why}",
                        s.health_failures
                    );
                    Self::set_state(s, events, now, ServerState::Failed, &why);
                    if s.spec.auto_kill_if_failed {
                        actions.push_back(Action::Signal {
                            server: server.clone(),
                            generation,
                            signal: Signal::Kill,
                        });
                        s.next_probe = None;
                        return;
                    }
                }
            }
            _ => return,
        }
        if matches!(
            s.state,
            ServerState::Starting | ServerState::Running | ServerState::Failed
        ) {
            s.next_probe = Some(later(now, health.interval));
        }
    }

    /// An action could not be carried out. A failed spawn is a failed start; a failed signal or
    /// lock write is only reported (the process state is learned from its exit).
    pub fn on_action_failed(&mut self, now: Instant, action: &Action, reason: &str) {
        let Action::Spawn {
            server, generation, ..
        } = action
        else {
            if let Action::Probe { server, generation } = action {
                self.on_probe(
                    now,
                    server,
                    *generation,
                    ProbeResult::Unhealthy(reason.to_owned()),
                );
            }
            return;
        };
        let Some(s) = self.servers.get_mut(server) else {
            return;
        };
        if s.generation != *generation || s.state != ServerState::Starting {
            return;
        }
        let why = format!("start failed: {reason}");
        match s.start_kind {
            StartKind::Fresh => Self::give_up(s, &mut self.actions, &mut self.events, now, &why),
            StartKind::Restart => {
                Self::set_state(s, &mut self.events, now, ServerState::Failed, &why);
                Self::after_crash(s, &mut self.actions, &mut self.events, now);
            }
        }
    }

    /// Fires every timer due at `now`. Calling it early, late or twice is harmless.
    pub fn on_timeout(&mut self, now: Instant) {
        for (name, s) in &mut self.servers {
            if let Some((at, timer)) = s.timer
                && at <= now
            {
                s.timer = None;
                match timer {
                    Timer::Restart if s.state == ServerState::FailedRestarting => {
                        s.restart_count = s.restart_count.saturating_add(1);
                        Self::spawn(
                            s,
                            &mut self.actions,
                            &mut self.events,
                            now,
                            StartKind::Restart,
                            "restart",
                        );
                    }
                    Timer::StopKill if s.state == ServerState::ShuttingDown => {
                        s.reason =
                            format!("did not stop within {:?}: SIGKILL", s.spec.stop_timeout);
                        self.actions.push_back(Action::Signal {
                            server: name.clone(),
                            generation: s.generation,
                            signal: Signal::Kill,
                        });
                    }
                    Timer::StartTimeout if s.state == ServerState::Starting => {
                        s.start_failed = true;
                        s.next_probe = None;
                        s.reason =
                            "no good health check within start_timeout: killing it".to_owned();
                        self.actions.push_back(Action::Signal {
                            server: name.clone(),
                            generation: s.generation,
                            signal: Signal::Kill,
                        });
                    }
                    _ => {}
                }
            }
            if let Some(at) = s.next_probe
                && at <= now
                && !s.probe_in_flight
            {
                s.next_probe = None;
                s.probe_in_flight = true;
                self.actions.push_back(Action::Probe {
                    server: name.clone(),
                    generation: s.generation,
                });
            }
        }
    }

    /// The next action for the executor, oldest first.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next state change, oldest first.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest instant [`Supervisor::on_timeout`] has work to do, if any.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.servers
            .values()
            .flat_map(|s| {
                [
                    s.timer.map(|(at, _)| at),
                    s.next_probe.filter(|_| !s.probe_in_flight),
                ]
            })
            .flatten()
            .min()
    }

    /// One server's view.
    #[must_use]
    pub fn server(&self, name: &ServerName) -> Option<ServerView> {
        self.servers.get(name).map(|s| view(name, s))
    }

    /// Every server's view, by name.
    pub fn servers(&self) -> impl Iterator<Item = ServerView> + '_ {
        self.servers.iter().map(|(n, s)| view(n, s))
    }

    /// A server's spec.
    #[must_use]
    pub fn spec(&self, name: &ServerName) -> Option<&Arc<ServerSpec>> {
        self.servers.get(name).map(|s| &s.spec)
    }

    fn set_state(
        s: &mut Server,
        events: &mut VecDeque<Event>,
        now: Instant,
        to: ServerState,
        why: &str,
    ) {
        s.reason = why.to_owned();
        if s.state == to {
            return;
        }
        events.push_back(Event {
            server: s.spec.name.clone(),
            from: s.state,
            to,
            at: now,
            reason: why.to_owned(),
        });
        s.state = to;
        s.since = now;
    }

    fn spawn(
        s: &mut Server,
        actions: &mut VecDeque<Action>,
        events: &mut VecDeque<Event>,
        now: Instant,
        kind: StartKind,
        why: &str,
    ) {
        s.generation += 1;
        s.start_kind = kind;
        s.timer = None;
        s.next_probe = None;
        s.probe_in_flight = false;
        s.health_failures = 0;
        s.start_failed = false;
        s.start_after_stop = false;
        actions.push_back(Action::Spawn {
            server: s.spec.name.clone(),
            generation: s.generation,
            restart_count: s.restart_count,
        });
        Self::set_state(s, events, now, ServerState::Starting, why);
    }

    /// An operator's start: a fresh restart budget, and an exit during startup is a failed start.
    fn operator_start(
        s: &mut Server,
        actions: &mut VecDeque<Action>,
        events: &mut VecDeque<Event>,
        now: Instant,
        why: &str,
    ) {
        s.policy.reset();
        s.restart_count = 0;
        Self::spawn(s, actions, events, now, StartKind::Fresh, why);
    }

    /// `SHUTTING_DOWN` by `signal`. An operator's stop is marked not meant to run first (a daemon
    /// that dies meanwhile finishes it); a node stop is not (a daemon that dies meanwhile did not
    /// stop the node: the next one recovers what was running).
    fn stop(
        s: &mut Server,
        actions: &mut VecDeque<Action>,
        events: &mut VecDeque<Event>,
        now: Instant,
        (signal, by): (Signal, StopBy),
        why: &str,
    ) {
        let server = s.spec.name.clone();
        s.stop_by = by;
        if by == StopBy::Operator {
            actions.push_back(Action::MarkIntent {
                server: server.clone(),
                meant_to_run: false,
            });
        }
        if s.state == ServerState::Suspended && signal == Signal::Term {
            // a stopped process cannot act on SIGTERM until it is continued
            actions.push_back(Action::Signal {
                server: server.clone(),
                generation: s.generation,
                signal: Signal::Cont,
            });
        }
        actions.push_back(Action::Signal {
            server,
            generation: s.generation,
            signal,
        });
        s.next_probe = None;
        s.timer =
            (signal == Signal::Term).then(|| (later(now, s.spec.stop_timeout), Timer::StopKill));
        Self::set_state(s, events, now, ServerState::ShuttingDown, why);
    }

    /// The server's process is gone unexpectedly (state already `FAILED`): ask the policy.
    fn after_crash(
        s: &mut Server,
        actions: &mut VecDeque<Action>,
        events: &mut VecDeque<Event>,
        now: Instant,
    ) {
        let crash = s.reason.clone();
        match s.policy.on_exit(now) {
            RestartDecision::RestartAt { at, attempt } => {
                s.timer = Some((at, Timer::Restart));
                let why = format!(
                    "{crash}; restart {attempt} of {} within {:?}",
                    s.spec.restart_max, s.spec.restart_interval
                );
                Self::set_state(s, events, now, ServerState::FailedRestarting, &why);
            }
            RestartDecision::GiveUp { exits_in_window } => {
                let why = format!(
                    "{crash}; restart budget spent ({} restarts within {:?}, {exits_in_window} failures)",
                    s.spec.restart_max, s.spec.restart_interval
                );
                Self::give_up(s, actions, events, now, &why);
            }
            RestartDecision::StayDown => {
                Self::give_up(
                    s,
                    actions,
                    events,
                    now,
                    &format!("{crash}; auto_restart is off"),
                );
            }
        }
    }

    fn give_up(
        s: &mut Server,
        actions: &mut VecDeque<Action>,
        events: &mut VecDeque<Event>,
        now: Instant,
        why: &str,
    ) {
        s.timer = None;
        s.next_probe = None;
        actions.push_back(Action::MarkIntent {
            server: s.spec.name.clone(),
            meant_to_run: false,
        });
        Self::set_state(s, events, now, ServerState::FailedNotRestartable, why);
    }

    /// Whether `exit` of a running server is a stop on purpose: a code of its
    /// `success_exit_codes`, unless `auto_restart = "always"`. A signal or an unknown status
    /// (an adopted process) never is.
    fn stopped_on_purpose(s: &Server, exit: Exit) -> Option<DownCause> {
        match exit {
            Exit::Code(code)
                if s.spec.auto_restart != AutoRestart::Always
                    && u8::try_from(code).is_ok_and(|c| s.spec.success_exit_codes.contains(&c)) =>
            {
                Some(DownCause::Exited { code })
            }
            _ => None,
        }
    }

    fn schedule_probe(s: &mut Server, now: Instant) {
        if s.spec.health.is_some() {
            s.next_probe = Some(now);
        }
    }
}

fn view(name: &ServerName, s: &Server) -> ServerView {
    ServerView {
        name: name.clone(),
        state: s.state,
        generation: s.generation,
        restart_count: s.restart_count,
        since: s.since,
        health_failures: s.health_failures,
        reason: s.reason.clone(),
        last_exit: s.last_exit,
    }
}

/// `at + d`, or a far-future instant when that is past what `Instant` holds.
///
/// The config reader keeps every duration within a day or a year, so this is defence in depth:
/// a spec built some other way may make a deadline never come, but never panics the core.
pub(crate) fn later(at: Instant, d: std::time::Duration) -> Instant {
    /// About 30 years: later than any deadline that is meant to come.
    const FAR: std::time::Duration = std::time::Duration::from_secs(30 * 365 * 24 * 3600);
    at.checked_add(d)
        .or_else(|| at.checked_add(FAR))
        .unwrap_or(at)
}

#[cfg(test)]
mod tests;
