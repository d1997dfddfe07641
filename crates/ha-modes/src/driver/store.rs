//! The persisted mode (`data_dir/ha.json`, written atomically) and the smith log
//! (`data_dir/smithlog`, appended and fsync'd before an HA reset acts).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::core::Record;
use crate::mode::Mode;

/// The mode file's name in the data directory.
pub const MODE_FILE: &str = "ha.json";
/// The smith log's name in the data directory.
pub const SMITHLOG: &str = "smithlog";

/// A mode file that cannot be used. The daemon refuses to start: guessing a mode could undo an
/// operator's `locked` or `peerdown`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// It could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// It does not parse, or holds `peerdown` as the node's own mode.
    #[error("{} is not a valid HA mode file: {reason} (fix or remove it; removing resets the mode to default, stopped)", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// It could not be written. The mode did not change.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Loads the record; a missing file is a new pair (default mode, HA stopped). A link at the
/// path, or a file over 64 KiB, is a [`StoreError::Read`].
///
/// # Errors
/// [`StoreError::Read`] or [`StoreError::Invalid`].
pub fn load(data_dir: &Path) -> Result<Record, StoreError> {
    let path = data_dir.join(MODE_FILE);
    // without following a link, and at most 64 KiB: a link to /dev/zero is refused, not read
    let text = match supervisor_core::os::read_limited(&path, supervisor_core::os::STATE_FILE_LIMIT)
        .and_then(|b| {
            String::from_utf8(b).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        }) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Record::default()),
        Err(source) => return Err(StoreError::Read { path, source }),
    };
    let rec: Record = serde_json::from_str(&text).map_err(|e| StoreError::Invalid {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if rec.mode == Mode::Peerdown {
        return Err(StoreError::Invalid {
            path,
            reason: "\"peerdown\" is not a node's own mode".into(),
        });
    }
    Ok(rec)
}

/// Writes the record atomically (temporary file, fsync, rename, fsync of the directory).
///
/// # Errors
/// [`StoreError::Write`]; the old file is then untouched.
pub fn save(data_dir: &Path, rec: &Record) -> Result<(), StoreError> {
    let path = data_dir.join(MODE_FILE);
    let mut bytes = serde_json::to_vec_pretty(rec).expect("a record always serialises");
    bytes.push(b'\n');
    #[cfg(test)]
    if let Some(stalled) = stall::take(data_dir) {
        return Err(StoreError::Write {
            path,
            source: stalled.hold(bytes),
        });
    }
    supervisor_core::driver::lockfile::write_atomic(&path, &bytes)
        .map_err(|source| StoreError::Write { path, source })
}

/// Appends `line` to the smith log and fsyncs it (the StorNext HA Manager: "a descriptive line is added to the
/// end of this file and the file is fsync'd").
///
/// # Errors
/// Any I/O error; the caller resets anyway (the reset must not wait on a broken disk).
pub fn smith(data_dir: &Path, line: &str) -> io::Result<()> {
    // never through a link planted at the path
    let mut f = supervisor_core::os::open_append_nofollow(&data_dir.join(SMITHLOG), 0o640)?;
    let mut buf = line.trim_end().to_owned();
    buf.push('\n');
    f.write_all(buf.as_bytes())?;
    f.sync_all()
}

/// A disk that stops answering, for the driver's tests: the next [`save`] in a data directory
/// blocks until the test lets go, then fails (nothing written).
#[cfg(test)]
pub(crate) mod stall {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;
    use std::sync::mpsc::{Receiver, Sender, channel};

    static STALLED: Mutex<Vec<(PathBuf, Stalled)>> = Mutex::new(Vec::new());

    /// The save side of a stall.
    pub(crate) struct Stalled {
        release: Receiver<()>,
        written: Sender<Vec<u8>>,
    }

    impl Stalled {
        /// Hands `bytes` to the test, waits until it lets go, and fails.
        pub(super) fn hold(self, bytes: Vec<u8>) -> std::io::Error {
            let _ = self.written.send(bytes);
            let _ = self.release.recv();
            std::io::Error::other("the disk stalled, then failed")
        }
    }

    /// Stalls the next save in `data_dir`. Dropping the returned sender lets it go (to fail);
    /// the receiver gets the bytes the save was writing.
    pub(crate) fn next_save(data_dir: &Path) -> (Sender<()>, Receiver<Vec<u8>>) {
        let (release_tx, release) = channel();
        let (written, written_rx) = channel();
        STALLED
            .lock()
            .expect("no test panics while holding the stall list")
            .push((data_dir.to_owned(), Stalled { release, written }));
        (release_tx, written_rx)
    }

    pub(super) fn take(data_dir: &Path) -> Option<Stalled> {
        let mut all = STALLED
            .lock()
            .expect("no test panics while holding the stall list");
        let i = all.iter().position(|(d, _)| d == data_dir)?;
        Some(all.remove(i).1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// Whatever bytes sit in `ha.json`, loading them never panics: it is a record or a
        /// clear error (and the daemon refuses to start on the error).
        #[test]
        fn any_bytes_in_ha_json_load_without_a_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            json in "\\{(\"(mode|peerdown|started|ha_idle_failed_startup|left|x)\":(\"[a-z]{0,9}\"|true|false|[0-9]{1,20}|null),?){0,6}\\}",
        ) {
            let d = tempfile::tempdir().unwrap();
            for content in [bytes.as_slice(), json.as_bytes()] {
                std::fs::write(d.path().join(MODE_FILE), content).unwrap();
                let _ = load(d.path());
            }
        }
    }

    #[test]
    fn a_record_round_trips_and_a_missing_file_is_a_new_stopped_pair() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(load(d.path()).unwrap(), Record::default());
        let rec = Record {
            mode: Mode::Locked,
            peerdown: true,
            started: true,
            ha_idle_failed_startup: true,
            left: false,
        };
        save(d.path(), &rec).unwrap();
        assert_eq!(load(d.path()).unwrap(), rec);
        let text = std::fs::read_to_string(d.path().join(MODE_FILE)).unwrap();
        assert!(text.contains("\"mode\": \"locked\""), "{text}");
        // `left` is written only when set: a file without it is what older daemons wrote
        assert!(!text.contains("left"), "{text}");
        let left = Record { left: true, ..rec };
        save(d.path(), &left).unwrap();
        assert_eq!(load(d.path()).unwrap(), left);
    }

    #[test]
    fn a_damaged_or_tampered_mode_file_is_refused_with_its_path() {
        let d = tempfile::tempdir().unwrap();
        for bad in [
            "{",
            r#"{"mode":"peerdown","peerdown":false,"started":false,"ha_idle_failed_startup":false}"#,
            r#"{"mode":"default","peerdown":false,"started":false,"ha_idle_failed_startup":false,"x":1}"#,
        ] {
            std::fs::write(d.path().join(MODE_FILE), bad).unwrap();
            let e = load(d.path()).unwrap_err().to_string();
            assert!(e.contains("ha.json is not a valid HA mode file"), "{e}");
        }
    }

    #[test]
    fn smith_lines_are_appended() {
        let d = tempfile::tempdir().unwrap();
        smith(d.path(), "one").unwrap();
        smith(d.path(), "two\n").unwrap();
        let text = std::fs::read_to_string(d.path().join(SMITHLOG)).unwrap();
        assert_eq!(text, "one\ntwo\n");
    }

    #[test]
    fn links_planted_at_the_mode_file_and_the_smith_log_are_not_written_through() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("precious");
        std::fs::write(&target, b"precious").unwrap();
        for planted in [MODE_FILE, ".ha.json.tmp", SMITHLOG] {
            std::os::unix::fs::symlink(&target, d.path().join(planted)).unwrap();
        }
        assert!(matches!(load(d.path()), Err(StoreError::Read { .. })));
        assert!(smith(d.path(), "reset").is_err());
        save(d.path(), &Record::default()).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        assert!(
            std::fs::symlink_metadata(d.path().join(MODE_FILE))
                .unwrap()
                .is_file()
        );
        std::fs::write(d.path().join(MODE_FILE), vec![b' '; 64 * 1024 + 1]).unwrap();
        assert!(matches!(load(d.path()), Err(StoreError::Read { .. })));
    }
}
