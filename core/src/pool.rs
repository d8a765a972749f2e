//! Pure pieces of the process pool: Python's chunk sizes, ordered delivery of results
//! that arrive out of order, and what to do with a task whose worker died.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};

/// Python's default `chunksize` for `Pool.map` over `len` items with `workers`
/// processes: `ceil(len / (4 * workers))`, and 0 for no items.
///
/// ```
/// use multiproc_core::default_chunksize;
/// assert_eq!(default_chunksize(10, 4), 1);
/// assert_eq!(default_chunksize(100, 4), 7);
/// assert_eq!(default_chunksize(0, 4), 0);
/// ```
pub fn default_chunksize(len: usize, workers: usize) -> usize {
    let per = workers.max(1) * 4;
    len.div_ceil(per)
}

/// The index ranges of `len` items cut into chunks of `chunksize` (the last one
/// shorter); a `chunksize` of 0 is taken as 1.
///
/// ```
/// use multiproc_core::chunks;
/// assert_eq!(chunks(5, 2), vec![0..2, 2..4, 4..5]);
/// ```
pub fn chunks(len: usize, chunksize: usize) -> Vec<Range<usize>> {
    let size = chunksize.max(1);
    (0..len)
        .step_by(size)
        .map(|start| start..(start + size).min(len))
        .collect()
}

/// Results that arrive in any order, handed out in index order (`imap`).
///
/// # Invariants
///
/// Every index from 0 up to `next` has been handed out exactly once; the buffer holds
/// only indices at or above `next`, so it never holds more than the results in flight.
///
/// ```
/// use multiproc_core::Reorder;
/// let mut r = Reorder::default();
/// r.insert(1, "b");
/// assert_eq!(r.pop(), None); // 0 is not there yet
/// r.insert(0, "a");
/// assert_eq!((r.pop(), r.pop(), r.pop()), (Some("a"), Some("b"), None));
/// ```
#[derive(Debug, Clone)]
pub struct Reorder<T> {
    next: usize,
    waiting: BTreeMap<usize, T>,
}

impl<T> Default for Reorder<T> {
    fn default() -> Self {
        Reorder {
            next: 0,
            waiting: BTreeMap::new(),
        }
    }
}

impl<T> Reorder<T> {
    /// Stores the result of item `index`. A duplicate or an index already handed out
    /// is ignored and returned.
    pub fn insert(&mut self, index: usize, value: T) -> Option<T> {
        if index < self.next || self.waiting.contains_key(&index) {
            return Some(value);
        }
        self.waiting.insert(index, value);
        None
    }

    /// The next result in index order, if it has arrived.
    pub fn pop(&mut self) -> Option<T> {
        let value = self.waiting.remove(&self.next)?;
        self.next += 1;
        Some(value)
    }

    /// How many results wait for an earlier one.
    pub fn buffered(&self) -> usize {
        self.waiting.len()
    }
}

/// What a pool does with a task whose worker died while running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// How many times a task is run again after its worker died (0: fail at once).
    pub retries: u32,
    /// After this many worker deaths in a row, the task is quarantined: it fails with
    /// its own error and is never run again, whatever `retries` says.
    pub quarantine_after: u32,
}

impl Default for RetryPolicy {
    /// No retry (the caller sees `WorkerDied`), quarantine after 3 deaths.
    fn default() -> Self {
        RetryPolicy {
            retries: 0,
            quarantine_after: 3,
        }
    }
}

/// The decision about a task whose worker died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterDeath {
    /// Run it again on another worker.
    Retry,
    /// Fail it with the worker's death.
    Fail,
    /// Fail it as a poison task, which kills every worker it runs on.
    Quarantine,
}

impl RetryPolicy {
    /// Decides for a task that has now killed `deaths` workers in a row.
    ///
    /// ```
    /// use multiproc_core::{AfterDeath, RetryPolicy};
    /// let p = RetryPolicy { retries: 5, quarantine_after: 3 };
    /// assert_eq!(p.after_death(1), AfterDeath::Retry);
    /// assert_eq!(p.after_death(3), AfterDeath::Quarantine);
    /// assert_eq!(RetryPolicy::default().after_death(1), AfterDeath::Fail);
    /// ```
    pub fn after_death(&self, deaths: u32) -> AfterDeath {
        if self.quarantine_after > 0 && deaths >= self.quarantine_after {
            AfterDeath::Quarantine
        } else if deaths <= self.retries {
            AfterDeath::Retry
        } else {
            AfterDeath::Fail
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunksize_matches_python() {
        // (len, workers, Python's divmod-based answer)
        let cases = [
            (0, 4, 0),
            (1, 4, 1),
            (10, 4, 1),
            (16, 4, 1),
            (17, 4, 2),
            (100, 4, 7),
            (1000, 2, 125),
            (5, 0, 2),
        ];
        for (len, workers, want) in cases {
            assert_eq!(
                default_chunksize(len, workers),
                want,
                "len={len} workers={workers}"
            );
        }
    }

    #[test]
    fn chunks_cover_every_index_once() {
        for len in 0..30 {
            for size in 0..7 {
                let all: Vec<usize> = chunks(len, size).into_iter().flatten().collect();
                assert_eq!(all, (0..len).collect::<Vec<_>>(), "len={len} size={size}");
            }
        }
    }

    #[test]
    fn reorder_hands_out_in_order_once() {
        let mut r = Reorder::default();
        let arrival = [3, 0, 4, 1, 2, 2, 0];
        let mut out = Vec::new();
        for i in arrival {
            r.insert(i, i);
            while let Some(v) = r.pop() {
                out.push(v);
            }
        }
        assert_eq!(out, vec![0, 1, 2, 3, 4]);
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn retry_table() {
        let policy = RetryPolicy {
            retries: 2,
            quarantine_after: 4,
        };
        let want = [
            AfterDeath::Retry,
            AfterDeath::Retry,
            AfterDeath::Fail,
            AfterDeath::Quarantine,
        ];
        for (deaths, want) in (1..=4).zip(want) {
            assert_eq!(policy.after_death(deaths), want, "deaths={deaths}");
        }
        let never = RetryPolicy {
            retries: 10,
            quarantine_after: 0,
        };
        assert_eq!(never.after_death(10), AfterDeath::Retry);
    }
}

/// Why one item of a chunk has no result, as the worker reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ItemFailure {
    /// The task panicked on it.
    Panicked {
        /// The panic message.
        message: String,
        /// Where, as `file:line:column`.
        location: Option<String>,
    },
    /// Its arguments did not decode.
    Args {
        /// Why.
        message: String,
    },
    /// Its result did not encode.
    Encode {
        /// Why.
        message: String,
    },
    /// The entry is not a pool task.
    NotATask {
        /// The entry's name.
        name: String,
    },
}
