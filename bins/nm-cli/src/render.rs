//! Pure functions from API answers to the text `nm-cli` prints. No I/O and no clock: the caller
//! passes `now` where an age is shown, so every output is testable.

use std::time::{Duration, SystemTime};

use comfy_table::{ContentArrangement, Table, presets};
use nm_api::{
    CommandReply, HaReply, HaVerdict, NodeReport, NodeStatus, Role, ServerInfo, ServerState,
    ShutdownReply,
};
use supervisor_core::Command;

/// Longest `REASON` shown in `server list`, in characters (the full text is in `server status`).
pub(crate) const REASON_WIDTH: usize = 40;

/// What a server command's answer means for the operator and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The server got where the command leads (or already was there): print the line, exit 0.
    Done(String),
    /// It ended somewhere the command should not lead (`FAILED` after `start`): exit 1.
    Failed(String),
    /// The wait ran out before it settled: exit 3.
    TimedOut(String),
}

/// `nm-cli status`: key/value rows.
pub(crate) fn node_status(s: &NodeStatus) -> String {
    let role = match s.role {
        Role::Active => "active",
        Role::Standby => "standby",
    };
    let mut t = table();
    t.add_row(["node", s.node.as_str()]);
    t.add_row(["pid".to_owned(), s.pid.to_string()]);
    t.add_row(["role", role]);
    t.add_row(["version", s.version.as_str()]);
    t.add_row(["started_at", s.started_at.as_str()]);
    t.add_row([
        "uptime".to_owned(),
        human_duration(Duration::from_secs(s.uptime_secs)),
    ]);
    t.add_row(["data_dir", s.data_dir.as_str()]);
    t.add_row(["listen", s.listen.as_str()]);
    t.add_row(["standby_pid".to_owned(), opt(s.standby_pid)]);
    if let Some(sb) = &s.standby {
        t.add_row(["standby_state", sb.state.as_str()]);
        t.add_row([
            "standby_uptime".to_owned(),
            sb.uptime_secs.map_or_else(
                || "-".to_owned(),
                |u| human_duration(Duration::from_secs(u)),
            ),
        ]);
        t.add_row(["standby_launches".to_owned(), sb.launches.to_string()]);
    }
    t.add_row(["takeovers".to_owned(), s.takeovers.to_string()]);
    if let Some(tk) = &s.last_takeover {
        t.add_row([
            "last_takeover".to_owned(),
            format!("{} from pid {} ({})", tk.at, opt(tk.from_pid), tk.reason),
        ]);
    }
    if let Some(ha) = &s.ha {
        let peer = ha
            .peer
            .status
            .map_or_else(|| "not communicating".to_owned(), |st| st.to_string());
        t.add_row([
            "ha".to_owned(),
            format!(
                "{} ({}, peer {} {})",
                opt(ha.local.status),
                ha.state,
                ha.peer.node,
                peer
            ),
        ]);
    }
    t.add_row(["servers".to_owned(), server_counts(s)]);
    finish(&mut t)
}

/// `nm-cli server list`: one row per server.
pub(crate) fn server_list(servers: &[ServerInfo], now: SystemTime) -> String {
    let mut t = table();
    t.set_header(["NAME", "STATE", "PID", "RESTARTS", "SINCE", "REASON"]);
    for s in servers {
        t.add_row([
            s.name.clone(),
            s.state.as_str().to_owned(),
            opt(s.pid),
            s.restart_count.to_string(),
            age(&s.since, now),
            dash(&truncate(&s.reason, REASON_WIDTH)),
        ]);
    }
    finish(&mut t)
}

/// `nm-cli server status NAME`: every field of one server as key/value rows.
pub(crate) fn server_status(s: &ServerInfo, now: SystemTime) -> String {
    let since = if s.since.is_empty() {
        "-".to_owned()
    } else {
        format!("{} ({})", s.since, age(&s.since, now))
    };
    let mut t = table();
    t.add_row(["name", s.name.as_str()]);
    t.add_row(["state", s.state.as_str()]);
    t.add_row(["pid".to_owned(), opt(s.pid)]);
    t.add_row(["restarts".to_owned(), s.restart_count.to_string()]);
    t.add_row(["since".to_owned(), since]);
    t.add_row(["reason".to_owned(), dash(&s.reason)]);
    t.add_row(["last_exit", s.last_exit.as_deref().unwrap_or("-")]);
    t.add_row(["health_failures".to_owned(), opt(s.health_failures)]);
    t.add_row(["command".to_owned(), shell_words(&s.command)]);
    t.add_row(["stdout_log".to_owned(), dash(&s.stdout_log)]);
    t.add_row(["stderr_log".to_owned(), dash(&s.stderr_log)]);
    finish(&mut t)
}

/// Judges a server command's answer. `waited` is the `wait` sent (`None`: `--no-wait`), so an
/// unsettled answer is only a time-out when the operator asked to wait.
pub(crate) fn command_verdict(reply: &CommandReply, waited: Option<u64>) -> Verdict {
    let s = &reply.server;
    if let Some(secs) = waited.filter(|_| !reply.settled) {
        let mut line = format!("{}: still {} after {secs}s", s.name, s.state);
        if is_failure(s.state) && !s.reason.is_empty() {
            line = format!("{line}: {}", s.reason);
        }
        return Verdict::TimedOut(line);
    }
    let brings_up = matches!(reply.command, Command::Start | Command::Restart);
    if brings_up
        && matches!(
            s.state,
            ServerState::Failed | ServerState::FailedNotRestartable
        )
    {
        let reason = if s.reason.is_empty() {
            "no reason given"
        } else {
            s.reason.as_str()
        };
        return Verdict::Failed(format!(
            "{}: {} after {}: {reason}",
            s.name,
            s.state,
            reply.command.as_str()
        ));
    }
    let already = if reply.changed { "" } else { "already " };
    let pid = s.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
    Verdict::Done(format!("{}: {already}{}{pid}", s.name, s.state))
}

/// `nm-cli shutdown`: which daemon exits and what happened to the servers.
pub(crate) fn shutdown(r: &ShutdownReply) -> String {
    let list = |names: &[String]| {
        if names.is_empty() {
            "-".to_owned()
        } else {
            names.join(", ")
        }
    };
    let mut t = table();
    t.add_row(["exiting_pid".to_owned(), r.pid.to_string()]);
    t.add_row(["stopped".to_owned(), list(&r.stopped)]);
    t.add_row(["left_running".to_owned(), list(&r.left_running)]);
    format!(
        "nm-daemon (pid {}) is shutting down\n{}",
        r.pid,
        finish(&mut t)
    )
}

/// A duration for people: the two largest units, e.g. `42s`, `5m 07s`, `2h 05m`, `3d 04h`.
pub(crate) fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    if days > 0 {
        format!("{days}d {hours:02}h")
    } else if hours > 0 {
        format!("{hours}h {mins:02}m")
    } else if mins > 0 {
        format!("{mins}m {secs:02}s")
    } else {
        format!("{secs}s")
    }
}

/// How long ago an RFC 3339 UTC timestamp was, e.g. `5m 07s ago`; the text as given when it does
/// not parse, `-` when empty. A timestamp in the future (clock skew) counts as `0s ago`.
pub(crate) fn age(rfc3339: &str, now: SystemTime) -> String {
    if rfc3339.is_empty() {
        return "-".to_owned();
    }
    match humantime::parse_rfc3339(rfc3339) {
        Ok(then) => {
            let d = now.duration_since(then).unwrap_or(Duration::ZERO);
            format!("{} ago", human_duration(d))
        }
        Err(_) => rfc3339.to_owned(),
    }
}

/// At most `max` characters of `s`, the last one `…` when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `status`'s server counts: `3 (2 RUNNING, 1 SHUTDOWN)`, in the state order of DESIGN §3.
fn server_counts(s: &NodeStatus) -> String {
    let total: usize = s.servers.values().sum();
    if total == 0 {
        return "0".to_owned();
    }
    let known = ServerState::ALL.iter().map(|st| st.as_str());
    let unknown = s
        .servers
        .keys()
        .map(String::as_str)
        .filter(|k| ServerState::ALL.iter().all(|st| st.as_str() != *k));
    let parts: Vec<String> = known
        .chain(unknown)
        .filter_map(|state| {
            s.servers
                .get(state)
                .filter(|n| **n > 0)
                .map(|n| format!("{n} {state}"))
        })
        .collect();
    format!("{total} ({})", parts.join(", "))
}

fn is_failure(state: ServerState) -> bool {
    matches!(
        state,
        ServerState::Failed | ServerState::FailedRestarting | ServerState::FailedNotRestartable
    )
}

/// A command line as a shell would need it typed: plain words as they are, others single-quoted.
fn shell_words(argv: &[String]) -> String {
    if argv.is_empty() {
        return "-".to_owned();
    }
    let plain = |w: &str| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    };
    let words: Vec<String> = argv
        .iter()
        .map(|w| {
            if plain(w) {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect();
    words.join(" ")
}

/// `nm-cli ha …`: the steps taken, both nodes, then the pair's state.
pub(crate) fn ha(reply: &HaReply) -> String {
    let r = &reply.report;
    let mut out = String::new();
    if !reply.steps.is_empty() {
        out.push_str("steps:\n");
        for s in &reply.steps {
            out.push_str(&format!("  {s}\n"));
        }
    }
    if !r.configured {
        out.push_str(&format!(
            "HA is not configured on {} (no [ha] in nm.toml): mode default, status running; every server may run here\n",
            r.local.node
        ));
        return out;
    }
    let mut t = table();
    t.set_header(["NODE", "ROLE", "MODE", "STATUS", "HA_IDLE_FAILED_STARTUP"]);
    let row = |n: &NodeReport, role: &str| {
        let mode = match (n.assumed, n.mode) {
            (true, nm_api::HaMode::Peerdown) => "peerdown (certified)".to_owned(),
            (true, m) => format!("{m} (assumed)"),
            (false, m) => m.to_string(),
        };
        let idle = n
            .ha_idle_failed_startup
            .map_or("-", |b| if b { "yes" } else { "no" });
        vec![
            n.node.clone(),
            role.to_owned(),
            mode,
            opt(n.status),
            idle.to_owned(),
        ]
    };
    t.add_row(row(&r.local, "local"));
    t.add_row(row(&r.peer, "peer"));
    out.push_str(&finish(&mut t));
    let verdict = match r.verdict {
        HaVerdict::Allowed => "allowed",
        HaVerdict::Prohibited => "PROHIBITED",
    };
    let peer = match (r.communicating, r.peer_heard_ms_ago) {
        (true, Some(ms)) => format!("communicating (heard {ms} ms ago)"),
        (_, Some(ms)) => format!(
            "NOT communicating (last heard {} ago)",
            human_duration(Duration::from_millis(ms))
        ),
        (_, None) => "NOT communicating (never heard since this daemon started)".to_owned(),
    };
    let mut kv = table();
    kv.add_row(vec!["state".to_owned(), format!("{} ({verdict})", r.state)]);
    kv.add_row(vec!["peer".to_owned(), peer]);
    kv.add_row(vec!["fence".to_owned(), r.fence.clone()]);
    kv.add_row(vec!["servers".to_owned(), dash(&r.servers.join(", "))]);
    if r.rejected_frames > 0 {
        kv.add_row(vec!["rejected".to_owned(), r.rejected_frames.to_string()]);
    }
    // the pair's last events: planned stops (leaves) and rejoins, a node armed by its primary
    for e in &r.events {
        kv.add_row(vec!["event".to_owned(), e.clone()]);
    }
    out.push_str(&finish(&mut kv));
    out
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

/// A borderless, colourless table: columns separated by two spaces, no wrapping, so it greps and
/// `awk`s well (and looks the same on a terminal and in a pipe).
fn table() -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .force_no_tty();
    t
}

fn finish(t: &mut Table) -> String {
    let columns = t.column_count();
    for (i, col) in t.column_iter_mut().enumerate() {
        col.set_padding((0, if i + 1 == columns { 0 } else { 2 }));
    }
    let mut out = t.trim_fmt();
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn ha_reply() -> HaReply {
        let mut report = nm_api::HaReport::unconfigured("node1");
        report.configured = true;
        report.local.status = Some(nm_api::HaStatus::Primary);
        report.peer = NodeReport {
            node: "node2".into(),
            mode: nm_api::HaMode::Locked,
            status: Some(nm_api::HaStatus::Stopped),
            ha_idle_failed_startup: Some(false),
            assumed: false,
        };
        report.communicating = true;
        report.peer_heard_ms_ago = Some(120);
        report.state = "default-locked".into();
        report.servers = vec!["db".into()];
        HaReply {
            steps: vec!["node2: mode locked".into()],
            report,
        }
    }

    #[test]
    fn ha_shows_the_steps_both_nodes_and_the_pair_state() {
        let out = ha(&ha_reply());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "steps:");
        assert_eq!(lines[1], "  node2: mode locked");
        assert!(lines[2].starts_with("NODE") && lines[2].contains("HA_IDLE_FAILED_STARTUP"));
        let words = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            words(lines[3]),
            ["node1", "local", "default", "primary", "no"]
        );
        assert_eq!(
            words(lines[4]),
            ["node2", "peer", "locked", "stopped", "no"]
        );
        assert!(out.contains("default-locked (allowed)"), "{out}");
        assert!(out.contains("communicating (heard 120 ms ago)"), "{out}");
        assert!(out.contains("servers  db"), "{out}");
    }

    #[test]
    fn ha_marks_an_assumed_or_certified_peer_and_a_prohibited_state() {
        let mut r = ha_reply();
        r.steps.clear();
        r.report.communicating = false;
        r.report.peer_heard_ms_ago = Some(4200);
        r.report.peer.assumed = true;
        r.report.peer.status = None;
        r.report.peer.ha_idle_failed_startup = None;
        r.report.peer.mode = nm_api::HaMode::Default;
        r.report.verdict = HaVerdict::Prohibited;
        r.report.state = "single-default".into();
        let out = ha(&r);
        assert!(out.starts_with("NODE"), "{out}");
        assert!(out.contains("default (assumed)  -"), "{out}");
        assert!(out.contains("single-default (PROHIBITED)"), "{out}");
        assert!(
            out.contains("NOT communicating (last heard 4s ago)"),
            "{out}"
        );
        r.report.peer.mode = nm_api::HaMode::Peerdown;
        assert!(ha(&r).contains("peerdown (certified)"));
    }

    #[test]
    fn ha_without_ha_configured_says_so() {
        let r = HaReply {
            steps: vec![],
            report: nm_api::HaReport::unconfigured("node1"),
        };
        assert!(ha(&r).starts_with("HA is not configured on node1"));
    }

    fn at(rfc3339: &str) -> SystemTime {
        humantime::parse_rfc3339(rfc3339).unwrap()
    }

    fn server(name: &str, state: ServerState, pid: Option<i32>) -> ServerInfo {
        ServerInfo {
            name: name.to_owned(),
            state,
            pid,
            restart_count: 0,
            since: "2026-11-02T10:00:00Z".to_owned(),
            reason: String::new(),
            last_exit: None,
            health_failures: None,
            command: vec!["python3".into(), "-m".into(), "http.server".into()],
            stdout_log: "/var/lib/nm/servers/web.out".into(),
            stderr_log: "/var/lib/nm/servers/web.err".into(),
        }
    }

    fn reply(command: Command, changed: bool, settled: bool, server: ServerInfo) -> CommandReply {
        CommandReply {
            command,
            changed,
            settled,
            server,
        }
    }

    #[test]
    fn server_list_has_a_header_and_one_plain_row_per_server() {
        let mut db = server("db", ServerState::FailedRestarting, None);
        db.restart_count = 2;
        db.reason = "exited with code 1; restarting in 5s".into();
        let out = server_list(
            &[server("web", ServerState::Running, Some(1234)), db],
            at("2026-11-02T10:05:07Z"),
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        let words = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            words(lines[0]),
            ["NAME", "STATE", "PID", "RESTARTS", "SINCE", "REASON"]
        );
        assert!(lines[1].starts_with("web  "), "{out}");
        assert_eq!(
            words(lines[1]),
            ["web", "RUNNING", "1234", "0", "5m", "07s", "ago", "-"]
        );
        assert!(
            lines[2].contains("FAILED_RESTARTING")
                && lines[2].contains("exited with code 1; restarting in 5s")
        );
        assert!(
            out.lines().all(|l| l == l.trim_end()),
            "no trailing blanks:\n{out}"
        );
        assert!(
            !out.contains('│') && !out.contains('|'),
            "no borders:\n{out}"
        );
    }

    #[test]
    fn server_list_truncates_long_reasons() {
        let mut s = server("web", ServerState::FailedNotRestartable, None);
        s.reason = "x".repeat(100);
        let out = server_list(&[s], at("2026-11-02T10:00:00Z"));
        let shown = out
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .last()
            .unwrap();
        assert_eq!(shown.chars().count(), REASON_WIDTH);
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn server_list_of_no_servers_is_just_the_header() {
        assert_eq!(server_list(&[], SystemTime::UNIX_EPOCH).lines().count(), 1);
    }

    /// The value of the `key` row of `status`'s table.
    fn status_row(out: &str, key: &str) -> String {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap();
        line[key.len()..].trim().to_owned()
    }

    /// A node without replication, as `node_status_shows_every_field_with_dashes_for_none` checks.
    fn node_status_fixture() -> NodeStatus {
        NodeStatus {
            node: "node1".into(),
            pid: 4242,
            role: Role::Active,
            version: "0.1.0".into(),
            started_at: "2026-11-02T08:00:00Z".into(),
            uptime_secs: 3 * 86_400 + 4 * 3_600 + 5,
            data_dir: "/var/lib/nm".into(),
            listen: "127.0.0.1:5556".into(),
            standby_pid: None,
            takeovers: 0,
            standby: None,
            last_takeover: None,
            ha: None,
            servers: BTreeMap::from([("SHUTDOWN".into(), 1), ("RUNNING".into(), 2)]),
        }
    }

    #[test]
    fn node_status_shows_every_field_with_dashes_for_none() {
        let status = node_status_fixture();
        let out = node_status(&status);
        let row = |key: &str| status_row(&out, key);
        assert_eq!(row("node"), "node1");
        assert_eq!(row("pid"), "4242");
        assert_eq!(row("role"), "active");
        assert_eq!(row("version"), "0.1.0");
        assert_eq!(row("uptime"), "3d 04h");
        assert_eq!(row("data_dir"), "/var/lib/nm");
        assert_eq!(row("listen"), "127.0.0.1:5556");
        assert_eq!(row("standby_pid"), "-");
        assert_eq!(row("takeovers"), "0");
        assert_eq!(row("servers"), "3 (2 RUNNING, 1 SHUTDOWN)");
        assert!(
            !out.contains("standby_state"),
            "no standby rows without replication"
        );
        assert!(!out.contains("\nha "), "no ha row without [ha]");
    }

    #[test]
    fn node_status_of_an_ha_node_shows_its_status_and_its_peers() {
        let mut report = nm_api::HaReport::unconfigured("node1");
        report.configured = true;
        report.local.status = Some(nm_api::HaStatus::Primary);
        report.peer.node = "node2".into();
        let status = NodeStatus {
            ha: Some(report.clone()),
            ..node_status_fixture()
        };
        let out = node_status(&status);
        assert_eq!(
            status_row(&out, "ha"),
            "primary (default-default, peer node2 not communicating)"
        );
        report.peer.status = Some(nm_api::HaStatus::Running);
        let status = NodeStatus {
            ha: Some(report),
            ..node_status_fixture()
        };
        assert_eq!(
            status_row(&node_status(&status), "ha"),
            "primary (default-default, peer node2 running)"
        );
    }

    #[test]
    fn node_status_of_a_pair_shows_the_standby_and_the_last_takeover() {
        let status = NodeStatus {
            standby_pid: Some(4300),
            takeovers: 2,
            standby: Some(nm_api::StandbyStatus {
                pid: Some(4300),
                state: "attached".into(),
                uptime_secs: Some(61),
                launches: 1,
                port: 5557,
                rejected_frames: 0,
            }),
            last_takeover: Some(nm_api::TakeoverInfo {
                at: "2026-11-02T08:00:00.120Z".into(),
                from_pid: Some(4100),
                reason: "fenced".into(),
            }),
            ..node_status_fixture()
        };
        let out = node_status(&status);
        let row = |key: &str| status_row(&out, key);
        assert_eq!(row("standby_pid"), "4300");
        assert_eq!(row("standby_state"), "attached");
        assert_eq!(row("standby_uptime"), "1m 01s");
        assert_eq!(row("standby_launches"), "1");
        assert_eq!(row("takeovers"), "2");
        assert_eq!(
            row("last_takeover"),
            "2026-11-02T08:00:00.120Z from pid 4100 (fenced)"
        );
    }

    #[test]
    fn server_status_shows_age_quoted_command_and_dashes() {
        let mut s = server("web", ServerState::Running, Some(7));
        s.command = vec!["sh".into(), "-c".into(), "echo it's up".into()];
        let out = server_status(&s, at("2026-11-02T12:05:00Z"));
        assert!(
            out.contains("since            2026-11-02T10:00:00Z (2h 05m ago)"),
            "{out}"
        );
        assert!(out.contains(r"sh -c 'echo it'\''s up'"), "{out}");
        assert!(out.contains("health_failures  -"), "{out}");
        assert!(out.contains("last_exit        -"), "{out}");
    }

    #[test]
    fn a_settled_start_prints_state_and_pid() {
        let r = reply(
            Command::Start,
            true,
            true,
            server("web", ServerState::Running, Some(1234)),
        );
        assert_eq!(
            command_verdict(&r, Some(30)),
            Verdict::Done("web: RUNNING (pid 1234)".into())
        );
    }

    #[test]
    fn an_unchanged_command_says_already() {
        let r = reply(
            Command::Start,
            false,
            true,
            server("web", ServerState::Running, Some(1234)),
        );
        assert_eq!(
            command_verdict(&r, Some(30)),
            Verdict::Done("web: already RUNNING (pid 1234)".into())
        );
        let r = reply(
            Command::Stop,
            false,
            true,
            server("web", ServerState::Shutdown, None),
        );
        assert_eq!(
            command_verdict(&r, Some(30)),
            Verdict::Done("web: already SHUTDOWN".into())
        );
    }

    #[test]
    fn an_unsettled_answer_after_a_wait_is_a_time_out() {
        let r = reply(
            Command::Start,
            true,
            false,
            server("web", ServerState::Starting, Some(9)),
        );
        assert_eq!(
            command_verdict(&r, Some(30)),
            Verdict::TimedOut("web: still STARTING after 30s".into())
        );
    }

    #[test]
    fn an_unsettled_answer_without_a_wait_is_fine() {
        let r = reply(
            Command::Start,
            true,
            false,
            server("web", ServerState::Starting, Some(9)),
        );
        assert_eq!(
            command_verdict(&r, None),
            Verdict::Done("web: STARTING (pid 9)".into())
        );
    }

    #[test]
    fn a_start_that_ends_failed_is_a_failure_with_the_reason() {
        let mut s = server("web", ServerState::FailedNotRestartable, None);
        s.reason = "cannot execute python3: not found".into();
        let r = reply(Command::Start, true, true, s.clone());
        assert_eq!(
            command_verdict(&r, Some(30)),
            Verdict::Failed(
                "web: FAILED_NOT_RESTARTABLE after start: cannot execute python3: not found".into()
            )
        );
        s.state = ServerState::Failed;
        let r = reply(Command::Restart, true, true, s);
        assert!(
            matches!(command_verdict(&r, None), Verdict::Failed(l) if l.starts_with("web: FAILED after restart"))
        );
    }

    #[test]
    fn a_kill_that_ends_failed_is_not_a_failure() {
        let r = reply(
            Command::Kill,
            true,
            true,
            server("web", ServerState::FailedNotRestartable, None),
        );
        assert!(matches!(command_verdict(&r, Some(30)), Verdict::Done(_)));
    }

    #[test]
    fn shutdown_names_the_pid_and_both_lists() {
        let r = ShutdownReply {
            pid: 4242,
            stopped: vec![],
            left_running: vec!["web".into(), "db".into()],
        };
        let out = shutdown(&r);
        assert!(
            out.starts_with("nm-daemon (pid 4242) is shutting down\n"),
            "{out}"
        );
        assert!(out.contains("stopped       -"), "{out}");
        assert!(out.contains("left_running  web, db"), "{out}");
    }

    #[test]
    fn durations_show_the_two_largest_units() {
        let d = Duration::from_secs;
        assert_eq!(human_duration(d(0)), "0s");
        assert_eq!(human_duration(d(59)), "59s");
        assert_eq!(human_duration(d(60)), "1m 00s");
        assert_eq!(human_duration(d(3_599)), "59m 59s");
        assert_eq!(human_duration(d(3_600 + 5 * 60 + 9)), "1h 05m");
        assert_eq!(human_duration(d(86_400 * 400)), "400d 00h");
    }

    #[test]
    fn ages_survive_bad_and_future_timestamps() {
        let now = at("2026-11-02T10:00:00Z");
        assert_eq!(age("2026-11-02T09:59:58.5Z", now), "1s ago");
        assert_eq!(age("2026-11-02T10:00:09Z", now), "0s ago");
        assert_eq!(age("yesterday", now), "yesterday");
        assert_eq!(age("", now), "-");
    }

    #[test]
    fn truncation_counts_characters_not_bytes() {
        assert_eq!(truncate("ééé", 3), "ééé");
        assert_eq!(truncate("éééé", 3), "éé…");
    }
}
