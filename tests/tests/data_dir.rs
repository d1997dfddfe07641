//! The data directory is the daemon's own (issue 12 §1): one that another user owns or may write
//! in is refused with one line and exit status 1, never taken over or chmod'ed; and a link
//! planted where the daemon writes is never written through.
#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nm_api::ServerState as St;
use nm_tests::Node;

const SERVERS: &str = r#"
[[server]]
name = "web"
command = ["sleep", "1000"]

[[server]]
name = "quiet"
command = ["sleep", "1001"]
"#;

/// Starts the daemon on a data directory prepared by `prepare`, expects it to refuse to start
/// with exit status 1 and one line containing `why`, and returns that line.
async fn refused(prepare: impl FnOnce(&Path), why: &str) -> String {
    let mut node = Node::configure(SERVERS);
    std::fs::create_dir(&node.data_dir).unwrap();
    prepare(&node.data_dir);
    let before = std::fs::metadata(&node.data_dir).unwrap();
    node.spawn_daemon();
    let status = node.wait_daemon_exit().await;
    let out = node.daemon_output();
    assert_eq!(status.code(), Some(1), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {out}");
    assert!(lines[0].contains(why), "{out}");
    let after = std::fs::metadata(&node.data_dir).unwrap();
    assert_eq!(
        (after.mode(), after.uid()),
        (before.mode(), before.uid()),
        "never chmod'ed or chown'ed"
    );
    let left: Vec<_> = std::fs::read_dir(&node.data_dir).unwrap().collect();
    assert!(left.is_empty(), "nothing written in it: {left:?}");
    lines[0].to_owned()
}

#[tokio::test]
async fn a_world_or_group_writable_data_directory_is_refused_with_one_line_and_status_1() {
    for (mode, who) in [
        (0o1777, "everyone"),
        (0o777, "everyone"),
        (0o770, "its group"),
    ] {
        let line = refused(
            |d| std::fs::set_permissions(d, PermissionsExt::from_mode(mode)).unwrap(),
            &format!("is writable by {who}"),
        )
        .await;
        assert!(line.starts_with("nm-daemon: data_dir /"), "{line}");
    }
}

#[tokio::test]
async fn a_data_directory_owned_by_another_user_is_refused_with_one_line_and_status_1() {
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        eprintln!("skipped: only root can give a directory to another user");
        return;
    }
    refused(
        |d| std::os::unix::fs::chown(d, Some(65534), Some(65534)).unwrap(),
        "is owned by uid 65534",
    )
    .await;
}

/// Links planted at every path the daemon writes in its data directory (temporaries, the
/// files they replace, server logs), each pointing at a file outside it: the daemon starts,
/// and no target is ever written. (`nm.log`, which `nm-daemon` opens itself: the next test.)
#[tokio::test]
async fn links_planted_in_the_data_directory_are_never_written_through() {
    let mut node = Node::configure(SERVERS);
    let d = node.data_dir.clone();
    for sub in ["", "servers", "logs"] {
        std::fs::create_dir(d.join(sub)).unwrap();
        std::fs::set_permissions(d.join(sub), PermissionsExt::from_mode(0o700)).unwrap();
    }
    let target = node.dir.path().join("root-owned-file");
    std::fs::write(&target, b"precious").unwrap();
    let planted = [
        ".api.token.tmp",
        ".nm.lock.tmp",
        "nm.lock",
        "nm.sock",
        "servers/.web.lock.tmp",
        "servers/.quiet.lock.tmp",
        "servers/.quiet.stopped.tmp",
        "logs/web.out",
    ];
    for p in planted {
        std::os::unix::fs::symlink(&target, d.join(p)).unwrap();
    }
    node.start_daemon().await;
    // `web`'s output would go through the link: it is refused, and web does not run
    let web = node
        .wait_server("web", "refused its log", |s| {
            s.reason.contains("cannot open log")
        })
        .await;
    assert_ne!(web.state, St::Running, "{web:#?}");
    node.running_pid("quiet").await;
    let lock = std::fs::symlink_metadata(d.join("servers/quiet.lock")).unwrap();
    assert!(lock.is_file(), "the lock file is a file of its own");
    let (code, out, err) = node.cli(&["server", "stop", "quiet", "--timeout", "10"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    for written in ["api.token", "nm.lock", "servers/quiet.stopped"] {
        let md = std::fs::symlink_metadata(d.join(written)).unwrap();
        assert!(md.is_file(), "{written} is a file of its own");
    }
    assert_eq!(node.cli(&["shutdown"]).0, 0);
    node.wait_daemon_exit().await;
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
}

/// `nm.log`, which `nm-daemon` opens itself before anything else, planted as a link: the daemon
/// refuses to start (one line, status 1) and the target is not written.
#[tokio::test]
async fn a_link_planted_at_nm_log_is_refused_and_its_target_unchanged() {
    let mut node = Node::configure(SERVERS);
    let d = node.data_dir.clone();
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, PermissionsExt::from_mode(0o700)).unwrap();
    let target = node.dir.path().join("root-owned-file");
    std::fs::write(&target, b"precious").unwrap();
    std::os::unix::fs::symlink(&target, d.join("nm.log")).unwrap();
    node.spawn_daemon();
    let status = node.wait_daemon_exit().await;
    assert_eq!(status.code(), Some(1), "{}", node.daemon_output());
    assert!(
        node.daemon_output().contains("nm.log"),
        "{}",
        node.daemon_output()
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
}
