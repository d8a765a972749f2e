//! Why a process ended, as data, and Python's `exitcode` for it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{ExitReport, Limit, Limits};

/// Why a process ended.
///
/// `exit_code` gives Python's `Process.exitcode` for each reason: 0 for a normal end,
/// the code passed to `exit`, 1 for a panic, and −N for a signal N.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ExitReason {
    /// The process returned from its entry point (exit status 0) on its own.
    Normal,
    /// The process exited with status 0 after it was asked to stop.
    Shutdown,
    /// The process exited with this non-zero status.
    Exited(i32),
    /// The entry point panicked.
    Panicked {
        /// The panic message.
        message: String,
        /// `file:line:column` of the panic, when known.
        location: Option<String>,
    },
    /// The entry point returned an error (or an actor failed to start); exit status 1.
    Failed {
        /// The error, formatted.
        message: String,
    },
    /// The process was ended by this signal (and nobody here killed it on purpose).
    Signaled(i32),
    /// The process was killed with SIGKILL after it did not stop within its shutdown
    /// timeout.
    Killed,
    /// The process missed its heartbeat and was killed (SIGKILL) as hung.
    Hung,
    /// The kernel's OOM killer ended the process (SIGKILL): its memory cgroup counted
    /// an OOM kill when it died. Python reports it as `exitcode` -9, and so does
    /// [`exit_code`](ExitReason::exit_code).
    OutOfMemory,
    /// The process went past one of its [`Limits`] and the kernel ended it with
    /// `signal`.
    LimitExceeded {
        /// Which limit.
        limit: Limit,
        /// The signal that ended it.
        signal: i32,
    },
    /// The process ended, but how was lost: it was forked by a forkserver that died
    /// before it, and only its parent (the forkserver) could read its status, and the
    /// process sent no report of its own (it was killed by a signal, or called
    /// `exit`). Python reports such an end as `exitcode` 255, and so does
    /// [`exit_code`](ExitReason::exit_code); the reason says what happened.
    ForkserverLost,
    /// The process ran on another node, and that node died or became unreachable (its
    /// session was lost or it missed its heartbeats): what became of the process
    /// itself is unknown here. The node stops it once it finds its root gone.
    NodeDown {
        /// The node's name.
        node: String,
    },
}

impl ExitReason {
    /// Python's `exitcode` for this reason.
    ///
    /// ```
    /// use multiproc_core::ExitReason;
    /// assert_eq!(ExitReason::Normal.exit_code(), 0);
    /// assert_eq!(ExitReason::Exited(3).exit_code(), 3);
    /// assert_eq!(ExitReason::Signaled(15).exit_code(), -15);
    /// ```
    pub fn exit_code(&self) -> i32 {
        match self {
            ExitReason::Normal | ExitReason::Shutdown => 0,
            ExitReason::Exited(code) => *code,
            ExitReason::Panicked { .. } | ExitReason::Failed { .. } => 1,
            ExitReason::Signaled(sig) => -sig,
            ExitReason::Killed
            | ExitReason::Hung
            | ExitReason::OutOfMemory
            | ExitReason::NodeDown { .. } => -9,
            ExitReason::LimitExceeded { signal, .. } => -signal,
            ExitReason::ForkserverLost => 255,
        }
    }

    /// Whether this is an ordinary end (`Normal` or `Shutdown`).
    pub fn is_normal(&self) -> bool {
        matches!(self, ExitReason::Normal | ExitReason::Shutdown)
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Normal => f.write_str("normal"),
            ExitReason::Shutdown => f.write_str("shutdown"),
            ExitReason::Exited(code) => write!(f, "exited({code})"),
            ExitReason::Panicked {
                message,
                location: Some(loc),
            } => {
                write!(f, "panicked at {loc}: {message}")
            }
            ExitReason::Panicked {
                message,
                location: None,
            } => write!(f, "panicked: {message}"),
            ExitReason::Failed { message } => write!(f, "failed: {message}"),
            ExitReason::Signaled(sig) => write!(f, "signaled({})", signal_name(*sig)),
            ExitReason::Killed => f.write_str("killed"),
            ExitReason::Hung => f.write_str("hung (missed its heartbeat)"),
            ExitReason::OutOfMemory => {
                f.write_str("out of memory (killed by the kernel's OOM killer)")
            }
            ExitReason::NodeDown { node } => write!(f, "node {node} down"),
            ExitReason::LimitExceeded { limit, signal } => {
                write!(f, "{limit:?} limit exceeded ({})", signal_name(*signal))
            }
            ExitReason::ForkserverLost => {
                f.write_str("ended, its status lost with the forkserver that forked it")
            }
        }
    }
}

/// How the kernel reported the end of a process (`waitpid`'s status, decoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStatus {
    /// `exit(code)`.
    Exited(i32),
    /// Ended by a signal.
    Signaled(i32),
}

/// Decides the exit reason from what the kernel said, what the child reported before
/// it exited, and what the parent did to it.
///
/// The kernel's status is the truth; the child's report only adds what the status
/// cannot carry (the panic message). A child that exited 0 after a stop request ended
/// by `Shutdown`; one that died of SIGKILL after its shutdown timeout was `Killed`.
///
/// ```
/// use multiproc_core::{exit_reason, ExitReason, WaitStatus};
/// assert_eq!(exit_reason(WaitStatus::Exited(0), None, false, false), ExitReason::Normal);
/// assert_eq!(exit_reason(WaitStatus::Exited(0), None, true, false), ExitReason::Shutdown);
/// assert_eq!(exit_reason(WaitStatus::Signaled(9), None, true, true), ExitReason::Killed);
/// assert_eq!(exit_reason(WaitStatus::Signaled(9), None, false, false), ExitReason::Signaled(9));
/// ```
pub fn exit_reason(
    status: WaitStatus,
    report: Option<&ExitReport>,
    stop_requested: bool,
    killed_after_timeout: bool,
) -> ExitReason {
    ExitFacts {
        status,
        report,
        stop_requested,
        killed_after_timeout,
        hung: false,
        oom_killed: false,
        limits: Limits::default(),
    }
    .reason()
}

/// Everything the parent knows about how a child ended; [`ExitFacts::reason`] decides.
#[derive(Debug, Clone, Copy)]
pub struct ExitFacts<'a> {
    /// What the kernel said.
    pub status: WaitStatus,
    /// What the child reported before it exited.
    pub report: Option<&'a ExitReport>,
    /// Whether the parent had asked it to stop.
    pub stop_requested: bool,
    /// Whether the parent killed it after its stop timeout.
    pub killed_after_timeout: bool,
    /// Whether the parent killed it for missing its heartbeat.
    pub hung: bool,
    /// Whether it died of a SIGKILL the parent did not send while its memory cgroup
    /// counted an OOM kill.
    pub oom_killed: bool,
    /// Its resource limits.
    pub limits: Limits,
}

impl ExitFacts<'_> {
    /// The exit reason: [`exit_reason`]'s rules, plus `Hung` for a child killed for
    /// missing its heartbeat and `LimitExceeded` for SIGXCPU from a child with a CPU
    /// limit.
    ///
    /// ```
    /// use multiproc_core::{ExitFacts, ExitReason, Limit, Limits, WaitStatus};
    /// use std::time::Duration;
    /// let facts = ExitFacts {
    ///     status: WaitStatus::Signaled(24),
    ///     report: None,
    ///     stop_requested: false,
    ///     killed_after_timeout: false,
    ///     hung: false,
    ///     oom_killed: false,
    ///     limits: Limits { cpu: Some(Duration::from_secs(1)), ..Limits::default() },
    /// };
    /// assert_eq!(facts.reason(), ExitReason::LimitExceeded { limit: Limit::Cpu, signal: 24 });
    /// ```
    pub fn reason(&self) -> ExitReason {
        const SIGKILL: i32 = 9;
        const SIGXCPU: i32 = 24;
        match (self.status, self.report) {
            (WaitStatus::Signaled(SIGKILL), _) if self.hung => ExitReason::Hung,
            (WaitStatus::Signaled(SIGXCPU), _) if self.limits.cpu.is_some() => {
                ExitReason::LimitExceeded {
                    limit: Limit::Cpu,
                    signal: SIGXCPU,
                }
            }
            (WaitStatus::Exited(_), Some(ExitReport::Panicked { message, location })) => {
                ExitReason::Panicked {
                    message: message.clone(),
                    location: location.clone(),
                }
            }
            (WaitStatus::Exited(_), Some(ExitReport::Failed { message })) => ExitReason::Failed {
                message: message.clone(),
            },
            (WaitStatus::Exited(0), _) if self.stop_requested => ExitReason::Shutdown,
            (WaitStatus::Exited(0), _) => ExitReason::Normal,
            (WaitStatus::Exited(code), _) => ExitReason::Exited(code),
            (WaitStatus::Signaled(SIGKILL), _) if self.killed_after_timeout => ExitReason::Killed,
            (WaitStatus::Signaled(SIGKILL), _) if self.oom_killed => ExitReason::OutOfMemory,
            (WaitStatus::Signaled(sig), _) => ExitReason::Signaled(sig),
        }
    }
}

fn signal_name(sig: i32) -> String {
    let name = match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        _ => return sig.to_string(),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_table() {
        let panic = ExitReport::Panicked {
            message: "boom".into(),
            location: Some("a.rs:1:2".into()),
        };
        type Case<'a> = (
            WaitStatus,
            Option<&'a ExitReport>,
            bool,
            bool,
            ExitReason,
            i32,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                WaitStatus::Exited(0),
                None,
                false,
                false,
                ExitReason::Normal,
                0,
            ),
            (
                WaitStatus::Exited(0),
                Some(&ExitReport::Normal),
                true,
                false,
                ExitReason::Shutdown,
                0,
            ),
            (
                WaitStatus::Exited(3),
                None,
                false,
                false,
                ExitReason::Exited(3),
                3,
            ),
            (
                WaitStatus::Exited(3),
                None,
                true,
                false,
                ExitReason::Exited(3),
                3,
            ),
            (
                WaitStatus::Exited(1),
                Some(&panic),
                false,
                false,
                ExitReason::Panicked {
                    message: "boom".into(),
                    location: Some("a.rs:1:2".into()),
                },
                1,
            ),
            (
                WaitStatus::Signaled(6),
                None,
                false,
                false,
                ExitReason::Signaled(6),
                -6,
            ),
            (
                WaitStatus::Signaled(15),
                None,
                true,
                false,
                ExitReason::Signaled(15),
                -15,
            ),
            (
                WaitStatus::Signaled(9),
                None,
                false,
                false,
                ExitReason::Signaled(9),
                -9,
            ),
            (
                WaitStatus::Signaled(9),
                None,
                true,
                true,
                ExitReason::Killed,
                -9,
            ),
        ];
        for (status, report, stop, killed, reason, code) in cases {
            let got = exit_reason(status, report, stop, killed);
            assert_eq!(
                got, reason,
                "{status:?} {report:?} stop={stop} killed={killed}"
            );
            assert_eq!(got.exit_code(), code);
        }
    }

    #[test]
    fn display_is_readable() {
        assert_eq!(ExitReason::Signaled(15).to_string(), "signaled(SIGTERM)");
        assert_eq!(ExitReason::Exited(3).to_string(), "exited(3)");
        let p = ExitReason::Panicked {
            message: "boom".into(),
            location: Some("f.rs:3:5".into()),
        };
        assert_eq!(p.to_string(), "panicked at f.rs:3:5: boom");
    }
}
