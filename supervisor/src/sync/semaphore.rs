//! `Semaphore` and `BoundedSemaphore`: their handles, and their permits in shared
//! memory.

use std::time::Duration;

use multiproc_core::sem_state::SemState;

use super::far::{self, FarOp, Side};
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
        ///
        /// On another node (a process placed with [`Process::on`](crate::Process::on)
        /// that got it among its arguments) every operation travels to the process
        /// that placed it, which runs it here; the permits a far process holds come
        /// back when it exits or its node is lost.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            side: Side<Mapped<SemMem>>,
        }

        far::far_handle!($name, $name, |mem| &mem.addr);

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
                    side: Side::Here(Mapped::create(
                        "multiproc-semaphore",
                        guarded::guarded_len::<SemState>(),
                        SEM_MAGIC,
                        |seg| SemMem::init(seg, SemState::new(value as u64, $bounded)),
                        |sem| State::Watched(Box::new(sem.clone())),
                    )?),
                })
            }

            /// Its memory here; a far handle has none (its operations go before they
            /// would need it).
            fn mem(&self) -> Result<&Mapped<SemMem>, SyncError> {
                match &self.side {
                    Side::Here(mem) => Ok(mem),
                    Side::Far(_) => Err(SyncError::Forged),
                }
            }

            /// Its memory, mapped (the host told, so that it can give back this
            /// process's permits), and its host.
            async fn sem(&self) -> Result<(&SemMem, &multiproc_core::Identity), SyncError> {
                let mem = self.mem()?;
                Ok((mem.attached(SEM_MAGIC, SemMem::new).await?, &mem.addr.owner))
            }

            fn sem_blocking(&self) -> Result<(&SemMem, &multiproc_core::Identity), SyncError> {
                let mem = self.mem()?;
                Ok((mem.attached_blocking(SEM_MAGIC, SemMem::new)?, &mem.addr.owner))
            }

            /// Its address at its host; `None` for a far handle.
            pub(super) fn addr(&self) -> Option<&super::Addr> {
                match &self.side {
                    Side::Here(mem) => Some(&mem.addr),
                    Side::Far(_) => None,
                }
            }

            /// `n` permits this process took for a far process are back, as a dead
            /// holder's: that process exited, or its node was lost.
            pub(super) async fn give_back(&self, n: u32) {
                if let Ok((sem, owner)) = self.sem().await {
                    let (sem, owner) = (sem.clone(), owner.clone());
                    // Taking the state's lock word may wait for another process.
                    let _ = tokio::task::spawn_blocking(move || {
                        let me = shm::my_pid();
                        sem.locked(&owner, |s| {
                            let back = s.give_back(me, n);
                            ((), back > 0)
                        })
                    })
                    .await;
                }
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
                if let Side::Far(far) = &self.side {
                    return far.bool(FarOp::Acquire { block, timeout }).await;
                }
                let (sem, owner) = self.sem().await?;
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
                if let Side::Far(_) = &self.side {
                    return crate::runtime::block_on(self.acquire(block, timeout));
                }
                let (sem, owner) = self.sem_blocking()?;
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
                if let Side::Far(far) = &self.side {
                    return far.done(FarOp::Release).await;
                }
                let (sem, owner) = self.sem().await?;
                sem.release(owner)
            }

            /// As [`release`](Self::release), from a thread that may block.
            ///
            /// # Errors
            ///
            /// As [`release`](Self::release).
            pub(crate) fn release_blocking(&self) -> Result<(), SyncError> {
                if let Side::Far(_) = &self.side {
                    return crate::runtime::block_on(self.release());
                }
                let (sem, owner) = self.sem_blocking()?;
                sem.release(owner)
            }

            /// Its value now (Python's `get_value`).
            ///
            /// # Errors
            ///
            /// [`SyncError::OwnerGone`], [`SyncError::Forged`].
            pub async fn get_value(&self) -> Result<usize, SyncError> {
                if let Side::Far(far) = &self.side {
                    return far.count(FarOp::Value).await;
                }
                let (sem, owner) = self.sem().await?;
                Ok(sem.value(owner)? as usize)
            }

            /// As [`get_value`](Self::get_value), from a thread that may block.
            ///
            /// # Errors
            ///
            /// As [`get_value`](Self::get_value).
            pub(crate) fn get_value_blocking(&self) -> Result<usize, SyncError> {
                if let Side::Far(_) = &self.side {
                    return crate::runtime::block_on(self.get_value());
                }
                let (sem, owner) = self.sem_blocking()?;
                Ok(sem.value(owner)? as usize)
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
