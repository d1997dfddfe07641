//! What a server is: its command, environment and policies, as written in `nm.toml`.
//!
//! Every type here deserializes with `deny_unknown_fields` and checks its own values while it is
//! read, so a TOML reader reports a bad value with the line it stands on. Defaults follow the
//! WebLogic Node Manager: `AutoRestart` on, `RestartMax` 2 within a
//! `RestartInterval` of 3600 s, `RestartDelaySeconds` 0, `AutoKillIfFailed` off.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The name of a server: 1 to 64 characters from `[A-Za-z0-9_.-]`, not starting with `.` or `-`.
///
/// Names become file names in the data directory (`NAME.lock`, `NAME.out`), so the alphabet is
/// closed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ServerName(String);

impl ServerName {
    /// Checks `name` and wraps it.
    ///
    /// # Errors
    /// [`SpecError::BadName`] when the name is empty, too long, or has a character outside the
    /// alphabet.
    pub fn new(name: impl Into<String>) -> Result<Self, SpecError> {
        let name = name.into();
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(ok_char)
            && !name.starts_with(['.', '-']);
        if ok {
            Ok(Self(name))
        } else {
            Err(SpecError::BadName { name })
        }
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ServerName {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for ServerName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

/// A bad value in a server spec. Nothing was built from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// A server name outside the allowed alphabet or length.
    #[error(
        "bad server name {name:?}: use 1 to 64 characters from A-Z a-z 0-9 _ . - (not starting with . or -)"
    )]
    BadName {
        /// The name as given.
        name: String,
    },
    /// `command` was empty or its program was an empty string.
    #[error(
        "command must name a program: give a non-empty array such as [\"python3\", \"app.py\"]"
    )]
    EmptyCommand,
    /// A health check with none or more than one of `exec`, `tcp`, `http`.
    #[error("health check needs exactly one of `exec`, `tcp` or `http` (found {found})")]
    HealthKind {
        /// How many of the three were given.
        found: usize,
    },
    /// A value outside its allowed range.
    #[error("{key} {problem}")]
    Range {
        /// The key in `nm.toml`.
        key: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// An `http` health URL that is not `http://HOST[:PORT][/PATH]`.
    #[error("bad health url {url:?}: expected http://HOST[:PORT][/PATH] (https is not supported)")]
    BadUrl {
        /// The URL as given.
        url: String,
    },
}

/// The program and its arguments, `command = ["python3", "-m", "http.server"]`. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Argv(Vec<String>);

impl Argv {
    /// Wraps a non-empty argument vector.
    ///
    /// # Errors
    /// [`SpecError::EmptyCommand`] when `argv` is empty or its program is `""`.
    pub fn new(argv: Vec<String>) -> Result<Self, SpecError> {
        match argv.first() {
            Some(program) if !program.is_empty() => Ok(Self(argv)),
            _ => Err(SpecError::EmptyCommand),
        }
    }

    /// The program (first element).
    #[must_use]
    pub fn program(&self) -> &str {
        &self.0[0]
    }

    /// The arguments after the program.
    #[must_use]
    pub fn args(&self) -> &[String] {
        &self.0[1..]
    }

    /// All elements, program first.
    #[must_use]
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Argv {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(Vec::<String>::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// One server as configured: a `[[server]]` table of `nm.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// Unique name on the node.
    pub name: ServerName,
    /// Program and arguments; run directly, not through a shell.
    pub command: Argv,
    /// Working directory (default: the daemon's).
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Extra environment on top of the daemon's.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Run as this user (name or numeric uid); the daemon must be root to use it.
    #[serde(default)]
    pub user: Option<String>,
    /// Start when the daemon starts (WebLogic: servers under Node Manager control).
    #[serde(default = "yes")]
    pub auto_start: bool,
    /// When to restart the server after its process ended on its own (WebLogic `AutoRestart`):
    /// `true` (the default) after a failure, `false` never, `"always"` after every exit.
    #[serde(default)]
    pub auto_restart: AutoRestart,
    /// The exit codes that mean "stopped on purpose" (supervisord `exitcodes`, systemd
    /// `SuccessExitStatus`; default `[0]`): a server that exits with one of them while it runs is
    /// left `SHUTDOWN` and not restarted, unless `auto_restart = "always"`. A death by a signal
    /// is never a success, and neither is any exit during `STARTING`.
    #[serde(
        default = "default_success_exit_codes",
        deserialize_with = "de_exit_codes"
    )]
    pub success_exit_codes: Vec<u8>,
    /// Restarts allowed within `restart_interval` (WebLogic `RestartMax`, default 2).
    #[serde(
        default = "default_restart_max",
        deserialize_with = "limits::de_restart_max"
    )]
    pub restart_max: u32,
    /// The sliding window restarts are counted in (WebLogic `RestartInterval`, default 1 h).
    #[serde(
        default = "default_restart_interval",
        serialize_with = "duration::serialize",
        deserialize_with = "limits::de_restart_interval"
    )]
    pub restart_interval: Duration,
    /// Wait before a restart; the server is `FAILED_RESTARTING` meanwhile (default 0).
    #[serde(
        default,
        serialize_with = "duration::serialize",
        deserialize_with = "limits::de_restart_delay"
    )]
    pub restart_delay: Duration,
    /// Kill a server whose health check fails, then restart it by its policy (default off).
    #[serde(default)]
    pub auto_kill_if_failed: bool,
    /// After SIGTERM on `stop`, wait this long before SIGKILL of the process group (default 10 s).
    #[serde(
        default = "default_stop_timeout",
        serialize_with = "duration::serialize",
        deserialize_with = "limits::de_stop_timeout"
    )]
    pub stop_timeout: Duration,
    /// Optional health check.
    #[serde(default)]
    pub health: Option<HealthSpec>,
    /// Output log rotation.
    #[serde(default)]
    pub log: LogSpec,
}

impl ServerSpec {
    /// A spec with every default, running `command`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut web = supervisor_core::ServerSpec::new("web", &["python3", "-m", "http.server"]).unwrap();
    /// assert_eq!((web.restart_max, web.restart_interval), (2, Duration::from_secs(3600))); // WebLogic's
    /// web.restart_delay = Duration::from_secs(5);
    /// assert!(supervisor_core::ServerSpec::new("bad name", &["x"]).is_err());
    /// ```
    ///
    /// # Errors
    /// When the name or command is invalid.
    pub fn new(name: &str, command: &[&str]) -> Result<Self, SpecError> {
        Ok(Self {
            name: ServerName::new(name)?,
            command: Argv::new(command.iter().map(|s| (*s).to_owned()).collect())?,
            cwd: None,
            env: BTreeMap::new(),
            user: None,
            auto_start: true,
            auto_restart: AutoRestart::OnFailure,
            success_exit_codes: default_success_exit_codes(),
            restart_max: default_restart_max(),
            restart_interval: default_restart_interval(),
            restart_delay: Duration::ZERO,
            auto_kill_if_failed: false,
            stop_timeout: default_stop_timeout(),
            health: None,
            log: LogSpec::default(),
        })
    }
}

/// When nm restarts a server whose process ended on its own (`auto_restart` in `nm.toml`).
///
/// Written `true`, `false` or `"always"`: one key, so no pair of settings can contradict each
/// other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AutoRestart {
    /// `false`: never. A failure makes the server `FAILED_NOT_RESTARTABLE`; an exit with a
    /// success code leaves it `SHUTDOWN`.
    Off,
    /// `true`, the default (WebLogic `AutoRestart`, systemd `Restart=on-failure`): after a
    /// failure — an exit code outside `success_exit_codes`, a signal, a health kill — within the
    /// restart budget. An exit with a success code leaves it `SHUTDOWN`.
    #[default]
    OnFailure,
    /// `"always"` (systemd `Restart=always`): after every exit, success codes included, for
    /// servers that must never stop. Every restart counts against `restart_max`, so a server
    /// that exits at once does not loop.
    Always,
}

impl AutoRestart {
    /// Whether nm restarts after a failure (`true` or `"always"`).
    #[must_use]
    pub fn after_failure(self) -> bool {
        self != Self::Off
    }
}

impl Serialize for AutoRestart {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Off => s.serialize_bool(false),
            Self::OnFailure => s.serialize_bool(true),
            Self::Always => s.serialize_str("always"),
        }
    }
}

impl<'de> Deserialize<'de> for AutoRestart {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        let bad = || {
            serde::de::Error::custom(
                "auto_restart must be true (restart after a failure), false (never) or \"always\" (after every exit)",
            )
        };
        match Raw::deserialize(d).map_err(|_| bad())? {
            Raw::Bool(false) => Ok(Self::Off),
            Raw::Bool(true) => Ok(Self::OnFailure),
            Raw::Text(t) if t == "always" => Ok(Self::Always),
            Raw::Text(_) => Err(bad()),
        }
    }
}

/// How a health check probes the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum Probe {
    /// Run a program; exit status 0 is healthy.
    Exec(Argv),
    /// Connect to `HOST:PORT`; an accepted connection is healthy.
    Tcp(String),
    /// `GET` the URL; a 2xx or 3xx status is healthy.
    Http(HttpTarget),
}

/// An `http://` URL split for a minimal HTTP/1.1 GET.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpTarget {
    /// The URL as configured.
    pub url: String,
    /// `host:port` to connect to.
    pub authority: String,
    /// Path and query, at least `/`.
    pub path: String,
}

impl HttpTarget {
    /// Parses `http://HOST[:PORT][/PATH]`.
    ///
    /// # Errors
    /// [`SpecError::BadUrl`] for anything else (https, user info, empty host).
    pub fn parse(url: &str) -> Result<Self, SpecError> {
        let bad = || SpecError::BadUrl {
            url: url.to_owned(),
        };
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if host.is_empty() || host.contains('@') || host.contains(char::is_whitespace) {
            return Err(bad());
        }
        let authority = if host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host.to_owned()
        } else if host.ends_with(']') || !host.contains(':') {
            format!("{host}:80")
        } else {
            return Err(bad());
        };
        Ok(Self {
            url: url.to_owned(),
            authority,
            path: path.to_owned(),
        })
    }
}

/// A `[server.health]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawHealth")]
pub struct HealthSpec {
    /// What to probe.
    pub probe: Probe,
    /// Time between the end of one probe and the start of the next (default 10 s).
    pub interval: Duration,
    /// A probe that takes longer fails (default 5 s).
    pub timeout: Duration,
    /// Consecutive failures that make a `RUNNING` server `FAILED` (default 3).
    pub failure_threshold: u32,
    /// A starting server must pass its first probe within this (default 60 s); if it does not,
    /// its start failed and it is killed.
    pub start_timeout: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    exec: Option<Argv>,
    tcp: Option<String>,
    http: Option<String>,
    #[serde(
        default = "default_interval",
        deserialize_with = "limits::de_health_interval"
    )]
    interval: Duration,
    #[serde(
        default = "default_probe_timeout",
        deserialize_with = "limits::de_health_timeout"
    )]
    timeout: Duration,
    #[serde(
        default = "default_threshold",
        deserialize_with = "limits::de_failure_threshold"
    )]
    failure_threshold: u32,
    #[serde(
        default = "default_start_timeout",
        deserialize_with = "limits::de_health_start_timeout"
    )]
    start_timeout: Duration,
}

impl TryFrom<RawHealth> for HealthSpec {
    type Error = SpecError;
    fn try_from(raw: RawHealth) -> Result<Self, SpecError> {
        let found = usize::from(raw.exec.is_some())
            + usize::from(raw.tcp.is_some())
            + usize::from(raw.http.is_some());
        let probe = match (raw.exec, raw.tcp, raw.http) {
            (Some(argv), None, None) => Probe::Exec(argv),
            (None, Some(addr), None) => {
                if !addr
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
                {
                    return Err(SpecError::Range {
                        key: "health.tcp",
                        problem: "must be HOST:PORT",
                    });
                }
                Probe::Tcp(addr)
            }
            (None, None, Some(url)) => Probe::Http(HttpTarget::parse(&url)?),
            _ => return Err(SpecError::HealthKind { found }),
        };
        // the ranges of interval, timeout, failure_threshold and start_timeout were checked as
        // each was read (`limits`), where the reader still knows the value's position
        Ok(Self {
            probe,
            interval: raw.interval,
            timeout: raw.timeout,
            failure_threshold: raw.failure_threshold,
            start_timeout: raw.start_timeout,
        })
    }
}

/// A `[server.log]` table: size-based rotation of the server's `.out` and `.err` files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSpec {
    /// Rotate a log file once it is larger than this many bytes (default 10 MiB; 0 = never).
    #[serde(default = "default_max_size", deserialize_with = "de_size")]
    pub max_size: u64,
    /// Rotated files kept (`NAME.out.1` … `NAME.out.N`, default 5, at most
    /// [`limits::MAX_LOG_KEEP`]).
    #[serde(default = "default_keep", deserialize_with = "limits::de_log_keep")]
    pub keep: u32,
}

impl Default for LogSpec {
    fn default() -> Self {
        Self {
            max_size: default_max_size(),
            keep: default_keep(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_success_exit_codes() -> Vec<u8> {
    vec![0]
}
fn default_restart_max() -> u32 {
    2
}
fn default_restart_interval() -> Duration {
    Duration::from_secs(3600)
}
fn default_stop_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_probe_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_threshold() -> u32 {
    3
}
fn default_start_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_size() -> u64 {
    10 * 1024 * 1024
}
fn default_keep() -> u32 {
    5
}

/// `success_exit_codes`: exit statuses 0 to 255, kept sorted without duplicates.
fn de_exit_codes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let raw = Vec::<i64>::deserialize(d)?;
    let mut codes = raw
        .into_iter()
        .map(|c| {
            u8::try_from(c).map_err(|_| {
                serde::de::Error::custom(format!(
                    "success_exit_codes: {c} is not an exit status (0 to 255; a death by a signal is never a success)"
                ))
            })
        })
        .collect::<Result<Vec<u8>, D::Error>>()?;
    codes.sort_unstable();
    codes.dedup();
    Ok(codes)
}

/// Sizes as a byte count (`1048576`) or text with a unit (`"10MiB"`, `"512k"`, `"1GB"`).
fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    let (n, found) = match Size::deserialize(d)? {
        Size::Bytes(n) => (n, n.to_string()),
        Size::Text(s) => {
            let n = parse_size(&s).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "bad size {s:?}: expected a byte count or e.g. \"10MiB\", \"512k\""
                ))
            })?;
            (n, format!("{s:?}"))
        }
    };
    if n != 0 && !(limits::MIN_LOG_SIZE..=limits::MAX_LOG_SIZE).contains(&n) {
        return Err(serde::de::Error::custom(format!(
            "log.max_size must be 0 (never rotate) or 1KiB to 1TiB (found {found})"
        )));
    }
    Ok(n)
}

/// Parses `"10MiB"`, `"10M"`, `"512k"`, `"1GB"`, `"1TiB"`, `"100"` (bytes). Units are powers of 1024.
#[must_use]
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// The range of every server key that is a duration, a size or a count (docs/config.md lists
/// them). The reader refuses a value outside its range where it stands, so whatever the config
/// check accepts the supervisor can run: no deadline it computes from a spec can overflow.
///
/// The maxima are generous for any real server and far from `Instant`'s limits:
/// - one day for what the supervisor waits on (`stop_timeout`, `restart_delay`, the health
///   probe's `interval`, `timeout` and `start_timeout`): a stop or a start that takes longer
///   is a hang, and a day is a longer wait than any operator means;
/// - one year for `restart_interval`, the window restarts are counted in (WebLogic's
///   `RestartInterval` is a number of seconds; a year means "in the server's lifetime");
/// - 1,000 for the counts (`restart_max`, `failure_threshold`, `log.keep`): the restart window
///   keeps one time per restart, and rotation renames `keep` files each time;
/// - 1 TiB for `log.max_size` (and at least 1 KiB, so rotation does not run at each write).
pub mod limits {
    use super::{Deserialize, Deserializer, Duration};

    /// One day, the longest of the waits.
    pub const DAY: Duration = Duration::from_secs(24 * 3600);
    /// The longest `restart_interval`: 365 days.
    pub const MAX_RESTART_INTERVAL: Duration = Duration::from_secs(365 * 24 * 3600);
    /// The largest `restart_max`, `health.failure_threshold` and `log.keep`.
    pub const MAX_COUNT: u32 = 1000;
    /// The largest `log.keep`.
    pub const MAX_LOG_KEEP: u32 = MAX_COUNT;
    /// The smallest `log.max_size` other than 0 (never rotate): 1 KiB.
    pub const MIN_LOG_SIZE: u64 = 1 << 10;
    /// The largest `log.max_size`: 1 TiB.
    pub const MAX_LOG_SIZE: u64 = 1 << 40;

    /// Whether a zero is allowed.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Zero {
        Allowed,
        Refused,
    }

    fn bounded<'de, D: Deserializer<'de>>(
        d: D,
        key: &str,
        zero: Zero,
        max: Duration,
    ) -> Result<Duration, D::Error> {
        let (value, found) = super::duration::read(d)?;
        if zero == Zero::Refused && value.is_zero() {
            return Err(serde::de::Error::custom(format!(
                "{key} must be more than 0"
            )));
        }
        if value > max {
            return Err(serde::de::Error::custom(format!(
                "{key} must be at most {} (found {found})",
                humantime::format_duration(max)
            )));
        }
        Ok(value)
    }

    fn count<'de, D: Deserializer<'de>>(d: D, key: &str, min: u32) -> Result<u32, D::Error> {
        let n = i64::deserialize(d)?;
        match u32::try_from(n) {
            Ok(n) if (min..=MAX_COUNT).contains(&n) => Ok(n),
            _ => Err(serde::de::Error::custom(format!(
                "{key} must be {min} to {MAX_COUNT} (found {n})"
            ))),
        }
    }

    pub(super) fn de_stop_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        bounded(d, "stop_timeout", Zero::Allowed, DAY)
    }
    pub(super) fn de_restart_delay<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        bounded(d, "restart_delay", Zero::Allowed, DAY)
    }
    pub(super) fn de_restart_interval<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        bounded(d, "restart_interval", Zero::Allowed, MAX_RESTART_INTERVAL)
    }
    pub(super) fn de_restart_max<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        count(d, "restart_max", 0)
    }
    pub(super) fn de_health_interval<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        bounded(d, "health.interval", Zero::Refused, DAY)
    }
    pub(super) fn de_health_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        bounded(d, "health.timeout", Zero::Refused, DAY)
    }
    pub(super) fn de_health_start_timeout<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        bounded(d, "health.start_timeout", Zero::Refused, DAY)
    }
    pub(super) fn de_failure_threshold<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        count(d, "health.failure_threshold", 1)
    }
    pub(super) fn de_log_keep<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        count(d, "log.keep", 0)
    }
}

/// Durations as whole seconds (`30`) or human text (`"30s"`, `"1h 30m"`, `"250ms"`).
pub mod duration {
    use super::{Deserialize, Deserializer, Duration, Serializer};

    /// Serializes as human text (`"1h 30m"`).
    ///
    /// # Errors
    /// Only the serializer's own.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    /// Deserializes whole seconds or human text.
    ///
    /// # Errors
    /// A negative number or text humantime cannot read.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        read(d).map(|(value, _)| value)
    }

    /// The duration and the text it was written as, for messages.
    pub(super) fn read<'de, D: Deserializer<'de>>(d: D) -> Result<(Duration, String), D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d) {
            Ok(Raw::Secs(n)) => Ok((Duration::from_secs(n), n.to_string())),
            Ok(Raw::Text(s)) => match humantime::parse_duration(&s) {
                Ok(value) => Ok((value, format!("{s:?}"))),
                Err(e) => Err(serde::de::Error::custom(format!(
                    "bad duration {s:?}: {e} (write e.g. 30, \"30s\", \"5m\", \"250ms\")"
                ))),
            },
            Err(_) => Err(serde::de::Error::custom(
                "expected a duration: whole seconds (30) or text (\"30s\", \"5m\", \"250ms\")",
            )),
        }
    }
}

impl Serialize for HealthSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("HealthSpec", 5)?;
        match &self.probe {
            Probe::Exec(argv) => st.serialize_field("exec", argv)?,
            Probe::Tcp(addr) => st.serialize_field("tcp", addr)?,
            Probe::Http(t) => st.serialize_field("http", &t.url)?,
        }
        st.serialize_field(
            "interval",
            &humantime::format_duration(self.interval).to_string(),
        )?;
        st.serialize_field(
            "timeout",
            &humantime::format_duration(self.timeout).to_string(),
        )?;
        st.serialize_field("failure_threshold", &self.failure_threshold)?;
        st.serialize_field(
            "start_timeout",
            &humantime::format_duration(self.start_timeout).to_string(),
        )?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServerSpec, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn a_minimal_server_gets_weblogic_defaults() {
        let s = parse("name = \"web\"\ncommand = [\"sleep\", \"9\"]\n").unwrap();
        assert_eq!(s.restart_max, 2);
        assert_eq!(s.restart_interval, Duration::from_secs(3600));
        assert_eq!(s.restart_delay, Duration::ZERO);
        assert!(s.auto_start && !s.auto_kill_if_failed);
        assert_eq!(s.auto_restart, AutoRestart::OnFailure);
        assert_eq!(s.success_exit_codes, vec![0]);
        assert_eq!(s, ServerSpec::new("web", &["sleep", "9"]).unwrap());
    }

    #[test]
    fn durations_take_seconds_or_text() {
        let s =
            parse("name = \"a\"\ncommand = [\"x\"]\nrestart_delay = 3\nstop_timeout = \"250ms\"\n")
                .unwrap();
        assert_eq!(s.restart_delay, Duration::from_secs(3));
        assert_eq!(s.stop_timeout, Duration::from_millis(250));
    }

    #[test]
    fn bad_values_are_refused_with_their_line() {
        let err = parse("name = \"a\"\ncommand = []\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(
            err.to_string().contains("command must name a program"),
            "{err}"
        );
        let err = parse("name = \"a b\"\ncommand = [\"x\"]\n").unwrap_err();
        assert!(err.to_string().contains("bad server name"), "{err}");
        let err = parse("name = \"a\"\ncommand = [\"x\"]\nrestart_dely = 3\n").unwrap_err();
        assert!(
            err.to_string().contains("line 3") && err.to_string().contains("restart_dely"),
            "{err}"
        );
        let err = parse("name = \"a\"\ncommand = [\"x\"]\nstop_timeout = \"soon\"\n").unwrap_err();
        assert!(err.to_string().contains("bad duration"), "{err}");
    }

    #[test]
    fn auto_restart_is_true_false_or_always_and_exit_codes_are_statuses() {
        let with = |extra: &str| parse(&format!("name = \"a\"\ncommand = [\"x\"]\n{extra}\n"));
        assert_eq!(
            with("auto_restart = false").unwrap().auto_restart,
            AutoRestart::Off
        );
        assert_eq!(
            with("auto_restart = true").unwrap().auto_restart,
            AutoRestart::OnFailure
        );
        assert_eq!(
            with("auto_restart = \"always\"").unwrap().auto_restart,
            AutoRestart::Always
        );
        let err = with("auto_restart = \"sometimes\"").unwrap_err();
        assert!(
            err.to_string().contains("\"always\"") && err.to_string().contains("line 3"),
            "{err}"
        );
        let s = with("success_exit_codes = [3, 0, 3, 255]").unwrap();
        assert_eq!(s.success_exit_codes, vec![0, 3, 255]);
        assert!(
            with("success_exit_codes = []")
                .unwrap()
                .success_exit_codes
                .is_empty()
        );
        for bad in ["[256]", "[-1]"] {
            let err = with(&format!("success_exit_codes = {bad}")).unwrap_err();
            assert!(err.to_string().contains("not an exit status"), "{err}");
        }
        // what is written is read back the same
        for v in [
            AutoRestart::Off,
            AutoRestart::OnFailure,
            AutoRestart::Always,
        ] {
            let mut spec = ServerSpec::new("a", &["x"]).unwrap();
            spec.auto_restart = v;
            let text = toml::to_string(&spec).unwrap();
            assert_eq!(parse(&text).unwrap(), spec, "{text}");
        }
    }

    #[test]
    fn a_health_check_needs_exactly_one_probe() {
        let err = parse("name = \"a\"\ncommand = [\"x\"]\n[health]\ntcp = \"127.0.0.1:1\"\nhttp = \"http://h/\"\n")
            .unwrap_err();
        assert!(err.to_string().contains("exactly one"), "{err}");
        let s = parse(
            "name = \"a\"\ncommand = [\"x\"]\n[health]\nhttp = \"http://127.0.0.1:8080/ok\"\n",
        )
        .unwrap();
        let h = s.health.unwrap();
        assert_eq!(
            h.probe,
            Probe::Http(HttpTarget {
                url: "http://127.0.0.1:8080/ok".into(),
                authority: "127.0.0.1:8080".into(),
                path: "/ok".into()
            })
        );
        assert_eq!(h.failure_threshold, 3);
    }

    #[test]
    fn urls_without_a_port_use_80_and_https_is_refused() {
        assert_eq!(
            HttpTarget::parse("http://localhost").unwrap().authority,
            "localhost:80"
        );
        assert_eq!(
            HttpTarget::parse("http://[::1]:81/x").unwrap().authority,
            "[::1]:81"
        );
        assert!(HttpTarget::parse("https://localhost/").is_err());
        assert!(HttpTarget::parse("http:///x").is_err());
    }

    #[test]
    fn every_duration_and_count_is_accepted_at_its_maximum_and_refused_past_it() {
        let day = 86_400_u64;
        let year = 365 * day;
        let with = |extra: &str| parse(&format!("name = \"a\"\ncommand = [\"x\"]\n{extra}\n"));
        for (key, max) in [
            ("stop_timeout", day),
            ("restart_delay", day),
            ("restart_interval", year),
        ] {
            assert!(with(&format!("{key} = {max}")).is_ok(), "{key}");
            let err = with(&format!("{key} = {}", max + 1))
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("{key} must be at most")), "{err}");
        }
        // the values that used to pass the check and then panic the supervisor
        for bad in [
            "stop_timeout = 9223372036854775807",
            "restart_delay = \"300000000000y\"",
        ] {
            let err = with(bad).unwrap_err().to_string();
            assert!(err.contains("must be at most 1day"), "{err}");
        }
        assert!(with("restart_max = 0").is_ok());
        assert!(with("restart_max = 1000").is_ok());
        for bad in ["restart_max = 1001", "restart_max = -1"] {
            let err = with(bad).unwrap_err().to_string();
            assert!(err.contains("restart_max must be 0 to 1000"), "{err}");
        }
        let health = |extra: &str| with(&format!("[health]\ntcp = \"h:1\"\n{extra}"));
        for key in ["interval", "timeout", "start_timeout"] {
            assert!(health(&format!("{key} = {day}")).is_ok(), "{key}");
            let err = health(&format!("{key} = {}", day + 1))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("health.{key} must be at most")),
                "{err}"
            );
            let err = health(&format!("{key} = 0")).unwrap_err().to_string();
            assert!(
                err.contains(&format!("health.{key} must be more than 0")),
                "{err}"
            );
        }
        assert!(health("failure_threshold = 1000").is_ok());
        for bad in [0, 1001] {
            let err = health(&format!("failure_threshold = {bad}")).unwrap_err();
            assert!(
                err.to_string()
                    .contains("failure_threshold must be 1 to 1000"),
                "{err}"
            );
        }
        let log = |extra: &str| with(&format!("[log]\n{extra}"));
        assert!(log("max_size = \"1TiB\"\nkeep = 1000").is_ok());
        assert!(log("max_size = 0\nkeep = 0").is_ok());
        assert!(log("max_size = \"1KiB\"").is_ok());
        for bad in ["max_size = 1099511627777", "max_size = 1023", "keep = 1001"] {
            assert!(log(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_take_units() {
        assert_eq!(parse_size("10MiB"), Some(10 << 20));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("ten"), None);
        let s =
            parse("name = \"a\"\ncommand = [\"x\"]\n[log]\nmax_size = \"1M\"\nkeep = 2\n").unwrap();
        assert_eq!(
            s.log,
            LogSpec {
                max_size: 1 << 20,
                keep: 2
            }
        );
    }
}
