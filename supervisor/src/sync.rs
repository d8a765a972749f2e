//! Locks, semaphores, events and queues that every process of the tree can use, and
//! that survive the death of whoever holds them.
//!
//! A primitive lives in the process that created it, its *host*. Two kinds:
//!
//! - **In shared memory** (`Lock`, `RLock`, the semaphores, `Event`, `Queue`): every
//!   process that uses one maps its segment and works on it directly, with no
//!   message when nobody waits; waiters sleep on a word (`park`). The host only
//!   watches the processes that use it, and clears what a dead one held
//!   (`host::Watched`).
//! - **Served by the host** (`Condition`, `Barrier`): a pure state machine of
//!   `multiproc_core::sync`, fed requests that travel along the tree as `Service`
//!   envelopes (`client` asks, `host` answers, `wire` is what travels).
//!
//! Either way a handle is a plain serde value: pass it to a child as an argument,
//! or inside a message, and use it there (`refs` counts handles, so that the host
//! frees a primitive with its last one). A handle names its primitive by an id
//! *and* a random secret, so a forged or corrupted handle reaches nothing
//! (`SyncError::Forged`). When the host process is gone, every request fails with
//! `SyncError::OwnerGone`: nothing blocks for ever.

mod above;
mod barrier;
mod client;
mod condition;
mod error;
mod event;
pub(crate) mod far;
mod guard;
mod guarded;
mod host;
mod lock;
mod mapped;
mod park;
mod queue;
mod refs;
mod rlock;
mod semaphore;
mod wire;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub(crate) use above::{ABOVE, Above, ask_above};
pub use barrier::Barrier;
pub use condition::Condition;
pub use error::SyncError;
pub use event::Event;
pub use guard::{Guard, Release};
pub(crate) use host::{State, secret};
pub use lock::Lock;
pub use queue::{JoinableQueue, Queue, SimpleQueue};
pub(crate) use refs::{Addr, handles_in, note_handle};
pub use rlock::RLock;
pub use semaphore::{BoundedSemaphore, Semaphore};

/// How many primitives this process hosts, and how many handles of primitives (its
/// own or others') are alive in it. For tests of their lifetime.
pub(crate) fn __primitive_counts() -> (usize, usize) {
    (host::hosted(), refs::live_handles())
}

/// This thread's number, for owners (`RLock`) and holders.
pub(crate) fn thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static TOKEN: Cell<u64> = const { Cell::new(0) };
    }
    TOKEN.with(|t| {
        if t.get() == 0 {
            t.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        t.get()
    })
}

/// A wait time as Python takes it: `None` for ever; a negative one means 0.
pub fn timeout_secs(secs: Option<f64>) -> Option<Duration> {
    secs.map(|s| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX))
}
