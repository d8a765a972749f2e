//! The delay before a restart (beyond OTP): exponential, bounded, with jitter, reset
//! after a child has run steadily. Pure: the caller passes the randomness.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::SpecError;

/// How long to wait before restarting a child.
///
/// The n-th consecutive restart of a child waits `min × factor^n`, capped at `max`,
/// spread by ±`jitter` (a fraction) so that children that crashed together do not
/// restart in lockstep. A child that ran for `reset_after` before it exited starts
/// again from `min`.
///
/// The default waits 10 ms, then 20, 40, … up to 5 s, ±20 %, and resets after 10 s of
/// steady running: a crash is retried at once, a restart loop slows down long before
/// intensity (3 in 5 s by default) gives up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Backoff {
    /// The first delay.
    pub min: Duration,
    /// The longest delay.
    pub max: Duration,
    /// Growth per consecutive restart (at least 1).
    pub factor: u32,
    /// Spread, as a fraction of the delay (0 to 1).
    pub jitter: f64,
    /// How long a child must run for its next restart to start from `min` again.
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min: Duration::from_millis(10),
            max: Duration::from_secs(5),
            factor: 2,
            jitter: 0.2,
            reset_after: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// No delay at all: OTP's behaviour.
    pub const NONE: Backoff = Backoff {
        min: Duration::ZERO,
        max: Duration::ZERO,
        factor: 1,
        jitter: 0.0,
        reset_after: Duration::ZERO,
    };

    /// Checks `min <= max`, `factor >= 1` and `0 <= jitter <= 1`.
    ///
    /// # Errors
    ///
    /// [`SpecError::InvalidBackoff`] naming the bad values.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.min > self.max {
            return Err(SpecError::InvalidBackoff(format!(
                "min {:?} is above max {:?}",
                self.min, self.max
            )));
        }
        if self.factor == 0 {
            return Err(SpecError::InvalidBackoff(
                "factor 0 (it must be at least 1)".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(SpecError::InvalidBackoff(format!(
                "jitter {} (it must be between 0 and 1)",
                self.jitter
            )));
        }
        Ok(())
    }

    /// The delay before restart number `attempt` (0 for the first), with `unit` a
    /// random number in `[0, 1)`.
    ///
    /// ```
    /// use multiproc_core::Backoff;
    /// use std::time::Duration;
    /// let b = Backoff { jitter: 0.0, ..Backoff::default() };
    /// assert_eq!(b.delay(0, 0.5), Duration::from_millis(10));
    /// assert_eq!(b.delay(3, 0.5), Duration::from_millis(80));
    /// assert_eq!(b.delay(30, 0.5), Duration::from_secs(5));
    /// ```
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let growth = u64::from(self.factor)
            .checked_pow(attempt)
            .unwrap_or(u64::MAX);
        let base = u128::from(growth)
            .saturating_mul(self.min.as_nanos())
            .min(self.max.as_nanos());
        let spread = 1.0 - self.jitter + 2.0 * self.jitter * unit.clamp(0.0, 1.0);
        let nanos = (base as f64 * spread).min(self.max.as_nanos() as f64);
        Duration::from_nanos(nanos as u64)
    }
}

/// One child's consecutive restarts, for [`Backoff`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackoffState {
    attempts: u32,
}

impl BackoffState {
    /// The delay before restarting a child that ran for `ran_for`; counts the attempt.
    pub fn next_delay(&mut self, backoff: &Backoff, ran_for: Duration, unit: f64) -> Duration {
        if ran_for >= backoff.reset_after {
            self.attempts = 0;
        }
        let delay = backoff.delay(self.attempts, unit);
        self.attempts = self.attempts.saturating_add(1);
        delay
    }

    /// Consecutive restarts counted so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_cap_and_spread() {
        let b = Backoff::default();
        for attempt in 0..20 {
            let low = b.delay(attempt, 0.0);
            let high = b.delay(attempt, 0.999_999);
            assert!(low <= high, "{attempt}");
            assert!(high <= b.max, "{attempt}: {high:?}");
        }
        assert_eq!(b.delay(0, 0.0), Duration::from_millis(8));
        assert_eq!(b.delay(0, 0.5), Duration::from_millis(10));
        assert_eq!(Backoff::NONE.delay(5, 0.7), Duration::ZERO);
    }

    #[test]
    fn a_steady_run_resets_the_count() {
        let b = Backoff {
            jitter: 0.0,
            ..Backoff::default()
        };
        let mut s = BackoffState::default();
        let quick = Duration::from_millis(1);
        let delays: Vec<_> = (0..3).map(|_| s.next_delay(&b, quick, 0.5)).collect();
        assert_eq!(delays, [10, 20, 40].map(Duration::from_millis));
        assert_eq!(
            s.next_delay(&b, Duration::from_secs(11), 0.5),
            Duration::from_millis(10)
        );
        assert_eq!(s.attempts(), 1);
    }

    #[test]
    fn invalid_backoffs_are_named() {
        let inverted = Backoff {
            min: Duration::from_secs(2),
            max: Duration::from_secs(1),
            ..Backoff::default()
        };
        assert!(
            inverted
                .validate()
                .unwrap_err()
                .to_string()
                .contains("above max")
        );
        let jitter = Backoff {
            jitter: 1.5,
            ..Backoff::default()
        };
        assert!(
            jitter
                .validate()
                .unwrap_err()
                .to_string()
                .contains("jitter 1.5")
        );
        assert!(Backoff::NONE.validate().is_ok());
    }
}
