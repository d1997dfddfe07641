//! Exit codes, the errors that choose them, and the one line printed for an error.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the daemon refused the request, answered nonsense, or the command failed (`FAILED` after `start`) |
//! | 2 | usage error, or the daemon cannot be found or reached (or did not answer in time) |
//! | 3 | the server did not settle within `--timeout` |

use std::time::Duration;

use nm_api::client::ClientError;

use crate::endpoint::DiscoveryError;

/// Success.
pub(crate) const OK: u8 = 0;
/// The daemon refused, or the command failed.
pub(crate) const FAILED: u8 = 1;
/// Usage, or the daemon cannot be found or reached.
pub(crate) const UNREACHABLE: u8 = 2;
/// The wait for the server to settle ran out.
pub(crate) const TIMED_OUT: u8 = 3;

/// A command the daemon accepted whose outcome is not what the operator asked for. The daemon's
/// answer has been printed (with `--json`); this is the line for stderr.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Outcome {
    /// It ended in a failure state (e.g. `FAILED_NOT_RESTARTABLE` after `start`).
    #[error("{0}")]
    Failed(String),
    /// It was still on its way when the wait ran out.
    #[error("{0}")]
    TimedOut(String),
}

/// The daemon accepted the connection but did not answer in time (e.g. it is stopped with
/// SIGSTOP). Whether a command took effect is unknown.
#[derive(Debug, thiserror::Error)]
#[error("nm-daemon at {endpoint} did not answer within {}s (is it stopped or overloaded?)", after.as_secs())]
pub(crate) struct NoAnswer {
    /// Where.
    pub(crate) endpoint: String,
    /// How long we waited.
    pub(crate) after: Duration,
}

/// A usage error found after parsing (clap's own are mapped in `main`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Usage(pub(crate) String);

/// The exit code for an error: the first cause in its chain that decides one, else [`FAILED`].
pub(crate) fn code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(o) = cause.downcast_ref::<Outcome>() {
            return match o {
                Outcome::Failed(_) => FAILED,
                Outcome::TimedOut(_) => TIMED_OUT,
            };
        }
        if let Some(c) = cause.downcast_ref::<ClientError>() {
            return match c {
                ClientError::Connect { .. } | ClientError::Transport { .. } => UNREACHABLE,
                _ => FAILED, // Refused, Decode, and whatever the non-exhaustive enum grows
            };
        }
        if cause.is::<DiscoveryError>() || cause.is::<NoAnswer>() || cause.is::<Usage>() {
            return UNREACHABLE;
        }
    }
    FAILED
}

/// The error as one line: the chain joined with `: `, without causes whose text the line already
/// holds (a context that repeats its source's text).
pub(crate) fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use std::io;

    use anyhow::Context as _;

    use super::*;

    fn connect() -> ClientError {
        ClientError::Connect {
            endpoint: "unix socket /run/nm/nm.sock".into(),
            source: io::Error::new(
                io::ErrorKind::NotFound,
                "No such file or directory (os error 2)",
            ),
        }
    }

    #[test]
    fn each_error_maps_to_its_exit_code() {
        let cases: Vec<(anyhow::Error, u8)> = vec![
            (connect().into(), UNREACHABLE),
            (
                ClientError::Transport {
                    endpoint: "x".into(),
                    detail: "reset".into(),
                }
                .into(),
                UNREACHABLE,
            ),
            (
                ClientError::Refused {
                    status: 404,
                    message: "no server named \"x\"".into(),
                }
                .into(),
                FAILED,
            ),
            (
                ClientError::Refused {
                    status: 401,
                    message: "unauthorized".into(),
                }
                .into(),
                FAILED,
            ),
            (ClientError::Decode("expected value".into()).into(), FAILED),
            (
                DiscoveryError::NoToken { addr: "a:1".into() }.into(),
                UNREACHABLE,
            ),
            (
                NoAnswer {
                    endpoint: "x".into(),
                    after: Duration::from_secs(40),
                }
                .into(),
                UNREACHABLE,
            ),
            (Usage("bad".into()).into(), UNREACHABLE),
            (
                Outcome::Failed("web: FAILED after start: x".into()).into(),
                FAILED,
            ),
            (
                Outcome::TimedOut("web: still STARTING after 30s".into()).into(),
                TIMED_OUT,
            ),
            (anyhow::anyhow!("writing to stdout"), FAILED),
        ];
        for (err, want) in cases {
            assert_eq!(code(&err), want, "{err:#}");
        }
    }

    #[test]
    fn context_does_not_hide_the_code() {
        let err = anyhow::Error::from(connect()).context("getting /v1/status");
        assert_eq!(code(&err), UNREACHABLE);
        let err: anyhow::Result<()> = Err(Outcome::TimedOut("t".into())).context("waiting");
        assert_eq!(code(&err.unwrap_err()), TIMED_OUT);
    }

    #[test]
    fn the_line_keeps_the_address_and_the_running_hint_once() {
        let line = one_line(&connect().into());
        assert_eq!(
            line,
            "cannot reach nm-daemon at unix socket /run/nm/nm.sock (is the daemon running?): \
             No such file or directory (os error 2)"
        );
    }

    #[test]
    fn the_line_joins_context_and_is_one_line() {
        let err = anyhow::anyhow!("first\nsecond").context("doing it");
        assert_eq!(one_line(&err), "doing it: first second");
    }

    #[test]
    fn ok_is_zero() {
        assert_eq!(OK, 0);
    }
}
