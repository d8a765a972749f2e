//! What the supervisor's handles and its own tasks (exit watchers, restart timers)
//! send its actor.

use std::time::Duration;

use multiproc_core::{ChildSpec, ExitReason};
use tokio::sync::oneshot;

use super::placed::Placed;
use super::{AdminError, ChildCounts, ChildStatus};
use crate::runtime::error::CallError;

/// A message to the supervisor's actor.
pub(super) enum Msg {
    Resolve {
        id: String,
        wait: bool,
        reply: oneshot::Sender<Result<multiproc_core::Identity, CallError>>,
    },
    Exited {
        id: String,
        incarnation: u64,
        reason: ExitReason,
    },
    /// The children to start again, each with the incarnation it was given when it
    /// was marked restarting.
    RestartDue {
        due: Vec<(String, u64)>,
        ran_for: Duration,
    },
    Which(oneshot::Sender<Vec<ChildStatus>>),
    Count(oneshot::Sender<ChildCounts>),
    StartChild(ChildSpec, oneshot::Sender<Result<(), AdminError>>),
    Terminate(String, oneshot::Sender<Result<(), AdminError>>),
    Restart(String, oneshot::Sender<Result<(), AdminError>>),
    Delete(String, oneshot::Sender<Result<(), AdminError>>),
    Shutdown,
    /// Where the supervisor child `id` (`Supervisor::into_child`) runs now.
    Hosted(String, oneshot::Sender<Result<Placed, AdminError>>),
    /// What the spec of the supervisor child keeps here (`nested.rs`).
    Nest(
        String,
        oneshot::Sender<Result<multiproc_core::Attached, AdminError>>,
    ),
}

// Never crosses nodes: a local message (ractor's `cluster` feature asks every message
// type to say so).
impl ractor::Message for Msg {}
