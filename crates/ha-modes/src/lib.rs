//! The two-node HA mode discipline (the StorNext HA Manager).
//!
//! ```text
//!   nm.toml [ha] ─▶ Ha (pure core) ◀── peer states, promotion claims ── authenticated TCP link
//!                    │  modes default/single/config/locked, certification peerdown,
//!                    │  allowed / prohibited pair states, fencing, HA reset
//!                    ▼
//!   actions: Persist(ha.json) · StartServers · StopServers · Fence · AskPromote · HaReset
//!   planned stop: begin_leave ─▶ (servers stopped, `left` durable) ─▶ PeerLeave ─▶ on_peer_left
//! ```
//!
//! Each node of a pair runs one [`core::Ha`]. It persists its mode (`data_dir/ha.json`, written
//! atomically) and re-derives everything else: whether it is primary from whether the HA-managed
//! servers run here, and its peer's mode and status from the link (a peer that does not
//! communicate is assumed in `default` mode). [`mode::verdict`] is the HA Manager's table of allowed and
//! prohibited pair states; [`core`] documents how a prohibited state is corrected.
//!
//! Guarantees: a node starts the HA-managed servers only with its communicating peer's consent,
//! after the fence command reported a silent peer fenced, when an operator certified the peer
//! `peerdown`, or after the peer's leave (a planned stop) that said its servers were stopped and
//! verified gone. An HA reset appends a line to `smithlog` and fsyncs it before acting.
//!
//! A driver of one cycle, by hand:
//! ```
//! use std::time::{Duration, Instant};
//! use ha_modes::core::{Action, Ha, HaInit, Observed, Op, Record, Timing};
//! use ha_modes::mode::Status;
//!
//! # #[allow(clippy::disallowed_methods)]
//! let t0 = Instant::now();
//! let timing = Timing::default();
//! let mut ha = Ha::new(t0, HaInit {
//!     node: "node1".into(),
//!     peer: "node2".into(),
//!     incarnation: 1,
//!     record: Record::default(), // as loaded from ha.json
//!     servers: Observed::Down,   // none of the HA-managed servers runs here
//!     timing,
//! });
//! assert_eq!(ha.status(), Status::Stopped); // a new pair starts stopped
//! let rec = ha.check(t0, Op::Start).unwrap(); // persist `rec`, then:
//! ha.apply(t0, Op::Start).unwrap();
//! // the peer never answered: after peer_timeout it is fenced before this node takes over
//! ha.on_timeout(t0 + timing.peer_timeout);
//! assert_eq!(ha.poll_action(), Some(Action::Fence));
//! ha.on_fence_result(t0 + timing.peer_timeout, Ok(()));
//! assert!(matches!(ha.poll_action(), Some(Action::StartServers { .. })));
//! assert_eq!(ha.status(), Status::Primary);
//! # let _ = rec;
//! ```

pub mod core;
#[cfg(feature = "driver")]
pub mod driver;
pub mod mode;
pub mod report;

pub use crate::core::{
    Action, Ha, HaInit, Observed, Op, PairEvent, PeerLeave, PeerState, Record, Refused, Timing,
};
pub use crate::mode::{Mode, Status, Verdict};
pub use crate::report::{HaReply, HaReport, NodeReport};
