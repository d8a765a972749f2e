//! A child's link to its parent: served by the runtime's tasks at once, or, for a
//! function, once something first needs the runtime.
//!
//! A function child that never uses the runtime (no call, no primitive, no child of
//! its own, no log record) never builds one: it writes its Ready and its exit report
//! straight into the link's ring, and a small thread watches the parent meanwhile.
//! Measured with the forkserver, building the runtime took a seventh of a child's start
//! and join, and a process with its worker thread took a third longer to exit.
//!
//! # The watcher
//!
//! What a served link does for a child that runs a long function, the watcher does
//! until the link is served: it sleeps in `poll` on the control socket and a pidfd of
//! the parent, and when either wakes it (a message in the ring, since the ring's
//! reader announced that it sleeps; the parent's end; the parent's exit) it builds the
//! runtime, whose first act is to serve the link, which then handles what came
//! (a stop request, the parent gone) as it always does. Everything that sends up the
//! link (a call routed through the parent, a log record, a heartbeat) or needs the
//! runtime (the blocking API, starting a child) builds it the same way
//! ([`runtime::defer_start`](crate::runtime::defer_start)).
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use multiproc_core::{Packet, codec, wire};
use rustix::net::SendFlags;
use tokio::runtime::Handle;

use crate::runtime;
use crate::runtime::children::{self, register_exit_handler};
use crate::runtime::exit::{EXIT_BOOTSTRAP_FAILED, EXIT_PARENT_GONE, exit_now};
use crate::runtime::link::{Link, Peer};
use crate::runtime::ring::{Rings, Rx, Tx, Wake};
use crate::runtime::{logging, router, stop};

/// The link to the parent while no runtime serves it.
struct Early {
    sock: StdUnixStream,
    tx: Tx,
    rx: Rx,
    parent_pidfd: OwnedFd,
}

static EARLY: Mutex<Option<Early>> = Mutex::new(None);

/// Wakes the watcher when something else served the link first, so that it ends
/// rather than linger in `poll` until the link's first message. Closed by the watcher
/// only, once it has woken: closed by the ringer, its number could be reused before
/// a watcher that was slow to start polls it.
static WATCHER_BELL: Mutex<Option<OwnedFd>> = Mutex::new(None);

fn watcher_bell() -> MutexGuard<'static, Option<OwnedFd>> {
    WATCHER_BELL.lock().unwrap_or_else(|e| e.into_inner())
}

fn early() -> MutexGuard<'static, Option<Early>> {
    EARLY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Room for the watcher's stack: it polls, and builds the runtime at most once.
const WATCHER_STACK: usize = 256 << 10;

/// Answers Ready on the link to the parent without a runtime, and leaves the link to
/// be served once the runtime is first needed. `Err` gives the socket and rings back
/// when that cannot be arranged (no descriptor for the parent's pidfd, no thread for
/// the watcher): the caller then serves the link at once, which says why it cannot.
pub(crate) fn defer(sock: StdUnixStream, rings: Rings) -> Result<(), (StdUnixStream, Rings)> {
    let parent = crate::runtime::current::me().parent.as_ref().map(|p| p.pid);
    let pidfd = parent
        .and_then(|pid| rustix::process::Pid::from_raw(pid as i32))
        .and_then(|pid| {
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::NONBLOCK).ok()
        });
    let Some(parent_pidfd) = pidfd else {
        return Err((sock, rings));
    };
    // Held until the state is in place: a watcher woken at once waits for it.
    let mut state = early();
    runtime::defer_start(Box::new(serve_deferred));
    let Ok(bell) = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC) else {
        return Err((sock, rings));
    };
    let fds = (sock.as_raw_fd(), parent_pidfd.as_raw_fd(), bell.as_raw_fd());
    *watcher_bell() = Some(bell);
    let watcher = std::thread::Builder::new()
        .name("multiproc-watch".into())
        .stack_size(WATCHER_STACK)
        .spawn(move || watch(fds));
    if watcher.is_err() {
        runtime::cancel_deferred_start();
        watcher_bell().take();
        return Err((sock, rings));
    }
    let (mut tx, rx) = rings.split();
    let ready = Packet::Ready {
        pid: std::process::id(),
    };
    // A fresh ring has room for a Ready: it cannot fail but by a parent's scribbles,
    // which the served link then finds.
    let _ = write(&sock, &mut tx, &ready, Ring::AsAsked);
    // From now on a message in the ring rings the doorbell, which wakes the watcher.
    let asleep = rx.announce_sleep();
    *state = Some(Early {
        sock,
        tx,
        rx,
        parent_pidfd,
    });
    drop(state);
    if !asleep {
        // Something came before the announcement: serve it now.
        serve_now();
    }
    Ok(())
}

/// Whether a write into the ring rings the doorbell when the parent's reader asks.
#[derive(Clone, Copy, PartialEq)]
enum Ring {
    AsAsked,
    /// Not: this process is about to end, and the end of its socket wakes the
    /// reader, which reads the ring to its end before it sees the end. A doorbell
    /// too would cost the parent a second wake-up for the same exit.
    NotBeforeExit,
}

/// Writes `packet` into the ring and wakes the parent's reader as it asked (see
/// [`Ring`]).
fn write(sock: &StdUnixStream, tx: &mut Tx, packet: &Packet, ring: Ring) -> Result<(), ()> {
    let mut msg = vec![wire::PACKET];
    codec::encode_into(packet, &mut msg).map_err(|_| ())?;
    if msg.len() > tx.max_message() {
        return Err(());
    }
    match tx.write(&msg).map_err(|_| ())? {
        Wake::No => {}
        Wake::Doorbell if ring == Ring::NotBeforeExit => {}
        Wake::Doorbell => {
            let _ = rustix::net::send(sock, &[0; 4], SendFlags::NOSIGNAL | SendFlags::DONTWAIT);
        }
        Wake::Futex => tx.wake_futex(),
    }
    Ok(())
}

/// Whether the parent closed its end of the link (it gave up on this child).
pub(crate) fn parent_hung_up() -> bool {
    use rustix::event::{PollFd, PollFlags};
    let state = early();
    let Some(e) = state.as_ref() else {
        return router::parent().is_none_or(|link| link.is_closed() || link.peer_hung_up());
    };
    let mut fds = [PollFd::new(&e.sock, PollFlags::RDHUP)];
    matches!(rustix::event::poll(&mut fds, Some(&rustix::event::Timespec::default())), Ok(n) if n > 0)
}

/// Reports how the entry ended straight into the ring, if the link is still not
/// served; `false` when it is (or the ring would not take it), and the caller reports
/// through the served link. On `true` the state stays locked, so nothing starts
/// serving the link while the process ends.
pub(crate) fn report_early(report: &Packet) -> bool {
    let mut state = early();
    let Some(e) = state.as_mut() else {
        return false;
    };
    if write(&e.sock, &mut e.tx, report, Ring::NotBeforeExit).is_err() {
        drop(state);
        serve_now();
        return false;
    }
    runtime::cancel_deferred_start();
    std::mem::forget(state);
    true
}

/// Serves the link now, building the runtime.
fn serve_now() {
    if let Err(e) = runtime::ensure() {
        eprintln!("multiproc: cannot serve the control socket: {e}");
        exit_now(EXIT_BOOTSTRAP_FAILED);
    }
}

/// The watcher: sleeps until the parent says something, hangs up or exits, then
/// serves the link (unless something else did first).
fn watch((sock, pidfd, bell): (RawFd, RawFd, RawFd)) {
    use rustix::event::{PollFd, PollFlags};
    // SAFETY: the socket and the pidfd live as long as the process once the link is
    // served (the socket until the link ends, which ends the process; the pidfd in its
    // watch task), and until then in `EARLY`; the bell lives in `WATCHER_BELL` until
    // the watcher itself takes it, after its last poll.
    let (sock, pidfd, bell) = unsafe {
        (
            BorrowedFd::borrow_raw(sock),
            BorrowedFd::borrow_raw(pidfd),
            BorrowedFd::borrow_raw(bell),
        )
    };
    // One wake-up is enough (a signal's aside): whatever woke the watcher, it serves
    // the link or finds it served, and ends.
    while runtime::start_deferred() {
        let mut set = [
            PollFd::new(&sock, PollFlags::IN | PollFlags::RDHUP),
            PollFd::new(&pidfd, PollFlags::IN),
            PollFd::new(&bell, PollFlags::IN),
        ];
        match rustix::event::poll(&mut set, None) {
            Err(rustix::io::Errno::INTR) => continue,
            _ => break,
        }
    }
    watcher_bell().take();
    if runtime::start_deferred() && runtime::ensure().is_err() {
        // The parent speaks, and this child cannot listen: it cannot be stopped or
        // told its parent is gone, so it ends as one whose parent is gone.
        exit_now(EXIT_PARENT_GONE);
    }
}

/// The deferred start: the runtime's first act is to serve the link.
fn serve_deferred(handle: &'static Handle) {
    let Some(Early {
        sock,
        tx,
        rx,
        parent_pidfd,
    }) = early().take()
    else {
        return;
    };
    match serve(handle, sock, tx, rx, Some(parent_pidfd)) {
        Ok(link) => {
            logging::set_uplink(link);
            // Served from another thread: the watcher has nothing left to watch.
            if let Some(bell) = watcher_bell().as_ref() {
                let _ = rustix::io::write(bell, &1u64.to_ne_bytes());
            }
        }
        Err(e) => {
            eprintln!("multiproc: cannot serve the control socket: {e}");
            exit_now(EXIT_BOOTSTRAP_FAILED);
        }
    }
}

/// Serves the link to the parent at once; returns the sender of the link.
pub(crate) fn start(sock: StdUnixStream, rings: Rings) -> std::io::Result<router::LinkTx> {
    let handle = runtime::handle();
    let parent = crate::runtime::current::me().parent.as_ref().map(|p| p.pid);
    let pidfd = parent
        .and_then(|pid| rustix::process::Pid::from_raw(pid as i32))
        .and_then(|pid| {
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::NONBLOCK).ok()
        });
    let (tx, rx) = rings.split();
    let link = serve(handle, sock, tx, rx, pidfd)?;
    logging::set_uplink(Arc::clone(&link));
    Ok(link)
}

/// Starts the tasks serving the link to the parent: its reader, and the watch on the
/// parent's pidfd.
fn serve(
    handle: &'static Handle,
    sock: StdUnixStream,
    tx: Tx,
    rx: Rx,
    parent_pidfd: Option<OwnedFd>,
) -> std::io::Result<router::LinkTx> {
    let _enter = handle.enter();
    let stream = crate::runtime::link::Socket::new(sock)?;
    // This end's reader spins a little: calls to a child come back to back.
    let link = Link::from_parts(stream, tx, rx, Peer::Parent, true);
    router::set_parent(Arc::clone(&link));
    register_exit_handler();

    let reader = Arc::clone(&link);
    handle.spawn(async move {
        let end = reader
            .read_loop("parent", |packet| match packet {
                Packet::Envelope(env) => router::route(env),
                Packet::Stop => stop::request(),
                other => tracing::warn!(packet = ?other, "unexpected packet from the parent"),
            })
            .await;
        tracing::debug!(?end, "the link to the parent ended");
        parent_gone().await;
    });
    if let Some(pidfd) = parent_pidfd
        // SAFETY: the pidfd is owned by the AsyncFd, which keeps it open until it is
        // dropped, after deregistration; nothing else uses this descriptor.
        && let Ok(watch) = unsafe { tokio::io::unix::AsyncFd::register(pidfd) }
    {
        handle.spawn(async move {
            let _ = watch.readable().await;
            parent_gone().await;
        });
    }
    Ok(link)
}

/// The parent is gone: stop what we run and exit, bounded in time.
async fn parent_gone() {
    stop::request();
    let _ = tokio::time::timeout(Duration::from_secs(1), children::finish_children()).await;
    exit_now(EXIT_PARENT_GONE);
}
