//! What a worker's task reports to the pool's state machine, and the way it goes:
//! at once, on the reporting task, under the state machine's lock (`actor.rs`
//! implements [`Report`]). The tasks name the state machine only through this, so
//! the launch, the reader and the node workers sit below it.

use std::sync::{Arc, Weak};

use multiproc_core::scheduler::WorkerId;
use multiproc_core::{Exhausted, ExitReason};
use tokio::sync::mpsc;

use super::channel::Chan;
use crate::process::Process;

/// What the workers' tasks report.
pub(super) enum Event {
    /// A worker started, or did not: how it ended, and the limit that refused it
    /// when the system had no room for it.
    Started(WorkerId, Result<Started, (ExitReason, Option<Exhausted>)>),
    Frames(WorkerId, Vec<Vec<u8>>),
    Exited(WorkerId, ExitReason),
}

pub(super) struct Started {
    pub(super) process: Arc<Process>,
    pub(super) pid: u32,
    /// The node it runs on; `None` for this host.
    pub(super) node: Option<String>,
    pub(super) to_worker: Outbox,
}

/// Frames for one worker: its link's writing end, or for a worker on a node, the
/// queue of the task that calls it (`remote.rs`).
pub(super) enum Outbox {
    Local(Arc<Chan>),
    Node(mpsc::UnboundedSender<Arc<Vec<u8>>>),
}

impl Outbox {
    pub(super) fn send(&self, frame: Arc<Vec<u8>>) {
        match self {
            Outbox::Local(chan) => chan.send(frame),
            Outbox::Node(tx) => {
                let _ = tx.send(frame);
            }
        }
    }
}

/// Takes a worker's event at once.
pub(super) trait Report: Send + Sync {
    /// Hands `event` on, on the calling task.
    fn report(&self, event: Event);
}

/// Where a worker's task reports: weak, since the workers' tasks must not keep the
/// pool alive.
#[derive(Clone)]
pub(super) struct Reporter(Weak<dyn Report>);

impl Reporter {
    pub(super) fn new(to: Weak<dyn Report>) -> Reporter {
        Reporter(to)
    }

    /// Hands `event` to the pool; `Err` gives it back when the pool is gone.
    pub(super) fn deliver(&self, event: Event) -> Result<(), Event> {
        match self.0.upgrade() {
            Some(pool) => {
                pool.report(event);
                Ok(())
            }
            None => Err(event),
        }
    }
}
