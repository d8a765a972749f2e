//! Misuse of a queue. The queue itself is a ring in shared memory: its layout is
//! [`crate::ring`], its rules (delivery once, `task_done`, what a dead consumer
//! gives back) are [`crate::ring_queue`].

use serde::{Deserialize, Serialize};

/// Misuse of a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum QueueError {
    /// More `task_done` calls than items (Python's `ValueError`).
    #[error("task_done() called too many times")]
    TooManyTaskDone,
}
