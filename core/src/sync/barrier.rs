//! `BarrierState`: Python's `Barrier(parties, action)`, as a pure state machine.

use super::{BarrierBroken, Holder, WaitId};
use crate::Identity;

/// How a barrier wait ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BarrierOutcome {
    /// Passed, with this index (0 for the first to arrive).
    Passed(usize),
    /// The barrier broke, for this reason.
    Broken(BarrierBroken),
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
    broken: Option<BarrierBroken>,
    draining: bool,
}

impl BarrierState {
    /// A barrier for `parties` (at least 1), with an action run by the last to arrive.
    pub fn new(parties: usize, has_action: bool) -> BarrierState {
        BarrierState {
            parties: parties.max(1),
            has_action,
            arrived: Vec::new(),
            broken: None,
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
        self.broken.is_some()
    }

    /// A party arrives.
    ///
    /// # Errors
    ///
    /// The [`BarrierBroken`] reason when the barrier is broken (what broke it), or
    /// while the last party runs the action.
    pub fn wait(&mut self, holder: &Holder, wait: WaitId) -> Result<Arrive, BarrierBroken> {
        if let Some(why) = self.broken {
            return Err(why);
        }
        if self.draining {
            return Err(BarrierBroken::ActionRunning);
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
            self.break_all(BarrierBroken::ActionFailed)
        }
    }

    fn break_all(&mut self, why: BarrierBroken) -> Vec<(WaitId, BarrierOutcome)> {
        self.broken = Some(why);
        self.draining = false;
        self.arrived
            .drain(..)
            .map(|(w, _)| (w, BarrierOutcome::Broken(why)))
            .collect()
    }

    /// A wait timed out: the barrier breaks, for everyone (as in Python).
    pub fn time_out(&mut self, wait: WaitId) -> Vec<(WaitId, BarrierOutcome)> {
        if self.arrived.iter().any(|(w, _)| *w == wait) {
            self.break_all(BarrierBroken::TimedOut)
        } else {
            Vec::new()
        }
    }

    /// Python's `abort`: broken until `reset`.
    pub fn abort(&mut self) -> Vec<(WaitId, BarrierOutcome)> {
        self.break_all(BarrierBroken::Aborted)
    }

    /// Python's `reset`: waiting parties get `Broken`; the barrier is whole again.
    pub fn reset(&mut self) -> Vec<(WaitId, BarrierOutcome)> {
        let out = self.break_all(BarrierBroken::Reset);
        self.broken = None;
        out
    }

    /// `process` died: if one of its parties was waiting, the barrier breaks (Python's
    /// barrier would leave the others waiting for ever).
    pub fn process_died(&mut self, process: &Identity) -> Vec<(WaitId, BarrierOutcome)> {
        self.holders_died(|h| h.process == *process)
    }

    /// The parties `dead` names died (see [`super::Sem::holders_died`]): as
    /// [`process_died`](BarrierState::process_died).
    pub fn holders_died(
        &mut self,
        dead: impl Fn(&Holder) -> bool,
    ) -> Vec<(WaitId, BarrierOutcome)> {
        if self.arrived.iter().any(|(_, h)| dead(h)) {
            self.break_all(BarrierBroken::PartyDied)
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
                .all(|(_, o)| *o == BarrierOutcome::Broken(BarrierBroken::ActionFailed))
        );
        assert!(b.broken());
        assert_eq!(b.wait(&h(1, 0), 5), Err(BarrierBroken::ActionFailed));
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
            vec![
                (1, BarrierOutcome::Broken(BarrierBroken::PartyDied)),
                (2, BarrierOutcome::Broken(BarrierBroken::PartyDied))
            ]
        );
        b.reset();
        b.wait(&h(1, 0), 3).unwrap();
        assert_eq!(
            b.time_out(3),
            vec![(3, BarrierOutcome::Broken(BarrierBroken::TimedOut))]
        );
        assert_eq!(b.wait(&h(1, 0), 4), Err(BarrierBroken::TimedOut));
        assert!(b.broken());
        assert_eq!(b.abort(), vec![]);
    }
}
