//! A process's async links to managers, for the `_async` methods: each call takes a
//! connection of its own (an idle one of this process, or a new one) and gives it
//! back once its answer is in, so that a waiting call holds up no other task, as
//! the blocking API's one link per thread holds up no other thread.
//!
//! A call's future dropped before its answer drops its connection with it: a request
//! waiting at the server (a queue's `get`, a lock's `acquire`) then gives up as for a
//! caller that died, and takes nothing. One that the server had already answered
//! happened, as for a blocking caller interrupted at that moment.
//!
//! Async links stay on the socket: the shared-memory rings of the blocking links
//! make their reader sleep on a futex, which a task of an async runtime must not.
//! Opening one (connect and handshake) runs on the runtime's blocking threads.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use multiproc_transport::Connection;

use super::client::{ServerAddr, unexpected};
use super::error::ManagerError;
use super::wire::{Request, Response};

/// At most this many idle links are kept per server and process; more are closed.
const MAX_IDLE: usize = 16;

/// This process's idle async links, by server.
static IDLE: LazyLock<Mutex<HashMap<ServerAddr, Idle>>> = LazyLock::new(Mutex::default);

struct Idle {
    /// The process that opened them: a forked child inherits the table, not the
    /// right to use its connections.
    pid: rustix::process::Pid,
    links: Vec<AsyncLink>,
}

/// An async connection to a manager's server, used by one call at a time.
#[derive(Debug)]
pub(super) struct AsyncLink {
    conn: Connection,
    /// The server incarnation it reached.
    pub(super) incarnation: u64,
    /// It failed on the way: never given back.
    broken: bool,
}

impl AsyncLink {
    /// An idle link of this process to `server`, or a new one.
    pub(super) async fn take(server: &ServerAddr) -> Result<AsyncLink, ManagerError> {
        if let Some(link) = idle(server) {
            return Ok(link);
        }
        let to = server.clone();
        let conn = tokio::task::spawn_blocking(move || to.open())
            .await
            .map_err(|e| ManagerError::Connect(format!("the connecting task failed: {e}")))??;
        let mut link = AsyncLink {
            conn: Connection::from(conn),
            incarnation: 0,
            broken: false,
        };
        link.incarnation = match link.ask(&Request::Hello).await? {
            Response::Hello { incarnation } => incarnation,
            other => return Err(unexpected(&other)),
        };
        Ok(link)
    }

    /// Sends `request` and returns the answer; the server's fault is an error for
    /// this call, and the link goes on. A link that breaks is marked, so that it is
    /// not given back.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a future dropped midway leaves the link mid-exchange. The
    /// callers own their link, so it is dropped (closed) with the future.
    pub(super) async fn ask(&mut self, request: &Request) -> Result<Response, ManagerError> {
        let exchanged = match self.conn.send(request).await {
            Ok(()) => self.conn.recv::<Response>().await,
            Err(e) => Err(e),
        };
        match exchanged {
            Ok(Response::Fault(e)) => Err(e),
            Ok(r) => Ok(r),
            Err(e) => match ManagerError::from(e) {
                // Nothing was written, or a whole frame was read: the link is sound.
                e @ (ManagerError::Decode(_) | ManagerError::Encode(_)) => Err(e),
                e => {
                    self.broken = true;
                    Err(match e {
                        ManagerError::Gone(_) => e,
                        other => ManagerError::Gone(other.to_string()),
                    })
                }
            },
        }
    }

    /// Gives the link back to this process's idle ones (closed if it broke, or
    /// there are enough).
    pub(super) fn give_back(self, server: &ServerAddr) {
        if self.broken {
            return;
        }
        let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
        let pid = rustix::process::getpid();
        let entry = idle.entry(server.clone()).or_insert_with(|| Idle {
            pid,
            links: Vec::new(),
        });
        if entry.pid != pid {
            std::mem::forget(std::mem::replace(
                entry,
                Idle {
                    pid,
                    links: Vec::new(),
                },
            ));
        }
        if entry.links.len() < MAX_IDLE {
            entry.links.push(self);
        }
    }
}

/// An idle link of this process to `server`.
fn idle(server: &ServerAddr) -> Option<AsyncLink> {
    let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
    let entry = idle.get_mut(server)?;
    if entry.pid != rustix::process::getpid() {
        // The parent's, copied by a fork: their registrations are with the parent's
        // reactor, which a drop here would touch. Left open, never used.
        std::mem::forget(idle.remove(server));
        return None;
    }
    entry.links.pop()
}

/// Closes this process's idle links to `server` (it was shut down, or restarted).
pub(super) fn forget(server: &ServerAddr) {
    IDLE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(server);
}
