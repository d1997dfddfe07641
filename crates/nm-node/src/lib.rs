//! One nm node, assembled from its config.
//!
//! ```text
//!   nm.toml ──config::load──▶ NodeConfig ──Node::start──▶ supervisor (servers: pure core + driver)
//!                                  │                      ├─ HA manager   ([ha]: pure core + driver)
//!                                  │                      ├─ standby pair (standby_port)
//!                                  └─ rules (span crates) └─ API server   (TCP + data_dir/nm.sock)
//! ```
//!
//! - [`config`] reads and checks `nm.toml`: the one reader for `nm-daemon`, `nm-daemon --check`
//!   and `nm-cli --config` (it is all this crate is without its default `runtime` feature).
//! - [`rules`] holds the decisions that span crates (HA-managed servers start only through the HA
//!   manager; a takeover adopts).
//! - `Node` (feature `runtime`) starts a whole node — supervisor, HA manager, the active side of
//!   the node manager pair, the API on TCP and on the Unix socket — and stops it; `NodeHandle`
//!   reads it while it runs.
//!
//! Embedding a whole node in another program takes a few lines (`examples/embed_node.rs`, run by the
//! `embed` test):
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = nm_node::config::load(std::path::Path::new("nm.toml"))?;
//! let mut node = nm_node::Node::start(cfg).await?;            // servers up, API served
//! println!("{} servers", node.handle().snapshot().servers.len());
//! let why = node.stop_requested().await;                      // e.g. `nm-cli shutdown`
//! node.shutdown(why).await?;                                  // servers keep running
//! # Ok(()) }
//! ```
//!
//! The node keeps DESIGN §4's guarantees as the crates below it do; what it adds is the order of
//! assembly: every listener is bound and every key and state file checked before a server starts,
//! and the standby is launched last (had anything failed before, it would have taken over).

pub mod config;
pub mod rules;

#[cfg(feature = "runtime")]
mod api;
#[cfg(feature = "runtime")]
mod files;
#[cfg(feature = "runtime")]
mod node;
#[cfg(feature = "runtime")]
pub mod standby;

#[cfg(feature = "runtime")]
pub use crate::files::{DataDirLock, claim_data_dir, standby_log_path};
#[cfg(feature = "runtime")]
pub use crate::node::{
    EXIT_HA_RESET, Node, NodeError, NodeExit, NodeHandle, Origin, Refusal, StandbyCommand,
    StartOptions, StopReason, Takeover,
};

/// The node's one monotonic clock read (tokio's, so paused tests control it).
#[cfg(feature = "runtime")]
#[allow(clippy::disallowed_methods)]
pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Wall-clock time, for people.
#[cfg(feature = "runtime")]
pub(crate) fn wall_now() -> std::time::SystemTime {
    supervisor_core::driver::wall_now()
}
