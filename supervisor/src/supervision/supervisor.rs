//! `Supervisor`: the flags and children of a supervisor being set up, and its start.

use std::sync::atomic::{AtomicU64, Ordering};

use multiproc_core::{ChildSpec, RestartWindow, SupervisorFlags};
use tokio::sync::watch;
use tokio::time::Instant;

use super::actor::SupervisorActor;
use super::event::Hub;
use super::slot::Slot;
use super::state::State;
use super::{AdminError, Events, SupervisorExit, SupervisorRef};
use crate::node::Node;
use crate::runtime;
use crate::runtime::error::Error;

/// The number in the next default name.
static NEXT_NAME: AtomicU64 = AtomicU64::new(1);

/// A supervisor being set up: flags and children, then [`start`](Supervisor::start).
#[derive(Debug)]
pub struct Supervisor {
    flags: SupervisorFlags,
    children: Vec<ChildSpec>,
    events: Hub,
    done: watch::Sender<Option<SupervisorExit>>,
    max_children: Option<usize>,
    name: String,
    /// The node its own actor is to run on; `None` for this process.
    node: Option<Node>,
}

impl Supervisor {
    /// A supervisor with these flags and no children yet.
    pub fn new(flags: SupervisorFlags) -> Supervisor {
        let done = watch::channel(None).0;
        Supervisor {
            flags,
            children: Vec::new(),
            events: Hub::new(done.subscribe()),
            done,
            max_children: None,
            node: None,
            name: format!("Supervisor-{}", NEXT_NAME.fetch_add(1, Ordering::Relaxed)),
        }
    }

    /// Names the supervisor (by default `Supervisor-N`, N counting the supervisors
    /// made in this process): the `supervisor` label of its metrics (feature
    /// `metrics`).
    pub fn name(mut self, name: impl Into<String>) -> Supervisor {
        self.name = name.into();
        self
    }

    /// Refuses `start_child` beyond `max` children (running or restarting).
    pub fn max_children(mut self, max: usize) -> Supervisor {
        self.max_children = Some(max);
        self
    }

    /// Runs the supervisor itself on `node`: [`start`](Supervisor::start) places a
    /// process there that hosts it, and its children are that process's children,
    /// so their restarts happen there, whatever the link to this process does. The
    /// returned [`SupervisorRef`] works as a local one's, each request a call to the
    /// node (see the book's *Distribution* chapter for what differs).
    ///
    /// Child specs travel by their registered entry and encoded arguments: one whose
    /// arguments hold a handle of this host (a `Queue`, `Lock`, `Value`, an
    /// `ActorRef`, …) or that is itself placed ([`ChildSpec::on`]) is refused with
    /// [`NodeError::NotAcrossNodes`](multiproc_core::NodeError::NotAcrossNodes).
    pub fn on(mut self, node: &Node) -> Supervisor {
        self.node = Some(node.clone());
        self
    }

    /// This supervisor, set up to run on a node ([`on`](Supervisor::on)), as the
    /// child `id` of a supervisor here: the child is the process that hosts it there,
    /// of kind [`ChildKind::Supervisor`](multiproc_core::ChildKind::Supervisor) and
    /// shutdown `Infinity` (it stops its own children first), so the parent restarts
    /// it when it ends or its node dies, by the spec's
    /// [`restart_on`](ChildSpec::restart_on), with its children, which are in the
    /// spec. The parent's [`SupervisorRef::child_supervisor`] is its handle, across
    /// restarts. Its own events do not come back: [`events`](Supervisor::events)
    /// taken before this ends without any.
    ///
    /// # Errors
    ///
    /// [`AdminError::Invalid`] for a bad child spec, or with
    /// [`SpecError::InvalidStart`](multiproc_core::SpecError::InvalidStart) when no
    /// node was set; [`AdminError::Start`] for a child that cannot go to the node
    /// (as for [`on`](Supervisor::on)).
    ///
    /// # Examples
    ///
    /// See [`ChildSupervisorRef`](crate::ChildSupervisorRef).
    pub fn into_child(self, id: impl Into<String>) -> Result<ChildSpec, AdminError> {
        super::nested::spec(
            id.into(),
            self.node,
            self.flags,
            self.children,
            self.max_children,
            self.name,
        )
    }

    /// Adds a child; children start in the order they are added.
    pub fn child(mut self, spec: ChildSpec) -> Supervisor {
        self.children.push(spec);
        self
    }

    /// A stream of the supervisor's events, the first children's starts included
    /// (the same as [`SupervisorRef::events_from_start`] once it runs). If the
    /// supervisor is dropped unstarted, or fails to start, the stream ends.
    pub fn events(&self) -> Events {
        self.events.subscribe()
    }

    /// Runs this supervisor as the work of the current process, for a supervisor that
    /// is itself the child of another ([`ChildKind::Supervisor`](multiproc_core::ChildKind::Supervisor)): starts it, and
    /// returns when the process is asked to stop (after shutting the children down) or
    /// when the supervisor ends on its own.
    ///
    /// # Errors
    ///
    /// As [`start`](Supervisor::start); [`AdminError::Escalated`] when the supervisor
    /// gave up (restart intensity): returned from the child's function, it ends the
    /// process with `ExitReason::Failed`, and the parent supervisor decides, as OTP
    /// escalates a supervisor's `shutdown` exit.
    pub async fn run(self) -> Result<(), AdminError> {
        let sup = self.start().await?;
        let exit = tokio::select! {
            () = crate::runtime::stop::wait_for_stop() => sup.shutdown().await,
            exit = sup.join() => exit,
        };
        match exit {
            SupervisorExit::IntensityExceeded
            | SupervisorExit::Escalated { .. }
            | SupervisorExit::Lost { .. } => Err(AdminError::Escalated(exit)),
            SupervisorExit::Shutdown | SupervisorExit::AutoShutdown => Ok(()),
        }
    }

    /// Validates the specs, starts the children in order and returns the running
    /// supervisor.
    ///
    /// # Errors
    ///
    /// [`AdminError::Invalid`] for a bad spec; [`AdminError::Start`] when a child
    /// fails to start, after the ones already started were stopped in reverse order
    /// (with [`Error::Exhausted`] as its source when the system had no room for it,
    /// naming the limit).
    pub async fn start(self) -> Result<SupervisorRef, AdminError> {
        let Supervisor {
            flags,
            children,
            events,
            done,
            max_children,
            name,
            node,
        } = self;
        if let Some(node) = node {
            let ended = done.subscribe();
            let placed = super::placed::start(
                &node,
                flags,
                children,
                max_children,
                name,
                events.clone(),
                done,
            )
            .await?;
            return Ok(SupervisorRef {
                to: super::handle::To::Placed(std::sync::Arc::new(placed)),
                events,
                done: ended,
            });
        }
        flags.validate(&children)?;
        // The runtime is where every child would start: without it, the first one
        // cannot.
        runtime::ensure().map_err(|source| AdminError::Start {
            id: children.first().map(|c| c.id.clone()).unwrap_or_default(),
            source,
        })?;
        runtime::run(async move {
            let mut state = State {
                flags,
                slots: children.into_iter().map(Slot::new).collect(),
                window: RestartWindow::default(),
                epoch: Instant::now(),
                events: events.clone(),
                myself: None,
                done,
                max_children,
                name,
            };
            for i in 0..state.slots.len() {
                if let Err(source) = state.start_slot(i, false).await {
                    let id = state.slots[i].spec.id.clone();
                    state.stop_all().await;
                    return Err(AdminError::Start { id, source });
                }
            }
            let done = state.done.subscribe();
            let (cell, _) = ractor::Actor::spawn(None, SupervisorActor, state)
                .await
                .map_err(|e| AdminError::Start {
                    id: String::new(),
                    source: Error::os(
                        "cannot start the supervisor actor",
                        std::io::Error::other(e.to_string()),
                    ),
                })?;
            let sup = SupervisorRef {
                to: super::handle::To::Local(cell),
                events,
                done,
            };
            super::handle::note_running(&sup);
            Ok(sup)
        })
        .await
    }
}
