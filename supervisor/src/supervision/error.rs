//! `AdminError`: why the supervisor refused an admin request.

use multiproc_core::SpecError;

use super::SupervisorExit;
use crate::runtime::error::Error;

/// Why an admin request was refused (OTP's errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// No child has this id.
    #[error("no child has the id `{0}`")]
    NotFound(String),
    /// A child with this id exists already (and is not running).
    #[error("a child with the id `{0}` is already present")]
    AlreadyPresent(String),
    /// A child with this id runs already.
    #[error("the child `{0}` is already running")]
    AlreadyStarted(String),
    /// The child runs; stop it first.
    #[error("the child `{0}` is running")]
    Running(String),
    /// The child is waiting to restart.
    #[error("the child `{0}` is restarting")]
    Restarting(String),
    /// The spec is invalid.
    #[error(transparent)]
    Invalid(#[from] SpecError),
    /// The child could not be started.
    #[error("the child `{id}` could not be started: {source}")]
    Start {
        /// Its id.
        id: String,
        /// Why.
        #[source]
        source: Error,
    },
    /// The supervisor has ended.
    #[error("the supervisor has ended")]
    Gone,
    /// The supervisor runs on a node that cannot be reached (`NodeDown`), or the
    /// request could not go there (`NotAcrossNodes`).
    #[error(transparent)]
    Node(#[from] multiproc_core::NodeError),
    /// The supervisor has as many children as it may.
    #[error("the supervisor has its maximum of {0} children")]
    MaxChildren(usize),
    /// The supervisor gave up on its own (see [`Supervisor::run`](crate::Supervisor::run)).
    #[error("the supervisor gave up: {0:?}")]
    Escalated(SupervisorExit),
    /// The supervisor child `id` that a [`ChildSupervisorRef`](crate::ChildSupervisorRef)
    /// names does not run, and will not until its parent is asked to start it: it is
    /// stopped, deleted, or its parent ended.
    #[error("the supervisor `{id}` is not running: {why}")]
    NotRunning {
        /// Its id in its parent.
        id: String,
        /// Why.
        why: String,
    },
    /// The child `id` is not a supervisor on a node made with
    /// [`Supervisor::into_child`](crate::Supervisor::into_child), so no
    /// [`ChildSupervisorRef`](crate::ChildSupervisorRef) reaches it.
    #[error("the child `{0}` is not a supervisor on a node (Supervisor::into_child)")]
    NotHosted(String),
}
