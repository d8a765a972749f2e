//! `Lock`: its handle, and its word in shared memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use multiproc_core::lock_word::{self, Try};

use super::far::{self, FarOp, Side};
use super::host::{State, Watched};
use super::mapped::Mapped;
use super::park::{self, Attempt, Park, took};
use super::{Guard, Release, SyncError};
use crate::runtime::shm::{self, Segment};

/// Python's `multiprocessing.Lock`: one holder; any process or thread may release
/// it. Releasing an unlocked lock is [`SyncError::Misuse`].
///
/// Its state is one word in shared memory, so taking and releasing it costs no
/// message and, when nobody waits, no system call: the word holds the holder's pid,
/// and a waiter sleeps on it (a futex). The process that created it hosts it: it
/// watches every process that uses the lock, and when the holder dies it frees the
/// lock and the next acquirer is told ([`SyncError::OwnerDied`]). A waiter that
/// finds the host gone gets [`SyncError::OwnerGone`].
///
/// On another node (a process placed with [`Process::on`](crate::Process::on) that
/// got it among its arguments) every operation travels to the process that placed
/// it, which runs it here: the same semantics, a round trip slower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    side: Side<Mapped<LockWord>>,
}

far::far_handle!(Lock, Lock, |mem| &mem.addr);

impl Lock {
    /// A new lock, hosted by this process.
    ///
    /// # Errors
    ///
    /// [`SyncError::Exhausted`] when the system has no descriptor or memory left for
    /// its shared memory (the message names the limit: `RLIMIT_NOFILE`,
    /// `vm.max_map_count`, …); [`SyncError::Memory`] when it refuses otherwise.
    ///
    /// ```
    /// multiproc_supervisor::init();
    /// let lock = multiproc_supervisor::Lock::new()?;
    /// let lock = multiproc_supervisor::blocking::Lock::from(lock);
    /// assert!(lock.acquire(false, None)?);
    /// lock.release()?;
    /// # Ok::<(), multiproc_supervisor::SyncError>(())
    /// ```
    pub fn new() -> Result<Lock, SyncError> {
        Ok(Lock {
            side: Side::Here(Mapped::create(
                "multiproc-lock",
                LOCK_LEN,
                LOCK_MAGIC,
                word_of,
                |word| State::Watched(Box::new(word.clone())),
            )?),
        })
    }

    /// The word, mapped; the first time in a process, the host is told who uses it
    /// (so that it can free the lock if this process dies holding it).
    async fn word<'a>(&self, mem: &'a Mapped<LockWord>) -> Result<&'a LockWord, SyncError> {
        mem.attached(LOCK_MAGIC, word_of).await
    }

    /// As `word`, from a thread that may block.
    fn word_blocking<'a>(&self, mem: &'a Mapped<LockWord>) -> Result<&'a LockWord, SyncError> {
        mem.attached_blocking(LOCK_MAGIC, word_of)
    }

    /// Its address at its host; `None` for a far handle.
    pub(super) fn addr(&self) -> Option<&super::Addr> {
        match &self.side {
            Side::Here(mem) => Some(&mem.addr),
            Side::Far(_) => None,
        }
    }

    /// Frees it as a dead holder's if the gateway holds it for a far process (which
    /// exited, or whose node went down): the next acquirer is told `OwnerDied`.
    pub(super) async fn holder_gone(&self) {
        if let Side::Here(mem) = &self.side
            && let Ok(word) = mem.attached(LOCK_MAGIC, word_of).await
        {
            word.holder_died(shm::my_pid());
        }
    }

    /// Acquires it (Python's `acquire(block, timeout)`): `Ok(false)` when it would
    /// block and `block` is false, or `timeout` ran out (`timeout` is ignored when
    /// `block` is false). Cancel-safe: a future dropped before it completes has not
    /// taken the lock.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerDied`] when it *was* acquired but its previous holder died
    /// holding it; [`SyncError::OwnerGone`] when its host has exited;
    /// [`SyncError::Forged`].
    pub async fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool, SyncError> {
        let mem = match &self.side {
            Side::Here(mem) => mem,
            Side::Far(far) => return far.bool(FarOp::Acquire { block, timeout }).await,
        };
        let word = self.word(mem).await?;
        park::acquire(
            block,
            || took(word.try_lock()),
            || word.lock_async(timeout, &mem.addr.owner),
        )
        .await
    }

    /// Acquires it from a thread that may block: the same as
    /// [`acquire`](Lock::acquire), without a runtime in between.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Lock::acquire).
    pub(crate) fn acquire_blocking(
        &self,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<bool, SyncError> {
        let mem = match &self.side {
            Side::Here(mem) => mem,
            Side::Far(_) => return crate::runtime::block_on(self.acquire(block, timeout)),
        };
        let word = self.word_blocking(mem)?;
        park::acquire_blocking(
            block,
            || took(word.try_lock()),
            || word.lock(timeout, &mem.addr.owner),
        )
    }

    /// Releases it.
    ///
    /// # Errors
    ///
    /// [`SyncError::Misuse`] when it is not held; [`SyncError::OwnerGone`] when this
    /// process never used it and its host has exited.
    pub async fn release(&self) -> Result<(), SyncError> {
        match &self.side {
            Side::Here(mem) => self.word(mem).await?.unlock(),
            Side::Far(far) => far.done(FarOp::Release).await,
        }
    }

    /// Releases it from a thread that may block.
    ///
    /// # Errors
    ///
    /// As [`release`](Lock::release).
    pub(crate) fn release_blocking(&self) -> Result<(), SyncError> {
        match &self.side {
            Side::Here(mem) => self.word_blocking(mem)?.unlock(),
            Side::Far(_) => crate::runtime::block_on(self.release()),
        }
    }

    /// Whether it is held now (by anyone).
    ///
    /// # Errors
    ///
    /// As [`release`](Lock::release).
    pub async fn locked(&self) -> Result<bool, SyncError> {
        match &self.side {
            Side::Here(mem) => Ok(self.word(mem).await?.is_locked()),
            Side::Far(far) => far.bool(FarOp::Locked).await,
        }
    }

    /// Acquires it for as long as the guard lives (Python's `with lock:`).
    ///
    /// # Errors
    ///
    /// As [`acquire`](Lock::acquire), except that a dead previous holder is
    /// [`Guard::owner_died`], not an error.
    pub async fn guard(&self) -> Result<Guard<'_, Self>, SyncError> {
        Guard::acquired(self, self.acquire(true, None).await)
    }

    /// As [`guard`](Lock::guard), from a thread that may block.
    ///
    /// # Errors
    ///
    /// As [`guard`](Lock::guard).
    pub(crate) fn guard_blocking(&self) -> Result<Guard<'_, Self>, SyncError> {
        Guard::acquired(self, self.acquire_blocking(true, None))
    }
}

/// A lock's word in its segment.
fn word_of(seg: std::sync::Arc<crate::runtime::shm::Segment>) -> LockWord {
    LockWord::new(seg, LOCK_WORD_AT)
}

impl Release for Lock {
    fn release_now(&self) {
        let _ = self.release_blocking();
    }
}

/// Bytes of a lock's segment: its header and its word, each on a cache line.
pub(crate) const LOCK_LEN: usize = super::mapped::MIN_LEN;
/// Where a lock keeps its word.
pub(crate) const LOCK_WORD_AT: usize = 64;
/// "mp-lock\0".
pub(crate) const LOCK_MAGIC: u64 = u64::from_le_bytes(*b"mp-lock\0");

/// Turns a contended acquire spins before it sleeps: a holder on the other CPU
/// usually lets go sooner than a sleep and a wake-up take.
const SPINS: u32 = 200;

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
        match lock_word::try_acquire(v, shm::my_pid(), false) {
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
        for _ in 0..SPINS {
            if let Some(owner_died) = self.try_lock() {
                return took(Some(owner_died));
            }
            std::hint::spin_loop();
        }
        let mut waited = false;
        park::block_until(park::deadline(timeout), host, |expired| {
            self.attempt(&mut waited, expired)
        })
    }

    /// As [`lock`](LockWord::lock), from an async task; cancel-safe (see `park`).
    pub(crate) async fn lock_async(
        &self,
        timeout: Option<Duration>,
        host: &multiproc_core::Identity,
    ) -> Result<bool, SyncError> {
        let mut waited = false;
        park::wait_until(park::deadline(timeout), host, |expired| {
            self.attempt(&mut waited, expired)
        })
        .await
    }

    /// One attempt to take the lock; else, marked as waited for, where to sleep.
    fn attempt(&self, waited: &mut bool, expired: bool) -> Result<Attempt<bool>, SyncError> {
        let word = self.word();
        let me = shm::my_pid();
        loop {
            let v = word.load(Ordering::Relaxed);
            match lock_word::try_acquire(v, me, *waited) {
                Try::Acquired {
                    word: new,
                    owner_died,
                } => {
                    if word
                        .compare_exchange(v, new, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        return took(Some(owner_died)).map(Attempt::Ready);
                    }
                    continue;
                }
                Try::Held => {}
            }
            if expired {
                return Ok(Attempt::Ready(false));
            }
            let marked = lock_word::mark_waiting(v);
            if marked != v
                && word
                    .compare_exchange(v, marked, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            // Whoever sleeps here keeps the mark on when it takes the lock: others
            // may sleep on it too.
            *waited = true;
            return Ok(Attempt::Park(Park {
                seg: Arc::clone(&self.seg),
                at: self.at,
                seen: marked,
            }));
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
            let (new, wake) = lock_word::release(v)?;
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
        while let Some((new, wake)) = lock_word::holder_died(v, pid) {
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
        lock_word::holder(self.word().load(Ordering::Relaxed)).is_some()
    }
}

/// The host frees the lock when its holder dies; a word changes at once, without
/// waiting for anyone.
impl Watched for LockWord {
    fn process_died(&self, pid: u32, _host: &multiproc_core::Identity) {
        self.holder_died(pid);
    }
}
