//! A decider over exit reasons (beyond OTP): per child, what an exit calls for.

use serde::{Deserialize, Serialize};

use crate::ExitReason;

/// What a supervisor does about one child's exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Directive {
    /// Restart it (and its siblings, by the strategy), counting toward intensity.
    Restart,
    /// Leave it stopped.
    Stop,
    /// Give up: stop every child and end the supervisor, which escalates.
    Escalate,
}

/// A pattern over exit reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExitMatch {
    /// `Normal` or `Shutdown`.
    Normal,
    /// `Exited` with this code.
    Code(i32),
    /// `Exited` with any non-zero code.
    AnyCode,
    /// `Signaled` by this signal.
    Signal(i32),
    /// `Signaled` by any signal, or `Killed`.
    AnySignal,
    /// `Panicked`.
    Panic,
    /// `Failed` (the entry point returned an error).
    Failed,
    /// `LimitExceeded`.
    Limit,
    /// `Hung`.
    Hung,
    /// `OutOfMemory`: the kernel's OOM killer ended it.
    OutOfMemory,
    /// `NodeDown`: the node it ran on was lost.
    NodeDown,
    /// Anything.
    Any,
}

impl ExitMatch {
    /// Whether `reason` matches.
    pub fn matches(self, reason: &ExitReason) -> bool {
        match (self, reason) {
            (ExitMatch::Any, _) => true,
            (ExitMatch::Normal, r) => r.is_normal(),
            (ExitMatch::Code(c), ExitReason::Exited(code)) => c == *code,
            (ExitMatch::AnyCode, ExitReason::Exited(_)) => true,
            (ExitMatch::Signal(s), ExitReason::Signaled(sig)) => s == *sig,
            (ExitMatch::Signal(9), ExitReason::Killed | ExitReason::OutOfMemory) => true,
            (
                ExitMatch::AnySignal,
                ExitReason::Signaled(_) | ExitReason::Killed | ExitReason::OutOfMemory,
            ) => true,
            (ExitMatch::OutOfMemory, ExitReason::OutOfMemory) => true,
            (ExitMatch::Panic, ExitReason::Panicked { .. }) => true,
            (ExitMatch::Failed, ExitReason::Failed { .. }) => true,
            (ExitMatch::Limit, ExitReason::LimitExceeded { .. }) => true,
            (ExitMatch::Hung, ExitReason::Hung) => true,
            (ExitMatch::NodeDown, ExitReason::NodeDown { .. }) => true,
            _ => false,
        }
    }
}

/// Rules from exit reasons to directives; the first that matches decides, and with
/// none, the child's restart type does (OTP's rule).
///
/// ```
/// use multiproc_core::{Decider, Directive, ExitMatch, ExitReason};
/// let d = Decider::default()
///     .on(ExitMatch::Code(3), Directive::Stop)       // "bad configuration": no point retrying
///     .on(ExitMatch::Limit, Directive::Escalate);
/// assert_eq!(d.decide(&ExitReason::Exited(3)), Some(Directive::Stop));
/// assert_eq!(d.decide(&ExitReason::Exited(4)), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Decider {
    rules: Vec<(ExitMatch, Directive)>,
}

impl Decider {
    /// Adds a rule after the existing ones.
    pub fn on(mut self, pattern: ExitMatch, directive: Directive) -> Self {
        self.rules.push((pattern, directive));
        self
    }

    /// The directive of the first matching rule, if any.
    pub fn decide(&self, reason: &ExitReason) -> Option<Directive> {
        self.rules
            .iter()
            .find(|(m, _)| m.matches(reason))
            .map(|&(_, d)| d)
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limit;

    #[test]
    fn patterns_table() {
        let panic = ExitReason::Panicked {
            message: "m".into(),
            location: None,
        };
        let limit = ExitReason::LimitExceeded {
            limit: Limit::Cpu,
            signal: 24,
        };
        let cases: Vec<(ExitMatch, ExitReason, bool)> = vec![
            (ExitMatch::Normal, ExitReason::Normal, true),
            (ExitMatch::Normal, ExitReason::Shutdown, true),
            (ExitMatch::Normal, ExitReason::Exited(1), false),
            (ExitMatch::Code(3), ExitReason::Exited(3), true),
            (ExitMatch::Code(3), ExitReason::Exited(4), false),
            (ExitMatch::AnyCode, ExitReason::Exited(4), true),
            (ExitMatch::Signal(11), ExitReason::Signaled(11), true),
            (ExitMatch::Signal(9), ExitReason::Killed, true),
            (ExitMatch::AnySignal, ExitReason::Signaled(6), true),
            (ExitMatch::AnySignal, panic.clone(), false),
            (ExitMatch::Panic, panic.clone(), true),
            (
                ExitMatch::Failed,
                ExitReason::Failed {
                    message: "m".into(),
                },
                true,
            ),
            (ExitMatch::Limit, limit.clone(), true),
            (ExitMatch::Limit, ExitReason::Signaled(24), false),
            (ExitMatch::Any, ExitReason::Normal, true),
            (ExitMatch::Hung, ExitReason::Hung, true),
            (ExitMatch::Hung, ExitReason::Killed, false),
            (ExitMatch::OutOfMemory, ExitReason::OutOfMemory, true),
            (ExitMatch::OutOfMemory, ExitReason::Killed, false),
            (ExitMatch::AnySignal, ExitReason::OutOfMemory, true),
        ];
        for (pattern, reason, want) in cases {
            assert_eq!(pattern.matches(&reason), want, "{pattern:?} {reason:?}");
        }
    }

    #[test]
    fn first_matching_rule_decides() {
        let d = Decider::default()
            .on(ExitMatch::Signal(11), Directive::Escalate)
            .on(ExitMatch::AnySignal, Directive::Restart)
            .on(ExitMatch::Any, Directive::Stop);
        assert_eq!(
            d.decide(&ExitReason::Signaled(11)),
            Some(Directive::Escalate)
        );
        assert_eq!(d.decide(&ExitReason::Signaled(6)), Some(Directive::Restart));
        assert_eq!(d.decide(&ExitReason::Normal), Some(Directive::Stop));
        assert_eq!(Decider::default().decide(&ExitReason::Normal), None);
    }
}
