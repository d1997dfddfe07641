//! Directory locks: the exclusive `flock` on a data directory that makes a node manager the
//! active one, and who holds it by the kernel's own account (`/proc/locks`).

use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::core::Pid;

/// Opens the data directory for its lock. The lock is taken on the directory itself, not on a
/// file in it: a file can be deleted or replaced by a well-meaning "stale lock" clean-up while the
/// active runs, which would let a second process lock the new file. `nm.lock` in the directory
/// only records the active's PID, for people.
fn open_dir(data_dir: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(data_dir)
}

/// Takes the exclusive lock on the data directory without waiting. `Ok(None)`: another process
/// (the active node manager) holds it.
pub fn try_lock(data_dir: &Path) -> io::Result<Option<File>> {
    let f = open_dir(data_dir)?;
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(f)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Blocks until this process holds the exclusive lock on the data directory (the kernel hands it
/// over when the holder dies). Should the directory have been replaced meanwhile (another inode
/// at `data_dir`), the lock is let go and taken again on the new one.
pub fn lock_blocking(data_dir: &Path) -> io::Result<File> {
    loop {
        let f = open_dir(data_dir)?;
        loop {
            match rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive) {
                Ok(()) => break,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let held = f.metadata()?;
        match std::fs::metadata(data_dir) {
            Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => return Ok(f),
            _ => {} // replaced while we waited: lock the directory that is there now
        }
    }
}

/// The PID that holds the `flock` on the data directory, from `/proc/locks` (the kernel's word).
/// `/proc/locks` is read with one `read` call: the kernel lists the locks of one call under its
/// lock, while a read in several calls may skip a line when a lock elsewhere comes or goes.
pub fn lock_holder(data_dir: &Path) -> io::Result<Option<Pid>> {
    use std::io::Read;
    let md = std::fs::metadata(data_dir)?;
    let dev = format!(
        "{:02x}:{:02x}:{}",
        rustix::fs::major(md.dev()),
        rustix::fs::minor(md.dev()),
        md.ino()
    );
    let mut size = 256 * 1024;
    let locks = loop {
        let mut buf = vec![0u8; size];
        let n = File::open("/proc/locks")?.read(&mut buf)?;
        if n < size {
            buf.truncate(n);
            break String::from_utf8_lossy(&buf).into_owned();
        }
        size *= 4; // did not fit: read it whole again, with more room
    };
    Ok(locks.lines().find_map(|line| {
        // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; waiters are "1: -> FLOCK ..."
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&dev.as_str()))
            .then(|| f.get(4)?.parse().ok())
            .flatten()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_holder_is_read_from_the_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let held = try_lock(dir.path()).unwrap().expect("free");
        assert_eq!(
            lock_holder(dir.path()).unwrap(),
            Some(i32::try_from(std::process::id()).unwrap())
        );
        assert!(
            try_lock(dir.path()).unwrap().is_none(),
            "a second open is refused"
        );
        drop(held);
        assert_eq!(lock_holder(dir.path()).unwrap(), None);
        assert!(try_lock(dir.path()).unwrap().is_some());
    }

    #[test]
    fn deleting_files_in_the_data_directory_does_not_free_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nm.lock"), "1\n").unwrap();
        let _held = try_lock(dir.path()).unwrap().unwrap();
        std::fs::remove_file(dir.path().join("nm.lock")).unwrap();
        assert!(try_lock(dir.path()).unwrap().is_none());
    }

    #[test]
    fn a_blocked_locker_gets_the_lock_when_the_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let held = try_lock(dir.path()).unwrap().unwrap();
        let p = dir.path().to_path_buf();
        let waiter = std::thread::spawn(move || lock_blocking(&p).unwrap());
        drop(held);
        let got = waiter.join().unwrap();
        assert!(
            try_lock(dir.path()).unwrap().is_none(),
            "the waiter holds it now"
        );
        drop(got);
    }
}
