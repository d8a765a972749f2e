//! Resource limits for a child process (beyond Python and OTP), set by the child
//! itself during bootstrap, before its entry point runs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits on what one child process may use. `None` leaves a limit as inherited.
///
/// ```
/// use multiproc_core::Limits;
/// use std::time::Duration;
/// let l = Limits { cpu: Some(Duration::from_secs(2)), ..Limits::default() };
/// assert!(l.memory.is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Limits {
    /// Address space, in bytes (`RLIMIT_AS`). An allocation past it fails; Rust then
    /// aborts the process (`Signaled(6)`): the reason cannot tell this abort from
    /// another.
    pub memory: Option<u64>,
    /// CPU time (`RLIMIT_CPU`, whole seconds, rounded up). Past it the kernel sends
    /// SIGXCPU, and SIGKILL one second later; the exit reason is then
    /// [`ExitReason::LimitExceeded`](crate::ExitReason::LimitExceeded).
    pub cpu: Option<Duration>,
    /// Open file descriptors (`RLIMIT_NOFILE`). Opening past it fails with EMFILE.
    pub open_files: Option<u64>,
}

impl Limits {
    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.cpu.is_none() && self.open_files.is_none()
    }
}

/// A limit that ended a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Limit {
    /// [`Limits::cpu`].
    Cpu,
}
