//! The children of this process: starting one (spawn, handshake, the tasks that
//! serve its link and reap it, the heartbeat watchdog) and the table of those alive;
//! what the table shows (`children/info.rs`) and what becomes of them when this
//! process exits (`children/finish.rs`).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use multiproc_core::{EntryKind, ExitReason, ExitReport, Identity, Limits, Packet, WaitStatus};
use tokio::sync::{oneshot, watch};

use crate::runtime::error::Error;
use crate::runtime::link::{Link, LinkEnd, Outgoing, Peer};
use crate::runtime::router::{self, LinkTx};
use crate::runtime::spawn::{self, Output};
use crate::runtime::{self, exit};

mod finish;
mod info;

pub use finish::{DEFAULT_SHUTDOWN_TIMEOUT, stop_children};
pub(crate) use finish::{
    FINISH_ELSEWHERE, FinishElsewhere, finish_children, is_exiting, register_exit_handler,
};
pub(crate) use info::observed;
pub use info::{ChildInfo, active_children};

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
    /// Its actor's mailbox depth and messages handled, as it shows them.
    figures: crate::runtime::ring::ActorFigures,
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

/// Spawns the child, runs the handshake and sets up the task that serves it. Runs on
/// the process runtime. The caller then installs the root's signal handlers and the
/// exit handler, once a child exists to be stopped or finished.
///
/// With `here`, the caller's thread is all this future runs on (the blocking API), and
/// it reads the child's answer itself, asleep on the link's futex: the child's write
/// then wakes this thread and no other, where a reader task would wake a runtime
/// worker, which would then wake this thread.
///
/// The protocol, step by step: spawn (on the spawner thread); make the child routable;
/// read its link until its first packet answers the handshake (here, or in the task
/// that serves the link, [`serve`]), judged by [`judge_answer`]; record the child,
/// with a watchdog if it must beat; list it; and hand the serving task what it needs
/// to reap the child once the link ends ([`reap`]).
pub(crate) async fn start_child(req: spawn::Request, here: bool) -> Result<Arc<Child>, Error> {
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
    let started = std::time::Instant::now();
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
    let figures = rings.actor_figures();
    // A parent's readers never spin: its callers read their own replies.
    let link = Link::new(stream, rings, Peer::Child(number), false);
    let killer = pidfd
        .try_clone()
        .map_err(|e| Error::os("cannot duplicate the child's pidfd", e))?;
    // Routable before anything is read: a child may call out (a function at once, an
    // actor from its `start`) before its handshake is processed here, and the answers
    // must find their way back down.
    router::add_child(number, Arc::clone(&link));
    let reading = Arc::new(Mutex::new(Reading::new()));
    let last_beat = Arc::clone(&lock(&reading).last_beat);
    let (reaping_tx, reaping_rx) = oneshot::channel();
    let serving = serve(
        name.clone(),
        Arc::clone(&link),
        killer,
        Arc::clone(&reading),
        number,
        reaping_rx,
        here,
    );
    if here {
        // A start reading the answer here leaves the link to the task once it has
        // let go of the ring (see `Link::news`): until then the task only waits, and
        // a worker woken just to see it wait is a wake-up per start for nothing.
        drop(runtime::spawn_parked(serving));
    } else {
        tokio::spawn(serving);
    }
    let answer = if here && answer_here(&reading, &link, started + timeout) {
        Ok(lock(&reading).answer.take())
    } else {
        // The task reads the link from now on, and hands the answer over (or has
        // read it already).
        let (first_tx, first) = oneshot::channel();
        let read = {
            let mut r = lock(&reading);
            let read = r.answer.take();
            if read.is_none() && !r.ended {
                r.answer_to = Some(first_tx);
            }
            (read, r.ended)
        };
        match read {
            (Some(answer), _) => Ok(Some(answer)),
            (None, true) => Ok(None),
            (None, false) => {
                let left = timeout.saturating_sub(started.elapsed());
                tokio::time::timeout(left, first).await.map(Result::ok)
            }
        }
    };
    if let Err(e) = judge_answer(&mut waiter, answer, timeout, &name, pid).await {
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
        figures,
    });

    let capture = spawn::capture(&mut waiter);
    if let Some(interval) = heartbeat {
        tokio::spawn(watchdog(
            Arc::downgrade(&child),
            child.exit.clone(),
            last_beat,
            interval,
        ));
    }

    // Listed before the task that unlists it at its exit is handed it: a child that
    // exits at once could otherwise be unlisted first and listed after, and stay
    // listed, with its pidfd and its link, for as long as this process lives.
    children().push(Arc::clone(&child));
    #[cfg(feature = "metrics")]
    crate::runtime::metrics::child_started();
    let _ = reaping_tx.send(Reaping {
        child: Arc::clone(&child),
        waiter,
        capture,
        exit_tx,
    });
    Ok(child)
}

/// What the parent reads on a child's link and keeps from it: the handshake's answer,
/// the time of the last heartbeat, and the exit report.
struct Reading {
    /// Where the handshake's answer goes while a start waits for it in another task.
    answer_to: Option<oneshot::Sender<Packet>>,
    /// The handshake's answer, read by a start on its own thread.
    answer: Option<Packet>,
    answered: bool,
    /// The link has ended: nothing more will be read.
    ended: bool,
    last_beat: Arc<Mutex<tokio::time::Instant>>,
    report: Option<ExitReport>,
}

/// The longest a start reading its child's answer itself sleeps before it looks at
/// the link's socket: a refusal written there, or the child's end, wakes no futex.
const ANSWER_SLICE_MAX: Duration = Duration::from_millis(16);

impl Reading {
    fn new() -> Reading {
        Reading {
            answer_to: None,
            answer: None,
            answered: false,
            ended: false,
            last_beat: Arc::new(Mutex::new(tokio::time::Instant::now())),
            report: None,
        }
    }

    /// Takes one packet: the first `Ready` or `Rejected` answers the handshake (an
    /// actor's `start` may log or call before it); logs are re-emitted, heartbeats
    /// timed and the exit report kept.
    fn on_packet(&mut self, peer: &str, packet: Packet) {
        if !self.answered && matches!(packet, Packet::Ready { .. } | Packet::Rejected(_)) {
            self.answered = true;
            match self.answer_to.take() {
                Some(to) => {
                    let _ = to.send(packet);
                }
                None => self.answer = Some(packet),
            }
            return;
        }
        match packet {
            Packet::Log(record) => crate::runtime::logging::from_child(record),
            #[cfg(feature = "metrics")]
            Packet::Metrics(batch) => crate::runtime::metrics::from_child(batch),
            Packet::Exiting(r) => self.report = Some(r),
            Packet::Heartbeat => {
                *self.last_beat.lock().unwrap_or_else(|e| e.into_inner()) =
                    tokio::time::Instant::now()
            }
            other => {
                tracing::warn!(peer, packet = ?other, "unexpected packet from a child")
            }
        }
    }
}

fn lock(reading: &Mutex<Reading>) -> std::sync::MutexGuard<'_, Reading> {
    reading.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads the child's first messages on this thread until its answer, asleep on the
/// ring's futex between looks; `false` when the link's reader task must take over
/// instead: something came on the socket (a refusal, the child's end), a message
/// waits there, or `deadline` passed.
fn answer_here(reading: &Mutex<Reading>, link: &Link, deadline: std::time::Instant) -> bool {
    let Some(mut claim) = link.claim() else {
        return false;
    };
    let mut slice = Duration::from_millis(1);
    loop {
        let whole = claim.take_all(&mut |packet| lock(reading).on_packet("a child", packet));
        let answered = lock(reading).answered;
        if answered || !whole {
            return answered;
        }
        let now = std::time::Instant::now();
        if now >= deadline || claim.socket_stirred() {
            return false;
        }
        // Woken early by a packet, it is taken at the next turn. The reader task
        // waits for news meanwhile, and never asks for the ring.
        claim.sleep(slice.min(deadline - now));
        slice = (slice * 2).min(ANSWER_SLICE_MAX);
    }
}

/// What the task serving a child's link needs to reap it, once the child is started.
struct Reaping {
    child: Arc<Child>,
    waiter: spawn::Waiter,
    capture: Option<tokio::task::JoinHandle<Output>>,
    exit_tx: watch::Sender<Option<ExitReason>>,
}

/// The task that serves child `number`'s link, then reaps it: reads the link until it
/// ends (envelopes routed, packets to `reading`), then, if the start went through
/// (`reaping`), reaps the child. One task for both: the child's end wakes one task,
/// whose link has ended by the time its status is read. A link that breaks gets its
/// child killed through `killer`: a child that cannot be talked to is not left
/// running.
async fn serve(
    peer: String,
    link: Arc<Link>,
    killer: OwnedFd,
    reading: Arc<Mutex<Reading>>,
    number: u32,
    reaping: oneshot::Receiver<Reaping>,
    read_elsewhere: bool,
) {
    // Before the child can be killed: a kill counted earlier is not put down to it.
    crate::runtime::oom::baseline();
    if read_elsewhere {
        link.news().await;
    }
    let end = link
        .read_loop(&peer, |packet| lock(&reading).on_packet(&peer, packet))
        .await;
    {
        // No answer can come any more: a start still waiting for one learns so.
        let mut r = lock(&reading);
        r.ended = true;
        r.answer_to = None;
    }
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
    // Let go of the link and the pidfd before the child is reaped: the reap publishes
    // its exit, and a joiner then finds none of the child's descriptors left.
    drop(link);
    drop(killer);
    // Dropped by a start that failed: it has waited for the child itself.
    if let Ok(r) = reaping.await {
        let report = lock(&reading).report.take();
        reap(r.child, number, r.waiter, report, r.capture, r.exit_tx).await;
    }
}

/// Judges the child's answer to its Hello (`Err` when none came in time). A child
/// that does not answer is killed; one that refuses, or ends first, is reaped; each
/// is the error that says so. The caller unroutes the child on an error.
async fn judge_answer(
    waiter: &mut spawn::Waiter,
    answer: Result<Option<Packet>, tokio::time::error::Elapsed>,
    timeout: Duration,
    name: &str,
    pid: u32,
) -> Result<(), Error> {
    let name = name.to_string();
    let first = match answer {
        Err(_) => {
            waiter.start_kill();
            let _ = waiter.wait().await;
            return Err(Error::HandshakeTimeout { name, pid, timeout });
        }
        Ok(first) => first,
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

/// Reaps `child`, whose link has ended with `report`: waits for its exit and its
/// captured output, decides its exit reason, unroutes and unlists it, and only then
/// publishes the reason, having let go of the child's pidfd and link.
async fn reap(
    child: Arc<Child>,
    number: u32,
    mut waiter: spawn::Waiter,
    report: Option<ExitReport>,
    capture: Option<tokio::task::JoinHandle<Output>>,
    exit_tx: watch::Sender<Option<ExitReason>>,
) {
    let status = waiter.wait().await;
    // Its pidfd too is let go of before anyone learns the child exited (below).
    drop(waiter);
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
        Ok(Some(status)) => {
            let killed_after_timeout = child.killed.load(Ordering::SeqCst);
            let hung = child.hung.load(Ordering::SeqCst);
            // Only a SIGKILL nobody here sent asks the cgroup.
            let oom_killed = status == WaitStatus::Signaled(libc::SIGKILL)
                && !killed_after_timeout
                && !hung
                && crate::runtime::oom::killed_since_last_look();
            multiproc_core::ExitFacts {
                status,
                report: report.as_ref(),
                stop_requested: child.stop_requested.load(Ordering::SeqCst),
                killed_after_timeout,
                hung,
                oom_killed,
                limits: child.limits,
            }
            .reason()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot wait for a child");
            ExitReason::Killed
        }
    };
    *child.output.lock().unwrap_or_else(|e| e.into_inner()) = output;
    router::remove_child(number, &child.identity);
    children().retain(|c| !Arc::ptr_eq(c, &child));
    tracing::debug!(child = %child.name, %reason, "child exited");
    #[cfg(feature = "observer")]
    runtime::exits::publish(|| runtime::exits::ChildExit {
        name: child.name.clone(),
        pid: child.pid,
        reason: reason.clone(),
    });
    #[cfg(feature = "metrics")]
    crate::runtime::metrics::child_exited(&child.name, &reason);
    // Let go of the child (its pidfd, its link) before anyone learns it exited: a
    // joiner that then drops its `Process` frees them at once, not whenever this
    // task gets round to it.
    drop(child);
    let _ = exit_tx.send(Some(reason));
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
