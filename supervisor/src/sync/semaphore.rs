//! `Semaphore` and `BoundedSemaphore`: their handles, and their permits in shared
//! memory.

use std::time::Duration;

use multiproc_core::sem_state::SemState;
use serde::{Deserialize, Serialize};

use super::guarded::{self, Guarded};
use super::host::State;
use super::mapped::Mapped;
use super::park::{self, took};
use super::{Guard, Release, SyncError};
use crate::runtime::shm;

/// "mp-semaf".
pub(crate) const SEM_MAGIC: u64 = u64::from_le_bytes(*b"mp-semaf");
/// A semaphore in shared memory.
pub(crate) type SemMem = Guarded<SemState>;

/// A semaphore whose state is in shared memory (see `SemMem`): a permit
/// that is free is taken with no message; its host watches every process that
/// uses it and gives back the permits of one that dies.
macro_rules! shared_semaphore {
    ($(#[$doc:meta])* $name:ident, $bounded:expr) => {
        $(#[$doc])*
        ///
        /// Its state is in shared memory: a free permit costs no message. The process
        /// that created it hosts it: when a process dies holding permits they come
        /// back, and the next acquirer is told ([`SyncError::OwnerDied`]).
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        pub struct $name {
            mem: Mapped<SemMem>,
        }

        impl $name {
            /// A new one of `value` permits, hosted by this process.
            ///
            /// # Errors
            ///
            /// [`SyncError::Exhausted`] when the system has no descriptor or memory
            /// left for its shared memory (the message names the limit);
            /// [`SyncError::Memory`] when it refuses otherwise.
            pub fn new(value: usize) -> Result<$name, SyncError> {
                Ok($name {
                    mem: Mapped::create(
                        "multiproc-semaphore",
                        guarded::guarded_len::<SemState>(),
                        SEM_MAGIC,
                        |seg| SemMem::init(seg, SemState::new(value as u64, $bounded)),
                        |sem| State::Watched(Box::new(sem.clone())),
                    )?,
                })
            }

            /// Its memory, mapped (the host told, so that it can give back this
            /// process's permits).
            async fn sem(&self) -> Result<&SemMem, SyncError> {
                self.mem.attached(SEM_MAGIC, SemMem::new).await
            }

            fn sem_blocking(&self) -> Result<&SemMem, SyncError> {
                self.mem.attached_blocking(SEM_MAGIC, SemMem::new)
            }

            /// Acquires a permit (Python's `acquire(block, timeout)`): `Ok(false)`
            /// when it would block and `block` is false, or `timeout` ran out.
            /// Cancel-safe: a future dropped before it completes holds no permit.
            ///
            /// # Errors
            ///
            /// [`SyncError::OwnerDied`] when it *was* acquired but a holder died
            /// holding permits since the last acquire; [`SyncError::OwnerGone`];
            /// [`SyncError::Forged`].
            pub async fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool, SyncError> {
                let sem = self.sem().await?;
                let owner = &self.mem.addr.owner;
                park::acquire(
                    block,
                    || sem.acquire(Some(Duration::ZERO), owner),
                    || sem.acquire_async(timeout, owner),
                )
                .await
            }

            /// As [`acquire`](Self::acquire), from a thread that may block.
            ///
            /// # Errors
            ///
            /// As [`acquire`](Self::acquire).
            pub(crate) fn acquire_blocking(&self, block: bool, timeout: Option<Duration>) -> Result<bool, SyncError> {
                let sem = self.sem_blocking()?;
                let owner = &self.mem.addr.owner;
                park::acquire_blocking(
                    block,
                    || sem.acquire(Some(Duration::ZERO), owner),
                    || sem.acquire(timeout, owner),
                )
            }

            /// Releases a permit (any process may).
            ///
            /// # Errors
            ///
            /// [`SyncError::Misuse`] past a bounded semaphore's value;
            /// [`SyncError::OwnerGone`].
            pub async fn release(&self) -> Result<(), SyncError> {
                self.sem().await?.release(&self.mem.addr.owner)
            }

            /// As [`release`](Self::release), from a thread that may block.
            ///
            /// # Errors
            ///
            /// As [`release`](Self::release).
            pub(crate) fn release_blocking(&self) -> Result<(), SyncError> {
                self.sem_blocking()?.release(&self.mem.addr.owner)
            }

            /// Its value now (Python's `get_value`).
            ///
            /// # Errors
            ///
            /// [`SyncError::OwnerGone`], [`SyncError::Forged`].
            pub async fn get_value(&self) -> Result<usize, SyncError> {
                Ok(self.sem().await?.value(&self.mem.addr.owner)? as usize)
            }

            /// As [`get_value`](Self::get_value), from a thread that may block.
            ///
            /// # Errors
            ///
            /// As [`get_value`](Self::get_value).
            pub(crate) fn get_value_blocking(&self) -> Result<usize, SyncError> {
                Ok(self.sem_blocking()?.value(&self.mem.addr.owner)? as usize)
            }

            /// Acquires a permit for as long as the guard lives.
            ///
            /// # Errors
            ///
            /// As [`acquire`](Self::acquire), except that a dead holder is
            /// [`Guard::owner_died`], not an error.
            pub async fn guard(&self) -> Result<Guard<'_, Self>, SyncError> {
                Guard::acquired(self, self.acquire(true, None).await)
            }

            /// As [`guard`](Self::guard), from a thread that may block.
            ///
            /// # Errors
            ///
            /// As [`guard`](Self::guard).
            pub(crate) fn guard_blocking(&self) -> Result<Guard<'_, Self>, SyncError> {
                Guard::acquired(self, self.acquire_blocking(true, None))
            }
        }

        impl Release for $name {
            fn release_now(&self) {
                let _ = self.release_blocking();
            }
        }
    };
}

shared_semaphore!(
    /// Python's `Semaphore(value)`: releases may raise the value past its start.
    Semaphore,
    false
);
shared_semaphore!(
    /// Python's `BoundedSemaphore(value)`: a release past the start value is
    /// [`SyncError::Misuse`].
    BoundedSemaphore,
    true
);

impl SemMem {
    /// Takes a permit, waiting at most `timeout`: whether it did.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerDied`] (taken; a holder died holding permits since the
    /// last acquire); [`SyncError::OwnerGone`] (found while waiting).
    pub(crate) fn acquire(
        &self,
        timeout: Option<Duration>,
        host: &multiproc_core::Identity,
    ) -> Result<bool, SyncError> {
        let me = shm::my_pid();
        took(park::block_until(
            park::deadline(timeout),
            host,
            |expired| self.attempt(host, expired, |s| s.try_acquire(me)),
        )?)
    }

    /// As [`acquire`](SemMem::acquire), from an async task; cancel-safe (see
    /// `park`).
    pub(crate) async fn acquire_async(
        &self,
        timeout: Option<Duration>,
        host: &multiproc_core::Identity,
    ) -> Result<bool, SyncError> {
        let me = shm::my_pid();
        took(
            park::wait_until(park::deadline(timeout), host, |expired| {
                self.attempt(host, expired, |s| s.try_acquire(me))
            })
            .await?,
        )
    }

    /// Gives a permit back.
    ///
    /// # Errors
    ///
    /// [`SyncError::Misuse`] past a bounded semaphore's value.
    pub(crate) fn release(&self, host: &multiproc_core::Identity) -> Result<(), SyncError> {
        let me = shm::my_pid();
        self.locked(host, |s| match s.release(me) {
            Ok(()) => (Ok(()), true),
            Err(e) => (Err(SyncError::Misuse(e)), false),
        })?
    }

    /// Permits free now.
    pub(crate) fn value(&self, host: &multiproc_core::Identity) -> Result<u64, SyncError> {
        self.locked(host, |s| (s.value, false))
    }
}
