//! `nm-cli`: drives nm-daemon over its API (Unix socket or HTTP with a bearer token).
//!
//! A thin binary: `cli` parses, `endpoint` finds the daemon, `nm_api::client` talks to it,
//! `render` turns answers into text, `exit` maps errors to exit codes and one stderr line.
//! `docs/cli.md` is the reference.

mod cli;
mod endpoint;
mod escape;
mod exit;
mod render;

use std::future::Future;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser as _};
use http_body_util::BodyExt as _;
use nm_api::client::{Client, ClientError};
use nm_api::{CommandReply, HaReply, NodeStatus, ServerInfo, ShutdownReply, ShutdownRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use supervisor_core::Command as ServerCmd;

use crate::cli::{Cli, Command, Control, DaemonCommand, HaCommand, NmCommand, ServerCommand};
use crate::endpoint::Hints;
use crate::render::Verdict;

/// How long a request may take beyond its `wait`, before the daemon counts as not answering
/// (a daemon stopped with SIGSTOP still accepts connections).
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// How long `shutdown --stop-servers` may take: every server's `stop_timeout` runs first.
const STOP_ALL_WITHIN: Duration = Duration::from_secs(600);

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage(&err),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => Err(anyhow::Error::new(e).context("cannot start the tokio runtime")),
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(err) => {
            eprintln!("nm-cli: {}", exit::one_line(&err));
            ExitCode::from(exit::code(&err))
        }
    }
}

/// Help and version go to stdout (exit 0); a usage error is one line on stderr (exit 2).
fn usage(err: &clap::Error) -> ExitCode {
    if !err.use_stderr() {
        let _ = err.print();
        return ExitCode::from(exit::OK);
    }
    // clap's text is several lines: the reason (with the missing argument or the subcommands on
    // lines of their own), tips, then usage; keep everything before the usage, on one line
    let text = err.render().to_string();
    let mut reason = String::new();
    for line in text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:"))
    {
        if line.is_empty() || line.starts_with("For more information") {
            continue;
        }
        let sep = if line.starts_with("tip:") { "; " } else { " " };
        if !reason.is_empty() {
            reason.push_str(sep);
        }
        reason.push_str(line.trim_start_matches("error:").trim());
    }
    eprintln!("nm-cli: {reason} (try --help)");
    ExitCode::from(exit::UNREACHABLE)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = match cli.command {
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "nm-cli", &mut out);
            return print_bytes(&out);
        }
        Command::Daemon(command) => command,
    };
    let hints = Hints::new(cli.socket, cli.addr, cli.config, cli.token_file);
    let client = Client::new(endpoint::resolve(&hints)?);
    let json = cli.json;
    match command {
        DaemonCommand::Status => {
            let status = get::<NodeStatus>(&client, "/v1/status").await?;
            print_doc(json, &status, || render::node_status(&status))
        }
        DaemonCommand::Server(ServerCommand::List) => {
            let servers = get::<Vec<ServerInfo>>(&client, "/v1/servers").await?;
            print_doc(json, &servers, || render::server_list(&servers, wall_now()))
        }
        DaemonCommand::Server(ServerCommand::Status { name }) => {
            let server = get::<ServerInfo>(&client, &format!("/v1/servers/{name}")).await?;
            print_doc(json, &server, || render::server_status(&server, wall_now()))
        }
        DaemonCommand::Server(ServerCommand::Start(c)) => {
            server_command(&client, json, ServerCmd::Start, &c).await
        }
        DaemonCommand::Server(ServerCommand::Stop(c)) => {
            server_command(&client, json, ServerCmd::Stop, &c).await
        }
        DaemonCommand::Server(ServerCommand::Restart(c)) => {
            server_command(&client, json, ServerCmd::Restart, &c).await
        }
        DaemonCommand::Server(ServerCommand::Suspend(c)) => {
            server_command(&client, json, ServerCmd::Suspend, &c).await
        }
        DaemonCommand::Server(ServerCommand::Resume(c)) => {
            server_command(&client, json, ServerCmd::Resume, &c).await
        }
        DaemonCommand::Server(ServerCommand::Kill(c)) => {
            server_command(&client, json, ServerCmd::Kill, &c).await
        }
        DaemonCommand::Server(ServerCommand::Log(log)) => {
            let stream = if log.stderr {
                "stream=stderr"
            } else {
                "stream=stdout"
            };
            let query = log_query(Some(stream), log.tail, log.follow);
            // a server's bytes may hold escape sequences: shown, not obeyed, on a terminal
            let escape = !log.raw && std::io::IsTerminal::is_terminal(&std::io::stdout());
            let path = format!("/v1/servers/{}/log{query}", log.name);
            stream_log(&client, &path, escape.then(escape::Escaper::default)).await
        }
        DaemonCommand::Nm(NmCommand::Log {
            tail,
            standby,
            follow,
        }) => {
            let query = log_query(standby.then_some("standby=true"), tail, follow);
            stream_log(&client, &format!("/v1/nm/log{query}"), None).await
        }
        DaemonCommand::Ha(cmd) => {
            let path = match &cmd {
                HaCommand::Status => None,
                HaCommand::Start => Some("/v1/ha/start".to_owned()),
                HaCommand::Stop => Some("/v1/ha/stop".to_owned()),
                HaCommand::Config => Some("/v1/ha/config".to_owned()),
                HaCommand::Clear => Some("/v1/ha/clear".to_owned()),
                HaCommand::Peerdown => Some("/v1/ha/peerdown".to_owned()),
                HaCommand::Peerup => Some("/v1/ha/peerup".to_owned()),
                HaCommand::Mode { mode } => Some(format!("/v1/ha/mode/{mode}")),
                HaCommand::Force { .. } => Some("/v1/ha/force-smith".to_owned()),
            };
            let reply: HaReply = match path {
                None => get(&client, "/v1/ha").await?,
                // `ha start` / `ha stop` wait for servers to stop and start on both nodes
                Some(p) => post(&client, &p, &serde_json::json!({}), STOP_ALL_WITHIN).await?,
            };
            print_doc(json, &reply, || render::ha(&reply))
        }
        DaemonCommand::Shutdown { stop_servers } => {
            let within = if stop_servers {
                STOP_ALL_WITHIN
            } else {
                ANSWER_WITHIN
            };
            let request = ShutdownRequest { stop_servers };
            let reply = post::<ShutdownReply>(&client, "/v1/shutdown", &request, within).await?;
            print_doc(json, &reply, || render::shutdown(&reply))
        }
    }
}

/// `POST /v1/servers/NAME/COMMAND[?wait=SECS]`, print the answer, judge it.
async fn server_command(
    client: &Client,
    json: bool,
    command: ServerCmd,
    c: &Control,
) -> anyhow::Result<()> {
    let wait = c.wait();
    let mut path = format!("/v1/servers/{}/{}", c.name, command.as_str());
    if let Some(secs) = wait {
        path.push_str(&format!("?wait={secs}"));
    }
    let within = ANSWER_WITHIN + Duration::from_secs(wait.unwrap_or(0));
    let reply = post::<CommandReply>(client, &path, &serde_json::json!({}), within).await?;
    let verdict = render::command_verdict(&reply, wait);
    if json {
        print_json(&reply)?;
    } else if let Verdict::Done(line) = &verdict {
        print_text(&format!("{line}\n"))?;
    }
    match verdict {
        Verdict::Done(_) => Ok(()),
        Verdict::Failed(line) => Err(exit::Outcome::Failed(line).into()),
        Verdict::TimedOut(line) => Err(exit::Outcome::TimedOut(line).into()),
    }
}

/// `?first&tail=N&follow=true`, each part only when asked for; empty when none is.
fn log_query(first: Option<&str>, tail: Option<usize>, follow: bool) -> String {
    let tail = tail.map(|n| format!("tail={n}"));
    let parts: Vec<&str> = first
        .into_iter()
        .chain(tail.as_deref())
        .chain(follow.then_some("follow=true"))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// `GET path`, decoded.
async fn get<T: DeserializeOwned>(client: &Client, path: &str) -> anyhow::Result<T> {
    within(client, ANSWER_WITHIN, client.get(path)).await
}

/// `POST path` with a JSON body, decoded; the answer may take up to `limit`.
async fn post<T: DeserializeOwned>(
    client: &Client,
    path: &str,
    body: &impl Serialize,
    limit: Duration,
) -> anyhow::Result<T> {
    within(client, limit, client.post(path, body)).await
}

/// A request that must answer within `limit`.
async fn within<T>(
    client: &Client,
    limit: Duration,
    request: impl Future<Output = Result<T, ClientError>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(limit, request).await {
        Ok(answer) => Ok(answer?),
        Err(_elapsed) => Err(exit::NoAnswer {
            endpoint: client.endpoint().to_string(),
            after: limit,
        }
        .into()),
    }
}

/// Copies a text answer to stdout as it arrives, so `--follow` shows lines as they are written.
/// Streams a log to stdout, through `escaper` when given.
async fn stream_log(
    client: &Client,
    path: &str,
    mut escaper: Option<escape::Escaper>,
) -> anyhow::Result<()> {
    let response = within(client, ANSWER_WITHIN, client.get_stream(path)).await?;
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ClientError::Transport {
            endpoint: client.endpoint().to_string(),
            detail: format!("log stream broke: {e}"),
        })?;
        if let Ok(data) = frame.into_data() {
            let data = match &mut escaper {
                Some(e) => e.escape(&data).into(),
                None => data,
            };
            match write_stdout(&data) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()), // reader gone
                other => other.context("writing to stdout")?,
            }
        }
    }
    if let Some(rest) = escaper.as_mut().map(escape::Escaper::finish) {
        print_bytes(&rest)?;
    }
    Ok(())
}

/// `--json`: the answer as one JSON document; otherwise the table `table` renders.
fn print_doc(
    json: bool,
    answer: &impl Serialize,
    table: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        print_json(answer)
    } else {
        print_text(&table())
    }
}

/// The answer re-serialized from the API type: one pretty JSON document, fields in the order
/// `nm_api` declares them.
fn print_json(answer: &impl Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(answer).context("encoding JSON")?;
    text.push('\n');
    print_text(&text)
}

fn print_text(text: &str) -> anyhow::Result<()> {
    print_bytes(text.as_bytes())
}

/// Writes to stdout. A closed pipe (`nm-cli … | head`) is not an error.
fn print_bytes(bytes: &[u8]) -> anyhow::Result<()> {
    match write_stdout(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("writing to stdout"))
        }
        _ => Ok(()),
    }
}

fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

#[allow(clippy::disallowed_methods)] // the CLI's one wall-clock read: ages shown to people
fn wall_now() -> SystemTime {
    SystemTime::now()
}
