//! A descriptor the daemon inherits (here: fd 7, opened by the shell that starts it, as a
//! service manager's socket or a script's redirection would be) never reaches its servers.

use nm_tests::Node;

#[tokio::test]
async fn a_descriptor_the_daemon_inherits_never_reaches_its_servers() {
    let mut node = Node::configure(
        "[[server]]\nname = \"plain\"\ncommand = [\"sleep\", \"1000\"]\n\n\
         [[server]]\nname = \"shell\"\ncommand = [\"sh\", \"-c\", \"exec sleep 1001\"]\n",
    );
    node.spawn_daemon_under(&["sh", "-c", "exec 7</etc/hostname; exec \"$0\" \"$@\""]);
    let daemon = node.daemon_pid().expect("spawned");
    // the daemon itself does hold it: the test is not vacuous
    nm_tests::wait_for("the daemon to start", || async { node.status().await }).await;
    assert!(
        std::fs::read_link(format!("/proc/{daemon}/fd/7")).is_ok(),
        "the daemon did not inherit fd 7"
    );
    for server in ["plain", "shell"] {
        let pid = node.running_pid(server).await;
        let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("fds")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let mut fds: Vec<i32> = fds.iter().filter_map(|f| f.parse().ok()).collect();
        fds.sort_unstable();
        assert_eq!(fds, [0, 1, 2], "{server} holds {fds:?}");
    }
}
