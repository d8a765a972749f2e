//! A semaphore kept in shared memory: its value, and which processes hold how many
//! of its permits, so that a process's death gives its permits back.
//!
//! Plain data changed under the semaphore's lock word by whoever calls; the host
//! calls [`SemState::process_died`] on a death. A process that takes a permit when
//! the table of holders is full holds it untracked: its death does not give it back.
//!
//! ```
//! use multiproc_core::sem_state::SemState;
//!
//! let mut s = SemState::new(1, true);
//! assert_eq!(s.try_acquire(41), Some(false));
//! assert_eq!(s.try_acquire(42), None);
//! // Process 41 dies holding the permit: it comes back, and the next is told.
//! assert_eq!(s.process_died(41), 1);
//! assert_eq!(s.try_acquire(42), Some(true));
//! ```

use crate::sync::Misuse;

/// Processes whose permits are tracked.
pub const HOLDERS: usize = 32;

/// How many permits one process holds.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holding {
    /// The process; 0 for a free entry.
    pub pid: u32,
    /// Its permits.
    pub count: u32,
}

/// A semaphore's state.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemState {
    /// Permits free now.
    pub value: u64,
    /// The value it was made with (a bounded semaphore's ceiling).
    pub initial: u64,
    /// Whether a release past `initial` is an error (`BoundedSemaphore`).
    pub bounded: u32,
    /// A holder died holding permits since the last acquire: the next is told.
    pub died: u32,
    /// Who holds permits.
    pub holders: [Holding; HOLDERS],
}

impl SemState {
    /// A semaphore of `value` permits.
    pub fn new(value: u64, bounded: bool) -> SemState {
        SemState {
            value,
            initial: value,
            bounded: u32::from(bounded),
            died: 0,
            holders: [Holding::default(); HOLDERS],
        }
    }

    /// Takes a permit for process `pid` if one is free: `Some(owner_died)`, where
    /// `owner_died` says a holder died holding permits since the last acquire.
    pub fn try_acquire(&mut self, pid: u32) -> Option<bool> {
        if self.value == 0 {
            return None;
        }
        self.value -= 1;
        let at = self
            .holders
            .iter()
            .position(|h| h.pid == pid)
            .or_else(|| self.holders.iter().position(|h| h.pid == 0));
        if let Some(i) = at {
            self.holders[i].pid = pid;
            self.holders[i].count += 1;
        }
        Some(std::mem::take(&mut self.died) != 0)
    }

    /// Gives a permit back, on behalf of process `pid` (any process may release, as
    /// in Python).
    ///
    /// # Errors
    ///
    /// [`Misuse::ReleasedTooManyTimes`] when a bounded semaphore would go past its
    /// value.
    pub fn release(&mut self, pid: u32) -> Result<(), Misuse> {
        if self.bounded != 0 && self.value >= self.initial {
            return Err(Misuse::ReleasedTooManyTimes);
        }
        self.value += 1;
        if let Some(h) = self.holding(pid) {
            h.count -= 1;
            if h.count == 0 {
                *h = Holding::default();
            }
        }
        Ok(())
    }

    /// Process `pid` died: its permits come back (a bounded semaphore's only up to
    /// its value); how many came back.
    pub fn process_died(&mut self, pid: u32) -> u64 {
        let Some(h) = self.holding(pid) else {
            return 0;
        };
        let n = u64::from(h.count);
        *h = Holding::default();
        self.come_back(n)
    }

    /// `n` permits that process `pid` took for others died with them (a host takes
    /// permits for processes on another node): they come back as a dead holder's
    /// (a bounded semaphore's only up to its value); how many came back.
    pub fn give_back(&mut self, pid: u32, n: u32) -> u64 {
        if let Some(h) = self.holding(pid) {
            h.count -= n.min(h.count);
            if h.count == 0 {
                *h = Holding::default();
            }
        }
        self.come_back(u64::from(n))
    }

    /// `n` permits of a dead holder come back (a bounded semaphore's only up to its
    /// value), and the next acquirer is told; how many came back.
    fn come_back(&mut self, n: u64) -> u64 {
        let back = if self.bounded != 0 {
            n.min(self.initial.saturating_sub(self.value))
        } else {
            n
        };
        self.value += back;
        if back > 0 {
            self.died = 1;
        }
        back
    }

    fn holding(&mut self, pid: u32) -> Option<&mut Holding> {
        self.holders
            .iter_mut()
            .find(|h| h.pid == pid && (pid != 0 || h.count == 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_counted_per_process() {
        let mut s = SemState::new(2, false);
        assert_eq!(s.try_acquire(7), Some(false));
        assert_eq!(s.try_acquire(7), Some(false));
        assert_eq!(s.try_acquire(8), None);
        s.release(7).unwrap();
        assert_eq!(s.value, 1);
        assert_eq!(s.process_died(7), 1, "the one it still held");
        assert_eq!(s.value, 2);
    }

    #[test]
    fn a_plain_semaphore_may_go_past_its_value() {
        let mut s = SemState::new(0, false);
        s.release(9).unwrap();
        s.release(9).unwrap();
        assert_eq!(s.value, 2);
    }

    #[test]
    fn a_bounded_semaphore_refuses_over_release() {
        let mut s = SemState::new(1, true);
        assert_eq!(s.release(9), Err(Misuse::ReleasedTooManyTimes));
        assert_eq!(s.try_acquire(9), Some(false));
        s.release(9).unwrap();
        assert_eq!(s.release(9), Err(Misuse::ReleasedTooManyTimes));
    }

    #[test]
    fn a_death_is_told_once_and_a_release_by_another_counts() {
        let mut s = SemState::new(1, true);
        assert_eq!(s.try_acquire(5), Some(false));
        // Released by process 6, which did not take it: allowed.
        s.release(6).unwrap();
        // 5 dies "holding" it: the bounded value caps what comes back.
        assert_eq!(s.process_died(5), 0);
        assert_eq!(s.try_acquire(6), Some(false));
        assert_eq!(s.process_died(6), 1);
        assert_eq!(s.try_acquire(7), Some(true));
        s.release(7).unwrap();
        assert_eq!(s.try_acquire(7), Some(false), "told once");
    }

    #[test]
    fn permits_given_back_for_others_come_back_as_a_dead_holders() {
        let mut s = SemState::new(2, true);
        assert_eq!(s.try_acquire(3), Some(false));
        assert_eq!(s.try_acquire(3), Some(false));
        assert_eq!(s.give_back(3, 1), 1);
        assert_eq!(s.try_acquire(4), Some(true), "told");
        s.release(4).unwrap();
        assert_eq!(s.give_back(3, 5), 1, "a bounded one stops at its value");
        assert_eq!(s.value, 2);
    }

    #[test]
    fn a_full_table_leaves_the_permit_untracked() {
        let mut s = SemState::new(HOLDERS as u64 + 1, false);
        for pid in 1..=HOLDERS as u32 + 1 {
            assert_eq!(s.try_acquire(pid), Some(false));
        }
        let last = HOLDERS as u32 + 1;
        assert_eq!(s.process_died(last), 0, "not tracked");
        assert_eq!(s.process_died(1), 1);
    }
}

/// A recursive lock kept in shared memory: its owner (a thread of a process) and
/// how many times it holds it.
///
/// ```
/// use multiproc_core::sem_state::RLockState;
///
/// let mut r = RLockState::default();
/// assert_eq!(r.try_acquire(7, 1), Some(false));
/// assert_eq!(r.try_acquire(7, 1), Some(false)); // recursive
/// assert_eq!(r.try_acquire(8, 1), None);
/// assert!(r.process_died(7));
/// assert_eq!(r.try_acquire(8, 1), Some(true)); // told: its holder died
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RLockState {
    /// The owner's process, 0 when free.
    pub pid: u32,
    /// The owner's thread in that process.
    pub thread: u32,
    /// How many times the owner holds it.
    pub depth: u32,
    /// Its last owner died holding it: the next acquirer is told.
    pub died: u32,
}

impl RLockState {
    /// Takes it for thread `thread` of process `pid` if it is free or already
    /// theirs: `Some(owner_died)`.
    pub fn try_acquire(&mut self, pid: u32, thread: u32) -> Option<bool> {
        if self.pid == 0 {
            self.pid = pid;
            self.thread = thread;
            self.depth = 1;
            return Some(std::mem::take(&mut self.died) != 0);
        }
        if self.pid == pid && self.thread == thread {
            self.depth += 1;
            return Some(false);
        }
        None
    }

    /// Releases it once, for its owner: whether it is free now.
    ///
    /// # Errors
    ///
    /// [`Misuse::NotOwner`] when the caller does not own it (Python's
    /// `AssertionError`), free or not.
    pub fn release(&mut self, pid: u32, thread: u32) -> Result<bool, Misuse> {
        if self.pid != pid || self.thread != thread || self.depth == 0 {
            return Err(Misuse::NotOwner);
        }
        self.depth -= 1;
        if self.depth == 0 {
            self.pid = 0;
            self.thread = 0;
            return Ok(true);
        }
        Ok(false)
    }

    /// Thread `thread` of process `pid` died (a stand-in for a process on another
    /// node): if it owned the lock, it is free, and the next is told.
    pub fn owner_died(&mut self, pid: u32, thread: u32) -> bool {
        if self.thread != thread {
            return false;
        }
        self.process_died(pid)
    }

    /// Process `pid` died: if it owned the lock, it is free, and the next is told.
    pub fn process_died(&mut self, pid: u32) -> bool {
        if self.pid != pid || pid == 0 {
            return false;
        }
        *self = RLockState {
            died: 1,
            ..RLockState::default()
        };
        true
    }
}

#[cfg(test)]
mod rlock_tests {
    use super::*;

    #[test]
    fn only_the_owning_thread_releases_and_depth_counts() {
        let mut r = RLockState::default();
        assert_eq!(r.release(1, 1), Err(Misuse::NotOwner), "free");
        assert_eq!(r.try_acquire(1, 1), Some(false));
        assert_eq!(r.try_acquire(1, 1), Some(false));
        assert_eq!(r.try_acquire(1, 2), None, "another thread");
        assert_eq!(r.release(1, 2), Err(Misuse::NotOwner));
        assert_eq!(r.release(1, 1), Ok(false));
        assert_eq!(r.release(1, 1), Ok(true));
        assert_eq!(r.try_acquire(2, 1), Some(false));
    }

    #[test]
    fn only_the_owning_thread_dies_with_it() {
        let mut r = RLockState::default();
        assert_eq!(r.try_acquire(1, 7), Some(false));
        assert!(!r.owner_died(1, 8), "another thread of the owner's process");
        assert!(r.owner_died(1, 7));
        assert_eq!(r.try_acquire(1, 8), Some(true));
    }

    #[test]
    fn a_death_of_a_non_owner_changes_nothing() {
        let mut r = RLockState::default();
        assert_eq!(r.try_acquire(1, 1), Some(false));
        assert!(!r.process_died(2));
        assert_eq!(r.try_acquire(2, 1), None);
        assert!(r.process_died(1));
        assert_eq!(r.try_acquire(2, 1), Some(true));
        assert_eq!(r.release(2, 1), Ok(true));
        assert_eq!(r.try_acquire(3, 1), Some(false), "told once");
    }
}
