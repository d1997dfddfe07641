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

/// Loads the record; a missing file is a new pair (default mode, HA stopped).
///
/// # Errors
/// [`StoreError::Read`] or [`StoreError::Invalid`].
pub fn load(data_dir: &Path) -> Result<Record, StoreError> {
    let path = data_dir.join(MODE_FILE);
    let text = match std::fs::read_to_string(&path) {
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
    supervisor_core::driver::lockfile::write_atomic(&path, &bytes)
        .map_err(|source| StoreError::Write { path, source })
}

/// Appends `line` to the smith log and fsyncs it (the StorNext HA Manager: "a descriptive line is added to the
/// end of this file and the file is fsync'd").
///
/// # Errors
/// Any I/O error; the caller resets anyway (the reset must not wait on a broken disk).
pub fn smith(data_dir: &Path, line: &str) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(data_dir.join(SMITHLOG))?;
    let mut buf = line.trim_end().to_owned();
    buf.push('\n');
    f.write_all(buf.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
