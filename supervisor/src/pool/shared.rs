//! What the pool's handles and its actor share without a lock: the pool's lifecycle
//! state, the next task id, and why it broke.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use multiproc_core::ExitReason;

use super::PoolError;
use super::reader::WorkerReader;

pub(super) const RUNNING: u8 = 0;
pub(super) const CLOSED: u8 = 1;
pub(super) const TERMINATED: u8 = 2;

pub(super) const INTERRUPTED: u8 = 3;
pub(super) const BROKEN: u8 = 4;

/// What the handles and the actor share.
pub(crate) struct Shared {
    pub(super) state: AtomicU8,
    pub(super) next_task: AtomicU64,
    pub(super) processes: usize,
    /// Why the pool gave up, once it has.
    pub(super) broken: std::sync::Mutex<Option<PoolError>>,
    /// Submissions sent to the actor's mailbox and not yet handled.
    pub(super) mailed: std::sync::atomic::AtomicUsize,
    /// The pool link's frame limit.
    pub(super) max_frame_len: usize,
    /// The reading ends of the live workers' links, for callers that wait.
    pub(super) readers: std::sync::Mutex<Vec<Arc<WorkerReader>>>,
}

impl Shared {
    /// Takes the answers waiting in the workers' rings: called by whoever waits for
    /// one, at each look (a blocking caller looks many times while it spins).
    pub(super) fn help(&self) {
        if let Ok(readers) = self.readers.try_lock() {
            for r in readers.iter() {
                r.help();
            }
        }
    }

    /// Takes the workers' rings over while this thread spins for answers (see
    /// `WorkerReader::hold`), until the returned guard is dropped.
    pub(super) fn hold(&self) -> Held<'_> {
        for r in self
            .readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            r.hold();
        }
        Held(self)
    }

    pub(super) fn readers_add(&self, r: &Arc<WorkerReader>) {
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(r));
    }

    pub(super) fn readers_remove(&self, r: &Arc<WorkerReader>) {
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|x| !Arc::ptr_eq(x, r));
    }

    /// The error for work refused in the current state, if any.
    pub(super) fn refusal(&self) -> Option<PoolError> {
        match self.state.load(Ordering::Acquire) {
            RUNNING => None,
            CLOSED => Some(PoolError::Closed),
            TERMINATED => Some(PoolError::Terminated),
            INTERRUPTED => Some(PoolError::Interrupted),
            _ => Some(self.broken_error()),
        }
    }

    /// The error for a task the pool failed as a whole.
    pub(super) fn ended_error(&self) -> PoolError {
        match self.state.load(Ordering::Acquire) {
            INTERRUPTED => PoolError::Interrupted,
            BROKEN => self.broken_error(),
            _ => PoolError::Terminated,
        }
    }

    pub(super) fn broken_error(&self) -> PoolError {
        self.broken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or(PoolError::Broken {
                reason: ExitReason::Normal,
            })
    }
}

/// Rings held by a spinning caller; given back to the reader tasks when dropped.
pub(super) struct Held<'a>(&'a Shared);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        for r in self
            .0
            .readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            r.release();
        }
    }
}
