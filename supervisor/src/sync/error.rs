//! The error of the synchronization service: what can go wrong with a lock,
//! semaphore, event or queue.

use multiproc_core::{CodecError, Exhausted, Identity, RemoteError};

/// What can go wrong with a lock, semaphore, event or queue.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// Misuse, with Python's meaning: a release too many, a release by a thread that
    /// does not own an `RLock`.
    #[error(transparent)]
    Misuse(#[from] multiproc_core::sync::Misuse),
    /// The barrier is broken (Python's `BrokenBarrierError`), and why: a party's
    /// process died while it waited, a wait timed out, an `abort`, a `reset`, a failed
    /// action. It stays broken until `reset`.
    #[error("the barrier is broken: {0}")]
    BrokenBarrier(multiproc_core::sync::BarrierBroken),
    /// `task_done` called more times than items were put.
    #[error(transparent)]
    Queue(#[from] multiproc_core::queue::QueueError),
    /// Acquired, but the previous holder died holding it: what it protected may be
    /// half-updated. The caller holds the lock now (as with a robust mutex's
    /// `EOWNERDEAD`).
    #[error("acquired, but its previous holder died holding it")]
    OwnerDied,
    /// The process that hosted this primitive has exited.
    #[error("the process {0} that hosted this primitive has exited")]
    OwnerGone(Identity),
    /// The handle names no primitive of its host (forged, corrupted, or of another
    /// kind).
    #[error("this handle does not name a primitive of its host process")]
    Forged,
    /// The queue is full (a put that would not wait, or waited its timeout out).
    #[error("the queue is full")]
    Full,
    /// The queue is empty (a get that would not wait, or waited its timeout out).
    #[error("the queue is empty")]
    Empty,
    /// This handle was closed: it puts no more.
    #[error("the queue is closed")]
    Closed,
    /// The item does not encode.
    #[error("the item does not encode: {0}")]
    Encode(CodecError),
    /// The item does not decode as this queue's type; it was given back, for a
    /// consumer of the right type.
    #[error("the item does not decode: {0}")]
    Decode(CodecError),
    /// The request failed on the way.
    #[error(transparent)]
    Remote(RemoteError),
    /// The item is larger than the queue can ever hold.
    #[error("an item of {len} bytes is larger than the queue's {capacity} bytes")]
    TooLarge {
        /// The encoded item's length.
        len: usize,
        /// The queue's capacity in bytes.
        capacity: usize,
    },
    /// The system has no room for the primitive: no descriptor for its shared memory,
    /// no memory, no thread. The limit's message says which limit, its value, and how
    /// to raise it.
    #[error(transparent)]
    Exhausted(Exhausted),
    /// A handle used on another node lost its way to the primitive: the root or the
    /// node went down (`NodeError::NodeDown`) while the operation was in flight, or
    /// the root failed it.
    #[error(transparent)]
    Node(multiproc_core::NodeError),
    /// The system refused shared memory otherwise (to create or to map a segment).
    #[error("shared memory: {0}")]
    Memory(String),
}

impl From<crate::runtime::shm::MapError> for SyncError {
    /// A segment that is gone is the caller's to name; this is for creating one.
    fn from(e: crate::runtime::shm::MapError) -> SyncError {
        match e {
            crate::runtime::shm::MapError::Exhausted(x) => SyncError::Exhausted(x),
            e => SyncError::Memory(e.to_string()),
        }
    }
}

impl From<crate::runtime::error::Error> for SyncError {
    /// For a primitive that needs this process's runtime: it may not get its threads.
    fn from(e: crate::runtime::error::Error) -> SyncError {
        match e {
            crate::runtime::error::Error::Exhausted { source, .. } => SyncError::Exhausted(source),
            e => SyncError::Memory(e.to_string()),
        }
    }
}
