//! What `nm-cli ha …` shows: both nodes' modes and statuses (the StorNext HA Manager: "Following every command,
//! the CLI reports the modes and statuses of both servers").

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::core::Ha;
use crate::mode::{Mode, Status, Verdict};

/// The pair as one node sees it (`GET /v1/ha`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaReport {
    /// Whether `nm.toml` has an `[ha]` section. Without one the node reports the default state
    /// that lets a node without HA run everything (the StorNext HA Manager).
    pub configured: bool,
    /// This node.
    pub local: NodeReport,
    /// Its peer.
    pub peer: NodeReport,
    /// Whether the peer communicates.
    pub communicating: bool,
    /// Milliseconds since the peer was last heard from; `null` when never.
    pub peer_heard_ms_ago: Option<u64>,
    /// The pair state `local-peer`, e.g. `"default-locked"`.
    pub state: String,
    /// Whether the HA Manager allows it.
    pub verdict: Verdict,
    /// Fencing of a silent peer: `idle`, `delaying`, `fencing`, `failed` or `fenced`.
    pub fence: String,
    /// The HA-managed servers.
    pub servers: Vec<String>,
    /// Frames and handshakes on the HA link dropped for failing authentication or decoding.
    pub rejected_frames: u64,
    /// This node is starting the HA-managed servers (it is primary already).
    pub starting: bool,
    /// This node is stopping the HA-managed servers (it stays primary until they are down).
    pub stopping: bool,
    /// Fence commands that reported success (exit 0) since this daemon started.
    #[serde(default)]
    pub fences: u64,
    /// The peer left in a planned stop and was not heard again since (it counts as certified
    /// down for now when its HA-managed servers were verified stopped).
    #[serde(default)]
    pub peer_left: bool,
    /// The pair's last events, oldest first, each stamped with the time (e.g.
    /// `"2026-12-02T07:31:02.120Z peer node1 left (planned stop), its HA-managed servers stopped"`).
    #[serde(default)]
    pub events: Vec<String>,
}

/// One node of the pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    /// Its name.
    pub node: String,
    /// Its mode; for a peer that does not communicate, the mode it is taken to be in:
    /// `default` (assumed) or `peerdown` (certified).
    pub mode: Mode,
    /// Its status; `null` for a peer that does not communicate.
    pub status: Option<Status>,
    /// `ha_idle_failed_startup`; `null` for a peer that does not communicate.
    pub ha_idle_failed_startup: Option<bool>,
    /// The mode is assumed or certified, not reported by the node itself.
    pub assumed: bool,
}

impl HaReport {
    /// The report of a node without `[ha]`: default mode, running, no peer.
    #[must_use]
    pub fn unconfigured(node: &str) -> Self {
        Self {
            configured: false,
            local: NodeReport {
                node: node.to_owned(),
                mode: Mode::Default,
                status: Some(Status::Running),
                ha_idle_failed_startup: Some(false),
                assumed: false,
            },
            peer: NodeReport {
                node: String::new(),
                mode: Mode::Default,
                status: None,
                ha_idle_failed_startup: None,
                assumed: true,
            },
            communicating: false,
            peer_heard_ms_ago: None,
            state: "default-default".into(),
            verdict: Verdict::Allowed,
            fence: "idle".into(),
            servers: vec![],
            rejected_frames: 0,
            starting: false,
            stopping: false,
            fences: 0,
            peer_left: false,
            events: vec![],
        }
    }

    /// The report of a configured node's core at `now`.
    #[must_use]
    pub fn of(ha: &Ha, now: Instant, peer_name: &str, servers: &[String]) -> Self {
        let me = ha.state_for_peer();
        let (left, right, verdict) = ha.pair(now);
        let peer = ha.peer(now);
        Self {
            configured: true,
            local: NodeReport {
                node: me.node.clone(),
                mode: me.mode,
                status: Some(me.status),
                ha_idle_failed_startup: Some(me.ha_idle_failed_startup),
                assumed: false,
            },
            peer: NodeReport {
                node: peer_name.to_owned(),
                mode: right,
                status: peer.map(|p| p.status),
                ha_idle_failed_startup: peer.map(|p| p.ha_idle_failed_startup),
                assumed: peer.is_none() || right == Mode::Peerdown,
            },
            communicating: peer.is_some(),
            peer_heard_ms_ago: ha
                .heard_ago(now)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            state: crate::mode::pair_name(left, right),
            verdict,
            fence: ha.fence_state().as_str().to_owned(),
            servers: servers.to_vec(),
            rejected_frames: 0,
            starting: ha.starting(),
            stopping: ha.stopping(),
            fences: ha.fences(),
            peer_left: ha.peer_left(),
            events: vec![],
        }
    }
}

/// What a `nm-cli ha` command answers: the steps it took, then the pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaReply {
    /// What was done, in order (e.g. `"node2: mode locked"`); empty for `status`.
    pub steps: Vec<String>,
    /// Both nodes afterwards.
    pub report: HaReport,
}
