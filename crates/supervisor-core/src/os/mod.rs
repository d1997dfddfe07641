//! The operating-system helpers the node's crates share (behind the `driver` feature): one
//! definition of each.
//!
//! - [`PinnedProcess`], [`start_time_of`]: a process pinned by a pidfd, and its identity;
//! - [`write_atomic`], [`remove_durably`], [`private_dir`], [`check_private_dir`],
//!   [`open_append_nofollow`], [`read_limited`]: files in the data directory, never through a link;
//! - [`OrderedWriter`]: those writes off the runtime's thread, in order, awaited;
//! - [`try_lock`], [`lock_blocking`], [`lock_holder`]: the data directory's `flock`;
//! - [`wall_now`], [`unix_ms`], [`unix_ms_now`]: wall-clock time, for people.

mod clock;
mod dirlock;
mod fs;
pub(crate) mod process;
mod writer;

pub use clock::{unix_ms, unix_ms_now, wall_now};
pub use dirlock::{lock_blocking, lock_holder, try_lock};
pub use fs::{
    STATE_FILE_LIMIT, check_private_dir, open_append_nofollow, open_read_nofollow,
    open_write_nofollow, private_data_dir, private_dir, read_limited, remove_durably, write_atomic,
};
pub use process::{PinnedProcess, start_time_of};
pub use writer::{OrderedWriter, Stall};
