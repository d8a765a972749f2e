//! `Event`: its handle, and its word in shared memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::SyncError;
use super::far::{self, FarOp, Side};
use super::host::State;
use super::mapped::Mapped;
use super::park::{self, Attempt, Park};
use crate::runtime::shm::{self, Segment};

/// Python's `Event`: a flag processes wait for. It is a word in shared memory:
/// `set`, `clear` and `is_set` are one atomic operation each, and a waiter sleeps on
/// the word (a futex). A waiter that finds the process that created it gone gets
/// [`SyncError::OwnerGone`].
///
/// On another node (a process placed with [`Process::on`](crate::Process::on) that
/// got it among its arguments) every operation travels to the process that placed
/// it, which runs it here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    side: Side<Mapped<EventWord>>,
}

far::far_handle!(Event, Event, |mem| &mem.addr);

impl Event {
    /// A new event, clear, hosted by this process.
    ///
    /// # Errors
    ///
    /// As [`Lock::new`](super::Lock::new).
    pub fn new() -> Result<Event, SyncError> {
        Ok(Event {
            side: Side::Here(Mapped::create(
                "multiproc-event",
                EVENT_LEN,
                EVENT_MAGIC,
                EventWord::new,
                |_| State::Mapped,
            )?),
        })
    }

    /// Its address at its host; `None` for a far handle.
    pub(super) fn addr(&self) -> Option<&super::Addr> {
        match &self.side {
            Side::Here(mem) => Some(&mem.addr),
            Side::Far(_) => None,
        }
    }

    /// The word, mapped (an event needs no watching: nobody holds it).
    fn word(mem: &Mapped<EventWord>) -> Result<&EventWord, SyncError> {
        if let Some(w) = mem.word.get() {
            return Ok(w);
        }
        let w = mem.open(EVENT_MAGIC, EventWord::new)?;
        Ok(mem.keep(w))
    }

    /// Sets it; every waiter returns `true`.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerGone`] (mapping it after its host exited),
    /// [`SyncError::Forged`].
    pub async fn set(&self) -> Result<(), SyncError> {
        match &self.side {
            Side::Here(_) => self.set_blocking(),
            Side::Far(far) => far.done(FarOp::Set).await,
        }
    }

    /// As [`set`](Event::set), without a runtime (it never waits).
    ///
    /// # Errors
    ///
    /// As [`set`](Event::set).
    pub(crate) fn set_blocking(&self) -> Result<(), SyncError> {
        match &self.side {
            Side::Here(mem) => {
                Event::word(mem)?.set();
                Ok(())
            }
            Side::Far(_) => crate::runtime::block_on(self.set()),
        }
    }

    /// Clears it.
    ///
    /// # Errors
    ///
    /// As [`set`](Event::set).
    pub async fn clear(&self) -> Result<(), SyncError> {
        match &self.side {
            Side::Here(_) => self.clear_blocking(),
            Side::Far(far) => far.done(FarOp::Clear).await,
        }
    }

    /// As [`clear`](Event::clear), without a runtime.
    ///
    /// # Errors
    ///
    /// As [`set`](Event::set).
    pub(crate) fn clear_blocking(&self) -> Result<(), SyncError> {
        match &self.side {
            Side::Here(mem) => {
                Event::word(mem)?.clear();
                Ok(())
            }
            Side::Far(_) => crate::runtime::block_on(self.clear()),
        }
    }

    /// Whether it is set.
    ///
    /// # Errors
    ///
    /// As [`set`](Event::set).
    pub async fn is_set(&self) -> Result<bool, SyncError> {
        match &self.side {
            Side::Here(_) => self.is_set_blocking(),
            Side::Far(far) => far.bool(FarOp::IsSet).await,
        }
    }

    /// As [`is_set`](Event::is_set), without a runtime.
    ///
    /// # Errors
    ///
    /// As [`set`](Event::set).
    pub(crate) fn is_set_blocking(&self) -> Result<bool, SyncError> {
        match &self.side {
            Side::Here(mem) => Ok(Event::word(mem)?.is_set()),
            Side::Far(_) => crate::runtime::block_on(self.is_set()),
        }
    }

    /// Waits until it is set, at most `timeout`: whether it was set (Python's
    /// `wait`, which is `true` also when a `clear` followed the `set`).
    /// Cancel-safe.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerGone`] (also while waiting), [`SyncError::Forged`].
    pub async fn wait(&self, timeout: Option<Duration>) -> Result<bool, SyncError> {
        let mem = match &self.side {
            Side::Here(mem) => mem,
            Side::Far(far) => return far.bool(FarOp::Wait { timeout }).await,
        };
        let word = Event::word(mem)?;
        if word.is_set() {
            return Ok(true);
        }
        word.wait_async(timeout, &mem.addr.owner).await
    }

    /// As [`wait`](Event::wait), from a thread that may block.
    ///
    /// # Errors
    ///
    /// As [`wait`](Event::wait).
    pub(crate) fn wait_blocking(&self, timeout: Option<Duration>) -> Result<bool, SyncError> {
        match &self.side {
            Side::Here(mem) => Event::word(mem)?.wait(timeout, &mem.addr.owner),
            Side::Far(_) => crate::runtime::block_on(self.wait(timeout)),
        }
    }
}

/// "mp-event".
pub(crate) const EVENT_MAGIC: u64 = u64::from_le_bytes(*b"mp-event");
/// Bytes of an event's segment: its header and its word.
pub(crate) const EVENT_LEN: usize = 128;
const EVENT_WORD_AT: usize = 64;

/// An event's word in shared memory: the flag in bit 0, and above it a count of
/// the times it was set, so that a waiter woken by a `set` returns `true` even if a
/// `clear` came before it looked (as Python's `wait` does).
#[derive(Debug, Clone)]
pub(crate) struct EventWord {
    seg: Arc<Segment>,
}

impl EventWord {
    pub(crate) fn new(seg: Arc<Segment>) -> EventWord {
        EventWord { seg }
    }

    fn word(&self) -> &AtomicU32 {
        self.seg.u32_at(EVENT_WORD_AT)
    }

    /// Sets it and wakes every waiter.
    pub(crate) fn set(&self) {
        let word = self.word();
        let mut v = word.load(Ordering::Relaxed);
        while v & 1 == 0 {
            // A new set: the next count, flag up.
            let new = (v & !1).wrapping_add(2) | 1;
            match word.compare_exchange(v, new, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => {
                    shm::wake(word, u32::MAX);
                    return;
                }
                Err(now) => v = now,
            }
        }
    }

    /// Clears it.
    pub(crate) fn clear(&self) {
        self.word().fetch_and(!1, Ordering::Release);
    }

    /// Whether it is set.
    pub(crate) fn is_set(&self) -> bool {
        self.word().load(Ordering::Acquire) & 1 == 1
    }

    /// Waits until it is set (or was set meanwhile), at most `timeout`: whether
    /// it was.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerGone`] when its host is found gone while waiting.
    pub(crate) fn wait(
        &self,
        timeout: Option<Duration>,
        host: &multiproc_core::Identity,
    ) -> Result<bool, SyncError> {
        let seen = self.word().load(Ordering::Acquire);
        park::block_until(park::deadline(timeout), host, |expired| {
            Ok(self.wait_once(seen, expired))
        })
    }

    /// As [`wait`](EventWord::wait), from an async task.
    pub(crate) async fn wait_async(
        &self,
        timeout: Option<Duration>,
        host: &multiproc_core::Identity,
    ) -> Result<bool, SyncError> {
        let seen = self.word().load(Ordering::Acquire);
        park::wait_until(park::deadline(timeout), host, |expired| {
            Ok(self.wait_once(seen, expired))
        })
        .await
    }

    /// Set when the wait began, or set since (perhaps cleared again): over.
    fn wait_once(&self, seen: u32, expired: bool) -> Attempt<bool> {
        if seen & 1 == 1 || self.word().load(Ordering::Acquire) != seen {
            Attempt::Ready(true)
        } else if expired {
            Attempt::Ready(false)
        } else {
            Attempt::Park(Park {
                seg: Arc::clone(&self.seg),
                at: EVENT_WORD_AT,
                seen,
            })
        }
    }
}
