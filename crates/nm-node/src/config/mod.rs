//! The node config, `nm.toml`: read, checked and turned into a [`NodeConfig`] (DESIGN §3 "Config
//! (TOML)"). `docs/config.md` is the reference for every key.
//!
//! A config is all or nothing (DESIGN §4.3): [`load`] and [`parse`] return either a complete,
//! checked [`NodeConfig`] or one [`ConfigError`] whose `Display` is a single line,
//! `FILE:LINE:COLUMN: message`, naming the offending key or value. Nothing is created or touched
//! on disk here: the data directory is only named, not made.
//!
//! This is the one reader of `nm.toml`: `nm-daemon` runs a node from it, `nm-daemon --check`
//! validates with it, and `nm-cli --config FILE` finds the daemon's socket and token through it.

mod ha;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use supervisor_core::{HealthSpec, Probe, ServerSpec};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A node's configuration, checked and complete: what `nm.toml` says, with every default filled
/// in and every relative path resolved against the directory of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// The file it came from, absolute.
    pub path: PathBuf,
    /// This node's name: 1 to 64 characters from `[A-Za-z0-9_.-]`, not starting with `.` or `-`.
    pub node: String,
    /// The data directory, absolute: state, logs, sockets, keys. It may not exist yet.
    pub data_dir: PathBuf,
    /// Where the HTTP API listens (default `127.0.0.1:5556`).
    pub listen: SocketAddr,
    /// The API bearer token file, absolute. `None`: the daemon uses `data_dir/api.token` and
    /// generates it when it is missing.
    pub token_file: Option<PathBuf>,
    /// Recover servers from their lock files at daemon start: adopt those still running, restart
    /// those that died while meant to run (WebLogic `CrashRecoveryEnabled`, default on). Off: lock
    /// files are ignored and `auto_start` servers are started afresh.
    pub crash_recovery: bool,
    /// How the daemon writes its own log (default [`LogFormat::Human`]).
    pub log_format: LogFormat,
    /// The daemon's log level: one of `error`, `warn`, `info`, `debug`, `trace` (default `info`).
    pub log_level: String,
    /// The `[[server]]` tables in file order, as written: names unique, `cwd` absolute, `user`
    /// known. What the supervisor runs is [`crate::rules::supervised_servers`] of this (HA-managed
    /// servers never start by themselves).
    pub servers: Vec<Arc<ServerSpec>>,
    /// Node manager replication (`standby_port`): `None` runs no standby.
    pub standby: Option<StandbyConfig>,
    /// The two-node HA pair (`[ha]`): `None` is a node without HA.
    pub ha: Option<HaSettings>,
}

pub use ha::{
    FENCE_DELAY_RANGE, FENCE_RETRY_RANGE, FENCE_TIMEOUT_RANGE, HaSettings, START_TIMEOUT_RANGE,
};

/// The active/standby pair's settings: `standby_port`, `standby_heartbeat`, `standby_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandbyConfig {
    /// The loopback port of the standby link (1-65535, not the API's).
    pub port: u16,
    /// How often each side sends a heartbeat (default 500 ms).
    pub heartbeat: Duration,
    /// Silence after which a side fences the other (default 3 s, at least twice the heartbeat).
    pub timeout: Duration,
}

/// The format of the daemon's own log lines, `log_format` in `nm.toml`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable text lines (`"human"`, the default).
    #[default]
    Human,
    /// One JSON object per line (`"json"`).
    Json,
}

/// A config that cannot be used. Nothing was built from it and nothing on disk changed.
///
/// `Display` is one line that starts with the file as it was given: `FILE:LINE:COLUMN: ` when the
/// problem has a position, `FILE: ` when it does not. There is no `#[source]`: the reason is part
/// of the line, so `{}` and anyhow's `{:#}` print the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read (missing, a directory, no permission), or its path could not be
    /// made absolute.
    #[error("{}: cannot read: {reason}", path.display())]
    Unreadable {
        /// The file as given.
        path: PathBuf,
        /// Why, from the operating system.
        reason: String,
    },
    /// A syntax error, an unknown key or a bad value at a position in the file.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        /// The file as given.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What is wrong, on one line.
        message: String,
        /// The offending source line with a caret underline, two lines; see
        /// [`ConfigError::excerpt`].
        excerpt: String,
    },
    /// A problem without a single position: a required top-level key is missing.
    #[error("{}: {message}", path.display())]
    Incomplete {
        /// The file as given.
        path: PathBuf,
        /// What is wrong, on one line.
        message: String,
    },
}

impl ConfigError {
    /// For [`ConfigError::Invalid`], the offending source line and a caret line under the bad
    /// span, for printing after the one-line message (e.g. by `nm-daemon --check`):
    ///
    /// ```text
    ///    5 | restart_interval = "soon"
    ///      |                    ^^^^^^
    /// ```
    #[must_use]
    pub fn excerpt(&self) -> Option<&str> {
        match self {
            Self::Invalid { excerpt, .. } => Some(excerpt),
            Self::Unreadable { .. } | Self::Incomplete { .. } => None,
        }
    }
}

/// Reads, parses and checks the node config at `path`.
///
/// # Errors
/// [`ConfigError::Unreadable`] when the file cannot be read or is larger than
/// [`MAX_CONFIG_SIZE`]; otherwise as [`parse`] (a file that
/// is not UTF-8 is [`ConfigError::Invalid`] at its first bad byte).
pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
    use std::io::Read;
    let unreadable = |reason: String| ConfigError::Unreadable {
        path: path.to_owned(),
        reason,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CONFIG_SIZE + 1).read_to_end(&mut bytes))
        .map_err(|e| unreadable(e.to_string()))?;
    if bytes.len() as u64 > MAX_CONFIG_SIZE {
        // a config is a few kilobytes; this bounds what a mistake (`/dev/zero`) costs
        return Err(unreadable(format!(
            "larger than {} MiB: not a node config",
            MAX_CONFIG_SIZE >> 20
        )));
    }
    match std::str::from_utf8(&bytes) {
        Ok(text) => parse(text, path),
        Err(e) => {
            let at = e.valid_up_to();
            // bytes before `at` are valid, so offsets up to `at` mean the same in the lossy copy
            let lossy = String::from_utf8_lossy(&bytes);
            let byte = bytes.get(at).copied().unwrap_or_default();
            let message = format!("the file is not UTF-8 text (byte 0x{byte:02x})");
            Err(invalid(path, &lossy, at..at + 1, message))
        }
    }
}

/// Parses and checks `text` as a node config. `path` names the file in messages, and relative
/// paths in the file (`data_dir`, `token_file`, a server's `cwd`) are resolved against its
/// directory; a relative `path` is taken from the current directory.
///
/// Reads `/etc/passwd` when a server names its `user` by name.
///
/// # Errors
/// [`ConfigError::Invalid`] for a syntax error, an unknown key, a bad value, a duplicate server
/// name or an unknown user; [`ConfigError::Incomplete`] when `node` or `data_dir` is missing;
/// [`ConfigError::Unreadable`] when `path` cannot be made absolute.
pub fn parse(text: &str, path: &Path) -> Result<NodeConfig, ConfigError> {
    let abs_path = std::path::absolute(path).map_err(|e| ConfigError::Unreadable {
        path: path.to_owned(),
        reason: format!("cannot make the path absolute: {e}"),
    })?;
    let dir = abs_path.parent().unwrap_or(Path::new("/")).to_owned();
    let doc = DeTable::parse(text).map_err(|e| toml_error(path, text, None, &e))?;
    let root = doc.span();
    let raw = RawConfig::deserialize(toml::de::Deserializer::from(doc.clone()))
        .map_err(|e| toml_error(path, text, Some(&root), &e))?;
    let mut checker = Checker {
        text,
        doc: doc.get_ref(),
        dir,
        problems: Vec::new(),
        passwd: None,
    };
    let config = checker.check(raw, abs_path);
    // report the problem that comes first in the file, whatever order the checks ran in
    match checker
        .problems
        .into_iter()
        .min_by_key(|(span, _)| span.start)
    {
        None => Ok(config),
        Some((span, message)) => Err(invalid(path, text, span, message)),
    }
}

/// The largest `nm.toml` [`load`] reads: 4 MiB (a config with a thousand servers is well under
/// one).
pub const MAX_CONFIG_SIZE: u64 = 4 << 20;

/// `listen` when the file has none.
const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5556));

/// The values of `log_level`, least verbose first.
const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// The longest path a Unix socket can bind to: `sun_path` holds 108 bytes with the closing NUL.
const MAX_SOCKET_PATH: usize = 107;

/// Where users named by name are looked up.
const PASSWD: &str = "/etc/passwd";

/// Environment variables the daemon sets for each start (the token is checked on adoption,
/// DESIGN §4.2), so a server's `env` may not set them.
const RESERVED_ENV: [&str; 2] = ["NM_SERVER_NAME", "NM_SERVER_TOKEN"];

/// The top-level keys, for the hint about keys written after a `[[server]]` table.
const TOP_LEVEL_KEYS: [&str; 11] = [
    "node",
    "data_dir",
    "listen",
    "token_file",
    "crash_recovery",
    "log_format",
    "log_level",
    "standby_port",
    "standby_heartbeat",
    "standby_timeout",
    "cluster_key_file",
];

/// `standby_heartbeat` when the file has none.
const DEFAULT_STANDBY_HEARTBEAT: Duration = Duration::from_millis(500);
/// `standby_timeout` when the file has none.
const DEFAULT_STANDBY_TIMEOUT: Duration = Duration::from_secs(3);

/// The range of a heartbeat (`standby_heartbeat`, `[ha] heartbeat`): at least 10 ms, so a typo
/// does not make the links busy-loop, and at most a minute, past which a peer's silence would go
/// unnoticed for longer than any failover is meant to take.
pub const HEARTBEAT_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(10)..=Duration::from_secs(60);
/// The range of the silence that counts a peer lost (`standby_timeout`, `[ha] peer_timeout`):
/// at most an hour (it must also be at least twice the heartbeat).
pub const PEER_TIMEOUT_RANGE: RangeInclusive<Duration> =
    Duration::from_nanos(1)..=Duration::from_secs(3600);

/// `nm.toml` as written. Values serde cannot check alone keep their span for the checker.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: Spanned<String>,
    data_dir: Spanned<PathBuf>,
    #[serde(default)]
    listen: Option<Spanned<String>>,
    #[serde(default)]
    token_file: Option<Spanned<PathBuf>>,
    #[serde(default = "yes")]
    crash_recovery: bool,
    #[serde(default)]
    log_format: LogFormat,
    #[serde(default)]
    log_level: Option<Spanned<String>>,
    #[serde(default)]
    standby_port: Option<Spanned<u16>>,
    #[serde(default)]
    standby_heartbeat: Option<Spanned<Dur>>,
    #[serde(default)]
    standby_timeout: Option<Spanned<Dur>>,
    #[serde(default)]
    cluster_key_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    ha: Option<Spanned<ha::RawHa>>,
    #[serde(default, rename = "server")]
    servers: Vec<Spanned<ServerSpec>>,
}

fn yes() -> bool {
    true
}

/// A duration as whole seconds or human text, like the server keys.
#[derive(Deserialize)]
struct Dur(#[serde(deserialize_with = "supervisor_core::spec::duration::deserialize")] Duration);

/// The checks serde cannot do: cross-references, names, addresses, paths and users. Each
/// problem is recorded with its span; the caller reports the first in the file.
struct Checker<'a> {
    text: &'a str,
    doc: &'a DeTable<'a>,
    /// The directory of the file, absolute.
    dir: PathBuf,
    problems: Vec<(Range<usize>, String)>,
    /// `/etc/passwd`, read at the first `user` given by name.
    passwd: Option<Result<String, String>>,
}

impl Checker<'_> {
    /// Builds the config; it is only returned if no problem was recorded.
    fn check(&mut self, raw: RawConfig, path: PathBuf) -> NodeConfig {
        let node = raw.node.get_ref();
        if !valid_node_name(node) {
            self.problem(
                raw.node.span(),
                format!(
                    "bad node name {node:?}: use 1 to 64 characters from A-Z a-z 0-9 _ . - \
                     (not starting with . or -)"
                ),
            );
        }
        let data_dir = self.path_value("data_dir", &raw.data_dir);
        let socket = data_dir.join("nm.sock");
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            self.problem(
                raw.data_dir.span(),
                format!(
                    "data_dir {} is too long: the API socket {} would be {} bytes, and a Unix \
                     socket path holds at most {MAX_SOCKET_PATH}",
                    data_dir.display(),
                    socket.display(),
                    socket.as_os_str().len()
                ),
            );
        }
        let listen = match &raw.listen {
            None => DEFAULT_LISTEN,
            Some(text) => text.get_ref().parse().unwrap_or_else(|_| {
                let given = text.get_ref();
                self.problem(
                    text.span(),
                    format!(
                        "listen {given:?} is not IP:PORT (write e.g. \"127.0.0.1:5556\" or \
                         \"[::1]:5556\"; host names are not resolved)"
                    ),
                );
                DEFAULT_LISTEN
            }),
        };
        let token_file = raw
            .token_file
            .as_ref()
            .map(|file| self.path_value("token_file", file));
        let log_level = match &raw.log_level {
            None => "info".to_owned(),
            Some(level) => {
                if !LOG_LEVELS.contains(&level.get_ref().as_str()) {
                    self.problem(
                        level.span(),
                        format!(
                            "log_level {:?} is not one of {}",
                            level.get_ref(),
                            LOG_LEVELS.join(", ")
                        ),
                    );
                }
                level.get_ref().clone()
            }
        };
        let standby = self.standby(&raw, listen);
        let names: Vec<String> = raw
            .servers
            .iter()
            .map(|s| s.get_ref().name.as_str().to_owned())
            .collect();
        let ha = self.ha(&raw, node, listen, standby, &names);
        let servers = self.servers(raw.servers);
        NodeConfig {
            path,
            node: node.clone(),
            data_dir,
            listen,
            token_file,
            crash_recovery: raw.crash_recovery,
            log_format: raw.log_format,
            log_level,
            servers,
            standby,
            ha,
        }
    }

    /// `standby_port` and its timing: the port is not the API's, the timeout leaves room for at
    /// least two heartbeats, and the timing keys are refused without a port (they would do
    /// nothing).
    fn standby(&mut self, raw: &RawConfig, listen: SocketAddr) -> Option<StandbyConfig> {
        let heartbeat = raw
            .standby_heartbeat
            .as_ref()
            .map_or(DEFAULT_STANDBY_HEARTBEAT, |d| d.get_ref().0);
        let timeout = raw
            .standby_timeout
            .as_ref()
            .map_or(DEFAULT_STANDBY_TIMEOUT, |d| d.get_ref().0);
        let Some(port) = &raw.standby_port else {
            for (key, value) in [
                ("standby_heartbeat", &raw.standby_heartbeat),
                ("standby_timeout", &raw.standby_timeout),
            ] {
                if let Some(v) = value {
                    self.problem(
                        v.span(),
                        format!("{key} needs standby_port (there is no standby without it)"),
                    );
                }
            }
            return None;
        };
        let shares_api = listen.port() == *port.get_ref()
            && (listen.ip().is_loopback() || listen.ip().is_unspecified());
        if *port.get_ref() == 0 {
            self.problem(port.span(), "standby_port must be 1 to 65535".to_owned());
        } else if shares_api {
            self.problem(
                port.span(),
                format!(
                    "standby_port {} is the API's port (listen = \"{listen}\")",
                    port.get_ref()
                ),
            );
        }
        let heartbeat_ok = self.in_range(
            "standby_heartbeat",
            raw.standby_heartbeat.as_ref(),
            HEARTBEAT_RANGE,
        );
        let timeout_ok = self.in_range(
            "standby_timeout",
            raw.standby_timeout.as_ref(),
            PEER_TIMEOUT_RANGE,
        );
        if heartbeat_ok && timeout_ok && timeout < heartbeat.saturating_mul(2) {
            let span = raw
                .standby_timeout
                .as_ref()
                .or(raw.standby_heartbeat.as_ref())
                .map_or(port.span(), Spanned::span);
            self.problem(
                span,
                format!(
                    "standby_timeout ({}) must be at least twice standby_heartbeat ({})",
                    humantime::format_duration(timeout),
                    humantime::format_duration(heartbeat)
                ),
            );
        }
        Some(StandbyConfig {
            port: *port.get_ref(),
            heartbeat,
            timeout,
        })
    }

    fn servers(&mut self, servers: Vec<Spanned<ServerSpec>>) -> Vec<Arc<ServerSpec>> {
        // name -> the line its first definition stands on
        let mut first_line: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::with_capacity(servers.len());
        for (index, server) in servers.into_iter().enumerate() {
            let table = server.span();
            let mut spec = server.into_inner();
            let at = |checker: &Self, keys: &[&str]| {
                checker.server_span(index, keys).unwrap_or(table.clone())
            };

            let name_span = at(self, &["name"]);
            let name = spec.name.as_str().to_owned();
            let line = line_col(self.text, name_span.start).0;
            if let Some(first) = first_line.get(&name) {
                let message =
                    format!("duplicate server name {name:?} (first defined at line {first})");
                self.problem(name_span, message);
            } else {
                first_line.insert(name.clone(), line);
            }

            if spec.command.as_slice().iter().any(|arg| arg.contains('\0')) {
                let message = format!("server {name:?}: command contains a NUL character");
                self.problem(at(self, &["command"]), message);
            }
            if let Some(HealthSpec {
                probe: Probe::Exec(argv),
                ..
            }) = &spec.health
                && argv.as_slice().iter().any(|arg| arg.contains('\0'))
            {
                let message = format!("server {name:?}: health.exec contains a NUL character");
                self.problem(at(self, &["health", "exec"]), message);
            }

            if let Some(cwd) = spec.cwd.take() {
                let span = at(self, &["cwd"]);
                let label = format!("server {name:?}: cwd");
                let cwd = self.path_value(&label, &Spanned::new(span, cwd));
                spec.cwd = Some(cwd);
            }

            if let Some(user) = &spec.user
                && let Some(problem) = self.user_problem(user)
            {
                self.problem(at(self, &["user"]), format!("server {name:?}: {problem}"));
            }

            for (key, value) in &spec.env {
                let key_span = self.server_env_key_span(index, key);
                let key_span = key_span.unwrap_or_else(|| at(self, &["env"]));
                if RESERVED_ENV.contains(&key.as_str()) {
                    let message = format!(
                        "server {name:?}: env cannot set {key}: nm-daemon sets it for each start"
                    );
                    self.problem(key_span, message);
                } else if key.is_empty() || key.contains(['=', '\0']) {
                    let message = format!(
                        "server {name:?}: bad environment variable name {key:?} (it must be \
                         non-empty, without '=' or NUL)"
                    );
                    self.problem(key_span, message);
                }
                if value.contains('\0') {
                    let span = at(self, &["env", key]);
                    let message = format!("server {name:?}: env {key} contains a NUL character");
                    self.problem(span, message);
                }
            }
            out.push(Arc::new(spec));
        }
        out
    }

    /// Checks a path value and makes it absolute against the directory of the file. `label`
    /// names the value in messages (`data_dir`, `server "web": cwd`).
    fn path_value(&mut self, label: &str, value: &Spanned<PathBuf>) -> PathBuf {
        let path = value.get_ref();
        if path.as_os_str().is_empty() {
            self.problem(value.span(), format!("{label} must not be empty"));
        } else if has_nul(path.as_os_str()) {
            self.problem(value.span(), format!("{label} contains a NUL character"));
        }
        let joined = self.dir.join(path);
        // `absolute` of an absolute path only tidies it (drops `.` and doubled `/`); it keeps
        // `..`, which would be wrong to fold without reading symlinks
        std::path::absolute(&joined).unwrap_or(joined)
    }

    /// Why `user` cannot be used, if it cannot: it must be a numeric uid or a name in
    /// `/etc/passwd` (users only known to NSS modules such as LDAP must be given by uid).
    fn user_problem(&mut self, user: &str) -> Option<String> {
        if user.is_empty() {
            return Some("user must not be empty".to_owned());
        }
        if user.parse::<u32>().is_ok() {
            return None;
        }
        let passwd = self
            .passwd
            .get_or_insert_with(|| std::fs::read_to_string(PASSWD).map_err(|e| e.to_string()));
        match passwd {
            Ok(passwd) if passwd_has_user(passwd, user) => None,
            Ok(_) => Some(format!(
                "user {user:?} does not exist in {PASSWD} (give users from LDAP or other NSS \
                 sources as a numeric uid)"
            )),
            Err(e) => Some(format!(
                "cannot look up user {user:?}: reading {PASSWD}: {e} (give a numeric uid instead)"
            )),
        }
    }

    /// Whether the duration written for `key` (if any) lies in `range`; records a problem at it
    /// when it does not. `range` starts at 0 (any), 1 ns ("more than 0") or a real minimum.
    fn in_range(
        &mut self,
        key: &str,
        value: Option<&Spanned<Dur>>,
        range: RangeInclusive<Duration>,
    ) -> bool {
        let Some(value) = value else {
            return true;
        };
        if range.contains(&value.get_ref().0) {
            return true;
        }
        let (min, max) = (*range.start(), humantime::format_duration(*range.end()));
        let allowed = if min.is_zero() {
            format!("at most {max}")
        } else if min == Duration::from_nanos(1) {
            format!("more than 0 and at most {max}")
        } else {
            format!("{} to {max}", humantime::format_duration(min))
        };
        let found = self.text.get(value.span()).unwrap_or_default().to_owned();
        self.problem(
            value.span(),
            format!("{key} must be {allowed} (found {found})"),
        );
        false
    }

    fn problem(&mut self, span: Range<usize>, message: String) {
        self.problems.push((span, message));
    }

    /// The span of `server[index].keys…` in the text.
    fn server_span(&self, index: usize, keys: &[&str]) -> Option<Range<usize>> {
        let mut value = self.doc.get("server")?.get_ref().get(index)?;
        for key in keys {
            value = value.get_ref().get(*key)?;
        }
        Some(value.span())
    }

    /// The span of the key `name` in `server[index].env`.
    fn server_env_key_span(&self, index: usize, name: &str) -> Option<Range<usize>> {
        let env = self
            .doc
            .get("server")?
            .get_ref()
            .get(index)?
            .get_ref()
            .get("env")?;
        let DeValue::Table(env) = env.get_ref() else {
            return None;
        };
        env.iter()
            .find(|(key, _)| key.get_ref() == name)
            .map(|(key, _)| key.span())
    }
}

/// 1 to 64 characters from `[A-Za-z0-9_.-]`, not starting with `.` or `-` (like server names:
/// the name may become part of file names and command lines).
fn valid_node_name(name: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    (1..=64).contains(&name.len()) && name.chars().all(ok_char) && !name.starts_with(['.', '-'])
}

fn has_nul(s: &OsStr) -> bool {
    s.as_encoded_bytes().contains(&0)
}

/// Whether `/etc/passwd` text has an entry for `user`.
fn passwd_has_user(passwd: &str, user: &str) -> bool {
    passwd
        .lines()
        .any(|line| line.split(':').next() == Some(user))
}

/// Turns toml's error (multi-line `Display`) into ours: its message, on one line, at its span.
/// `root` is the document's span: a missing top-level key is reported there, and has no useful
/// position.
fn toml_error(
    path: &Path,
    text: &str,
    root: Option<&Range<usize>>,
    e: &toml::de::Error,
) -> ConfigError {
    let mut message = e.message().trim().replace('\n', " ");
    let Some(span) = e.span() else {
        return ConfigError::Incomplete {
            path: path.to_owned(),
            message,
        };
    };
    if root == Some(&span) {
        message.push_str(" (required at the top level, above the first [[server]] table)");
        return ConfigError::Incomplete {
            path: path.to_owned(),
            message,
        };
    }
    let source = text.get(span.clone()).unwrap_or_default();
    if let Some(key) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
        && TOP_LEVEL_KEYS.contains(&key)
    {
        // a top-level key written after a [[server]] table belongs to that table in TOML
        message = format!(
            "{message}; `{key}` is a top-level key: move it above the first [[server]] table"
        );
    } else if source.starts_with("[server]") {
        message.push_str("; write [[server]] (double brackets) for each server");
    }
    invalid(path, text, span, message)
}

/// A [`ConfigError::Invalid`] at `span` of `text`.
fn invalid(path: &Path, text: &str, span: Range<usize>, message: String) -> ConfigError {
    let (line, column) = line_col(text, span.start);
    let start = text.len().min(span.start);
    let line_start = text
        .get(..start)
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1);
    let source_line = text
        .get(line_start..)
        .and_then(|rest| rest.lines().next())
        .unwrap_or_default()
        .replace('\t', " ");
    // underline the span's characters on its first line, at least one
    let width = text
        .get(start..span.end.max(start).min(text.len()))
        .map_or(0, |s| s.lines().next().unwrap_or_default().chars().count())
        .max(1);
    let number = line.to_string();
    let gutter = " ".repeat(number.len());
    let pad = " ".repeat(column - 1);
    let carets = "^".repeat(width);
    let excerpt = format!(" {number} | {source_line}\n {gutter} | {pad}{carets}");
    ConfigError::Invalid {
        path: path.to_owned(),
        line,
        column,
        message,
        excerpt,
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `text`. An offset past the
/// end or inside a character is moved back to the nearest character start.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = text.get(..offset).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).unwrap_or_default().chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const FILE: &str = "/etc/nm/nm.toml";
    const HEAD: &str = "node = \"node1\"\ndata_dir = \"/var/lib/nm\"\n";

    fn parse_ok(text: &str) -> NodeConfig {
        match parse(text, Path::new(FILE)) {
            Ok(config) => config,
            Err(e) => panic!("expected a config, got: {e}"),
        }
    }

    /// The error's one-line `Display`, checked to be one line.
    fn refused(text: &str) -> String {
        let Err(e) = parse(text, Path::new(FILE)) else {
            panic!("expected an error for:\n{text}");
        };
        let message = e.to_string();
        assert!(!message.contains('\n'), "not one line: {message:?}");
        message
    }

    #[test]
    fn the_contract_example_parses() {
        let config = parse_ok(
            r#"
node = "node1"                 # this node's name
data_dir = "/var/lib/nm"       # state, logs, sockets, keys
listen = "127.0.0.1:5556"      # HTTP API (bearer token); the Unix socket is data_dir/nm.sock

[[server]]
name = "web"
command = ["python3", "-m", "http.server", "8080"]
auto_restart = true
"#,
        );
        assert_eq!(config.node, "node1");
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/nm"));
        assert_eq!(config.listen, "127.0.0.1:5556".parse().unwrap());
        assert_eq!(config.servers.len(), 1);
        assert_eq!(config.servers[0].name.as_str(), "web");
        assert_eq!(config.servers[0].command.program(), "python3");
    }

    #[test]
    fn a_minimal_config_gets_the_defaults_and_no_servers() {
        let config = parse_ok(HEAD);
        assert_eq!(config.path, PathBuf::from(FILE));
        assert_eq!(config.listen, "127.0.0.1:5556".parse().unwrap());
        assert_eq!(config.token_file, None);
        assert!(config.crash_recovery);
        assert_eq!(config.log_format, LogFormat::Human);
        assert_eq!(config.log_level, "info");
        assert!(config.servers.is_empty());
    }

    #[test]
    fn every_top_level_key_is_read() {
        let config = parse_ok(&format!(
            "{HEAD}listen = \"[::1]:7000\"\ntoken_file = \"/etc/nm/token\"\ncrash_recovery = false\n\
             log_format = \"json\"\nlog_level = \"debug\"\n"
        ));
        assert_eq!(config.listen, "[::1]:7000".parse().unwrap());
        assert_eq!(config.token_file, Some(PathBuf::from("/etc/nm/token")));
        assert!(!config.crash_recovery);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.log_level, "debug");
    }

    #[test]
    fn servers_keep_file_order_and_their_spec_values() {
        let config = parse_ok(&format!(
            "{HEAD}[[server]]\nname = \"b\"\ncommand = [\"x\"]\nrestart_delay = \"2s\"\n\
             [[server]]\nname = \"a\"\ncommand = [\"y\"]\n"
        ));
        let names: Vec<_> = config.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
        assert_eq!(config.servers[0].restart_delay, Duration::from_secs(2));
    }

    #[test]
    fn an_unknown_top_level_key_is_refused_with_its_line() {
        let e = refused(&format!("{HEAD}lisen = \"127.0.0.1:1\"\n"));
        assert!(
            e.starts_with("/etc/nm/nm.toml:3:1: unknown field `lisen`"),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_server_key_is_refused_with_its_line() {
        let e = refused(&format!(
            "{HEAD}\n[[server]]\nname = \"web\"\ncommand = [\"x\"]\nauto_restrat = true\n"
        ));
        assert!(
            e.starts_with("/etc/nm/nm.toml:7:1: unknown field `auto_restrat`"),
            "{e}"
        );
    }

    #[test]
    fn a_top_level_key_after_a_server_table_gets_a_hint() {
        let e = refused(
            "node = \"n\"\n[[server]]\nname = \"w\"\ncommand = [\"x\"]\ndata_dir = \"/d\"\n",
        );
        assert!(
            e.starts_with("/etc/nm/nm.toml:5:1: unknown field `data_dir`"),
            "{e}"
        );
        assert!(e.contains("move it above the first [[server]]"), "{e}");
    }

    #[test]
    fn a_single_bracket_server_table_gets_a_hint() {
        let e = refused(&format!(
            "{HEAD}[server]\nname = \"w\"\ncommand = [\"x\"]\n"
        ));
        assert!(e.starts_with("/etc/nm/nm.toml:3:1: "), "{e}");
        assert!(e.contains("write [[server]]"), "{e}");
    }

    #[test]
    fn duplicate_server_names_are_refused_naming_both_lines() {
        let e = refused(&format!(
            "{HEAD}\n[[server]]\nname = \"web\"\ncommand = [\"x\"]\n\n[[server]]\nname = \"web\"\ncommand = [\"y\"]\n"
        ));
        assert_eq!(
            e,
            "/etc/nm/nm.toml:9:8: duplicate server name \"web\" (first defined at line 5)"
        );
    }

    #[test]
    fn a_listen_that_is_not_ip_and_port_is_refused() {
        let e = refused(&format!("{HEAD}listen = \"localhost:5556\"\n"));
        assert!(
            e.starts_with("/etc/nm/nm.toml:3:10: listen \"localhost:5556\" is not IP:PORT"),
            "{e}"
        );
        let e = refused(&format!("{HEAD}listen = 5556\n"));
        assert!(e.starts_with("/etc/nm/nm.toml:3:10: invalid type"), "{e}");
    }

    #[test]
    fn bad_node_names_are_refused() {
        for name in ["", "a b", "-x", ".x", "nöde", &"n".repeat(65)] {
            let e = refused(&format!("node = \"{name}\"\ndata_dir = \"/d\"\n"));
            assert!(
                e.starts_with("/etc/nm/nm.toml:1:8: bad node name"),
                "{name}: {e}"
            );
        }
        assert_eq!(
            parse_ok(&format!(
                "node = \"{}\"\ndata_dir = \"/d\"\n",
                "n".repeat(64)
            ))
            .node
            .len(),
            64
        );
        assert_eq!(
            parse_ok("node = \"a_b.c-1\"\ndata_dir = \"/d\"\n").node,
            "a_b.c-1"
        );
    }

    #[test]
    fn a_bad_server_duration_shows_its_line() {
        let e = refused(&format!(
            "{HEAD}[[server]]\nname = \"w\"\ncommand = [\"x\"]\nrestart_interval = \"soon\"\n"
        ));
        assert!(
            e.starts_with("/etc/nm/nm.toml:6:20: bad duration \"soon\""),
            "{e}"
        );
    }

    #[test]
    fn a_bad_health_table_shows_its_line() {
        let e = refused(&format!(
            "{HEAD}[[server]]\nname = \"w\"\ncommand = [\"x\"]\n[server.health]\ntcp = \"h:1\"\nhttp = \"http://h/\"\n"
        ));
        assert!(
            e.starts_with("/etc/nm/nm.toml:6:1: health check needs exactly one"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_required_key_names_the_file_only() {
        let e = refused("node = \"n\"\n");
        assert!(
            e.starts_with("/etc/nm/nm.toml: missing field `data_dir`"),
            "{e}"
        );
        let e = refused("");
        assert!(
            e.starts_with("/etc/nm/nm.toml: missing field `node`"),
            "{e}"
        );
        let e = refused(&format!("{HEAD}[[server]]\ncommand = [\"x\"]\n"));
        assert!(
            e.starts_with("/etc/nm/nm.toml:3:1: missing field `name`"),
            "{e}"
        );
    }

    #[test]
    fn a_syntax_error_has_its_position() {
        let e = refused("node = \"n\"\ndata_dir = \n");
        assert!(e.starts_with("/etc/nm/nm.toml:2:"), "{e}");
        let e = refused(&format!("{HEAD}node = \"again\"\n"));
        assert!(e.starts_with("/etc/nm/nm.toml:3:1: duplicate key"), "{e}");
    }

    #[test]
    fn relative_paths_are_resolved_against_the_config_directory() {
        let config =
            parse_ok("node = \"n\"\ndata_dir = \"./state/\"\ntoken_file = \"keys/api.token\"\n");
        assert_eq!(config.data_dir, PathBuf::from("/etc/nm/state"));
        assert_eq!(
            config.token_file,
            Some(PathBuf::from("/etc/nm/keys/api.token"))
        );

        let config = parse_ok("node = \"n\"\ndata_dir = \"../nm-data\"\n");
        assert_eq!(config.data_dir, PathBuf::from("/etc/nm/../nm-data"));

        // a relative config path is taken from the current directory
        let config = parse(
            "node = \"n\"\ndata_dir = \"data\"\n",
            Path::new("conf/nm.toml"),
        )
        .unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(config.path, cwd.join("conf/nm.toml"));
        assert_eq!(config.data_dir, cwd.join("conf/data"));
    }

    #[test]
    fn a_server_cwd_is_resolved_against_the_config_directory() {
        let config = parse_ok(&format!(
            "{HEAD}[[server]]\nname = \"a\"\ncommand = [\"x\"]\ncwd = \"apps/a\"\n\
             [[server]]\nname = \"b\"\ncommand = [\"x\"]\ncwd = \"/srv/b\"\n\
             [[server]]\nname = \"c\"\ncommand = [\"x\"]\n"
        ));
        assert_eq!(config.servers[0].cwd, Some(PathBuf::from("/etc/nm/apps/a")));
        assert_eq!(config.servers[1].cwd, Some(PathBuf::from("/srv/b")));
        assert_eq!(config.servers[2].cwd, None);
    }

    #[test]
    fn empty_paths_are_refused() {
        let e = refused("node = \"n\"\ndata_dir = \"\"\n");
        assert_eq!(e, "/etc/nm/nm.toml:2:12: data_dir must not be empty");
        let e = refused(&format!("{HEAD}token_file = \"\"\n"));
        assert_eq!(e, "/etc/nm/nm.toml:3:14: token_file must not be empty");
        let e = refused(&format!(
            "{HEAD}[[server]]\nname = \"a\"\ncommand = [\"x\"]\ncwd = \"\"\n"
        ));
        assert_eq!(
            e,
            "/etc/nm/nm.toml:6:7: server \"a\": cwd must not be empty"
        );
    }

    #[test]
    fn a_data_dir_too_long_for_the_socket_is_refused() {
        let long = format!("/{}", "d".repeat(100));
        let e = refused(&format!("node = \"n\"\ndata_dir = \"{long}\"\n"));
        assert!(e.starts_with("/etc/nm/nm.toml:2:12: data_dir /ddd"), "{e}");
        assert!(e.contains("at most 107"), "{e}");
    }

    #[test]
    fn standby_port_turns_on_the_pair_with_default_timing() {
        assert_eq!(parse_ok(HEAD).standby, None);
        let config = parse_ok(&format!("{HEAD}standby_port = 5557\n"));
        assert_eq!(
            config.standby,
            Some(StandbyConfig {
                port: 5557,
                heartbeat: Duration::from_millis(500),
                timeout: Duration::from_secs(3),
            })
        );
        let config = parse_ok(&format!(
            "{HEAD}standby_port = 5557\nstandby_heartbeat = \"100ms\"\nstandby_timeout = 1\n"
        ));
        let pair = config.standby.unwrap();
        assert_eq!(
            (pair.heartbeat, pair.timeout),
            (Duration::from_millis(100), Duration::from_secs(1))
        );
    }

    #[test]
    fn bad_standby_settings_are_refused_with_their_position() {
        for (text, want) in [
            (
                "standby_port = 0\n",
                "/etc/nm/nm.toml:3:16: standby_port must be 1 to 65535",
            ),
            (
                "standby_port = 5556\n",
                "/etc/nm/nm.toml:3:16: standby_port 5556 is the API's port (listen = \"127.0.0.1:5556\")",
            ),
            (
                "standby_port = 5557\nstandby_timeout = \"900ms\"\n",
                "/etc/nm/nm.toml:4:19: standby_timeout (900ms) must be at least twice standby_heartbeat (500ms)",
            ),
            (
                "standby_port = 5557\nstandby_heartbeat = \"0s\"\n",
                "/etc/nm/nm.toml:4:21: standby_heartbeat must be 10ms to 1m (found \"0s\")",
            ),
            (
                "standby_timeout = \"5s\"\n",
                "/etc/nm/nm.toml:3:19: standby_timeout needs standby_port (there is no standby without it)",
            ),
        ] {
            assert_eq!(refused(&format!("{HEAD}{text}")), want, "{text}");
        }
        let e = refused(&format!("{HEAD}standby_port = 70000\n"));
        assert!(e.starts_with("/etc/nm/nm.toml:3:16: "), "{e}");
        let e = refused(&format!(
            "{HEAD}standby_timeout = \"soon\"\nstandby_port = 1\n"
        ));
        assert!(e.contains("bad duration \"soon\""), "{e}");
    }

    #[test]
    fn a_standby_key_after_a_server_table_gets_the_top_level_hint() {
        let e = refused(&format!(
            "{HEAD}[[server]]\nname = \"a\"\ncommand = [\"true\"]\nstandby_port = 5557\n"
        ));
        assert!(e.contains("standby_port"), "{e}");
        assert!(
            e.contains("move it above the first [[server]] table"),
            "{e}"
        );
    }

    #[test]
    fn log_level_and_log_format_are_checked() {
        let e = refused(&format!("{HEAD}log_level = \"verbose\"\n"));
        assert_eq!(
            e,
            "/etc/nm/nm.toml:3:13: log_level \"verbose\" is not one of error, warn, info, debug, trace"
        );
        let e = refused(&format!("{HEAD}log_format = \"xml\"\n"));
        assert!(
            e.starts_with("/etc/nm/nm.toml:3:14: unknown variant `xml`"),
            "{e}"
        );
    }

    #[test]
    fn users_must_exist_or_be_numeric() {
        let server = |user: &str| {
            format!("{HEAD}[[server]]\nname = \"a\"\ncommand = [\"x\"]\nuser = \"{user}\"\n")
        };
        assert_eq!(
            parse_ok(&server("root")).servers[0].user.as_deref(),
            Some("root")
        );
        assert_eq!(
            parse_ok(&server("54321")).servers[0].user.as_deref(),
            Some("54321")
        );
        let e = refused(&server("no-such-user-nm-test"));
        assert!(
            e.starts_with(
                "/etc/nm/nm.toml:6:8: server \"a\": user \"no-such-user-nm-test\" does not exist"
            ),
            "{e}"
        );
        let e = refused(&server(""));
        assert!(
            e.starts_with("/etc/nm/nm.toml:6:8: server \"a\": user must not be empty"),
            "{e}"
        );
    }

    #[test]
    fn passwd_entries_match_whole_names() {
        let passwd =
            "root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n";
        assert!(passwd_has_user(passwd, "root"));
        assert!(passwd_has_user(passwd, "www-data"));
        assert!(!passwd_has_user(passwd, "www"));
        assert!(!passwd_has_user(passwd, "x"));
    }

    #[test]
    fn env_cannot_set_the_server_token_or_bad_names() {
        let e = refused(&format!(
            "{HEAD}[[server]]\nname = \"a\"\ncommand = [\"x\"]\n[server.env]\nPATH = \"/bin\"\nNM_SERVER_TOKEN = \"t\"\n"
        ));
        assert!(
            e.starts_with("/etc/nm/nm.toml:8:1: server \"a\": env cannot set NM_SERVER_TOKEN"),
            "{e}"
        );
        let e = refused(&format!(
            "{HEAD}[[server]]\nname = \"a\"\ncommand = [\"x\"]\nenv = {{ \"A=B\" = \"1\" }}\n"
        ));
        assert!(
            e.starts_with(
                "/etc/nm/nm.toml:6:9: server \"a\": bad environment variable name \"A=B\""
            ),
            "{e}"
        );
    }

    #[test]
    fn env_cannot_set_the_server_name_either() {
        let e = refused(&format!(
            "{HEAD}[[server]]\nname = \"a\"\ncommand = [\"x\"]\nenv = {{ NM_SERVER_NAME = \"b\" }}\n"
        ));
        assert!(
            e.starts_with("/etc/nm/nm.toml:6:9: server \"a\": env cannot set NM_SERVER_NAME"),
            "{e}"
        );
    }

    #[test]
    fn a_zero_start_timeout_is_refused() {
        let e = refused(&format!(
            "{HEAD}[[server]]\nname = \"a\"\ncommand = [\"x\"]\n[server.health]\ntcp = \"h:1\"\nstart_timeout = 0\n"
        ));
        assert_eq!(
            e,
            "/etc/nm/nm.toml:8:17: health.start_timeout must be more than 0"
        );
    }

    /// Every duration, size and count of `nm.toml` (docs/config.md): where it is written (a line
    /// that follows [`LIMITS_HEAD`]), its largest value, and one past it.
    const LIMITS: &[(&str, &str, &str)] = &[
        ("stop_timeout", "86400", "\"86400000000001ns\""),
        ("restart_delay", "\"1day\"", "86401"),
        ("restart_interval", "\"365days\"", "\"31536000000000001ns\""),
        ("restart_max", "1000", "1001"),
        ("health.interval", "\"24h\"", "\"86400000000001ns\""),
        ("health.timeout", "\"24h\"", "86401"),
        ("health.start_timeout", "\"24h\"", "\"86400000000001ns\""),
        ("health.failure_threshold", "1000", "1001"),
        ("log.max_size", "\"1TiB\"", "1099511627777"),
        ("log.keep", "1000", "1001"),
        ("standby_heartbeat", "\"1m\"", "\"60000000001ns\""),
        ("standby_timeout", "\"1h\"", "\"3600000000001ns\""),
        ("ha.heartbeat", "\"1m\"", "\"60000000001ns\""),
        ("ha.peer_timeout", "\"1h\"", "\"3600000000001ns\""),
        ("ha.fence_delay", "\"1h\"", "\"3600000000001ns\""),
        ("ha.fence_timeout", "\"1h\"", "\"3600000000001ns\""),
        ("ha.fence_retry", "\"1h\"", "\"3600000000001ns\""),
        ("ha.start_timeout", "\"1day\"", "\"86400000000001ns\""),
    ];

    /// A config with every key of [`LIMITS`] at its default but `key = value`, and the line
    /// `key` stands on.
    fn limits_config(key: &str, value: &str) -> (String, usize) {
        let mut lines: Vec<String> = vec![
            "node = \"node1\"".into(),
            "data_dir = \"/var/lib/nm\"".into(),
            "cluster_key_file = \"cluster.key\"".into(),
            "standby_port = 5557".into(),
        ];
        let mut at = 0;
        let mut set = |lines: &mut Vec<String>, prefix: &str, name: &str| {
            if let Some(rest) = key.strip_prefix(prefix)
                && rest == name
            {
                lines.push(format!("{name} = {value}"));
                at = lines.len();
            } else if matches!(
                (prefix, name),
                ("", "standby_timeout") | ("ha.", "peer_timeout")
            ) {
                // the peer timeouts at their maximum, so a heartbeat at its own fits twice
                lines.push(format!("{name} = \"1h\""));
            }
        };
        for name in ["standby_heartbeat", "standby_timeout"] {
            set(&mut lines, "", name);
        }
        lines.extend(["[[server]]".into(), "name = \"web\"".into()]);
        lines.push("command = [\"sleep\", \"1000\"]".into());
        for name in [
            "stop_timeout",
            "restart_delay",
            "restart_interval",
            "restart_max",
        ] {
            set(&mut lines, "", name);
        }
        lines.extend(["[server.health]".into(), "exec = [\"true\"]".into()]);
        for name in ["interval", "timeout", "start_timeout", "failure_threshold"] {
            set(&mut lines, "health.", name);
        }
        lines.push("[server.log]".into());
        for name in ["max_size", "keep"] {
            set(&mut lines, "log.", name);
        }
        lines.extend([
            "[ha]".into(),
            "peer = \"node2\"".into(),
            "peer_address = \"127.0.0.1:5560\"".into(),
            "listen = \"127.0.0.2:5560\"".into(),
            "fence_command = [\"false\"]".into(),
        ]);
        for name in [
            "heartbeat",
            "peer_timeout",
            "fence_delay",
            "fence_timeout",
            "fence_retry",
            "start_timeout",
        ] {
            set(&mut lines, "ha.", name);
        }
        assert!(at > 0, "no key {key}");
        (lines.join("\n") + "\n", at)
    }

    #[test]
    fn every_duration_size_and_count_is_accepted_at_its_maximum_and_refused_one_past_it() {
        for &(key, max, past) in LIMITS {
            let (text, _) = limits_config(key, max);
            if let Err(e) = parse(&text, Path::new(FILE)) {
                panic!("{key} = {max}: {e}");
            }
            let (text, line) = limits_config(key, past);
            let e = refused(&text);
            let name = key.rsplit('.').next().unwrap_or(key);
            let column = name.len() + 4;
            assert!(
                e.starts_with(&format!("/etc/nm/nm.toml:{line}:{column}: ")),
                "{key} = {past}: {e}"
            );
            assert!(e.contains("at most") || e.contains(" to "), "{key}: {e}");
        }
    }

    #[test]
    fn the_values_that_used_to_panic_are_refused_with_their_position() {
        for (line, want) in [
            (
                "stop_timeout = 9223372036854775807",
                "/etc/nm/nm.toml:6:16: stop_timeout must be at most 1day (found 9223372036854775807)",
            ),
            (
                "restart_delay = \"300000000000y\"",
                "/etc/nm/nm.toml:6:17: restart_delay must be at most 1day (found \"300000000000y\")",
            ),
        ] {
            let text = format!("{HEAD}[[server]]\nname = \"a\"\ncommand = [\"x\"]\n{line}\n");
            assert_eq!(refused(&text), want);
        }
        // a huge heartbeat panicked the check itself (twice it overflowed)
        let e = refused(&format!(
            "{HEAD}standby_port = 5557\nstandby_heartbeat = \"300000000000y\"\n"
        ));
        assert!(
            e.starts_with("/etc/nm/nm.toml:4:21: standby_heartbeat must be 10ms to 1m"),
            "{e}"
        );
        let (text, line) = limits_config("ha.heartbeat", "\"300000000000y\"");
        let e = refused(&text);
        assert!(
            e.starts_with(&format!(
                "/etc/nm/nm.toml:{line}:13: [ha] heartbeat must be 10ms to 1m"
            )),
            "{e}"
        );
    }

    #[test]
    fn the_first_problem_in_the_file_is_reported() {
        let e = refused("node = \"bad name\"\ndata_dir = \"\"\nlog_level = \"loud\"\n");
        assert!(e.starts_with("/etc/nm/nm.toml:1:8: bad node name"), "{e}");
    }

    #[test]
    fn an_invalid_error_carries_an_excerpt() {
        let Err(e) = parse(&format!("{HEAD}listen = \"nowhere\"\n"), Path::new(FILE)) else {
            panic!("expected an error");
        };
        assert_eq!(
            e.excerpt(),
            Some(" 3 | listen = \"nowhere\"\n   |          ^^^^^^^^^")
        );
        let Err(e) = parse("node = \"n\"\n", Path::new(FILE)) else {
            panic!("expected an error");
        };
        assert_eq!(e.excerpt(), None);
    }

    #[test]
    fn line_col_counts_characters_and_lines() {
        let text = "ab\r\nçé = 1\n\nx";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 4), (2, 1));
        assert_eq!(line_col(text, 8), (2, 3)); // after "çé", 4 bytes
        assert_eq!(line_col(text, 5), (2, 1)); // inside 'ç': moved back to its start
        assert_eq!(line_col(text, text.len()), (4, 2));
        assert_eq!(line_col(text, 999), (4, 2));
    }

    #[test]
    fn load_reports_an_unreadable_file_with_its_path() {
        let path = Path::new("/nonexistent/nm-config-test/nm.toml");
        let e = load(path).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/nm-config-test/nm.toml: cannot read: "),
            "{e}"
        );
    }

    #[test]
    fn load_refuses_a_file_larger_than_the_limit_without_reading_it_whole() {
        let e = load(Path::new("/dev/zero")).unwrap_err().to_string();
        assert_eq!(
            e,
            "/dev/zero: cannot read: larger than 4 MiB: not a node config"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nm.toml");
        let head = "node = \"n\"\ndata_dir = \"/d\"\n";
        let pad = usize::try_from(MAX_CONFIG_SIZE).unwrap() - head.len();
        std::fs::write(&path, format!("{head}{}", "#".repeat(pad))).unwrap();
        assert!(load(&path).is_ok(), "exactly the limit");
        std::fs::write(&path, format!("{head}{}", "#".repeat(pad + 1))).unwrap();
        assert!(
            load(&path)
                .unwrap_err()
                .to_string()
                .contains("larger than 4 MiB")
        );
    }

    #[test]
    fn load_reports_bytes_that_are_not_utf8_with_their_position() {
        let path = std::env::temp_dir().join(format!("nm-config-test-{}.toml", std::process::id()));
        std::fs::write(&path, b"node = \"n\"\ndata_dir = \"/\xff\"\n").unwrap();
        let result = load(&path);
        std::fs::remove_file(&path).unwrap();
        let e = result.unwrap_err().to_string();
        assert!(
            e.ends_with(":2:14: the file is not UTF-8 text (byte 0xff)"),
            "{e}"
        );
    }

    #[test]
    fn the_quickstart_example_parses_and_its_paths_exist() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/quickstart.toml"
        ));
        let config = load(path).unwrap();
        assert!(
            config.data_dir.ends_with("examples/run/quickstart"),
            "{}",
            config.data_dir.display()
        );
        assert_eq!(config.listen, "127.0.0.1:5556".parse().unwrap());
        let names: Vec<_> = config.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["web", "ticker", "flaky"]);
        for server in &config.servers {
            let cwd = server.cwd.as_ref().unwrap();
            assert!(cwd.is_dir(), "{}: {}", server.name, cwd.display());
            if server.command.program() == "sh" {
                let script = cwd.join(&server.command.args()[0]);
                assert!(script.is_file(), "{}: {}", server.name, script.display());
            }
        }
        assert!(config.servers[0].health.is_some());
        assert_eq!(config.servers[2].restart_max, 3);
    }
}
