//! The tokio halves of the pair. [`run_standby`] is the whole life of a standby process up to
//! its takeover; [`start_active`] runs the active's side (standby port, launching and replacing
//! the standby, the pair's shutdown) beside the rest of the daemon.

mod active;
mod standby;

use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::Instant;

pub use active::{ActiveConfig, ActiveHandle, PairStatus, bind_standby_port, start_active};
pub use standby::{StandbyConfig, StandbyOutcome, Takeover, run_standby};

use crate::core::Pid;

/// Opens (creating it 0600 if needed) the node's lock file, `data_dir/nm.lock`.
pub fn open_lock(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

/// Takes the exclusive lock on `nm.lock` without waiting. `Ok(None)`: another process holds it.
pub fn try_lock(path: &Path) -> io::Result<Option<File>> {
    let f = open_lock(path)?;
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(f)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Blocks until this process holds the exclusive lock on the file at `path` (the kernel hands it
/// over when the holder dies). A lock on a file that was replaced meanwhile (another inode at
/// `path`) is let go and taken again on the new one: only the lock on the file at `path` counts.
pub fn lock_blocking(path: &Path) -> io::Result<File> {
    loop {
        let f = open_lock(path)?;
        loop {
            match rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive) {
                Ok(()) => break,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let held = f.metadata()?;
        match std::fs::metadata(path) {
            Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => return Ok(f),
            _ => {} // replaced or removed while we waited: lock the file that is there now
        }
    }
}

/// The PID that holds the `flock` on the file at `path`, from `/proc/locks` (the kernel's word).
pub fn lock_holder(path: &Path) -> io::Result<Option<Pid>> {
    let md = std::fs::metadata(path)?;
    let dev = format!(
        "{:02x}:{:02x}:{}",
        rustix::fs::major(md.dev()),
        rustix::fs::minor(md.dev()),
        md.ino()
    );
    let locks = std::fs::read_to_string("/proc/locks")?;
    Ok(locks.lines().find_map(|line| {
        // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; waiters are "1: -> FLOCK ..."
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&dev.as_str()))
            .then(|| f.get(4)?.parse().ok())
            .flatten()
    }))
}

/// The drivers' one monotonic clock read (tokio's, so paused-time tests control it).
#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Wall-clock milliseconds since the epoch, for people (the pair's start time).
pub fn unix_ms() -> u64 {
    supervisor_core::driver::wall_now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_holder_is_read_from_the_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nm.lock");
        let held = try_lock(&path).unwrap().expect("free");
        assert_eq!(
            lock_holder(&path).unwrap(),
            Some(i32::try_from(std::process::id()).unwrap())
        );
        assert!(
            try_lock(&path).unwrap().is_none(),
            "a second open file is refused"
        );
        drop(held);
        assert_eq!(lock_holder(&path).unwrap(), None);
        assert!(try_lock(&path).unwrap().is_some());
    }

    #[test]
    fn a_lock_on_a_replaced_file_is_taken_again_on_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nm.lock");
        let old = try_lock(&path).unwrap().unwrap();
        let p = path.clone();
        let waiter = std::thread::spawn(move || lock_blocking(&p).unwrap());
        // replace the file while the waiter blocks, then let the old one go
        std::fs::remove_file(&path).unwrap();
        let new = try_lock(&path).unwrap().unwrap();
        drop(old);
        // the waiter got the old inode's lock, saw the replacement and now waits on `new`
        assert!(try_lock(&path).unwrap().is_none());
        drop(new);
        let got = waiter.join().unwrap();
        assert_eq!(
            got.metadata().unwrap().ino(),
            std::fs::metadata(&path).unwrap().ino()
        );
    }
}
