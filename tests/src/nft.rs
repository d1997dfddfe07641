//! An nftables table for a test (loopback traffic goes through the output hook, so port rules
//! partition daemons on one host without namespaces), deleted when dropped, on failure too. Tests
//! that use it first `require(&[Need::Root, Need::Nftables])`.

use std::io::Write as _;
use std::process::{Command, Stdio};

/// A loaded `table inet NAME` with one output-hook chain; deleted on drop.
pub struct Table(String);

impl Table {
    /// Loads `table inet NAME_<pid>` whose output chain holds `rules` (nft syntax, one per line).
    ///
    /// # Panics
    /// When `nft` cannot run or refuses the table (the guard still deletes what was made).
    #[must_use]
    pub fn output(name: &str, rules: &str) -> Self {
        let table = format!("{name}_{}", std::process::id());
        let script = format!(
            "table inet {table} {{\n chain out {{\n  type filter hook output priority 0; policy accept;\n{rules}\n }}\n}}\n"
        );
        let mut child = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nft (checked by require)");
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(script.as_bytes())
            .expect("write the nft script");
        // from here the table may exist: the guard removes it whatever happens next
        let guard = Self(table);
        assert!(
            child.wait().expect("nft").success(),
            "nft -f failed:\n{script}"
        );
        guard
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}
