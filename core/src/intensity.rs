//! Restart intensity: at most N restarts within T, or the supervisor gives up (OTP's
//! `add_restart/1`). Pure: the caller passes the time.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::SpecError;

/// At most `max_restarts` restarts within `within`.
///
/// The default is 3 restarts in 5 seconds, Elixir's default. OTP's is 1 in 5 s, which
/// gives up on the second crash of any child within five seconds; for OS processes,
/// where a crash is often one bad input among many, three lets a worker survive a short
/// burst while a real restart loop still escalates within seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartIntensity {
    /// How many restarts are allowed in the window.
    pub max_restarts: u32,
    /// The window.
    pub within: Duration,
}

impl Default for RestartIntensity {
    fn default() -> Self {
        RestartIntensity {
            max_restarts: 3,
            within: Duration::from_secs(5),
        }
    }
}

impl RestartIntensity {
    /// Checks the period is not zero.
    ///
    /// # Errors
    ///
    /// [`SpecError::ZeroPeriod`].
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.within.is_zero() {
            return Err(SpecError::ZeroPeriod(self.within));
        }
        Ok(())
    }
}

/// Restarts were more frequent than the supervisor's intensity allows: the exit that
/// asked for one more was refused (OTP's `reached_max_restart_intensity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "{restarts} restarts within {within:?} already, the most allowed ({max}); one more was refused"
)]
pub struct IntensityExceeded {
    /// Restarts made within the window (attempts that failed included), not counting
    /// the one refused: with OTP's `intensity => 1`, the second crash within the
    /// period is refused after one restart, and this is 1.
    pub restarts: usize,
    /// The most allowed.
    pub max: u32,
    /// The window.
    pub within: Duration,
}

/// The restarts of the last `within`, as timestamps the caller supplies.
///
/// ```
/// use multiproc_core::{RestartIntensity, RestartWindow};
/// use std::time::Duration;
/// let at = Duration::from_millis;
/// let limit = RestartIntensity { max_restarts: 2, within: Duration::from_secs(1) };
/// let mut w = RestartWindow::default();
/// assert!(w.add(limit, at(0)).is_ok());
/// assert!(w.add(limit, at(500)).is_ok());
/// assert!(w.add(limit, at(900)).is_err()); // a third within one second
/// ```
#[derive(Debug, Clone, Default)]
pub struct RestartWindow {
    stamps: VecDeque<Duration>,
}

impl RestartWindow {
    /// Records a restart at `now`.
    ///
    /// # Errors
    ///
    /// [`IntensityExceeded`] when more than `max_restarts` fall within `within`,
    /// counting this one.
    pub fn add(&mut self, limit: RestartIntensity, now: Duration) -> Result<(), IntensityExceeded> {
        self.stamps.push_back(now);
        while let Some(&oldest) = self.stamps.front() {
            if now.saturating_sub(oldest) >= limit.within {
                self.stamps.pop_front();
            } else {
                break;
            }
        }
        if self.stamps.len() > limit.max_restarts as usize {
            return Err(IntensityExceeded {
                restarts: self.stamps.len() - 1,
                max: limit.max_restarts,
                within: limit.within,
            });
        }
        Ok(())
    }

    /// Restarts counted in the current window.
    pub fn len(&self) -> usize {
        self.stamps.len()
    }

    /// Whether no restart is counted.
    pub fn is_empty(&self) -> bool {
        self.stamps.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn window_table() {
        let limit = RestartIntensity {
            max_restarts: 3,
            within: Duration::from_secs(5),
        };
        // (restart times in ms, index of the first restart that exceeds, if any)
        let cases: &[(&[u64], Option<usize>)] = &[
            (&[0, 1, 2], None),
            (&[0, 1, 2, 3], Some(3)),
            (&[0, 1000, 2000, 5000], None), // the first fell out of the window
            (&[0, 1000, 2000, 4999], Some(3)),
            (&[0, 6000, 12000, 18000, 24000], None),
        ];
        for (times, first_error) in cases {
            let mut w = RestartWindow::default();
            let got = times.iter().position(|&t| w.add(limit, ms(t)).is_err());
            assert_eq!(got, *first_error, "{times:?}");
        }
    }

    #[test]
    fn an_exceeded_intensity_counts_the_restarts_made_not_the_one_refused() {
        // OTP's default, `intensity => 1, period => 5`: the first crash restarts the
        // child; the second within the period is refused, after one restart.
        let limit = RestartIntensity {
            max_restarts: 1,
            within: Duration::from_secs(5),
        };
        let mut w = RestartWindow::default();
        assert!(w.add(limit, ms(0)).is_ok());
        let refused = w.add(limit, ms(100)).unwrap_err();
        assert_eq!(refused.restarts, 1);
        assert_eq!(refused.max, 1);
        assert_eq!(
            refused.to_string(),
            "1 restarts within 5s already, the most allowed (1); one more was refused"
        );
    }

    #[test]
    fn zero_intensity_refuses_every_restart() {
        let limit = RestartIntensity {
            max_restarts: 0,
            within: Duration::from_secs(1),
        };
        let mut w = RestartWindow::default();
        assert_eq!(
            w.add(limit, ms(0)),
            Err(IntensityExceeded {
                restarts: 0,
                max: 0,
                within: Duration::from_secs(1)
            })
        );
    }
}
