//! Primitives whose state is in shared memory: every process that uses one maps its
//! segment and works on it directly, with no message when nobody has to wait. The
//! host keeps what memory cannot: it watches the processes that mapped the segment
//! and clears what a dead one held (see `host::process_died`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use multiproc_core::lockword::{self, Try};

use super::SyncError;
use crate::shm::{self, Segment};

/// Bytes of a lock's segment: its header and its word, each on a cache line.
pub(crate) const LOCK_LEN: usize = 128;
/// Where a segment keeps its magic number and the secret of its handles.
const MAGIC_AT: usize = 0;
const SECRET_AT: usize = 8;
/// Where a lock keeps its word.
pub(crate) const LOCK_WORD_AT: usize = 64;
/// "mp-lock\0".
pub(crate) const LOCK_MAGIC: u64 = u64::from_le_bytes(*b"mp-lock\0");

/// How long a waiter sleeps before it looks whether the host is still there.
const HOST_CHECK: Duration = Duration::from_millis(100);
/// Turns a contended acquire spins before it sleeps: a holder on the other CPU
/// usually lets go sooner than a sleep and a wake-up take.
const SPINS: u32 = 200;

/// Writes a new segment's header.
pub(crate) fn init(seg: &Segment, magic: u64, secret: u64) {
    seg.u64_at(SECRET_AT).store(secret, Ordering::Relaxed);
    seg.u64_at(MAGIC_AT).store(magic, Ordering::Release);
}

/// Whether `seg` is a segment of kind `magic` for handles with `secret`.
pub(crate) fn genuine(seg: &Segment, magic: u64, secret: u64) -> bool {
    seg.len() >= LOCK_LEN
        && seg.u64_at(MAGIC_AT).load(Ordering::Acquire) == magic
        && seg.u64_at(SECRET_AT).load(Ordering::Relaxed) == secret
}

/// A lock word in a mapped segment.
#[derive(Debug, Clone)]
pub(crate) struct LockWord {
    seg: Arc<Segment>,
    at: usize,
}

impl LockWord {
    pub(crate) fn new(seg: Arc<Segment>, at: usize) -> LockWord {
        LockWord { seg, at }
    }

    fn word(&self) -> &AtomicU32 {
        self.seg.u32_at(self.at)
    }

    /// Takes the lock at once if it is free: `Some(owner_died)`.
    pub(crate) fn try_lock(&self) -> Option<bool> {
        let word = self.word();
        let v = word.load(Ordering::Relaxed);
        match lockword::try_acquire(v, shm::my_pid(), false) {
            Try::Acquired {
                word: new,
                owner_died,
            } => word
                .compare_exchange(v, new, Ordering::Acquire, Ordering::Relaxed)
                .ok()
                .map(|_| owner_died),
            Try::Held => None,
        }
    }

    /// Takes the lock, waiting at most `timeout` (for ever: `None`): whether it was
    /// taken.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerDied`] (taken, the previous holder died holding it);
    /// [`SyncError::OwnerGone`] when the host is found gone while waiting.
    pub(crate) fn lock(
        &self,
        timeout: Option<Duration>,
        host: &multiproc_core::Identity,
    ) -> Result<bool, SyncError> {
        let taken = |owner_died| {
            if owner_died {
                Err(SyncError::OwnerDied)
            } else {
                Ok(true)
            }
        };
        for _ in 0..SPINS {
            if let Some(owner_died) = self.try_lock() {
                return taken(owner_died);
            }
            std::hint::spin_loop();
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let word = self.word();
        let me = shm::my_pid();
        let mut waited = false;
        loop {
            let v = word.load(Ordering::Relaxed);
            match lockword::try_acquire(v, me, waited) {
                Try::Acquired {
                    word: new,
                    owner_died,
                } => {
                    if word
                        .compare_exchange(v, new, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        return taken(owner_died);
                    }
                    continue;
                }
                Try::Held => {}
            }
            let marked = lockword::mark_waiting(v);
            if marked != v
                && word
                    .compare_exchange(v, marked, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            let slice = match deadline {
                None => HOST_CHECK,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(false);
                    }
                    (d - now).min(HOST_CHECK)
                }
            };
            let t0 = Instant::now();
            shm::wait(word, marked, Some(slice));
            waited = true;
            if t0.elapsed() >= slice && !shm::alive(self.seg.at().pid) {
                return Err(SyncError::OwnerGone(host.clone()));
            }
        }
    }

    /// Releases the lock (whoever holds it).
    ///
    /// # Errors
    ///
    /// [`SyncError::Misuse`] when it is not held.
    pub(crate) fn unlock(&self) -> Result<(), SyncError> {
        let word = self.word();
        let mut v = word.load(Ordering::Relaxed);
        loop {
            let (new, wake) = lockword::release(v)?;
            match word.compare_exchange(v, new, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => {
                    if wake {
                        shm::wake(word, 1);
                    }
                    return Ok(());
                }
                Err(now) => v = now,
            }
        }
    }

    /// Process `pid` died: if it held the lock, frees it for the next, who is told.
    pub(crate) fn holder_died(&self, pid: u32) {
        let word = self.word();
        let mut v = word.load(Ordering::Relaxed);
        while let Some((new, wake)) = lockword::holder_died(v, pid) {
            match word.compare_exchange(v, new, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    if wake {
                        shm::wake(word, 1);
                    }
                    return;
                }
                Err(now) => v = now,
            }
        }
    }

    /// Whether it is held now.
    pub(crate) fn is_locked(&self) -> bool {
        lockword::holder(self.word().load(Ordering::Relaxed)).is_some()
    }
}
