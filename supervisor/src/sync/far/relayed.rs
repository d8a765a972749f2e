//! Handles in a message to a placed actor from a process of the tree other than the
//! one that placed it: the sender encodes the message far (keys), and sends the
//! handles themselves along, encoded for this tree, in a [`Relayed`] envelope; the
//! placer, which holds the session, decodes them and exports them to the actor's
//! process before it sends the message on, so they are exported before the actor
//! can use them.

use multiproc_core::{CodecError, ExitReason, codec};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::export::Obj;
use super::wire::FarKey;
use crate::remote::route::{EXPORT_RELAYED, ExportRelayed};
use crate::sync::{Barrier, BoundedSemaphore, Condition, Event, Lock, Queue, RLock, Semaphore};

pub(crate) use crate::remote::wire::Relayed;

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

#[allow(
    unsafe_code,
    reason = "linkme places the registration in its link section"
)]
#[linkme::distributed_slice(EXPORT_RELAYED)]
static EXPORT: ExportRelayed = ExportRelayed { export };

/// Exports the handles a [`Relayed`] carries to the process `pid`, placed with the
/// session `token`, until it exits.
fn export(
    handles: &[u8],
    token: u64,
    pid: u32,
    exit: watch::Receiver<Option<ExitReason>>,
) -> Result<(), CodecError> {
    super::export_to_running(decode(handles)?, token, pid, exit);
    Ok(())
}

/// The handles a [`Relayed`] carries, with their keys, to export.
fn decode(bytes: &[u8]) -> Result<Vec<(FarKey, Obj)>, CodecError> {
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
