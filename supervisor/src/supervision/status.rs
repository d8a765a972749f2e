//! What `which_children` and `count_children` report.

use multiproc_core::ChildKind;
use serde::{Deserialize, Serialize};

/// The state of one child, as `which_children` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChildState {
    /// Its process runs.
    Running,
    /// It waits to be started again (backoff, or a failed restart being retried).
    Restarting,
    /// It is not running and will not be restarted unless asked.
    Stopped,
}

/// One child, as `which_children` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildStatus {
    /// Its id.
    pub id: String,
    /// Its current (or last) process name.
    pub name: Option<String>,
    /// Its current (or last) process identity: with [`ActorRef::at`](crate::ActorRef::at),
    /// the address of an actor child.
    pub identity: Option<multiproc_core::Identity>,
    /// Its pid while it runs.
    pub pid: Option<u32>,
    /// Running, restarting or stopped.
    pub state: ChildState,
    /// Worker or supervisor.
    pub kind: ChildKind,
    /// The node its process runs (or last ran) on; `None` for this host.
    pub node: Option<String>,
    /// How many times the supervisor started it again.
    pub restarts: u32,
    /// How its last process ended; `None` if none has.
    pub last_exit: Option<multiproc_core::ExitReason>,
}

/// Counts of children, as OTP's `count_children`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChildCounts {
    /// Child specs held.
    pub specs: usize,
    /// Children running.
    pub active: usize,
    /// Specs of kind supervisor.
    pub supervisors: usize,
    /// Specs of kind worker.
    pub workers: usize,
}
