//! `Supervisor`: OTP's supervisor over OS processes, as one actor in the supervising
//! process.
//!
//! The decisions (restart or not, which siblings, how many restarts are too many, how
//! long to wait) are pure functions of `multiproc-core`; this actor only acts on them:
//! it starts and stops processes, watches them exit, keeps the children's states and
//! reports every step as a [`SupervisorEvent`].
//!
//! # Invariants
//!
//! - Children start in spec order, each answering its handshake before the next
//!   starts; they stop in reverse order.
//! - Each child slot has an incarnation number, bumped whenever the supervisor stops,
//!   replaces or forgets its process: an exit or a due restart that names an older
//!   incarnation is stale and ignored.
//! - A restart that fails is retried by a message to the actor itself, after a
//!   backoff, so requests (a shutdown among them) are handled in between.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use multiproc_core::{
    AutoShutdown, BackoffState, ChildKind, ChildSpec, Directive, EntryKind, ExitReason, Restart,
    RestartWindow, Shutdown, SpecError, StartSpec, SupervisorFlags, codec, plan_restart,
    should_restart,
};
use ractor::{ActorProcessingErr, ActorRef as CellRef};
use tokio::sync::{broadcast, oneshot, watch};
use tokio::time::Instant;

use crate::actor::Actor;
use crate::runtime::registry;
use crate::target::Target;
use crate::{CallError, Error, Process, runtime};

/// How many events a slow subscriber may fall behind before it misses some.
const EVENT_BUFFER: usize = 1024;

/// Calls that may wait for one child's restart before more are refused.
const MAX_WAITERS: usize = 1024;

/// `Shutdown::Infinity`, as a timeout nobody reaches.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A child spec for the registered function `f` with `args`.
///
/// # Errors
///
/// [`Error::Unregistered`] or [`Error::Closure`] for an unregistered `f`;
/// [`Error::Args`] if the arguments do not encode, or hold a `Connection` (a restarted
/// child could not get it again).
pub fn function_child<F, M>(id: impl Into<String>, f: F, args: F::Args) -> Result<ChildSpec, Error>
where
    F: Target<M>,
{
    let _ = f;
    let entry = registry::by_type::<F>(EntryKind::Function)?;
    child_spec(id.into(), entry, &args)
}

/// A child spec for the registered actor `A` started with `args`.
///
/// # Errors
///
/// As [`function_child`].
pub fn actor_child<A: Actor>(id: impl Into<String>, args: A::Args) -> Result<ChildSpec, Error> {
    let entry = registry::by_type::<A>(EntryKind::Actor)?;
    child_spec(id.into(), entry, &args)
}

fn child_spec<T: serde::Serialize>(
    id: String,
    entry: &'static registry::Entry,
    args: &T,
) -> Result<ChildSpec, Error> {
    let (encoded, fds) = multiproc_transport::collect_fds(|| codec::encode(args));
    let args = encoded.map_err(|source| Error::Args {
        name: id.clone(),
        source,
    })?;
    if !fds.is_empty() {
        return Err(Error::Args {
            name: id,
            source: multiproc_core::CodecError::Encode {
                type_name: std::any::type_name::<T>(),
                message: "a supervised child cannot take a Connection: a restart could not hand it over again".into(),
            },
        });
    }
    Ok(ChildSpec::new(
        id,
        StartSpec {
            kind: entry.kind,
            entry: entry.name.to_string(),
            args,
        },
    ))
}

/// Something a supervisor did or saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SupervisorEvent {
    /// A child started (first start, or a start through the admin API).
    ChildStarted {
        /// Its id.
        id: String,
        /// Its process name.
        name: String,
        /// Its pid.
        pid: u32,
    },
    /// A child's process ended, on its own or stopped by the supervisor.
    ChildExited {
        /// Its id.
        id: String,
        /// Why.
        reason: ExitReason,
    },
    /// A child will be started again after `delay`; meanwhile it is `Restarting`.
    Restarting {
        /// Its id.
        id: String,
        /// The backoff delay.
        delay: Duration,
    },
    /// A child was started again.
    Restarted {
        /// Its id.
        id: String,
        /// Its new process name.
        name: String,
        /// Its new pid.
        pid: u32,
    },
    /// Starting a child again failed; it will be retried.
    RestartFailed {
        /// Its id.
        id: String,
        /// Why.
        error: String,
    },
    /// Restarts came too often: the supervisor stops everything and exits.
    IntensityExceeded {
        /// Restarts counted in the window.
        restarts: usize,
        /// The window.
        within: Duration,
    },
    /// The supervisor has stopped all its children and ended.
    ShutDown {
        /// Why.
        reason: SupervisorExit,
    },
}

/// Why a supervisor ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SupervisorExit {
    /// It was asked to shut down.
    Shutdown,
    /// Its children restarted more often than its intensity allows (OTP escalates
    /// this to the supervisor's own supervisor).
    IntensityExceeded,
    /// A significant child ended and the auto-shutdown policy applied.
    AutoShutdown,
    /// A child's decider said to escalate its exit.
    Escalated {
        /// The child.
        id: String,
        /// How it ended.
        reason: ExitReason,
    },
}

/// The state of one child, as `which_children` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildState {
    /// Its process runs.
    Running,
    /// It waits to be started again (backoff, or a failed restart being retried).
    Restarting,
    /// It is not running and will not be restarted unless asked.
    Stopped,
}

/// One child, as `which_children` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

/// Counts of children, as OTP's `count_children`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
    /// The supervisor has as many children as it may.
    #[error("the supervisor has its maximum of {0} children")]
    MaxChildren(usize),
    /// The supervisor gave up on its own (see [`Supervisor::run`]).
    #[error("the supervisor gave up: {0:?}")]
    Escalated(SupervisorExit),
}

/// A supervisor being set up: flags and children, then [`start`](Supervisor::start).
#[derive(Debug)]
pub struct Supervisor {
    flags: SupervisorFlags,
    children: Vec<ChildSpec>,
    events: broadcast::Sender<SupervisorEvent>,
    max_children: Option<usize>,
}

impl Supervisor {
    /// A supervisor with these flags and no children yet.
    pub fn new(flags: SupervisorFlags) -> Supervisor {
        Supervisor {
            flags,
            children: Vec::new(),
            events: broadcast::channel(EVENT_BUFFER).0,
            max_children: None,
        }
    }

    /// Refuses `start_child` beyond `max` children (running or restarting).
    pub fn max_children(mut self, max: usize) -> Supervisor {
        self.max_children = Some(max);
        self
    }

    /// Adds a child; children start in the order they are added.
    pub fn child(mut self, spec: ChildSpec) -> Supervisor {
        self.children.push(spec);
        self
    }

    /// A stream of the supervisor's events from now on (the first children's starts
    /// included, if taken before [`start`](Supervisor::start)).
    pub fn events(&self) -> Events {
        Events {
            rx: self.events.subscribe(),
        }
    }

    /// Runs this supervisor as the work of the current process, for a supervisor that
    /// is itself the child of another ([`ChildKind::Supervisor`]): starts it, and
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
            SupervisorExit::IntensityExceeded | SupervisorExit::Escalated { .. } => {
                Err(AdminError::Escalated(exit))
            }
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
        self.flags.validate(&self.children)?;
        // The runtime is where every child would start: without it, the first one
        // cannot.
        runtime::ensure().map_err(|source| AdminError::Start {
            id: self
                .children
                .first()
                .map(|c| c.id.clone())
                .unwrap_or_default(),
            source,
        })?;
        let Supervisor {
            flags,
            children,
            events,
            max_children,
        } = self;
        runtime::run(async move {
            let mut state = State {
                flags,
                slots: children.into_iter().map(Slot::new).collect(),
                window: RestartWindow::default(),
                epoch: Instant::now(),
                events: events.clone(),
                myself: None,
                done: watch::channel(None).0,
                max_children,
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
            Ok(SupervisorRef { cell, events, done })
        })
        .await
    }
}

/// A subscription to a supervisor's events.
#[derive(Debug)]
pub struct Events {
    rx: broadcast::Receiver<SupervisorEvent>,
}

impl Events {
    /// The next event, or `None` once the supervisor has ended and every event was
    /// read. A subscriber that fell more than 1024 events behind skips the oldest.
    pub async fn next(&mut self) -> Option<SupervisorEvent> {
        loop {
            match self.rx.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// A running supervisor: its admin API, its events and its end.
#[derive(Debug, Clone)]
pub struct SupervisorRef {
    cell: CellRef<Msg>,
    events: broadcast::Sender<SupervisorEvent>,
    done: watch::Receiver<Option<SupervisorExit>>,
}

impl SupervisorRef {
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
        Events {
            rx: self.events.subscribe(),
        }
    }

    /// A stable handle to the actor child `id`, across its restarts.
    pub fn child_ref<A: Actor>(&self, id: &str) -> SupervisedRef<A> {
        SupervisedRef {
            sup: self.clone(),
            id: id.to_string(),
            _actor: std::marker::PhantomData,
        }
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

/// One child spec, many children started on demand with their own arguments (Elixir's
/// `DynamicSupervisor`): a `OneForOne` supervisor whose children are made from a
/// template.
#[derive(Debug)]
pub struct DynamicSupervisor {
    sup: SupervisorRef,
    template: ChildSpec,
    next: AtomicU64,
}

impl DynamicSupervisor {
    /// Starts a dynamic supervisor with no children. The strategy is `OneForOne`
    /// whatever `flags` say; `max_children` bounds the children running or restarting.
    ///
    /// # Errors
    ///
    /// [`AdminError::Invalid`] for an invalid template or flags.
    pub async fn start(
        flags: SupervisorFlags,
        template: ChildSpec,
        max_children: Option<usize>,
    ) -> Result<DynamicSupervisor, AdminError> {
        let flags = SupervisorFlags {
            strategy: multiproc_core::Strategy::OneForOne,
            ..flags
        };
        flags.validate(std::slice::from_ref(&template))?;
        let mut sup = Supervisor::new(flags);
        if let Some(max) = max_children {
            sup = sup.max_children(max);
        }
        Ok(DynamicSupervisor {
            sup: sup.start().await?,
            template,
            next: AtomicU64::new(1),
        })
    }

    /// Starts a child from the template with `args` in place of the template's (they
    /// must be the arguments its function or actor takes); returns its id,
    /// `<template id>-<n>`.
    ///
    /// # Errors
    ///
    /// [`AdminError::MaxChildren`], [`AdminError::Start`], [`AdminError::Gone`], or
    /// [`AdminError::Start`] with [`Error::Args`] when `args` do not encode.
    pub async fn start_child<T: serde::Serialize>(&self, args: &T) -> Result<String, AdminError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n}", self.template.id);
        let encoded = codec::encode(args).map_err(|source| AdminError::Start {
            id: id.clone(),
            source: Error::Args {
                name: id.clone(),
                source,
            },
        })?;
        let mut spec = self.template.clone();
        spec.id = id.clone();
        spec.start.args = encoded;
        self.sup.start_child(spec).await?;
        Ok(id)
    }

    /// Stops a child and forgets it.
    ///
    /// # Errors
    ///
    /// [`AdminError::NotFound`], [`AdminError::Gone`].
    pub async fn terminate_child(&self, id: &str) -> Result<(), AdminError> {
        self.sup.terminate_child(id).await?;
        match self.sup.delete_child(id).await {
            Ok(()) | Err(AdminError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The supervisor underneath: events, `which_children`, `count_children`,
    /// `shutdown`, `join`.
    pub fn supervisor(&self) -> &SupervisorRef {
        &self.sup
    }
}

/// A stable handle to a supervised actor child, across its restarts: each call goes to
/// the child's current process.
///
/// A call made while the child is restarting waits for the new incarnation (up to
/// 1024 callers per child; more get [`CallError::Restarting`]), and fails with
/// [`CallError::NotRunning`] if the child is stopped instead;
/// [`try_call`](SupervisedRef::try_call) does not wait. A call already inside a process that dies
/// fails with `RemoteError::Exited`, and is not repeated: the message may have had
/// effects.
#[derive(Debug)]
pub struct SupervisedRef<A> {
    sup: SupervisorRef,
    id: String,
    _actor: std::marker::PhantomData<fn() -> A>,
}

impl<A> Clone for SupervisedRef<A> {
    fn clone(&self) -> Self {
        SupervisedRef {
            sup: self.sup.clone(),
            id: self.id.clone(),
            _actor: std::marker::PhantomData,
        }
    }
}

impl<A: Actor> SupervisedRef<A> {
    async fn current(&self, wait: bool) -> Result<crate::ActorRef<A>, CallError> {
        let (tx, rx) = oneshot::channel();
        let gone = || CallError::NotRunning(self.id.clone(), "its supervisor ended".into());
        self.sup
            .cell
            .cast(Msg::Resolve {
                id: self.id.clone(),
                wait,
                reply: tx,
            })
            .map_err(|_| gone())?;
        let identity = rx.await.map_err(|_| gone())??;
        Ok(crate::ActorRef::at(identity))
    }

    /// Calls the child, waiting through a restart if there is one.
    ///
    /// # Errors
    ///
    /// [`CallError::NotRunning`], [`CallError::Restarting`] (too many waiting), and
    /// those of [`ActorRef::call`](crate::ActorRef::call).
    pub async fn call(&self, msg: A::Msg) -> Result<A::Reply, CallError> {
        self.current(true).await?.call(msg).await
    }

    /// Like [`call`](SupervisedRef::call), within `timeout` in all (the wait for a
    /// restart included).
    ///
    /// # Errors
    ///
    /// As [`call`](SupervisedRef::call), plus [`CallError::Timeout`].
    pub async fn call_timeout(
        &self,
        msg: A::Msg,
        timeout: std::time::Duration,
    ) -> Result<A::Reply, CallError> {
        let this = self.clone();
        runtime::run(async move {
            tokio::time::timeout(timeout, this.call(msg))
                .await
                .unwrap_or(Err(CallError::Timeout(timeout)))
        })
        .await
    }

    /// Calls the child only if it runs now.
    ///
    /// # Errors
    ///
    /// [`CallError::Restarting`] while it restarts; as [`call`](SupervisedRef::call).
    pub async fn try_call(&self, msg: A::Msg) -> Result<A::Reply, CallError> {
        self.current(false).await?.call(msg).await
    }
}

enum Msg {
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
}

struct Slot {
    spec: ChildSpec,
    process: Option<Process>,
    name: Option<String>,
    identity: Option<multiproc_core::Identity>,
    state: ChildState,
    /// Callers waiting for the child to run again (bounded by `MAX_WAITERS`).
    waiters: Vec<oneshot::Sender<Result<multiproc_core::Identity, CallError>>>,
    incarnation: u64,
    backoff: BackoffState,
    started_at: Instant,
}

impl Slot {
    fn new(spec: ChildSpec) -> Slot {
        Slot {
            spec,
            process: None,
            name: None,
            identity: None,
            state: ChildState::Stopped,
            waiters: Vec::new(),
            incarnation: 0,
            backoff: BackoffState::default(),
            started_at: Instant::now(),
        }
    }
}

struct State {
    flags: SupervisorFlags,
    slots: Vec<Slot>,
    window: RestartWindow,
    epoch: Instant,
    events: broadcast::Sender<SupervisorEvent>,
    myself: Option<CellRef<Msg>>,
    done: watch::Sender<Option<SupervisorExit>>,
    max_children: Option<usize>,
}

impl State {
    fn emit(&self, event: SupervisorEvent) {
        match &event {
            SupervisorEvent::ChildExited { reason, .. } if !reason.is_normal() => {
                tracing::warn!(?event, "supervisor")
            }
            SupervisorEvent::RestartFailed { .. } | SupervisorEvent::IntensityExceeded { .. } => {
                tracing::error!(?event, "supervisor")
            }
            _ => tracing::info!(?event, "supervisor"),
        }
        let _ = self.events.send(event);
    }

    /// Fails the calls waiting for slot `i` to run again.
    fn release_waiters(&mut self, i: usize, why: &str) {
        let id = self.slots[i].spec.id.clone();
        for waiter in self.slots[i].waiters.drain(..) {
            let _ = waiter.send(Err(CallError::NotRunning(id.clone(), why.to_string())));
        }
    }

    /// The identity of a running child; with `wait`, a restarting child's next one.
    fn resolve(
        &mut self,
        id: &str,
        wait: bool,
        reply: oneshot::Sender<Result<multiproc_core::Identity, CallError>>,
    ) {
        let Some(i) = self.index(id) else {
            let _ = reply.send(Err(CallError::NotRunning(
                id.to_string(),
                "no child has this id".into(),
            )));
            return;
        };
        let slot = &mut self.slots[i];
        match slot.state {
            ChildState::Running => {
                let _ = reply.send(
                    slot.identity
                        .clone()
                        .ok_or_else(|| CallError::Restarting(id.to_string())),
                );
            }
            ChildState::Restarting if wait && slot.waiters.len() < MAX_WAITERS => {
                slot.waiters.push(reply)
            }
            ChildState::Restarting => {
                let _ = reply.send(Err(CallError::Restarting(id.to_string())));
            }
            ChildState::Stopped => {
                let _ = reply.send(Err(CallError::NotRunning(
                    id.to_string(),
                    "it is stopped".into(),
                )));
            }
        }
    }

    fn index(&self, id: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.spec.id == id)
    }

    /// Starts slot `i`'s process and a task that reports its exit.
    async fn start_slot(&mut self, i: usize, restart: bool) -> Result<(), Error> {
        let spec = &self.slots[i].spec;
        let mut process = Process::from_start(&spec.start)
            .supervised()
            .limits(spec.limits)
            .start_method(self.flags.start_method);
        if let Some(interval) = spec.heartbeat {
            process = process.heartbeat(interval);
        }
        process.start().await?;
        let slot = &mut self.slots[i];
        slot.incarnation = next_incarnation();
        slot.state = ChildState::Running;
        slot.started_at = Instant::now();
        slot.name = Some(process.name().to_string());
        slot.identity = Some(process.identity().clone());
        let (id, name, pid) = (
            slot.spec.id.clone(),
            process.name().to_string(),
            process.pid().unwrap_or(0),
        );
        if let (Some(me), Ok(sentinel)) = (self.myself.clone(), process.sentinel()) {
            watch_exit(me, id.clone(), slot.incarnation, sentinel);
        }
        slot.process = Some(process);
        for waiter in slot.waiters.drain(..) {
            let _ = waiter.send(Ok(slot.identity.clone().expect("set just above")));
        }
        self.emit(if restart {
            SupervisorEvent::Restarted { id, name, pid }
        } else {
            SupervisorEvent::ChildStarted { id, name, pid }
        });
        Ok(())
    }

    /// Stops slot `i` by its shutdown policy and waits for it.
    async fn stop_slot(&mut self, i: usize) {
        self.release_waiters(i, "it was stopped");
        let slot = &mut self.slots[i];
        slot.incarnation = next_incarnation();
        slot.state = ChildState::Stopped;
        let Some(process) = slot.process.take() else {
            return;
        };
        let reason = match slot.spec.shutdown {
            Shutdown::BrutalKill => {
                let _ = process.kill();
                process.join().await.ok()
            }
            Shutdown::Timeout(d) => process.stop(d).await.ok(),
            Shutdown::Infinity => process.stop(FOREVER).await.ok(),
        };
        let id = slot.spec.id.clone();
        if let Some(reason) = reason {
            self.emit(SupervisorEvent::ChildExited { id, reason });
        }
    }

    /// Stops every child, last started first.
    async fn stop_all(&mut self) {
        for i in (0..self.slots.len()).rev() {
            self.stop_slot(i).await;
        }
    }

    fn now(&self) -> Duration {
        Instant::now().duration_since(self.epoch)
    }

    /// Counts a restart; `false` if that was one too many (the supervisor then ends).
    async fn count_restart(&mut self) -> bool {
        match self.window.add(self.flags.intensity, self.now()) {
            Ok(()) => true,
            Err(e) => {
                self.emit(SupervisorEvent::IntensityExceeded {
                    restarts: e.restarts,
                    within: e.within,
                });
                self.finish(SupervisorExit::IntensityExceeded).await;
                false
            }
        }
    }

    async fn finish(&mut self, exit: SupervisorExit) {
        for i in 0..self.slots.len() {
            self.release_waiters(i, "its supervisor ended");
        }
        self.stop_all().await;
        self.emit(SupervisorEvent::ShutDown {
            reason: exit.clone(),
        });
        self.done.send_replace(Some(exit));
        if let Some(me) = &self.myself {
            me.stop(None);
        }
    }

    fn schedule(&self, due: Vec<(String, u64)>, delay: Duration, ran_for: Duration) {
        let Some(me) = self.myself.clone() else {
            return;
        };
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = me.cast(Msg::RestartDue { due, ran_for });
        });
    }

    async fn on_exit(&mut self, id: String, incarnation: u64, reason: ExitReason) {
        let Some(i) = self.index(&id) else { return };
        if self.slots[i].incarnation != incarnation || self.slots[i].state != ChildState::Running {
            return;
        }
        let ran_for = self.slots[i].started_at.elapsed();
        self.slots[i].process = None;
        self.slots[i].state = ChildState::Stopped;
        self.emit(SupervisorEvent::ChildExited {
            id: id.clone(),
            reason: reason.clone(),
        });
        let spec = &self.slots[i].spec;
        if crate::process::is_exiting() || crate::runtime::stop::stop_requested() {
            // The process is ending (or asked to): its children are going for good.
            return;
        }
        let directive =
            spec.decider
                .decide(&reason)
                .unwrap_or(if should_restart(spec.restart, &reason) {
                    Directive::Restart
                } else {
                    Directive::Stop
                });
        if directive == Directive::Escalate {
            self.finish(SupervisorExit::Escalated { id, reason }).await;
            return;
        }
        // A temporary child is never restarted, whatever its decider says.
        if directive == Directive::Stop || spec.restart == Restart::Temporary {
            let significant = spec.significant;
            self.release_waiters(i, "it ended and is not restarted");
            if self.slots[i].spec.restart == Restart::Temporary {
                self.slots.remove(i);
            }
            if significant && self.auto_shutdown_due() {
                self.finish(SupervisorExit::AutoShutdown).await;
            }
            return;
        }
        if !self.count_restart().await {
            return;
        }
        let restarts: Vec<Restart> = self.slots.iter().map(|s| s.spec.restart).collect();
        let plan = plan_restart(self.flags.strategy, &restarts, i);
        for &j in &plan.stop {
            self.stop_slot(j).await;
        }
        let ids: Vec<String> = plan
            .restart
            .iter()
            .map(|&j| self.slots[j].spec.id.clone())
            .collect();
        let mut dropped: Vec<usize> = plan.drop;
        dropped.sort_unstable_by(|a, b| b.cmp(a));
        for j in dropped {
            self.slots.remove(j);
        }
        // Without a delay, the first attempt runs now rather than through a timer and
        // the mailbox; a failed attempt is still retried through the mailbox.
        match self.mark_restarting(ids, ran_for) {
            Some((due, delay)) if delay.is_zero() => self.on_restart_due(due, ran_for).await,
            Some((due, delay)) => self.schedule(due, delay, ran_for),
            None => {}
        }
    }

    /// Marks `ids` as restarting and schedules their start after the first one's
    /// backoff delay.
    fn restart_later(&mut self, ids: Vec<String>, ran_for: Duration) {
        if let Some((due, delay)) = self.mark_restarting(ids, ran_for) {
            self.schedule(due, delay, ran_for);
        }
    }

    /// Marks `ids` as restarting; returns them with their incarnations, and the delay
    /// before their restart.
    fn mark_restarting(
        &mut self,
        ids: Vec<String>,
        ran_for: Duration,
    ) -> Option<(Vec<(String, u64)>, Duration)> {
        let first = ids.first().and_then(|id| self.index(id))?;
        let delay =
            self.slots[first]
                .backoff
                .next_delay(&self.flags.backoff, ran_for, random_unit());
        let mut due = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(j) = self.index(&id) {
                self.slots[j].state = ChildState::Restarting;
                self.slots[j].incarnation = next_incarnation();
                due.push((id.clone(), self.slots[j].incarnation));
                self.emit(SupervisorEvent::Restarting { id, delay });
            }
        }
        Some((due, delay))
    }

    async fn on_restart_due(&mut self, due: Vec<(String, u64)>, ran_for: Duration) {
        // A child stopped, restarted or deleted meanwhile has another incarnation.
        let mut pending: VecDeque<String> = due
            .into_iter()
            .filter(|(id, inc)| {
                self.index(id).is_some_and(|i| {
                    self.slots[i].incarnation == *inc
                        && self.slots[i].state == ChildState::Restarting
                })
            })
            .map(|(id, _)| id)
            .collect();
        while let Some(id) = pending.pop_front() {
            let Some(i) = self.index(&id) else { continue };
            if let Err(e) = self.start_slot(i, true).await {
                self.emit(SupervisorEvent::RestartFailed {
                    id: id.clone(),
                    error: e.to_string(),
                });
                if !self.count_restart().await {
                    return;
                }
                pending.push_front(id);
                self.restart_later(pending.into(), ran_for);
                return;
            }
        }
    }

    fn auto_shutdown_due(&self) -> bool {
        match self.flags.auto_shutdown {
            AutoShutdown::Never => false,
            AutoShutdown::AnySignificant => true,
            AutoShutdown::AllSignificant => !self
                .slots
                .iter()
                .any(|s| s.spec.significant && s.state != ChildState::Stopped),
        }
    }

    fn which(&self) -> Vec<ChildStatus> {
        self.slots
            .iter()
            .map(|s| ChildStatus {
                id: s.spec.id.clone(),
                name: s.name.clone(),
                identity: s.identity.clone(),
                pid: s
                    .process
                    .as_ref()
                    .and_then(Process::pid)
                    .filter(|_| s.state == ChildState::Running),
                state: s.state,
                kind: s.spec.kind,
            })
            .collect()
    }

    fn count(&self) -> ChildCounts {
        ChildCounts {
            specs: self.slots.len(),
            active: self
                .slots
                .iter()
                .filter(|s| s.state == ChildState::Running)
                .count(),
            supervisors: self
                .slots
                .iter()
                .filter(|s| s.spec.kind == ChildKind::Supervisor)
                .count(),
            workers: self
                .slots
                .iter()
                .filter(|s| s.spec.kind == ChildKind::Worker)
                .count(),
        }
    }

    async fn admin_start(&mut self, spec: ChildSpec) -> Result<(), AdminError> {
        if let Some(i) = self.index(&spec.id) {
            return Err(match self.slots[i].state {
                ChildState::Running => AdminError::AlreadyStarted(spec.id),
                _ => AdminError::AlreadyPresent(spec.id),
            });
        }
        if let Some(max) = self.max_children {
            let live = self
                .slots
                .iter()
                .filter(|s| s.state != ChildState::Stopped)
                .count();
            if live >= max {
                return Err(AdminError::MaxChildren(max));
            }
        }
        let mut all: Vec<ChildSpec> = self.slots.iter().map(|s| s.spec.clone()).collect();
        all.push(spec.clone());
        self.flags.validate(&all)?;
        self.slots.push(Slot::new(spec));
        let i = self.slots.len() - 1;
        if let Err(source) = self.start_slot(i, false).await {
            let id = self.slots.remove(i).spec.id;
            return Err(AdminError::Start { id, source });
        }
        Ok(())
    }

    async fn admin_terminate(&mut self, id: String) -> Result<(), AdminError> {
        let i = self.index(&id).ok_or(AdminError::NotFound(id))?;
        self.stop_slot(i).await;
        if self.slots[i].spec.restart == Restart::Temporary {
            self.slots.remove(i);
        }
        Ok(())
    }

    /// The slot of a stopped child, or OTP's error for one that is not.
    fn stopped(&self, id: &str) -> Result<usize, AdminError> {
        let i = self
            .index(id)
            .ok_or_else(|| AdminError::NotFound(id.to_string()))?;
        match self.slots[i].state {
            ChildState::Running => Err(AdminError::Running(id.to_string())),
            ChildState::Restarting => Err(AdminError::Restarting(id.to_string())),
            ChildState::Stopped => Ok(i),
        }
    }

    async fn admin_restart(&mut self, id: String) -> Result<(), AdminError> {
        let i = self.stopped(&id)?;
        self.start_slot(i, true)
            .await
            .map_err(|source| AdminError::Start { id, source })
    }

    fn admin_delete(&mut self, id: String) -> Result<(), AdminError> {
        let i = self.stopped(&id)?;
        self.slots.remove(i);
        Ok(())
    }
}

/// Incarnation numbers, unique in this process.
static INCARNATIONS: AtomicU64 = AtomicU64::new(1);

fn next_incarnation() -> u64 {
    INCARNATIONS.fetch_add(1, Ordering::Relaxed)
}

/// A number in `[0, 1)` for backoff jitter; quality matters little, so no RNG crate.
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(INCARNATIONS.load(Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

fn watch_exit(me: CellRef<Msg>, id: String, incarnation: u64, sentinel: crate::Sentinel) {
    tokio::spawn(async move {
        let reason = sentinel.wait().await;
        let _ = me.cast(Msg::Exited {
            id,
            incarnation,
            reason,
        });
    });
}

struct SupervisorActor;

impl ractor::Actor for SupervisorActor {
    type Msg = Msg;
    type State = State;
    type Arguments = State;

    async fn pre_start(
        &self,
        myself: CellRef<Msg>,
        mut state: State,
    ) -> Result<State, ActorProcessingErr> {
        state.myself = Some(myself.clone());
        // The first children started before the actor existed: watch them now.
        for slot in &state.slots {
            if let Some(Ok(sentinel)) = slot.process.as_ref().map(Process::sentinel) {
                watch_exit(
                    myself.clone(),
                    slot.spec.id.clone(),
                    slot.incarnation,
                    sentinel,
                );
            }
        }
        Ok(state)
    }

    async fn handle(
        &self,
        _: CellRef<Msg>,
        msg: Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Exited {
                id,
                incarnation,
                reason,
            } => state.on_exit(id, incarnation, reason).await,
            Msg::RestartDue { due, ran_for } => state.on_restart_due(due, ran_for).await,
            Msg::Which(tx) => {
                let _ = tx.send(state.which());
            }
            Msg::Count(tx) => {
                let _ = tx.send(state.count());
            }
            Msg::StartChild(spec, tx) => {
                let _ = tx.send(state.admin_start(spec).await);
            }
            Msg::Terminate(id, tx) => {
                let _ = tx.send(state.admin_terminate(id).await);
            }
            Msg::Restart(id, tx) => {
                let _ = tx.send(state.admin_restart(id).await);
            }
            Msg::Delete(id, tx) => {
                let _ = tx.send(state.admin_delete(id));
            }
            Msg::Shutdown => state.finish(SupervisorExit::Shutdown).await,
            Msg::Resolve { id, wait, reply } => state.resolve(&id, wait, reply),
        }
        Ok(())
    }
}
