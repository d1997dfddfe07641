//! The node's files in its data directory: the directory itself and its lock, the API token, the
//! standby link's key, the cluster key, the API socket.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use supervisor_core::os::{self, write_atomic};

use crate::config::NodeConfig;
use crate::node::NodeError;

/// The data directory's exclusive `flock`, held for the node's life: exactly one active node
/// manager per data directory, enforced by the kernel (released when the process dies).
#[derive(Debug)]
pub struct DataDirLock {
    /// Open for the lock's sake: closing it releases the lock.
    _held: File,
}

impl From<File> for DataDirLock {
    /// A lock taken elsewhere (a standby's takeover hands it over).
    fn from(f: File) -> Self {
        Self { _held: f }
    }
}

/// Creates the data directory (0700) if it is missing, checks that it is the daemon's own —
/// owned by its effective user and writable by no one else; it holds the API socket (no token
/// needed there), the token and the standby key — and takes its lock. An existing directory is
/// never changed: a directory of another user, or a shared one (a 1777 `/tmp/x`), is refused.
///
/// # Errors
/// [`NodeError::UnsafeDataDir`] when it is not the daemon's own; [`NodeError::AlreadyRunning`]
/// when another node manager holds it; [`NodeError::Io`] when it cannot be created or locked.
/// Nothing else was touched.
pub fn claim_data_dir(cfg: &NodeConfig) -> Result<DataDirLock, NodeError> {
    let data_dir = &cfg.data_dir;
    if std::fs::symlink_metadata(data_dir).is_err() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(|e| {
                io(
                    format!("cannot create data directory {}", data_dir.display()),
                    e,
                )
            })?;
    }
    check_data_dir(data_dir)?;
    match replication::driver::try_lock(data_dir) {
        Ok(Some(f)) => Ok(DataDirLock::from(f)),
        Ok(None) => {
            let holder = os::read_limited(&data_dir.join("nm.lock"), os::STATE_FILE_LIMIT)
                .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
                .unwrap_or_default();
            Err(NodeError::AlreadyRunning {
                data_dir: data_dir.clone(),
                holder: (!holder.is_empty()).then_some(holder),
            })
        }
        Err(e) => Err(io(format!("cannot lock {}", data_dir.display()), e)),
    }
}

/// [`os::check_private_dir`] of the data directory, as a [`NodeError`].
///
/// # Errors
/// [`NodeError::UnsafeDataDir`]; [`NodeError::Io`] when it cannot be examined.
pub(crate) fn check_data_dir(data_dir: &Path) -> Result<(), NodeError> {
    os::check_private_dir(data_dir).map_err(|e| match e.raw_os_error() {
        // the check's own verdict carries no OS error
        None => NodeError::UnsafeDataDir(e.to_string()),
        Some(_) => io(
            format!("cannot examine data directory {}", data_dir.display()),
            e,
        ),
    })
}

/// `<node>_standby.log` beside `nm.log` (JEUS).
#[must_use]
pub fn standby_log_path(cfg: &NodeConfig) -> PathBuf {
    cfg.data_dir.join(format!("{}_standby.log", cfg.node))
}

pub(crate) fn io(what: String, source: std::io::Error) -> NodeError {
    NodeError::Io { what, source }
}

/// The API's Unix socket, mode 0600.
pub(crate) fn bind_socket(path: &Path) -> Result<tokio::net::UnixListener, NodeError> {
    let unix = tokio::net::UnixListener::bind(path)
        .map_err(|e| io(format!("cannot bind the API socket {}", path.display()), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io(format!("cannot restrict {}", path.display()), e))?;
    Ok(unix)
}

/// The cluster key: at least 16 bytes, owned by the daemon's user (or root) and readable by
/// its owner only (it authenticates the peer).
pub(crate) fn read_cluster_key(path: &Path) -> Result<Vec<u8>, NodeError> {
    read_secret(path, "the cluster key", "cluster_key_file", 16)
}

/// A key or token file: owned by the daemon's user or root (no one else may rewrite it), no
/// group or other permission bits, at most 64 KiB, at least `min_len` bytes. The file itself may be a link an operator made (a mounted secret); its
/// target is what is checked.
fn read_secret(path: &Path, what: &str, key: &str, min_len: usize) -> Result<Vec<u8>, NodeError> {
    let unreadable = |e| io(format!("cannot read {what} {} ({key})", path.display()), e);
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    let euid = rustix::process::geteuid().as_raw();
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(NodeError::Key(format!(
            "{what} {} is owned by uid {}, not by uid {euid} that nm runs as (nor root): \
             another user could replace it",
            path.display(),
            meta.uid()
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(NodeError::Key(format!(
            "{what} {} is readable by others (mode {:o}): chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        )));
    }
    if !meta.is_file() || meta.len() > os::STATE_FILE_LIMIT {
        return Err(NodeError::Key(format!(
            "{what} {} is not a regular file of at most 64 KiB",
            path.display()
        )));
    }
    let bytes = std::fs::read(path).map_err(unreadable)?;
    check_len(path, what, bytes.len(), min_len)?;
    Ok(bytes)
}

/// The standby link's key, `data_dir/standby.key` (0600, 256 random bits, generated by the
/// first active). It never leaves the node: both ends of the link read it from the disk.
pub(crate) fn load_or_create_standby_key(data_dir: &Path) -> Result<Vec<u8>, NodeError> {
    let path = data_dir.join("standby.key");
    match read_standby_key(data_dir) {
        Ok(k) => return Ok(k),
        Err(_) if !path.exists() => {}
        Err(e) => return Err(e),
    }
    let key = random_hex()?;
    write_atomic(&path, format!("{key}\n").as_bytes())
        .map_err(|e| io(format!("cannot write {}", path.display()), e))?;
    tracing::info!(path = %path.display(), "generated the standby link key");
    Ok(key.into_bytes())
}

pub(crate) fn read_standby_key(data_dir: &Path) -> Result<Vec<u8>, NodeError> {
    let path = data_dir.join("standby.key");
    let key = read_in_data_dir(&path, "the standby link key")?;
    let key = key.trim();
    if key.len() < 32 {
        return Err(NodeError::Key(format!(
            "the standby link key {} is too short (at least 32 characters)",
            path.display()
        )));
    }
    Ok(key.as_bytes().to_vec())
}

/// The API token: `token_file` if configured (must exist; the same owner, mode and length
/// checks as the cluster key, at least 16 characters), else `data_dir/api.token`, generated
/// (0600, 256 random bits) on first start.
pub(crate) fn load_or_create_token(cfg: &NodeConfig) -> Result<String, NodeError> {
    if let Some(path) = &cfg.token_file {
        let bytes = read_secret(path, "token file", "token_file", 1)?;
        let token = String::from_utf8_lossy(&bytes).trim().to_owned();
        check_len(path, "token file", token.len(), 16)?;
        return Ok(token);
    }
    let path = cfg.data_dir.join("api.token");
    match read_in_data_dir(&path, "token file") {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_owned()),
        Ok(_) => {}
        Err(NodeError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let token = random_hex()?;
    // write_atomic creates the file 0600, never through a link planted at the path
    write_atomic(&path, format!("{token}\n").as_bytes())
        .map_err(|e| io(format!("cannot write {}", path.display()), e))?;
    tracing::info!(path = %path.display(), "generated the API token");
    Ok(token)
}

fn check_len(path: &Path, what: &str, len: usize, min_len: usize) -> Result<(), NodeError> {
    if len == 0 {
        return Err(NodeError::Key(format!(
            "{what} {} is empty",
            path.display()
        )));
    }
    if len < min_len {
        return Err(NodeError::Key(format!(
            "{what} {} is too short ({len} bytes, at least {min_len})",
            path.display()
        )));
    }
    Ok(())
}

/// A small file nm wrote in its data directory, read without following a link.
fn read_in_data_dir(path: &Path, what: &str) -> Result<String, NodeError> {
    let bytes = os::read_limited(path, os::STATE_FILE_LIMIT)
        .map_err(|e| io(format!("cannot read {what} {}", path.display()), e))?;
    String::from_utf8(bytes)
        .map_err(|_| NodeError::Key(format!("{what} {} is not text", path.display())))
}

/// 256 random bits as hex.
fn random_hex() -> Result<String, NodeError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| {
        io(
            "no randomness for a key".into(),
            std::io::Error::other(e.to_string()),
        )
    })?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Each server costs the daemon a pidfd: lift the soft open-file limit to the hard one.
pub(crate) fn raise_nofile() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, extra: &str) -> NodeConfig {
        let text = format!("node = \"n\"\ndata_dir = \"data\"\n{extra}");
        crate::config::parse(&text, &dir.join("nm.toml")).unwrap()
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_new_data_directory_is_created_0700_and_claimed() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), "");
        let _lock = claim_data_dir(&cfg).unwrap();
        assert_eq!(mode(&cfg.data_dir), 0o700);
    }

    #[test]
    fn a_shared_or_group_writable_data_directory_is_refused_and_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), "");
        std::fs::create_dir(&cfg.data_dir).unwrap();
        for bad in [0o1777, 0o777, 0o770] {
            std::fs::set_permissions(&cfg.data_dir, std::fs::Permissions::from_mode(bad)).unwrap();
            let e = claim_data_dir(&cfg).unwrap_err();
            assert!(matches!(e, NodeError::UnsafeDataDir(_)), "{e}");
            assert!(e.to_string().contains("is writable by"), "{e}");
            assert!(!e.to_string().contains('\n'), "one line: {e}");
            assert_eq!(mode(&cfg.data_dir), bad, "never chmod'ed");
        }
        // the owner's own directory that others may read but not write is used as it is
        std::fs::set_permissions(&cfg.data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let _lock = claim_data_dir(&cfg).unwrap();
        assert_eq!(mode(&cfg.data_dir), 0o755);
    }

    #[test]
    fn links_planted_at_the_token_and_key_paths_are_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), "");
        let _lock = claim_data_dir(&cfg).unwrap();
        let target = dir.path().join("readable-by-the-attacker");
        std::fs::write(&target, b"").unwrap();
        for planted in [".api.token.tmp", ".standby.key.tmp"] {
            std::os::unix::fs::symlink(&target, cfg.data_dir.join(planted)).unwrap();
        }
        let token = load_or_create_token(&cfg).unwrap();
        load_or_create_standby_key(&cfg.data_dir).unwrap();
        assert_eq!(
            std::fs::read(&target).unwrap(),
            b"",
            "the token did not leak"
        );
        assert_eq!(load_or_create_token(&cfg).unwrap(), token);
        // a link at the token itself is refused, not read
        std::fs::remove_file(cfg.data_dir.join("api.token")).unwrap();
        std::fs::write(&target, b"0123456789abcdef0123456789abcdef\n").unwrap();
        std::os::unix::fs::symlink(&target, cfg.data_dir.join("api.token")).unwrap();
        assert!(load_or_create_token(&cfg).is_err());
        std::fs::remove_file(cfg.data_dir.join("standby.key")).unwrap();
        std::os::unix::fs::symlink(&target, cfg.data_dir.join("standby.key")).unwrap();
        assert!(load_or_create_standby_key(&cfg.data_dir).is_err());
    }

    #[test]
    fn a_token_file_gets_the_cluster_keys_checks() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), "token_file = \"t\"\n");
        let t = dir.path().join("t");
        std::fs::write(&t, b"0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create_token(&cfg).unwrap_err();
        assert!(e.to_string().contains("readable by others"), "{e}");
        std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_or_create_token(&cfg).unwrap(), "0123456789abcdef0123");
        std::fs::write(&t, b"short\n").unwrap();
        let e = load_or_create_token(&cfg).unwrap_err();
        assert!(e.to_string().contains("too short"), "{e}");
        std::fs::write(&t, b"  \n").unwrap();
        let e = load_or_create_token(&cfg).unwrap_err();
        assert!(e.to_string().contains("is empty"), "{e}");
    }
}
