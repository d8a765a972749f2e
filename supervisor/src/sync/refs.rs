//! Counting a primitive's handles across the tree, so that its host frees it when the
//! last handle anywhere is gone, as Python frees an object.
//!
//! # Protocol
//!
//! - Each process counts its own live handles per primitive (`LIVE`). Only the first
//!   and the last matter to the host: a process that decodes a handle says `Claim`,
//!   and a process whose count falls to zero says `Detach`.
//! - A handle that is *encoded* (into a message, a queue item, a child's arguments)
//!   first says `Lend`: the host counts one handle in flight, so the primitive
//!   survives its sender dropping its own copy before the receiver decodes it. Each
//!   decode's `Claim` takes one such credit back.
//! - The host holds, per primitive, the processes that hold handles and the credits in
//!   flight; when no process holds one and no credit is out, it frees the primitive:
//!   its state, its shared memory and its file descriptor. A process that dies counts
//!   as detaching from everything (the host watches every process that claims).
//! - Requests from one process reach the host in the order it sent them (one path
//!   along the tree), so a process's `Lend` always precedes its own `Detach`.
//!
//! # Failure cases
//!
//! A handle encoded and never decoded (a message lost with its process, a queue item
//! never taken) keeps its credit, and its primitive lives until the host exits: the
//! cost is one primitive, never a wrong free. Bytes decoded more often than they were
//! encoded (the same task frame re-sent to a second worker) claim more credits than
//! were lent; the count may go below zero, which still frees the primitive once no
//! process holds it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, OnceLock};

use multiproc_core::{Body, Envelope, Identity, codec};
use serde::{Deserialize, Serialize};

use super::wire::{Op, Request};
use crate::runtime::current::me;
use crate::runtime::router;
use crate::runtime::shm::SegmentRef;

/// Where a primitive lives, and the secret that proves a handle genuine. Counted:
/// creating, cloning or decoding one counts a handle in this process; dropping one
/// uncounts it.
pub(crate) struct Addr {
    pub(crate) owner: Identity,
    pub(crate) id: u64,
    pub(crate) secret: u64,
}

/// What travels: the address without its counting.
#[derive(Serialize, Deserialize)]
struct Wire {
    owner: Identity,
    id: u64,
    secret: u64,
}

#[derive(Default)]
struct Live {
    count: usize,
    /// Segments this process mapped for the primitive, unmapped with its last handle.
    segs: Vec<SegmentRef>,
}

fn live() -> MutexGuard<'static, HashMap<(Identity, u64), Live>> {
    static LIVE: OnceLock<Mutex<HashMap<(Identity, u64), Live>>> = OnceLock::new();
    LIVE.get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Live handles in this process, over all primitives: for tests of the counting.
pub(crate) fn live_handles() -> usize {
    live().values().map(|l| l.count).sum()
}

impl Addr {
    /// The first handle of a primitive just created here (the host counts this
    /// process as a holder from the start).
    pub(crate) fn created(owner: Identity, id: u64, secret: u64) -> Addr {
        live().entry((owner.clone(), id)).or_default().count += 1;
        Addr { owner, id, secret }
    }

    /// Notes that this process mapped `seg` for this primitive: it is unmapped when
    /// the process's last handle goes.
    pub(crate) fn mapped_here(&self, seg: SegmentRef) {
        // The host's own segment lives as long as the primitive, not its handles here.
        if self.owner == me().identity {
            return;
        }
        if let Some(l) = live().get_mut(&(self.owner.clone(), self.id))
            && !l.segs.contains(&seg)
        {
            l.segs.push(seg);
        }
    }

    /// Tells the host, expecting no answer.
    pub(super) fn tell(&self, op: Op) {
        let request = Request {
            prim: self.id,
            secret: self.secret,
            op,
        };
        // A request of three integers always encodes.
        let Ok(bytes) = codec::encode(&request) else {
            return;
        };
        router::route(Envelope {
            to: self.owner.clone(),
            from: me().identity.clone(),
            corr: 0,
            body: Body::Service(bytes),
        });
    }
}

impl Clone for Addr {
    fn clone(&self) -> Addr {
        live()
            .entry((self.owner.clone(), self.id))
            .or_default()
            .count += 1;
        Addr {
            owner: self.owner.clone(),
            id: self.id,
            secret: self.secret,
        }
    }
}

impl Drop for Addr {
    fn drop(&mut self) {
        let key = (self.owner.clone(), self.id);
        let last = {
            let mut live = live();
            match live.get_mut(&key) {
                Some(l) if l.count > 1 => {
                    l.count -= 1;
                    None
                }
                Some(_) => live.remove(&key),
                None => None,
            }
        };
        if let Some(l) = last {
            for seg in l.segs {
                crate::runtime::shm::forget(seg);
            }
            self.tell(Op::Detach);
        }
    }
}

impl PartialEq for Addr {
    fn eq(&self, other: &Addr) -> bool {
        self.owner == other.owner && self.id == other.id && self.secret == other.secret
    }
}

impl Eq for Addr {}

impl fmt::Debug for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Addr")
            .field("owner", &self.owner)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// How many handles this thread has serialized: what [`handles_in`] compares.
    static SERIALIZED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts a handle serialized that [`handles_in`] must see though it is no `Addr`: a
/// far handle, whose host is another host's root.
pub(crate) fn note_handle() {
    SERIALIZED.set(SERIALIZED.get() + 1);
}

/// Runs `f`, an encoding that [`handles_in`] must not see (a handle's own encoding,
/// inside another's).
pub(crate) fn uncounted<R>(f: impl FnOnce() -> R) -> R {
    let before = SERIALIZED.get();
    let out = f();
    SERIALIZED.set(before);
    out
}

thread_local! {
    /// This thread decodes handles whose bytes lent no credit (see `claimed_unlent`).
    static UNLENT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, a decoding of handles whose encoding lent nothing (far handles back in
/// their root's tree): each lends as it claims, so the host's count of credits in
/// flight stays true.
pub(crate) fn claimed_unlent<R>(f: impl FnOnce() -> R) -> R {
    let outer = UNLENT.replace(true);
    let out = f();
    UNLENT.set(outer);
    out
}

/// Runs `f` (an encoding) and says whether it serialized a handle to a one-machine
/// object (a primitive, a `Value`, an `Array`, a `SharedMemory`): what may not cross
/// to another node, whose processes do not share this host's memory or tree.
pub(crate) fn handles_in<R>(f: impl FnOnce() -> R) -> (R, bool) {
    let before = SERIALIZED.get();
    let out = f();
    (out, SERIALIZED.get() != before)
}

impl Serialize for Addr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SERIALIZED.set(SERIALIZED.get() + 1);
        // Before the bytes exist: the credit must reach the host ahead of any
        // `Detach` of ours that could otherwise free the primitive under them. Bytes
        // for a node are refused before they leave: they lend nothing.
        if !super::far::encoding_far() {
            self.tell(Op::Lend);
        }
        Wire {
            owner: self.owner.clone(),
            id: self.id,
            secret: self.secret,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Addr, D::Error> {
        let w = Wire::deserialize(d)?;
        live().entry((w.owner.clone(), w.id)).or_default().count += 1;
        let addr = Addr {
            owner: w.owner,
            id: w.id,
            secret: w.secret,
        };
        if UNLENT.get() {
            addr.tell(Op::Lend);
        }
        addr.tell(Op::Claim);
        Ok(addr)
    }
}
