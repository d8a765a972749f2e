//! `SupervisorRef`: a running supervisor's admin API, its events and its end. Each
//! method sends the actor a message and awaits its reply; for a supervisor running on
//! a node, that message is a call to the actor hosting it there (`placed.rs`).

use multiproc_core::{ChildSpec, Identity, NodeError};
use ractor::ActorRef as CellRef;
use tokio::sync::{oneshot, watch};

use super::event::Hub;
use super::hosted::Admin;
use super::message::Msg;
use super::placed::Placed;
use super::{AdminError, ChildCounts, ChildStatus, Events, SupervisorExit};
use crate::runtime::error::CallError;

/// A running supervisor: its admin API, its events and its end.
///
/// The supervisor runs in this process, or on a node ([`Supervisor::on`](crate::Supervisor::on)):
/// there, each request is a call to the node, and one that cannot reach it fails with
/// [`AdminError::Node`] (`NodeDown` once the node is lost).
#[derive(Debug, Clone)]
pub struct SupervisorRef {
    pub(super) to: To,
    pub(super) events: Hub,
    pub(super) done: watch::Receiver<Option<SupervisorExit>>,
}

/// Where a supervisor's actor runs.
#[derive(Debug, Clone)]
pub(super) enum To {
    /// In this process.
    Local(CellRef<Msg>),
    /// In a process placed on a node.
    Placed(std::sync::Arc<Placed>),
}

/// The supervisors started in this process and not yet ended, for a snapshot of the
/// tree. A held `SupervisorRef` keeps no supervisor running, and ended ones are
/// dropped at each look.
fn registry() -> std::sync::MutexGuard<'static, Vec<SupervisorRef>> {
    static RUNNING: std::sync::Mutex<Vec<SupervisorRef>> = std::sync::Mutex::new(Vec::new());
    let mut list = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    list.retain(|s| s.done.borrow().is_none());
    list
}

/// Lists a supervisor that just started.
pub(super) fn note_running(sup: &SupervisorRef) {
    registry().push(sup.clone());
}

/// The supervisors running in this process.
pub(crate) fn running() -> Vec<SupervisorRef> {
    registry().clone()
}

/// The running supervisor of this process numbered `number`.
pub(super) fn running_numbered(number: u64) -> Option<SupervisorRef> {
    registry()
        .iter()
        .find(|s| s.number() == Some(number))
        .cloned()
}

async fn ask<T: Send + 'static>(
    cell: &CellRef<Msg>,
    make: impl FnOnce(oneshot::Sender<T>) -> Msg,
) -> Result<T, AdminError> {
    let (tx, rx) = oneshot::channel();
    cell.cast(make(tx)).map_err(|_| AdminError::Gone)?;
    rx.await.map_err(|_| AdminError::Gone)
}

impl SupervisorRef {
    /// Its number among this process's actors: what a handle of one of its
    /// children names it by in other processes (with a secret, `away`); `None` for
    /// one running on a node.
    pub(super) fn number(&self) -> Option<u64> {
        match &self.to {
            To::Local(cell) => Some(cell.get_id().pid()),
            To::Placed(_) => None,
        }
    }

    /// What tells this supervisor from the others running in this process; `None`
    /// for one running on a node (only this process's are listed).
    #[cfg(feature = "observer")]
    pub(crate) fn key(&self) -> Option<ractor::ActorId> {
        match &self.to {
            To::Local(cell) => Some(cell.get_id()),
            To::Placed(_) => None,
        }
    }

    /// The local actor, or the placed one's handle.
    pub(super) fn local(&self) -> Result<&CellRef<Msg>, &Placed> {
        match &self.to {
            To::Local(cell) => Ok(cell),
            To::Placed(placed) => Err(placed),
        }
    }

    /// The address of its child `id`, as this process reaches it: waiting through a
    /// restart with `wait`.
    pub(super) async fn resolve(&self, id: &str, wait: bool) -> Result<Identity, CallError> {
        let (tx, rx) = oneshot::channel();
        let gone = || CallError::NotRunning(id.to_string(), "its supervisor ended".into());
        // The child's address is one of the node's tree, which this process cannot
        // reach by it.
        let cell = self.local().map_err(|placed| {
            CallError::Node(NodeError::NotAcrossNodes {
                what: format!(
                    "a SupervisedRef to the child {id} of a supervisor running on a node"
                ),
                node: placed.node().to_string(),
            })
        })?;
        cell.cast(Msg::Resolve {
            id: id.to_string(),
            wait,
            reply: tx,
        })
        .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// The node this supervisor's own actor runs on; `None` for this process.
    pub fn node(&self) -> Option<&str> {
        match &self.to {
            To::Local(_) => None,
            To::Placed(placed) => Some(placed.node()),
        }
    }

    /// A stream of the supervisor's events from now on.
    pub fn events(&self) -> Events {
        self.events.subscribe()
    }

    /// A stream of the supervisor's events since it started (the last 1024 of them,
    /// the children's first starts included), then the new ones: for a subscriber
    /// that comes after [`Supervisor::start`](crate::Supervisor::start).
    pub fn events_from_start(&self) -> Events {
        self.events.replay()
    }

    /// The children, in start order.
    ///
    /// # Errors
    ///
    /// [`AdminError::Gone`] once the supervisor has ended; [`AdminError::Node`] for one on
    /// a node that cannot be reached.
    pub async fn which_children(&self) -> Result<Vec<ChildStatus>, AdminError> {
        match self.local() {
            Ok(cell) => ask(cell, Msg::Which).await,
            Err(placed) => placed.which_children().await,
        }
    }

    /// Counts of specs, running children, supervisors and workers.
    ///
    /// # Errors
    ///
    /// [`AdminError::Gone`] once the supervisor has ended; [`AdminError::Node`] for one on
    /// a node that cannot be reached.
    pub async fn count_children(&self) -> Result<ChildCounts, AdminError> {
        match self.local() {
            Ok(cell) => ask(cell, Msg::Count).await,
            Err(placed) => placed.count_children().await,
        }
    }

    /// Adds a child and starts it.
    ///
    /// # Errors
    ///
    /// [`AdminError::AlreadyStarted`], [`AdminError::AlreadyPresent`],
    /// [`AdminError::Invalid`], [`AdminError::Start`] (with `NotAcrossNodes` for a spec
    /// that cannot go to the supervisor's node), [`AdminError::Gone`], [`AdminError::Node`].
    pub async fn start_child(&self, spec: ChildSpec) -> Result<(), AdminError> {
        match self.local() {
            Ok(cell) => ask(cell, |tx| Msg::StartChild(spec, tx)).await?,
            Err(placed) => placed.start_child(spec).await,
        }
    }

    /// Stops a child by its shutdown policy; its spec is kept (unless temporary).
    ///
    /// # Errors
    ///
    /// [`AdminError::NotFound`], [`AdminError::Gone`].
    pub async fn terminate_child(&self, id: &str) -> Result<(), AdminError> {
        match self.local() {
            Ok(cell) => ask(cell, |tx| Msg::Terminate(id.to_string(), tx)).await?,
            Err(placed) => placed.admin(Admin::Terminate(id.to_string())).await,
        }
    }

    /// Starts a stopped child again.
    ///
    /// # Errors
    ///
    /// [`AdminError::Running`], [`AdminError::Restarting`], [`AdminError::NotFound`],
    /// [`AdminError::Start`], [`AdminError::Gone`].
    pub async fn restart_child(&self, id: &str) -> Result<(), AdminError> {
        match self.local() {
            Ok(cell) => ask(cell, |tx| Msg::Restart(id.to_string(), tx)).await?,
            Err(placed) => placed.admin(Admin::Restart(id.to_string())).await,
        }
    }

    /// Forgets a stopped child's spec.
    ///
    /// # Errors
    ///
    /// [`AdminError::Running`], [`AdminError::Restarting`], [`AdminError::NotFound`],
    /// [`AdminError::Gone`].
    pub async fn delete_child(&self, id: &str) -> Result<(), AdminError> {
        match self.local() {
            Ok(cell) => ask(cell, |tx| Msg::Delete(id.to_string(), tx)).await?,
            Err(placed) => placed.admin(Admin::Delete(id.to_string())).await,
        }
    }

    /// Stops every child in reverse start order and ends the supervisor.
    pub async fn shutdown(&self) -> SupervisorExit {
        match self.local() {
            Ok(cell) => {
                let _ = cell.cast(Msg::Shutdown);
            }
            Err(placed) => placed.shutdown().await,
        }
        self.join().await
    }

    /// Waits for the supervisor to end and returns why it did.
    pub async fn join(&self) -> SupervisorExit {
        let mut done = self.done.clone();
        match done.wait_for(Option::is_some).await {
            Ok(exit) => exit.clone().unwrap_or(SupervisorExit::Shutdown),
            Err(_) => SupervisorExit::Shutdown,
        }
    }
}
