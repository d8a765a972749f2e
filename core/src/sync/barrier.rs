//! `BarrierState`: Python's `Barrier(parties, action)`, as a pure state machine.

use super::{Holder, Misuse, WaitId};
use crate::Identity;

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
    use crate::sync::tests::h;

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
