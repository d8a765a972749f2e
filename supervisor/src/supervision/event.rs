//! What a supervisor reports: its events, why it ended, and the subscription that
//! reads them.

use std::time::Duration;

use multiproc_core::ExitReason;
use tokio::sync::broadcast;

/// How many events a slow subscriber may fall behind before it misses some.
pub(super) const EVENT_BUFFER: usize = 1024;

/// Something a supervisor did or saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SupervisorEvent {
    /// A child started (first start, or a start through the admin API).
    ChildStarted {
        /// Its id.
        id: String,
        /// Its process name.
        name: String,
        /// Its pid.
        pid: u32,
    },
    /// A child's process ended, on its own or stopped by the supervisor.
    ChildExited {
        /// Its id.
        id: String,
        /// Why.
        reason: ExitReason,
    },
    /// A child will be started again after `delay`; meanwhile it is `Restarting`.
    Restarting {
        /// Its id.
        id: String,
        /// The backoff delay.
        delay: Duration,
    },
    /// A child was started again.
    Restarted {
        /// Its id.
        id: String,
        /// Its new process name.
        name: String,
        /// Its new pid.
        pid: u32,
    },
    /// Starting a child again failed; it will be retried.
    RestartFailed {
        /// Its id.
        id: String,
        /// Why.
        error: String,
    },
    /// Restarts came too often: the restart an exit asked for was refused, and the
    /// supervisor stops everything and exits.
    IntensityExceeded {
        /// Restarts made within the window, failed attempts included; the refused one
        /// is not counted (OTP's semantics: with `max_restarts: 1`, this is 1 when the
        /// second crash is refused).
        restarts: usize,
        /// The most allowed within the window (`intensity.max_restarts`).
        max: u32,
        /// The window.
        within: Duration,
    },
    /// The supervisor has stopped all its children and ended.
    ShutDown {
        /// Why.
        reason: SupervisorExit,
    },
}

/// Why a supervisor ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SupervisorExit {
    /// It was asked to shut down.
    Shutdown,
    /// Its children restarted more often than its intensity allows (OTP escalates
    /// this to the supervisor's own supervisor).
    IntensityExceeded,
    /// A significant child ended and the auto-shutdown policy applied.
    AutoShutdown,
    /// A child's decider said to escalate its exit.
    Escalated {
        /// The child.
        id: String,
        /// How it ended.
        reason: ExitReason,
    },
}

/// A subscription to a supervisor's events.
#[derive(Debug)]
pub struct Events {
    pub(super) rx: broadcast::Receiver<SupervisorEvent>,
}

impl Events {
    /// The next event, or `None` once the supervisor has ended and every event was
    /// read. A subscriber that fell more than 1024 events behind skips the oldest.
    pub async fn next(&mut self) -> Option<SupervisorEvent> {
        loop {
            match self.rx.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
