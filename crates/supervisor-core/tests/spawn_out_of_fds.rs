//! A spawn that fails for lack of file descriptors (`EMFILE`) is a shortage of the daemon, not a
//! fault of the server: the driver retries it, and the server starts once descriptors are free
//! again, with no failed start and no restart counted (issue: after an API flood a crashed
//! server stayed `FAILED_NOT_RESTARTABLE`, "cannot open log: Too many open files").
//!
//! Its own test binary: it exhausts this process's descriptors.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use rustix::process::{Resource, getrlimit, setrlimit};
use supervisor_core::driver;
use supervisor_core::{Accepted, Command, ServerSpec, ServerState, SupervisorConfig};

const T: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_start_that_finds_no_free_descriptor_is_retried_not_failed() {
    let data = tempfile::tempdir().unwrap();
    let mut spec = ServerSpec::new("sleeper", &["sleep", "600"]).unwrap();
    spec.auto_start = false;
    spec.log.max_size = 0;
    let (sup, task) = driver::start(SupervisorConfig {
        data_dir: data.path().to_owned(),
        crash_recovery: true,
        keep_operator_stops: false,
        no_crash_recovery: vec![],
        servers: vec![Arc::new(spec)],
    })
    .unwrap();
    // one answer from the driver: its run loop is past recovery
    assert_eq!(
        sup.command("sleeper", Command::Stop).await.unwrap(),
        Ok(Accepted::AlreadyDone)
    );
    let mut states = sup.subscribe();
    let stdout_log = sup
        .snapshot()
        .servers
        .values()
        .next()
        .unwrap()
        .stdout_log
        .clone();
    // (no rotation: nothing but a start creates the log files)
    assert!(!stdout_log.exists());

    // every descriptor taken but one (under a low limit, so it is cheap): the start opens its
    // stdout log (which appears) and finds none left for its stderr log
    let mut lim = getrlimit(Resource::Nofile);
    lim.current = Some(256.min(lim.current.unwrap_or(256)));
    setrlimit(Resource::Nofile, lim).unwrap();
    let mut hog = vec![];
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => hog.push(f),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::MFILE.raw_os_error()) => break,
            Err(e) => panic!("{e}"),
        }
    }
    hog.pop();
    let start = tokio::spawn({
        let sup = sup.clone();
        async move { sup.command("sleeper", Command::Start).await }
    });
    // the start was tried and failed for lack of descriptors; then the shortage passes
    tokio::time::timeout(T, async {
        while !stdout_log.exists() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap();
    drop(hog);
    let answer = tokio::time::timeout(T, start).await.unwrap().unwrap();
    assert_eq!(answer.unwrap(), Ok(Accepted::Changed));

    // RUNNING, never a failed state on the way, no restart counted
    let mut seen = vec![];
    tokio::time::timeout(T, async {
        loop {
            let view = states
                .borrow_and_update()
                .servers
                .values()
                .next()
                .unwrap()
                .view
                .clone();
            seen.push(view.state);
            if view.state == ServerState::Running {
                assert_eq!(view.restart_count, 0, "{view:?}");
                break;
            }
            states.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never RUNNING: {seen:?}"));
    assert!(
        !seen.iter().any(|s| matches!(
            s,
            ServerState::Failed | ServerState::FailedRestarting | ServerState::FailedNotRestartable
        )),
        "{seen:?}"
    );

    let stopped = sup.shutdown(true).await.unwrap();
    assert_eq!(stopped.stopped, vec!["sleeper".to_owned()]);
    task.await.unwrap();
}
