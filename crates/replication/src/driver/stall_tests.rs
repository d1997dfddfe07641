//! The standby watcher against an active that stops answering in the middle of the link's
//! handshake, in paused time: tokio's clock jumps to the next timer whenever every task waits,
//! so the handshake timeouts and retries of a long outage run in a moment, on real loopback
//! sockets (and, for the fence, a real lock-holding process).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::race_tests::Holder;
use super::{StandbyConfig, StandbyOutcome, lock_holder, now, run_standby};
use crate::link::{self, Pending, Welcome};
use crate::{TakeoverReason, Timing};

const KEY: &[u8] = &[b'k'; 64];

fn timing() -> Timing {
    Timing {
        heartbeat: Duration::from_millis(500),
        timeout: Duration::from_secs(3),
    }
}

/// What the silent "active" does with each connection it accepts.
#[derive(Clone, Copy)]
enum Silence {
    /// Accept the TCP connection, send nothing.
    BeforeTheChallenge,
    /// Send the challenge and read the standby's hello, then never answer it.
    AfterTheHello,
}

/// Connections the silent active accepted, held open so the standby's side never sees a close.
enum Held {
    Stream(#[allow(dead_code)] TcpStream),
    Pending(#[allow(dead_code)] Box<Pending>),
}

/// Serves `listener` as an active that goes silent mid-handshake: reports the (paused) instant
/// of every connection attempt and holds every connection open, unanswered.
fn silent_active(
    listener: TcpListener,
    mode: Silence,
) -> mpsc::UnboundedReceiver<std::time::Instant> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = vec![];
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = tx.send(now());
            match mode {
                Silence::BeforeTheChallenge => held.push(Held::Stream(stream)),
                Silence::AfterTheHello => {
                    // our own side of the handshake may time out too while the clock runs on
                    if let Ok(p) = link::accept(stream, KEY, Duration::from_secs(86_400)).await {
                        held.push(Held::Pending(Box::new(p)));
                    }
                }
            }
        }
    });
    rx
}

async fn standby_against(mode: Silence) {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cfg = StandbyConfig {
        port: listener.local_addr().unwrap().port(),
        key: KEY.to_vec(),
        data_dir: dir.path().to_path_buf(),
        timing: timing(),
    };
    let mut attempts = silent_active(listener, mode);
    let mut standby = tokio::spawn(run_standby(cfg));
    let mut seen = vec![];
    while seen.len() < 6 {
        tokio::select! {
            Some(at) = attempts.recv() => seen.push(at),
            r = &mut standby => panic!("the standby returned: {r:?}"),
        }
    }
    // each attempt waited out its whole handshake timeout, then one heartbeat, and tried again:
    // neither hung on the silent connection nor spun on it
    let t = timing();
    for pair in seen.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= t.timeout + t.heartbeat
                && gap < t.timeout + t.heartbeat + Duration::from_millis(50),
            "attempts {gap:?} apart"
        );
    }
    // never linked, so it never waited for the lock: free all along, and not taken
    assert_eq!(lock_holder(dir.path()).unwrap(), None);
    assert!(!standby.is_finished(), "it stays a standby");
    standby.abort();
}

#[tokio::test(start_paused = true)]
async fn a_standby_whose_active_never_sends_the_challenge_retries_and_never_takes_over() {
    standby_against(Silence::BeforeTheChallenge).await;
}

#[tokio::test(start_paused = true)]
async fn a_standby_whose_active_never_answers_its_hello_retries_and_never_takes_over() {
    standby_against(Silence::AfterTheHello).await;
}

/// A linked standby whose active then stops answering mid-handshake: the silence counts from the
/// active's last word, and after the timeout the standby fences the pinned active (a live
/// process holding the data directory's lock) before it takes over. It never takes over while
/// that process lives.
#[tokio::test(start_paused = true)]
async fn a_linked_standby_fences_an_active_silent_mid_handshake_then_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut active = Holder::start(dir.path()).await;
    let active_pid = active.pid();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cfg = StandbyConfig {
        port: listener.local_addr().unwrap().port(),
        key: KEY.to_vec(),
        data_dir: dir.path().to_path_buf(),
        timing: timing(),
    };
    let mut standby = tokio::spawn(run_standby(cfg));
    // link once, with the lock holder's identity, then close the link at once
    let (stream, _) = listener.accept().await.unwrap();
    let pending = link::accept(stream, KEY, Duration::from_secs(86_400))
        .await
        .unwrap();
    let linked_at = now();
    let halves = pending
        .welcome(Welcome {
            pid: active_pid,
            start_time: supervisor_core::os::start_time_of(active_pid).unwrap(),
            takeovers: 1,
            pair_started_ms: 1,
        })
        .await
        .unwrap();
    drop(halves);
    // every reconnection then stalls after the hello
    let mut attempts = silent_active(listener, Silence::AfterTheHello);
    let mut reconnects = 0;
    let outcome = loop {
        tokio::select! {
            Some(_) = attempts.recv() => reconnects += 1,
            r = &mut standby => break r.unwrap().unwrap(),
        }
    };
    let StandbyOutcome::TookOver(takeover) = outcome else {
        panic!("no takeover: {outcome:?}");
    };
    assert_eq!(takeover.reason, TakeoverReason::Fenced);
    assert_eq!(takeover.previous.map(|a| a.pid), Some(active_pid));
    assert!(reconnects >= 1, "it tried to reconnect first");
    assert!(
        now() >= linked_at + timing().timeout,
        "fenced before the timeout"
    );
    // the fenced active is dead: the lock is the standby's (this process's) alone
    assert_eq!(
        lock_holder(dir.path()).unwrap(),
        Some(i32::try_from(std::process::id()).unwrap())
    );
    assert!(
        std::fs::read_to_string(format!("/proc/{active_pid}/stat"))
            .map_or(true, |s| s.contains(") Z ")),
        "the fenced active still runs"
    );
    drop(takeover);
    active.kill();
}
