//! A process's references to a manager's objects: one connection per manager and
//! process (its *reference link*), fed by a thread of its own, which holds every
//! reference the process's proxies take and gives them all back when it closes.
//!
//! Proxies' calls go on per-thread links; references do not, because a thread that
//! ends closes its link while the proxies it made live on in other threads. A
//! dropped proxy only queues its release here, so a drop never waits for the
//! server, and a manager that is gone costs the dropping thread nothing.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use multiproc_transport::BlockingConnection;

use super::client::{ServerAddr, unexpected};
use super::error::ManagerError;
use super::wire::{RefOp, Request, Response};

/// At most this many changes go in one request, so that one request stays far
/// below the frame limit.
const BATCH: usize = 4096;
/// How long [`flush`] waits for the server to take this process's changes.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a process that exits waits for its links to send what they queued.
const EXIT_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) enum Msg {
    Op(RefOp),
    /// Answered once every change queued before it is applied by the server (or
    /// can no longer be).
    Flush(Sender<()>),
}

/// This process's reference link to one server.
#[derive(Clone)]
pub(super) struct RefLink {
    pub(super) tx: Sender<Msg>,
    /// The link's connection number at the server: who a created object's first
    /// reference belongs to.
    pub(super) owner: u64,
    pub(super) incarnation: u64,
}

struct Entry {
    link: RefLink,
    /// The process that made it: a forked child has a copy of this table but not
    /// the thread that serves it.
    pid: rustix::process::Pid,
    alive: Arc<AtomicBool>,
}

static LINKS: LazyLock<Mutex<HashMap<ServerAddr, Entry>>> = LazyLock::new(Mutex::default);

thread_local! {
    /// Decoding a copy that stays in a managed object (see [`sharing`]).
    static SHARING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, in which proxies decoded come from a copy kept in a managed object
/// (a dict's `get`, a list's items): each takes a reference of its own and leaves
/// the stored copy's credit in place, since the copy may be read again.
pub(super) fn sharing<R>(f: impl FnOnce() -> R) -> R {
    let before = SHARING.with(|s| s.replace(true));
    let out = f();
    SHARING.with(|s| s.set(before));
    out
}

/// The change a proxy decoded now makes.
pub(super) fn decode_op(id: u64) -> RefOp {
    if SHARING.with(Cell::get) {
        RefOp::Share(id)
    } else {
        RefOp::Accept(id)
    }
}

/// This process's reference link to the server at `target` (made if needed). With
/// `incarnation`, a link to another incarnation of the server is
/// [`ManagerError::Restarted`] (the object is not in the server there now).
pub(super) fn link(target: &ServerAddr, incarnation: Option<u64>) -> Result<RefLink, ManagerError> {
    let mut links = LINKS.lock().unwrap_or_else(|e| e.into_inner());
    let pid = rustix::process::getpid();
    let current = links.get(target).filter(|e| {
        e.pid == pid
            && e.alive.load(Ordering::Relaxed)
            && incarnation.is_none_or(|i| i == e.link.incarnation)
    });
    let link = match current {
        Some(e) => e.link.clone(),
        None => {
            let (link, alive) = connect(target)?;
            links.insert(
                target.clone(),
                Entry {
                    link: link.clone(),
                    pid,
                    alive,
                },
            );
            link
        }
    };
    match incarnation {
        Some(i) if i != link.incarnation => Err(ManagerError::Restarted),
        _ => Ok(link),
    }
}

/// Forgets this process's link to `target` (it reached another incarnation than a
/// request did): the next [`link`] connects again.
pub(super) fn forget(target: &ServerAddr) {
    LINKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(target);
}

/// Waits until the server has applied every change this process queued for
/// `target` before the call (none when it has no link there).
pub(super) fn flush(target: &ServerAddr) {
    let tx = {
        let links = LINKS.lock().unwrap_or_else(|e| e.into_inner());
        match links.get(target) {
            Some(e) if e.pid == rustix::process::getpid() => e.link.tx.clone(),
            _ => return,
        }
    };
    let (done, wait) = mpsc::channel();
    if tx.send(Msg::Flush(done)).is_ok() {
        // An error: the link's thread ended, and nothing more will be applied.
        let _ = wait.recv_timeout(FLUSH_TIMEOUT);
    }
}

fn connect(target: &ServerAddr) -> Result<(RefLink, Arc<AtomicBool>), ManagerError> {
    let mut conn = target.open()?;
    conn.send(&Request::Hello)?;
    let incarnation = match conn.recv::<Response>()? {
        Response::Hello { incarnation } => incarnation,
        other => return Err(unexpected(&other)),
    };
    conn.send(&Request::Owner)?;
    let owner = match conn.recv::<Response>()? {
        Response::Owner { conn } => conn,
        Response::Fault(e) => return Err(e),
        other => return Err(unexpected(&other)),
    };
    flush_at_exit();
    let (tx, rx) = mpsc::channel();
    let alive = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&alive);
    std::thread::Builder::new()
        .name("multiproc-manager-refs".into())
        .spawn(move || run(conn, &rx, &flag))
        .map_err(|e| {
            match multiproc_transport::exhausted(&e, multiproc_transport::Resource::Task) {
                Some(source) => ManagerError::Exhausted {
                    what: "no thread for the manager's reference link".into(),
                    source,
                },
                None => ManagerError::Connect(format!("no thread for the reference link: {e}")),
            }
        })?;
    Ok((
        RefLink {
            tx,
            owner,
            incarnation,
        },
        alive,
    ))
}

/// Makes this process's exit wait (bounded) for its reference links to send what they
/// queued. A proxy decoded here (a child's arguments, say) queues the `Accept` that
/// takes its lent credit; a process that exited before its link sent it would leave
/// that credit, and the object, at the server for ever.
fn flush_at_exit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    extern "C" fn on_exit() {
        // Never unwind into libc.
        let _ = std::panic::catch_unwind(|| {
            let pid = rustix::process::getpid();
            let links: Vec<Sender<Msg>> = LINKS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .filter(|e| e.pid == pid && e.alive.load(Ordering::Relaxed))
                .map(|e| e.link.tx.clone())
                .collect();
            let deadline = std::time::Instant::now() + EXIT_FLUSH_TIMEOUT;
            for tx in links {
                let (done, wait) = mpsc::channel();
                if tx.send(Msg::Flush(done)).is_ok() {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    let _ = wait.recv_timeout(left);
                }
            }
        });
    }
    // `on_exit` never unwinds (it catches panics).
    ONCE.call_once(|| crate::runtime::exit::at_exit(on_exit));
}

/// The link's thread: sends the queued changes in batches, in order, for as long
/// as the process lives (the table keeps a sender) or the server answers.
fn run(mut conn: BlockingConnection, rx: &Receiver<Msg>, alive: &AtomicBool) {
    while let Ok(first) = rx.recv() {
        let mut ops = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Op(op) => ops.push(op),
                Msg::Flush(done) => flushes.push(done),
            }
            next = if ops.len() < BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        let applied = ops.is_empty() || send(&mut conn, ops).is_ok();
        for done in flushes {
            let _ = done.send(());
        }
        if !applied {
            // The server is gone (or this link broke): its references went with
            // it. Later drops find the receiver gone and do nothing.
            alive.store(false, Ordering::Relaxed);
            return;
        }
    }
}

fn send(conn: &mut BlockingConnection, ops: Vec<RefOp>) -> Result<(), ManagerError> {
    conn.send(&Request::Refs { ops })?;
    match conn.recv::<Response>()? {
        Response::Done => Ok(()),
        Response::Fault(e) => Err(e),
        other => Err(unexpected(&other)),
    }
}
