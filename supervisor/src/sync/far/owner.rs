//! Far threads' stand-ins at the root: each far thread that takes an `RLock` or uses
//! a condition or a barrier is a thread number of the root that no real thread has.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// A far thread: its node's token here, its process's pid there, its thread there.
type FarThread = (u64, u32, u64);

fn stand_ins() -> MutexGuard<'static, HashMap<FarThread, u32>> {
    static STAND_INS: OnceLock<Mutex<HashMap<FarThread, u32>>> = OnceLock::new();
    STAND_INS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// The first stand-in: thread numbers of real threads count up from 1
/// (`sync::thread_token`) and never come near.
const FIRST: u32 = 1 << 31;

/// The stand-in of thread `thread` of process `pid` on the node of `token`.
pub(super) fn stand_in(token: u64, pid: u32, thread: u64) -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(FIRST);
    *stand_ins()
        .entry((token, pid, thread))
        .or_insert_with(|| NEXT.fetch_add(1, Ordering::Relaxed).max(FIRST))
}

/// Forgets the stand-ins of process `pid` on the node of `token` (of every
/// process there when `pid` is `None`: the node is lost), and returns them.
pub(super) fn forget(token: u64, pid: Option<u32>) -> Vec<u32> {
    let mut gone = Vec::new();
    stand_ins().retain(|&(t, p, _), &mut s| {
        let dead = t == token && pid.is_none_or(|pid| pid == p);
        if dead {
            gone.push(s);
        }
        !dead
    });
    gone
}

/// Whether `stand_in` still stands in for thread `thread` of process `pid` on the
/// node of `token`: not if that process has ended since (its stand-ins forgotten).
pub(super) fn stands_in(token: u64, pid: u32, thread: u64, stand_in: u32) -> bool {
    stand_ins().get(&(token, pid, thread)) == Some(&stand_in)
}
