//! A supervisor on a node that a supervisor here restarts: its child spec
//! ([`Supervisor::into_child`](crate::Supervisor::into_child)), and the parent's
//! handle to it, which follows it across its restarts as a `SupervisedRef` follows
//! an actor child.
//!
//! The child is the process hosting the supervisor (`hosted.rs`), placed on the
//! node; each call of the handle asks the parent for that child's current process,
//! then calls it there as a `SupervisorRef` of `Supervisor::on` does (`placed.rs`).

use std::sync::Arc;
use std::time::Duration;

use multiproc_core::{
    ChildKind, ChildSpec, ExitReason, Identity, NodeError, RemoteError, Shutdown, SpecError,
    SupervisorFlags,
};
use serde::Serialize;
use tokio::sync::{oneshot, watch};

use super::away::Sup;
use super::child::child_spec;
use super::event::Hub;
use super::hosted::HOSTED_ENTRY;
use super::message::Msg;
use super::placed::{Placed, hosting};
use super::relay::{Delivery, MAX_TRIES};
use super::{
    AdminError, ChildCounts, ChildState, ChildStatus, Events, SupervisedRef, SupervisorEvent,
    SupervisorExit, SupervisorRef,
};
use crate::node::Node;
use crate::process::FarSpec;
use crate::process::actor::Actor;
use crate::runtime;
use crate::runtime::error::{CallError, Error};
use crate::runtime::registry;
use crate::sync::Queue;

/// The child spec of a supervisor with these settings, hosted on `node`: its
/// arguments are the whole setup, so each restart starts its children again.
pub(super) fn spec(
    id: String,
    node: Option<Node>,
    flags: SupervisorFlags,
    children: Vec<ChildSpec>,
    max_children: Option<usize>,
    name: String,
) -> Result<ChildSpec, AdminError> {
    let Some(node) = node else {
        return Err(SpecError::InvalidStart {
            child: id,
            value: "a supervisor with no node: set one with Supervisor::on".into(),
        }
        .into());
    };
    // The handles the children's arguments name, and the queue its events come back
    // on, go with each incarnation: the spec keeps them in its far encoding, as a
    // placed child's arguments, exported again at each restart.
    let (setup, queue) = hosting(&node, flags, children, max_children, name, &id)?;
    let failed = |source: Error| AdminError::Start {
        id: id.clone(),
        source,
    };
    let entry = registry::by_name(HOSTED_ENTRY).expect("the hosted supervisor is a built-in");
    let mut spec = child_spec(id.clone(), entry, &setup)
        .map_err(failed)?
        .on(&node);
    let nest = Arc::new(Nest::start(queue)) as Arc<dyn std::any::Any + Send + Sync>;
    spec.far = FarSpec::keeping(&spec.far, nest).ok_or_else(|| {
        failed(Error::os(
            "the nested supervisor's setup has no encoding for a node",
            std::io::Error::other("its queue was not met"),
        ))
    })?;
    spec.kind = ChildKind::Supervisor;
    // OTP's default for a supervisor child: it stops its own children first, each
    // by its own shutdown policy.
    spec.shutdown = Shutdown::Infinity;
    Ok(spec)
}

/// The way back of a nested supervisor's events: the hub its subscribers read, fed
/// from the spec's queue by a task that lives as long as a clone of the spec does.
#[derive(Debug)]
struct Nest {
    hub: Hub,
    /// Never sent: dropped with the spec, it ends the subscriptions.
    _open: watch::Sender<Option<SupervisorExit>>,
    pump: tokio::task::JoinHandle<()>,
}

impl Nest {
    fn start(queue: Queue<SupervisorEvent>) -> Nest {
        let (open, done) = watch::channel(None);
        let hub = Hub::new(done);
        let pump = runtime::handle().spawn({
            let hub = hub.clone();
            async move {
                while let Ok(event) = queue.get(true, None).await {
                    hub.send(event);
                }
            }
        });
        Nest {
            hub,
            _open: open,
            pump,
        }
    }
}

impl Drop for Nest {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

/// A supervisor on a node, child of a supervisor here that restarts it: its admin
/// API, each call made to its current incarnation.
///
/// From [`SupervisorRef::child_supervisor`]. The parent's child is the process
/// hosting the supervisor on its node ([`Supervisor::into_child`](crate::Supervisor::into_child)):
/// when that node dies, the parent restarts it by its spec (on a live node with
/// [`RestartPlacement::AnyLiveNode`](multiproc_core::RestartPlacement::AnyLiveNode)),
/// the nested supervisor's own children with it, and the same handle then reaches
/// the new one. Each call first asks the parent where the child runs now, one more
/// round trip, here.
///
/// Between incarnations a call fails at once, never waits: with
/// [`AdminError::Restarting`] (the child's id in its parent) while the parent is
/// restarting it, with [`AdminError::NotRunning`] once it is stopped, deleted or the
/// parent ended, and with [`AdminError::Node`] (`NodeDown`) for a call in flight
/// when its node dies, or made before the parent has seen that.
///
/// The nested supervisor's events come back here through a queue of this process
/// that its spec names, exported again to each incarnation:
/// [`events`](ChildSupervisorRef::events). The parent's events say where each
/// incarnation runs (`ChildStarted`, `Restarted` with its `node`).
///
/// [`child_ref`](ChildSupervisorRef::child_ref) gives a [`SupervisedRef`] of one of
/// its actor children that follows the child and the nested supervisor across
/// their restarts; [`join`](ChildSupervisorRef::join) waits until the nested
/// supervisor is gone for good. Neither this handle nor those `SupervisedRef`s
/// travel: they ask the parent's actor, in this process.
///
/// # Examples
///
/// ```no_run
/// use multiproc_core::{ChildSpec, RestartPlacement, SupervisorFlags};
/// use multiproc_supervisor::Supervisor;
/// use multiproc_supervisor::blocking::{node, SupervisorRef};
///
/// /// `front` and `back`: specs of registered functions (`function_child`).
/// fn edge_on_a(front: ChildSpec, back: ChildSpec) -> Result<(), Box<dyn std::error::Error>> {
///     let a = node::connect("10.0.0.7:7070", "s3cret")?;
///     let _b = node::connect("10.0.0.8:7070", "s3cret")?;
///     let edge = Supervisor::new(SupervisorFlags::default())
///         .child(front)
///         .on(&a)
///         .into_child("edge")?
///         .restart_on(RestartPlacement::AnyLiveNode);
///     let root = SupervisorRef::start(Supervisor::new(SupervisorFlags::default()).child(edge))?;
///     let edge = root.child_supervisor("edge");
///     // Wherever `edge` runs now: on `a`, or after `a`'s death, on `b`.
///     edge.start_child(back)?;
///     assert_eq!(edge.which_children()?.len(), 2);
///     Ok(())
/// }
/// # fn main() { let _ = edge_on_a; }
/// ```
#[derive(Debug, Clone)]
pub struct ChildSupervisorRef {
    parent: SupervisorRef,
    id: String,
}

impl SupervisorRef {
    /// The handle of the supervisor child `id`, made with
    /// [`Supervisor::into_child`](crate::Supervisor::into_child): see
    /// [`ChildSupervisorRef`]. Nothing is checked until a call.
    pub fn child_supervisor(&self, id: &str) -> ChildSupervisorRef {
        ChildSupervisorRef {
            parent: self.clone(),
            id: id.to_string(),
        }
    }
}

impl ChildSupervisorRef {
    /// Its id in its parent.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The current incarnation, as the parent says.
    async fn current(&self) -> Result<Placed, AdminError> {
        self.ask(|tx| Msg::Hosted(self.id.clone(), tx)).await
    }

    /// The parent's answer to `msg`.
    async fn ask<T>(
        &self,
        msg: impl FnOnce(oneshot::Sender<Result<T, AdminError>>) -> Msg,
    ) -> Result<T, AdminError> {
        let ended = || AdminError::NotRunning {
            id: self.id.clone(),
            why: "its supervisor ended".into(),
        };
        let cell = self.parent.local().map_err(|placed| {
            AdminError::Node(NodeError::NotAcrossNodes {
                what: format!(
                    "a handle of the supervisor child {} of a supervisor running on a node",
                    self.id
                ),
                node: placed.node().to_string(),
            })
        })?;
        let (tx, rx) = oneshot::channel();
        cell.cast(msg(tx)).map_err(|_| ended())?;
        rx.await.map_err(|_| ended())?
    }

    /// A stream of the nested supervisor's events from now on, those of each of its
    /// incarnations in order, wherever it runs; its children's events name no node
    /// (the parent's `ChildStarted` and `Restarted` of this child say where it runs).
    ///
    /// At a restart of the nested supervisor, a subscriber sees the new
    /// incarnation's `ChildStarted`s, one per child of its spec, after whatever the
    /// old one sent before it ended: its `ShutDown` when it was stopped, nothing
    /// more when its node died. The stream itself does not end at an incarnation's
    /// `ShutDown`; it ends once the parent has dropped the child's spec (deleted,
    /// or the parent ended) and every event was read.
    ///
    /// # Errors
    ///
    /// [`AdminError::NotRunning`] when the parent has no child `id` or has ended;
    /// [`AdminError::NotHosted`] for a child that is not a supervisor on a node
    /// made by [`Supervisor::into_child`](crate::Supervisor::into_child) in this
    /// process.
    pub async fn events(&self) -> Result<Events, AdminError> {
        let far = self.ask(|tx| Msg::Nest(self.id.clone(), tx)).await?;
        let nest = far
            .0
            .as_ref()
            .and_then(|far| far.downcast_ref::<FarSpec>())
            .and_then(FarSpec::kept)
            .and_then(|kept| kept.downcast_ref::<Nest>())
            .ok_or_else(|| AdminError::NotHosted(self.id.clone()))?;
        Ok(nest.hub.subscribe())
    }

    /// The outcome of a call to an incarnation: one that had exited (`Gone`) is
    /// reported as the parent sees the child now.
    async fn settle<T>(&self, out: Result<T, AdminError>) -> Result<T, AdminError> {
        match out {
            Err(AdminError::Gone) => match self.current().await {
                Err(e) => Err(e),
                // The parent has not seen that exit yet, or has restarted it since.
                Ok(_) => Err(AdminError::Restarting(self.id.clone())),
            },
            out => out,
        }
    }

    /// The nested supervisor's children, in start order; each names its node.
    ///
    /// # Errors
    ///
    /// Those of [`SupervisorRef::which_children`], and between incarnations
    /// [`AdminError::Restarting`] or [`AdminError::NotRunning`] (see
    /// [`ChildSupervisorRef`]); [`AdminError::NotHosted`] for a child that is not a
    /// supervisor on a node.
    pub async fn which_children(&self) -> Result<Vec<ChildStatus>, AdminError> {
        let placed = self.current().await?;
        self.settle(placed.which_children().await).await
    }

    /// Counts of the nested supervisor's specs, running children, supervisors and
    /// workers.
    ///
    /// # Errors
    ///
    /// As [`which_children`](ChildSupervisorRef::which_children).
    pub async fn count_children(&self) -> Result<ChildCounts, AdminError> {
        let placed = self.current().await?;
        self.settle(placed.count_children().await).await
    }

    /// Adds a child to the nested supervisor and starts it on its node. Only this
    /// incarnation learns of it: a restart of the nested supervisor starts the
    /// children of its spec.
    ///
    /// # Errors
    ///
    /// Those of [`SupervisorRef::start_child`] for a supervisor on a node; as
    /// [`which_children`](ChildSupervisorRef::which_children).
    pub async fn start_child(&self, spec: ChildSpec) -> Result<(), AdminError> {
        let placed = self.current().await?;
        self.settle(placed.start_child(spec).await).await
    }

    /// Stops a child of the nested supervisor; see [`SupervisorRef::terminate_child`].
    ///
    /// # Errors
    ///
    /// [`AdminError::NotFound`]; as [`which_children`](ChildSupervisorRef::which_children).
    pub async fn terminate_child(&self, id: &str) -> Result<(), AdminError> {
        let placed = self.current().await?;
        let admin = super::hosted::Admin::Terminate(id.to_string());
        self.settle(placed.admin(admin).await).await
    }

    /// Starts a stopped child of the nested supervisor again; see
    /// [`SupervisorRef::restart_child`].
    ///
    /// # Errors
    ///
    /// Those of [`SupervisorRef::restart_child`]; as
    /// [`which_children`](ChildSupervisorRef::which_children).
    pub async fn restart_child(&self, id: &str) -> Result<(), AdminError> {
        let placed = self.current().await?;
        let admin = super::hosted::Admin::Restart(id.to_string());
        self.settle(placed.admin(admin).await).await
    }

    /// Forgets a stopped child of the nested supervisor; see
    /// [`SupervisorRef::delete_child`].
    ///
    /// # Errors
    ///
    /// Those of [`SupervisorRef::delete_child`]; as
    /// [`which_children`](ChildSupervisorRef::which_children).
    pub async fn delete_child(&self, id: &str) -> Result<(), AdminError> {
        let placed = self.current().await?;
        let admin = super::hosted::Admin::Delete(id.to_string());
        self.settle(placed.admin(admin).await).await
    }
}

impl ChildSupervisorRef {
    /// A stable handle to the actor child `id` of the nested supervisor: each call
    /// asks the parent where the nested supervisor runs now, then goes to the actor
    /// hosting it there, which finds the child's current process. It follows the
    /// child's restarts and the nested supervisor's, to another node among them.
    /// Nothing is checked until a call.
    ///
    /// A [`call`](SupervisedRef::call) waits through a restart of either;
    /// [`try_call`](SupervisedRef::try_call) fails at once with
    /// [`CallError::Restarting`] (naming the child) between incarnations of either.
    /// The handle works in the parent's process: sent to another process, it is
    /// refused (`NodeError::NotAcrossNodes` to a node).
    ///
    /// Its calls' errors, beyond those of a [`SupervisedRef`]:
    /// [`CallError::NotRunning`] when the nested supervisor is stopped, deleted or
    /// unknown, or its parent ended; [`CallError::NotHosted`] when the parent's
    /// child `self.id()` is not a supervisor on a node; [`CallError::Node`]
    /// (`NodeDown`) for a call in flight when the nested supervisor's node dies.
    pub fn child_ref<A: Actor>(&self, id: &str) -> SupervisedRef<A> {
        SupervisedRef::new(Sup::Nested(self.clone()), id.to_string())
    }

    /// Sends `msg` to the nested supervisor's actor child `child`, through the
    /// incarnation the parent names now; the child's reply, encoded.
    pub(super) async fn to_child<M: Serialize>(
        &self,
        child: &str,
        msg: M,
        send: impl Fn() -> Delivery,
        wait: bool,
    ) -> Result<Vec<u8>, CallError> {
        let mut failed: Option<Identity> = None;
        for tries in 1.. {
            let placed = self.incarnation(child, wait).await?;
            if failed.as_ref() == Some(placed.addr()) {
                // The parent has not seen that incarnation end yet.
                if !wait {
                    return Err(CallError::Restarting(child.to_string()));
                }
                tokio::time::sleep(Duration::from_millis(5 << tries)).await;
            }
            let payload = placed.encode(&msg)?;
            match placed.through(child, payload, send()).await {
                // That incarnation ended before the message reached it (its process
                // gone, or exiting with its actor stopped): no effect anywhere, so
                // the next one may have it.
                Err(CallError::Remote(RemoteError::NoProcess(_) | RemoteError::NoActor(_)))
                    if tries < MAX_TRIES =>
                {
                    failed = Some(placed.addr().clone());
                }
                out => return out,
            }
        }
        unreachable!("the loop returns by its last try")
    }

    /// The nested supervisor's current incarnation, for a call to its child
    /// `child`: with `wait`, the next one while the parent restarts it.
    async fn incarnation(&self, child: &str, wait: bool) -> Result<Placed, CallError> {
        for _ in 0..MAX_TRIES {
            match self.current().await {
                Err(AdminError::Restarting(_)) if wait => {
                    // The parent answers once the child runs again (or never will).
                    self.parent
                        .resolve(&self.id, true)
                        .await
                        .map_err(|e| match e {
                            CallError::NotRunning(_, why) => self.not_running(child, &why),
                            CallError::Restarting(_) => CallError::Restarting(child.to_string()),
                            e => e,
                        })?;
                }
                out => return out.map_err(|e| self.call_error(child, e)),
            }
        }
        Err(CallError::Restarting(child.to_string()))
    }

    fn not_running(&self, child: &str, why: &str) -> CallError {
        CallError::NotRunning(
            child.to_string(),
            format!("its supervisor {} is not running: {why}", self.id),
        )
    }

    /// The parent's refusal, as the error of a call to `child`.
    fn call_error(&self, child: &str, e: AdminError) -> CallError {
        match e {
            AdminError::NotRunning { why, .. } => self.not_running(child, &why),
            AdminError::Restarting(_) => CallError::Restarting(child.to_string()),
            AdminError::NotHosted(id) => CallError::NotHosted(id),
            AdminError::Node(e) => CallError::Node(e),
            e => self.not_running(child, &e.to_string()),
        }
    }

    /// Waits until the nested supervisor is gone for good, and says how it ended:
    ///
    /// - stopped by the parent's [`terminate_child`](SupervisorRef::terminate_child)
    ///   or deleted, or ended normally and not restarted (a transient child):
    ///   [`SupervisorExit::Shutdown`];
    /// - ended otherwise and not restarted (a temporary child): [`SupervisorExit::Lost`]
    ///   with how its process ended, as the parent's `ChildExited` said;
    /// - the parent ended, the nested supervisor with it: the parent's own exit,
    ///   `Shutdown` when it was shut down, [`SupervisorExit::IntensityExceeded`]
    ///   when it gave up because its children (the nested one among them) restarted
    ///   too often.
    ///
    /// Restarts, on another node among them, are waited through: so is a restart
    /// that [`restart_child`](SupervisorRef::restart_child) makes before this sees
    /// the stop. It answers at once for a nested supervisor already gone, by the
    /// parent's last events (`Shutdown` for an id it never had); of a parent
    /// running on a node, whose children this process cannot ask, it is the
    /// parent's end.
    pub async fn join(&self) -> SupervisorExit {
        let parent = self.parent.clone();
        tokio::select! {
            biased;
            exit = parent.join() => exit,
            exit = self.gone() => exit,
        }
    }

    /// The nested supervisor's end within a parent that runs on; pending forever
    /// once the parent has ended (its own end says it then).
    async fn gone(&self) -> SupervisorExit {
        // Its history as well: a temporary child's end may have come before this
        // call, and only its `ChildExited` says how.
        let mut events = self.parent.events_from_start();
        // How its last process ended, if it was not started again since.
        let mut exited: Option<ExitReason> = None;
        let mut note = |event: SupervisorEvent| match event {
            SupervisorEvent::ChildExited { id, reason } if id == self.id => exited = Some(reason),
            SupervisorEvent::ChildStarted { id, .. } | SupervisorEvent::Restarted { id, .. }
                if id == self.id =>
            {
                exited = None;
            }
            _ => {}
        };
        loop {
            while let Ok(event) = events.try_recv() {
                note(event);
            }
            let children = match self.parent.local() {
                Ok(cell) => {
                    let (tx, rx) = oneshot::channel();
                    match cell.cast(Msg::Which(tx)) {
                        Ok(()) => rx.await.ok(),
                        Err(_) => None,
                    }
                }
                Err(_) => None,
            };
            let Some(children) = children else {
                return std::future::pending().await;
            };
            let running = children
                .iter()
                .any(|c| c.id == self.id && c.state != ChildState::Stopped);
            if !running {
                // The parent sent its events before it answered.
                while let Ok(event) = events.try_recv() {
                    note(event);
                }
                return match exited {
                    Some(reason) if !reason.is_normal() => SupervisorExit::Lost { reason },
                    _ => SupervisorExit::Shutdown,
                };
            }
            // Any event of the parent may be its stop: look again.
            match events.next().await {
                Some(event) => note(event),
                None => return std::future::pending().await,
            }
        }
    }
}
