//! `nm-daemon --check` on the shipped examples. (Also makes `cargo test --workspace` build the
//! `nm-daemon` binary that the multi-process tests in `tests/` run.)

use std::process::Command;

#[test]
fn the_quickstart_config_checks_ok() {
    let cfg = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/quickstart.toml"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_nm-daemon"))
        .args(["--config", cfg, "--check"])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok (node"), "{stdout}");
}

#[test]
fn the_ha_demo_configs_check_ok() {
    for node in ["ha-node1", "ha-node2"] {
        let cfg = format!("{}/../../examples/{node}.toml", env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(env!("CARGO_BIN_EXE_nm-daemon"))
            .args(["--config", &cfg, "--check"])
            .output()
            .expect("run");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("HA pair with"), "{stdout}");
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
