//! A process placed on a node: started by the node's agent, watched from here; and
//! messages to the actor it hosts, relayed by that agent.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use multiproc_core::{ExitReason, StartSpec};
use tokio::sync::watch;

use multiproc_core::NodeError;
use serde::{Deserialize, Serialize};

use super::client::{self, Node};
use super::wire::{Reply, Request, Settings};
use crate::runtime;
use crate::runtime::error::CallError;
use crate::runtime::router;

/// The root's record of a process running on a node.
#[derive(Debug)]
pub(crate) struct RemoteChild {
    pub(crate) node: Node,
    pub(crate) id: u64,
    pub(crate) pid: u32,
    pub(crate) exit: watch::Receiver<Option<ExitReason>>,
    identity: multiproc_core::Identity,
    /// Set when this record is dropped: see [`Drop`].
    dropped: Arc<AtomicBool>,
    /// How this process's exit handler ends it: see [`finish`].
    ending: Ending,
}

/// What becomes of a placed process when the process that placed it exits: what
/// becomes of a local child (`runtime::children::finish_children`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Joined: the exit waits for it.
    Join,
    /// Stopped (a daemon, a supervised child, an actor), killed if it does not stop
    /// in time.
    Stop,
}

/// The processes placed from here and not seen to exit. Held strongly: a dropped
/// `Process` leaves its process running, and the exit still finishes it, as it
/// does a local child's.
fn running() -> std::sync::MutexGuard<'static, Vec<Arc<RemoteChild>>> {
    static RUNNING: std::sync::Mutex<Vec<Arc<RemoteChild>>> = std::sync::Mutex::new(Vec::new());
    let mut all = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|c| c.exit.borrow().is_none());
    all
}

#[allow(
    unsafe_code,
    reason = "linkme places the registration in its link section"
)]
#[linkme::distributed_slice(crate::runtime::children::FINISH_ELSEWHERE)]
static PLACED: crate::runtime::children::FinishElsewhere =
    crate::runtime::children::FinishElsewhere {
        running: || !running().is_empty(),
        finish: || Box::pin(finish()),
    };

/// Finishes every process placed from here, together: a node that is down has
/// nothing left to finish ([`RemoteChild::stop`] and the exit watch end with
/// `NodeDown`).
async fn finish() {
    let all: Vec<Arc<RemoteChild>> = running().clone();
    let mut ends = tokio::task::JoinSet::new();
    for c in all {
        ends.spawn(async move {
            match c.ending {
                Ending::Stop => {
                    c.stop(crate::runtime::children::DEFAULT_SHUTDOWN_TIMEOUT)
                        .await;
                }
                Ending::Join => {
                    crate::runtime::children::wait_exit(&mut c.exit.clone()).await;
                }
            }
        });
    }
    while ends.join_next().await.is_some() {}
}

/// The rest of the tree reaches the process through here (`placed`) while it runs.
/// Once it has exited, calls find no process, as the node says; but one whose node
/// went down stays known while this record lives, so that its calls say `NodeDown`,
/// as those made here do.
impl Drop for RemoteChild {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
        if self.exit.borrow().is_some() {
            super::route::gone(&self.identity);
        }
    }
}

fn unexpected(node: &Node, reply: Reply) -> NodeError {
    NodeError::Remote {
        node: node.name().to_string(),
        message: format!("unexpected answer: {reply:?}"),
    }
}

/// Asks `node` to start `start` under `name`, then watches it: its exit reason is
/// the node's answer, or `NodeDown` if the node goes first.
pub(crate) async fn start(
    node: &Node,
    identity: &multiproc_core::Identity,
    name: String,
    start: StartSpec,
    daemon: bool,
    ending: Ending,
    settings: Settings,
) -> Result<Arc<RemoteChild>, NodeError> {
    let (node, identity) = (node.clone(), identity.clone());
    runtime::run(async move {
        if let Some(e) = node.down_error() {
            return Err(e);
        }
        let request = Request::Spawn {
            token: node.inner.token,
            name,
            identity: identity.clone(),
            start,
            daemon,
            settings,
        };
        let (id, pid) = match node.call(&request).await? {
            Reply::Spawned { id, pid } => (id, pid),
            Reply::Failed(message) => {
                return Err(NodeError::Remote {
                    node: node.name().to_string(),
                    message,
                });
            }
            other => return Err(unexpected(&node, other)),
        };
        let (tx, rx) = watch::channel(None);
        super::route::placed(&identity, &node, id, pid, rx.clone());
        let dropped = Arc::new(AtomicBool::new(false));
        let (watcher, placed, record_dropped) =
            (node.clone(), identity.clone(), Arc::clone(&dropped));
        tokio::spawn(async move {
            let reason = match watcher
                .call(&Request::Watch {
                    token: watcher.inner.token,
                    id,
                })
                .await
            {
                Ok(Reply::Exited(reason)) => reason,
                // The node answered something else: it no longer knows the process.
                Ok(_) | Err(_) => ExitReason::NodeDown {
                    node: watcher.name().to_string(),
                },
            };
            let node_down = matches!(reason, ExitReason::NodeDown { .. });
            let _ = tx.send(Some(reason));
            if !node_down || record_dropped.load(Ordering::SeqCst) {
                super::route::gone(&placed);
            }
        });
        let child = Arc::new(RemoteChild {
            node,
            id,
            pid,
            exit: rx,
            identity,
            dropped,
            ending,
        });
        running().push(Arc::clone(&child));
        Ok(child)
    })
    .await
}

/// An actor's place on another node: the node's name and the agent's number for
/// the process there. A call goes through this process's session with that node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OnNode {
    pub(crate) node: String,
    pub(crate) id: u64,
}

/// The process at `on` if this process placed it: its node's token for this
/// process, its pid there and its exit (what far handles in a message to it are
/// bound to).
pub(crate) fn placed_here(on: &OnNode) -> Option<(u64, u32, watch::Receiver<Option<ExitReason>>)> {
    super::route::placed_from_here(&on.node, on.id)
        .map(|(node, pid, exit)| (node.inner.token, pid, exit))
}

fn node_of(on: &OnNode) -> Result<Node, NodeError> {
    let node = client::connected(&on.node).ok_or_else(|| NodeError::NodeDown {
        node: on.node.clone(),
        why: "not connected from this process".into(),
    })?;
    match node.down_error() {
        Some(e) => Err(e),
        None => Ok(node),
    }
}

/// Casts an encoded message to the actor at `on`: sent now, on the node's session,
/// so it keeps its order with the calls sent after it.
pub(crate) fn actor_cast(
    on: &OnNode,
    payload: Vec<u8>,
) -> Result<(), crate::runtime::error::CallError> {
    let node = node_of(on)?;
    let request = Request::Actor {
        token: node.inner.token,
        id: on.id,
        below: Vec::new(),
        payload,
        corr: 0,
    };
    Ok(node.cast(&request)?)
}

/// Relays a call to the actor `addr` (known here) at `on`; its answer, read by `f`.
///
/// The request is a cast into the engine's mailbox, from the calling thread; the
/// node casts the answer to this process's gateway, on the engine's thread, which
/// puts it in the call's slot and wakes the caller: one thread wake-up each way,
/// with no task of the process runtime between. Runs on the caller's own executor.
pub(crate) async fn actor_call<R>(
    addr: &multiproc_core::Identity,
    on: &OnNode,
    payload: Vec<u8>,
    f: impl FnOnce(Result<&[u8], multiproc_core::RemoteError>) -> Result<R, CallError>,
) -> Result<R, CallError> {
    let node = node_of(on)?;
    let corr = router::next_corr();
    // Before the request leaves: the answer may come before this thread looks.
    let pending = router::expect_reply(corr);
    let request = Request::Actor {
        token: node.inner.token,
        id: on.id,
        below: Vec::new(),
        payload,
        corr,
    };
    node.cast(&request)?;
    let mut down = node.inner.down.clone();
    tokio::select! {
        biased;
        answer = pending.wait(|answer| match answer {
            // The node does not know the process (not started, or joined and gone).
            Err(multiproc_core::RemoteError::NoProcess(_)) => {
                Err(CallError::Remote(multiproc_core::RemoteError::NoProcess(addr.clone())))
            }
            answer => f(answer),
        }) => answer,
        _ = down.wait_for(Option::is_some) => Err(node
            .down_error()
            .unwrap_or_else(|| NodeError::NodeDown {
                node: node.name().to_string(),
                why: "session lost".into(),
            })
            .into()),
    }
}

impl RemoteChild {
    /// Sends `signal` without waiting for the node's answer (a signal to a local
    /// process does not wait either); a node that is down has nothing to signal.
    pub(crate) fn send_signal(self: &Arc<Self>, signal: i32) {
        let me = Arc::clone(self);
        runtime::handle().spawn(async move {
            if let Err(e) = me.signal(signal).await {
                tracing::debug!("signal to a process on a node: {e}");
            }
        });
    }

    /// Sends `signal` (SIGTERM or SIGKILL) to the process, on its node.
    async fn signal(self: &Arc<Self>, signal: i32) -> Result<(), NodeError> {
        let me = Arc::clone(self);
        {
            let request = Request::Signal {
                token: me.node.inner.token,
                id: me.id,
                signal,
            };
            match me.node.call(&request).await? {
                Reply::Done => Ok(()),
                // It had exited already: no effect, as for a local process.
                Reply::Failed(_) if me.exit.borrow().is_some() => Ok(()),
                Reply::Failed(message) => Err(NodeError::Remote {
                    node: me.node.name().to_string(),
                    message,
                }),
                other => Err(unexpected(&me.node, other)),
            }
        }
    }

    /// Stops the process on its node (SIGKILL after `timeout`) and returns its exit.
    pub(crate) async fn stop(self: &Arc<Self>, timeout: Duration) -> ExitReason {
        let me = Arc::clone(self);
        runtime::run(async move {
            let request = Request::Stop {
                token: me.node.inner.token,
                id: me.id,
                timeout_ms: timeout.as_millis() as u64,
            };
            let _ = me.node.call(&request).await;
            crate::runtime::children::wait_exit(&mut me.exit.clone()).await
        })
        .await
    }
}
