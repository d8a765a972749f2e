//! Processes placed on nodes from here, reached from anywhere in this tree.
//!
//! A placed process has an address in this process's tree (a child of it), and an
//! [`ActorRef`](crate::ActorRef) to it is a plain value that travels to any process of
//! the tree, as a local actor's does. Only this process holds the session with the
//! node and the node's number for the process, so the router brings the messages of
//! the rest of the tree here, as to any child, and this relay sends them on over the
//! session: a cast as it comes, a call with its answer routed back to its caller
//! where it arrives (no task waits for it). A call in flight when the node goes down
//! fails with [`RemoteError::Node`], which its caller sees as
//! `CallError::Node(NodeError::NodeDown { .. })`, as a call made here would.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock};

use multiproc_core::wire::{BodyKind, EnvelopeRef};
use multiproc_core::{ExitReason, Identity, NodeError, RemoteError, codec};
use tokio::sync::watch;

use super::client::Node;
use super::wire::{Answer, Relayed, Request};
use crate::runtime::router;

/// Exports the encoded handles of a [`Relayed`] message to the process `pid`, placed
/// with the session `token`, until it exits.
pub(crate) type Export = fn(
    &[u8],
    u64,
    u32,
    watch::Receiver<Option<ExitReason>>,
) -> Result<(), multiproc_core::CodecError>;

/// What exports the handles of a [`Relayed`] message to the actor's process: the far
/// handles' (`sync::far`), registered at link time, so that this layer names none.
pub(crate) struct ExportRelayed {
    pub(crate) export: Export,
}

/// The registered export; there is one, the far handles'.
#[linkme::distributed_slice]
pub(crate) static EXPORT_RELAYED: [ExportRelayed];

/// A child of this process running on a node: the node, its number and pid there,
/// and its exit.
struct Child {
    node: Node,
    id: u64,
    pid: u32,
    exit: watch::Receiver<Option<ExitReason>>,
}

/// The children placed from here, by their number in this process.
fn children() -> MutexGuard<'static, HashMap<u32, Child>> {
    static CHILDREN: OnceLock<Mutex<HashMap<u32, Child>>> = OnceLock::new();
    CHILDREN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Relayed calls waiting for their node's answer: the node's name and this
/// process's token there, by the relay's correlation number.
fn relayed() -> MutexGuard<'static, HashMap<u64, (String, u64)>> {
    static RELAYED: OnceLock<Mutex<HashMap<u64, (String, u64)>>> = OnceLock::new();
    RELAYED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Records that the process `identity` (a child of this process) runs on `node` as
/// its number `id`, with `pid` there, until `exit` says it ended.
pub(crate) fn placed(
    identity: &Identity,
    node: &Node,
    id: u64,
    pid: u32,
    exit: watch::Receiver<Option<ExitReason>>,
) {
    if let Some(&n) = identity.path().last() {
        let node = node.clone();
        children().insert(
            n,
            Child {
                node,
                id,
                pid,
                exit,
            },
        );
    }
}

/// The process placed from here as number `id` on the node `node`: its node, its
/// pid there and its exit. `None` if this process did not place it (another process
/// of the tree holds the session), or it is gone.
pub(crate) fn placed_from_here(
    node: &str,
    id: u64,
) -> Option<(Node, u32, watch::Receiver<Option<ExitReason>>)> {
    children()
        .values()
        .find(|c| c.id == id && c.node.name() == node)
        .map(|c| (c.node.clone(), c.pid, c.exit.clone()))
}

/// Forgets the placed process `identity`: it has exited (later calls find no
/// process, as for a local child).
pub(crate) fn gone(identity: &Identity) {
    if let Some(n) = identity.path().last() {
        children().remove(n);
    }
}

#[allow(
    unsafe_code,
    reason = "linkme places the registration in its link section"
)]
#[linkme::distributed_slice(router::PLACED)]
static RELAY: router::Placed = router::Placed { route };

/// Takes an envelope for child `n`, or a process below it, if `n` is placed on a
/// node.
fn route(n: u32, env: &EnvelopeRef<'_>) -> bool {
    let Some((node, id)) = children().get(&n).map(|c| (c.node.clone(), c.id)) else {
        return false;
    };
    // A process the placed one started on its node, whose handle came here from
    // there: its path below the placed process, the same there as here.
    let depth = crate::runtime::current::me().identity.path().len() + 1;
    let to = env.to.to_identity();
    let below = to.path().get(depth..).unwrap_or_default();
    match env.kind {
        // A message with handles, from another process of the tree.
        BodyKind::Service => relay_with_handles(n, &node, id, below, env),
        // Not confirmed, as a local cast: one that cannot go is dropped.
        BodyKind::Cast => {
            if let Err(e) = send(&node, id, below, env.payload, 0) {
                tracing::debug!(error = %e, "dropped a cast to a process on a node");
            }
            true
        }
        BodyKind::Call => {
            relay_call(&node, id, below, env, env.payload);
            true
        }
        // Answers have nothing to do on a node.
        _ => false,
    }
}

fn send(node: &Node, id: u64, below: &[u32], payload: &[u8], corr: u64) -> Result<(), NodeError> {
    if let Some(e) = node.down_error() {
        return Err(e);
    }
    node.cast(&Request::Actor {
        token: node.inner.token,
        id,
        below: below.to_vec(),
        payload: payload.to_vec(),
        corr,
    })
}

/// Exports the handles a `Relayed` message names to the actor's process, then sends
/// the message on: exported before it leaves, they are there when the actor uses
/// them.
fn relay_with_handles(n: u32, node: &Node, id: u64, below: &[u32], env: &EnvelopeRef<'_>) -> bool {
    let Ok(relayed) = codec::decode::<Relayed>(env.payload) else {
        return false;
    };
    let Some((pid, exit)) = children().get(&n).map(|c| (c.pid, c.exit.clone())) else {
        return false;
    };
    let exported = EXPORT_RELAYED
        .iter()
        .try_for_each(|e| (e.export)(&relayed.handles, node.inner.token, pid, exit.clone()));
    if let Err(e) = exported {
        router::bounce(env, RemoteError::Decode(e.to_string()));
        return true;
    }
    if relayed.call {
        relay_call(node, id, below, env, &relayed.payload);
    } else if let Err(e) = send(node, id, below, &relayed.payload, 0) {
        tracing::debug!(error = %e, "dropped a cast to a process on a node");
    }
    true
}

/// Sends the call `env` (its message `payload`) on to the node; its answer goes back
/// to its caller.
fn relay_call(node: &Node, id: u64, below: &[u32], env: &EnvelopeRef<'_>, payload: &[u8]) {
    let (to, caller, corr) = (env.to.to_identity(), env.from.to_identity(), env.corr);
    let relay = router::next_corr();
    // Recorded before the node is looked at: if it goes down from now on, `node_lost`
    // finds this call.
    relayed().insert(relay, (node.name().to_string(), node.inner.token));
    router::expect_reply_then(
        relay,
        Box::new(move |kind, payload| {
            relayed().remove(&relay);
            answer(&to, &caller, corr, kind, payload);
        }),
    );
    if let Err(e) = send(node, id, below, payload, relay) {
        fail(relay, node.name(), e);
    }
}

/// Routes a node's answer to the caller; a process the node does not know is named
/// by its address here, as a direct call names it.
fn answer(to: &Identity, caller: &Identity, corr: u64, kind: BodyKind, payload: &[u8]) {
    let unknown = kind == BodyKind::Fail
        && matches!(
            codec::decode::<RemoteError>(payload),
            Ok(RemoteError::NoProcess(_))
        );
    let renamed = unknown
        .then(|| codec::encode(&RemoteError::NoProcess(to.clone())).ok())
        .flatten();
    router::send_from_here(
        caller.into(),
        corr,
        kind,
        renamed.as_deref().unwrap_or(payload),
    );
}

/// Fails the relayed call `relay` to `node` with `e` (the node is down, or the call
/// could not go).
fn fail(relay: u64, node: &str, e: NodeError) {
    let e = match e {
        down @ NodeError::NodeDown { .. } => RemoteError::Node(Box::new(down)),
        other => RemoteError::Node(Box::new(NodeError::NodeDown {
            node: node.to_string(),
            why: other.to_string(),
        })),
    };
    if let Ok(payload) = codec::encode(&e) {
        crate::runtime::reply::deliver(relay, BodyKind::Fail, &payload);
    }
}

#[allow(
    unsafe_code,
    reason = "linkme places the registration in its link section"
)]
#[linkme::distributed_slice(super::client::SESSION_ENDS)]
static ROUTE_END: super::client::SessionEnd = super::client::SessionEnd { ended: node_lost };

/// The node `name`, connected with `token`, is down: the calls relayed to it fail.
fn node_lost(name: &str, token: u64, why: &str) {
    let lost: Vec<u64> = relayed()
        .iter()
        .filter(|(_, (n, t))| n == name && *t == token)
        .map(|(&relay, _)| relay)
        .collect();
    for relay in lost {
        let e = NodeError::NodeDown {
            node: name.to_string(),
            why: why.to_string(),
        };
        fail(relay, name, e);
    }
}

#[allow(
    unsafe_code,
    reason = "linkme places the registration in its link section"
)]
#[linkme::distributed_slice(super::gateway::INTO_TREE)]
static INTO: super::gateway::IntoTree = super::gateway::IntoTree { route: into_tree };

/// Routes a node's message for one of its processes into this tree, as it comes (so
/// a cast and the call after it keep their order); a call's answer is cast back to
/// the node's agent from where it arrives, with no task waiting for it.
fn into_tree(node: &str, token: u64, to: &multiproc_core::Identity, payload: &[u8], corr: u64) {
    if corr == 0 {
        return router::raw_send(to, payload, None);
    }
    // The node this process is connected to under that token: a session can only
    // be from a node this process is connected to, but its name is the node's word.
    let Some(back) = super::client::connected(node).filter(|n| n.inner.token == token) else {
        return tracing::warn!(
            node,
            "dropped a call from a node this process does not know"
        );
    };
    let then: crate::runtime::reply::Then = Box::new(move |kind, payload| {
        let answer = Request::Answer(Answer {
            corr,
            fail: kind != BodyKind::Reply,
            payload: payload.to_vec(),
        });
        // A node that is gone has no one waiting.
        let _ = back.cast(&answer);
    });
    router::raw_send(to, payload, Some(then));
}
