//! Which children a supervisor restarts when one exits: OTP's strategies, as a pure
//! function over the children's order.

use serde::{Deserialize, Serialize};

use crate::{ExitReason, Restart};

/// A supervisor's restart strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Strategy {
    /// Restart only the child that exited (the default).
    #[default]
    OneForOne,
    /// Stop every other child (in reverse start order), then restart all of them (in
    /// start order).
    OneForAll,
    /// Stop the children started after the one that exited (in reverse order), then
    /// restart it and them (in start order).
    RestForOne,
}

/// Whether an exit calls for a restart, by the child's restart type (OTP's
/// `restart_child/3`).
///
/// ```
/// use multiproc_core::{should_restart, ExitReason, Restart};
/// assert!(should_restart(Restart::Permanent, &ExitReason::Normal));
/// assert!(!should_restart(Restart::Transient, &ExitReason::Shutdown));
/// assert!(should_restart(Restart::Transient, &ExitReason::Exited(1)));
/// assert!(!should_restart(Restart::Temporary, &ExitReason::Signaled(9)));
/// ```
pub fn should_restart(restart: Restart, reason: &ExitReason) -> bool {
    match restart {
        Restart::Permanent => true,
        Restart::Transient => !reason.is_normal(),
        Restart::Temporary => false,
    }
}

/// What a supervisor does after a child exited and must be restarted.
///
/// Indices are positions in start order.
///
/// # Invariants
///
/// `stop` is in reverse start order and never contains the child that exited;
/// `restart` is in start order and contains no temporary child (a temporary child
/// stopped for a sibling's sake is dropped, as OTP drops it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RestartPlan {
    /// Running siblings to stop first, in this order.
    pub stop: Vec<usize>,
    /// Children to start again, in this order.
    pub restart: Vec<usize>,
    /// Temporary siblings that are stopped and then forgotten.
    pub drop: Vec<usize>,
}

/// Plans the restart of child `failed` among children whose restart types are
/// `restarts` (in start order), by `strategy`.
///
/// ```
/// use multiproc_core::{plan_restart, Restart, Strategy};
/// let kids = [Restart::Permanent; 4];
/// let plan = plan_restart(Strategy::RestForOne, &kids, 1);
/// assert_eq!(plan.stop, vec![3, 2]);
/// assert_eq!(plan.restart, vec![1, 2, 3]);
/// ```
pub fn plan_restart(strategy: Strategy, restarts: &[Restart], failed: usize) -> RestartPlan {
    let affected: Vec<usize> = match strategy {
        Strategy::OneForOne => vec![failed],
        Strategy::OneForAll => (0..restarts.len()).collect(),
        Strategy::RestForOne => (failed..restarts.len()).collect(),
    };
    let mut plan = RestartPlan::default();
    for &i in affected.iter().rev() {
        if i != failed {
            plan.stop.push(i);
        }
    }
    for &i in &affected {
        if restarts[i] == Restart::Temporary {
            if i != failed {
                plan.drop.push(i);
            }
        } else {
            plan.restart.push(i);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use Restart::*;

    #[test]
    fn restart_type_by_exit_reason() {
        let reasons = [
            ExitReason::Normal,
            ExitReason::Shutdown,
            ExitReason::Exited(1),
            ExitReason::Signaled(9),
            ExitReason::Killed,
            ExitReason::Panicked {
                message: "m".into(),
                location: None,
            },
            ExitReason::Failed {
                message: "m".into(),
            },
        ];
        // (restart type, expected decision per reason above)
        let table: [(Restart, [bool; 7]); 3] = [
            (Permanent, [true, true, true, true, true, true, true]),
            (Transient, [false, false, true, true, true, true, true]),
            (Temporary, [false, false, false, false, false, false, false]),
        ];
        for (restart, want) in table {
            for (reason, want) in reasons.iter().zip(want) {
                assert_eq!(
                    should_restart(restart, reason),
                    want,
                    "{restart:?} {reason:?}"
                );
            }
        }
    }

    #[test]
    fn plans_by_strategy() {
        let kids = [Permanent, Transient, Temporary, Permanent];
        let cases = [
            (Strategy::OneForOne, 1, vec![], vec![1], vec![]),
            (
                Strategy::OneForAll,
                1,
                vec![3, 2, 0],
                vec![0, 1, 3],
                vec![2],
            ),
            (Strategy::RestForOne, 1, vec![3, 2], vec![1, 3], vec![2]),
            (Strategy::RestForOne, 3, vec![], vec![3], vec![]),
            (
                Strategy::OneForAll,
                0,
                vec![3, 2, 1],
                vec![0, 1, 3],
                vec![2],
            ),
        ];
        for (strategy, failed, stop, restart, drop) in cases {
            let plan = plan_restart(strategy, &kids, failed);
            assert_eq!(
                plan,
                RestartPlan {
                    stop,
                    restart,
                    drop
                },
                "{strategy:?} failed={failed}"
            );
        }
    }
}
