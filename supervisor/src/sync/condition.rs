//! `Condition`: a handle to a condition that its host serves (the state machine is
//! `multiproc_core::sync`'s).

use std::time::Duration;

use multiproc_core::sync::SemKind;

use super::client::{acquired, unexpected};
use super::far::{self, FarOp, Side};
use super::host::State;
use super::refs::Addr;
use super::wire::{Answer, Op};
use super::{Guard, Release, SyncError, thread_token};

/// Python's `Condition`: a lock (an `RLock` unless made with
/// [`Condition::with_lock`]) that waiters give up while they sleep. `acquire`,
/// `release` and `guard` are the lock's.
///
/// On another node (a process placed with [`Process::on`](crate::Process::on) that
/// got it among its arguments) every operation travels to the process that placed
/// it, which runs it for the far thread: the far thread holds the lock, waits and
/// notifies as a thread here does, and its process's exit or its node's loss frees
/// the lock as a dead holder's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    side: Side<Addr>,
}

far::far_handle!(Condition, Condition, |addr| addr);

impl Condition {
    /// Its address at its host; `None` for a far handle.
    pub(super) fn addr(&self) -> Option<&Addr> {
        match &self.side {
            Side::Here(addr) => Some(addr),
            Side::Far(_) => None,
        }
    }

    /// Its address, for an operation here (a far handle's go before they would
    /// need it).
    fn here(&self) -> Result<&Addr, SyncError> {
        self.addr().ok_or(SyncError::Forged)
    }

    /// Acquires it (Python's `acquire(block, timeout)`): `Ok(false)` when it
    /// would block and `block` is false, or `timeout` ran out (`timeout` is
    /// ignored when `block` is false).
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerDied`] when it *was* acquired but its previous holder
    /// died holding it; [`SyncError::OwnerGone`] when its host has exited;
    /// [`SyncError::Forged`].
    pub async fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool, SyncError> {
        if let Side::Far(far) = &self.side {
            return far.bool(FarOp::Acquire { block, timeout }).await;
        }
        self.acquire_as(thread_token(), block, timeout).await
    }

    /// As [`acquire`](Self::acquire), for `thread` of this process (the gateway's
    /// stand-in for a far thread).
    pub(super) async fn acquire_as(
        &self,
        thread: u64,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<bool, SyncError> {
        let op = Op::Acquire { thread, block };
        let timeout = if block { timeout } else { None };
        acquired(self.here()?.ask_timeout(op, timeout).await?)
    }

    /// Releases it.
    ///
    /// # Errors
    ///
    /// [`SyncError::Misuse`] (see the type), [`SyncError::OwnerGone`].
    pub async fn release(&self) -> Result<(), SyncError> {
        if let Side::Far(far) = &self.side {
            return far.done(FarOp::Release).await;
        }
        self.release_as(thread_token()).await
    }

    /// As [`release`](Self::release), for `thread` of this process.
    pub(super) async fn release_as(&self, thread: u64) -> Result<(), SyncError> {
        self.here()?.done(Op::Release { thread }).await
    }

    /// This process's `threads`, stand-ins for far threads, are gone: what they
    /// held is freed, as a dead process's, and their waits end.
    pub(super) async fn holders_gone(&self, threads: &[u64]) -> Result<(), SyncError> {
        let threads = threads.to_vec();
        self.here()?.done(Op::HoldersGone { threads }).await
    }

    /// Acquires it for as long as the guard lives (Python's `with lock:`).
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire), except that a dead previous holder is
    /// [`Guard::owner_died`], not an error.
    pub async fn guard(&self) -> Result<Guard<'_, Self>, SyncError> {
        Guard::acquired(self, self.acquire(true, None).await)
    }
}

impl Release for Condition {
    fn release_now(&self) {
        let _ = crate::runtime::block_on(self.release());
    }
}

impl Condition {
    /// A condition over a new `RLock` (Python's default), hosted by this process.
    ///
    /// # Errors
    ///
    /// [`SyncError::Exhausted`] when this process's runtime, which serves its
    /// waiters, cannot have its threads or descriptors (the message names the limit).
    pub fn new() -> Result<Condition, SyncError> {
        Condition::over(SemKind::RLock)
    }

    /// A condition over a new plain `Lock`.
    ///
    /// # Errors
    ///
    /// As [`new`](Condition::new).
    pub fn with_lock() -> Result<Condition, SyncError> {
        Condition::over(SemKind::Lock)
    }

    fn over(kind: SemKind) -> Result<Condition, SyncError> {
        crate::runtime::ensure()?;
        Ok(Condition {
            side: Side::Here(Addr::new(State::Condition(
                multiproc_core::sync::ConditionState::new(kind),
            ))),
        })
    }

    /// Gives the lock up, sleeps until notified or `timeout` runs out, and takes the
    /// lock back (at the depth it had); whether it was notified.
    ///
    /// # Errors
    ///
    /// [`SyncError::Misuse`] without the lock; [`SyncError::OwnerDied`] (notified or
    /// not, the lock is held again, but a holder died meanwhile);
    /// [`SyncError::OwnerGone`].
    pub async fn wait(&self, timeout: Option<Duration>) -> Result<bool, SyncError> {
        if let Side::Far(far) = &self.side {
            return far.bool(FarOp::Wait { timeout }).await;
        }
        self.wait_as(thread_token(), timeout).await
    }

    /// As [`wait`](Self::wait), for `thread` of this process.
    pub(super) async fn wait_as(
        &self,
        thread: u64,
        timeout: Option<Duration>,
    ) -> Result<bool, SyncError> {
        let op = Op::CondWait { thread };
        match self.here()?.ask_timeout(op, timeout).await? {
            Some(Answer::Woken {
                owner_died: true, ..
            }) => Err(SyncError::OwnerDied),
            Some(Answer::Woken { notified, .. }) => Ok(notified),
            Some(other) => Err(unexpected(other)),
            None => Err(unexpected(Answer::Cancelled(true))),
        }
    }

    /// Waits until `predicate` holds, at most `timeout` in all (Python's
    /// `wait_for`); the predicate's last value.
    ///
    /// # Errors
    ///
    /// As [`wait`](Condition::wait).
    pub async fn wait_for(
        &self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool, SyncError> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            if predicate() {
                return Ok(true);
            }
            let left = match deadline {
                Some(d) => {
                    let now = tokio::time::Instant::now();
                    if now >= d {
                        return Ok(false);
                    }
                    Some(d - now)
                }
                None => None,
            };
            self.wait(left).await?;
        }
    }

    /// Wakes up to `n` waiters (they return once they have the lock back).
    ///
    /// # Errors
    ///
    /// [`SyncError::Misuse`] without the lock; [`SyncError::OwnerGone`].
    pub async fn notify(&self, n: usize) -> Result<(), SyncError> {
        if let Side::Far(far) = &self.side {
            return far.done(FarOp::Notify { n }).await;
        }
        self.notify_as(thread_token(), n).await
    }

    /// As [`notify`](Self::notify), for `thread` of this process.
    pub(super) async fn notify_as(&self, thread: u64, n: usize) -> Result<(), SyncError> {
        self.here()?.done(Op::CondNotify { thread, n }).await
    }

    /// Wakes every waiter.
    ///
    /// # Errors
    ///
    /// As [`notify`](Condition::notify).
    pub async fn notify_all(&self) -> Result<(), SyncError> {
        self.notify(usize::MAX).await
    }
}
