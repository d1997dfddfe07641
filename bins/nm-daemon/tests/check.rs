//! `nm-daemon --check` on the shipped examples. (Also makes `cargo test --workspace` build the
//! `nm-daemon` binary that the multi-process tests in `tests/` run.)

use std::process::Command;

#[test]
fn the_shipped_example_configs_check_ok() {
    for (example, says) in [
        ("quickstart", "ok (node"),
        ("ha-node1", "HA pair with \"node2\""),
        ("ha-node2", "HA pair with \"node1\""),
    ] {
        let cfg = format!(
            "{}/../../examples/{example}.toml",
            env!("CARGO_MANIFEST_DIR")
        );
        let out = Command::new(env!("CARGO_BIN_EXE_nm-daemon"))
            .args(["--config", &cfg, "--check"])
            .output()
            .expect("run");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{example}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(says), "{example}: {stdout}");
    }
}

#[test]
fn a_missing_config_file_is_a_one_line_error_with_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_nm-daemon"))
        .args(["--config", "/nonexistent/nm.toml", "--check"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/nm.toml"), "{stderr}");
}
