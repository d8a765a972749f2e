//! Synchronization primitives served by their host, as pure state machines:
//! `Condition` (over a [`Sem`] lock of any kind) and `Barrier`, with Python's
//! semantics and one thing Python does not have: a holder's death is an event. The
//! process hosting a primitive feeds it requests and deaths and sends the answers it
//! returns; waiting and timeouts belong to the caller (a timed-out wait is
//! cancelled). `Lock`, `RLock`, the semaphores and `Event` live in shared memory
//! instead: see [`crate::lock_word`] and [`crate::sem_state`].
//!
//! # Invariants
//!
//! - A wait is answered exactly once: granted, or cancelled by its caller, or failed
//!   (a broken barrier). A cancelled wait is never granted afterwards.
//! - Waiters are served in arrival order.
//! - A process that dies holds nothing: its permits go to the next waiters, who are
//!   told the previous holder died (`owner_died`), and its waits are forgotten.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::Identity;

mod barrier;
mod condition;

pub use barrier::{Arrive, BarrierOutcome, BarrierState};
pub use condition::{ConditionState, Woken};

/// One wait request, numbered by the hosting actor.
pub type WaitId = u64;

/// Who holds or waits: a thread of a process.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Holder {
    /// The process.
    pub process: Identity,
    /// A thread (or task) of it, as its handle numbers threads.
    pub thread: u64,
}

/// Misuse of a primitive, with Python's meaning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Misuse {
    /// `release` of a lock that is not held, or a bounded semaphore over its value
    /// (Python's `ValueError: semaphore or lock released too many times`).
    #[error("semaphore or lock released too many times")]
    ReleasedTooManyTimes,
    /// `release` of an `RLock` (or use of a `Condition`) by a thread that does not own
    /// the lock (Python's `AssertionError`).
    #[error("attempt to release recursive lock not owned by thread")]
    NotOwner,
    /// `wait` or `notify` on a `Condition` without holding its lock.
    #[error("cannot wait on or notify a condition without holding its lock")]
    NotHeld,
}

/// Why a barrier is broken (Python's `BrokenBarrierError`, with its cause): a wait on
/// it fails until `reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum BarrierBroken {
    /// A process died while one of its parties waited: the others would wait for
    /// ever.
    #[error("a party's process died while it waited")]
    PartyDied,
    /// A party's wait timed out, which breaks the barrier for everyone (as in Python).
    #[error("a party's wait timed out")]
    TimedOut,
    /// `abort` was called.
    #[error("it was aborted")]
    Aborted,
    /// `reset` was called while this party waited.
    #[error("it was reset while this party waited")]
    Reset,
    /// The action run by the last party failed or panicked.
    #[error("its action failed")]
    ActionFailed,
    /// This party came while the last one ran the action.
    #[error("a party came while the action ran")]
    ActionRunning,
}

/// Which kind of semaphore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SemKind {
    /// One permit; anyone may release it.
    Lock,
    /// One owner, recursive; only the owner releases.
    RLock,
    /// `value` permits; releases may add more.
    Semaphore,
    /// `value` permits; a release past it is an error.
    Bounded,
}

/// The answer to an acquire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// Granted now; `owner_died` when the permit was freed by a holder's death.
    Granted {
        /// Whether a holder died since this primitive last granted a permit.
        owner_died: bool,
    },
    /// Queued: it will come in a [`Grant`].
    Queued,
    /// Not available, and the caller would not wait.
    WouldBlock,
}

/// A queued wait that is now granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The wait.
    pub wait: WaitId,
    /// Whom it was for.
    pub holder: Holder,
    /// Whether a holder died since the last grant.
    pub owner_died: bool,
}

/// `Lock`, `RLock`, `Semaphore` and `BoundedSemaphore`.
#[derive(Debug, Clone)]
pub struct Sem {
    kind: SemKind,
    /// Free permits.
    value: usize,
    /// The initial value: a bounded semaphore's limit.
    initial: usize,
    /// Permits (or, for an `RLock`, the recursion depth) by holder.
    held: BTreeMap<Holder, usize>,
    waiting: VecDeque<(WaitId, Holder)>,
    owner_died: bool,
}

impl Sem {
    /// A semaphore of this kind with `value` permits (a lock has one).
    pub fn new(kind: SemKind, value: usize) -> Sem {
        let value = match kind {
            SemKind::Lock | SemKind::RLock => 1,
            _ => value,
        };
        Sem {
            kind,
            value,
            initial: value,
            held: BTreeMap::new(),
            waiting: VecDeque::new(),
            owner_died: false,
        }
    }

    /// Free permits now (Python's `get_value`; for an `RLock`, 1 or 0).
    pub fn value(&self) -> usize {
        self.value
    }

    /// Whether no permit is free (Python 3.14's `locked`).
    pub fn locked(&self) -> bool {
        self.value == 0
    }

    /// How deep `holder` holds it (an `RLock`'s recursion, or permits held).
    pub fn held_by(&self, holder: &Holder) -> usize {
        self.held.get(holder).copied().unwrap_or(0)
    }

    /// Waits queued.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Acquires for `holder`; when it cannot now, queues `wait` if `block`.
    pub fn acquire(&mut self, holder: &Holder, wait: WaitId, block: bool) -> Acquire {
        if self.kind == SemKind::RLock
            && let Some(depth) = self.held.get_mut(holder)
        {
            *depth += 1;
            return Acquire::Granted { owner_died: false };
        }
        if self.value > 0 && self.waiting.is_empty() {
            self.take(holder);
            return Acquire::Granted {
                owner_died: std::mem::take(&mut self.owner_died),
            };
        }
        if block {
            self.waiting.push_back((wait, holder.clone()));
            Acquire::Queued
        } else {
            Acquire::WouldBlock
        }
    }

    fn take(&mut self, holder: &Holder) {
        self.value -= 1;
        *self.held.entry(holder.clone()).or_default() += 1;
    }

    /// Releases one permit (for an `RLock`, one level) on behalf of `holder`; returns
    /// the waits now granted.
    ///
    /// # Errors
    ///
    /// [`Misuse::NotOwner`] for an `RLock` `holder` does not own;
    /// [`Misuse::ReleasedTooManyTimes`] for a free lock or a bounded semaphore at
    /// its limit.
    pub fn release(&mut self, holder: &Holder) -> Result<Vec<Grant>, Misuse> {
        match self.kind {
            SemKind::RLock => {
                let depth = self.held.get_mut(holder).ok_or(Misuse::NotOwner)?;
                *depth -= 1;
                if *depth > 0 {
                    return Ok(Vec::new());
                }
                self.held.remove(holder);
                self.value = 1;
            }
            SemKind::Lock | SemKind::Bounded if self.value >= self.initial => {
                return Err(Misuse::ReleasedTooManyTimes);
            }
            _ => {
                // Anyone may release: the releaser's own permit if it has one, else the
                // longest-held one (death tracking only needs the count to be right).
                let from = if self.held.contains_key(holder) {
                    Some(holder.clone())
                } else {
                    self.held.keys().next().cloned()
                };
                if let Some(from) = from
                    && let Some(n) = self.held.get_mut(&from)
                {
                    *n -= 1;
                    if *n == 0 {
                        self.held.remove(&from);
                    }
                }
                self.value += 1;
            }
        }
        Ok(self.serve())
    }

    /// Fully releases an `RLock` (or one permit) held by `holder`, returning the depth
    /// it had: what a `Condition` wait does before it sleeps.
    fn release_all(&mut self, holder: &Holder) -> Result<(usize, Vec<Grant>), Misuse> {
        let depth = self.held_by(holder);
        if depth == 0 {
            return Err(Misuse::NotHeld);
        }
        if self.kind == SemKind::RLock {
            self.held.remove(holder);
            self.value = 1;
            Ok((depth, self.serve()))
        } else {
            Ok((1, self.release(holder)?))
        }
    }

    fn serve(&mut self) -> Vec<Grant> {
        let mut granted = Vec::new();
        while self.value > 0
            && let Some((wait, holder)) = self.waiting.pop_front()
        {
            self.take(&holder);
            granted.push(Grant {
                wait,
                holder,
                owner_died: std::mem::take(&mut self.owner_died),
            });
        }
        granted
    }

    /// Forgets a queued wait (its caller timed out); whether it was queued.
    pub fn cancel(&mut self, wait: WaitId) -> bool {
        let before = self.waiting.len();
        self.waiting.retain(|(w, _)| *w != wait);
        before != self.waiting.len()
    }

    /// `process` died: its permits are freed (the next grant says so) and its waits
    /// forgotten. Returns the waits now granted.
    pub fn process_died(&mut self, process: &Identity) -> Vec<Grant> {
        self.holders_died(|h| h.process == *process).0
    }

    /// The holders `dead` names died (some threads of a process that lives on: a
    /// host's stand-ins for processes on another node): as
    /// [`process_died`](Sem::process_died), and the waits forgotten, which their
    /// callers must answer themselves.
    pub fn holders_died(&mut self, dead: impl Fn(&Holder) -> bool) -> (Vec<Grant>, Vec<WaitId>) {
        let forgotten = self
            .waiting
            .iter()
            .filter(|(_, h)| dead(h))
            .map(|(w, _)| *w)
            .collect();
        self.waiting.retain(|(_, h)| !dead(h));
        let gone: Vec<Holder> = self.held.keys().filter(|h| dead(h)).cloned().collect();
        for h in gone {
            let n = self.held.remove(&h).unwrap_or(0);
            self.value += if self.kind == SemKind::RLock { 1 } else { n };
            self.owner_died = true;
        }
        (self.serve(), forgotten)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn h(p: u32, t: u64) -> Holder {
        Holder {
            process: Identity::from_path(vec![p]),
            thread: t,
        }
    }

    pub(super) const GOT: Acquire = Acquire::Granted { owner_died: false };

    #[test]
    fn a_lock_may_be_released_by_anyone_but_not_twice() {
        let mut l = Sem::new(SemKind::Lock, 99);
        assert_eq!(l.acquire(&h(1, 0), 1, true), GOT);
        assert_eq!(l.acquire(&h(2, 0), 2, false), Acquire::WouldBlock);
        assert_eq!(l.acquire(&h(2, 0), 3, true), Acquire::Queued);
        let g = l.release(&h(3, 0)).unwrap(); // another process releases it, as Python allows
        assert_eq!(g.len(), 1);
        assert_eq!((g[0].wait, g[0].holder.clone()), (3, h(2, 0)));
        l.release(&h(2, 0)).unwrap();
        assert_eq!(l.release(&h(2, 0)), Err(Misuse::ReleasedTooManyTimes));
    }

    #[test]
    fn an_rlock_is_recursive_and_owner_checked() {
        let mut l = Sem::new(SemKind::RLock, 1);
        let (a, b) = (h(1, 0), h(1, 1));
        assert_eq!(l.acquire(&a, 1, true), GOT);
        assert_eq!(l.acquire(&a, 2, true), GOT);
        assert_eq!(l.held_by(&a), 2);
        assert_eq!(
            l.acquire(&b, 3, true),
            Acquire::Queued,
            "another thread of the same process waits"
        );
        assert_eq!(l.release(&b), Err(Misuse::NotOwner));
        assert!(l.release(&a).unwrap().is_empty(), "one level left");
        let g = l.release(&a).unwrap();
        assert_eq!(g[0].holder, b);
    }

    #[test]
    fn semaphores_count_and_bounded_ones_refuse_over_release() {
        let mut s = Sem::new(SemKind::Semaphore, 2);
        assert_eq!(s.acquire(&h(1, 0), 1, true), GOT);
        assert_eq!(s.acquire(&h(2, 0), 2, true), GOT);
        assert!(s.locked());
        s.release(&h(1, 0)).unwrap();
        s.release(&h(2, 0)).unwrap();
        s.release(&h(2, 0)).unwrap();
        assert_eq!(
            s.value(),
            3,
            "a plain semaphore grows past its initial value"
        );
        let mut b = Sem::new(SemKind::Bounded, 1);
        assert_eq!(b.release(&h(1, 0)), Err(Misuse::ReleasedTooManyTimes));
    }

    #[test]
    fn waiters_are_served_in_order_and_a_cancelled_wait_never_is() {
        let mut l = Sem::new(SemKind::Lock, 1);
        l.acquire(&h(1, 0), 1, true);
        l.acquire(&h(2, 0), 2, true);
        l.acquire(&h(3, 0), 3, true);
        l.acquire(&h(4, 0), 4, true);
        assert!(l.cancel(3));
        let g = l.release(&h(1, 0)).unwrap();
        assert_eq!(g[0].wait, 2);
        let g = l.release(&h(2, 0)).unwrap();
        assert_eq!(g[0].wait, 4);
    }

    #[test]
    fn a_dead_holders_lock_goes_to_the_next_waiter_who_is_told() {
        let mut l = Sem::new(SemKind::Lock, 1);
        l.acquire(&h(1, 0), 1, true);
        l.acquire(&h(2, 0), 2, true);
        l.acquire(&h(1, 1), 3, true); // the dying process also waits: forgotten
        let g = l.process_died(&Identity::from_path(vec![1]));
        assert_eq!(
            g,
            vec![Grant {
                wait: 2,
                holder: h(2, 0),
                owner_died: true
            }]
        );
        l.release(&h(2, 0)).unwrap();
        assert_eq!(l.acquire(&h(3, 0), 4, true), GOT, "told once only");
        // With nobody waiting, the next acquirer is the one told.
        l.process_died(&Identity::from_path(vec![3]));
        assert_eq!(
            l.acquire(&h(4, 0), 5, true),
            Acquire::Granted { owner_died: true }
        );
    }

    #[test]
    fn a_dead_processes_semaphore_permits_all_come_back() {
        let mut s = Sem::new(SemKind::Bounded, 3);
        for w in 0..3 {
            s.acquire(&h(1, w), w, true);
        }
        assert!(s.process_died(&Identity::from_path(vec![1])).is_empty());
        assert_eq!(s.value(), 3);
    }
}
