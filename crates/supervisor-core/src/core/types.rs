//! The core's vocabulary: what goes in (commands, exits, probe results), what comes out
//! (actions, events) and what is shown (views). The transitions are in [`Supervisor`](super::Supervisor).

use std::time::Instant;

use super::ServerState;
use crate::spec::ServerName;

/// A process id.
pub type Pid = i32;

/// Each spawn or adoption of a server gets a new generation; exits and probe results of an older
/// generation are ignored, so a late report about a previous process never moves the current one.
pub type Generation = u64;

/// An operator's request about one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Start it (and forget its restart window).
    Start,
    /// SIGTERM the process group, SIGKILL after `stop_timeout`. Never undone by a restart.
    Stop,
    /// Stop, then start.
    Restart,
    /// SIGKILL the process group now. Never undone by a restart.
    Kill,
    /// SIGSTOP the process group.
    Suspend,
    /// SIGCONT the process group.
    Resume,
}

impl Command {
    /// The command's name as the CLI spells it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Restart => "restart",
            Self::Kill => "kill",
            Self::Suspend => "suspend",
            Self::Resume => "resume",
        }
    }
}

/// What an accepted command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// The server is moving toward the requested state.
    Changed,
    /// It already was in the requested state; nothing changed.
    AlreadyDone,
}

/// A refused command. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// No server has this name.
    #[error("no server named {0:?}")]
    NoSuchServer(String),
    /// The command does not apply in the server's current state.
    #[error("cannot {} server \"{server}\": it is {state}", command.as_str())]
    NotNow {
        /// The server.
        server: ServerName,
        /// The refused command.
        command: Command,
        /// Its state at the time.
        state: ServerState,
    },
}

/// A process signal the executor sends to a server's whole process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: please stop.
    Term,
    /// SIGKILL: stop now.
    Kill,
    /// SIGSTOP: suspend.
    Stop,
    /// SIGCONT: resume.
    Cont,
}

/// Work for the executor. Each result comes back as an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Spawn the server in a new session, write its lock file, then call
    /// [`Supervisor::on_spawned`](super::Supervisor::on_spawned) (or [`Supervisor::on_action_failed`](super::Supervisor::on_action_failed)).
    Spawn {
        /// The server.
        server: ServerName,
        /// The generation the new process belongs to.
        generation: Generation,
        /// Restarts by nm since the last operator start, this spawn included; kept in the lock
        /// file so the count survives a daemon restart.
        restart_count: u32,
    },
    /// Send a signal to the process group of `generation`. A process that already exited is not
    /// an error.
    Signal {
        /// The server.
        server: ServerName,
        /// Whose process group.
        generation: Generation,
        /// Which signal.
        signal: Signal,
    },
    /// Run one health probe of the server, then call [`Supervisor::on_probe`](super::Supervisor::on_probe).
    Probe {
        /// The server.
        server: ServerName,
        /// The process probed.
        generation: Generation,
    },
    /// Rewrite the lock file: whether the server is meant to run if the daemon dies now.
    MarkIntent {
        /// The server.
        server: ServerName,
        /// `false` once an operator stopped it, its restarts gave up, or it exited with a success
        /// code.
        meant_to_run: bool,
    },
    /// The server is down on purpose: record why in its marker `servers/NAME.stopped` (with
    /// the boot and the time, durably), then remove its lock file, then call
    /// [`Supervisor::on_down_recorded`](super::Supervisor::on_down_recorded). The marker keeps
    /// it down across daemon restarts of the same boot, until an operator starts it.
    RecordDown {
        /// The server.
        server: ServerName,
        /// Why it is down.
        cause: DownCause,
    },
    /// The server is down with the node (`shutdown --stop-servers`): remove its lock file and
    /// record nothing (and clear a marker left from before its last start), so the next daemon
    /// start applies `auto_start`.
    RemoveLock {
        /// The server.
        server: ServerName,
    },
}

/// Why a server is down on purpose, as its marker (`servers/NAME.stopped`) records it. Within
/// the boot it was recorded in, such a server stays down across daemon restarts until an
/// operator starts it; after a reboot `auto_start` decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum DownCause {
    /// An operator's `stop` or `kill`.
    Operator,
    /// Its process exited, while it ran, with one of its `success_exit_codes`.
    Exited {
        /// The exit status.
        code: i32,
    },
}

impl DownCause {
    /// The reason a server down for this cause shows, with the time it happened (RFC 3339)
    /// when known: `stopped by operator at 2026-12-02T06:27:22.028Z`, `exited with status 0`.
    #[must_use]
    pub fn reason(self, at: Option<&str>) -> String {
        let what = match self {
            Self::Operator => "stopped by operator".to_owned(),
            Self::Exited { code } => format!("exited with status {code}"),
        };
        match at {
            Some(at) => format!("{what} at {at}"),
            None => what,
        }
    }
}

/// Why a server changed state; for logs and the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The server.
    pub server: ServerName,
    /// State before.
    pub from: ServerState,
    /// State after.
    pub to: ServerState,
    /// When it happened.
    pub at: Instant,
    /// Why, in a few words ("exited with code 1", "operator stop", "health check failed 3 times").
    pub reason: String,
}

/// How a process ended, as the executor learned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this status code.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
    /// Gone, status unknown (an adopted process is not our child, so the kernel keeps its status
    /// from us).
    Unknown,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Code(c) => write!(f, "exited with code {c}"),
            Self::Signal(s) => write!(f, "killed by signal {s}"),
            Self::Unknown => f.write_str("exited (status unknown: adopted process)"),
        }
    }
}

/// A health probe's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    /// Healthy.
    Healthy,
    /// Unhealthy, with the reason ("connection refused", "exit code 1", "timed out after 5s").
    Unhealthy(String),
}

/// A read-only view of one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerView {
    /// The server.
    pub name: ServerName,
    /// Its state.
    pub state: ServerState,
    /// The generation of its current (or last) process; 0 if never started.
    pub generation: Generation,
    /// Restarts by nm since the last operator start.
    pub restart_count: u32,
    /// When it entered `state`.
    pub since: Instant,
    /// Consecutive failed health probes.
    pub health_failures: u32,
    /// The last state change's reason.
    pub reason: String,
    /// How its last process ended, if it did.
    pub last_exit: Option<Exit>,
}
