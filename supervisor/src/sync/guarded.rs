//! A primitive whose state is plain data in shared memory under a lock word (a
//! semaphore, a recursive lock), with a word its waiters sleep on.

#![allow(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::Ordering;

use multiproc_core::sem_state::{RLockState, SemState};

use super::SyncError;
use super::host::Watched;
use super::lock::LockWord;
use super::park::{Attempt, Park};
use crate::runtime::shm::{self, Segment};

const GUARDED_LOCK_AT: usize = 64;
/// The word waiters sleep on, and the mark that some may.
const GUARDED_SEQ_AT: usize = 128;
const GUARDED_ASLEEP_AT: usize = 132;
const GUARDED_STATE_AT: usize = 192;
/// Bytes of a guarded primitive's segment.
pub(crate) const fn guarded_len<S>() -> usize {
    GUARDED_STATE_AT + std::mem::size_of::<S>()
}

/// A state that a process's death changes (it held something).
pub(crate) trait Held: Copy + Send + 'static {
    /// Process `pid` died: whether that freed something (wake the waiters).
    fn process_died(&mut self, pid: u32) -> bool;
}

impl Held for SemState {
    fn process_died(&mut self, pid: u32) -> bool {
        SemState::process_died(self, pid) > 0
    }
}

impl Held for RLockState {
    fn process_died(&mut self, pid: u32) -> bool {
        RLockState::process_died(self, pid)
    }
}

/// A primitive in shared memory whose state is plain data under a [`LockWord`]
/// (a semaphore, a recursive lock), with a word to sleep on until it changes.
#[derive(Debug)]
pub(crate) struct Guarded<S> {
    seg: Arc<Segment>,
    lock: LockWord,
    _s: std::marker::PhantomData<fn(S) -> S>,
}

impl<S> Clone for Guarded<S> {
    fn clone(&self) -> Self {
        Guarded {
            seg: Arc::clone(&self.seg),
            lock: self.lock.clone(),
            _s: std::marker::PhantomData,
        }
    }
}

impl<S: Held> Guarded<S> {
    /// A new primitive's memory (in a segment just made), holding `state`.
    pub(crate) fn init(seg: Arc<Segment>, state: S) -> Guarded<S> {
        let mem = Guarded::new(seg);
        // SAFETY: a new segment: no other process has it yet.
        unsafe { *mem.seg.pod_mut::<S>(GUARDED_STATE_AT) = state };
        mem
    }

    pub(crate) fn new(seg: Arc<Segment>) -> Guarded<S> {
        Guarded {
            lock: LockWord::new(Arc::clone(&seg), GUARDED_LOCK_AT),
            seg,
            _s: std::marker::PhantomData,
        }
    }

    /// Runs `f` on the state under the lock; wakes the sleepers when it says so.
    pub(crate) fn locked<R>(
        &self,
        host: &multiproc_core::Identity,
        f: impl FnOnce(&mut S) -> (R, bool),
    ) -> Result<R, SyncError> {
        match self.lock.lock(None, host) {
            Ok(_) | Err(SyncError::OwnerDied) => {}
            Err(e) => return Err(e),
        }
        // SAFETY: under the primitive's lock, in every process that touches it.
        let (out, wake) = f(unsafe { self.seg.pod_mut::<S>(GUARDED_STATE_AT) });
        let wake = wake
            && self
                .seg
                .u32_at(GUARDED_ASLEEP_AT)
                .swap(0, Ordering::Relaxed)
                != 0;
        if wake {
            self.seg
                .u32_at(GUARDED_SEQ_AT)
                .fetch_add(1, Ordering::Release);
        }
        self.lock.unlock()?;
        if wake {
            shm::wake(self.seg.u32_at(GUARDED_SEQ_AT), u32::MAX);
        }
        Ok(out)
    }

    /// One try of `attempt` under the lock: its value, or (marked as a sleeper)
    /// where to sleep; once `expired`, `None`.
    pub(super) fn attempt<R>(
        &self,
        host: &multiproc_core::Identity,
        expired: bool,
        attempt: impl FnOnce(&mut S) -> Option<R>,
    ) -> Result<Attempt<Option<R>>, SyncError> {
        self.locked(host, |s| match attempt(s) {
            Some(r) => (Attempt::Ready(Some(r)), false),
            None if expired => (Attempt::Ready(None), false),
            None => {
                // Marked and read under the lock: a change after it bumps the word,
                // and the sleep returns at once.
                self.seg
                    .u32_at(GUARDED_ASLEEP_AT)
                    .store(1, Ordering::Relaxed);
                let seen = self.seg.u32_at(GUARDED_SEQ_AT).load(Ordering::Acquire);
                (
                    Attempt::Park(Park {
                        seg: Arc::clone(&self.seg),
                        at: GUARDED_SEQ_AT,
                        seen,
                    }),
                    false,
                )
            }
        })
    }

    /// Process `pid` died (the host's news): frees its lock word if it held it, and
    /// what it held of the state.
    pub(crate) fn holder_died(&self, pid: u32, host: &multiproc_core::Identity) {
        self.lock.holder_died(pid);
        let _ = self.locked(host, |s| ((), s.process_died(pid)));
    }
}

/// The host gives back what a dead process held (a semaphore's permits, a
/// recursive lock).
impl<S: Held> Watched for Guarded<S> {
    fn process_died(&self, pid: u32, host: &multiproc_core::Identity) {
        let (mem, host) = (self.clone(), host.clone());
        // Taking the primitive's lock may wait for another process.
        crate::runtime::handle().spawn_blocking(move || mem.holder_died(pid, &host));
    }
}
