//! Modes, statuses and the pair states the StorNext HA Manager allows or prohibits (the StorNext HA Manager, "HA Manager Modes
//! and Statuses").
//!
//! A pair state is written `left-right` from one node's point of view: `left` is its own mode,
//! `right` its peer's. Two modes are not modes a node sets for itself but certifications:
//! `right = peerdown` when this node certified its peer powered off (`ha peerdown`), and
//! `left = peerdown` when the peer certified *this* node powered off — which this node can only
//! learn by communicating with it, the prohibited `peerdown-*`. A peer that does not communicate
//! is assumed to be in `default` mode.

use serde::{Deserialize, Serialize};

/// A node's HA mode (exact strings, DESIGN §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// HA monitoring on: the secondary takes over when the primary is lost.
    Default,
    /// HA monitoring off for extended production without a redundant node; the peer must be
    /// `locked` (communicating) or certified `peerdown`.
    Single,
    /// HA monitoring off for reconfiguration; the peer must be `locked` or certified `peerdown`.
    Config,
    /// The HA-managed servers are stopped here and may not start.
    Locked,
    /// The peer is certified powered off (a certification held by the other node, see the
    /// module docs).
    Peerdown,
}

impl Mode {
    /// Every mode, in the HA Manager's order.
    pub const ALL: [Mode; 5] = [
        Mode::Default,
        Mode::Single,
        Mode::Config,
        Mode::Locked,
        Mode::Peerdown,
    ];

    /// The exact string.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Single => "single",
            Self::Config => "config",
            Self::Locked => "locked",
            Self::Peerdown => "peerdown",
        }
    }

    /// Whether a node may set this mode for itself (`peerdown` is a certification about the peer).
    #[must_use]
    pub fn is_settable(self) -> bool {
        self != Self::Peerdown
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("unknown mode {s:?} (default, single, config, locked)"))
    }
}

/// A node's HA status (exact strings, DESIGN §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// HA is stopped here: the node neither runs the HA-managed servers nor takes them over.
    Stopped,
    /// HA is running here as the secondary: ready to take the HA-managed servers over.
    Running,
    /// This node runs the HA-managed servers.
    Primary,
}

impl Status {
    /// The exact string.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Running => "running",
            Self::Primary => "primary",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the HA Manager allows a pair state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// One of the HA Manager's allowed states.
    Allowed,
    /// One of the HA Manager's prohibited states: the HA manager moves the pair to a valid one.
    Prohibited,
}

/// The verdict on the pair state `left-right` (see the module docs for what each side means).
/// `communicating` matters for one case only: a peer certified `peerdown` that communicates is
/// the prohibited `peerdown-*`, seen from the certifying side.
#[must_use]
pub fn verdict(left: Mode, right: Mode, communicating: bool) -> Verdict {
    use Mode::{Config, Default, Locked, Peerdown, Single};
    let allowed = match (left, right) {
        // peerdown-*: a node designated peerdown communicates
        (Peerdown, _) => false,
        (_, Peerdown) => !communicating,
        // locked-*
        (Locked, _) | (_, Locked) => true,
        (Default, Default) => true,
        // single-default, single-single, single-config, config-default, config-single,
        // config-config (in either order)
        (Single | Config, _) | (_, Single | Config) => false,
    };
    if allowed {
        Verdict::Allowed
    } else {
        Verdict::Prohibited
    }
}

/// A pair state as `left-right`, e.g. `"single-locked"`.
#[must_use]
pub fn pair_name(left: Mode, right: Mode) -> String {
    format!("{left}-{right}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The HA Manager's lists, verbatim.
    const ALLOWED: [&str; 8] = [
        "default-default",
        "default-locked",
        "default-peerdown",
        "single-peerdown",
        "single-locked",
        "config-peerdown",
        "config-locked",
        "locked-*",
    ];
    const PROHIBITED: [&str; 7] = [
        "single-default",
        "single-single",
        "single-config",
        "config-default",
        "config-single",
        "config-config",
        "peerdown-*",
    ];

    /// Whether the HA Manager's entry `a-b` names the state `left-right`. The HA Manager writes each unordered
    /// pair once (`single-default` also covers `default-single`); `peerdown` is directional: on
    /// the right it is this node's certification, on the left the peer's certification of us.
    fn names(entry: &str, left: Mode, right: Mode) -> bool {
        let (a, b) = entry.split_once('-').unwrap();
        let is = |s: &str, m: Mode| s == "*" || s == m.as_str();
        let ordered = is(a, left) && is(b, right);
        let mirrored =
            is(a, right) && is(b, left) && left != Mode::Peerdown && right != Mode::Peerdown;
        ordered || mirrored
    }

    fn manual_verdict(left: Mode, right: Mode, communicating: bool) -> Verdict {
        // the HA Manager: a peer certified peerdown that communicates is the case `peerdown-*`
        if right == Mode::Peerdown && communicating {
            return Verdict::Prohibited;
        }
        let allowed = ALLOWED.iter().any(|e| names(e, left, right));
        let prohibited = PROHIBITED.iter().any(|e| names(e, left, right));
        assert!(
            allowed != prohibited,
            "the HA Manager's lists must classify {left}-{right} exactly once (allowed {allowed}, prohibited {prohibited})"
        );
        if allowed {
            Verdict::Allowed
        } else {
            Verdict::Prohibited
        }
    }

    #[test]
    fn every_pair_of_modes_communicating_or_not_gets_the_ha_managers_verdict() {
        let mut n = 0;
        for left in Mode::ALL {
            for right in Mode::ALL {
                for communicating in [true, false] {
                    assert_eq!(
                        verdict(left, right, communicating),
                        manual_verdict(left, right, communicating),
                        "{left}-{right} (communicating: {communicating})"
                    );
                    n += 1;
                }
            }
        }
        assert_eq!(n, 50);
    }

    #[test]
    fn the_ha_managers_named_states_by_hand() {
        use Mode::*;
        use Verdict::*;
        let table = [
            (Default, Default, Allowed),
            (Default, Locked, Allowed),
            (Default, Peerdown, Allowed),
            (Single, Peerdown, Allowed),
            (Single, Locked, Allowed),
            (Config, Peerdown, Allowed),
            (Config, Locked, Allowed),
            (Locked, Single, Allowed),
            (Locked, Peerdown, Allowed),
            (Single, Default, Prohibited),
            (Default, Single, Prohibited),
            (Single, Single, Prohibited),
            (Single, Config, Prohibited),
            (Config, Default, Prohibited),
            (Config, Single, Prohibited),
            (Config, Config, Prohibited),
            (Peerdown, Default, Prohibited),
            (Peerdown, Locked, Prohibited),
        ];
        for (l, r, v) in table {
            assert_eq!(verdict(l, r, false), v, "{}", pair_name(l, r));
        }
    }

    #[test]
    fn modes_and_statuses_use_the_exact_strings() {
        for m in Mode::ALL {
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
            assert_eq!(m.as_str().parse::<Mode>(), Ok(m));
        }
        assert!("Default".parse::<Mode>().is_err());
        let s = [Status::Stopped, Status::Running, Status::Primary];
        let got: Vec<String> = s
            .iter()
            .map(|s| serde_json::to_string(s).unwrap())
            .collect();
        assert_eq!(got, ["\"stopped\"", "\"running\"", "\"primary\""]);
    }
}
