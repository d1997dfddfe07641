//! Tests that need more than a fresh machine gives a non-root user (root, `strace`, nftables)
//! skip themselves with `skipped: needs …` on stderr, unless `NM_TEST_REQUIRE_ALL=1` (set by
//! `.ci/run`) turns every such skip into a failure.
//!
//! ```no_run
//! # async fn t() {
//! use nm_tests::{Need, require};
//! if !require(&[Need::Root, Need::Nftables]) {
//!     return;
//! }
//! # }
//! ```

use std::process::{Command, Stdio};

/// What a test needs from the machine beyond `cargo test` as any user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Need {
    /// The effective user is root.
    Root,
    /// A program on `PATH` (it runs `PROGRAM --version` successfully).
    Program(&'static str),
    /// `strace` is installed and may trace a child (ptrace is not forbidden by the container).
    Strace,
    /// `nft` is installed and can list the ruleset (root, and nf_tables in the kernel).
    Nftables,
}

impl Need {
    /// Why this need is not met on this machine, or `None` when it is.
    #[must_use]
    pub fn unmet(self) -> Option<String> {
        match self {
            Self::Root => (!rustix::process::geteuid().is_root()).then(|| "root".to_owned()),
            Self::Program(p) => (!runs(p, &["--version"])).then(|| format!("`{p}` on PATH")),
            Self::Strace => (!runs("strace", &["-f", "-qq", "-o", "/dev/null", "true"]))
                .then(|| "`strace`, allowed to trace (apt-get install strace)".to_owned()),
            Self::Nftables => (!runs("nft", &["list", "tables"]))
                .then(|| "a working `nft` (apt-get install nftables)".to_owned()),
        }
    }
}

/// Whether `program args…` runs and exits 0 (its output discarded).
fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `NM_TEST_REQUIRE_ALL=1`: every skip is then a failure.
#[must_use]
pub fn require_all() -> bool {
    std::env::var_os("NM_TEST_REQUIRE_ALL").is_some_and(|v| v == "1")
}

/// Whether the calling test may run: `true` when every need is met. Otherwise it prints
/// `skipped: needs …` (with the test's name) on stderr and returns `false`, and the test returns
/// early; with `NM_TEST_REQUIRE_ALL=1` it panics with the same reason instead.
///
/// # Panics
/// When a need is unmet and `NM_TEST_REQUIRE_ALL=1`.
#[must_use]
pub fn require(needs: &[Need]) -> bool {
    let unmet: Vec<String> = needs.iter().filter_map(|n| n.unmet()).collect();
    if unmet.is_empty() {
        return true;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_owned();
    let reason = format!("skipped: needs {}: {test}", unmet.join("; "));
    assert!(
        !require_all(),
        "{reason}, and NM_TEST_REQUIRE_ALL=1 forbids skips"
    );
    eprintln!("{reason}");
    false
}
