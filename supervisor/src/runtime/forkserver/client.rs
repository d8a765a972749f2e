//! The parent's side of the forkserver: starting it, asking it for children, and the
//! exit statuses it relays where the kernel does not reap its children.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use multiproc_core::{WaitStatus, codec};
use tokio::sync::oneshot;

use super::{
    Exited, FORKSERVER_NAME, Fork, MAY_AUTOREAP, MUST_RELAY, READY_AUTOREAPING, READY_RELAYING,
    Reply, read_frame, write_frame,
};
use crate::runtime::error::Error;
use crate::runtime::exit::EXIT_INIT_NOT_CALLED;
use crate::runtime::handoff::{self, ENV_FORKSERVER, ENV_PARENT_PID};
use crate::runtime::title;

/// Exit statuses relayed by the forkserver, by pid, and waiters for them.
#[derive(Default)]
struct Exits {
    waiting: HashMap<u32, oneshot::Sender<WaitStatus>>,
    early: HashMap<u32, WaitStatus>,
    /// The forkserver is gone and nothing more will be relayed: a child it forked just
    /// before it died gets no sender to wait on, and watches its pidfd at once.
    relay_lost: bool,
}

struct Client {
    requests: StdUnixStream,
    exits: Arc<Mutex<Exits>>,
    process: tokio::process::Child,
    /// The kernel reaps its children: their exits are read through their pidfds, and
    /// nothing is relayed.
    autoreaps: bool,
}

fn client() -> MutexGuard<'static, Option<Client>> {
    static CLIENT: Mutex<Option<Client>> = Mutex::new(None);
    CLIENT.lock().unwrap_or_else(|e| e.into_inner())
}

fn lock(exits: &Mutex<Exits>) -> MutexGuard<'_, Exits> {
    exits.lock().unwrap_or_else(|e| e.into_inner())
}

/// A child forked by the forkserver.
#[derive(Debug)]
pub(crate) struct Forked {
    pub(crate) pid: u32,
    pub(crate) pidfd: OwnedFd,
    /// The status the forkserver will relay; `None` when it is read through the
    /// pidfd: the kernel reaps the child, or the relay is lost.
    pub(crate) exit: Option<oneshot::Receiver<WaitStatus>>,
}

/// Whether a request may be made from any thread: a forkserver serves (so the request
/// needs no new one), and no test waits, after its reply, for the relay task, which
/// the thread might be the one to run.
pub(crate) fn serves() -> bool {
    !DIE_AFTER_REPLY.load(Ordering::SeqCst)
        && client()
            .as_mut()
            .is_some_and(|c| matches!(c.process.try_wait(), Ok(None)))
}

/// Asks the forkserver (started or restarted as needed when `may_start`, waiting up
/// to `handshake_timeout` for a new one to answer) for a child whose control socket
/// is `socket`. Runs inside the runtime's context; `may_start` only on the spawner
/// thread, to which a new forkserver's parent-death signal is tied.
pub(crate) fn fork(
    socket: OwnedFd,
    env: Vec<(String, String)>,
    handshake_timeout: Duration,
    may_start: bool,
) -> Result<Forked, Error> {
    let mut guard = client();
    let alive = guard
        .as_mut()
        .is_some_and(|c| matches!(c.process.try_wait(), Ok(None)));
    if !alive {
        if !may_start {
            return Err(Error::os(
                "the forkserver could not start the child",
                std::io::Error::other("the forkserver ended"),
            ));
        }
        *guard = Some(start(handshake_timeout)?);
    }
    request(&mut guard, socket, env)
}

fn request(
    guard: &mut MutexGuard<'static, Option<Client>>,
    socket: OwnedFd,
    env: Vec<(String, String)>,
) -> Result<Forked, Error> {
    const WHAT: &str = "the forkserver could not start the child";
    let c = guard.as_mut().expect("started by the caller");
    let request = Fork {
        logical_parent: std::process::id(),
        env,
    };
    let exchange = write_frame(&c.requests, &request, &[socket.as_fd()])
        .and_then(|()| wait_readable(&c.requests))
        .and_then(|()| read_frame::<Reply>(&c.requests, 1));
    let (reply, mut fds) = match exchange {
        Ok(got) => got,
        Err(e) => {
            // A forkserver that cannot answer is replaced at the next request.
            let _ = c.process.start_kill();
            **guard = None;
            return Err(Error::os(WHAT, e));
        }
    };
    match reply {
        Reply::Forked { pid } => {
            let pidfd = fds.pop().ok_or_else(|| {
                Error::os(WHAT, std::io::Error::other("the forkserver sent no pidfd"))
            })?;
            if DIE_AFTER_REPLY.swap(false, Ordering::SeqCst) {
                die_after_reply(c);
            }
            if c.autoreaps {
                return Ok(Forked {
                    pid,
                    pidfd,
                    exit: None,
                });
            }
            let (tx, rx) = oneshot::channel();
            let mut exits = lock(&c.exits);
            match exits.early.remove(&pid) {
                Some(status) => {
                    let _ = tx.send(status);
                }
                // Dropping the sender tells the waiter the status is lost.
                None if exits.relay_lost => drop(tx),
                None => {
                    exits.waiting.insert(pid, tx);
                }
            }
            Ok(Forked {
                pid,
                pidfd,
                exit: Some(rx),
            })
        }
        Reply::Failed { errno } => Err(Error::spawning(
            "the forkserver could not fork the child",
            std::io::Error::from_raw_os_error(errno),
        )),
    }
}

/// Waits until the forkserver's reply can be read. In `poll`, not in `recvmsg`: a
/// thread asleep in a Unix socket's `recvmsg` is also woken when the peer reads what
/// this end wrote (the room freed for writing wakes every sleeper on the socket), so
/// it would wake once for the forkserver's read of the request and sleep again before
/// the reply; `poll` wakes for what it asked for only.
fn wait_readable(sock: &StdUnixStream) -> std::io::Result<()> {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut set = [PollFd::new(sock, PollFlags::IN)];
    loop {
        match poll(&mut set, None) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Starts a forkserver: this binary with the role marker, its request socket as stdin,
/// and waits up to `timeout` for its handshake.
fn start(timeout: Duration) -> Result<Client, Error> {
    let os = |what| move |e| Error::os(what, e);
    let (requests, theirs) = StdUnixStream::pair().map_err(os("cannot create a socketpair"))?;
    let (events, their_events) = StdUnixStream::pair().map_err(os("cannot create a socketpair"))?;
    let exe = handoff::executable().map_err(os("cannot find this program's executable"))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg0(title::arg0(FORKSERVER_NAME))
        .arg(title::room())
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .env(ENV_FORKSERVER, "1")
        .env(ENV_PARENT_PID, std::process::id().to_string());
    handoff::mark_early(&mut cmd);
    let process = tokio::process::Command::from(cmd)
        .spawn()
        .map_err(|e| Error::spawning("cannot start the forkserver", e))?;
    let autoreaps = match handshake(&requests, &their_events, timeout) {
        Ok(autoreaps) => autoreaps,
        Err(e) => return Err(failed_start(process, e, timeout)),
    };
    drop(their_events);
    let exits = Arc::new(Mutex::new(Exits::default()));
    let relayed = Arc::clone(&exits);
    events
        .set_nonblocking(true)
        .map_err(os("cannot configure the socket"))?;
    let events =
        tokio::net::UnixStream::from_std(events).map_err(os("cannot register the socket"))?;
    tokio::spawn(async move {
        let mut reader = multiproc_transport::FrameReader::new(events, 4096);
        let mut buf = Vec::new();
        while let Ok(true) = reader.read_frame(&mut buf).await {
            let Ok(Exited { pid, code, signal }) = codec::decode::<Exited>(&buf) else {
                continue;
            };
            let status = match (code, signal) {
                (_, Some(sig)) => WaitStatus::Signaled(sig),
                (Some(code), None) => WaitStatus::Exited(code),
                (None, None) => WaitStatus::Exited(255),
            };
            let mut exits = lock(&relayed);
            match exits.waiting.remove(&pid) {
                Some(tx) => {
                    let _ = tx.send(status);
                }
                None => {
                    exits.early.insert(pid, status);
                }
            }
        }
        // The forkserver is gone: the statuses it did not relay are lost; dropping the
        // senders tells each waiter so, and a reply still being read names a child
        // whose status is lost too.
        let mut exits = lock(&relayed);
        exits.relay_lost = true;
        exits.waiting.clear();
    });
    Ok(Client {
        requests,
        exits,
        process,
        autoreaps,
    })
}

/// Hands the forkserver its events socket and reads its answer: `true` when the
/// kernel reaps its children.
fn handshake(
    requests: &StdUnixStream,
    events: &StdUnixStream,
    timeout: Duration,
) -> std::io::Result<bool> {
    let mode = if RELAY_EXITS.load(Ordering::SeqCst) {
        MUST_RELAY
    } else {
        MAY_AUTOREAP
    };
    multiproc_transport::send_with_fds(requests.as_fd(), &[mode], &[events.as_fd()])?;
    requests.set_read_timeout(Some(timeout))?;
    let mut answer = [0u8; 1];
    (&*requests).read_exact(&mut answer)?;
    requests.set_read_timeout(None)?;
    match answer[0] {
        READY_AUTOREAPING => Ok(true),
        READY_RELAYING => Ok(false),
        _ => Err(std::io::Error::other(
            "the forkserver's handshake is garbage",
        )),
    }
}

/// Set by a test: forkservers started from now on relay every exit, even where the
/// kernel could reap their children.
static RELAY_EXITS: AtomicBool = AtomicBool::new(false);

/// Makes the forkservers started from now on relay their children's exits (`true`),
/// or let the kernel reap them where it can (`false`, the default). Only for tests
/// that run both paths.
pub(crate) fn relay_exits(relay: bool) {
    RELAY_EXITS.store(relay, Ordering::SeqCst);
}

/// Whether the running forkserver lets the kernel reap its children; `None` if none
/// runs. Only for tests.
pub(crate) fn autoreaps() -> Option<bool> {
    let mut guard = client();
    let c = guard.as_mut()?;
    match c.process.try_wait() {
        Ok(None) => Some(c.autoreaps),
        _ => None,
    }
}

/// The error for a forkserver that did not answer its handshake, once it has ended
/// (killed first if it still runs): a program whose `main` skipped `init()` ran it as
/// a new root, and either reached a call that refused to go on, or did not.
fn failed_start(
    mut process: tokio::process::Child,
    error: std::io::Error,
    timeout: Duration,
) -> Error {
    let pid = process.id().unwrap_or(0);
    let timed_out = matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    );
    // Whatever it does, it must not go on: it is not serving.
    let _ = process.start_kill();
    // Waited for here, on the spawner thread: the ended forkserver is reaped before its
    // parent reports, so no process of it remains when the error is seen.
    let status = rustix::process::Pid::from_raw(pid as i32).and_then(|p| {
        let _ = rustix::process::waitid(
            rustix::process::WaitId::Pid(p),
            rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOWAIT,
        );
        process.try_wait().ok().flatten()
    });
    let name = "the forkserver".to_string();
    match status.map(handoff::wait_status) {
        Some(WaitStatus::Exited(EXIT_INIT_NOT_CALLED)) => Error::InitNotCalled,
        _ if timed_out => Error::HandshakeTimeout { name, pid, timeout },
        Some(status) => Error::NoHandshake {
            name,
            reason: multiproc_core::exit_reason(status, None, false, false),
        },
        None => Error::os("the forkserver did not answer its handshake", error),
    }
}

/// Set by a test: the forkserver is killed right after its next `Forked` reply, and the
/// reply is handled only once the relay has seen it go.
static DIE_AFTER_REPLY: AtomicBool = AtomicBool::new(false);

fn die_after_reply(c: &mut Client) {
    let _ = c.process.start_kill();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !lock(&c.exits).relay_lost && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
}

/// Kills the forkserver right after its next `Forked` reply, before the reply is
/// handled. Only for tests of a forkserver that dies in that window.
pub(crate) fn die_after_next_reply() {
    DIE_AFTER_REPLY.store(true, Ordering::SeqCst);
}

/// The running forkserver's pid, if one runs. Only for tests.
pub(crate) fn pid() -> Option<u32> {
    let mut guard = client();
    let c = guard.as_mut()?;
    match c.process.try_wait() {
        Ok(None) => c.process.id(),
        _ => None,
    }
}

/// Kills the running forkserver and returns its pid, if one runs. Only for tests of
/// what its death does.
pub(crate) fn kill_forkserver() -> Option<u32> {
    let mut guard = client();
    let c = guard.as_mut()?;
    let pid = c.process.id();
    let _ = c.process.start_kill();
    pid
}
