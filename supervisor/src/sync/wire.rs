//! What a handle asks the process that hosts its primitive, and the answers.

use multiproc_core::sync::{BarrierBroken, Misuse};
use serde::{Deserialize, Serialize};

/// A request to a hosted primitive.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    pub prim: u64,
    pub secret: u64,
    pub op: Op,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    Acquire {
        thread: u64,
        block: bool,
    },
    Release {
        thread: u64,
    },
    /// Forgets the wait that the caller's call `corr` asked for (it timed out).
    Cancel {
        corr: u64,
    },
    CondWait {
        thread: u64,
    },
    CondNotify {
        thread: u64,
        n: usize,
    },
    BarrierWait {
        thread: u64,
    },
    BarrierActionDone {
        ok: bool,
    },
    BarrierAbort,
    BarrierReset,
    BarrierInfo,
    /// Never answered while the process lives: see `host`.
    Watch,
    /// The sender maps a shared-memory primitive and may hold it: the host watches
    /// it, and clears what it holds when it dies.
    Attach {
        pid: u32,
    },
    /// A handle was encoded: one more is in flight (see `refs`).
    Lend,
    /// The sender decoded a handle: it holds the primitive, and one handle in flight
    /// has landed.
    Claim,
    /// The sender's last handle is gone.
    Detach,
    /// The sender's threads `threads` died: stand-ins for processes on another node
    /// that the sender (their root's gateway) ran a condition's or a barrier's
    /// operations for. Their lock levels are freed and their waits forgotten, as a
    /// dead process's.
    HoldersGone {
        threads: Vec<u64>,
    },
    /// A far handle's operation (`far::FarCall`), on its way up to the node program
    /// that relays it to the root (`prim` and `secret` are 0).
    Far(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A message from a process on a node to the actor `to` of its root's tree, on
    /// its way up to the node program (`process::actor`'s far actors); a call when
    /// the envelope's `corr` is not 0.
    FarActor {
        to: multiproc_core::Identity,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// A request for a service above the primitives that this process hosts too
    /// (`above`): what it means is that service's.
    Above(#[serde(with = "serde_bytes")] Vec<u8>),
}

impl Op {
    /// The thread that asks, for operations that may leave it holding a lock.
    pub(crate) fn thread(&self) -> Option<u64> {
        match self {
            Op::Acquire { thread, .. } | Op::CondWait { thread } => Some(*thread),
            _ => None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Answer {
    Acquired {
        owner_died: bool,
    },
    WouldBlock,
    Done,
    Cancelled(bool),
    /// A condition wait returns, holding the lock again.
    Woken {
        notified: bool,
        owner_died: bool,
    },
    /// Passed the barrier, with this index.
    Passed(usize),
    /// The last party: run the action, then say how it went.
    RunAction(usize),
    BarrierInfo {
        parties: usize,
        n_waiting: usize,
        broken: bool,
    },
    Fault(Fault),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Fault {
    Sync(Misuse),
    /// The barrier is broken, for this reason.
    Broken(BarrierBroken),
    /// No primitive with that id and secret lives in the host.
    Forged,
    /// The operation is not one of this primitive's.
    WrongKind,
}
