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

#[test]
fn a_bad_value_is_one_line_with_its_position_then_the_line_and_a_caret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("nm.toml");
    std::fs::write(
        &cfg,
        "node = \"n\"\ndata_dir = \"d\"\n[[server]]\nname = \"web\"\ncommand = [\"w\"]\nrestart_interval = \"soon\"\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_nm-daemon"))
        .arg("--config")
        .arg(&cfg)
        .arg("--check")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(lines[0].contains("nm.toml:6:20: "), "{stderr}");
    assert_eq!(
        lines[1].trim(),
        "6 | restart_interval = \"soon\"",
        "{stderr}"
    );
    assert!(
        lines[2].ends_with("|                    ^^^^^^"),
        "{stderr}"
    );
}
