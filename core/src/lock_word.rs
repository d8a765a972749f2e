//! The word of a lock that lives in shared memory: who holds it, whether anyone
//! sleeps on it, and whether its last holder died holding it.
//!
//! A process takes the lock by swapping its pid into the word, with no system call
//! when nobody contends; a waiter marks the word and sleeps on it (a futex), and the
//! release wakes one sleeper only when the mark is there. The pid is what makes the
//! lock robust: when a process dies, the lock's host clears the word *if that pid is
//! in it* and leaves [`DIED`], so the next acquirer is told. These are the word's
//! transitions, as pure functions: the shared-memory code applies them with
//! compare-and-swap, and the host applies [`holder_died`] on a death.
//!
//! ```
//! use multiproc_core::lock_word::{self, Try};
//!
//! let w = lock_word::FREE;
//! let Try::Acquired { word: w, owner_died } = lock_word::try_acquire(w, 41, false) else {
//!     unreachable!()
//! };
//! assert!(!owner_died);
//! assert_eq!(lock_word::holder(w), Some(41));
//! // Process 41 dies holding it: the next acquirer is told.
//! let (w, _wake) = lock_word::holder_died(w, 41).unwrap();
//! assert!(matches!(
//!     lock_word::try_acquire(w, 42, false),
//!     Try::Acquired { owner_died: true, .. }
//! ));
//! ```

use crate::sync::Misuse;

/// Nobody holds it.
pub const FREE: u32 = 0;
/// The bits that hold the holder's pid (Linux pids are below 2^22).
pub const PID_MASK: u32 = 0x3FFF_FFFF;
/// Free, and the last holder died holding it.
pub const DIED: u32 = 0x4000_0000;
/// Somebody may sleep on the word: a release must wake one.
pub const WAITERS: u32 = 0x8000_0000;

/// The pid that holds the lock.
pub fn holder(word: u32) -> Option<u32> {
    match word & PID_MASK {
        0 => None,
        pid => Some(pid),
    }
}

/// What an attempt to acquire finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Try {
    /// Free: store `word` (by compare-and-swap) to take it.
    Acquired {
        /// The word to store.
        word: u32,
        /// Whether the last holder died holding it.
        owner_died: bool,
    },
    /// Held by someone.
    Held,
}

/// Taking the lock for `me` (a pid, not 0). A waiter that has slept passes `waited`:
/// others may still sleep, so the word keeps the mark and its release wakes one
/// (a spare wake-up costs a system call; a missed one would be a hang).
pub fn try_acquire(word: u32, me: u32, waited: bool) -> Try {
    debug_assert!(me != 0 && me & !PID_MASK == 0, "a pid fits the word");
    if holder(word).is_some() {
        return Try::Held;
    }
    let mark = if waited { WAITERS } else { word & WAITERS };
    Try::Acquired {
        word: me | mark,
        owner_died: word & DIED != 0,
    }
}

/// The word a waiter sleeps on: marked, so that the release wakes it.
pub fn mark_waiting(word: u32) -> u32 {
    word | WAITERS
}

/// Releasing it (by anyone: a `Lock` may be released by another process, as in
/// Python): the word to store and whether to wake a sleeper.
///
/// # Errors
///
/// [`Misuse::ReleasedTooManyTimes`] when nobody holds it.
pub fn release(word: u32) -> Result<(u32, bool), Misuse> {
    match holder(word) {
        None => Err(Misuse::ReleasedTooManyTimes),
        Some(_) => Ok((FREE, word & WAITERS != 0)),
    }
}

/// Process `pid` died: if it held the lock, the word to store (free, with
/// [`DIED`]) and whether to wake a sleeper; `None` if it did not hold it.
pub fn holder_died(word: u32, pid: u32) -> Option<(u32, bool)> {
    if holder(word) != Some(pid) {
        return None;
    }
    Some((DIED | (word & WAITERS), word & WAITERS != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acquired(t: Try) -> (u32, bool) {
        match t {
            Try::Acquired { word, owner_died } => (word, owner_died),
            Try::Held => panic!("expected to acquire"),
        }
    }

    #[test]
    fn uncontended_acquire_and_release_need_no_wake() {
        let (w, died) = acquired(try_acquire(FREE, 7, false));
        assert_eq!((w, died), (7, false));
        assert_eq!(try_acquire(w, 8, false), Try::Held);
        assert_eq!(release(w), Ok((FREE, false)));
    }

    #[test]
    fn a_marked_word_wakes_one_on_release() {
        let w = mark_waiting(acquired(try_acquire(FREE, 7, false)).0);
        assert_eq!(holder(w), Some(7));
        assert_eq!(release(w), Ok((FREE, true)));
    }

    #[test]
    fn a_waiter_that_slept_keeps_the_mark() {
        let (w, _) = acquired(try_acquire(FREE, 9, true));
        assert_eq!(w, 9 | WAITERS);
        assert_eq!(release(w), Ok((FREE, true)));
    }

    #[test]
    fn releasing_a_free_lock_is_misuse() {
        assert_eq!(release(FREE), Err(Misuse::ReleasedTooManyTimes));
        assert_eq!(release(DIED), Err(Misuse::ReleasedTooManyTimes));
        assert_eq!(release(WAITERS), Err(Misuse::ReleasedTooManyTimes));
    }

    #[test]
    fn another_process_may_release() {
        let (w, _) = acquired(try_acquire(FREE, 7, false));
        // Release does not ask who releases: Python's Lock allows any.
        assert_eq!(release(w).map(|(w, _)| w), Ok(FREE));
    }

    #[test]
    fn a_dead_holder_frees_the_word_and_the_next_is_told() {
        let w = mark_waiting(acquired(try_acquire(FREE, 7, false)).0);
        assert_eq!(holder_died(w, 8), None, "8 did not hold it");
        let (w, wake) = holder_died(w, 7).expect("7 held it");
        assert!(wake, "a sleeper is woken to take it");
        assert_eq!(holder(w), None);
        let (w, died) = acquired(try_acquire(w, 8, true));
        assert!(died);
        assert_eq!(holder(w), Some(8));
        // The news is told once: the next holder after a release is not told.
        let (w, _) = release(w).expect("held");
        assert!(!acquired(try_acquire(w, 9, false)).1);
    }

    #[test]
    fn a_death_of_a_non_holder_changes_nothing() {
        assert_eq!(holder_died(FREE, 7), None);
        assert_eq!(holder_died(DIED, 7), None);
    }

    #[test]
    fn the_largest_pid_fits() {
        let pid = 1 << 22;
        let (w, _) = acquired(try_acquire(FREE, pid, true));
        assert_eq!(holder(w), Some(pid));
        assert!(holder_died(w, pid).is_some());
    }
}
