//! Servers of one node: spec, lifecycle state machine, restart policy, spawn/reap/adopt, logs and
//! lock files.
#![doc = include_str!("../README.md")]

pub mod core;
#[cfg(feature = "driver")]
pub mod driver;
#[cfg(feature = "driver")]
pub mod os;
pub mod spec;

pub use crate::core::{
    Accepted, Action, Command, CommandError, DownCause, Event, Exit, Generation, Pid, ProbeResult,
    Recovered, RestartDecision, RestartPolicy, ServerState, ServerView, Signal, Supervisor,
};
#[cfg(feature = "driver")]
pub use crate::driver::{ServerStatus, Snapshot, SupervisorConfig, SupervisorHandle};
pub use crate::spec::{
    Argv, AutoRestart, HealthSpec, LogSpec, Probe, ServerName, ServerSpec, SpecError,
};
