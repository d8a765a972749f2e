//! What a supervisor reports: its events, why it ended, and the subscription that
//! reads them.

use std::collections::VecDeque;
use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use multiproc_core::ExitReason;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

/// How many events a slow subscriber may fall behind before it misses some.
pub(super) const EVENT_BUFFER: usize = 1024;

/// Something a supervisor did or saw, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
        /// The node it runs on ([`ChildSpec::on`](multiproc_core::ChildSpec::on));
        /// `None` for this host.
        node: Option<String>,
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
        /// The node it runs on now: with `RestartPlacement::AnyLiveNode`, maybe
        /// another than before; `None` for this host.
        node: Option<String>,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// A supervisor running on a node ([`Supervisor::on`](crate::Supervisor::on)) was
    /// lost: its process there ended before the supervisor reported its own end. When
    /// the node died or went silent, `reason` is [`ExitReason::NodeDown`].
    Lost {
        /// How the supervisor's process on the node ended, as seen from here.
        reason: ExitReason,
    },
}

/// Where a supervisor's events go: the live stream, the last [`EVENT_BUFFER`] events
/// for a subscriber that comes late, and the supervisor's end, which tells a
/// subscriber that no event will follow (the stream itself never closes while a
/// `SupervisorRef` exists).
#[derive(Debug, Clone)]
pub(super) struct Hub {
    tx: broadcast::Sender<SupervisorEvent>,
    history: Arc<Mutex<VecDeque<SupervisorEvent>>>,
    done: watch::Receiver<Option<SupervisorExit>>,
}

impl Hub {
    /// A hub for the supervisor whose end `done` reports.
    pub(super) fn new(done: watch::Receiver<Option<SupervisorExit>>) -> Hub {
        Hub {
            tx: broadcast::channel(EVENT_BUFFER).0,
            history: Arc::new(Mutex::new(VecDeque::new())),
            done,
        }
    }

    fn history(&self) -> std::sync::MutexGuard<'_, VecDeque<SupervisorEvent>> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `event` to every subscriber and keeps it for the late ones.
    pub(super) fn send(&self, event: SupervisorEvent) {
        // Under the history's lock, so that a late subscriber's copy and its live
        // stream neither miss nor repeat an event.
        let mut history = self.history();
        if history.len() == EVENT_BUFFER {
            history.pop_front();
        }
        history.push_back(event.clone());
        let _ = self.tx.send(event);
    }

    /// A subscription to the events from now on.
    pub(super) fn subscribe(&self) -> Events {
        Events {
            backlog: VecDeque::new(),
            rx: self.tx.subscribe(),
            done: self.done.clone(),
        }
    }

    /// A subscription to every event kept (the last [`EVENT_BUFFER`]), then the live
    /// ones.
    pub(super) fn replay(&self) -> Events {
        let history = self.history();
        Events {
            backlog: history.clone(),
            rx: self.tx.subscribe(),
            done: self.done.clone(),
        }
    }
}

/// A subscription to a supervisor's events, in order.
///
/// Taken from a [`Supervisor`](crate::Supervisor) before it starts, or from a running
/// [`SupervisorRef`](crate::SupervisorRef) (`events()` from now on,
/// `events_from_start()` with what happened before). Once the supervisor has ended and
/// its last event (`ShutDown`) was read, every read returns at once: `None`, or
/// `Disconnected`. `multiproc::blocking::Events` is the same subscription, read by
/// blocking (`Events::from` converts either way).
#[derive(Debug)]
pub struct Events {
    backlog: VecDeque<SupervisorEvent>,
    rx: broadcast::Receiver<SupervisorEvent>,
    done: watch::Receiver<Option<SupervisorExit>>,
}

impl Events {
    /// Whether the supervisor has ended (or never will start): after its end, no
    /// event is sent.
    fn ended(&self) -> bool {
        self.done.borrow().is_some() || self.done.has_changed().is_err()
    }

    /// The next event already sent, if any; `Err(Disconnected)` once none will come.
    pub fn try_recv(&mut self) -> Result<SupervisorEvent, TryRecvError> {
        if let Some(event) = self.backlog.pop_front() {
            return Ok(event);
        }
        // Every event is sent before the end is: read the end first, then the stream,
        // and an ended supervisor's last events are still read.
        let ended = self.ended();
        loop {
            return match self.rx.try_recv() {
                Ok(event) => Ok(event),
                Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                Err(broadcast::error::TryRecvError::Closed) => Err(TryRecvError::Disconnected),
                Err(broadcast::error::TryRecvError::Empty) if ended => {
                    Err(TryRecvError::Disconnected)
                }
                Err(broadcast::error::TryRecvError::Empty) => Err(TryRecvError::Empty),
            };
        }
    }

    /// The next event, or `None` once the supervisor has ended and every event was
    /// read. A subscriber that fell more than 1024 events behind skips the oldest.
    pub async fn next(&mut self) -> Option<SupervisorEvent> {
        loop {
            match self.try_recv() {
                Ok(event) => return Some(event),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
            tokio::select! {
                got = self.rx.recv() => match got {
                    Ok(event) => return Some(event),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                // The end (or the supervisor's state dropped unstarted): look again.
                _ = self.done.changed() => {}
            }
        }
    }

    /// The next event, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout` when none came in time; `Disconnected` once the supervisor has ended
    /// and every event was read.
    pub async fn recv_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<SupervisorEvent, RecvTimeoutError> {
        // The timer is the process runtime's, so that any executor can await this.
        let sleep = {
            let _runtime = crate::runtime::handle().enter();
            tokio::time::sleep(timeout)
        };
        tokio::select! {
            got = self.next() => got.ok_or(RecvTimeoutError::Disconnected),
            () = sleep => Err(RecvTimeoutError::Timeout),
        }
    }
}
