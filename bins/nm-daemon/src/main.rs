//! `nm-daemon --config FILE`: the node manager of one node. Reads `nm.toml`, runs the node
//! (`nm_node::Node`: servers, HA manager, standby pair, API) in the foreground until SIGTERM or
//! SIGINT or `nm-cli shutdown` (servers keep running, except HA-managed ones, which are handed
//! over to the HA peer), and maps how it ended to an exit status: 0 stopped (or `--check`
//! passed), 1 start-up failed, 2 bad config, 70 a panic anywhere in the daemon (it exits at once,
//! nothing half alive: [`panic`]), 86 an HA reset ([`nm_node::EXIT_HA_RESET`]).
//! Everything else lives in the `nm-node` crate.

mod log;
mod panic;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use nm_node::config::{self, NodeConfig};
use nm_node::standby::Watched;
use nm_node::{Node, NodeExit, Origin, StartOptions, StopReason};
use tokio::signal::unix::{SignalKind, signal};

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

fn main() -> ExitCode {
    panic::exit_on_panic();
    let args = Args::parse();
    let cfg = match config::load(&args.config) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("nm-daemon: {e}");
            if let Some(excerpt) = e.excerpt() {
                eprintln!("{excerpt}");
            }
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
        println!("{}", summary(&cfg));
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
    match rt.block_on(run(cfg, args.standby)) {
        Ok(NodeExit::Stopped) => ExitCode::SUCCESS,
        Ok(NodeExit::HaReset(why)) => {
            eprintln!("nm-daemon: HA reset: {why}");
            ExitCode::from(nm_node::EXIT_HA_RESET)
        }
        Err(e) => {
            eprintln!("nm-daemon: {e:#}");
            ExitCode::from(EXIT_START)
        }
    }
}

/// `--check`'s one line.
fn summary(cfg: &NodeConfig) -> String {
    let ha = cfg.ha.as_ref().map_or_else(String::new, |h| {
        let n = h.servers.len();
        format!(
            ", HA pair with {:?} at {} ({n} HA-managed)",
            h.peer, h.peer_address
        )
    });
    let n = cfg.servers.len();
    format!(
        "{}: ok (node {:?}, {n} server{}, data_dir {}{ha})",
        cfg.path.display(),
        cfg.node,
        if n == 1 { "" } else { "s" },
        cfg.data_dir.display()
    )
}

/// The active (a normal start) or, with `standby`, a standby that watches the active and
/// becomes it at a takeover.
async fn run(cfg: NodeConfig, standby: bool) -> anyhow::Result<NodeExit> {
    let origin = if standby {
        // the standby's whole life (JEUS): it logs to `<node>_standby.log` until its takeover
        let log = log::LogFile::init(&cfg, &nm_node::standby_log_path(&cfg), false)?;
        let origin = match nm_node::standby::watch(&cfg).await? {
            Watched::Left => return Ok(NodeExit::Stopped),
            Watched::TookOver(origin) => origin,
        };
        if let Err(e) = log.switch(&cfg.data_dir.join("nm.log")) {
            // keep serving: the servers need a node manager more than the log needs its file
            tracing::error!("{e:#}; the active keeps logging here");
        }
        if let Origin::Takeover(t) = &origin {
            let from = t
                .info
                .from_pid
                .map_or_else(|| "an unknown process".into(), |p| format!("pid {p}"));
            tracing::warn!(
                pid = std::process::id(),
                takeovers = t.takeovers,
                "took over from the active node manager ({from}, {}); takeover #{}",
                t.info.reason,
                t.takeovers
            );
        }
        origin
    } else {
        let lock = nm_node::claim_data_dir(&cfg)?;
        log::LogFile::init(&cfg, &cfg.data_dir.join("nm.log"), true)?;
        Origin::Fresh(lock)
    };
    serve(cfg, origin).await
}

/// Runs the node until a signal or a request from inside stops it.
async fn serve(cfg: NodeConfig, origin: Origin) -> anyhow::Result<NodeExit> {
    // Signals first: from here on SIGTERM/SIGINT is an orderly stop of the pair, never a
    // default-action death that the standby would take for a crash.
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let takeover = matches!(origin, Origin::Takeover(_));
    let mut node = Node::start_with(cfg, origin, StartOptions::default()).await?;
    let mut notify = vec![sd_notify::NotifyState::Ready];
    if takeover {
        // the service manager's main PID is now us (needs NotifyAccess=all)
        notify.push(sd_notify::NotifyState::MainPid(std::process::id()));
    }
    let _ = sd_notify::notify(&notify);
    let reason = tokio::select! {
        _ = sigterm.recv() => StopReason::Signal("SIGTERM"),
        _ = sigint.recv() => StopReason::Signal("SIGINT"),
        why = node.stop_requested() => why,
    };
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    Ok(node.shutdown(reason).await?)
}
