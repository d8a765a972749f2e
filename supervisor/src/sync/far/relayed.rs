//! Handles in a message to a placed actor from a process of the tree other than the
//! one that placed it: the sender encodes the message far (keys), and sends the
//! handles themselves along, encoded for this tree, in a [`Relayed`] envelope; the
//! placer, which holds the session, decodes them and exports them to the actor's
//! process before it sends the message on, so they are exported before the actor
//! can use them.

use multiproc_core::{CodecError, codec};
use serde::{Deserialize, Serialize};

use super::export::Obj;
use super::wire::FarKey;
use crate::sync::{Barrier, BoundedSemaphore, Condition, Event, Lock, Queue, RLock, Semaphore};

/// A message for a placed actor, with the handles its far encoding names.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Relayed {
    /// A call (else a cast).
    pub(crate) call: bool,
    /// The handles, encoded for this tree (each lends its host a credit, which the
    /// placer's decoding takes back).
    #[serde(with = "serde_bytes")]
    pub(crate) handles: Vec<u8>,
    /// The message, encoded for the node.
    #[serde(with = "serde_bytes")]
    pub(crate) payload: Vec<u8>,
}

/// A handle as it goes to the placer.
#[derive(Serialize, Deserialize)]
enum Handle {
    Lock(Lock),
    RLock(RLock),
    Semaphore(Semaphore),
    BoundedSemaphore(BoundedSemaphore),
    Condition(Condition),
    Barrier(Barrier),
    Event(Event),
    Queue(Queue<()>),
}

/// `objs` encoded for the placer; `None` if one of them is no primitive (a
/// supervisor's resolver, which only its own process exports).
pub(crate) fn encode(objs: Vec<(FarKey, Obj)>) -> Option<Result<Vec<u8>, CodecError>> {
    let handles: Option<Vec<Handle>> = objs
        .into_iter()
        .map(|(_, obj)| {
            Some(match obj {
                Obj::Lock(h) => Handle::Lock(h),
                Obj::RLock(h) => Handle::RLock(h),
                Obj::Semaphore(h) => Handle::Semaphore(h),
                Obj::BoundedSemaphore(h) => Handle::BoundedSemaphore(h),
                Obj::Condition(h) => Handle::Condition(h),
                Obj::Barrier(h) => Handle::Barrier(h),
                Obj::Event(h) => Handle::Event(h),
                Obj::Queue(h) => Handle::Queue(h),
                Obj::Resolver(_) => return None,
            })
        })
        .collect();
    handles.map(|h| codec::encode(&h))
}

/// The handles a [`Relayed`] carries, with their keys, to export.
pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<(FarKey, Obj)>, CodecError> {
    let handles: Vec<Handle> = codec::decode(bytes)?;
    Ok(handles
        .into_iter()
        .map(|h| match h {
            Handle::Lock(h) => Obj::Lock(h),
            Handle::RLock(h) => Obj::RLock(h),
            Handle::Semaphore(h) => Obj::Semaphore(h),
            Handle::BoundedSemaphore(h) => Obj::BoundedSemaphore(h),
            Handle::Condition(h) => Obj::Condition(h),
            Handle::Barrier(h) => Obj::Barrier(h),
            Handle::Event(h) => Obj::Event(h),
            Handle::Queue(h) => Obj::Queue(h),
        })
        .filter_map(|obj| Some((FarKey::of(obj.addr()?), obj)))
        .collect())
}
