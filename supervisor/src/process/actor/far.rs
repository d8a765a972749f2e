//! An actor's handle on another host than its tree's: how far it reaches there.
//!
//! A handle encoded for a node (in a placed process's arguments, in a message to a
//! placed actor) is *far* there: its address is a path in the tree of the root that
//! placed the process, not in the node's. Its messages go up the node's tree to the
//! node program, which relays them over the session to that root's gateway
//! (`node/relay.rs`, `remote/gateway.rs`); the gateway routes them into the root's
//! tree, and casts a call's answer back to the node, which hands it to the caller.
//! Sent on from the node in a message to an actor the same tree placed on a node (this
//! one or another), it stays far there: the root passes the message on as it came, and
//! the handle's address is still a path in the tree that placed the receiver. Encoded
//! for a node the node itself connects to (in the arguments of a process it places),
//! it reaches nothing: its tree is two sessions away, and the refusal says so.
//!
//! The other way, a handle of the subtree of a placed process on the node, sent to
//! its root's tree, becomes an address there: the placed process's identity in that
//! tree, with the same path below it, on the node (`remote::wire::PlacedAs`). So it
//! does in a call's reply to the root's tree, and in an item a process of the node
//! puts into a queue of that tree: both are encoded as for the root's tree itself
//! ([`to_root`](crate::sync::far::way::to_root)). Whoever takes them there decodes
//! them as they are, and a process on a node that takes one from the root (a reply to
//! its call, an item it gets) sees what the root's tree would, one hop further
//! ([`from_root`]).

use std::time::Duration;

use multiproc_core::{Identity, NodeError, codec};
use multiproc_transport::MAX_FRAME_LEN;
use serde::{Deserialize, Serialize};

use super::{Actor, ENVELOPE_OVERHEAD, reply};
use crate::remote::placed::OnNode;
use crate::runtime;
use crate::runtime::error::CallError;
use crate::runtime::router;
use crate::sync::far::way::{self, Onward, for_node, from_root};

/// Where a handle's address means something, seen from the process that holds it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Reach {
    /// In this process's tree.
    #[default]
    Here,
    /// In the tree of the root that placed this process on its node: through it.
    ByRoot,
    /// In a tree this process has no way to.
    Lost,
}

/// Encodes a message for an actor this process placed on a node, refusing one that
/// holds a handle to a one-machine object. A queue, lock, semaphore, condition,
/// event or barrier in it is far there: exported to the node, bound to the actor's
/// process (see `sync::far`).
pub(super) fn remote_payload<M: Serialize>(msg: &M, on: &OnNode) -> Result<Vec<u8>, CallError> {
    let Some((token, pid, exit)) = crate::remote::placed::placed_here(on) else {
        // Gone: the node says so, unless the message could not have gone anyway.
        let (payload, handles) = crate::sync::handles_in(|| for_node(|| codec::encode(msg)));
        if handles {
            return Err(not_across(on));
        }
        return payload.map_err(CallError::Encode);
    };
    let ((payload, one_machine), objs) = crate::sync::far::encode_far(|| {
        crate::sync::handles_in(|| for_node(|| codec::encode(msg)))
    });
    if one_machine {
        return Err(not_across(on));
    }
    let payload = payload.map_err(CallError::Encode)?;
    crate::sync::far::export_to_running(objs, token, pid, exit);
    Ok(payload)
}

/// Encodes a message for an actor placed on a node by another process of this
/// tree, which holds the session, when it holds handles of this host: the message
/// far, in a `Relayed` envelope with the handles themselves, which the placer
/// exports to the actor's process before sending the message on (a supervised
/// child's handle as its supervisor's name, which the placer asks). Refuses a
/// one-machine handle.
pub(super) fn relayed<M: Serialize>(
    msg: &M,
    on: &OnNode,
    call: bool,
) -> Result<Vec<u8>, CallError> {
    let ((payload, one_machine), objs) = crate::sync::far::encode_far(|| {
        crate::sync::handles_in(|| for_node(|| codec::encode(msg)))
    });
    if one_machine {
        return Err(not_across(on));
    }
    let payload = payload.map_err(CallError::Encode)?;
    let relayed = crate::sync::far::relayed::Relayed {
        call,
        handles: crate::sync::far::relayed::encode(objs).map_err(CallError::Encode)?,
        payload,
    };
    codec::encode(&relayed).map_err(CallError::Encode)
}

pub(super) fn not_across(on: &OnNode) -> CallError {
    NodeError::NotAcrossNodes {
        what: "a Value, Array or SharedMemory handle, or a SupervisedRef from a \
               ChildSupervisorRef, in a message"
            .to_string(),
        node: on.node.clone(),
    }
    .into()
}

/// An [`ActorRef`](super::ActorRef) as it travels: as the process that decodes it
/// will see it.
#[derive(Serialize, Deserialize)]
pub(super) struct Wire {
    addr: Identity,
    on: Option<OnNode>,
    reach: Reach,
}

impl Wire {
    /// The handle as this thread decodes it: one hop further for a process on a
    /// node that takes it from its root's tree.
    pub(super) fn arrived(self) -> (Identity, Option<OnNode>, Reach) {
        let reach = match (self.reach, way::coming_from_root()) {
            (reach, false) => reach,
            (Reach::Here, true) => Reach::ByRoot,
            // A handle that the root's tree reaches by its own root, or not at all.
            (Reach::ByRoot | Reach::Lost, true) => Reach::Lost,
        };
        (self.addr, self.on, reach)
    }
}

/// The handle `addr` (`on`, `reach`) as the process that decodes it will see it.
pub(super) fn wire(addr: Identity, on: Option<OnNode>, reach: Reach) -> Wire {
    let to_node = crate::sync::far::encoding_far() || way::encoding_for_node();
    if let (Reach::Here, None, false, Some(onward)) = (reach, &on, to_node, way::going_to_root())
        && let Some((addr, on)) = in_root_tree(&addr)
    {
        // An actor of this node's subtree under a placed process: its root's tree
        // reaches it through the process it placed here, along the same path below.
        let reach = match onward {
            Onward::Tree => Reach::Here,
            Onward::Placed => Reach::ByRoot,
        };
        return Wire {
            addr,
            on: Some(on),
            reach,
        };
    }
    let reach = match (reach, to_node, way::going_to_root()) {
        (Reach::Here, true, _) => Reach::ByRoot,
        // Back home.
        (Reach::ByRoot, false, Some(Onward::Tree)) => Reach::Here,
        // To a process the same tree placed: its address is a path in that tree
        // there too, reached through the same gateway.
        (Reach::ByRoot, false, Some(Onward::Placed)) => Reach::ByRoot,
        (_, true, _) | (_, false, Some(_)) => Reach::Lost,
        (reach, false, None) => {
            // Arguments that hold one are encoded for a node as well, where it is
            // seen otherwise.
            crate::sync::far::farable();
            reach
        }
    };
    Wire { addr, on, reach }
}

/// `addr`, in this node's tree, as an address in the tree of the root that placed
/// this process (or its ancestor here), if it is in the subtree of that placed
/// process: its path there, and the node it runs on.
fn in_root_tree(addr: &Identity) -> Option<(Identity, OnNode)> {
    let placed = crate::remote::wire::PlacedAs::of_this_process()?;
    let below = addr.path().strip_prefix(placed.here.path())?;
    let path = [placed.root.path(), below].concat();
    let on = OnNode {
        node: placed.node.clone(),
        id: placed.id,
    };
    Some((Identity::from_path(path), on))
}

/// Encodes a message for the root's tree, to end up as `onward` says: handles to
/// this host's objects do not travel.
pub(super) fn payload<M: Serialize>(msg: &M, onward: Onward) -> Result<Vec<u8>, CallError> {
    let (payload, handles) = way::toward(onward, || crate::sync::handles_in(|| codec::encode(msg)));
    if handles {
        return Err(NodeError::NotAcrossNodes {
            what: "a Value, Array or SharedMemory handle, or a queue, lock or other primitive \
                   made on this node, in a message"
                .to_string(),
            node: "the root".to_string(),
        }
        .into());
    }
    let payload = payload.map_err(CallError::Encode)?;
    let max = MAX_FRAME_LEN - ENVELOPE_OVERHEAD;
    if payload.len() > max {
        return Err(CallError::TooLarge {
            len: payload.len(),
            max,
        });
    }
    Ok(payload)
}

/// Sends the message up the node's tree.
fn up(to: &Identity, payload: Vec<u8>, corr: u64) -> Result<(), CallError> {
    if crate::sync::far::actor_up(to, payload, corr).map_err(CallError::Encode)? {
        Ok(())
    } else {
        Err(NodeError::NotAcrossNodes {
            what: format!("the handle of the actor {to} of another host's process tree"),
            node: "this host".to_string(),
        }
        .into())
    }
}

/// Casts `msg` to the actor `to` of the root's tree: sent now, in order with the
/// calls that follow.
pub(super) fn cast<M: Serialize>(to: &Identity, msg: &M, onward: Onward) -> Result<(), CallError> {
    up(to, payload(msg, onward)?, 0)
}

/// Calls the actor `to` of the root's tree with `payload` (a message's
/// [`payload`]); gives up after `timeout`, if any.
pub(super) async fn call<A: Actor>(
    to: &Identity,
    payload: Vec<u8>,
    timeout: Option<Duration>,
) -> Result<A::Reply, CallError> {
    let corr = router::next_corr();
    // Before the message leaves: the answer may come before this thread looks.
    let pending = router::expect_reply(corr);
    up(to, payload, corr)?;
    match timeout {
        None => pending.wait(from_root_reply::<A>).await,
        Some(timeout) => {
            runtime::run(async move {
                match tokio::time::timeout(timeout, pending.wait(from_root_reply::<A>)).await {
                    Ok(out) => out,
                    Err(_) => Err(CallError::Timeout(timeout)),
                }
            })
            .await
        }
    }
}

/// A reply from the root's tree, decoded as [`from_root`] says.
fn from_root_reply<A: Actor>(
    answer: Result<&[u8], multiproc_core::RemoteError>,
) -> Result<A::Reply, CallError> {
    from_root(|| reply::<A>(answer))
}
