//! Queues, locks, semaphores, conditions, events and barriers used from another
//! node, through the process that placed the user there.
//!
//! A process on a node shares no memory with the host of a primitive, so its handle
//! is *far*: it names the primitive (`FarKey`) and every operation travels. The
//! operation goes up the node's tree to the node program (each process forwards it
//! to its parent), the node relays it over the node session to the *gateway* of the
//! root that placed the process (`node/relay.rs`), and the gateway runs it on a
//! real handle of the primitive, in the root, as any local user would.
//!
//! # Export
//!
//! A process started with [`Process::on`](crate::Process::on) has its arguments
//! encoded twice when they hold such a handle: for here, and *far*. In the far
//! encoding a handle is its key only (no handle is lent, see `refs`), and a real
//! clone of it is collected; `start_on` gives the clones to the gateway, bound to
//! the placed process and its node's token. The gateway answers a node only for the
//! keys exported to it, and drops them when the placed process exits.
//!
//! # Death
//!
//! A lock taken by the gateway for a far process is held by the root in the lock's
//! word. When the placed process exits holding it, or its node goes down, the
//! gateway frees it as a dead holder's: the next acquirer gets `OwnerDied`. What
//! has an owner (an `RLock`, a condition's lock, a barrier's party) is owned by a
//! far thread's *stand-in*, a thread number of the root that no real thread has
//! (`owner`), freed the same way; a semaphore's permits a far process took come
//! back. The gateway sees the placed processes end, not their descendants on the
//! node: a process there that forwards a child's far operation watches that child,
//! and tells the gateway when it ends (`FarOp::Died`), which frees what it held the
//! same way. An operation waiting at the gateway when its process exits is cancelled
//! (every wait here is cancel-safe). On the node, an operation in flight when the
//! root is lost fails with `SyncError::Node(NodeError::NodeDown { .. })`.
//!
//! A message to an actor placed from here is encoded far as well, its handles
//! exported to the actor's process (`export_to_running`). A supervised child's spec
//! keeps its far encoding (`process::FarSpec`): each start on a node exports the
//! handles again; one sent to a supervisor on a node carries them (`Carry`), and a
//! child there that ends frees what it held (`died`). A message to a placed actor
//! from another process of the tree brings its handles to the placer, which
//! exports them (`relayed`).
//!
//! # Home
//!
//! A far handle carries, beside its key, the handle as the root's tree encodes it,
//! lending nothing. In what a process on the node sends to the root's tree (a
//! message, a reply, a queue item), it is that encoding again: the root's own
//! primitive there, its credit counted as it is claimed.
//!
//! Here: `wire` (what travels), `encode` (a handle's two encodings), `forward` (the
//! handle on a node, and its operations' way up), `export` (the root's side), `run`
//! (each operation run there, and what a far process's end frees) and `owner` (far
//! threads' stand-ins).

mod encode;
mod export;
mod forward;
mod ops;
mod owner;
pub(crate) mod relayed;
pub(crate) mod way;
mod wire;

pub(crate) use encode::{
    Carry, Side, deserialize, encode_far, encoding_far, farable, farable_in, one_machine_types,
    serialize,
};
pub(crate) use export::{Obj, Resolver, died, export, export_to_running, reclaim};
pub(crate) use forward::{RELAYS, Relay, actor_up, answer, forward, forward_actor};
pub(crate) use wire::{FarError, FarKey, FarOp, FarReply, GatewayCall};

/// `Serialize` and `Deserialize` for the handle `$ty { side }` of a primitive: here,
/// the handle as it is; in a far encoding, its key, and a clone of it exported to
/// the gateway as `Obj::$obj`. `$addr` reads its address from what `Side::Here`
/// holds.
macro_rules! far_handle {
    ($ty:ident, $obj:ident, |$here:ident| $addr:expr) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $crate::sync::far::serialize(
                    &self.side,
                    || match &self.side {
                        $crate::sync::far::Side::Here($here) => (
                            $crate::sync::far::FarKey::of($addr),
                            $crate::sync::far::Obj::$obj(self.clone()),
                        ),
                        $crate::sync::far::Side::Far(_) => {
                            unreachable!("a far handle is not exported again")
                        }
                    },
                    s,
                )
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                Ok($ty {
                    side: $crate::sync::far::deserialize(d)?,
                })
            }
        }
    };
}
pub(crate) use far_handle;
