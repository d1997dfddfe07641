//! The `[ha]` section (the StorNext HA Manager's two-node HA pair) and `cluster_key_file`.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{
    Checker, Dur, HEARTBEAT_RANGE, PEER_TIMEOUT_RANGE, RawConfig, StandbyConfig, valid_node_name,
};

/// `[ha] heartbeat` when the file has none.
const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(500);
/// `[ha] peer_timeout` when the file has none.
const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(3);
/// `[ha] fence_timeout` when the file has none.
const DEFAULT_FENCE_TIMEOUT: Duration = Duration::from_secs(60);
/// `[ha] fence_retry` when the file has none.
const DEFAULT_FENCE_RETRY: Duration = Duration::from_secs(5);
/// `[ha] start_timeout` when the file has none.
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);

/// The range of `[ha] fence_delay`: at most an hour (it only makes one node of the pair lose a
/// fencing race; more would only delay every failover).
pub const FENCE_DELAY_RANGE: RangeInclusive<Duration> = Duration::ZERO..=HOUR;
/// The range of `[ha] fence_timeout`: more than 0, at most an hour (a power switch answers in
/// seconds; the claim waits for the fence).
pub const FENCE_TIMEOUT_RANGE: RangeInclusive<Duration> = Duration::from_nanos(1)..=HOUR;
/// The range of `[ha] fence_retry`: more than 0, at most an hour.
pub const FENCE_RETRY_RANGE: RangeInclusive<Duration> = Duration::from_nanos(1)..=HOUR;
/// The range of `[ha] start_timeout`: more than 0, at most a day (like a server's
/// `health.start_timeout`).
pub const START_TIMEOUT_RANGE: RangeInclusive<Duration> =
    Duration::from_nanos(1)..=Duration::from_secs(24 * 3600);

const HOUR: Duration = Duration::from_secs(3600);

/// The HA pair's settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaSettings {
    /// The cluster key file (`cluster_key_file`), absolute; both nodes hold the same key.
    pub key_file: PathBuf,
    /// The peer's node name (not this node's).
    pub peer: String,
    /// The peer's `[ha] listen` address.
    pub peer_address: SocketAddr,
    /// Where this node listens for its peer (default: every address, the peer's port).
    pub listen: SocketAddr,
    /// The HA-managed servers: configured `[[server]]` names; they run on the primary only.
    pub servers: Vec<String>,
    /// The fence command (argv); exit status 0 certifies the peer powered off.
    pub fence_command: Vec<String>,
    /// Wait this long after losing the peer before fencing it (default 0; set on one node).
    pub fence_delay: Duration,
    /// A fence command still running after this long has failed (default 60 s).
    pub fence_timeout: Duration,
    /// After a failed fence, try again after this long (default 5 s).
    pub fence_retry: Duration,
    /// State exchange interval (default 500 ms).
    pub heartbeat: Duration,
    /// A peer silent this long does not communicate (default 3 s, at least twice `heartbeat`).
    pub peer_timeout: Duration,
    /// The HA-managed servers must be `RUNNING` within this, or the start failed (default 60 s).
    pub start_timeout: Duration,
    /// Run at an HA reset after the HA-managed servers are killed (default: none).
    pub reset_command: Option<Vec<String>>,
}

/// `[ha]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHa {
    peer: Spanned<String>,
    peer_address: Spanned<String>,
    #[serde(default)]
    listen: Option<Spanned<String>>,
    #[serde(default)]
    servers: Option<Spanned<Vec<String>>>,
    fence_command: Spanned<Vec<String>>,
    #[serde(default)]
    fence_delay: Option<Spanned<Dur>>,
    #[serde(default)]
    fence_timeout: Option<Spanned<Dur>>,
    #[serde(default)]
    fence_retry: Option<Spanned<Dur>>,
    #[serde(default)]
    heartbeat: Option<Spanned<Dur>>,
    #[serde(default)]
    peer_timeout: Option<Spanned<Dur>>,
    #[serde(default)]
    start_timeout: Option<Spanned<Dur>>,
    #[serde(default)]
    reset_command: Option<Spanned<Vec<String>>>,
}

fn dur(v: Option<&Spanned<Dur>>, default: Duration) -> Duration {
    v.map_or(default, |d| d.get_ref().0)
}

impl Checker<'_> {
    /// `[ha]` and `cluster_key_file`: names, addresses, servers, commands, timing.
    pub(super) fn ha(
        &mut self,
        raw: &RawConfig,
        node: &str,
        api: SocketAddr,
        standby: Option<StandbyConfig>,
        servers: &[String],
    ) -> Option<HaSettings> {
        let Some(ha) = &raw.ha else {
            if let Some(k) = &raw.cluster_key_file {
                // kept for the cluster: harmless without [ha], so only checked
                let _ = self.path_value("cluster_key_file", k);
            }
            return None;
        };
        let key_file = match &raw.cluster_key_file {
            Some(k) => self.path_value("cluster_key_file", k),
            None => {
                self.problem(
                    ha.span(),
                    "[ha] needs cluster_key_file (a top-level key naming the key both nodes hold; \
                     make one with `head -c 32 /dev/urandom > FILE; chmod 600 FILE` and copy it \
                     to the peer)"
                        .to_owned(),
                );
                PathBuf::new()
            }
        };
        let section = ha.span();
        let ha = ha.get_ref();
        let peer = ha.peer.get_ref().clone();
        if !valid_node_name(&peer) {
            self.problem(ha.peer.span(), format!("[ha] peer: bad node name {peer:?}"));
        } else if peer == node {
            self.problem(
                ha.peer.span(),
                format!("[ha] peer {peer:?} is this node's own name"),
            );
        }
        let addr = |checker: &mut Self, key: &str, v: &Spanned<String>| -> Option<SocketAddr> {
            let parsed = v.get_ref().parse::<SocketAddr>().ok();
            match parsed {
                Some(a) if a.port() != 0 => Some(a),
                _ => {
                    checker.problem(
                        v.span(),
                        format!(
                            "[ha] {key} {:?} is not IP:PORT with a port (host names are not resolved)",
                            v.get_ref()
                        ),
                    );
                    None
                }
            }
        };
        let peer_address = addr(self, "peer_address", &ha.peer_address);
        // no wildcard default: the HA link faces the peer's network only (every interface would
        // let anyone who reaches the machine knock on it)
        let listen = match &ha.listen {
            Some(l) => match addr(self, "listen", l) {
                Some(a) if a.ip().is_unspecified() => {
                    self.problem(
                        l.span(),
                        format!(
                            "[ha] listen {a} binds every interface: give this node's address on the network its peer reaches it by"
                        ),
                    );
                    None
                }
                other => other,
            },
            None => {
                self.problem(
                    section,
                    "[ha] needs listen: this node's IP:PORT on the network its peer reaches it by (the peer's peer_address)"
                        .to_owned(),
                );
                None
            }
        };
        if let Some(l) = listen {
            // two sockets on one port clash when one of them is the wildcard or both are the
            // same address; the standby link listens on 127.0.0.1
            let overlaps =
                |a: std::net::IpAddr| a == l.ip() || a.is_unspecified() || l.ip().is_unspecified();
            let span = ha
                .listen
                .as_ref()
                .map_or(ha.peer_address.span(), Spanned::span);
            if l.port() == api.port() && overlaps(api.ip()) {
                self.problem(
                    span.clone(),
                    format!("[ha] listen {l} takes the API's port (listen = \"{api}\")"),
                );
            } else if standby.is_some_and(|s| {
                s.port == l.port() && overlaps(std::net::Ipv4Addr::LOCALHOST.into())
            }) {
                self.problem(span, format!("[ha] listen {l} takes standby_port"));
            }
        }
        let mut ha_servers = vec![];
        if let Some(list) = &ha.servers {
            for name in list.get_ref() {
                if !servers.contains(name) {
                    self.problem(
                        list.span(),
                        format!("[ha] servers: no [[server]] named {name:?}"),
                    );
                } else if ha_servers.contains(name) {
                    self.problem(list.span(), format!("[ha] servers: {name:?} twice"));
                } else {
                    ha_servers.push(name.clone());
                }
            }
        }
        let argv = |checker: &mut Self, key: &str, v: &Spanned<Vec<String>>| {
            let a = v.get_ref();
            if a.is_empty() || a[0].is_empty() {
                checker.problem(v.span(), format!("[ha] {key} must name a program"));
            } else if a.iter().any(|s| s.contains('\0')) {
                checker.problem(v.span(), format!("[ha] {key} contains a NUL character"));
            }
            let mut a = a.clone();
            // a relative path (not a bare name looked up in PATH) is the config file's neighbour
            if let Some(program) = a.first_mut()
                && program.contains('/')
                && !program.starts_with('/')
            {
                *program = checker.dir.join(&*program).to_string_lossy().into_owned();
            }
            a
        };
        let fence_command = argv(self, "fence_command", &ha.fence_command);
        let reset_command = ha
            .reset_command
            .as_ref()
            .map(|r| argv(self, "reset_command", r));
        let heartbeat = dur(ha.heartbeat.as_ref(), DEFAULT_HEARTBEAT);
        let peer_timeout = dur(ha.peer_timeout.as_ref(), DEFAULT_PEER_TIMEOUT);
        let fence_timeout = dur(ha.fence_timeout.as_ref(), DEFAULT_FENCE_TIMEOUT);
        let start_timeout = dur(ha.start_timeout.as_ref(), DEFAULT_START_TIMEOUT);
        let fence_retry = dur(ha.fence_retry.as_ref(), DEFAULT_FENCE_RETRY);
        let mut timing_ok = true;
        for (key, v, range) in [
            ("[ha] heartbeat", &ha.heartbeat, HEARTBEAT_RANGE),
            ("[ha] peer_timeout", &ha.peer_timeout, PEER_TIMEOUT_RANGE),
            ("[ha] fence_delay", &ha.fence_delay, FENCE_DELAY_RANGE),
            ("[ha] fence_timeout", &ha.fence_timeout, FENCE_TIMEOUT_RANGE),
            ("[ha] fence_retry", &ha.fence_retry, FENCE_RETRY_RANGE),
            ("[ha] start_timeout", &ha.start_timeout, START_TIMEOUT_RANGE),
        ] {
            timing_ok &= self.in_range(key, v.as_ref(), range);
        }
        if timing_ok && peer_timeout < heartbeat.saturating_mul(2) {
            self.problem(
                ha.peer_timeout
                    .as_ref()
                    .or(ha.heartbeat.as_ref())
                    .map_or(ha.peer.span(), Spanned::span),
                format!(
                    "[ha] peer_timeout ({}) must be at least twice heartbeat ({})",
                    humantime::format_duration(peer_timeout),
                    humantime::format_duration(heartbeat)
                ),
            );
        }
        Some(HaSettings {
            key_file,
            peer,
            peer_address: peer_address.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
            listen: listen.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
            servers: ha_servers,
            fence_command,
            fence_delay: dur(ha.fence_delay.as_ref(), Duration::ZERO),
            fence_timeout,
            fence_retry,
            heartbeat,
            peer_timeout,
            start_timeout,
            reset_command,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::parse;
    use super::*;

    const FILE: &str = "/etc/nm/nm.toml";
    const BASE: &str = "node = \"node1\"\ndata_dir = \"/var/lib/nm\"\ncluster_key_file = \"cluster.key\"\n\
        [[server]]\nname = \"db\"\ncommand = [\"db\"]\n[[server]]\nname = \"web\"\ncommand = [\"web\"]\n";

    /// `[ha]` with `ha`, and `listen = "10.0.0.1:5560"` after it when `ha` names none.
    fn with_ha(ha: &str) -> Result<super::super::NodeConfig, String> {
        let listen = if ha.contains("listen") {
            ""
        } else {
            "listen = \"10.0.0.1:5560\"\n"
        };
        parse(&format!("{BASE}[ha]\n{ha}{listen}"), Path::new(FILE)).map_err(|e| e.to_string())
    }

    const MIN: &str = "peer = \"node2\"\npeer_address = \"10.0.0.2:5560\"\nfence_command = [\"/sbin/fence\", \"node2\"]\n";

    #[test]
    fn a_minimal_ha_section_gets_the_defaults() {
        let cfg = with_ha(&format!("{MIN}servers = [\"db\"]\n")).unwrap();
        let ha = cfg.ha.clone().unwrap();
        assert_eq!(ha.key_file, PathBuf::from("/etc/nm/cluster.key"));
        assert_eq!(ha.peer, "node2");
        assert_eq!(ha.listen, "10.0.0.1:5560".parse().unwrap());
        assert_eq!(ha.servers, ["db"]);
        assert_eq!(ha.fence_command, ["/sbin/fence", "node2"]);
        let cfg2 = with_ha(
            "peer = \"node2\"\npeer_address = \"10.0.0.2:5560\"\nfence_command = [\"bin/fence\"]\n\
             reset_command = [\"reboot\"]\n",
        )
        .unwrap();
        let ha2 = cfg2.ha.unwrap();
        assert_eq!(
            ha2.fence_command,
            ["/etc/nm/bin/fence"],
            "relative to the file"
        );
        assert_eq!(
            ha2.reset_command,
            Some(vec!["reboot".to_owned()]),
            "looked up in PATH"
        );
        assert_eq!(
            (ha.heartbeat, ha.peer_timeout, ha.fence_delay),
            (DEFAULT_HEARTBEAT, DEFAULT_PEER_TIMEOUT, Duration::ZERO)
        );
        assert_eq!(ha.reset_command, None);
        // as written: the rules, not the reader, keep HA-managed servers from starting alone
        assert!(cfg.servers.iter().all(|s| s.auto_start));
        let run = crate::rules::supervised_servers(&cfg);
        let auto = |name: &str| {
            run.iter()
                .find(|s| s.name.as_str() == name)
                .unwrap()
                .auto_start
        };
        assert!(!auto("db"), "HA-managed: started by the HA manager only");
        assert!(auto("web"));
    }

    #[test]
    fn bad_ha_settings_are_refused_with_their_position() {
        let cases = [
            (
                "peer = \"node1\"\npeer_address = \"10.0.0.2:5560\"\nfence_command = [\"f\"]\n",
                "11:8: [ha] peer \"node1\" is this node's own name",
            ),
            (
                "peer = \"node2\"\npeer_address = \"node2:5560\"\nfence_command = [\"f\"]\n",
                "12:16: [ha] peer_address \"node2:5560\" is not IP:PORT",
            ),
            (
                &format!("{MIN}servers = [\"nope\"]\n"),
                "[ha] servers: no [[server]] named \"nope\"",
            ),
            (
                "peer = \"node2\"\npeer_address = \"10.0.0.2:5560\"\nfence_command = []\n",
                "[ha] fence_command must name a program",
            ),
            (
                &format!("{MIN}heartbeat = \"2s\"\n"),
                "[ha] peer_timeout (3s) must be at least twice heartbeat (2s)",
            ),
            (
                &format!("{MIN}listen = \"127.0.0.1:5556\"\n"),
                "takes the API's port",
            ),
            (
                &format!("{MIN}fence_retry = 0\n"),
                "[ha] fence_retry must be more than 0",
            ),
            (
                &format!("{MIN}heartbeat = \"2s\"\n"),
                "14:13: [ha] peer_timeout (3s) must be at least twice heartbeat (2s)",
            ),
            (&format!("{MIN}fence = true\n"), "unknown field `fence`"),
            (
                &format!("{MIN}listen = \"0.0.0.0:5560\"\n"),
                "14:10: [ha] listen 0.0.0.0:5560 binds every interface",
            ),
            (
                &format!("{MIN}listen = \"[::]:5560\"\n"),
                "14:10: [ha] listen [::]:5560 binds every interface",
            ),
            (
                "peer = \"node2\"\npeer_address = \"10.0.0.2:5560\"\n",
                "missing field `fence_command`",
            ),
        ];
        for (ha, want) in cases {
            let e = with_ha(ha).unwrap_err();
            assert!(e.contains(want), "{ha:?}: {e}");
        }
        // no wildcard default: [ha] without listen is refused at the section
        let e = parse(&format!("{BASE}[ha]\n{MIN}"), Path::new(FILE)).unwrap_err();
        assert!(e.to_string().contains("10:1: [ha] needs listen"), "{e}");
    }

    #[test]
    fn ha_needs_the_cluster_key() {
        let text = format!("node = \"node1\"\ndata_dir = \"/d\"\n[ha]\n{MIN}");
        let e = parse(&text, Path::new(FILE)).unwrap_err().to_string();
        assert!(e.contains("[ha] needs cluster_key_file"), "{e}");
    }
}
