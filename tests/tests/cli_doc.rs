//! docs/cli.md against a real daemon: every `reason` its examples show is one the daemon really
//! gives in the same situation, and the JSON field names of its examples and reference are the
//! ones `nm-cli --json` prints (no field missing from the page, none that no longer exists).
//!
//! The examples themselves are real output of the quickstart (`examples/quickstart.toml`); this
//! test runs servers shaped like the quickstart's (without python3 or port 8080) and compares what
//! does not depend on the machine: reasons with their numbers masked, and field names.
#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::collections::BTreeSet;

use nm_api::ServerState as St;
use nm_tests::{Node, free_port, wait_for};

/// The quickstart's servers, without python3: `web` has a health check, `ticker` exits 0 on
/// SIGTERM, `flaky` exits 1 after a moment and has a restart budget of 3, `broken` cannot start.
const SERVERS: &str = r#"
[[server]]
name = "web"
command = ["sleep", "1000"]
[server.health]
exec = ["true"]
interval = "200ms"

[[server]]
name = "ticker"
command = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"]

[[server]]
name = "flaky"
command = ["sh", "-c", "sleep 0.5; exit 1"]
restart_delay = "2s"
restart_max = 3
restart_interval = "1m"

[[server]]
name = "broken"
command = ["/opt/app/broken"]
auto_start = false
"#;

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/cli.md");
    std::fs::read_to_string(path).unwrap()
}

/// The page's code blocks, each as (the `$ nm-cli …` command, its output lines).
fn examples(doc: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = vec![];
    let mut in_block = false;
    for line in doc.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        if let Some(cmd) = line.strip_prefix("$ ") {
            out.push((cmd.to_owned(), vec![]));
        } else if let Some((_, lines)) = out.last_mut() {
            lines.push(line.to_owned());
        }
    }
    out
}

/// Numbers (PIDs, counts, durations) replaced by `N`.
fn mask(s: &str) -> String {
    let mut out = String::new();
    let mut in_num = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !in_num {
                out.push('N');
            }
            in_num = true;
        } else {
            out.push(c);
            in_num = false;
        }
    }
    out
}

/// The reasons the page's examples show: the `reason` row of `server status`, the `REASON`
/// column of `server list` (maybe cut, ending in `…`) and `"reason"` of a server in JSON.
fn documented_reasons(doc: &str) -> BTreeSet<String> {
    let mut reasons = BTreeSet::new();
    for (cmd, lines) in examples(doc) {
        if !cmd.starts_with("nm-cli") || cmd.contains(" ha ") {
            continue;
        }
        let json = cmd.contains("--json");
        if json {
            for l in &lines {
                if let Some(v) = l.trim().strip_prefix("\"reason\": \"") {
                    reasons.insert(v.trim_end_matches(',').trim_end_matches('"').to_owned());
                }
            }
        } else if cmd.contains("server status") {
            for l in &lines {
                if let Some(v) = l.strip_prefix("reason ") {
                    reasons.insert(v.trim().to_owned());
                }
            }
        } else if cmd.contains("server list") {
            let Some(col) = lines.first().and_then(|h| h.find("REASON")) else {
                continue;
            };
            for l in &lines[1..] {
                if let Some(v) = l.get(col..) {
                    reasons.insert(v.trim().to_owned());
                }
            }
        }
    }
    reasons
}

/// Field names of the page: in the JSON of its examples and in its JSON reference tables.
/// State names (keys of `servers` in `status --json`) are left out.
fn documented_fields(doc: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut in_examples = BTreeSet::new();
    for (cmd, lines) in examples(doc) {
        if !cmd.contains("--json") {
            continue;
        }
        for l in lines {
            if let Some(rest) = l.trim().strip_prefix('"')
                && let Some((key, _)) = rest.split_once("\":")
                && !key.chars().any(|c| c.is_ascii_uppercase())
            {
                in_examples.insert(key.to_owned());
            }
        }
    }
    let mut in_tables = BTreeSet::new();
    for l in doc.lines() {
        if let Some(rest) = l.strip_prefix("| `")
            && let Some((key, _)) = rest.split_once('`')
        {
            in_tables.insert(key.to_owned());
        }
    }
    (in_examples, in_tables)
}

fn keys(v: &serde_json::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                if !k.chars().any(|c| c.is_ascii_uppercase()) {
                    out.insert(k.clone());
                }
                keys(v, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

/// What the real daemon said: every server reason and every JSON field name seen.
#[derive(Default)]
struct Seen {
    reasons: BTreeSet<String>,
    fields: BTreeSet<String>,
}

impl Seen {
    fn json(&mut self, node: &Node, args: &[&str]) -> serde_json::Value {
        let mut argv = vec!["--json"];
        argv.extend_from_slice(args);
        let (_, out, err) = node.cli(&argv);
        let v: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("nm-cli {args:?}: {e}: {out}{err}"));
        keys(&v, &mut self.fields);
        let mut servers = vec![];
        match &v {
            serde_json::Value::Array(a) => servers.extend(a.iter()),
            v if v.get("server").is_some() => servers.push(&v["server"]),
            v if v.get("state").is_some() && v.get("reason").is_some() => servers.push(v),
            _ => {}
        }
        for s in servers {
            if let Some(r) = s["reason"].as_str() {
                self.reasons.insert(r.to_owned());
            }
        }
        v
    }
}

#[tokio::test]
async fn the_reasons_and_json_fields_of_docs_cli_md_are_what_the_daemon_prints() {
    let mut node = Node::configure_with(&format!("standby_port = {}", free_port()), SERVERS);
    node.start_daemon().await;
    let mut seen = Seen::default();
    node.wait_status("the standby attached", |s| {
        s.standby.as_ref().is_some_and(|sb| sb.state == "attached")
    })
    .await;
    node.wait_server("web", "RUNNING", |s| s.state == St::Running)
        .await;
    // flaky through its restarts until its budget is spent, sampled as it goes
    // (20 s at most: a deadline without reading the clock, which this crate's lints keep to
    // the library's helpers)
    let mut spent = false;
    for _ in 0..400 {
        let list = seen.json(&node, &["server", "list"]);
        spent = list
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "flaky" && s["state"] == "FAILED_NOT_RESTARTABLE");
        if spent {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(spent, "flaky never gave up: {:#?}", seen.reasons);
    seen.json(&node, &["status"]);
    seen.json(&node, &["server", "stop", "ticker"]);
    seen.json(&node, &["server", "stop", "web", "--no-wait"]);
    node.wait_server("web", "SHUTDOWN", |s| s.state == St::Shutdown)
        .await;
    seen.json(&node, &["server", "start", "web", "--no-wait"]);
    node.wait_server("web", "RUNNING", |s| s.state == St::Running)
        .await;
    seen.json(&node, &["server", "start", "web"]);
    seen.json(&node, &["server", "status", "web"]);
    seen.json(&node, &["server", "start", "broken"]);
    seen.json(&node, &["server", "list"]);
    seen.json(&node, &["ha", "status"]);
    seen.json(&node, &["shutdown", "--stop-servers"]);
    node.wait_daemon_exit().await;

    let doc = doc();
    let real: BTreeSet<String> = seen.reasons.iter().map(|r| mask(r)).collect();
    for r in documented_reasons(&doc) {
        let m = mask(&r);
        let ok = match m.strip_suffix('…') {
            Some(cut) => real.iter().any(|x| x.starts_with(cut)),
            None => real.contains(&m),
        };
        assert!(
            ok,
            "docs/cli.md shows the reason {r:?}, which the daemon never gave; it gave {:#?}",
            seen.reasons
        );
    }
    let (in_examples, in_tables) = documented_fields(&doc);
    for f in &in_examples {
        assert!(
            seen.fields.contains(f),
            "docs/cli.md's examples show the JSON field {f:?}, which nm-cli --json does not print"
        );
    }
    for f in &seen.fields {
        assert!(
            in_examples.contains(f) || in_tables.contains(f),
            "nm-cli --json prints the field {f:?}, which docs/cli.md does not describe"
        );
    }
    wait_for("the servers stopped", || async {
        node.processes().is_empty().then_some(())
    })
    .await;
}
