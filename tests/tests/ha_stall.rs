//! A node that did not run for a while (SIGSTOP of its daemon, as a frozen VM or a stalled
//! runtime would) must not fence a healthy peer the moment it runs again: its timer fires late,
//! before it has read the peer's heartbeats waiting in the socket. The HA driver takes a timer
//! more than two heartbeats late as its own stall and counts the peer's silence again from then.
//! (Whether the late timer or the waiting heartbeat reaches the driver first after SIGCONT is the
//! runtime's choice, so this test can pass without that rule too; the core test
//! `a_secondary_back_from_a_stall_counts_the_primarys_silence_again_before_it_fences` pins the
//! rule itself.)

#![allow(clippy::unwrap_used)] // test: a panic is the failure report

use nm_api::HaStatus;
use nm_tests::ha::{Pair, wait_ha};
use rustix::process::{Pid, Signal, kill_process};

fn signal(pid: u32, sig: Signal) {
    let pid = Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
    kill_process(pid, sig).unwrap();
}

/// Resumes the stopped daemon when the test ends, on failure too (a stopped process would hold
/// the harness's clean-up).
struct Stopped(u32);

impl Drop for Stopped {
    fn drop(&mut self) {
        let pid = Pid::from_raw(i32::try_from(self.0).unwrap()).unwrap();
        let _ = kill_process(pid, Signal::CONT);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_frozen_longer_than_the_peer_timeout_does_not_fence_its_primary() {
    let p = Pair::start().await; // heartbeat 100 ms, peer_timeout 1 s, fence_delay 0
    let (code, _, err) = p.n1.cli(&["ha", "start"]);
    assert_eq!(code, 0, "{err}");
    p.n1.running_pid("hadb").await;
    wait_ha(&p.n2, "node2 armed beside the primary", |r| {
        r.report.communicating
            && r.report.peer.status == Some(HaStatus::Primary)
            && r.report.local.status == Some(HaStatus::Running)
    })
    .await;

    // freeze node2's daemon until node1 has not heard it for well over peer_timeout
    let node2 = p.n2.daemon_pid().unwrap();
    signal(node2, Signal::STOP);
    let frozen = Stopped(node2);
    wait_ha(&p.n1, "node1 to miss node2 for 2.5 s", |r| {
        r.report.peer_heard_ms_ago.is_some_and(|ms| ms >= 2500)
    })
    .await;
    drop(frozen); // SIGCONT

    // node2 hears node1 again and stays the armed secondary; nobody was fenced
    wait_ha(&p.n2, "node2 to hear node1 again", |r| {
        r.report.communicating
    })
    .await;
    let r = nm_tests::ha::ha(&p.n2).await.unwrap();
    assert_eq!(
        r.report.local.status,
        Some(HaStatus::Running),
        "{}",
        p.logs()
    );
    assert!(
        !p.events().iter().any(|e| e.starts_with("fence")),
        "node2 fenced a healthy primary after its stall:\n{}",
        p.logs()
    );
    assert_eq!(p.hadb(), ["node1"], "{}", p.logs());
}
