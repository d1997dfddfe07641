//! The daemon's own log file (human or JSON lines), which a standby switches from
//! `<node>_standby.log` to `nm.log` at its takeover; plus human lines on stderr for a daemon
//! started as the active. `NM_LOG` overrides the level filter (e.g. `NM_LOG=debug`).

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result};
use nm_node::config::{LogFormat, NodeConfig};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Lines are written synchronously (one `write` each, to the page cache): no logging thread.
#[derive(Clone)]
pub(crate) struct LogFile(Arc<LogTarget>);

/// The file behind a [`LogFile`]; `&LogTarget` is the writer tracing uses.
pub(crate) struct LogTarget(Mutex<File>);

impl Write for &LogTarget {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(()) // unbuffered
    }
}

impl LogFile {
    /// Logs to `path`, and to stderr with `stderr`.
    pub(crate) fn init(cfg: &NodeConfig, path: &Path, stderr: bool) -> Result<Self> {
        let file = Arc::new(LogTarget(Mutex::new(open_log(path)?)));
        let filter =
            || EnvFilter::try_from_env("NM_LOG").unwrap_or_else(|_| EnvFilter::new(&cfg.log_level));
        let file_layer = match cfg.log_format {
            LogFormat::Json => tracing_subscriber::fmt::layer()
                .json()
                .with_writer(file.clone())
                .with_filter(filter())
                .boxed(),
            LogFormat::Human => tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(file.clone())
                .with_filter(filter())
                .boxed(),
        };
        let stderr_layer = stderr.then(|| {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            tracing_subscriber::fmt::layer()
                .with_ansi(ansi)
                .with_writer(std::io::stderr)
                .with_filter(filter())
        });
        tracing_subscriber::registry()
            .with(file_layer)
            .with(stderr_layer)
            .try_init()
            .context("cannot set up logging")?;
        Ok(Self(file))
    }

    /// Writes every later line to `path` instead.
    pub(crate) fn switch(&self, path: &Path) -> Result<()> {
        let new = open_log(path)?;
        *self.0.0.lock().unwrap_or_else(PoisonError::into_inner) = new;
        Ok(())
    }
}

/// Appends, without following a link planted at `path` (issue 12: a link would make the daemon
/// write its log into any file it can reach).
fn open_log(path: &Path) -> Result<File> {
    supervisor_core::os::open_append_nofollow(path, 0o640)
        .with_context(|| format!("cannot open {}", path.display()))
}
