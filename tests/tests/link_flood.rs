//! Strangers holding the peer listeners' unauthenticated slots (issue 12 §2) with real daemons:
//! an attacker who reaches the HA port must not turn a half-second daemon restart into a fence
//! (the StorNext HA Manager's peer fences a primary it cannot hear), and one who reaches the
//! standby port must not keep a replacement standby from attaching (JEUS's pair would then have
//! no takeover at the active's next crash).
//!
//! The attacker keeps its connections open and idle, and reconnects each one soon after the
//! listener closes it, so that it holds the slots however long a handshake may last.

#![allow(clippy::unwrap_used)] // test: a panic is the failure report

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nm_tests::ha::{Pair, ha, wait_ha};
use nm_tests::{Node, free_port, kill9, wait_for};
use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;
use tokio::task::JoinHandle;

/// Idle connections per attack, two from each of as many loopback addresses: more than a
/// listener's handshake pool, from more addresses than its per-source share lets one use.
const CONNECTIONS: u8 = 40;

/// An attacker's idle connections to one listener; dropping it ends the attack.
struct Flood {
    tasks: Vec<JoinHandle<()>>,
    accepted: Arc<AtomicU64>,
}

impl Flood {
    /// Opens [`CONNECTIONS`] connections to `to` from 127.0.0.{10…}, two per address. Each one
    /// reads what the listener sends and nothing else; when the listener closes it (or refuses
    /// it: the daemon is down), it connects again 10 ms later.
    fn start(to: SocketAddr) -> Self {
        let accepted = Arc::new(AtomicU64::new(0));
        let tasks = (0..CONNECTIONS)
            .map(|i| {
                let accepted = accepted.clone();
                tokio::spawn(async move {
                    let from = SocketAddr::from(([127, 0, 0, 10 + i / 2], 0));
                    loop {
                        let s = TcpSocket::new_v4().unwrap();
                        s.bind(from).unwrap();
                        if let Ok(mut c) = s.connect(to).await {
                            accepted.fetch_add(1, Ordering::Relaxed);
                            let mut buf = [0u8; 256];
                            while matches!(c.read(&mut buf).await, Ok(n) if n > 0) {}
                        }
                        // an attacker's pace, not a wait for a condition
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
            })
            .collect();
        Self { tasks, accepted }
    }

    /// Waits until every connection has been accepted at least once.
    async fn wait_holding(&self) {
        let accepted = self.accepted.clone();
        wait_for("the attacker's connections to be accepted", || {
            let n = accepted.load(Ordering::Relaxed);
            async move { (n >= u64::from(CONNECTIONS)).then_some(()) }
        })
        .await;
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_second_restart_of_the_primarys_daemon_is_no_fence_while_strangers_hold_both_ha_ports()
 {
    // the default peer_timeout: the restart below takes well under half of it
    let mut p = Pair::start_with("3s").await;
    p.arm_node1().await;
    let listen = |i: usize| SocketAddr::from(([127, 0, 0, 1 + i as u8], p.ports[i]));
    let on_node2 = Flood::start(listen(1));
    let on_node1 = Flood::start(listen(0));
    on_node2.wait_holding().await;
    on_node1.wait_holding().await;

    // kill -9 of node1's daemon (not a planned stop: hadb keeps running) and a restart at once;
    // the attacker reconnects to node1's new listener as soon as it binds
    p.n1.kill9_daemon();
    p.n1.start_daemon().await;
    wait_ha(&p.n1, "node1 back as the primary, hearing node2", |r| {
        r.report.communicating && r.report.local.status == Some(nm_api::HaStatus::Primary)
    })
    .await;
    wait_ha(&p.n2, "node2 hearing the restarted node1", |r| {
        r.report.communicating && r.report.peer.status == Some(nm_api::HaStatus::Primary)
    })
    .await;

    assert!(p.fences().is_empty(), "a fence:\n{}", p.logs());
    assert_eq!(p.hadb(), ["node1"], "{}", p.logs());
    let rejected = ha(&p.n2).await.unwrap().report.rejected_frames;
    assert!(rejected > 0, "node2 counted none of the strangers");
    drop((on_node1, on_node2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_standby_is_replaced_and_attaches_while_strangers_hold_the_standby_port() {
    let port = free_port();
    let mut node = Node::configure_with(
        &format!("standby_port = {port}\n"),
        "[[server]]\nname = \"a\"\ncommand = [\"sleep\", \"1000\"]\n",
    );
    node.start_daemon().await;
    let attached = |s: &nm_api::NodeStatus| {
        s.standby
            .as_ref()
            .and_then(|sb| (sb.state == "attached").then_some(sb.pid).flatten())
    };
    let old = attached(
        &node
            .wait_status("the first standby", |s| attached(s).is_some())
            .await,
    )
    .unwrap();
    let flood = Flood::start(SocketAddr::from(([127, 0, 0, 1], port)));
    flood.wait_holding().await;

    kill9(old);
    let st = node
        .wait_status("a new standby attached despite the strangers", |s| {
            attached(s).is_some_and(|p| p != old)
        })
        .await;
    assert_eq!(st.pid, node.daemon_pid().unwrap() as i32, "no takeover");
    assert_eq!(st.takeovers, 0);
    let sb = st.standby.unwrap();
    assert!(sb.rejected_frames > 0, "the strangers were not counted");
    drop(flood);
}
