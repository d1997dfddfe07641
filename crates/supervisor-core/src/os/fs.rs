//! Durable file operations in the data directory: atomic replacement, durable removal, private
//! directories, appends and bounded reads — none of which follows a symbolic link.
//!
//! A data directory is nm's only if it is owned by the daemon's user and writable by nobody
//! else ([`check_private_dir`]): otherwise another local user could plant a link at a path nm
//! writes (`servers/.web.lock.tmp` → a root-owned file) and have the daemon write through it.
//! Every open below adds `O_NOFOLLOW` (and `O_EXCL` for temporaries) as a second line: a link
//! found where nm writes is an error, never a write through.
//!
//! Each call blocks on `fsync`. A driver whose thread also carries heartbeats or link traffic
//! runs them on an [`OrderedWriter`](super::OrderedWriter) instead.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The largest state file nm reads (a lock file, a stop marker, `ha.json`, `nm.lock`): a larger
/// one is refused, not read.
pub const STATE_FILE_LIMIT: u64 = 64 * 1024;

/// Writes `bytes` to `path` atomically: temporary file in the same directory, fsync, rename,
/// fsync of the directory. The file is created with mode 0600.
///
/// The temporary file (`.NAME.tmp`) is created with `O_CREAT | O_EXCL | O_NOFOLLOW` after a
/// stale one is unlinked (unlinking a link removes the link, never its target), and the rename
/// replaces whatever is at `path` — a planted link included — without following it.
///
/// # Errors
/// Any I/O error; the old file is then untouched (a stray temporary file may remain).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let tmp = dir.join(format!(".{}.tmp", file_name.to_string_lossy()));
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Opens `path` for appending, created with `mode` when missing, without following a link
/// (`O_NOFOLLOW`): a link at `path` is an error (`ELOOP`), and so is anything but a regular file
/// (a FIFO or a device planted there). For the logs nm writes in its data directory.
///
/// # Errors
/// Any I/O error; a link or a file that is not regular is refused.
pub fn open_append_nofollow(path: &Path, mode: u32) -> io::Result<File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .mode(mode)
        .open(path)?;
    regular(f, path)
}

/// Opens an existing `path` for writing (no create, no append) without following a link; only
/// a regular file. For truncating a log in place.
///
/// # Errors
/// Any I/O error; a link or a file that is not regular is refused.
pub fn open_write_nofollow(path: &Path) -> io::Result<File> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    regular(f, path)
}

/// Opens `path` for reading without following a link; only a regular file (a link to
/// `/dev/zero` or a FIFO is refused, and opening a FIFO does not block).
///
/// # Errors
/// Any I/O error; a link or a file that is not regular is refused.
pub fn open_read_nofollow(path: &Path) -> io::Result<File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    regular(f, path)
}

/// Reads a state file of at most `limit` bytes, without following a link (see
/// [`open_read_nofollow`]). A larger file is refused (`InvalidData`), not read.
///
/// # Errors
/// Any I/O error (`NotFound` for a missing file); a link, a file that is not regular, or one
/// larger than `limit`.
pub fn read_limited(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let f = open_read_nofollow(path)?;
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {limit} bytes", path.display()),
        )
    };
    if f.metadata()?.len() > limit {
        return Err(too_big());
    }
    let mut buf = Vec::new();
    f.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(too_big()); // grew while read
    }
    Ok(buf)
}

/// Removes `path` and makes the removal durable (fsync of its directory). A missing file is
/// fine (nothing is synced then). A link is removed, never its target.
///
/// # Errors
/// Any other I/O error.
pub fn remove_durably(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_dir(
            path.parent()
                .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?,
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates `parent/name` (mode 0700) if missing, checks it ([`check_private_dir`]) and returns
/// its path. An existing directory is used as it is, never changed.
///
/// # Errors
/// When the directory cannot be created, or is not private (kind `PermissionDenied`, a message
/// that names the path and the reason).
pub fn private_dir(parent: &Path, name: &str) -> io::Result<PathBuf> {
    let dir = parent.join(name);
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    check_private_dir(&dir)?;
    Ok(dir)
}

/// Creates the data directory `path` (and missing parents, mode 0700) if it is missing, then
/// checks it ([`check_private_dir`]). Returns whether this call created it. An existing
/// directory is used as it is, never changed: a directory of another user, or a shared one like
/// a 1777 `/tmp/x`, is refused.
///
/// # Errors
/// As [`private_dir`].
pub fn private_data_dir(path: &Path) -> io::Result<bool> {
    let created = if std::fs::symlink_metadata(path).is_ok() {
        false
    } else {
        match std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
        {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e),
        }
    };
    check_private_dir(path)?;
    Ok(created)
}

/// Checks that `path` is a directory owned by this process's effective user and writable by no
/// one else (no group or other write bit). A symbolic link at `path` is accepted only if the
/// link itself belongs to this user or to root (another user could repoint it), and is then
/// checked at its target.
///
/// # Errors
/// `PermissionDenied` with a one-line reason naming `path`; any I/O error of `lstat`/`stat`.
pub fn check_private_dir(path: &Path) -> io::Result<()> {
    let euid = rustix::process::geteuid().as_raw();
    let refuse = |why: String| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} {why}", path.display()),
        )
    };
    let link = std::fs::symlink_metadata(path)?;
    if link.file_type().is_symlink() && link.uid() != euid && link.uid() != 0 {
        return Err(refuse(format!(
            "is a symbolic link owned by uid {}, not by uid {euid} that nm runs as (nor root)",
            link.uid()
        )));
    }
    let md = std::fs::metadata(path)?;
    if !md.is_dir() {
        return Err(refuse("is not a directory".into()));
    }
    if md.uid() != euid {
        return Err(refuse(format!(
            "is owned by uid {}, not by uid {euid} that nm runs as: use a directory of your own \
             (nm does not take over another user's directory)",
            md.uid()
        )));
    }
    let mode = md.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(refuse(format!(
            "is writable by {} (mode {mode:04o}): nm needs a directory only its user can write \
             (chmod 700 it, or use another)",
            if mode & 0o002 != 0 {
                "everyone"
            } else {
                "its group"
            }
        )));
    }
    Ok(())
}

fn regular(f: File, path: &Path) -> io::Result<File> {
    if f.metadata()?.is_file() {
        Ok(f)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ))
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_file_with_mode_0600_and_a_removal_is_idempotent() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        remove_durably(&p).unwrap();
        remove_durably(&p).unwrap();
        assert!(!p.exists());
    }

    fn planted(dir: &Path, at: &str) -> PathBuf {
        let target = dir.join("target");
        std::fs::write(&target, b"precious").unwrap();
        std::os::unix::fs::symlink(&target, dir.join(at)).unwrap();
        target
    }

    #[test]
    fn a_link_planted_at_the_temporary_file_is_removed_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let target = planted(dir.path(), ".f.tmp");
        write_atomic(&dir.path().join("f"), b"record").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"record");
    }

    #[test]
    fn a_link_planted_at_the_file_itself_is_replaced_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let target = planted(dir.path(), "f");
        write_atomic(&dir.path().join("f"), b"record").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        let md = std::fs::symlink_metadata(dir.path().join("f")).unwrap();
        assert!(md.is_file());
    }

    #[test]
    fn an_append_through_a_planted_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = planted(dir.path(), "log");
        let e = open_append_nofollow(&dir.path().join("log"), 0o640).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        let e = open_write_nofollow(&dir.path().join("log")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        let f = open_append_nofollow(&dir.path().join("new"), 0o640).unwrap();
        assert_eq!(f.metadata().unwrap().mode() & 0o777, 0o640);
    }

    #[test]
    fn a_state_file_is_read_only_if_small_regular_and_not_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, b"{}").unwrap();
        assert_eq!(read_limited(&p, 2).unwrap(), b"{}");
        assert_eq!(
            read_limited(&p, 1).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("z")).unwrap();
        let e = read_limited(&dir.path().join("z"), STATE_FILE_LIMIT).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        assert_eq!(
            read_limited(Path::new("/dev/zero"), STATE_FILE_LIMIT)
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            read_limited(&dir.path().join("none"), 1)
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn a_shared_directory_is_refused_and_left_unchanged() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let e = private_data_dir(&shared).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(
            e.to_string().contains("writable by everyone (mode 1777)"),
            "{e}"
        );
        let mode = std::fs::metadata(&shared).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o1777, "never chmod'ed");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o770)).unwrap();
        let e = private_dir(dir.path(), "shared").unwrap_err();
        assert!(e.to_string().contains("writable by its group"), "{e}");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(dir.path(), "shared").unwrap();
    }

    #[test]
    fn a_directory_nm_creates_is_0700_and_its_own() {
        let dir = tempfile::tempdir().unwrap();
        assert!(private_data_dir(&dir.path().join("a/b")).unwrap());
        assert!(!private_data_dir(&dir.path().join("a/b")).unwrap());
        let p = private_dir(&dir.path().join("a/b"), "logs").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o700);
        assert_eq!(
            std::fs::metadata(dir.path().join("a")).unwrap().mode() & 0o777,
            0o700
        );
    }

    #[test]
    fn a_directory_of_another_user_is_refused() {
        if rustix::process::geteuid().as_raw() != 0 {
            return; // only root can give a directory away; tests/tests/data_dir.rs covers it too
        }
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let e = private_data_dir(&theirs).unwrap_err();
        assert!(e.to_string().contains("is owned by uid 65534"), "{e}");
        let e = private_dir(dir.path(), "theirs").unwrap_err();
        assert!(e.to_string().contains("is owned by uid 65534"), "{e}");
    }

    #[test]
    fn a_link_to_a_directory_counts_only_if_it_is_ours_and_so_is_the_target() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
        check_private_dir(&dir.path().join("link")).unwrap();
        std::fs::write(dir.path().join("file"), b"").unwrap();
        std::os::unix::fs::symlink(dir.path().join("file"), dir.path().join("flink")).unwrap();
        assert!(check_private_dir(&dir.path().join("flink")).is_err());
    }
}
