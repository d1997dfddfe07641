//! The HTTP/JSON API (DESIGN §3): the same routes on the TCP address (bearer token required) and
//! on the Unix socket `data_dir/nm.sock` (mode 0600 in a 0700 directory: the file system is the
//! credential).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use nm_api::{
    CommandQuery, CommandReply, ErrorBody, LogQuery, LogStream, NodeStatus, Role, ServerInfo,
    ShutdownReply, ShutdownRequest, StandbyStatus,
};
use subtle::ConstantTimeEq;
use supervisor_core::{
    Accepted, Command, CommandError, ServerName, ServerState, ServerStatus, SupervisorHandle,
};
use tokio::sync::mpsc;

use crate::logview;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) node: String,
    pub(crate) pid: i32,
    pub(crate) started_at: SystemTime,
    pub(crate) data_dir: std::path::PathBuf,
    /// `<node>_standby.log` when `standby_port` is set.
    pub(crate) standby_log: Option<std::path::PathBuf>,
    pub(crate) listen: String,
    pub(crate) sup: SupervisorHandle,
    /// The active/standby pair, when `standby_port` is set and its port could be bound.
    pub(crate) pair: Option<replication::driver::ActiveHandle>,
    /// The takeover that made this process the active.
    pub(crate) last_takeover: Option<nm_api::TakeoverInfo>,
    pub(crate) token: Arc<String>,
    /// Asks main to shut down (after the reply is sent).
    pub(crate) shutdown: mpsc::Sender<ShutdownRequest>,
    pub(crate) shutdown_done:
        Arc<tokio::sync::Mutex<Option<tokio::sync::oneshot::Receiver<ShutdownReply>>>>,
    /// The HA pair's manager, when `[ha]` is configured.
    pub(crate) ha: Option<ha_modes::driver::HaHandle>,
    /// The HA-managed servers (empty without `[ha]`).
    pub(crate) ha_servers: Arc<Vec<String>>,
}

/// The routes; `authenticated` adds the bearer-token check (TCP).
pub(crate) fn router(state: AppState, authenticated: bool) -> Router {
    let api = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/servers", get(list))
        .route("/v1/servers/{name}", get(one))
        .route("/v1/servers/{name}/log", get(server_log))
        .route("/v1/servers/{name}/{command}", post(command))
        .route("/v1/nm/log", get(nm_log))
        .route("/v1/shutdown", post(shutdown))
        .route("/v1/ha", get(ha_status))
        .route("/v1/ha/mode/{mode}", post(ha_mode))
        .route("/v1/ha/{command}", post(ha_command))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            err(
                StatusCode::NOT_FOUND,
                "no such route (see docs/api.md)".into(),
            )
        })
        .method_not_allowed_fallback(|| async {
            err(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route (see docs/api.md)".into(),
            )
        });
    let api = if authenticated {
        api.layer(axum::middleware::from_fn_with_state(
            state.token.clone(),
            require_token,
        ))
    } else {
        api
    };
    api.with_state(state)
}

/// 401 and no change unless `Authorization: Bearer TOKEN` matches (compared in constant time).
async fn require_token(
    State(token): State<Arc<String>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    // the scheme name is case-insensitive (RFC 9110 §11.1); the token is not
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, t)| t.trim());
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) && !token.is_empty() {
        next.run(req).await
    } else {
        let mut resp = err(
            StatusCode::UNAUTHORIZED,
            "unauthorized: missing or wrong API token".into(),
        );
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        resp
    }
}

fn err(status: StatusCode, error: String) -> Response {
    (status, Json(ErrorBody { error })).into_response()
}

fn bad_query(e: &QueryRejection) -> Response {
    err(
        StatusCode::BAD_REQUEST,
        format!("bad query: {}", e.body_text()),
    )
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

pub(crate) fn server_info(s: &ServerStatus) -> ServerInfo {
    ServerInfo {
        name: s.view.name.to_string(),
        state: s.view.state,
        pid: s.pid,
        restart_count: s.view.restart_count,
        since: rfc3339(s.since),
        reason: s.view.reason.clone(),
        last_exit: s.view.last_exit.map(|e| e.to_string()),
        health_failures: s.spec.health.as_ref().map(|_| s.view.health_failures),
        command: s.spec.command.as_slice().to_vec(),
        stdout_log: s.stdout_log.display().to_string(),
        stderr_log: s.stderr_log.display().to_string(),
    }
}

async fn status(State(st): State<AppState>) -> Json<NodeStatus> {
    let snap = st.sup.snapshot();
    let mut servers = std::collections::BTreeMap::new();
    for s in snap.servers.values() {
        *servers.entry(s.view.state.as_str().to_owned()).or_insert(0) += 1;
    }
    let uptime = crate::wall_now()
        .duration_since(st.started_at)
        .unwrap_or_default();
    let pair = st
        .pair
        .as_ref()
        .map(replication::driver::ActiveHandle::status);
    Json(NodeStatus {
        node: st.node.clone(),
        pid: st.pid,
        role: Role::Active,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: rfc3339(st.started_at),
        uptime_secs: uptime.as_secs(),
        data_dir: st.data_dir.display().to_string(),
        listen: st.listen.clone(),
        standby_pid: pair.and_then(|p| p.standby.pid),
        takeovers: pair.map_or(0, |p| p.takeovers),
        standby: pair.map(|p| StandbyStatus {
            pid: p.standby.pid,
            state: p.standby.state.as_str().to_owned(),
            uptime_secs: p.standby.pid.map(|_| {
                crate::now()
                    .saturating_duration_since(p.standby.since)
                    .as_secs()
            }),
            launches: p.standby.launches,
            port: p.port,
            rejected_frames: p.rejected,
        }),
        last_takeover: st.last_takeover.clone(),
        ha: st.ha.as_ref().map(ha_modes::driver::HaHandle::report),
        servers,
    })
}

async fn list(State(st): State<AppState>) -> Json<Vec<ServerInfo>> {
    Json(
        st.sup
            .snapshot()
            .servers
            .values()
            .map(server_info)
            .collect(),
    )
}

/// An error answer: status and one line.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        err(self.0, self.1)
    }
}

fn find(st: &AppState, name: &str) -> Result<ServerStatus, ApiError> {
    let no = || ApiError(StatusCode::NOT_FOUND, format!("no server named {name:?}"));
    let key = ServerName::new(name).map_err(|_| no())?;
    st.sup.snapshot().servers.get(&key).cloned().ok_or_else(no)
}

async fn one(State(st): State<AppState>, Path(name): Path<String>) -> Response {
    match find(&st, &name) {
        Ok(s) => Json(server_info(&s)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn command(
    State(st): State<AppState>,
    Path((name, command)): Path<(String, String)>,
    q: Result<Query<CommandQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(&e),
    };
    let command = match command.as_str() {
        "start" => Command::Start,
        "stop" => Command::Stop,
        "restart" => Command::Restart,
        "kill" => Command::Kill,
        "suspend" => Command::Suspend,
        "resume" => Command::Resume,
        other => {
            return err(
                StatusCode::NOT_FOUND,
                format!("no command {other:?}: use start, stop, restart, kill, suspend or resume"),
            );
        }
    };
    let before = match find(&st, &name) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    // seed 004: an HA-managed server runs on the primary only
    if matches!(command, Command::Start | Command::Restart | Command::Resume)
        && st.ha_servers.contains(&name)
        && !st
            .ha
            .as_ref()
            .is_some_and(ha_modes::driver::HaHandle::is_primary)
    {
        return err(
            StatusCode::CONFLICT,
            format!(
                "server {name:?} is HA-managed: it runs only on the HA primary, and this node is not primary (see `nm-cli ha status`)"
            ),
        );
    }
    let wait = match q.wait {
        Some(w) if w.is_finite() && w > 0.0 => Some(Duration::from_secs_f64(w.min(3600.0))),
        Some(w) if !w.is_finite() || w < 0.0 => {
            return err(
                StatusCode::BAD_REQUEST,
                format!("bad wait {w}: give seconds >= 0"),
            );
        }
        _ => None,
    };
    let mut watch = st.sup.subscribe();
    let accepted = match st.sup.command(&name, command).await {
        Ok(Ok(a)) => a,
        Ok(Err(e @ CommandError::NoSuchServer(_))) => {
            return err(StatusCode::NOT_FOUND, e.to_string());
        }
        Ok(Err(e)) => return err(StatusCode::CONFLICT, e.to_string()),
        Err(_) => {
            return err(
                StatusCode::SERVICE_UNAVAILABLE,
                "nm-daemon is shutting down".into(),
            );
        }
    };
    let key = before.view.name.clone();
    let settled = |s: &ServerStatus| settled(command, before.view.generation, s);
    // The driver answers only after publishing the snapshot that shows the command's effect,
    // so the snapshot seen now is never from before the command. `start` of a STARTING server
    // is "already done" but still waits for RUNNING.
    let mut is_settled = false;
    let until = tokio::time::Instant::from_std(crate::now()) + wait.unwrap_or_default();
    loop {
        if watch
            .borrow_and_update()
            .servers
            .get(&key)
            .is_some_and(&settled)
        {
            is_settled = true;
            break;
        }
        if wait.is_none() {
            break;
        }
        match tokio::time::timeout_at(until, watch.changed()).await {
            Ok(Ok(())) => {}
            _ => break,
        }
    }
    let server = match find(&st, &name) {
        Ok(s) => server_info(&s),
        Err(e) => return e.into_response(),
    };
    Json(CommandReply {
        command,
        changed: accepted == Accepted::Changed,
        settled: is_settled,
        server,
    })
    .into_response()
}

/// Whether a server has come to rest after `command` (issued when its generation was `gen0`).
fn settled(command: Command, gen0: u64, s: &ServerStatus) -> bool {
    use ServerState as St;
    let state = s.view.state;
    match command {
        Command::Stop | Command::Kill => !state.has_process() && state != St::FailedRestarting,
        Command::Suspend => state == St::Suspended || !state.has_process(),
        Command::Resume => state != St::Suspended,
        Command::Start => !matches!(
            state,
            St::Starting | St::FailedRestarting | St::ShuttingDown
        ),
        Command::Restart => {
            s.view.generation > gen0
                && !matches!(
                    state,
                    St::Starting | St::FailedRestarting | St::ShuttingDown
                )
        }
    }
}

async fn server_log(
    State(st): State<AppState>,
    Path(name): Path<String>,
    q: Result<Query<LogQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(&e),
    };
    let s = match find(&st, &name) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let path = match q.stream {
        LogStream::Stdout => s.stdout_log,
        LogStream::Stderr => s.stderr_log,
    };
    logview::serve(path, q.tail, q.follow).await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NmLogQuery {
    #[serde(default)]
    tail: Option<usize>,
    #[serde(default)]
    follow: bool,
    #[serde(default)]
    standby: bool,
}

async fn nm_log(
    State(st): State<AppState>,
    q: Result<Query<NmLogQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(&e),
    };
    let path = if q.standby {
        match &st.standby_log {
            Some(p) => p.clone(),
            None => {
                return err(
                    StatusCode::NOT_FOUND,
                    "this node manager has no standby (standby_port is not configured)".into(),
                );
            }
        }
    } else {
        st.data_dir.join("nm.log")
    };
    logview::serve(path, q.tail, q.follow).await
}

async fn shutdown(State(st): State<AppState>, body: axum::body::Bytes) -> Response {
    // an empty body means the defaults; anything else must be a valid request (unknown fields
    // refused), so a typo never shuts down with the wrong choice
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        ShutdownRequest::default()
    } else {
        match serde_json::from_slice::<ShutdownRequest>(&body) {
            Ok(r) => r,
            Err(e) => {
                return err(
                    StatusCode::BAD_REQUEST,
                    format!("bad shutdown request: {e}"),
                );
            }
        }
    };
    // take the receiver and let go of the lock at once: a second request gets 409, not a wait
    let Some(rx) = st.shutdown_done.lock().await.take() else {
        return err(
            StatusCode::CONFLICT,
            "nm-daemon is already shutting down".into(),
        );
    };
    if st.shutdown.send(req).await.is_err() {
        return err(
            StatusCode::SERVICE_UNAVAILABLE,
            "nm-daemon is already shutting down".into(),
        );
    }
    match rx.await {
        Ok(reply) => Json(reply).into_response(),
        Err(_) => err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "shutdown did not report back".into(),
        ),
    }
}

async fn metrics(State(st): State<AppState>) -> Response {
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct ServerLabel {
        server: String,
    }
    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct StateLabel {
        state: String,
    }
    let mut reg = prometheus_client::registry::Registry::with_prefix("nm");
    let up = Family::<ServerLabel, Gauge>::default();
    let restarts = Family::<ServerLabel, Gauge>::default();
    let states = Family::<StateLabel, Gauge>::default();
    for s in ServerState::ALL {
        states
            .get_or_create(&StateLabel {
                state: s.as_str().to_owned(),
            })
            .set(0);
    }
    for s in st.sup.snapshot().servers.values() {
        let l = ServerLabel {
            server: s.view.name.to_string(),
        };
        up.get_or_create(&l)
            .set(i64::from(s.view.state == ServerState::Running));
        restarts
            .get_or_create(&l)
            .set(i64::from(s.view.restart_count));
        states
            .get_or_create(&StateLabel {
                state: s.view.state.as_str().to_owned(),
            })
            .inc();
    }
    reg.register("server_up", "1 when the server is RUNNING", up);
    reg.register(
        "server_restarts",
        "restarts by nm since the last operator start",
        restarts,
    );
    reg.register("servers", "servers in each state", states);
    // one gauge for a count or a flag
    let gauge = |v: u64| {
        let g = Gauge::<i64>::default();
        g.set(i64::try_from(v).unwrap_or(i64::MAX));
        g
    };
    if let Some(pair) = st
        .pair
        .as_ref()
        .map(replication::driver::ActiveHandle::status)
    {
        let attached = pair.standby.state == replication::core::StandbyState::Attached;
        reg.register(
            "standby_up",
            "1 when a standby node manager watches this active",
            gauge(u64::from(attached)),
        );
        reg.register(
            "takeovers",
            "takeovers by a standby since the node manager pair started",
            gauge(pair.takeovers),
        );
        reg.register(
            "standby_launches",
            "standby node managers this active has launched",
            gauge(pair.standby.launches),
        );
        reg.register(
            "standby_link_rejected",
            "standby-link frames and handshakes dropped for failing authentication or decoding",
            gauge(pair.rejected),
        );
    }
    if let Some(ha) = &st.ha {
        let r = ha.report();
        reg.register(
            "ha_primary",
            "1 when this node runs the HA-managed servers",
            gauge(u64::from(r.local.status == Some(ha_modes::Status::Primary))),
        );
        reg.register(
            "ha_peer_communicating",
            "1 when the HA peer communicates",
            gauge(u64::from(r.communicating)),
        );
        reg.register(
            "ha_state_prohibited",
            "1 while the pair is in one of the seed's prohibited states",
            gauge(u64::from(r.verdict == ha_modes::Verdict::Prohibited)),
        );
        reg.register(
            "ha_idle_failed_startup",
            "1 while starts are blocked after a failed start (ha clear lifts it)",
            gauge(u64::from(r.local.ha_idle_failed_startup == Some(true))),
        );
        reg.register(
            "ha_link_rejected",
            "HA-link frames and handshakes dropped for failing authentication or decoding",
            gauge(r.rejected_frames),
        );
    }
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &reg) {
        return err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// `GET /v1/ha`: both nodes' modes and statuses (after an exchange with the peer).
async fn ha_status(State(st): State<AppState>) -> Response {
    ha_run(&st, ha_modes::driver::PairCommand::Status).await
}

/// `POST /v1/ha/{command}`.
async fn ha_command(State(st): State<AppState>, Path(command): Path<String>) -> Response {
    use ha_modes::driver::PairCommand as P;
    let cmd = match command.as_str() {
        "start" => P::Start,
        "stop" => P::Stop,
        "config" => P::Config,
        "clear" => P::Clear,
        "peerdown" => P::Peerdown,
        "peerup" => P::Peerup,
        "force-smith" => P::ForceSmith,
        other => {
            return err(
                StatusCode::NOT_FOUND,
                format!(
                    "no HA command {other:?}: use start, stop, config, clear, peerdown, peerup, force-smith or mode/MODE"
                ),
            );
        }
    };
    ha_run(&st, cmd).await
}

/// `POST /v1/ha/mode/{mode}`.
async fn ha_mode(State(st): State<AppState>, Path(mode): Path<String>) -> Response {
    match mode.parse::<ha_modes::Mode>() {
        Ok(m) => ha_run(&st, ha_modes::driver::PairCommand::Mode(m)).await,
        Err(e) => err(StatusCode::BAD_REQUEST, e),
    }
}

async fn ha_run(st: &AppState, cmd: ha_modes::driver::PairCommand) -> Response {
    use ha_modes::driver::{HaError, PairCommand};
    let Some(ha) = &st.ha else {
        if cmd == PairCommand::Status {
            let report = ha_modes::HaReport::unconfigured(&st.node);
            return Json(ha_modes::HaReply {
                steps: vec![],
                report,
            })
            .into_response();
        }
        return err(
            StatusCode::CONFLICT,
            "HA is not configured on this node (no [ha] section in nm.toml)".into(),
        );
    };
    match ha.run(cmd).await {
        Ok(reply) => Json(reply).into_response(),
        Err(HaError::Refused(why)) => err(StatusCode::CONFLICT, format!("refused: {why}")),
        Err(HaError::Failed(why)) => {
            err(StatusCode::INTERNAL_SERVER_ERROR, format!("failed: {why}"))
        }
        Err(e) => err(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
