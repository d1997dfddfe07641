//! The config reader against arbitrary input: bytes, TOML-ish documents and values of every
//! key (issue 12: "a fuzz or property test of the config reader ... no panic, bounded memory").
//!
//! Each property runs a bounded number of cases on small inputs, so the file stays fast in CI.
//! Whatever the reader accepts must be within the documented ranges (docs/config.md): what
//! `nm-daemon --check` accepts is what the daemon can run.

use std::path::Path;
use std::time::Duration;

use nm_node::config::{self, NodeConfig};
use proptest::prelude::*;
use supervisor_core::spec::limits;

const FILE: &str = "/etc/nm/nm.toml";

/// Every key that takes a value, by section: `""` top level, then the tables of one server and
/// `[ha]`.
const KEYS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "listen",
            "token_file",
            "crash_recovery",
            "log_format",
            "log_level",
            "standby_port",
            "standby_heartbeat",
            "standby_timeout",
            "cluster_key_file",
        ],
    ),
    (
        "[[server]]",
        &[
            "cwd",
            "env",
            "user",
            "auto_start",
            "auto_restart",
            "success_exit_codes",
            "restart_max",
            "restart_interval",
            "restart_delay",
            "auto_kill_if_failed",
            "stop_timeout",
        ],
    ),
    (
        "[server.health]",
        &["interval", "timeout", "failure_threshold", "start_timeout"],
    ),
    ("[server.log]", &["max_size", "keep"]),
    (
        "[ha]",
        &[
            "listen",
            "servers",
            "fence_delay",
            "fence_timeout",
            "fence_retry",
            "heartbeat",
            "peer_timeout",
            "start_timeout",
            "reset_command",
        ],
    ),
];

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A TOML value of any type, leaning to numbers and durations, with the edges of every
/// integer type.
fn value() -> impl Strategy<Value = String> {
    let edge = prop_oneof![
        Just(i64::MAX),
        Just(i64::MIN),
        Just(0),
        Just(-1),
        Just(i64::from(u32::MAX)),
        Just(i64::from(u32::MAX) + 1),
        Just(86_400),
        Just(86_401),
        Just(31_536_000),
        Just(1 << 40),
    ];
    let unit = prop_oneof![
        Just("ns"),
        Just("us"),
        Just("ms"),
        Just("s"),
        Just("m"),
        Just("h"),
        Just("d"),
        Just("w"),
        Just("y"),
        Just("KiB"),
        Just("MiB"),
        Just("GiB"),
        Just("TiB"),
        Just(""),
    ];
    let leaf = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        edge.prop_map(|n| n.to_string()),
        (any::<u64>(), unit.clone()).prop_map(|(n, u)| format!("\"{n}{u}\"")),
        (0u64..100_000, unit).prop_map(|(n, u)| format!("\"{n}{u}\"")),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        "[ -~]{0,12}".prop_map(|s| format!("{s:?}")),
        Just("\"1h 30m 250ms\"".to_owned()),
        Just("\"127.0.0.1:5556\"".to_owned()),
        Just("nan".to_owned()),
        Just("inf".to_owned()),
        Just("1979-05-27T07:32:00Z".to_owned()),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec(("[a-z_]{1,8}", inner), 0..3).prop_map(|kv| {
                let body: Vec<String> = kv.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", body.join(", "))
            }),
        ]
    })
}

/// A config that is valid as a whole, with `key = value` written in `section`.
fn config_with(section: &str, key: &str, value: &str) -> String {
    let mut top = String::from(
        "node = \"node1\"\ndata_dir = \"/var/lib/nm\"\ncluster_key_file = \"cluster.key\"\n\
         standby_port = 5557\n",
    );
    let mut server = String::from("[[server]]\nname = \"web\"\ncommand = [\"sleep\", \"9\"]\n");
    let mut health = String::from("[server.health]\nexec = [\"true\"]\n");
    let mut log = String::from("[server.log]\n");
    let mut ha = String::from(
        "[ha]\npeer = \"node2\"\npeer_address = \"127.0.0.1:5560\"\nlisten = \"127.0.0.2:5560\"\nfence_command = [\"false\"]\n",
    );
    let line = format!("{key} = {value}\n");
    match section {
        "" => top.push_str(&line),
        "[[server]]" => server.push_str(&line),
        "[server.health]" => health.push_str(&line),
        "[server.log]" => log.push_str(&line),
        _ => ha.push_str(&line),
    }
    format!("{top}{server}{health}{log}{ha}")
}

/// What the reader accepted is within every documented range.
fn within_ranges(c: &NodeConfig) -> Result<(), TestCaseError> {
    let day = limits::DAY;
    for s in &c.servers {
        prop_assert!(s.stop_timeout <= day && s.restart_delay <= day);
        prop_assert!(s.restart_interval <= limits::MAX_RESTART_INTERVAL);
        prop_assert!(s.restart_max <= limits::MAX_COUNT);
        prop_assert!(s.log.keep <= limits::MAX_LOG_KEEP && s.log.max_size <= limits::MAX_LOG_SIZE);
        if let Some(h) = &s.health {
            for d in [h.interval, h.timeout, h.start_timeout] {
                prop_assert!(!d.is_zero() && d <= day);
            }
            prop_assert!((1..=limits::MAX_COUNT).contains(&h.failure_threshold));
        }
    }
    if let Some(s) = &c.standby {
        prop_assert!(config::HEARTBEAT_RANGE.contains(&s.heartbeat));
        prop_assert!(config::PEER_TIMEOUT_RANGE.contains(&s.timeout));
        prop_assert!(s.timeout >= 2 * s.heartbeat);
    }
    if let Some(h) = &c.ha {
        prop_assert!(config::HEARTBEAT_RANGE.contains(&h.heartbeat));
        prop_assert!(config::PEER_TIMEOUT_RANGE.contains(&h.peer_timeout));
        prop_assert!(h.peer_timeout >= 2 * h.heartbeat);
        prop_assert!(config::FENCE_DELAY_RANGE.contains(&h.fence_delay));
        prop_assert!(config::FENCE_TIMEOUT_RANGE.contains(&h.fence_timeout));
        prop_assert!(config::FENCE_RETRY_RANGE.contains(&h.fence_retry));
        prop_assert!(config::START_TIMEOUT_RANGE.contains(&h.start_timeout));
        prop_assert!(h.start_timeout <= Duration::from_secs(24 * 3600));
    }
    Ok(())
}

/// The result of a parse, checked: a refusal is one line; an acceptance is within range.
fn checked(result: Result<NodeConfig, config::ConfigError>) -> Result<(), TestCaseError> {
    match result {
        Ok(c) => within_ranges(&c),
        Err(e) => {
            prop_assert!(!e.to_string().contains('\n'), "not one line: {e}");
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn arbitrary_text_never_panics_the_reader(text in "\\PC{0,200}") {
        checked(config::parse(&text, Path::new(FILE)))?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_loader(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nm.toml");
        std::fs::write(&path, &bytes).unwrap();
        checked(config::load(&path))?;
    }

    #[test]
    fn any_value_of_any_key_is_read_or_refused_in_one_line_never_a_panic(
        (section, key) in prop::sample::select(
            KEYS.iter()
                .flat_map(|(s, keys)| keys.iter().map(move |k| (*s, *k)))
                .collect::<Vec<_>>()
        ),
        value in value(),
    ) {
        checked(config::parse(&config_with(section, key, &value), Path::new(FILE)))?;
    }

    #[test]
    fn toml_ish_documents_built_from_the_real_keys_never_panic_the_reader(
        lines in prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec![
                    "[[server]]", "[server.health]", "[server.log]", "[ha]", "[server.env]",
                    "[server]", "[[ha]]", "node = \"n\"", "data_dir = \"/d\"",
                    "name = \"w\"", "command = [\"x\"]", "peer = \"p\"",
                    "peer_address = \"127.0.0.1:1\"", "fence_command = [\"f\"]",
                    "cluster_key_file = \"k\"", "standby_port = 5557", "exec = [\"true\"]",
                ]).prop_map(str::to_owned),
                (
                    prop::sample::select(
                        KEYS.iter().flat_map(|(_, k)| k.iter().copied()).collect::<Vec<_>>()
                    ),
                    value(),
                ).prop_map(|(k, v)| format!("{k} = {v}")),
            ],
            0..24,
        )
    ) {
        let text = lines.join("\n");
        checked(config::parse(&text, Path::new(FILE)))?;
        let headed = format!("node = \"n\"\ndata_dir = \"/d\"\n{text}");
        checked(config::parse(&headed, Path::new(FILE)))?;
    }
}
