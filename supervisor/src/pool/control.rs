//! `Control`: a weak line to the pool actor, which results and `imap` hold to cancel a
//! task or end the pool on SIGINT.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::actor;
use super::shared::{CLOSED, INTERRUPTED, RUNNING, Shared};

/// A weak line to the pool actor: enough to cancel a task or terminate the pool on
/// SIGINT, without keeping a dropped pool open.
#[derive(Clone)]
pub(super) struct Control {
    pub(super) shared: Arc<Shared>,
    pub(super) tx: mpsc::WeakUnboundedSender<actor::Request>,
}

impl Control {
    pub(super) fn end(&self, how: u8) {
        let _ = self
            .shared
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now == RUNNING || now == CLOSED).then_some(how)
            });
        if let Some(tx) = self.tx.upgrade() {
            let _ = tx.send(actor::Request::Terminate);
        }
    }

    /// Runs `fut`; SIGINT (in the root) terminates the pool and fails it with
    /// [`PoolError::Interrupted`] instead.
    pub(super) async fn interruptible<T>(
        &self,
        fut: impl Future<Output = T>,
        interrupted: impl FnOnce() -> T,
    ) -> T {
        let Some(mut interrupt) = crate::runtime::signals::take_interrupts() else {
            return fut.await;
        };
        tokio::select! {
            biased;
            r = fut => r,
            _ = interrupt.wait() => {
                self.end(INTERRUPTED);
                interrupted()
            }
        }
    }
}
