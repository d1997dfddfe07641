//! The contract between `nm-daemon` and its clients: HTTP/JSON routes, the request and response
//! bodies, and [`client::Client`], which speaks them over the Unix socket or TCP.
//!
//! Routes (all JSON unless noted; TCP requests carry `Authorization: Bearer TOKEN`):
//!
//! | method | path | body / query | answer |
//! |---|---|---|---|
//! | GET | `/v1/status` | | [`NodeStatus`] |
//! | GET | `/v1/servers` | | `[`[`ServerInfo`]`]` |
//! | GET | `/v1/servers/{name}` | | [`ServerInfo`] |
//! | POST | `/v1/servers/{name}/{command}` | `?wait=SECONDS` | [`CommandReply`] |
//! | GET | `/v1/servers/{name}/log` | `?tail=N&stream=stdout\|stderr&follow=true` | text |
//! | GET | `/v1/nm/log` | `?tail=N&follow=true&standby=true` | text |
//! | POST | `/v1/shutdown` | [`ShutdownRequest`] | [`ShutdownReply`] |
//! | GET | `/v1/ha` | | [`HaReply`] (no steps) |
//! | POST | `/v1/ha/{command}` | `start`, `stop`, `config`, `clear`, `peerdown`, `peerup`, `force-smith` | [`HaReply`] |
//! | POST | `/v1/ha/mode/{mode}` | `default`, `single`, `config`, `locked` | [`HaReply`] |
//! | GET | `/metrics` | | Prometheus text |
//!
//! Errors come as a non-2xx status with an [`ErrorBody`].

pub mod client;

pub use ha_modes::{
    HaReply, HaReport, Mode as HaMode, NodeReport, Status as HaStatus, Verdict as HaVerdict,
};
use serde::{Deserialize, Serialize};
pub use supervisor_core::{Command, ServerState};

/// The API version prefix.
pub const PREFIX: &str = "/v1";

/// Which node manager of the pair answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Serves requests and controls the servers.
    Active,
    /// Only watches the active.
    Standby,
}

/// `GET /v1/status`: the node manager itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's name from `nm.toml`.
    pub node: String,
    /// The answering daemon's PID.
    pub pid: i32,
    /// `active` or `standby`.
    pub role: Role,
    /// nm's version.
    pub version: String,
    /// When the daemon started (RFC 3339, UTC).
    pub started_at: String,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// The data directory.
    pub data_dir: String,
    /// The HTTP API address.
    pub listen: String,
    /// The standby node manager's PID; `null` without replication.
    pub standby_pid: Option<i32>,
    /// Takeovers by a standby since the pair started; 0 without replication.
    pub takeovers: u64,
    /// The standby node manager as the active sees it; `null` without replication.
    #[serde(default)]
    pub standby: Option<StandbyStatus>,
    /// The takeover that made this process the active; `null` when it started as the active.
    #[serde(default)]
    pub last_takeover: Option<TakeoverInfo>,
    /// The HA pair as this node last saw it (no exchange with the peer: `GET /v1/ha` does one);
    /// `null` without `[ha]`.
    #[serde(default)]
    pub ha: Option<HaReport>,
    /// How many servers are in each state (only states with at least one server).
    pub servers: std::collections::BTreeMap<String, usize>,
}

/// The standby node manager, in [`NodeStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandbyStatus {
    /// Its PID; `null` while none runs.
    pub pid: Option<i32>,
    /// `launching`, `attached` (watching the active), `replacing` (being killed to be replaced),
    /// `down` (none running, the next launch is due), `stopping` or `stopped`.
    pub state: String,
    /// Seconds since it was launched (or attached, for one started by hand); `null` without a
    /// PID.
    pub uptime_secs: Option<u64>,
    /// Standbys this active has launched (1 when the first one still runs).
    pub launches: u64,
    /// The loopback port of the standby link.
    pub port: u16,
    /// Link frames and handshakes dropped for failing authentication or decoding.
    pub rejected_frames: u64,
}

/// How this active came to be: a standby's takeover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeoverInfo {
    /// When it took over (RFC 3339, UTC).
    pub at: String,
    /// The previous active's PID, when the link had told it.
    pub from_pid: Option<i32>,
    /// `died` (the previous active's process ended) or `fenced` (it stopped answering for
    /// `standby_timeout` and the standby killed it).
    pub reason: String,
}

/// One server, as `server list` and `server status` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// Its name.
    pub name: String,
    /// Its state (exact strings of DESIGN §3).
    pub state: ServerState,
    /// The PID of its process group leader; `null` when no process runs.
    pub pid: Option<i32>,
    /// Restarts by nm since the last operator start.
    pub restart_count: u32,
    /// When it entered `state` (RFC 3339, UTC).
    pub since: String,
    /// Why it is in `state`, in a few words.
    pub reason: String,
    /// How its last process ended (`"exited with code 1"`, `"killed by signal 9"`), if it did.
    pub last_exit: Option<String>,
    /// Consecutive failed health probes; `null` without a health check.
    pub health_failures: Option<u32>,
    /// The command line.
    pub command: Vec<String>,
    /// Its stdout log file.
    pub stdout_log: String,
    /// Its stderr log file.
    pub stderr_log: String,
}

/// `POST /v1/servers/{name}/{command}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandReply {
    /// The command.
    pub command: Command,
    /// `false` when the server already was where the command leads (e.g. `start` of a running
    /// server).
    pub changed: bool,
    /// `false` when `wait` ran out before the server settled.
    pub settled: bool,
    /// The server after the command (and the wait).
    pub server: ServerInfo,
}

/// `POST /v1/shutdown` (stopNodeManager). Unknown fields are refused, so a misspelled
/// `stop_servers` never turns into "leave them running".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownRequest {
    /// Stop every server before the daemon exits (default: leave them running).
    #[serde(default)]
    pub stop_servers: bool,
}

/// The answer to a shutdown, sent before the daemon exits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShutdownReply {
    /// The daemon's PID, which is about to exit.
    pub pid: i32,
    /// Servers stopped before exiting.
    pub stopped: Vec<String>,
    /// Servers left running.
    pub left_running: Vec<String>,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// One line saying what was wrong.
    pub error: String,
}

/// Which output log of a server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// `NAME.out`
    #[default]
    Stdout,
    /// `NAME.err`
    Stderr,
}

/// Query of the server log route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Last N lines (default: all of the current file).
    #[serde(default)]
    pub tail: Option<usize>,
    /// Keep the answer open and stream what is appended.
    #[serde(default)]
    pub follow: bool,
    /// stdout or stderr (server logs only).
    #[serde(default)]
    pub stream: LogStream,
}

/// Query of the command route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandQuery {
    /// Wait up to this many seconds for the server to settle (e.g. `RUNNING` after `start`,
    /// `SHUTDOWN` after `stop`). 0 or absent: answer at once.
    #[serde(default)]
    pub wait: Option<f64>,
}
