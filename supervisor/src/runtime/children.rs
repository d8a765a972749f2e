//! The children of this process: starting one (spawn, handshake, the tasks that
//! serve its link and reap it), the table of those alive, and what becomes of them
//! when this process exits.

use std::os::fd::{AsFd, OwnedFd};
use std::panic::catch_unwind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::Duration;

use multiproc_core::{EntryKind, ExitReason, ExitReport, Identity, Limits, Packet, WaitStatus};
use tokio::sync::{oneshot, watch};

use crate::runtime::error::Error;
use crate::runtime::link::{Link, LinkEnd, Outgoing, Peer};
use crate::runtime::router::{self, LinkTx};
use crate::runtime::spawn::{self, Output};
use crate::runtime::{self, exit};

/// How long a child asked to stop gets before it is killed, when stopping a tree.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

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
    pub(crate) hung: AtomicBool,
    pidfd: OwnedFd,
    pub(crate) link: LinkTx,
    pub(crate) exit: watch::Receiver<Option<ExitReason>>,
    stop_requested: AtomicBool,
    killed: AtomicBool,
    pub(crate) output: Mutex<Option<Output>>,
}

/// The children started by this process and not yet reaped.
pub(crate) fn children() -> std::sync::MutexGuard<'static, Vec<Arc<Child>>> {
    static CHILDREN: OnceLock<Mutex<Vec<Arc<Child>>>> = OnceLock::new();
    CHILDREN
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

pub(crate) async fn wait_exit(rx: &mut watch::Receiver<Option<ExitReason>>) -> ExitReason {
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

    pub(crate) fn signal(&self, sig: rustix::process::Signal) -> Result<(), Error> {
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
/// the process runtime. The caller then installs the root's signal handlers and the
/// exit handler, once a child exists to be stopped or finished.
///
/// The protocol, step by step: spawn (on the spawner thread); make the child routable
/// and start reading its link ([`serve_link`]), whose first packet answers the
/// handshake ([`await_handshake`]); record the child, with a watchdog if it must
/// beat; list it; and start the task that reaps it ([`reap`]).
pub(crate) async fn start_child(req: spawn::Request) -> Result<Arc<Child>, Error> {
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
    let spawned = if spawn::may_spawn_here(&req) {
        spawn::spawn(req)?
    } else {
        runtime::on_spawner(move || spawn::spawn(req)).await??
    };
    let spawn::Spawned {
        mut waiter,
        stream,
        rings,
        pidfd,
        pid,
    } = spawned;
    // A parent's readers never spin: its callers read their own replies.
    let link = Link::new(stream, rings, Peer::Child(number), false);
    let killer = pidfd
        .try_clone()
        .map_err(|e| Error::os("cannot duplicate the child's pidfd", e))?;
    // Routable before the reader starts: a child may call out (a function at once,
    // an actor from its `start`) before its handshake is processed here, and the
    // answers must find their way back down.
    router::add_child(number, Arc::clone(&link));
    let served = serve_link(name.clone(), Arc::clone(&link), killer);
    if let Err(e) = await_handshake(&mut waiter, served.first, timeout, &name, pid).await {
        router::remove_child(number, &identity);
        return Err(e);
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

    let capture = spawn::capture(&mut waiter);
    if let Some(interval) = heartbeat {
        tokio::spawn(watchdog(
            Arc::downgrade(&child),
            child.exit.clone(),
            served.last_beat,
            interval,
        ));
    }

    // Listed before the task that unlists it at its exit starts: a child that exits at
    // once could otherwise be unlisted first and listed after, and stay listed, with
    // its pidfd and its link, for as long as this process lives.
    children().push(Arc::clone(&child));
    tokio::spawn(reap(
        Arc::clone(&child),
        number,
        waiter,
        served.reader,
        capture,
        exit_tx,
    ));
    Ok(child)
}

/// What [`serve_link`] hands back: the handshake's answer to come, the time of the
/// last heartbeat, and the reader task, which ends with the child's exit report.
struct Served {
    first: oneshot::Receiver<Packet>,
    last_beat: Arc<Mutex<tokio::time::Instant>>,
    reader: tokio::task::JoinHandle<Option<ExitReport>>,
}

/// Starts the task that reads child `number`'s link until it ends: the first `Ready`
/// or `Rejected` answers the handshake; envelopes are routed, logs re-emitted,
/// heartbeats timed and the exit report kept. A link that breaks gets its child
/// killed through `killer`: a child that cannot be talked to is not left running.
fn serve_link(peer: String, link: Arc<Link>, killer: OwnedFd) -> Served {
    let (first_tx, first) = oneshot::channel::<Packet>();
    let last_beat = Arc::new(Mutex::new(tokio::time::Instant::now()));
    let beat = Arc::clone(&last_beat);
    let reader = tokio::spawn(async move {
        let mut first = Some(first_tx);
        let mut report: Option<ExitReport> = None;
        let end = link
            .read_loop(&peer, |packet| {
                // The handshake's answer; an actor's `start` may log or call before it.
                if matches!(packet, Packet::Ready { .. } | Packet::Rejected(_))
                    && let Some(first) = first.take()
                {
                    let _ = first.send(packet);
                    return;
                }
                match packet {
                    Packet::Log(record) => crate::runtime::logging::from_child(record),
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
        link.shut().await;
        let broke = match end {
            LinkEnd::Eof => None,
            LinkEnd::Broken(e) => Some(e.to_string()),
            LinkEnd::Corrupt(c) => Some(c.to_string()),
        };
        if let Some(error) = broke {
            // Nothing more can be read from it, so nothing can be asked of it: a child
            // we cannot talk to is killed rather than left running unreachable.
            tracing::error!(peer, %error, "control link to a child broke; killing the child");
            let _ = rustix::process::pidfd_send_signal(&killer, rustix::process::Signal::KILL);
        }
        report
    });
    Served {
        first,
        last_beat,
        reader,
    }
}

/// Waits up to `timeout` for the child's answer to its Hello. A child that does not
/// answer is killed; one that refuses, or ends first, is reaped; each is the error
/// that says so. The caller unroutes the child on an error.
async fn await_handshake(
    waiter: &mut spawn::Waiter,
    first: oneshot::Receiver<Packet>,
    timeout: Duration,
    name: &str,
    pid: u32,
) -> Result<(), Error> {
    let name = name.to_string();
    let first = match tokio::time::timeout(timeout, first).await {
        Err(_) => {
            waiter.start_kill();
            let _ = waiter.wait().await;
            return Err(Error::HandshakeTimeout { name, pid, timeout });
        }
        Ok(first) => first.ok(),
    };
    match first {
        Some(Packet::Ready { .. }) => Ok(()),
        Some(Packet::Rejected(source)) => {
            let _ = waiter.wait().await;
            Err(Error::Bootstrap { name, source })
        }
        _ => {
            let status = waiter
                .wait()
                .await
                .map_err(|e| Error::os("cannot wait for the child", e))?;
            if status == Some(WaitStatus::Exited(exit::EXIT_INIT_NOT_CALLED)) {
                return Err(Error::InitNotCalled);
            }
            let reason = match status {
                Some(status) => multiproc_core::exit_reason(status, None, false, false),
                None => ExitReason::ForkserverLost,
            };
            Err(Error::NoHandshake { name, reason })
        }
    }
}

/// Reaps `child`: waits for its exit, then for its reader's report and its captured
/// output, decides its exit reason, unroutes and unlists it, and only then publishes
/// the reason, having let go of the child's pidfd and link.
async fn reap(
    child: Arc<Child>,
    number: u32,
    mut waiter: spawn::Waiter,
    reader: tokio::task::JoinHandle<Option<ExitReport>>,
    capture: Option<tokio::task::JoinHandle<Output>>,
    exit_tx: watch::Sender<Option<ExitReason>>,
) {
    let status = waiter.wait().await;
    // Its pidfd too is let go of before anyone learns the child exited (below).
    drop(waiter);
    let report = reader.await.ok().flatten();
    // A status lost with its forkserver: the child's own report, if it sent one,
    // still says how it ended; without one, `ForkserverLost`.
    let status = status.map(|s| {
        s.or(match report {
            Some(ExitReport::Normal) => Some(WaitStatus::Exited(0)),
            Some(_) => Some(WaitStatus::Exited(1)),
            None => None,
        })
    });
    let output = match capture {
        Some(task) => task.await.ok(),
        None => None,
    };
    let reason = match status {
        Ok(None) => ExitReason::ForkserverLost,
        Ok(Some(status)) => multiproc_core::ExitFacts {
            status,
            report: report.as_ref(),
            stop_requested: child.stop_requested.load(Ordering::SeqCst),
            killed_after_timeout: child.killed.load(Ordering::SeqCst),
            hung: child.hung.load(Ordering::SeqCst),
            limits: child.limits,
        }
        .reason(),
        Err(e) => {
            tracing::error!(error = %e, "cannot wait for a child");
            ExitReason::Killed
        }
    };
    *child.output.lock().unwrap_or_else(|e| e.into_inner()) = output;
    router::remove_child(number, &child.identity);
    children().retain(|c| !Arc::ptr_eq(c, &child));
    tracing::debug!(child = %child.name, %reason, "child exited");
    // Let go of the child (its pidfd, its link) before anyone learns it exited: a
    // joiner that then drops its `Process` frees them at once, not whenever this
    // task gets round to it.
    drop(child);
    let _ = exit_tx.send(Some(reason));
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

/// A live child as a snapshot of the tree sees it.
#[derive(Debug, Clone)]
pub(crate) struct Observed {
    pub(crate) name: String,
    pub(crate) identity: Identity,
    pub(crate) pid: u32,
    pub(crate) kind: EntryKind,
    /// Asked to stop, and not yet gone.
    pub(crate) stopping: bool,
}

/// The children of this process that are still running, with what a snapshot shows.
pub(crate) fn observed() -> Vec<Observed> {
    children()
        .iter()
        .filter(|c| !c.has_exited())
        .map(|c| Observed {
            name: c.name.clone(),
            identity: c.identity.clone(),
            pid: c.pid,
            kind: c.kind,
            stopping: c.stop_requested.load(Ordering::Relaxed),
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

/// Kills `child` as hung if it goes `interval` without a heartbeat.
///
/// Holds the child weakly, so its pidfd and link are freed with its `Process`, not
/// with this task's next tick.
pub(crate) async fn watchdog(
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

/// Joins non-daemon children and terminates daemon ones when the process exits normally
/// (returning from `main` or `std::process::exit`), as Python's exit handler does.
pub(crate) fn register_exit_handler() {
    static ONCE: Once = Once::new();
    extern "C" fn on_exit() {
        if exit::EXITING.swap(true, Ordering::SeqCst) {
            return;
        }
        exit::take_exit_lock();
        if children().is_empty() {
            return;
        }
        // The main thread's thread-locals (tokio's context among them) are gone by
        // now, so wait on a plain channel while the runtime's workers do the work.
        // Never unwind into libc.
        let _ = catch_unwind(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            runtime::handle().spawn(async move {
                finish_children().await;
                let _ = tx.send(());
            });
            let _ = rx.recv();
        });
    }
    // `on_exit` never unwinds (it catches panics).
    ONCE.call_once(|| exit::at_exit(on_exit));
}
