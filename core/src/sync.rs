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
    /// The barrier is broken (Python's `BrokenBarrierError`).
    #[error("the barrier is broken")]
    BrokenBarrier,
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
        self.waiting.retain(|(_, h)| h.process != *process);
        let dead: Vec<Holder> = self
            .held
            .keys()
            .filter(|h| h.process == *process)
            .cloned()
            .collect();
        for h in dead {
            let n = self.held.remove(&h).unwrap_or(0);
            self.value += if self.kind == SemKind::RLock { 1 } else { n };
            self.owner_died = true;
        }
        self.serve()
    }
}

/// `Condition` over a [`Sem`] lock.
#[derive(Debug, Clone)]
pub struct ConditionState {
    lock: Sem,
    /// Waits asleep on the condition, with the lock depth each must get back.
    sleeping: VecDeque<(WaitId, Holder, usize)>,
    /// Waits woken (or timed out) and queued for the lock, with their depth and
    /// whether they were notified.
    depth: BTreeMap<WaitId, (usize, bool)>,
}

/// A condition wait whose lock is granted again: it returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Woken {
    /// The wait.
    pub wait: WaitId,
    /// Whom it was for.
    pub holder: Holder,
    /// `true` if notified, `false` if it timed out (Python's `wait` result).
    pub notified: bool,
    /// Whether a holder of the lock died meanwhile.
    pub owner_died: bool,
}

impl ConditionState {
    /// A condition over a fresh lock of this kind (Python's default is an `RLock`).
    pub fn new(kind: SemKind) -> ConditionState {
        ConditionState {
            lock: Sem::new(kind, 1),
            sleeping: VecDeque::new(),
            depth: BTreeMap::new(),
        }
    }

    /// The lock's state.
    pub fn lock(&self) -> &Sem {
        &self.lock
    }

    /// Acquires the lock, as [`Sem::acquire`]. (Releases go through
    /// [`ConditionState::release`], which also hands the lock back to woken waits.)
    pub fn acquire(&mut self, holder: &Holder, wait: WaitId, block: bool) -> Acquire {
        self.lock.acquire(holder, wait, block)
    }

    /// Waits asleep.
    pub fn sleeping(&self) -> usize {
        self.sleeping.len()
    }

    /// Grants of the lock: to plain acquirers, or to woken waits (which then return).
    fn sort(&mut self, grants: Vec<Grant>) -> (Vec<Grant>, Vec<Woken>) {
        let mut plain = Vec::new();
        let mut woken = Vec::new();
        for g in grants {
            match self.depth.remove(&g.wait) {
                Some((depth, notified)) => {
                    if let Some(d) = self.lock.held.get_mut(&g.holder) {
                        *d = depth;
                    }
                    woken.push(Woken {
                        wait: g.wait,
                        holder: g.holder,
                        notified,
                        owner_died: g.owner_died,
                    });
                }
                None => plain.push(g),
            }
        }
        (plain, woken)
    }

    /// Releases the lock `holder` holds (all levels) and sleeps until notified.
    ///
    /// # Errors
    ///
    /// [`Misuse::NotHeld`] without the lock.
    pub fn wait(
        &mut self,
        holder: &Holder,
        wait: WaitId,
    ) -> Result<(Vec<Grant>, Vec<Woken>), Misuse> {
        let (depth, grants) = self.lock.release_all(holder)?;
        self.sleeping.push_back((wait, holder.clone(), depth));
        Ok(self.sort(grants))
    }

    /// Wakes up to `n` sleeping waits: they queue for the lock, which they get back
    /// when `holder` (and those before them) release it.
    ///
    /// # Errors
    ///
    /// [`Misuse::NotHeld`] without the lock.
    pub fn notify(&mut self, holder: &Holder, n: usize) -> Result<(), Misuse> {
        if self.lock.held_by(holder) == 0 {
            return Err(Misuse::NotHeld);
        }
        for _ in 0..n {
            let Some((wait, h, depth)) = self.sleeping.pop_front() else {
                break;
            };
            self.requeue(wait, h, depth, true);
        }
        Ok(())
    }

    fn requeue(&mut self, wait: WaitId, holder: Holder, depth: usize, notified: bool) {
        self.depth.insert(wait, (depth, notified));
        self.lock.waiting.push_back((wait, holder));
    }

    /// A sleeping wait timed out: it still gets the lock back before it returns
    /// (`notified: false`). Returns what that grants now.
    pub fn time_out(&mut self, wait: WaitId) -> (Vec<Grant>, Vec<Woken>) {
        if let Some(pos) = self.sleeping.iter().position(|(w, _, _)| *w == wait) {
            let (wait, h, depth) = self.sleeping.remove(pos).expect("position is valid");
            self.requeue(wait, h, depth, false);
        }
        let grants = self.lock.serve();
        self.sort(grants)
    }

    /// Releases one level of the lock (as [`Sem::release`]), waking whoever gets it.
    ///
    /// # Errors
    ///
    /// As [`Sem::release`].
    pub fn release(&mut self, holder: &Holder) -> Result<(Vec<Grant>, Vec<Woken>), Misuse> {
        let grants = self.lock.release(holder)?;
        Ok(self.sort(grants))
    }

    /// `process` died: its lock levels and waits are gone.
    pub fn process_died(&mut self, process: &Identity) -> (Vec<Grant>, Vec<Woken>) {
        self.sleeping.retain(|(_, h, _)| h.process != *process);
        let gone: Vec<WaitId> = self
            .lock
            .waiting
            .iter()
            .filter(|(_, h)| h.process == *process)
            .map(|(w, _)| *w)
            .collect();
        for w in gone {
            self.depth.remove(&w);
        }
        let grants = self.lock.process_died(process);
        self.sort(grants)
    }
}

/// How a barrier wait ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BarrierOutcome {
    /// Passed, with this index (0 for the first to arrive).
    Passed(usize),
    /// The barrier broke (a timeout, an abort, a reset, a party that died, a failed
    /// action).
    Broken,
}

/// The answer to a barrier wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrive {
    /// Queued until the others come.
    Queued,
    /// The last party: run the action, then report it with
    /// [`BarrierState::action_done`].
    RunAction(usize),
    /// Everyone passes (this wait included), with these outcomes.
    Released(Vec<(WaitId, BarrierOutcome)>),
}

/// `Barrier(parties, action)`.
#[derive(Debug, Clone)]
pub struct BarrierState {
    parties: usize,
    has_action: bool,
    arrived: Vec<(WaitId, Holder)>,
    broken: bool,
    draining: bool,
}

impl BarrierState {
    /// A barrier for `parties` (at least 1), with an action run by the last to arrive.
    pub fn new(parties: usize, has_action: bool) -> BarrierState {
        BarrierState {
            parties: parties.max(1),
            has_action,
            arrived: Vec::new(),
            broken: false,
            draining: false,
        }
    }

    /// Python's `parties`.
    pub fn parties(&self) -> usize {
        self.parties
    }

    /// Python's `n_waiting`.
    pub fn n_waiting(&self) -> usize {
        self.arrived.len()
    }

    /// Python's `broken`.
    pub fn broken(&self) -> bool {
        self.broken
    }

    /// A party arrives.
    ///
    /// # Errors
    ///
    /// [`Misuse::BrokenBarrier`] when the barrier is broken.
    pub fn wait(&mut self, holder: &Holder, wait: WaitId) -> Result<Arrive, Misuse> {
        if self.broken || self.draining {
            return Err(Misuse::BrokenBarrier);
        }
        self.arrived.push((wait, holder.clone()));
        let index = self.arrived.len() - 1;
        if self.arrived.len() < self.parties {
            return Ok(Arrive::Queued);
        }
        if self.has_action {
            self.draining = true;
            return Ok(Arrive::RunAction(index));
        }
        Ok(Arrive::Released(self.release()))
    }

    fn release(&mut self) -> Vec<(WaitId, BarrierOutcome)> {
        self.draining = false;
        self.arrived
            .drain(..)
            .enumerate()
            .map(|(i, (w, _))| (w, BarrierOutcome::Passed(i)))
            .collect()
    }

    /// The last party ran the action; `ok` if it succeeded. Returns every waiter's
    /// outcome (a failed action breaks the barrier).
    pub fn action_done(&mut self, ok: bool) -> Vec<(WaitId, BarrierOutcome)> {
        if ok && self.draining {
            self.release()
        } else {
            self.break_all()
        }
    }

    fn break_all(&mut self) -> Vec<(WaitId, BarrierOutcome)> {
        self.broken = true;
        self.draining = false;
        self.arrived
            .drain(..)
            .map(|(w, _)| (w, BarrierOutcome::Broken))
            .collect()
    }

    /// A wait timed out: the barrier breaks, for everyone (as in Python).
    pub fn time_out(&mut self, wait: WaitId) -> Vec<(WaitId, BarrierOutcome)> {
        if self.arrived.iter().any(|(w, _)| *w == wait) {
            self.break_all()
        } else {
            Vec::new()
        }
    }

    /// Python's `abort`: broken until `reset`.
    pub fn abort(&mut self) -> Vec<(WaitId, BarrierOutcome)> {
        self.break_all()
    }

    /// Python's `reset`: waiting parties get `Broken`; the barrier is whole again.
    pub fn reset(&mut self) -> Vec<(WaitId, BarrierOutcome)> {
        let out = self.break_all();
        self.broken = false;
        out
    }

    /// `process` died: if one of its parties was waiting, the barrier breaks (Python's
    /// barrier would leave the others waiting for ever).
    pub fn process_died(&mut self, process: &Identity) -> Vec<(WaitId, BarrierOutcome)> {
        if self.arrived.iter().any(|(_, h)| h.process == *process) {
            self.break_all()
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(p: u32, t: u64) -> Holder {
        Holder {
            process: Identity::from_path(vec![p]),
            thread: t,
        }
    }

    const GOT: Acquire = Acquire::Granted { owner_died: false };

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

    #[test]
    fn a_condition_wait_gives_up_the_lock_and_gets_it_back_at_its_depth() {
        let mut c = ConditionState::new(SemKind::RLock);
        let (a, b) = (h(1, 0), h(2, 0));
        assert_eq!(c.acquire(&a, 1, true), GOT);
        assert_eq!(c.acquire(&a, 2, true), GOT);
        let (grants, woken) = c.wait(&a, 10).unwrap();
        assert!(grants.is_empty() && woken.is_empty());
        assert!(!c.lock().locked(), "the waiter gave the lock up");
        assert_eq!(c.acquire(&b, 3, true), GOT);
        assert_eq!(c.notify(&a, 1), Err(Misuse::NotHeld));
        c.notify(&b, 1).unwrap();
        let (grants, woken) = c.release(&b).unwrap();
        assert!(grants.is_empty());
        assert_eq!(woken.len(), 1);
        assert!(woken[0].notified);
        assert_eq!(c.lock().held_by(&a), 2, "its recursion depth is restored");
    }

    #[test]
    fn a_timed_out_condition_wait_returns_false_once_it_has_the_lock() {
        let mut c = ConditionState::new(SemKind::Lock);
        let (a, b) = (h(1, 0), h(2, 0));
        c.acquire(&a, 1, true);
        c.wait(&a, 10).unwrap();
        c.acquire(&b, 2, true);
        let (_, woken) = c.time_out(10);
        assert!(woken.is_empty(), "b holds the lock");
        let (_, woken) = c.release(&b).unwrap();
        assert_eq!(woken[0].wait, 10);
        assert!(!woken[0].notified);
        assert_eq!(c.wait(&b, 11), Err(Misuse::NotHeld));
    }

    #[test]
    fn a_barrier_releases_everyone_with_their_index() {
        let mut b = BarrierState::new(3, false);
        assert_eq!(b.wait(&h(1, 0), 1).unwrap(), Arrive::Queued);
        assert_eq!(b.wait(&h(2, 0), 2).unwrap(), Arrive::Queued);
        assert_eq!(b.n_waiting(), 2);
        assert_eq!(
            b.wait(&h(3, 0), 3).unwrap(),
            Arrive::Released(vec![
                (1, BarrierOutcome::Passed(0)),
                (2, BarrierOutcome::Passed(1)),
                (3, BarrierOutcome::Passed(2))
            ])
        );
        assert_eq!(b.n_waiting(), 0, "and it can be used again");
    }

    #[test]
    fn a_barrier_action_runs_before_the_release_and_its_failure_breaks_it() {
        let mut b = BarrierState::new(2, true);
        b.wait(&h(1, 0), 1).unwrap();
        assert_eq!(b.wait(&h(2, 0), 2).unwrap(), Arrive::RunAction(1));
        assert_eq!(b.action_done(true).len(), 2);
        b.wait(&h(1, 0), 3).unwrap();
        b.wait(&h(2, 0), 4).unwrap();
        assert!(
            b.action_done(false)
                .iter()
                .all(|(_, o)| *o == BarrierOutcome::Broken)
        );
        assert!(b.broken());
        assert_eq!(b.wait(&h(1, 0), 5), Err(Misuse::BrokenBarrier));
        assert!(b.reset().is_empty());
        assert!(!b.broken());
    }

    #[test]
    fn a_party_that_dies_or_times_out_breaks_the_barrier_for_the_others() {
        let mut b = BarrierState::new(3, false);
        b.wait(&h(1, 0), 1).unwrap();
        b.wait(&h(2, 0), 2).unwrap();
        let out = b.process_died(&Identity::from_path(vec![2]));
        assert_eq!(
            out,
            vec![(1, BarrierOutcome::Broken), (2, BarrierOutcome::Broken)]
        );
        b.reset();
        b.wait(&h(1, 0), 3).unwrap();
        assert_eq!(b.time_out(3), vec![(3, BarrierOutcome::Broken)]);
        assert!(b.broken());
        assert_eq!(b.abort(), vec![]);
    }
}
