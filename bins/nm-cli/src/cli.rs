//! The command line as clap derive types; `completions` generates from this same definition.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use supervisor_core::ServerName;

/// How `--help` explains finding the daemon and the exit codes.
const AFTER_HELP: &str = "\
Finding the daemon (first that is set wins): --socket, --addr, NM_SOCKET, NM_ADDR,
--config FILE (the socket DATA_DIR/nm.sock), NM_CONFIG, /etc/nm/nm.toml if it exists.
--addr needs the API token: --token-file FILE (NM_TOKEN_FILE), else the config's
token_file, else DATA_DIR/api.token.

Exit codes: 0 success; 1 refused by the daemon or the command failed; 2 usage error or
the daemon cannot be found or reached; 3 the server did not settle within --timeout.";

// The environment variables are read in `endpoint::Hints::new`, not by clap: NM_SOCKET and
// NM_ADDR rank below both flags (clap would let NM_SOCKET beat --addr, or call them a conflict),
// and an empty variable counts as unset (clap would call it a missing value).

/// Drive nm-daemon, the node manager: its status, its servers and their logs, and its shutdown.
#[derive(Debug, Parser)]
// `arg_required_else_help = false`: a missing command is a one-line usage error naming the
// commands, not the whole help on stderr
#[command(name = "nm-cli", version, after_help = AFTER_HELP, propagate_version = true)]
#[command(arg_required_else_help = false)]
pub(crate) struct Cli {
    /// The daemon's Unix socket [env: NM_SOCKET]
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "addr")]
    pub(crate) socket: Option<PathBuf>,
    /// The daemon's HTTP API address; needs the API token [env: NM_ADDR]
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub(crate) addr: Option<String>,
    /// File holding the API token for --addr [default: the config's token_file, else
    /// DATA_DIR/api.token] [env: NM_TOKEN_FILE]
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// The node's nm.toml: its data_dir holds the socket (nm.sock) and the token (api.token)
    /// [env: NM_CONFIG]
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Print the daemon's answer as one JSON document instead of a table
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Every command that talks to the daemon.
    #[command(flatten)]
    Daemon(DaemonCommand),
    /// Print shell completions for SHELL to stdout (needs no daemon)
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// The commands that talk to the daemon.
#[derive(Debug, Subcommand)]
pub(crate) enum DaemonCommand {
    /// Show the node manager: node, PID, role, uptime, servers by state
    Status,
    /// List, inspect and control servers, and read their logs
    #[command(subcommand, arg_required_else_help = false)]
    Server(ServerCommand),
    /// The node manager itself
    #[command(subcommand, arg_required_else_help = false)]
    Nm(NmCommand),
    /// The two-node HA pair (modes, statuses, start/stop of the HA-managed servers). Every
    /// command reports both nodes afterwards.
    #[command(subcommand, arg_required_else_help = false)]
    Ha(HaCommand),
    /// Stop the node manager (stopNodeManager); its servers keep running unless --stop-servers
    Shutdown {
        /// Stop every server before the daemon exits
        #[arg(long)]
        stop_servers: bool,
    },
}

/// `nm-cli server …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ServerCommand {
    /// One row per server: NAME STATE PID RESTARTS SINCE REASON
    List,
    /// Every detail of one server
    Status {
        /// The server
        name: ServerName,
    },
    /// Start a server and wait until it is RUNNING
    Start(Control),
    /// Stop a server (SIGTERM, SIGKILL after its stop_timeout) and wait until it is SHUTDOWN
    Stop(Control),
    /// Stop, then start a server, and wait until it is RUNNING
    Restart(Control),
    /// Suspend a server's process group (SIGSTOP)
    Suspend(Control),
    /// Resume a suspended server (SIGCONT)
    Resume(Control),
    /// Kill a server's process group now (SIGKILL); it is not restarted
    Kill(Control),
    /// Print a server's output log
    Log(ServerLog),
}

/// The arguments of a server command.
#[derive(Debug, Args)]
pub(crate) struct Control {
    /// The server
    pub(crate) name: ServerName,
    /// Answer at once, without waiting for the server to settle
    #[arg(long, conflicts_with = "timeout")]
    pub(crate) no_wait: bool,
    /// Wait up to SECS for the server to settle; exit 3 if it does not (0: do not wait)
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub(crate) timeout: u64,
}

impl Control {
    /// The `wait` to send: `None` for `--no-wait` or `--timeout 0`.
    pub(crate) fn wait(&self) -> Option<u64> {
        (!self.no_wait && self.timeout > 0).then_some(self.timeout)
    }
}

/// `nm-cli server log`.
#[derive(Debug, Args)]
pub(crate) struct ServerLog {
    /// The server
    pub(crate) name: ServerName,
    /// Only the last N lines
    #[arg(long, value_name = "N")]
    pub(crate) tail: Option<usize>,
    /// Keep printing what is appended, until Ctrl-C or the daemon ends the stream
    #[arg(long, short)]
    pub(crate) follow: bool,
    /// The stderr log instead of stdout
    #[arg(long)]
    pub(crate) stderr: bool,
    /// Print the bytes as they are, escape sequences included (on a terminal, control
    /// characters are otherwise shown as `^[`…, not obeyed; a pipe always gets the raw bytes)
    #[arg(long)]
    pub(crate) raw: bool,
}

/// `nm-cli nm …`.
#[derive(Debug, Subcommand)]
pub(crate) enum NmCommand {
    /// Print the node manager's own log (nm.log)
    Log {
        /// Only the last N lines
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
        /// The standby node manager's log instead of the active's
        #[arg(long)]
        standby: bool,
        /// Keep printing what is appended, until Ctrl-C or the daemon ends the stream
        #[arg(long, short)]
        follow: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum HaCommand {
    /// Both nodes' modes and statuses; changes nothing.
    Status,
    /// Both nodes to default mode; this node becomes primary, the peer secondary.
    Start,
    /// Stop the HA-managed servers on both nodes without an HA reset; both end in default mode.
    Stop,
    /// This node to config mode (the peer must be locked or certified peerdown).
    Config,
    /// Lift ha_idle_failed_startup after a failed start.
    Clear,
    /// Certify that the peer is powered off (never automate this).
    Peerdown,
    /// Withdraw the peerdown certification (refused in single or config mode).
    Peerup,
    /// Set this node's mode: default, single, config or locked.
    Mode {
        #[arg(value_parser = ["default", "single", "config", "locked"])]
        mode: String,
    },
    /// `force smith`: HA reset of this node now (default mode only).
    Force {
        /// The word `smith` (two words, so it is not fired by accident).
        #[arg(value_parser = ["smith"])]
        what: String,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_work_after_the_command() {
        let cli =
            Cli::try_parse_from(["nm-cli", "server", "list", "--json", "--socket", "/s"]).unwrap();
        assert!(cli.json);
        assert_eq!(cli.socket, Some(PathBuf::from("/s")));
    }

    #[test]
    fn ha_force_needs_the_word_smith() {
        assert!(Cli::try_parse_from(["nm-cli", "ha", "force"]).is_err());
        assert!(Cli::try_parse_from(["nm-cli", "ha", "force", "reset"]).is_err());
        assert!(Cli::try_parse_from(["nm-cli", "ha", "force", "smith"]).is_ok());
        assert!(Cli::try_parse_from(["nm-cli", "ha", "mode", "peerdown"]).is_err());
    }

    #[test]
    fn socket_and_addr_conflict() {
        let err = Cli::try_parse_from(["nm-cli", "--socket", "/s", "--addr", "h:1", "status"])
            .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn wait_defaults_to_30s_and_no_wait_sends_none() {
        let wait = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Command::Daemon(DaemonCommand::Server(ServerCommand::Start(c))) => c.wait(),
            other => panic!("{other:?}"),
        };
        assert_eq!(wait(&["nm-cli", "server", "start", "web"]), Some(30));
        assert_eq!(
            wait(&["nm-cli", "server", "start", "web", "--timeout", "5"]),
            Some(5)
        );
        assert_eq!(
            wait(&["nm-cli", "server", "start", "web", "--timeout", "0"]),
            None
        );
        assert_eq!(
            wait(&["nm-cli", "server", "start", "web", "--no-wait"]),
            None
        );
        assert!(
            Cli::try_parse_from([
                "nm-cli",
                "server",
                "start",
                "web",
                "--no-wait",
                "--timeout",
                "5"
            ])
            .is_err()
        );
    }

    #[test]
    fn bad_server_names_are_usage_errors() {
        for bad in ["../etc", "a b", "-x", ""] {
            let res = Cli::try_parse_from(["nm-cli", "server", "status", "--", bad]);
            assert!(res.is_err(), "{bad:?} accepted");
        }
    }
}
