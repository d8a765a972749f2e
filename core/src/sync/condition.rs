//! `ConditionState`: Python's `Condition` over a [`Sem`] lock, as a pure state machine.

use std::collections::{BTreeMap, VecDeque};

use super::{Acquire, Grant, Holder, Misuse, Sem, SemKind, WaitId};
use crate::Identity;

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
        let (grants, woken, _) = self.holders_died(|h| h.process == *process);
        (grants, woken)
    }

    /// The holders `dead` names died (see [`Sem::holders_died`]): as
    /// [`process_died`](ConditionState::process_died), and the waits forgotten.
    pub fn holders_died(
        &mut self,
        dead: impl Fn(&Holder) -> bool,
    ) -> (Vec<Grant>, Vec<Woken>, Vec<WaitId>) {
        let mut forgotten: Vec<WaitId> = self
            .sleeping
            .iter()
            .filter(|(_, h, _)| dead(h))
            .map(|(w, _, _)| *w)
            .collect();
        self.sleeping.retain(|(_, h, _)| !dead(h));
        let (grants, queued) = self.lock.holders_died(&dead);
        for w in &queued {
            self.depth.remove(w);
        }
        forgotten.extend(queued);
        let (grants, woken) = self.sort(grants);
        (grants, woken, forgotten)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::tests::{GOT, h};

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
}
