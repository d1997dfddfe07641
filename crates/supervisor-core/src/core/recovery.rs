//! Crash recovery at daemon start (or at a takeover of the node manager pair), as one pure
//! function: what was found for a server on disk and in `/proc` ([`Found`]), crossed with the
//! node's policy ([`RecoveryPolicy`]), gives what becomes of it ([`Recovery`]). The driver only
//! reads the lock file, the stop marker and `/proc` to build the [`Found`], then carries
//! the decision out: the file steps first, then [`Supervisor::on_recovered`](super::Supervisor::on_recovered)
//! with [`Recovery::server`].
//!
//! The rules, in the order [`decide`] applies them (docs/design.md §6 explains each):
//!
//! 1. **Never a second copy beside a live one.** A live process whose identity checks out is
//!    adopted whatever the policy says, `crash_recovery = false` included; if its lock file says
//!    it was not meant to run, an operator stop was under way: it is finished, never undone.
//! 2. **Never trust what cannot be vouched for.** An unreadable lock file, or a live process
//!    with the recorded start time and group but another (or an unreadable) token, makes the
//!    server `UNKNOWN`: nothing signalled, nothing started, the lock file left in place.
//! 3. **What died while the daemon was down** (another boot, dead, or a stranger under its PID):
//!    with crash recovery it is restarted (counted) if it was meant to run, and left
//!    `FAILED_NOT_RESTARTABLE` if not; without crash recovery (off, or its start decided
//!    elsewhere: the HA-managed servers) its lock file is forgotten and `auto_start` decides.
//!    Processes still carrying its start's token (same boot) are killed either way.
//! 4. **No lock file:** a stop marker (an operator's stop, or an exit with a success code) of
//!    this boot leaves it `SHUTDOWN`, whatever `auto_start` says; so does any marker where
//!    operator stops are always kept (a takeover). Otherwise, after a reboot or without a
//!    marker, `auto_start` decides.
//! 5. **A stop marker** is cleared unless rule 4 kept the server down by it.

/// What the driver found for one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its lock file, `servers/NAME.lock`, and the process it names.
    pub lock_file: LockFile,
    /// Its stop marker, `servers/NAME.stopped`.
    pub stop_marker: StopMarker,
}

/// A server's lock file as read at recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockFile {
    /// No lock file: never started, or stopped cleanly by an operator.
    Missing,
    /// Empty, torn, not JSON, another version or server, or not readable at all.
    Unreadable {
        /// What was wrong, as the operator reads it.
        detail: String,
    },
    /// A trusted record.
    Read {
        /// The record says the server should run if the daemon dies (false once an operator
        /// stopped it or its restarts gave up).
        meant_to_run: bool,
        /// Restarts counted before.
        restart_count: u32,
        /// What the identity check found of its process.
        process: Process,
    },
}

/// What the identity check found of the process a lock record names (or of the one carrying
/// the token it reserved for the next start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Process {
    /// The record is from another boot: its process is gone.
    OtherBoot {
        /// For the log.
        detail: String,
    },
    /// Alive, and PID, start time, process group, boot id and token all match: ours.
    Live {
        /// Its PID.
        pid: super::Pid,
        /// It is stopped (state `T`).
        suspended: bool,
    },
    /// Dead, or another process (start time or group differ; never signalled): the server's
    /// own process is gone.
    Gone {
        /// For the log ("pid 42 is not running", "pid 42 is another process ...").
        detail: String,
    },
    /// The recorded start time and group, but another or an unreadable token: most likely
    /// ours, and neither adopted nor restarted beside it.
    Unsure {
        /// What was found, as the operator reads it.
        detail: String,
    },
}

/// Whether a stop marker was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopMarker {
    /// No marker.
    Absent,
    /// `servers/NAME.stopped` exists: the server went down on purpose (an operator's stop, or
    /// an exit with a success code) and no one has started it since.
    Present {
        /// Why it is down.
        cause: super::DownCause,
        /// When, RFC 3339 (`None`: a marker of an older nm, or unreadable).
        at: Option<String>,
        /// The boot it was recorded in.
        boot: Boot,
    },
}

impl StopMarker {
    /// A marker that says nothing but its presence (written by an older nm, or unreadable): an
    /// operator's stop of no known boot.
    #[must_use]
    pub fn unknown() -> Self {
        Self::Present {
            cause: super::DownCause::Operator,
            at: None,
            boot: Boot::Other,
        }
    }
}

/// The boot a stop marker was recorded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// This boot: the stop stands.
    This,
    /// Another boot, or not known (a marker of an older nm, or unreadable): as after a reboot.
    Other,
}

/// The policy recovery applies to one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryPolicy {
    /// The server's `auto_start`.
    pub auto_start: AutoStart,
    /// Whether nm restarts the server when it died while the daemon was down.
    pub crash_recovery: CrashRecovery,
    /// Whether an operator's stop outlives the daemon.
    pub operator_stops: OperatorStops,
}

/// The server's `auto_start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoStart {
    /// Start it when nothing else decides.
    On,
    /// Leave it `SHUTDOWN` when nothing else decides.
    Off,
}

/// Crash recovery for one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashRecovery {
    /// WebLogic `CrashRecoveryEnabled` (the default): restart what died while meant to run.
    On,
    /// `crash_recovery = false`: what died is forgotten; `auto_start` decides.
    Off,
    /// Crash recovery is on, but another component decides this server's start (an HA-managed
    /// server, started on the primary only): what died is forgotten; `auto_start` decides.
    DecidedElsewhere,
}

/// Which stop markers (`servers/NAME.stopped`) keep their server down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorStops {
    /// At a takeover: the node manager pair is one node manager, every marker stands.
    Keep,
    /// At a daemon start: markers of this boot stand (systemd does not start a stopped unit
    /// on `daemon-reexec` either); those of another boot are dropped and `auto_start` decides.
    ThisBoot,
}

/// What becomes of one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Its state: feed it to [`Supervisor::on_recovered`](super::Supervisor::on_recovered).
    pub server: Recovered,
    /// What to do with its lock file (before `on_recovered`).
    pub lock_file: LockFileStep,
    /// What to do with its stop marker (before `on_recovered`).
    pub stop_marker: StopMarkerStep,
    /// Whether to kill what its dead leader left behind.
    pub leftovers: Leftovers,
}

/// The decision about a server's state after recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// Start it, as a fresh start (`auto_start`).
    StartFresh,
    /// Adopt its live process, not restarted: `RUNNING` (`STARTING` until a good probe when it
    /// has a health check, and a failing one is a failed restart) or `SUSPENDED`.
    Adopt {
        /// Its PID.
        pid: super::Pid,
        /// It is stopped (state `T`).
        suspended: bool,
        /// Restarts counted before the daemon died.
        restart_count: u32,
    },
    /// Adopt its live process and finish the operator stop the previous daemon began
    /// (`SHUTTING_DOWN`, SIGTERM, SIGKILL after `stop_timeout`).
    FinishStop {
        /// Its PID.
        pid: super::Pid,
        /// It is stopped (state `T`): it gets a SIGCONT with the SIGTERM.
        suspended: bool,
        /// Restarts counted before the daemon died.
        restart_count: u32,
    },
    /// It died while meant to run: `FAILED`, then the restart policy (counted).
    Restart {
        /// Restarts counted before.
        restart_count: u32,
        /// What was found, for the log.
        detail: String,
    },
    /// It stays down.
    LeaveDown(Down),
    /// `UNKNOWN`: nm cannot vouch for it. Nothing signalled, nothing started, until an operator
    /// starts or stops it.
    Unknown {
        /// Why, as the operator reads it.
        detail: String,
    },
}

/// Why a server stays down after recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Down {
    /// `SHUTDOWN`: `auto_start = false`.
    NotAutoStarted,
    /// `SHUTDOWN`: a stop on purpose stands (an operator's stop, or an exit with a success
    /// code, in this boot or before a takeover).
    Stopped {
        /// Why it is down.
        cause: super::DownCause,
        /// When, RFC 3339, if known.
        at: Option<String>,
    },
    /// `FAILED_NOT_RESTARTABLE`: its process is gone and it was not meant to run (its restarts
    /// gave up): it stays given up until an operator starts it; its lock file stays.
    NotMeantToRun {
        /// Restarts counted before.
        restart_count: u32,
        /// What was found, for the log.
        detail: String,
    },
}

/// What to do with a server's lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockFileStep {
    /// Leave it (or its absence) as it is.
    Keep,
    /// Remove it and forget its record: crash recovery does not restart this server. `log` says
    /// why, for the daemon's log.
    Forget {
        /// The log line.
        log: String,
    },
}

/// What to do with a server's stop marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMarkerStep {
    /// Leave it (or its absence) as it is. A kept marker is removed at the server's next start.
    Keep,
    /// Remove it: the stop is over (the server ran after it, or it is of another boot).
    Clear,
}

/// Whether to kill what a dead leader left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftovers {
    /// Nothing to kill (no dead leader of this boot).
    None,
    /// Kill every process carrying the recorded start token or the reserved next one: its
    /// leader died during this boot.
    KillByToken,
}

/// Decides what becomes of one server at recovery (see the module docs for the rules).
#[must_use]
pub fn decide(found: Found, policy: RecoveryPolicy) -> Recovery {
    let mut leftovers = Leftovers::None;
    let mut lock_file = LockFileStep::Keep;
    let server = match found.lock_file {
        // rule 4
        LockFile::Missing => match &found.stop_marker {
            StopMarker::Present { cause, at, boot }
                if *boot == Boot::This || policy.operator_stops == OperatorStops::Keep =>
            {
                Recovered::LeaveDown(Down::Stopped {
                    cause: *cause,
                    at: at.clone(),
                })
            }
            _ => by_auto_start(policy),
        },
        // rule 2
        LockFile::Unreadable { detail }
        | LockFile::Read {
            process: Process::Unsure { detail },
            ..
        } => Recovered::Unknown { detail },
        // rule 1
        LockFile::Read {
            meant_to_run,
            restart_count,
            process: Process::Live { pid, suspended },
        } => {
            if meant_to_run {
                Recovered::Adopt {
                    pid,
                    suspended,
                    restart_count,
                }
            } else {
                Recovered::FinishStop {
                    pid,
                    suspended,
                    restart_count,
                }
            }
        }
        // rule 3
        LockFile::Read {
            meant_to_run,
            restart_count,
            process: Process::OtherBoot { detail },
        } => died(meant_to_run, restart_count, detail, policy, &mut lock_file),
        LockFile::Read {
            meant_to_run,
            restart_count,
            process: Process::Gone { detail },
        } => {
            leftovers = Leftovers::KillByToken;
            died(meant_to_run, restart_count, detail, policy, &mut lock_file)
        }
    };
    // rule 5
    let stop_marker = match (&found.stop_marker, &server) {
        (StopMarker::Present { .. }, Recovered::LeaveDown(Down::Stopped { .. })) => {
            StopMarkerStep::Keep
        }
        (StopMarker::Present { .. }, _) => StopMarkerStep::Clear,
        (StopMarker::Absent, _) => StopMarkerStep::Keep,
    };
    Recovery {
        server,
        lock_file,
        stop_marker,
        leftovers,
    }
}

fn by_auto_start(policy: RecoveryPolicy) -> Recovered {
    match policy.auto_start {
        AutoStart::On => Recovered::StartFresh,
        AutoStart::Off => Recovered::LeaveDown(Down::NotAutoStarted),
    }
}

/// Rule 3: the server's process died while the daemon was down.
fn died(
    meant_to_run: bool,
    restart_count: u32,
    detail: String,
    policy: RecoveryPolicy,
    lock_file: &mut LockFileStep,
) -> Recovered {
    let why = match policy.crash_recovery {
        CrashRecovery::On if meant_to_run => {
            return Recovered::Restart {
                restart_count,
                detail,
            };
        }
        CrashRecovery::On => {
            return Recovered::LeaveDown(Down::NotMeantToRun {
                restart_count,
                detail,
            });
        }
        CrashRecovery::Off => "crash_recovery is off",
        CrashRecovery::DecidedElsewhere => "its start is decided elsewhere (HA-managed)",
    };
    *lock_file = LockFileStep::Forget {
        log: format!("{detail}; {why}: not restarted for that"),
    };
    by_auto_start(policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::DownCause;

    use AutoStart as A;
    use CrashRecovery as C;
    use OperatorStops as O;
    use StopMarker::Absent;

    const AT: &str = "2026-12-02T06:27:22.028Z";
    /// An operator's stop of this boot.
    fn mine() -> StopMarker {
        marker(DownCause::Operator, Boot::This)
    }
    /// An operator's stop of another boot.
    fn old() -> StopMarker {
        marker(DownCause::Operator, Boot::Other)
    }
    /// An exit with a success code, this boot.
    fn exited() -> StopMarker {
        marker(DownCause::Exited { code: 0 }, Boot::This)
    }
    /// A marker of an older nm (no boot, no time).
    fn legacy() -> StopMarker {
        StopMarker::unknown()
    }
    fn marker(cause: DownCause, boot: Boot) -> StopMarker {
        StopMarker::Present {
            cause,
            at: Some(AT.into()),
            boot,
        }
    }

    fn policy(
        auto_start: AutoStart,
        crash_recovery: CrashRecovery,
        stops: OperatorStops,
    ) -> RecoveryPolicy {
        RecoveryPolicy {
            auto_start,
            crash_recovery,
            operator_stops: stops,
        }
    }
    fn read(meant_to_run: bool, process: Process) -> LockFile {
        LockFile::Read {
            meant_to_run,
            restart_count: 3,
            process,
        }
    }
    fn live(suspended: bool) -> Process {
        Process::Live { pid: 42, suspended }
    }
    fn dead() -> Process {
        Process::Gone {
            detail: "pid 42 is not running".into(),
        }
    }
    fn stranger() -> Process {
        Process::Gone {
            detail: "pid 42 is another process".into(),
        }
    }
    fn other_boot() -> Process {
        Process::OtherBoot {
            detail: "pid 42 was started before this boot".into(),
        }
    }
    fn unsure() -> Process {
        Process::Unsure {
            detail: "another NM_SERVER_TOKEN".into(),
        }
    }
    fn unreadable() -> LockFile {
        LockFile::Unreadable {
            detail: "lock file is empty".into(),
        }
    }
    fn forget(detail: &str, why: &str) -> LockFileStep {
        LockFileStep::Forget {
            log: format!("{detail}; {why}: not restarted for that"),
        }
    }
    fn plan(
        server: Recovered,
        lock_file: LockFileStep,
        stop_marker: StopMarkerStep,
        leftovers: Leftovers,
    ) -> Recovery {
        Recovery {
            server,
            lock_file,
            stop_marker,
            leftovers,
        }
    }

    /// Every row of docs/design.md §6 and of the `crash_recovery`, `auto_start` and operator-stop
    /// settings: (what was found, the marker, the policy) → the whole decision.
    #[test]
    fn each_finding_and_policy_gives_its_decision() {
        use Leftovers::{KillByToken, None as NoKill};
        use LockFileStep::Keep as KeepLock;
        use Recovered as R;
        use StopMarkerStep::{Clear, Keep};
        let adopt = |suspended| R::Adopt {
            pid: 42,
            suspended,
            restart_count: 3,
        };
        let restart = |detail: &str| R::Restart {
            restart_count: 3,
            detail: detail.into(),
        };
        let stopped = |cause| {
            R::LeaveDown(Down::Stopped {
                cause,
                at: Some(AT.into()),
            })
        };
        let unknown = |detail: &str| R::Unknown {
            detail: detail.into(),
        };
        let (off, ha) = (
            "crash_recovery is off",
            "its start is decided elsewhere (HA-managed)",
        );
        let (not_running, another, before) = (
            "pid 42 is not running",
            "pid 42 is another process",
            "pid 42 was started before this boot",
        );
        #[rustfmt::skip]
        let table: Vec<(&str, LockFile, StopMarker, RecoveryPolicy, Recovery)> = vec![
            // 1. no lock file: auto_start decides, unless a kept operator stop stands
            ("no lock file, auto_start", LockFile::Missing, Absent, policy(A::On, C::On, O::ThisBoot),
                plan(R::StartFresh, KeepLock, Keep, NoKill)),
            ("no lock file, no auto_start", LockFile::Missing, Absent, policy(A::Off, C::On, O::Keep),
                plan(R::LeaveDown(Down::NotAutoStarted), KeepLock, Keep, NoKill)),
            ("a takeover keeps any operator stop over auto_start", LockFile::Missing, old(), policy(A::On, C::On, O::Keep),
                plan(stopped(DownCause::Operator), KeepLock, Keep, NoKill)),
            ("a daemon start keeps an operator stop of this boot over auto_start", LockFile::Missing, mine(), policy(A::On, C::On, O::ThisBoot),
                plan(stopped(DownCause::Operator), KeepLock, Keep, NoKill)),
            ("a daemon start keeps a success exit of this boot down", LockFile::Missing, exited(), policy(A::On, C::Off, O::ThisBoot),
                plan(stopped(DownCause::Exited { code: 0 }), KeepLock, Keep, NoKill)),
            ("after a reboot auto_start decides", LockFile::Missing, old(), policy(A::On, C::On, O::ThisBoot),
                plan(R::StartFresh, KeepLock, Clear, NoKill)),
            ("a marker of an older nm is of no known boot", LockFile::Missing, legacy(), policy(A::On, C::On, O::ThisBoot),
                plan(R::StartFresh, KeepLock, Clear, NoKill)),
            ("a marker of an older nm at a takeover", LockFile::Missing, legacy(), policy(A::On, C::On, O::Keep),
                plan(R::LeaveDown(Down::Stopped { cause: DownCause::Operator, at: None }), KeepLock, Keep, NoKill)),
            ("a stop of another boot, no auto_start", LockFile::Missing, old(), policy(A::Off, C::Off, O::ThisBoot),
                plan(R::LeaveDown(Down::NotAutoStarted), KeepLock, Clear, NoKill)),
            // 2. unreadable: UNKNOWN whatever the policy, the lock file stays
            ("unreadable", unreadable(), Absent, policy(A::On, C::On, O::ThisBoot),
                plan(unknown("lock file is empty"), KeepLock, Keep, NoKill)),
            ("unreadable, crash recovery off", unreadable(), mine(), policy(A::On, C::Off, O::Keep),
                plan(unknown("lock file is empty"), KeepLock, Clear, NoKill)),
            // 4. the identity check: live → adopted, whatever the policy
            ("live", read(true, live(false)), Absent, policy(A::Off, C::On, O::ThisBoot),
                plan(adopt(false), KeepLock, Keep, NoKill)),
            ("live and stopped", read(true, live(true)), Absent, policy(A::On, C::On, O::ThisBoot),
                plan(adopt(true), KeepLock, Keep, NoKill)),
            ("live, crash recovery off: adopted all the same", read(true, live(false)), Absent, policy(A::On, C::Off, O::ThisBoot),
                plan(adopt(false), KeepLock, Keep, NoKill)),
            ("live, HA-managed: adopted all the same", read(true, live(false)), Absent, policy(A::Off, C::DecidedElsewhere, O::Keep),
                plan(adopt(false), KeepLock, Keep, NoKill)),
            ("live beside an old marker: the lock file wins", read(true, live(false)), mine(), policy(A::On, C::On, O::Keep),
                plan(adopt(false), KeepLock, Clear, NoKill)),
            // 6. live but not meant to run: the interrupted stop is finished
            ("an interrupted stop", read(false, live(false)), Absent, policy(A::On, C::On, O::ThisBoot),
                plan(R::FinishStop { pid: 42, suspended: false, restart_count: 3 }, KeepLock, Keep, NoKill)),
            ("an interrupted stop of a suspended server", read(false, live(true)), Absent, policy(A::Off, C::Off, O::Keep),
                plan(R::FinishStop { pid: 42, suspended: true, restart_count: 3 }, KeepLock, Keep, NoKill)),
            // 4. same start time and group, another token: UNKNOWN
            ("token mismatch", read(true, unsure()), Absent, policy(A::On, C::On, O::ThisBoot),
                plan(unknown("another NM_SERVER_TOKEN"), KeepLock, Keep, NoKill)),
            ("token mismatch, crash recovery off", read(false, unsure()), Absent, policy(A::On, C::Off, O::ThisBoot),
                plan(unknown("another NM_SERVER_TOKEN"), KeepLock, Keep, NoKill)),
            // 5. gone and meant to run → restarted (counted); not meant → given up, lock file kept
            ("dead", read(true, dead()), Absent, policy(A::Off, C::On, O::ThisBoot),
                plan(restart(not_running), KeepLock, Keep, KillByToken)),
            ("a stranger under its pid", read(true, stranger()), Absent, policy(A::On, C::On, O::ThisBoot),
                plan(restart(another), KeepLock, Keep, KillByToken)),
            ("another boot: nothing of it can be left", read(true, other_boot()), Absent, policy(A::On, C::On, O::ThisBoot),
                plan(restart(before), KeepLock, Keep, NoKill)),
            ("dead and given up", read(false, dead()), Absent, policy(A::On, C::On, O::ThisBoot),
                plan(R::LeaveDown(Down::NotMeantToRun { restart_count: 3, detail: not_running.into() }), KeepLock, Keep, KillByToken)),
            ("another boot and given up", read(false, other_boot()), Absent, policy(A::On, C::On, O::Keep),
                plan(R::LeaveDown(Down::NotMeantToRun { restart_count: 3, detail: before.into() }), KeepLock, Keep, NoKill)),
            ("dead beside an old marker: restarted, the marker cleared", read(true, dead()), mine(), policy(A::On, C::On, O::Keep),
                plan(restart(not_running), KeepLock, Clear, KillByToken)),
            // crash_recovery = false, or decided elsewhere: forgotten, auto_start decides
            ("dead, crash recovery off, auto_start", read(true, dead()), Absent, policy(A::On, C::Off, O::ThisBoot),
                plan(R::StartFresh, forget(not_running, off), Keep, KillByToken)),
            ("dead, crash recovery off, no auto_start", read(true, stranger()), Absent, policy(A::Off, C::Off, O::ThisBoot),
                plan(R::LeaveDown(Down::NotAutoStarted), forget(another, off), Keep, KillByToken)),
            ("given up, crash recovery off: auto_start decides", read(false, other_boot()), Absent, policy(A::On, C::Off, O::ThisBoot),
                plan(R::StartFresh, forget(before, off), Keep, NoKill)),
            ("dead, HA-managed", read(true, dead()), Absent, policy(A::Off, C::DecidedElsewhere, O::Keep),
                plan(R::LeaveDown(Down::NotAutoStarted), forget(not_running, ha), Keep, KillByToken)),
            ("dead, HA-managed, auto_start", read(true, other_boot()), Absent, policy(A::On, C::DecidedElsewhere, O::ThisBoot),
                plan(R::StartFresh, forget(before, ha), Keep, NoKill)),
            ("a kept marker does not hold a server that ran after it", read(true, dead()), mine(), policy(A::On, C::Off, O::Keep),
                plan(R::StartFresh, forget(not_running, off), Clear, KillByToken)),
        ];
        for (row, lock_file, stop_marker, policy, want) in table {
            let found = Found {
                lock_file,
                stop_marker,
            };
            assert_eq!(decide(found, policy), want, "{row}");
        }
    }

    fn every_finding() -> Vec<LockFile> {
        let mut all = vec![LockFile::Missing, unreadable()];
        for meant in [true, false] {
            for p in [
                live(false),
                live(true),
                dead(),
                stranger(),
                other_boot(),
                unsure(),
            ] {
                all.push(read(meant, p));
            }
        }
        all
    }

    fn every_policy() -> Vec<RecoveryPolicy> {
        let mut all = vec![];
        for a in [A::On, A::Off] {
            for c in [C::On, C::Off, C::DecidedElsewhere] {
                for o in [O::Keep, O::ThisBoot] {
                    all.push(policy(a, c, o));
                }
            }
        }
        all
    }

    #[test]
    fn a_live_process_is_never_started_beside_and_an_untrusted_one_never_touched() {
        for lock_file in every_finding() {
            for stop_marker in [Absent, mine(), old(), exited(), legacy()] {
                for p in every_policy() {
                    let found = Found {
                        lock_file: lock_file.clone(),
                        stop_marker: stop_marker.clone(),
                    };
                    let d = decide(found, p);
                    let case = format!("{lock_file:?} {stop_marker:?} {p:?} -> {d:?}");
                    match &lock_file {
                        LockFile::Read {
                            process: Process::Live { .. },
                            ..
                        } => assert!(
                            matches!(
                                d.server,
                                Recovered::Adopt { .. } | Recovered::FinishStop { .. }
                            ) && d.lock_file == LockFileStep::Keep,
                            "{case}"
                        ),
                        LockFile::Unreadable { .. }
                        | LockFile::Read {
                            process: Process::Unsure { .. },
                            ..
                        } => assert!(
                            matches!(d.server, Recovered::Unknown { .. })
                                && d.lock_file == LockFileStep::Keep
                                && d.leftovers == Leftovers::None,
                            "{case}"
                        ),
                        _ => assert!(
                            !matches!(
                                d.server,
                                Recovered::Adopt { .. }
                                    | Recovered::FinishStop { .. }
                                    | Recovered::Unknown { .. }
                            ),
                            "{case}"
                        ),
                    }
                    // crash recovery alone restarts; forgetting is only for what died without it
                    if matches!(d.server, Recovered::Restart { .. }) {
                        assert_eq!(p.crash_recovery, C::On, "{case}");
                    }
                    if matches!(d.lock_file, LockFileStep::Forget { .. }) {
                        assert_ne!(p.crash_recovery, C::On, "{case}");
                    }
                    // a marker is cleared exactly when it does not keep the server down
                    let kept_down = matches!(d.server, Recovered::LeaveDown(Down::Stopped { .. }));
                    let want = if stop_marker != Absent && !kept_down {
                        StopMarkerStep::Clear
                    } else {
                        StopMarkerStep::Keep
                    };
                    assert_eq!(d.stop_marker, want, "{case}");
                    // a stop stands without a lock file, in its boot or at a takeover
                    if kept_down {
                        assert_eq!(lock_file, LockFile::Missing, "{case}");
                        assert!(
                            p.operator_stops == O::Keep
                                || matches!(
                                    stop_marker,
                                    StopMarker::Present {
                                        boot: Boot::This,
                                        ..
                                    }
                                ),
                            "{case}"
                        );
                    }
                    // and at a daemon start, one of this boot always stands
                    if lock_file == LockFile::Missing
                        && matches!(
                            stop_marker,
                            StopMarker::Present {
                                boot: Boot::This,
                                ..
                            }
                        )
                    {
                        assert!(kept_down, "{case}");
                    }
                }
            }
        }
    }
}
