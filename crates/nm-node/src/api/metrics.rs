//! `GET /metrics`: Prometheus text (`nm_` prefix) from the node's status.

use crate::node::NodeHandle;
use supervisor_core::ServerState;

/// The metrics page.
pub(super) fn render(node: &NodeHandle) -> Result<String, std::fmt::Error> {
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
    for s in node.sup.snapshot().servers.values() {
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
    if let Some(pair) = node
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
    if let Some(ha) = &node.ha {
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
            "1 while the pair is in a state the HA mode discipline prohibits (docs/ha.md)",
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
    prometheus_client::encoding::text::encode(&mut text, &reg)?;
    Ok(text)
}
