//! `Condition`: a handle to a condition that its host serves (the state machine is
//! `multiproc_core::sync`'s).

use std::time::Duration;

use multiproc_core::sync::SemKind;
use serde::{Deserialize, Serialize};

use super::client::{acquired, unexpected};
use super::host::State;
use super::refs::Addr;
use super::wire::{Answer, Op};
use super::{Guard, Release, SyncError, thread_token};

/// Python's `Condition`: a lock (an `RLock` unless made with
/// [`Condition::with_lock`]) that waiters give up while they sleep. `acquire`,
/// `release` and `guard` are the lock's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    addr: Addr,
}

impl Condition {
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
        let op = Op::Acquire {
            thread: thread_token(),
            block,
        };
        let timeout = if block { timeout } else { None };
        acquired(self.addr.ask_timeout(op, timeout).await?)
    }

    /// Releases it.
    ///
    /// # Errors
    ///
    /// [`SyncError::Misuse`] (see the type), [`SyncError::OwnerGone`].
    pub async fn release(&self) -> Result<(), SyncError> {
        self.addr
            .done(Op::Release {
                thread: thread_token(),
            })
            .await
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
            addr: Addr::new(State::Condition(multiproc_core::sync::ConditionState::new(
                kind,
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
        let op = Op::CondWait {
            thread: thread_token(),
        };
        match self.addr.ask_timeout(op, timeout).await? {
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
        self.addr
            .done(Op::CondNotify {
                thread: thread_token(),
                n,
            })
            .await
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
