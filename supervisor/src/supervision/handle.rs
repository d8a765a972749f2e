//! `SupervisorRef`: a running supervisor's admin API, its events and its end. Each
//! method sends the actor a message and awaits its reply.

use multiproc_core::ChildSpec;
use ractor::ActorRef as CellRef;
use tokio::sync::{oneshot, watch};

use super::event::Hub;
use super::message::Msg;
use super::{AdminError, ChildCounts, ChildStatus, Events, SupervisorExit};

/// A running supervisor: its admin API, its events and its end.
#[derive(Debug, Clone)]
pub struct SupervisorRef {
    pub(super) cell: CellRef<Msg>,
    pub(super) events: Hub,
    pub(super) done: watch::Receiver<Option<SupervisorExit>>,
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
    registry().iter().find(|s| s.number() == number).cloned()
}

impl SupervisorRef {
    /// Its number among this process's actors: what a handle of one of its
    /// children names it by in other processes (with a secret, `away`).
    pub(super) fn number(&self) -> u64 {
        self.cell.get_id().pid()
    }

    /// What tells this supervisor from the others running in this process.
    #[cfg(feature = "observer")]
    pub(crate) fn key(&self) -> ractor::ActorId {
        self.cell.get_id()
    }

    async fn ask<T: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Msg,
    ) -> Result<T, AdminError> {
        let (tx, rx) = oneshot::channel();
        self.cell.cast(make(tx)).map_err(|_| AdminError::Gone)?;
        rx.await.map_err(|_| AdminError::Gone)
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
    /// [`AdminError::Gone`] once the supervisor has ended.
    pub async fn which_children(&self) -> Result<Vec<ChildStatus>, AdminError> {
        self.ask(Msg::Which).await
    }

    /// Counts of specs, running children, supervisors and workers.
    ///
    /// # Errors
    ///
    /// [`AdminError::Gone`] once the supervisor has ended.
    pub async fn count_children(&self) -> Result<ChildCounts, AdminError> {
        self.ask(Msg::Count).await
    }

    /// Adds a child and starts it.
    ///
    /// # Errors
    ///
    /// [`AdminError::AlreadyStarted`], [`AdminError::AlreadyPresent`],
    /// [`AdminError::Invalid`], [`AdminError::Start`], [`AdminError::Gone`].
    pub async fn start_child(&self, spec: ChildSpec) -> Result<(), AdminError> {
        self.ask(|tx| Msg::StartChild(spec, tx)).await?
    }

    /// Stops a child by its shutdown policy; its spec is kept (unless temporary).
    ///
    /// # Errors
    ///
    /// [`AdminError::NotFound`], [`AdminError::Gone`].
    pub async fn terminate_child(&self, id: &str) -> Result<(), AdminError> {
        self.ask(|tx| Msg::Terminate(id.to_string(), tx)).await?
    }

    /// Starts a stopped child again.
    ///
    /// # Errors
    ///
    /// [`AdminError::Running`], [`AdminError::Restarting`], [`AdminError::NotFound`],
    /// [`AdminError::Start`], [`AdminError::Gone`].
    pub async fn restart_child(&self, id: &str) -> Result<(), AdminError> {
        self.ask(|tx| Msg::Restart(id.to_string(), tx)).await?
    }

    /// Forgets a stopped child's spec.
    ///
    /// # Errors
    ///
    /// [`AdminError::Running`], [`AdminError::Restarting`], [`AdminError::NotFound`],
    /// [`AdminError::Gone`].
    pub async fn delete_child(&self, id: &str) -> Result<(), AdminError> {
        self.ask(|tx| Msg::Delete(id.to_string(), tx)).await?
    }

    /// Stops every child in reverse start order and ends the supervisor.
    pub async fn shutdown(&self) -> SupervisorExit {
        if self.cell.cast(Msg::Shutdown).is_err() {
            return self.join().await;
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
