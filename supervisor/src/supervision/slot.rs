//! One child's place in the supervisor: its spec, its process and state, and the
//! incarnation number that tells a current exit from a stale one.

use std::sync::atomic::{AtomicU64, Ordering};

use multiproc_core::{BackoffState, ChildSpec};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::ChildState;
use crate::process::Process;
use crate::runtime::error::CallError;

/// A child's slot.
pub(super) struct Slot {
    pub(super) spec: ChildSpec,
    pub(super) process: Option<Process>,
    pub(super) name: Option<String>,
    pub(super) identity: Option<multiproc_core::Identity>,
    pub(super) state: ChildState,
    /// Callers waiting for the child to run again (bounded by `MAX_WAITERS`).
    pub(super) waiters: Vec<oneshot::Sender<Result<multiproc_core::Identity, CallError>>>,
    pub(super) incarnation: u64,
    pub(super) backoff: BackoffState,
    pub(super) started_at: Instant,
    /// The node its process runs (or last ran) on; `None` for this host.
    pub(super) node: Option<String>,
    /// How many times it was started again.
    pub(super) restarts: u32,
    /// How its last process ended.
    pub(super) last_exit: Option<multiproc_core::ExitReason>,
}

impl Slot {
    pub(super) fn new(spec: ChildSpec) -> Slot {
        Slot {
            spec,
            process: None,
            name: None,
            identity: None,
            state: ChildState::Stopped,
            waiters: Vec::new(),
            incarnation: 0,
            backoff: BackoffState::default(),
            started_at: Instant::now(),
            node: None,
            restarts: 0,
            last_exit: None,
        }
    }
}

/// Incarnation numbers, unique in this process.
static INCARNATIONS: AtomicU64 = AtomicU64::new(1);

pub(super) fn next_incarnation() -> u64 {
    INCARNATIONS.fetch_add(1, Ordering::Relaxed)
}

/// A number in `[0, 1)` for backoff jitter; quality matters little, so no RNG crate.
pub(super) fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(INCARNATIONS.load(Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}
