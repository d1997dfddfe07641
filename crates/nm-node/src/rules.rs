//! The rules that span crates: what one crate's decision means for another's, in one place.
//!
//! - HA-managed servers (`[ha] servers`) never start by themselves: the HA manager alone starts
//!   them, on the primary only (the StorNext HA Manager), so their `auto_start` is off whatever the
//!   file says, and the supervisor's crash recovery never restarts one (a peer may have taken it
//!   over while this daemon was down).
//! - A start, restart or resume of an HA-managed server is decided by the HA manager, in its own
//!   task, atomically with its promote and demote decisions (`HaHandle::server_command`); the API
//!   never checks "primary?" in one task and starts in another.
//! - A takeover by the standby node manager always adopts (the servers are the pair's, not a new
//!   daemon's) and keeps operator stops.

use std::sync::Arc;

use supervisor_core::ServerSpec;

use crate::config::NodeConfig;

/// The servers as the supervisor must run them: as configured, except that HA-managed servers
/// have `auto_start` off.
#[must_use]
pub fn supervised_servers(cfg: &NodeConfig) -> Vec<Arc<ServerSpec>> {
    let mut servers = cfg.servers.clone();
    for s in &mut servers {
        if is_ha_managed(cfg, s.name.as_str()) {
            Arc::make_mut(s).auto_start = false;
        }
    }
    servers
}

/// Whether `server` is one of the HA pair's servers (`[ha] servers`).
#[must_use]
pub fn is_ha_managed(cfg: &NodeConfig, server: &str) -> bool {
    cfg.ha
        .as_ref()
        .is_some_and(|ha| ha.servers.iter().any(|n| n == server))
}

/// The HA-managed servers (empty without `[ha]`).
#[must_use]
pub fn ha_servers(cfg: &NodeConfig) -> Vec<String> {
    cfg.ha
        .as_ref()
        .map(|h| h.servers.clone())
        .unwrap_or_default()
}

/// How the supervisor recovers at start: a takeover always adopts and keeps operator stops; a
/// fresh start follows `crash_recovery`. HA-managed servers are never restarted by recovery.
#[cfg(feature = "runtime")]
#[must_use]
pub fn supervisor_config(cfg: &NodeConfig, takeover: bool) -> supervisor_core::SupervisorConfig {
    supervisor_core::SupervisorConfig {
        data_dir: cfg.data_dir.clone(),
        crash_recovery: cfg.crash_recovery || takeover,
        keep_operator_stops: takeover,
        no_crash_recovery: ha_servers(cfg),
        servers: supervised_servers(cfg),
    }
}

/// The HA driver's settings from `[ha]`: the HA-managed servers' longest `stop_timeout` (plus
/// 5 s) bounds a graceful stop.
#[cfg(feature = "runtime")]
#[must_use]
pub fn ha_config(
    cfg: &NodeConfig,
    ha: &crate::config::HaSettings,
    key: Vec<u8>,
) -> ha_modes::driver::HaConfig {
    let stop_timeout = cfg
        .servers
        .iter()
        .filter(|s| is_ha_managed(cfg, s.name.as_str()))
        .map(|s| s.stop_timeout)
        .max()
        .unwrap_or_default()
        + std::time::Duration::from_secs(5);
    ha_modes::driver::HaConfig {
        data_dir: cfg.data_dir.clone(),
        node: cfg.node.clone(),
        peer: ha.peer.clone(),
        peer_addr: ha.peer_address,
        key,
        servers: ha.servers.clone(),
        fence_command: ha.fence_command.clone(),
        fence_timeout: ha.fence_timeout,
        reset_command: ha.reset_command.clone(),
        start_timeout: ha.start_timeout,
        stop_timeout,
        timing: ha_modes::Timing {
            heartbeat: ha.heartbeat,
            peer_timeout: ha.peer_timeout,
            fence_delay: ha.fence_delay,
            fence_retry: ha.fence_retry,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> NodeConfig {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k"), [7u8; 32]).unwrap();
        let path = dir.path().join("nm.toml");
        crate::config::parse(text, &path).unwrap()
    }

    #[test]
    fn servers_outside_the_ha_pair_keep_their_auto_start() {
        let c = cfg(
            "node = \"n\"\ndata_dir = \"d\"\n[[server]]\nname = \"a\"\ncommand = [\"a\"]\n\
                     [[server]]\nname = \"b\"\ncommand = [\"b\"]\nauto_start = false\n",
        );
        let run = supervised_servers(&c);
        assert_eq!(
            run.iter().map(|s| s.auto_start).collect::<Vec<_>>(),
            [true, false]
        );
        assert!(ha_servers(&c).is_empty());
        assert!(!is_ha_managed(&c, "a"));
    }
}
