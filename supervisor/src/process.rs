//! `Process`: one child OS process, created from a registered function or actor.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use multiproc_core::{
    EntryKind, ExitReason, ExitReport, Hello, Identity, Limits, Packet, StartMethod, WaitStatus,
    codec,
};
use serde::Serialize;
use tokio::sync::{oneshot, watch};

use crate::actor::{Actor, ActorRef};
use crate::link::{Link, LinkEnd, Outgoing};
use crate::registry::{self, Entry};
use crate::router::{self, LinkTx};
use crate::target::Target;
use crate::{Error, bootstrap, current, runtime, spawn};

/// The status reported for a child whose status was lost (Python's 255).
const LOST: WaitStatus = WaitStatus::Exited(255);

/// How long `start` waits for a new child to answer the handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a child asked to stop gets before it is killed, when stopping a tree.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

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
    state: State,
}

#[derive(Debug)]
struct Plan {
    entry: &'static Entry,
    args: Vec<u8>,
    fds: Vec<OwnedFd>,
}

#[derive(Debug)]
enum State {
    Created,
    Started(Arc<Child>),
    Closed,
}

/// What the parent keeps about a started child; shared with the tasks serving it.
#[derive(Debug)]
pub(crate) struct Child {
    pub(crate) identity: Identity,
    pub(crate) name: String,
    pub(crate) pid: u32,
    pub(crate) daemon: bool,
    /// An actor serves until it is stopped, so at exit it is stopped, not joined.
    kind: EntryKind,
    /// Started by a supervisor: stopped, not joined, at exit.
    supervised: bool,
    /// What the child was allowed, to name the limit that ended it.
    limits: Limits,
    /// Killed for missing its heartbeat.
    hung: AtomicBool,
    pidfd: OwnedFd,
    link: LinkTx,
    exit: watch::Receiver<Option<ExitReason>>,
    stop_requested: AtomicBool,
    killed: AtomicBool,
    output: Mutex<Option<Output>>,
}

/// What a child wrote to its stdout and stderr, when the process was created with
/// [`Process::capture_output`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Everything the child wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything the child wrote to stderr.
    pub stderr: Vec<u8>,
}

/// The children started by this process and not yet reaped.
pub(crate) fn children() -> std::sync::MutexGuard<'static, Vec<Arc<Child>>> {
    static CHILDREN: OnceLock<Mutex<Vec<Arc<Child>>>> = OnceLock::new();
    CHILDREN
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
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
        let plan = registry::by_type::<F>(EntryKind::Function);
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

    /// A process that runs what a supervisor's child spec names.
    pub(crate) fn from_start(start: &multiproc_core::StartSpec) -> Process {
        Process::build(|_| {
            registry::by_name(&start.entry)
                .filter(|e| e.kind == start.kind)
                .map(|entry| Plan {
                    entry,
                    args: start.args.clone(),
                    fds: Vec::new(),
                })
                .ok_or_else(|| Error::UnknownEntry(start.entry.clone()))
        })
    }

    fn with_plan<T: Serialize>(entry: Result<&'static Entry, Error>, args: &T) -> Process {
        Process::build(|name| {
            let entry = entry?;
            let (encoded, fds) = multiproc_transport::collect_fds(|| codec::encode(args));
            match encoded {
                Ok(args) => Ok(Plan { entry, args, fds }),
                Err(source) => Err(Error::Args {
                    name: name.to_string(),
                    source,
                }),
            }
        })
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
    /// [`DEFAULT_SHUTDOWN_TIMEOUT`]), not joined, when its parent exits, as Python does;
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
    pub fn pid(&self) -> Option<u32> {
        self.child().map(|c| c.pid)
    }

    /// Whether the process has been started and has not exited yet.
    pub fn is_alive(&self) -> bool {
        self.child().is_some_and(|c| c.exit.borrow().is_none())
    }

    /// Why the process ended, once it has.
    pub fn exit_reason(&self) -> Option<ExitReason> {
        self.child().and_then(|c| c.exit.borrow().clone())
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
    pub fn actor_ref<A: Actor>(&self) -> ActorRef<A> {
        ActorRef::new(self.identity.clone())
    }

    fn child(&self) -> Option<&Arc<Child>> {
        match &self.state {
            State::Started(c) => Some(c),
            _ => None,
        }
    }

    fn started(&self) -> Result<&Arc<Child>, Error> {
        match &self.state {
            State::Started(c) => Ok(c),
            State::Created => Err(Error::NotStarted(self.name.clone())),
            State::Closed => Err(Error::Closed(self.name.clone())),
        }
    }

    /// Starts the child and waits until it has answered the handshake: for an actor,
    /// until its `start` has succeeded.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyStarted`], [`Error::Closed`], [`Error::Unregistered`] (with the
    /// macro to add), [`Error::InitNotCalled`] (the child's `main`, or the
    /// forkserver's, skipped `init()`), [`Error::Bootstrap`] (version or build mismatch),
    /// [`Error::NoHandshake`] / [`Error::HandshakeTimeout`] (the child never reached
    /// `init()`), [`Error::DaemonWithChildren`], [`Error::Os`].
    pub async fn start(&mut self) -> Result<(), Error> {
        match self.state {
            State::Created => {}
            State::Started(_) => return Err(Error::AlreadyStarted(self.name.clone())),
            State::Closed => return Err(Error::Closed(self.name.clone())),
        }
        let Some(plan) = self.plan.take() else {
            return Err(Error::AlreadyStarted(self.name.clone()));
        };
        bootstrap::check_init();
        if current::me().daemon {
            return Err(Error::DaemonWithChildren);
        }
        let plan = plan?;
        // Room for the rest of the Hello (names, identities) around the arguments.
        const HELLO_OVERHEAD: usize = 4096;
        let max = multiproc_transport::MAX_FRAME_LEN - HELLO_OVERHEAD;
        if plan.args.len() > max {
            return Err(Error::ArgsTooLarge {
                name: self.name.clone(),
                len: plan.args.len(),
                max,
            });
        }
        let me = current::me();
        let hello = Hello {
            identity: self.identity.clone(),
            name: self.name.clone(),
            parent_name: me.name.clone(),
            parent_identity: me.identity.clone(),
            daemon: self.daemon,
            kind: plan.entry.kind,
            entry: plan.entry.name.to_string(),
            args: plan.args,
            fds: plan.fds.len() as u32,
            log_level: crate::logging::forward_level(),
            limits: self.limits,
            heartbeat: self.heartbeat,
        };
        let request = spawn::Request {
            name: self.name.clone(),
            hello,
            fds: plan.fds,
            env: std::mem::take(&mut self.env),
            capture: self.capture,
            handshake_timeout: self.handshake_timeout,
            daemon: self.daemon,
            versions: self.versions,
            supervised: self.supervised,
            method: self.method,
        };
        let child = runtime::run(start_child(request)).await?;
        self.state = State::Started(child);
        Ok(())
    }

    /// Waits for the process to exit and returns why it did.
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`] or [`Error::Closed`].
    pub async fn join(&self) -> Result<ExitReason, Error> {
        let child = self.started()?;
        Ok(child.wait().await)
    }

    /// Waits at most `timeout` for the process to exit; `Ok(None)` if it still runs.
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`] or [`Error::Closed`].
    pub async fn join_timeout(&self, timeout: Duration) -> Result<Option<ExitReason>, Error> {
        let child = Arc::clone(self.started()?);
        Ok(
            runtime::run(async move { tokio::time::timeout(timeout, child.wait()).await.ok() })
                .await,
        )
    }

    /// A future-like handle that completes when the process exits (Python's
    /// `sentinel`); it can be moved to another task and awaited there.
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`] or [`Error::Closed`].
    pub fn sentinel(&self) -> Result<Sentinel, Error> {
        Ok(Sentinel {
            exit: self.started()?.exit.clone(),
        })
    }

    /// Sends SIGTERM. No effect on a process that has exited.
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`], [`Error::Closed`] or [`Error::Os`].
    pub fn terminate(&self) -> Result<(), Error> {
        self.started()?.signal(rustix::process::Signal::TERM)
    }

    /// Sends SIGKILL. No effect on a process that has exited.
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`], [`Error::Closed`] or [`Error::Os`].
    pub fn kill(&self) -> Result<(), Error> {
        self.started()?.signal(rustix::process::Signal::KILL)
    }

    /// Asks the process to stop (it and its own children), waits up to `timeout`, then
    /// kills it. Returns why it ended: `Shutdown` if it stopped in time, `Killed` if not.
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`] or [`Error::Closed`].
    pub async fn stop(&self, timeout: Duration) -> Result<ExitReason, Error> {
        let child = Arc::clone(self.started()?);
        Ok(runtime::run(async move { child.stop(timeout).await }).await)
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
    /// the child's checks.
    #[doc(hidden)]
    pub fn __hello_versions(mut self, protocol: u32, build_id: u64) -> Self {
        self.versions = (protocol, build_id);
        self
    }

    /// Writes `bytes` as one frame on the child's control link, bypassing the codec.
    /// Only for tests of how a child handles garbage.
    #[doc(hidden)]
    pub fn __send_raw_frame(&self, bytes: Vec<u8>) -> Result<(), Error> {
        let child = self.started()?;
        let _ = child.link.send(Outgoing::Raw(bytes));
        Ok(())
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

async fn wait_exit(rx: &mut watch::Receiver<Option<ExitReason>>) -> ExitReason {
    match rx.wait_for(Option::is_some).await {
        Ok(r) => r.clone().expect("wait_for returned a Some"),
        // The sender lives until the reason is published, so this cannot happen;
        // report it as a kill rather than panic.
        Err(_) => ExitReason::Killed,
    }
}

impl Child {
    pub(crate) async fn wait(&self) -> ExitReason {
        wait_exit(&mut self.exit.clone()).await
    }

    pub(crate) fn has_exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    fn signal(&self, sig: rustix::process::Signal) -> Result<(), Error> {
        if self.has_exited() {
            return Ok(());
        }
        match rustix::process::pidfd_send_signal(self.pidfd.as_fd(), sig) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(e) => Err(Error::os("cannot signal the child", e)),
        }
    }

    /// Asks the child to stop; it forwards the request to its own children.
    pub(crate) fn request_stop(&self) {
        self.stop_requested.store(true, Ordering::SeqCst);
        let _ = self.link.send(Outgoing::Packet(Packet::Stop));
    }

    /// The shutdown protocol: ask, wait up to `timeout`, then SIGKILL.
    pub(crate) async fn stop(&self, timeout: Duration) -> ExitReason {
        self.request_stop();
        self.kill_after(timeout).await
    }

    /// Waits up to `timeout` for a child that was asked or told to end, then SIGKILL.
    async fn kill_after(&self, timeout: Duration) -> ExitReason {
        if let Ok(reason) = tokio::time::timeout(timeout, self.wait()).await {
            return reason;
        }
        self.killed.store(true, Ordering::SeqCst);
        let _ = self.signal(rustix::process::Signal::KILL);
        self.wait().await
    }
}

/// Spawns the child, runs the handshake and sets up the tasks that serve it. Runs on
/// the process runtime.
async fn start_child(req: spawn::Request) -> Result<Arc<Child>, Error> {
    let name = req.name.clone();
    let identity = req.hello.identity.clone();
    let number = *identity
        .path()
        .last()
        .expect("a child identity is never empty");
    let daemon = req.daemon;
    let kind = req.hello.kind;
    let supervised = req.supervised;
    let limits = req.hello.limits;
    let heartbeat = req.hello.heartbeat;
    let timeout = req.handshake_timeout;
    let spawned = runtime::on_spawner(move || spawn::spawn(req)).await?;
    let spawn::Spawned {
        mut waiter,
        stream,
        pidfd,
        pid,
    } = spawned;
    let link = Link::new(stream);

    // The reader starts at once; the first packet it reads is the handshake's answer.
    let (first_tx, first_rx) = oneshot::channel::<Packet>();
    let reader_link = Arc::clone(&link);
    let peer = name.clone();
    let killer = pidfd
        .try_clone()
        .map_err(|e| Error::os("cannot duplicate the child's pidfd", e))?;
    let last_beat = Arc::new(Mutex::new(tokio::time::Instant::now()));
    let beat = Arc::clone(&last_beat);
    // Routable before the reader starts: a child may call out (a function at once,
    // an actor from its `start`) before its handshake is processed here, and the
    // answers must find their way back down.
    router::add_child(number, Arc::clone(&link));
    let reader_task = tokio::spawn(async move {
        let mut first = Some(first_tx);
        let mut report: Option<ExitReport> = None;
        let end = reader_link
            .read_loop(&peer, |packet| {
                // The handshake's answer; an actor's `start` may log or call before it.
                if matches!(packet, Packet::Ready { .. } | Packet::Rejected(_))
                    && let Some(first) = first.take()
                {
                    let _ = first.send(packet);
                    return;
                }
                match packet {
                    Packet::Envelope(env) => router::from_child(number, env),
                    Packet::Log(record) => crate::logging::from_child(record),
                    Packet::Exiting(r) => report = Some(r),
                    Packet::Heartbeat => {
                        *beat.lock().unwrap_or_else(|e| e.into_inner()) =
                            tokio::time::Instant::now()
                    }
                    other => {
                        tracing::warn!(peer, packet = ?other, "unexpected packet from a child")
                    }
                }
            })
            .await;
        reader_link.close();
        if let LinkEnd::Broken(e) = end {
            // Nothing more can be read from it, so nothing can be asked of it: a child
            // we cannot talk to is killed rather than left running unreachable.
            tracing::error!(peer, error = %e, "control link to a child broke; killing the child");
            let _ = rustix::process::pidfd_send_signal(&killer, rustix::process::Signal::KILL);
        }
        report
    });

    let first = match tokio::time::timeout(timeout, first_rx).await {
        Err(_) => {
            waiter.start_kill();
            let _ = waiter.wait().await;
            router::remove_child(number, &identity);
            return Err(Error::HandshakeTimeout { name, pid, timeout });
        }
        Ok(first) => first.ok(),
    };
    match first {
        Some(Packet::Ready { .. }) => {}
        Some(Packet::Rejected(source)) => {
            let _ = waiter.wait().await;
            router::remove_child(number, &identity);
            return Err(Error::Bootstrap { name, source });
        }
        _ => {
            let status = waiter.wait().await;
            router::remove_child(number, &identity);
            let status = status.map_err(|e| Error::os("cannot wait for the child", e))?;
            if status == Some(WaitStatus::Exited(bootstrap::EXIT_INIT_NOT_CALLED)) {
                return Err(Error::InitNotCalled);
            }
            let reason = multiproc_core::exit_reason(status.unwrap_or(LOST), None, false, false);
            return Err(Error::NoHandshake { name, reason });
        }
    }

    let (exit_tx, exit_rx) = watch::channel(None);
    let child = Arc::new(Child {
        identity: identity.clone(),
        name: name.clone(),
        pid,
        daemon,
        kind,
        supervised,
        limits,
        hung: AtomicBool::new(false),
        pidfd,
        link,
        exit: exit_rx,
        stop_requested: AtomicBool::new(false),
        killed: AtomicBool::new(false),
        output: Mutex::new(None),
    });

    // Listed before the task that unlists it at the child's exit is spawned: a child
    // that exits at once could otherwise be unlisted first and then listed for good,
    // keeping its pidfd and link open for the life of this process.
    children().push(Arc::clone(&child));
    let capture = spawn::capture(&mut waiter);
    if let Some(interval) = heartbeat {
        tokio::spawn(watchdog(
            Arc::downgrade(&child),
            child.exit.clone(),
            last_beat,
            interval,
        ));
    }

    let watched = Arc::clone(&child);
    tokio::spawn(async move {
        let status = waiter.wait().await;
        let report = reader_task.await.ok().flatten();
        // A status lost with its forkserver: the child's own report, if it sent one,
        // still says how it ended; without one, 255, as Python reports.
        let status = status.map(|s| {
            s.unwrap_or(match report {
                Some(ExitReport::Normal) => WaitStatus::Exited(0),
                Some(_) => WaitStatus::Exited(1),
                None => LOST,
            })
        });
        let output = match capture {
            Some(task) => task.await.ok(),
            None => None,
        };
        let reason = match status {
            Ok(status) => multiproc_core::ExitFacts {
                status,
                report: report.as_ref(),
                stop_requested: watched.stop_requested.load(Ordering::SeqCst),
                killed_after_timeout: watched.killed.load(Ordering::SeqCst),
                hung: watched.hung.load(Ordering::SeqCst),
                limits: watched.limits,
            }
            .reason(),
            Err(e) => {
                tracing::error!(error = %e, "cannot wait for a child");
                ExitReason::Killed
            }
        };
        *watched.output.lock().unwrap_or_else(|e| e.into_inner()) = output;
        router::remove_child(number, &watched.identity);
        children().retain(|c| !Arc::ptr_eq(c, &watched));
        tracing::debug!(child = %watched.name, %reason, "child exited");
        // Let go of the child (its pidfd, its link) before anyone learns it exited: a
        // joiner that then drops its `Process` frees them at once, not whenever this
        // task gets round to it.
        drop(watched);
        let _ = exit_tx.send(Some(reason));
    });

    crate::signals::install_root_handlers();
    crate::bootstrap::register_exit_handler();
    Ok(child)
}

/// Kills `child` as hung if it goes `interval` without a heartbeat.
///
/// Holds the child weakly, so its pidfd and link are freed with its `Process`, not
/// with this task's next tick.
async fn watchdog(
    child: std::sync::Weak<Child>,
    mut exit: watch::Receiver<Option<ExitReason>>,
    last_beat: Arc<Mutex<tokio::time::Instant>>,
    interval: Duration,
) {
    let mut tick = tokio::time::interval(interval / 4);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = exit.wait_for(Option::is_some) => return,
        }
        let Some(child) = child.upgrade() else { return };
        if child.has_exited() {
            return;
        }
        let last = *last_beat.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() > interval {
            tracing::warn!(child = %child.name, ?interval, "child missed its heartbeat; killing it as hung");
            child.hung.store(true, Ordering::SeqCst);
            let _ = child.signal(rustix::process::Signal::KILL);
            return;
        }
    }
}

/// A live child of this process, as listed by [`active_children`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildInfo {
    /// Its name.
    pub name: String,
    /// Its identity.
    pub identity: Identity,
    /// Its OS process id.
    pub pid: u32,
    /// Whether it is a daemon.
    pub daemon: bool,
}

/// The children of this process that are still running.
///
/// ```
/// assert!(multiproc_supervisor::active_children().is_empty());
/// ```
pub fn active_children() -> Vec<ChildInfo> {
    children()
        .iter()
        .filter(|c| !c.has_exited())
        .map(|c| ChildInfo {
            name: c.name.clone(),
            identity: c.identity.clone(),
            pid: c.pid,
            daemon: c.daemon,
        })
        .collect()
}

/// Stops every child of this process: asks each (and, through it, its own children)
/// to stop, waits up to `timeout`, then kills those still running. Returns once all
/// have exited.
///
/// The shutdown the root performs on SIGINT or SIGTERM, for programs (and test
/// harnesses) that want it without a signal: a failed test's children, say, which
/// would otherwise be joined at exit.
///
/// ```
/// # multiproc_supervisor::block_on(async {
/// multiproc_supervisor::stop_children(std::time::Duration::from_secs(1)).await;
/// assert!(multiproc_supervisor::active_children().is_empty());
/// # });
/// ```
pub async fn stop_children(timeout: Duration) {
    let all: Vec<Arc<Child>> = children().clone();
    runtime::run(async move {
        for c in &all {
            c.request_stop();
        }
        for c in &all {
            c.stop(timeout).await;
        }
    })
    .await;
}

/// Set once this process has begun to wind its children down for exit: supervisors
/// then let their children go instead of restarting them.
static EXITING: AtomicBool = AtomicBool::new(false);

/// Whether this process is winding its children down for exit.
pub(crate) fn is_exiting() -> bool {
    EXITING.load(Ordering::SeqCst)
}

/// What every process does before it exits, as Python's exit handler: daemon children
/// are terminated (SIGTERM, then SIGKILL after [`DEFAULT_SHUTDOWN_TIMEOUT`]), the others
/// are joined, except supervised children and actors, which serve until they are
/// stopped and so are stopped (joining them would wait forever).
pub(crate) async fn finish_children() {
    EXITING.store(true, Ordering::SeqCst);
    let all: Vec<Arc<Child>> = children().clone();
    let stops = |c: &Child| !c.daemon && (c.supervised || c.kind == EntryKind::Actor);
    // Every signal and request goes out before the first wait, so the children wind
    // down together and the exit takes the slowest one's time, not the sum. A daemon
    // is not asked: it need not look at `wait_for_stop`, and Python does not ask.
    for c in &all {
        if c.daemon {
            let _ = c.signal(rustix::process::Signal::TERM);
        } else if stops(c) {
            c.request_stop();
        }
    }
    for c in &all {
        if c.daemon || stops(c) {
            c.kill_after(DEFAULT_SHUTDOWN_TIMEOUT).await;
        } else {
            c.wait().await;
        }
    }
}
