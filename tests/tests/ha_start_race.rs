//! `ha start` does not race the peer's start, nor claim a fence that did not happen: with the
//! daemons started in either order and node2's daemon coming up at staggered delays after
//! `nm-cli ha start` on node1, the pair ends with node1 primary and node2 the armed secondary,
//! and the steps say "fenced" only when the fence command ran (its script writes `fence …` to the
//! events log).
#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::time::Duration;

use nm_api::HaStatus;
use nm_tests::ha::{Pair, wait_ha};

/// `nm-cli ha start` on node1, running beside the test (it waits for the pair).
fn spawn_ha_start(p: &Pair) -> std::process::Child {
    std::process::Command::new(nm_tests::bin("nm-cli"))
        .arg("--socket")
        .arg(p.n1.data_dir.join("nm.sock"))
        .args(["ha", "start"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The pair at rest after `ha start` on node1: node1 primary and running hadb alone, node2 the
/// armed secondary (HA started, persisted), and a "fenced" step only with a fence event.
async fn assert_armed(p: &Pair, out: &str) {
    p.n1.running_pid("hadb").await;
    let r = wait_ha(&p.n2, "the armed secondary", |r| {
        r.report.communicating && r.report.local.status == Some(HaStatus::Running)
    })
    .await;
    assert_eq!(r.report.peer.status, Some(HaStatus::Primary), "{out}");
    assert!(p.n2.read_data("ha.json").contains("\"started\": true"));
    let r = wait_ha(&p.n1, "primary", |r| r.report.communicating).await;
    assert_eq!(r.report.local.status, Some(HaStatus::Primary), "{out}");
    assert_eq!(p.hadb(), ["node1"], "{out}\n{}", p.logs());
    let claims_fence = out.lines().any(|l| l.contains("fenced"));
    if claims_fence {
        assert!(
            !p.fences().is_empty(),
            "a fence claimed without a fence event:\n{out}\n{}",
            p.logs()
        );
    }
    assert!(
        !out.contains("it is fenced before"),
        "no fence announced in advance:\n{out}"
    );
}

async fn node2_comes_up_after_ha_start_on_node1(delay: Duration) {
    let mut p = Pair::configure(
        "[\"sh\", \"-c\", \"echo start $NODE >> EVENTS; exec sleep 1000\"]",
        "1s",
    );
    p.n1.start_daemon().await;
    let cli = spawn_ha_start(&p);
    // the schedule under test (node2's daemon comes up this long after the command), not a wait
    // for a condition
    tokio::time::sleep(delay).await;
    p.n2.start_daemon().await;
    let out = tokio::task::spawn_blocking(move || cli.wait_with_output().unwrap())
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("ha start, node2 up {delay:?} after it:\n{text}"); // shown with --nocapture
    assert!(
        out.status.success(),
        "ha start failed ({delay:?}):\n{text}\n{}",
        p.logs()
    );
    assert_armed(&p, &text).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node2_up_a_tenth_of_a_second_after_ha_start_ends_armed() {
    node2_comes_up_after_ha_start_on_node1(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node2_up_half_a_second_after_ha_start_ends_armed() {
    node2_comes_up_after_ha_start_on_node1(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node2_up_after_node1_fenced_it_joins_as_the_armed_secondary() {
    node2_comes_up_after_ha_start_on_node1(Duration::from_millis(1500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node2_up_first_and_node1_started_with_ha_start_at_once_ends_armed_without_a_fence() {
    let mut p = Pair::configure(
        "[\"sh\", \"-c\", \"echo start $NODE >> EVENTS; exec sleep 1000\"]",
        "1s",
    );
    p.n2.start_daemon().await;
    p.n1.start_daemon().await;
    let out = tokio::task::spawn_blocking({
        let cli = spawn_ha_start(&p);
        move || cli.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}\n{}", p.logs());
    assert_armed(&p, &text).await;
    assert!(p.fences().is_empty(), "node2 was up: {text}\n{}", p.logs());
}
