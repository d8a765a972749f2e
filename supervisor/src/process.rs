//! `Process`: one child OS process, created from a registered function or actor; the
//! actor a child can host ([`actor`]), what a process runs (`plan`) and how it starts
//! (`start`). The functions it can run are typed by `runtime::target`.

pub(crate) mod actor;
mod plan;
mod start;

pub(crate) use plan::FarSpec;

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use multiproc_core::{EntryKind, ExitReason, Identity, Limits, StartMethod};
use serde::Serialize;
use tokio::sync::watch;

use crate::process::actor::{Actor, ActorRef};
use crate::remote::client::Node;
use crate::remote::placed::RemoteChild;
use crate::runtime;
use crate::runtime::children::{Child, wait_exit};
use crate::runtime::current;
use crate::runtime::error::Error;
use crate::runtime::link::Outgoing;
use crate::runtime::registry::{self, Entry};
use crate::runtime::spawn::Output;
use crate::runtime::target::Target;
use plan::Plan;

/// How long `start` waits for a new child to answer the handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A child OS process running a registered function or actor.
///
/// Created with [`Process::new`] (a function registered with `multiproc::register!`)
/// or [`Process::actor`] (an actor registered with `multiproc::register_actor!`).
/// Creating the object takes the next number of this process's counter, exactly as
/// Python does, so the first process object created in `MainProcess` is
/// `Process-1` whether or not it is ever started.
///
/// Dropping a `Process` does not stop the child: like Python, the child is still
/// joined when this process exits (a daemon is terminated instead, and an actor
/// stopped).
#[derive(Debug)]
pub struct Process {
    identity: Identity,
    name: String,
    daemon: bool,
    plan: Option<Result<Plan, Error>>,
    env: Vec<(OsString, OsString)>,
    capture: bool,
    handshake_timeout: Duration,
    versions: (u32, u64),
    /// Started by a supervisor: stopped, not joined, when this process exits.
    supervised: bool,
    limits: Limits,
    heartbeat: Option<Duration>,
    method: StartMethod,
    /// The node to start on; `None` for this host.
    node: Option<Node>,
    state: State,
}

#[derive(Debug)]
enum State {
    Created,
    Started(Arc<Child>),
    /// Started on another node.
    Remote(Arc<RemoteChild>),
    Closed,
}

impl Process {
    /// A process that will run the registered function `target` with `args`.
    ///
    /// `args` is one value for a one-argument function, a tuple for several, `()` for
    /// none. It is encoded now; a `Connection` among the arguments is handed to the
    /// child when it starts.
    pub fn new<F, M>(target: F, args: F::Args) -> Process
    where
        F: Target<M>,
    {
        let _ = target;
        let plan = registry::function_by_type::<F>();
        Process::with_plan(plan, &args)
    }

    /// A process that will host the registered actor `A`, started with `args`.
    pub fn actor<A: Actor>(args: A::Args) -> Process {
        let plan = registry::by_type::<A>(EntryKind::Actor);
        Process::with_plan(plan, &args)
    }

    /// A process that runs a known entry with `args`.
    pub(crate) fn with_entry<T: Serialize>(entry: &'static Entry, args: &T) -> Process {
        Process::with_plan(Ok(entry), args)
    }

    /// A process that runs what a start spec names.
    pub(crate) fn from_start(start: &multiproc_core::StartSpec) -> Process {
        Process::build(|_| Plan::of_start(start))
    }

    /// A process that runs what a supervisor's child spec names: on a node, with
    /// the far encoding of its arguments the spec keeps, if any.
    pub(crate) fn from_spec(spec: &multiproc_core::ChildSpec) -> Process {
        Process::build(|_| Plan::of_spec(spec))
    }

    fn with_plan<T: Serialize>(entry: Result<&'static Entry, Error>, args: &T) -> Process {
        Process::build(|name| Plan::encode(entry?, args, name))
    }

    /// Takes the next number of this process's counter (whatever happens next, as
    /// Python does) and builds the object around the plan.
    fn build(plan: impl FnOnce(&str) -> Result<Plan, Error>) -> Process {
        let identity = current::me().identity.child(current::next_child_number());
        let name = identity.default_name("Process");
        let plan = plan(&name);
        Process {
            identity,
            name,
            daemon: current::me().daemon,
            plan: Some(plan),
            env: Vec::new(),
            capture: false,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            versions: (multiproc_core::PROTOCOL_VERSION, registry::build_id()),
            supervised: false,
            limits: Limits::default(),
            heartbeat: None,
            method: StartMethod::Spawn,
            node: None,
            state: State::Created,
        }
    }

    /// Marks a process its supervisor owns: at exit it is stopped, not joined (a
    /// permanent child never ends on its own).
    pub(crate) fn supervised(mut self) -> Self {
        self.supervised = true;
        self
    }

    /// Sets the name (names need not be unique). The identity does not change.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Makes the process a daemon: terminated (SIGTERM, then SIGKILL after
    /// [`DEFAULT_SHUTDOWN_TIMEOUT`](crate::DEFAULT_SHUTDOWN_TIMEOUT)), not joined, when its parent exits, as Python does;
    /// it may not start children of its own. The default is the creating process's flag.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Captures the child's stdout and stderr instead of inheriting them; read them
    /// with [`Process::output`] once it has been joined.
    pub fn capture_output(mut self) -> Self {
        self.capture = true;
        self
    }

    /// Sets resource limits the child applies to itself before its entry point runs
    /// (address space, CPU time, open files). A CPU limit that ends the child shows
    /// as `ExitReason::LimitExceeded`.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Chooses how the child process is made (default [`StartMethod::Spawn`]).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = method;
        self
    }

    /// Requires the child to show it is alive at least every `interval`, or be killed
    /// and exit with `ExitReason::Hung`. An actor child beats by itself between
    /// messages (a handler stuck on one stops the beats); a function child calls
    /// `multiproc::heartbeat()`.
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = Some(interval);
        self
    }

    /// Places the process on `node` (see [`crate::node`]): [`start`](Process::start)
    /// asks the node to run the registered entry there, as a child of the node
    /// program; the name stays this tree's (`Process-N`). Only registered entries
    /// cross, by name, with their encoded arguments; no code travels.
    /// Its environment variables, limits, start method, heartbeat and handshake
    /// timeout go with it and are applied by the node; captured output would stay
    /// there, so [`capture_output`](Process::capture_output) on a placed process is
    /// refused at `start` with `NodeError::NotAcrossNodes`.
    pub fn on(mut self, node: &Node) -> Self {
        self.node = Some(node.clone());
        self
    }

    /// The node the process is placed on; `None` for this host.
    pub fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    /// Sets how long [`start`](Process::start) waits for the child's handshake.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The process's name: `Process-N1:N2:…` unless set.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process's identity (its address in the tree).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Whether the process is a daemon.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// The OS process id, once started.
    ///
    /// For a process on another node, its id on that node's host.
    pub fn pid(&self) -> Option<u32> {
        match &self.state {
            State::Remote(r) => Some(r.pid),
            _ => self.child().map(|c| c.pid),
        }
    }

    fn exit_watch(&self) -> Option<&watch::Receiver<Option<ExitReason>>> {
        match &self.state {
            State::Started(c) => Some(&c.exit),
            State::Remote(r) => Some(&r.exit),
            _ => None,
        }
    }

    /// Whether the process has been started and has not exited yet.
    pub fn is_alive(&self) -> bool {
        self.exit_watch().is_some_and(|e| e.borrow().is_none())
    }

    /// Why the process ended, once it has.
    pub fn exit_reason(&self) -> Option<ExitReason> {
        self.exit_watch().and_then(|e| e.borrow().clone())
    }

    /// Python's `exitcode`: `None` while running or not started; 0 after a normal end,
    /// the code given to `exit`, 1 after a panic, −N after signal N.
    pub fn exit_code(&self) -> Option<i32> {
        self.exit_reason().map(|r| r.exit_code())
    }

    /// What the child wrote, if created with [`capture_output`](Process::capture_output)
    /// and joined.
    pub fn output(&self) -> Option<Output> {
        self.child()
            .and_then(|c| c.output.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// A handle to the actor this process hosts.
    ///
    /// The handle is a plain address: it can be cloned, sent to other processes of the
    /// tree, and used before or after the process starts (calls fail while it does not
    /// run).
    ///
    /// For a process on another node, calls go through this process's session with
    /// that node; a handle passed to another process of this tree sends its calls
    /// here, along the tree, and this process relays them.
    pub fn actor_ref<A: Actor>(&self) -> ActorRef<A> {
        match (&self.state, &self.node) {
            (State::Remote(r), _) => {
                ActorRef::on_node(self.identity.clone(), r.node.name().to_string(), r.id)
            }
            // Not started there yet: no number, so calls fail with `NoProcess`.
            (_, Some(node)) => ActorRef::on_node(self.identity.clone(), node.name().to_string(), 0),
            _ => ActorRef::new(self.identity.clone()),
        }
    }

    fn child(&self) -> Option<&Arc<Child>> {
        match &self.state {
            State::Started(c) => Some(c),
            _ => None,
        }
    }

    fn started(&self) -> Result<Started<'_>, Error> {
        match &self.state {
            State::Started(c) => Ok(Started::Local(c)),
            State::Remote(r) => Ok(Started::Remote(r)),
            State::Created => Err(Error::NotStarted(self.name.clone())),
            State::Closed => Err(Error::Closed(self.name.clone())),
        }
    }

    /// Waits for the process to exit and returns why it did.
    ///
    /// For a process on another node: its exit there, or `ExitReason::NodeDown` when
    /// the node died or became unreachable first.
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`] or [`Error::Closed`].
    pub async fn join(&self) -> Result<ExitReason, Error> {
        match self.started()? {
            Started::Local(child) => Ok(child.wait().await),
            Started::Remote(r) => Ok(wait_exit(&mut r.exit.clone()).await),
        }
    }

    /// Waits at most `timeout` for the process to exit; `Ok(None)` if it still runs.
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`] or [`Error::Closed`].
    pub async fn join_timeout(&self, timeout: Duration) -> Result<Option<ExitReason>, Error> {
        let mut exit = self.started()?.exit();
        Ok(runtime::run(async move {
            tokio::time::timeout(timeout, wait_exit(&mut exit))
                .await
                .ok()
        })
        .await)
    }

    /// A future-like handle that completes when the process exits (Python's
    /// `sentinel`); it can be moved to another task and awaited there.
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`] or [`Error::Closed`].
    pub fn sentinel(&self) -> Result<Sentinel, Error> {
        Ok(Sentinel {
            exit: self.started()?.exit(),
        })
    }

    /// Sends SIGTERM. No effect on a process that has exited.
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`], [`Error::Closed`] or [`Error::Os`].
    pub fn terminate(&self) -> Result<(), Error> {
        match self.started()? {
            Started::Local(c) => c.signal(rustix::process::Signal::TERM),
            Started::Remote(r) => {
                r.send_signal(libc::SIGTERM);
                Ok(())
            }
        }
    }

    /// Sends SIGKILL. No effect on a process that has exited.
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`], [`Error::Closed`] or [`Error::Os`].
    pub fn kill(&self) -> Result<(), Error> {
        match self.started()? {
            Started::Local(c) => c.signal(rustix::process::Signal::KILL),
            Started::Remote(r) => {
                r.send_signal(libc::SIGKILL);
                Ok(())
            }
        }
    }

    /// Asks the process to stop (it and its own children), waits up to `timeout`, then
    /// kills it. Returns why it ended: `Shutdown` if it stopped in time, `Killed` if not.
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`] or [`Error::Closed`].
    pub async fn stop(&self, timeout: Duration) -> Result<ExitReason, Error> {
        match self.started()? {
            Started::Local(child) => {
                let child = Arc::clone(child);
                Ok(runtime::run(async move { child.stop(timeout).await }).await)
            }
            Started::Remote(r) => Ok(r.stop(timeout).await),
        }
    }

    /// Releases the process object. Most methods fail afterwards.
    ///
    /// # Errors
    ///
    /// [`Error::StillRunning`] if the process has not exited (or not been started:
    /// closing an unstarted process is allowed, as in Python).
    pub fn close(&mut self) -> Result<(), Error> {
        if self.is_alive() {
            return Err(Error::StillRunning(self.name.clone()));
        }
        self.state = State::Closed;
        self.plan = None;
        Ok(())
    }

    /// Makes the Hello claim another protocol version and build id. Only for tests of
    /// the child's checks (see `__private::test_hooks`).
    pub(crate) fn hello_versions(mut self, protocol: u32, build_id: u64) -> Self {
        self.versions = (protocol, build_id);
        self
    }

    /// Writes `bytes` as one frame on the child's control link, bypassing the codec.
    /// Only for tests of how a child handles garbage (see `__private::test_hooks`).
    pub(crate) fn send_raw_frame(&self, bytes: Vec<u8>) -> Result<(), Error> {
        if let Started::Local(child) = self.started()? {
            let _ = child.link.send(Outgoing::Raw(bytes));
        }
        Ok(())
    }
}

/// A started process: a child of this one, or a process on another node.
enum Started<'a> {
    Local(&'a Arc<Child>),
    Remote(&'a Arc<RemoteChild>),
}

impl Started<'_> {
    fn exit(&self) -> watch::Receiver<Option<ExitReason>> {
        match self {
            Started::Local(c) => c.exit.clone(),
            Started::Remote(r) => r.exit.clone(),
        }
    }
}

/// Completes when its process exits; see [`Process::sentinel`].
#[derive(Debug, Clone)]
pub struct Sentinel {
    exit: watch::Receiver<Option<ExitReason>>,
}

impl Sentinel {
    /// Waits for the process to exit.
    pub async fn wait(mut self) -> ExitReason {
        wait_exit(&mut self.exit).await
    }

    /// Whether the process has exited.
    pub fn is_ready(&self) -> bool {
        self.exit.borrow().is_some()
    }
}
