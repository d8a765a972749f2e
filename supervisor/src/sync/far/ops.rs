//! The primitives the gateway runs far operations on, each operation run for its far
//! thread, and what a far process's end frees.
//!
//! A far thread is a *stand-in* here: a thread number of this process that no real
//! thread has (`owner`), so that an `RLock` or a condition's lock it takes is owned
//! by it alone, and a barrier counts it as its own party. A plain `Lock` and the
//! semaphores have no owner: what a far process holds of them is counted by the
//! gateway (`Entry::held`), by its pid.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::wire::{FarOp, FarValue};
use crate::sync::refs::Addr;
use crate::sync::{
    Barrier, BoundedSemaphore, Condition, Event, Lock, Queue, RLock, Semaphore, SyncError,
};

/// A real handle the gateway runs operations on.
#[derive(Debug, Clone)]
pub(crate) enum Obj {
    Lock(Lock),
    RLock(RLock),
    Semaphore(Semaphore),
    BoundedSemaphore(BoundedSemaphore),
    Condition(Condition),
    Barrier(Barrier),
    Event(Event),
    Queue(Queue<()>),
    /// A supervisor's children's addresses, asked through `FarOp::Resolve`.
    Resolver(Resolver),
}

/// Answers, for a supervisor of this tree, what address its child has now (encoded
/// by the supervisor's side, which the primitives do not name).
#[derive(Clone)]
pub(crate) struct Resolver {
    pub(crate) resolve: Arc<ResolveFn>,
    /// The supervisor's name in this tree, encoded by its side, from which another
    /// process of the tree makes the same resolver (`relayed::RESOLVER_OF`): a
    /// placer relays a message it did not write.
    pub(crate) named: Vec<u8>,
}

/// A resolver's function: (child, wait) → the encoded answer.
pub(crate) type ResolveFn =
    dyn Fn(String, bool) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>> + Send + Sync;

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

/// What an operation did to what its far process holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hold {
    Same,
    Took,
    Released,
}

impl Obj {
    pub(super) fn addr(&self) -> Option<&Addr> {
        match self {
            Obj::Lock(l) => l.addr(),
            Obj::RLock(l) => l.addr(),
            Obj::Semaphore(s) => s.addr(),
            Obj::BoundedSemaphore(s) => s.addr(),
            Obj::Condition(c) => c.addr(),
            Obj::Barrier(b) => b.addr(),
            Obj::Event(e) => e.addr(),
            Obj::Queue(q) => q.addr(),
            Obj::Resolver(_) => None,
        }
    }

    /// Whether its host serves its waits (a condition, a barrier): a far process's
    /// end is told to the host before its waits are dropped, so that a barrier breaks
    /// as for a dead party rather than for a timeout.
    pub(super) fn host_served(&self) -> bool {
        matches!(self, Obj::Condition(_) | Obj::Barrier(_))
    }

    /// Counts, in `held` (far pid → units), what `pid`'s operation took or gave
    /// back: a `Lock` has one holder, whoever releases it; a semaphore's permits
    /// are counted per process.
    pub(super) fn note(&self, held: &mut HashMap<u32, u32>, pid: u32, hold: Hold) {
        match (self, hold) {
            (Obj::Lock(_), Hold::Took) => *held = HashMap::from([(pid, 1)]),
            (Obj::Lock(_), Hold::Released) => held.clear(),
            (Obj::Semaphore(_) | Obj::BoundedSemaphore(_), Hold::Took) => {
                *held.entry(pid).or_default() += 1;
            }
            (Obj::Semaphore(_) | Obj::BoundedSemaphore(_), Hold::Released) => {
                if let Some(n) = held.get_mut(&pid) {
                    *n -= 1;
                    if *n == 0 {
                        held.remove(&pid);
                    }
                }
            }
            _ => {}
        }
    }

    /// A far process is gone: its stand-ins `threads` and the `units` it held (see
    /// [`note`](Obj::note)) are freed as a dead holder's; the next acquirer is told
    /// `OwnerDied`, and a barrier it waited on breaks.
    pub(super) async fn gone(&self, threads: &[u32], units: u32) {
        let wide: Vec<u64> = threads.iter().copied().map(u64::from).collect();
        match self {
            Obj::Lock(l) if units > 0 => l.holder_gone().await,
            Obj::Semaphore(s) if units > 0 => s.give_back(units).await,
            Obj::BoundedSemaphore(s) if units > 0 => s.give_back(units).await,
            Obj::RLock(l) => {
                for &t in threads {
                    l.owner_gone(t).await;
                }
            }
            // The host may be gone already: nothing is left to free then.
            Obj::Condition(c) if !wide.is_empty() => {
                let _ = c.holders_gone(&wide).await;
            }
            Obj::Barrier(b) if !wide.is_empty() => {
                let _ = b.holders_gone(&wide).await;
            }
            _ => {}
        }
    }
}

/// Runs `op` on `obj` for the far thread whose stand-in is `me`.
pub(super) async fn run(obj: &Obj, op: FarOp, me: u32) -> (Result<FarValue, SyncError>, Hold) {
    use FarValue::{Bool, Count, Done};
    let took = |r: Result<bool, SyncError>| {
        let hold = match r {
            Ok(true) | Err(SyncError::OwnerDied) => Hold::Took,
            _ => Hold::Same,
        };
        (r.map(Bool), hold)
    };
    let released = |r: Result<(), SyncError>| {
        let hold = if r.is_ok() {
            Hold::Released
        } else {
            Hold::Same
        };
        (r.map(|()| Done), hold)
    };
    let wide = u64::from(me);
    let value = match (obj, op) {
        (Obj::Lock(l), FarOp::Acquire { block, timeout }) => {
            return took(l.acquire(block, timeout).await);
        }
        (Obj::Lock(l), FarOp::Release) => return released(l.release().await),
        (Obj::Lock(l), FarOp::Locked) => l.locked().await.map(Bool),
        (Obj::RLock(l), FarOp::Acquire { block, timeout }) => {
            return took(l.acquire_for(me, block, timeout).await);
        }
        (Obj::RLock(l), FarOp::Release) => return released(l.release_for(me).await),
        (Obj::Semaphore(s), FarOp::Acquire { block, timeout }) => {
            return took(s.acquire(block, timeout).await);
        }
        (Obj::Semaphore(s), FarOp::Release) => return released(s.release().await),
        (Obj::Semaphore(s), FarOp::Value) => s.get_value().await.map(Count),
        (Obj::BoundedSemaphore(s), FarOp::Acquire { block, timeout }) => {
            return took(s.acquire(block, timeout).await);
        }
        (Obj::BoundedSemaphore(s), FarOp::Release) => return released(s.release().await),
        (Obj::BoundedSemaphore(s), FarOp::Value) => s.get_value().await.map(Count),
        (Obj::Condition(c), FarOp::Acquire { block, timeout }) => {
            return took(c.acquire_as(wide, block, timeout).await);
        }
        (Obj::Condition(c), FarOp::Release) => return released(c.release_as(wide).await),
        (Obj::Condition(c), FarOp::Wait { timeout }) => {
            // It holds the lock again when it returns, however it returns.
            let r = c.wait_as(wide, timeout).await;
            let hold = match r {
                Ok(_) | Err(SyncError::OwnerDied) => Hold::Took,
                _ => Hold::Same,
            };
            return (r.map(Bool), hold);
        }
        (Obj::Condition(c), FarOp::Notify { n }) => c.notify_as(wide, n).await.map(|()| Done),
        (Obj::Barrier(b), FarOp::BarrierWait { timeout }) => {
            b.wait_as(wide, timeout).await.map(Count)
        }
        (Obj::Barrier(b), FarOp::Abort) => b.abort().await.map(|()| Done),
        (Obj::Barrier(b), FarOp::Reset) => b.reset().await.map(|()| Done),
        (Obj::Barrier(b), FarOp::Info) => {
            b.info()
                .await
                .map(|(parties, n_waiting, broken)| FarValue::Info {
                    parties,
                    n_waiting,
                    broken,
                })
        }
        (Obj::Event(e), FarOp::Set) => e.set().await.map(|()| Done),
        (Obj::Event(e), FarOp::Clear) => e.clear().await.map(|()| Done),
        (Obj::Event(e), FarOp::IsSet) => e.is_set().await.map(Bool),
        (Obj::Event(e), FarOp::Wait { timeout }) => e.wait(timeout).await.map(Bool),
        (
            Obj::Queue(q),
            FarOp::Put {
                item,
                block,
                timeout,
            },
        ) => q.put_raw(&item, block, timeout).await.map(|()| Done),
        (Obj::Queue(q), FarOp::Get { block, timeout }) => {
            q.get_raw(block, timeout).await.map(FarValue::Item)
        }
        (Obj::Queue(q), FarOp::Size) => q
            .size_raw()
            .await
            .map(|(size, full)| FarValue::Size { size, full }),
        (Obj::Queue(q), FarOp::TaskDone) => q.task_done().await.map(|()| Done),
        (Obj::Queue(q), FarOp::Join) => q.join().await.map(|()| Done),
        (Obj::Resolver(r), FarOp::Resolve { child, wait }) => {
            Ok(FarValue::Item((r.resolve)(child, wait).await))
        }
        _ => Err(SyncError::Forged),
    };
    (value, Hold::Same)
}
