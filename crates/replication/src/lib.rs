//! The active/standby node manager pair (JEUS node manager replication).
//!
//! ```text
//!   active nm-daemon ── holds flock(nm.lock) for its life ──────────────┐ kernel
//!     │  Keeper (pure): launch / accept / replace the standby            │ releases it
//!     │  127.0.0.1:standby_port  ◀── authenticated link, heartbeats ──▶  │ when the
//!   standby nm-daemon                                                    │ active dies
//!        Watcher (pure): heartbeats, fence a silent active, take over ◀──┘
//!        blocked in flock(nm.lock) on a thread of its own
//! ```
//!
//! Exactly one active per node is the kernel's doing, not a timer's: the active holds an
//! exclusive `flock` on `data_dir/nm.lock` and a standby becomes active only once its own blocking
//! `flock` returns, which happens only when the active has died (SIGKILL by a fence included).
//! Timers decide only *when to fence* a silent active; the fence is a SIGKILL through a pidfd of
//! that exact process, whose start time was checked after it was pinned.
//!
//! The link is TCP on loopback, authenticated with HMAC-SHA256 under the node's `standby.key`
//! (a nonce from each side, a session key from both, a tag and a sequence number on every frame).
//! A frame that fails authentication or decoding is dropped and counted, never acted on.
//!
//! [`core`] holds the pure decisions, [`driver`] the tokio halves: [`driver::run_standby`] for a
//! standby process and [`driver::start_active`] for the active's side.

pub mod core;
pub mod driver;
mod link;

pub use crate::core::{ActiveInfo, Pid, TakeoverReason, Timing};
