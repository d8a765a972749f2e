//! The error of the shared-memory service.

use multiproc_core::Exhausted;

use crate::runtime::shm::MapError;
use crate::sync::SyncError;

/// What can go wrong with shared memory.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SharedMemoryError {
    /// The block no longer exists: its owner dropped it or exited before this
    /// process mapped it (Python: `FileNotFoundError`).
    #[error("the shared memory block no longer exists")]
    Gone,
    /// The handle does not name a block of this kind and size (forged, corrupted, or
    /// of another element type).
    #[error("this handle does not name a shared memory block of this kind")]
    Forged,
    /// An index or range past the end.
    #[error("index {index} is out of bounds for a length of {len}")]
    OutOfBounds {
        /// The first index past the end that was asked for.
        index: usize,
        /// The length.
        len: usize,
    },
    /// A size of 0 (Python: `ValueError`), or one that does not fit in memory.
    #[error("invalid size: {0}")]
    Size(String),
    /// The system has no room for the block (or its lock): no descriptor, no
    /// memory, no mapping left. The message names the limit, its value, and how to
    /// raise it.
    #[error(transparent)]
    Exhausted(Exhausted),
    /// The system refused the memory otherwise.
    #[error("shared memory: {0}")]
    Memory(String),
    /// The lock failed (its host is gone).
    #[error(transparent)]
    Lock(SyncError),
}

impl From<MapError> for SharedMemoryError {
    fn from(e: MapError) -> SharedMemoryError {
        match e {
            MapError::Gone => SharedMemoryError::Gone,
            MapError::Exhausted(x) => SharedMemoryError::Exhausted(x),
            MapError::Io(e) => SharedMemoryError::Memory(e.to_string()),
        }
    }
}

impl From<SyncError> for SharedMemoryError {
    fn from(e: SyncError) -> SharedMemoryError {
        match e {
            // A lock that could not be made, for want of the same room as the block.
            SyncError::Exhausted(x) => SharedMemoryError::Exhausted(x),
            e => SharedMemoryError::Lock(e),
        }
    }
}
