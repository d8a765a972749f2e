//! `RLock`: its handle, and its owner and depth in shared memory.

use std::time::Duration;

use multiproc_core::sem_state::RLockState;

use super::far::{self, FarOp, Side};
use super::guarded::{self, Guarded};
use super::host::State;
use super::mapped::Mapped;
use super::park::{self, took};
use super::{Guard, Release, SyncError, thread_token};
use crate::runtime::shm;

/// "mp-rlock".
pub(crate) const RLOCK_MAGIC: u64 = u64::from_le_bytes(*b"mp-rlock");
/// A recursive lock in shared memory.
pub(crate) type RLockMem = Guarded<RLockState>;

/// Python's `RLock`: recursive, owned by one thread of one process; a release by
/// any other is [`SyncError::Misuse`].
///
/// Its state (owner and depth) is in shared memory under a lock word: taking it
/// free, or again, costs no message. The process that created it hosts it: when
/// its owner's process dies, the host frees it and the next acquirer is told
/// ([`SyncError::OwnerDied`]).
///
/// On another node (a process placed with [`Process::on`](crate::Process::on) that
/// got it among its arguments) every operation travels to the process that placed
/// it, which runs it here for the far thread: it owns the lock as a thread here
/// would, and its process's exit or its node's loss frees it as a dead owner's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RLock {
    side: Side<Mapped<RLockMem>>,
}

far::far_handle!(RLock, RLock, |mem| &mem.addr);

impl RLock {
    /// A new recursive lock, hosted by this process.
    ///
    /// # Errors
    ///
    /// As [`Lock::new`](super::Lock::new).
    pub fn new() -> Result<RLock, SyncError> {
        Ok(RLock {
            side: Side::Here(Mapped::create(
                "multiproc-rlock",
                guarded::guarded_len::<RLockState>(),
                RLOCK_MAGIC,
                |seg| RLockMem::init(seg, RLockState::default()),
                |r| State::Watched(Box::new(r.clone())),
            )?),
        })
    }

    /// Its memory and host, here; a far handle has neither (its operations go
    /// before they would need them).
    fn mem(&self) -> Result<&Mapped<RLockMem>, SyncError> {
        match &self.side {
            Side::Here(mem) => Ok(mem),
            Side::Far(_) => Err(SyncError::Forged),
        }
    }

    async fn state(&self) -> Result<(&RLockMem, &multiproc_core::Identity), SyncError> {
        let mem = self.mem()?;
        Ok((
            mem.attached(RLOCK_MAGIC, RLockMem::new).await?,
            &mem.addr.owner,
        ))
    }

    fn state_blocking(&self) -> Result<(&RLockMem, &multiproc_core::Identity), SyncError> {
        let mem = self.mem()?;
        Ok((
            mem.attached_blocking(RLOCK_MAGIC, RLockMem::new)?,
            &mem.addr.owner,
        ))
    }

    /// Its address at its host; `None` for a far handle.
    pub(super) fn addr(&self) -> Option<&super::Addr> {
        match &self.side {
            Side::Here(mem) => Some(&mem.addr),
            Side::Far(_) => None,
        }
    }

    /// This thread, as an owner (never 0).
    fn me() -> u32 {
        (thread_token() as u32).max(1)
    }

    /// Acquires it (Python's `acquire(block, timeout)`): `Ok(false)` when it would
    /// block and `block` is false, or `timeout` ran out. An async task's owner is
    /// the thread that polls it when it calls `acquire`. Cancel-safe: a future
    /// dropped before it completes has not taken the lock.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerDied`] when it *was* acquired but its previous owner died
    /// holding it; [`SyncError::OwnerGone`]; [`SyncError::Forged`].
    pub async fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool, SyncError> {
        if let Side::Far(far) = &self.side {
            return far.bool(FarOp::Acquire { block, timeout }).await;
        }
        self.acquire_for(RLock::me(), block, timeout).await
    }

    /// Acquires it for thread `me` of this process (the gateway's stand-in for a
    /// far thread).
    pub(super) async fn acquire_for(
        &self,
        me: u32,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<bool, SyncError> {
        let (state, owner) = self.state().await?;
        park::acquire(
            block,
            || state.acquire(me, Some(Duration::ZERO), owner),
            || state.acquire_async(me, timeout, owner),
        )
        .await
    }

    /// As [`acquire`](RLock::acquire), from a thread that may block.
    ///
    /// # Errors
    ///
    /// As [`acquire`](RLock::acquire).
    pub(crate) fn acquire_blocking(
        &self,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<bool, SyncError> {
        if let Side::Far(_) = &self.side {
            return crate::runtime::block_on(self.acquire(block, timeout));
        }
        let (state, owner) = self.state_blocking()?;
        let me = RLock::me();
        park::acquire_blocking(
            block,
            || state.acquire(me, Some(Duration::ZERO), owner),
            || state.acquire(me, timeout, owner),
        )
    }

    /// Releases it once.
    ///
    /// # Errors
    ///
    /// [`SyncError::Misuse`] when this thread does not own it; [`SyncError::OwnerGone`].
    pub async fn release(&self) -> Result<(), SyncError> {
        if let Side::Far(far) = &self.side {
            return far.done(FarOp::Release).await;
        }
        self.release_for(RLock::me()).await
    }

    /// Releases it once for thread `me` of this process (see
    /// [`acquire_for`](RLock::acquire_for)).
    pub(super) async fn release_for(&self, me: u32) -> Result<(), SyncError> {
        let (state, owner) = self.state().await?;
        state.release(me, owner)
    }

    /// Thread `thread` of this process, a far thread's stand-in, is gone: if it
    /// owns the lock, the lock is freed as a dead owner's.
    pub(super) async fn owner_gone(&self, thread: u32) {
        if let Ok((state, owner)) = self.state().await {
            let (state, owner) = (state.clone(), owner.clone());
            // Taking the state's lock word may wait for another process.
            let _ = tokio::task::spawn_blocking(move || {
                let me = shm::my_pid();
                state.locked(&owner, |s| ((), s.owner_died(me, thread)))
            })
            .await;
        }
    }

    /// As [`release`](RLock::release), from a thread that may block.
    ///
    /// # Errors
    ///
    /// As [`release`](RLock::release).
    pub(crate) fn release_blocking(&self) -> Result<(), SyncError> {
        if let Side::Far(_) = &self.side {
            return crate::runtime::block_on(self.release());
        }
        let (state, owner) = self.state_blocking()?;
        state.release(RLock::me(), owner)
    }

    /// Acquires it for as long as the guard lives (Python's `with rlock:`).
    ///
    /// # Errors
    ///
    /// As [`acquire`](RLock::acquire), except that a dead previous owner is
    /// [`Guard::owner_died`], not an error.
    pub async fn guard(&self) -> Result<Guard<'_, Self>, SyncError> {
        Guard::acquired(self, self.acquire(true, None).await)
    }

    /// As [`guard`](RLock::guard), from a thread that may block.
    ///
    /// # Errors
    ///
    /// As [`guard`](RLock::guard).
    pub(crate) fn guard_blocking(&self) -> Result<Guard<'_, Self>, SyncError> {
        Guard::acquired(self, self.acquire_blocking(true, None))
    }
}

impl Release for RLock {
    fn release_now(&self) {
        let _ = self.release_blocking();
    }
}

impl RLockMem {
    /// Takes it for this thread, waiting at most `timeout`: whether it did.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerDied`] (taken; its last owner died holding it);
    /// [`SyncError::OwnerGone`] (found while waiting).
    pub(crate) fn acquire(
        &self,
        thread: u32,
        timeout: Option<Duration>,
        host: &multiproc_core::Identity,
    ) -> Result<bool, SyncError> {
        let me = shm::my_pid();
        took(park::block_until(
            park::deadline(timeout),
            host,
            |expired| self.attempt(host, expired, |s| s.try_acquire(me, thread)),
        )?)
    }

    /// As [`acquire`](RLockMem::acquire), from an async task; cancel-safe (see
    /// `park`).
    pub(crate) async fn acquire_async(
        &self,
        thread: u32,
        timeout: Option<Duration>,
        host: &multiproc_core::Identity,
    ) -> Result<bool, SyncError> {
        let me = shm::my_pid();
        took(
            park::wait_until(park::deadline(timeout), host, |expired| {
                self.attempt(host, expired, |s| s.try_acquire(me, thread))
            })
            .await?,
        )
    }

    /// Releases it once, for this thread.
    ///
    /// # Errors
    ///
    /// [`SyncError::Misuse`] when this thread does not own it.
    pub(crate) fn release(
        &self,
        thread: u32,
        host: &multiproc_core::Identity,
    ) -> Result<(), SyncError> {
        let me = shm::my_pid();
        self.locked(host, |s| match s.release(me, thread) {
            Ok(free) => (Ok(()), free),
            Err(e) => (Err(SyncError::Misuse(e)), false),
        })?
    }
}
