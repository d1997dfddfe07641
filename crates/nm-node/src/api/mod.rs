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
    CommandQuery, CommandReply, ErrorBody, LogQuery, LogStream, NodeStatus, ServerInfo,
    ShutdownReply, ShutdownRequest,
};
use subtle::ConstantTimeEq;
use supervisor_core::{Accepted, Command, CommandError, ServerName, ServerState, ServerStatus};
use tokio::sync::mpsc;

use crate::node::{NodeHandle, Refusal};

mod logview;
mod metrics;
mod serving;

pub(crate) use serving::{Limits, serve};

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    /// The node.
    pub(crate) node: NodeHandle,
    pub(crate) token: Arc<String>,
    /// Asks the node to shut down (after the reply is sent).
    pub(crate) shutdown: mpsc::Sender<ShutdownRequest>,
    pub(crate) shutdown_done:
        Arc<tokio::sync::Mutex<Option<tokio::sync::oneshot::Receiver<ShutdownReply>>>>,
}

/// What one listener's handlers share besides the node: its own log-read slots.
#[derive(Clone)]
struct Listener {
    state: AppState,
    log_reads: Arc<tokio::sync::Semaphore>,
    max_log_reads: usize,
}

impl Listener {
    /// Serves a log file while holding a log-read slot until the answer (a `--follow` stream
    /// included) is done; 503 with `Retry-After` when all are taken.
    async fn log(&self, path: std::path::PathBuf, tail: Option<usize>, follow: bool) -> Response {
        if let Ok(slot) = self.log_reads.clone().try_acquire_owned() {
            return logview::serve(path, tail, follow, slot).await;
        }
        let mut resp = err(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many log reads in progress on this listener (at most {}): try again later",
                self.max_log_reads
            ),
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        resp
    }
}

/// The routes; `authenticated` adds the bearer-token check (TCP). Each router has its own
/// `limits.log_reads` slots, so TCP clients never take the Unix socket's.
pub(crate) fn router(state: AppState, authenticated: bool, limits: Limits) -> Router {
    let token = state.token.clone();
    let state = Listener {
        state,
        log_reads: Arc::new(tokio::sync::Semaphore::new(limits.log_reads)),
        max_log_reads: limits.log_reads,
    };
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
        api.layer(axum::middleware::from_fn_with_state(token, require_token))
    } else {
        api
    };
    // outermost: also covers the token check's and axum's own rejections
    api.with_state(state)
        .layer(axum::middleware::from_fn(json_errors))
}

/// The most of a non-JSON error body turned into a JSON one (axum's rejections are one line).
const MAX_ERROR_TEXT: usize = 4096;

/// Every 4xx/5xx answer is JSON `{"error": "..."}` (docs/api.md): an error that is not (axum's
/// rejections of a path, a body too large, …) gets its text wrapped.
async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_ERROR_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let error = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    let mut json = err(status, error);
    // keep what the rejection said besides its body (`Allow`, `WWW-Authenticate`, …)
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            json.headers_mut().insert(name.clone(), value.clone());
        }
    }
    json
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

async fn status(State(Listener { state: st, .. }): State<Listener>) -> Json<NodeStatus> {
    Json(st.node.status())
}

async fn list(State(Listener { state: st, .. }): State<Listener>) -> Json<Vec<ServerInfo>> {
    Json(
        st.node
            .sup
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
    let snap = st.node.sup.snapshot();
    if let Some(s) = ServerName::new(name)
        .ok()
        .and_then(|k| snap.servers.get(&k))
    {
        return Ok(s.clone());
    }
    let names = snap.servers.keys().map(ServerName::as_str);
    let hint = nearest(name, names).map_or_else(String::new, |n| format!(" (did you mean {n:?}?)"));
    Err(ApiError(
        StatusCode::NOT_FOUND,
        format!("no server named {name:?}{hint}"),
    ))
}

/// The configured name closest to a mistyped one, if any is close: edits (insertions,
/// deletions, substitutions, swaps of neighbours, case ignored) touch at most 40 % of it.
fn nearest<'a>(given: &str, names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let given = given.to_lowercase();
    names
        .map(|n| {
            (
                strsim::normalized_damerau_levenshtein(&given, &n.to_lowercase()),
                n,
            )
        })
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n)
}

async fn one(
    State(Listener { state: st, .. }): State<Listener>,
    Path(name): Path<String>,
) -> Response {
    match find(&st, &name) {
        Ok(s) => Json(server_info(&s)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn command(
    State(Listener { state: st, .. }): State<Listener>,
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
    let mut watch = st.node.sup.subscribe();
    let accepted = match st.node.command(&name, command).await {
        Ok(Ok(a)) => a,
        Ok(Err(e @ CommandError::NoSuchServer(_))) => {
            return err(StatusCode::NOT_FOUND, e.to_string());
        }
        Ok(Err(e)) => return err(StatusCode::CONFLICT, e.to_string()),
        Err(e @ Refusal::NotPrimary(_)) => return err(StatusCode::CONFLICT, e.to_string()),
        Err(e) => return err(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
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
    State(l): State<Listener>,
    Path(name): Path<String>,
    q: Result<Query<LogQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(&e),
    };
    let st = &l.state;
    let s = match find(st, &name) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let path = match q.stream {
        LogStream::Stdout => s.stdout_log,
        LogStream::Stderr => s.stderr_log,
    };
    l.log(path, q.tail, q.follow).await
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
    State(l): State<Listener>,
    q: Result<Query<NmLogQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(&e),
    };
    let st = &l.state;
    let path = if q.standby {
        match st
            .node
            .cfg
            .standby
            .map(|_| crate::standby_log_path(&st.node.cfg))
        {
            Some(p) => p,
            None => {
                return err(
                    StatusCode::NOT_FOUND,
                    "this node manager has no standby (standby_port is not configured)".into(),
                );
            }
        }
    } else {
        st.node.cfg.data_dir.join("nm.log")
    };
    l.log(path, q.tail, q.follow).await
}

/// The largest shutdown request read (it is a handful of booleans).
const MAX_SHUTDOWN_BODY: usize = 4096;

async fn shutdown(State(Listener { state: st, .. }): State<Listener>, req: Request) -> Response {
    // a body that trickles in holds no connection for long (the header timeout has stopped)
    let body = match tokio::time::timeout(
        serving::HEADER_TIMEOUT,
        axum::body::to_bytes(req.into_body(), MAX_SHUTDOWN_BODY),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return err(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("shutdown request larger than {MAX_SHUTDOWN_BODY} bytes, or cut short"),
            );
        }
        Err(_) => {
            return err(
                StatusCode::REQUEST_TIMEOUT,
                "the shutdown request's body did not arrive in time".into(),
            );
        }
    };
    let req = match shutdown_request(&body) {
        Ok(r) => r,
        Err(e) => {
            return err(
                StatusCode::BAD_REQUEST,
                format!("bad shutdown request: {e}"),
            );
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

/// The request in a shutdown body: empty means the defaults; anything else must be a JSON object
/// with known fields only, so a typo (or `[true]`, which serde would read as the first field)
/// never shuts down with the wrong choice.
fn shutdown_request(body: &[u8]) -> Result<ShutdownRequest, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ShutdownRequest::default());
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if !value.is_object() {
        return Err("the body must be a JSON object (or empty)".into());
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

async fn metrics(State(Listener { state: st, .. }): State<Listener>) -> Response {
    match metrics::render(&st.node) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /v1/ha`: both nodes' modes and statuses (after an exchange with the peer).
async fn ha_status(State(Listener { state: st, .. }): State<Listener>) -> Response {
    ha_run(&st, ha_modes::driver::PairCommand::Status).await
}

/// `POST /v1/ha/{command}`.
async fn ha_command(
    State(Listener { state: st, .. }): State<Listener>,
    Path(command): Path<String>,
) -> Response {
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
async fn ha_mode(
    State(Listener { state: st, .. }): State<Listener>,
    Path(mode): Path<String>,
) -> Response {
    match mode.parse::<ha_modes::Mode>() {
        Ok(m) => ha_run(&st, ha_modes::driver::PairCommand::Mode(m)).await,
        Err(e) => err(StatusCode::BAD_REQUEST, e),
    }
}

async fn ha_run(st: &AppState, cmd: ha_modes::driver::PairCommand) -> Response {
    use ha_modes::driver::{HaError, PairCommand};
    let Some(ha) = &st.node.ha else {
        if cmd == PairCommand::Status {
            let report = ha_modes::HaReport::unconfigured(&st.node.cfg.node);
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

#[cfg(test)]
mod tests {
    use super::{json_errors, nearest, shutdown_request};
    use axum::Router;
    use axum::body::Body;
    use axum::extract::Path;
    use axum::http::{Request, StatusCode};
    use axum::routing::post;
    use tower::ServiceExt;

    #[test]
    fn a_shutdown_body_is_a_json_object_or_empty() {
        assert!(!shutdown_request(b"").unwrap().stop_servers);
        assert!(!shutdown_request(b" \n").unwrap().stop_servers);
        assert!(!shutdown_request(b"{}").unwrap().stop_servers);
        assert!(
            shutdown_request(br#"{"stop_servers": true}"#)
                .unwrap()
                .stop_servers
        );
        for bad in [
            &b"[]"[..],
            b"[true]",
            b"true",
            b"\"x\"",
            b"null",
            b"1",
            b"{",
            br#"{"stop_server": true}"#,
        ] {
            let e = shutdown_request(bad).unwrap_err();
            assert!(!e.is_empty(), "{}", String::from_utf8_lossy(bad));
        }
    }

    async fn call(router: Router, req: Request<Body>) -> (StatusCode, serde_json::Value) {
        let resp = router.oneshot(req).await.unwrap();
        let status = resp.status();
        assert_eq!(
            resp.headers()["content-type"],
            "application/json",
            "{status}"
        );
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn axums_own_rejections_are_json_errors() {
        let router = || {
            Router::new()
                .route(
                    "/n/{n}",
                    post(|Path(n): Path<u32>, _: axum::body::Bytes| async move { n.to_string() }),
                )
                .layer(axum::middleware::from_fn(json_errors))
        };
        let req = |uri: &str, body: Vec<u8>| Request::post(uri).body(Body::from(body)).unwrap();
        let (status, body) = call(router(), req("/n/x", vec![])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().contains("parse"), "{body}");
        // axum's default body limit is 2 MB
        let (status, body) = call(router(), req("/n/1", vec![b'x'; 3 << 20])).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body["error"].is_string(), "{body}");
        let (status, body) = call(router(), req("/nowhere", vec![])).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "not found");
        let (status, _) = call(router(), Request::get("/n/1").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        // a success passes untouched
        let resp = router().oneshot(req("/n/7", vec![])).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }

    #[test]
    fn a_mistyped_server_name_gets_the_nearest_configured_one() {
        let names = ["web", "ticker", "flaky"];
        assert_eq!(nearest("wbe", names.into_iter()), Some("web"));
        assert_eq!(nearest("tikcer", names.into_iter()), Some("ticker"));
        assert_eq!(nearest("WEB", names.into_iter()), Some("web"));
        assert_eq!(nearest("database", names.into_iter()), None);
        assert_eq!(nearest("web", std::iter::empty()), None);
    }
}
