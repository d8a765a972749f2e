//! Waiting on a word in shared memory, from a thread that may block or from an async
//! task, with one description of the wait for both.
//!
//! A wait is a series of *attempts*: each either finishes (it took the lock, the
//! item, the permit, or the deadline passed) or says where to sleep, a [`Park`]: a
//! word and the value the attempt saw, so that a change after the attempt ends the
//! sleep at once. An attempt changes shared state only when it finishes.
//!
//! # Cancel safety
//!
//! The async driver makes every attempt on the caller's own task, inside `poll`, and
//! uses a blocking thread only to *sleep* until the word changes. Dropping the future
//! therefore can never leave an operation half done or done for nobody: the
//! abandoned sleeper takes nothing when it wakes. The drop wakes every sleeper of the
//! word, so the abandoned one returns at once, and a wake-up it may have consumed
//! (a lock's release wakes one sleeper) is passed on to the others, who look again.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use multiproc_core::Identity;

use super::SyncError;
use crate::runtime::shm::{self, Segment};

/// How long a waiter sleeps before it looks whether the host is still there.
pub(crate) const HOST_CHECK: Duration = Duration::from_millis(100);

/// Where a waiter sleeps: a word in a segment, and the value it saw there.
pub(crate) struct Park {
    pub(crate) seg: Arc<Segment>,
    pub(crate) at: usize,
    pub(crate) seen: u32,
}

impl Park {
    fn word(&self) -> &AtomicU32 {
        self.seg.u32_at(self.at)
    }

    fn changed(&self) -> bool {
        self.word().load(Ordering::Acquire) != self.seen
    }
}

/// What one attempt came to.
pub(crate) enum Attempt<R> {
    /// The wait is over, with this outcome.
    Ready(R),
    /// Sleep here, then try again.
    Park(Park),
}

fn slice(deadline: Option<Instant>) -> Duration {
    match deadline {
        None => HOST_CHECK,
        Some(d) => d.saturating_duration_since(Instant::now()).min(HOST_CHECK),
    }
}

fn expired(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// A deadline `timeout` from now (`None`: for ever).
pub(crate) fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// After a full sleep with no change: a host that is gone is an error, since nobody
/// will ever change the word.
fn host_check(
    park: &Park,
    slept: Duration,
    full: Duration,
    host: &Identity,
) -> Result<(), SyncError> {
    if !park.changed() && slept >= full && !shm::alive(park.seg.at().pid) {
        return Err(SyncError::OwnerGone(host.clone()));
    }
    Ok(())
}

/// Runs attempts until one finishes, sleeping between them, on a thread that may
/// block. `attempt(expired)` must finish once `expired` is true.
pub(crate) fn block_until<R>(
    deadline: Option<Instant>,
    host: &Identity,
    mut attempt: impl FnMut(bool) -> Result<Attempt<R>, SyncError>,
) -> Result<R, SyncError> {
    loop {
        let park = match attempt(expired(deadline))? {
            Attempt::Ready(r) => return Ok(r),
            Attempt::Park(p) => p,
        };
        let started = Instant::now();
        if crate::runtime::spin::wait(started, || park.changed().then_some(())).is_some() {
            crate::runtime::spin::record(started.elapsed());
            continue;
        }
        let full = slice(deadline);
        shm::wait(park.word(), park.seen, Some(full));
        crate::runtime::spin::record(started.elapsed());
        host_check(&park, started.elapsed(), full, host)?;
    }
}

/// As [`block_until`], from an async task: attempts run here, sleeps on a blocking
/// thread. Cancel-safe (see the module documentation).
pub(crate) async fn wait_until<R>(
    deadline: Option<Instant>,
    host: &Identity,
    mut attempt: impl FnMut(bool) -> Result<Attempt<R>, SyncError>,
) -> Result<R, SyncError> {
    loop {
        let park = match attempt(expired(deadline))? {
            Attempt::Ready(r) => return Ok(r),
            Attempt::Park(p) => p,
        };
        let full = slice(deadline);
        let started = Instant::now();
        let guard = WakeOnDrop(Some(Arc::clone(&park.seg)), park.at);
        let (seg, at, seen) = (Arc::clone(&park.seg), park.at, park.seen);
        let slept = crate::runtime::handle()
            .spawn_blocking(move || shm::wait(seg.u32_at(at), seen, Some(full)))
            .await;
        guard.disarm();
        if let Err(e) = slept {
            return Err(SyncError::Memory(format!(
                "the sleeping thread failed: {e}"
            )));
        }
        host_check(&park, started.elapsed(), full, host)?;
    }
}

/// Wakes every sleeper of a word when a wait is abandoned (see the module
/// documentation).
struct WakeOnDrop(Option<Arc<Segment>>, usize);

impl WakeOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        if let Some(seg) = self.0.take() {
            shm::wake(seg.u32_at(self.1), u32::MAX);
        }
    }
}

/// An acquire's outcome from whether one was taken (`Some`) and whether a holder
/// died since the last (`Some(true)`, taken: an error that holds it).
pub(crate) fn took(outcome: Option<bool>) -> Result<bool, SyncError> {
    match outcome {
        Some(true) => Err(SyncError::OwnerDied),
        Some(false) => Ok(true),
        None => Ok(false),
    }
}

/// The acquire of a lock or semaphore in shared memory, from an async task, written
/// once for all of them: a try that never waits (`try_now`, the fast path: no
/// message, no system call, no blocking thread), then, if the caller blocks, the
/// wait (`wait`, cancel-safe). `Ok(false)` when it would block and `block` is false.
///
/// # Errors
///
/// [`SyncError::OwnerDied`] (taken, from either step), and whatever the wait fails
/// with.
pub(crate) async fn acquire<W>(
    block: bool,
    try_now: impl FnOnce() -> Result<bool, SyncError>,
    wait: impl FnOnce() -> W,
) -> Result<bool, SyncError>
where
    W: Future<Output = Result<bool, SyncError>>,
{
    if try_now()? {
        return Ok(true);
    }
    if !block {
        return Ok(false);
    }
    wait().await
}

/// As [`acquire`], from a thread that may block: the wait tries first itself, so
/// a caller that blocks goes straight to it, and one that does not only tries.
///
/// # Errors
///
/// As [`acquire`].
pub(crate) fn acquire_blocking(
    block: bool,
    try_now: impl FnOnce() -> Result<bool, SyncError>,
    wait: impl FnOnce() -> Result<bool, SyncError>,
) -> Result<bool, SyncError> {
    if block { wait() } else { try_now() }
}
