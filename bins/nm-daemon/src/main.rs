//! `nm-daemon --config FILE`: the node manager of one node. Reads `nm.toml`, recovers and starts
//! its servers, serves the API on TCP and on `data_dir/nm.sock`, and runs in the foreground until
//! SIGTERM/SIGINT (servers keep running) or `nm-cli shutdown`.

mod api;
mod config;
mod daemon;
mod logview;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The nm node manager daemon.
#[derive(Debug, Parser)]
#[command(name = "nm-daemon", version, about)]
struct Args {
    /// The node config (nm.toml).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// Validate the config, print a summary and exit (0 when valid, 2 when not).
    #[arg(long)]
    check: bool,
    /// Run as the standby node manager: watch the active, take over when it dies. The active
    /// launches its standby itself when `standby_port` is set; operators do not need this.
    #[arg(long, conflicts_with = "check")]
    standby: bool,
}

/// Exit status for a config that does not validate.
const EXIT_CONFIG: u8 = 2;
/// Exit status for a failure at start-up (data dir, address in use, another daemon running).
const EXIT_START: u8 = 1;
/// The exit status of an HA reset (seed 004): the HA-managed servers were killed, the smith log
/// says why. A service manager should restart the daemon (the node rejoins as secondary).
pub(crate) const EXIT_HA_RESET: u8 = 86;

fn main() -> ExitCode {
    let args = Args::parse();
    let cfg = match config::load(&args.config) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("nm-daemon: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.standby && cfg.standby.is_none() {
        eprintln!(
            "nm-daemon: --standby needs standby_port in {}",
            cfg.path.display()
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    if args.check {
        let ha = cfg.ha.as_ref().map_or_else(String::new, |h| {
            format!(
                ", HA pair with {:?} at {} ({} HA-managed)",
                h.peer,
                h.peer_address,
                h.servers.len()
            )
        });
        println!(
            "{}: ok (node {:?}, {} server{}, data_dir {}{ha})",
            cfg.path.display(),
            cfg.node,
            cfg.servers.len(),
            if cfg.servers.len() == 1 { "" } else { "s" },
            cfg.data_dir.display()
        );
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nm-daemon: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_START);
        }
    };
    match rt.block_on(daemon::run(cfg, args.standby)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<daemon::HaResetExit>().is_some() => {
            eprintln!("nm-daemon: {e:#}");
            ExitCode::from(EXIT_HA_RESET)
        }
        Err(e) => {
            eprintln!("nm-daemon: {e:#}");
            ExitCode::from(EXIT_START)
        }
    }
}

/// The daemon's one monotonic clock read (tokio's).
#[allow(clippy::disallowed_methods)]
pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Wall-clock time, for people.
pub(crate) fn wall_now() -> std::time::SystemTime {
    supervisor_core::driver::wall_now()
}
