//! Handles in a message to a placed actor from a process of the tree other than the
//! one that placed it: the sender encodes the message far (keys), and sends the
//! handles themselves along, encoded for this tree, in a [`Relayed`] envelope; the
//! placer, which holds the session, decodes them and exports them to the actor's
//! process before it sends the message on, so they are exported before the actor
//! can use them. A supervised child's handle goes as its supervisor's name in the
//! tree, from which the placer makes the resolver it exports
//! ([`RESOLVER_OF`], registered by the supervisors' side).

use multiproc_core::{CodecError, ExitReason, codec};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::export::{Obj, Resolver};
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
    /// A supervisor's name, as [`Resolver::named`] holds it.
    Resolver(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// Makes the resolver of a supervisor of this tree from its name (as
/// [`Resolver::named`] holds it), with the key it is exported under.
pub(crate) struct ResolverOf {
    pub(crate) make: MakeResolver,
}

/// A supervisor's name → the key its resolver is exported under, and the resolver.
pub(crate) type MakeResolver = fn(&[u8]) -> Result<(FarKey, Resolver), CodecError>;

/// The registered maker; there is one, the supervisors'.
#[linkme::distributed_slice]
pub(crate) static RESOLVER_OF: [ResolverOf];

/// `objs` encoded for the placer.
pub(crate) fn encode(objs: Vec<(FarKey, Obj)>) -> Result<Vec<u8>, CodecError> {
    let handles: Vec<Handle> = objs
        .into_iter()
        .map(|(_, obj)| match obj {
            Obj::Lock(h) => Handle::Lock(h),
            Obj::RLock(h) => Handle::RLock(h),
            Obj::Semaphore(h) => Handle::Semaphore(h),
            Obj::BoundedSemaphore(h) => Handle::BoundedSemaphore(h),
            Obj::Condition(h) => Handle::Condition(h),
            Obj::Barrier(h) => Handle::Barrier(h),
            Obj::Event(h) => Handle::Event(h),
            Obj::Queue(h) => Handle::Queue(h),
            Obj::Resolver(r) => Handle::Resolver(r.named),
        })
        .collect();
    codec::encode(&handles)
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
    let mut objs = Vec::with_capacity(handles.len());
    for h in handles {
        let obj = match h {
            Handle::Lock(h) => Obj::Lock(h),
            Handle::RLock(h) => Obj::RLock(h),
            Handle::Semaphore(h) => Obj::Semaphore(h),
            Handle::BoundedSemaphore(h) => Obj::BoundedSemaphore(h),
            Handle::Condition(h) => Obj::Condition(h),
            Handle::Barrier(h) => Obj::Barrier(h),
            Handle::Event(h) => Obj::Event(h),
            Handle::Queue(h) => Obj::Queue(h),
            Handle::Resolver(named) => {
                let Some(of) = RESOLVER_OF.first() else {
                    return Err(CodecError::Decode {
                        type_name: "SupervisedRef",
                        message: "no supervisor can be named in this program".into(),
                    });
                };
                let (key, resolver) = (of.make)(&named)?;
                objs.push((key, Obj::Resolver(resolver)));
                continue;
            }
        };
        if let Some(addr) = obj.addr() {
            objs.push((FarKey::of(addr), obj));
        }
    }
    Ok(objs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_supervisor_named_by_bytes_that_are_no_key_is_a_decode_error() {
        let bytes = codec::encode(&vec![Handle::Resolver(vec![0xc1, 0x00])]).expect("encodes");
        assert!(matches!(decode(&bytes), Err(CodecError::Decode { .. })));
    }
}
