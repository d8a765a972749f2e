//! The caller's span, carried into the actor calls and pool tasks it makes, so that
//! what a callee logs shows in the root inside the span its caller was in.
//!
//! In the root, a call or pool task made inside a span (while children forward logs)
//! carries a number for that span, one per span however many calls it makes. The
//! table here maps the number to a handle of the span, which keeps the span open, so
//! its records can be parented to it, while the calls and tasks are out and until the
//! records they caused have come back: a call's records come up the same links as its
//! reply, and before it, so the reply ends the call's hold; a pool task's `DONE`
//! comes on the pool's own link, so it says how many records the worker stamped, and
//! the span is kept until that many have been replayed. The numbers are the table's
//! own, never reused, so a record that comes after its span was let go of (a task's
//! worker that died half-way through a record) is replayed without a caller, never
//! under another span.
//!
//! In a child, the number of the call or task being handled is its thread's while
//! the handler or task runs: the forwarder stamps the records of that thread's events
//! with it, and a call or task made from there carries it on.
//!
//! # Invariants
//!
//! - An entry stays while a hold ([`Carried`] with `held`) on it lives, or while fewer
//!   records than expected were replayed for it; the table keeps at most
//!   [`MAX_ENTRIES`], dropping first those that wait for records only.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::runtime::current::me;

/// Most spans kept for the calls and tasks out at once.
const MAX_ENTRIES: usize = 4096;

thread_local! {
    /// In a child: the caller's span of the call or task this thread handles.
    static INHERITED: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Records this process stamped with a caller's span (in a child).
static STAMPED: AtomicU64 = AtomicU64::new(0);

struct Entry {
    span: tracing::Span,
    /// Calls and tasks out with it.
    holds: usize,
    /// Records the tasks that came back said they stamped with it.
    expected: u64,
    /// Records replayed with it.
    seen: u64,
}

impl Entry {
    fn done(&self) -> bool {
        self.holds == 0 && self.seen >= self.expected
    }
}

#[derive(Default)]
struct Table {
    entries: HashMap<u64, Entry>,
    /// The number of each span in the table, by the subscriber's id of it (valid
    /// while the entry keeps the span open).
    by_id: HashMap<u64, u64>,
    next: u64,
}

impl Table {
    fn remove(&mut self, number: u64) {
        if let Some(entry) = self.entries.remove(&number)
            && let Some(id) = entry.span.id()
        {
            self.by_id.remove(&id.into_u64());
        }
    }
}

fn table() -> MutexGuard<'static, Table> {
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    TABLE
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// A call's or task's claim on its caller's span.
#[derive(Debug)]
pub(crate) struct Carried {
    number: u64,
    /// Whether it holds an entry of this process's table (in the root), rather than
    /// passing on a number it was handed (in a child).
    held: bool,
}

impl Carried {
    /// The span's number, for the envelope or the task's frame.
    pub(crate) fn number(&self) -> u64 {
        self.number
    }

    /// Lets go of the span once `records` more records stamped with it were replayed
    /// (those a pool task's worker said it stamped).
    pub(crate) fn release_after(mut self, records: u64) {
        self.release(records);
        self.held = false;
    }

    fn release(&self, records: u64) {
        if !self.held {
            return;
        }
        let mut t = table();
        if let Some(entry) = t.entries.get_mut(&self.number) {
            entry.holds -= 1;
            entry.expected += records;
            if entry.done() {
                t.remove(self.number);
            }
        }
    }
}

impl Clone for Carried {
    fn clone(&self) -> Self {
        if self.held
            && let Some(entry) = table().entries.get_mut(&self.number)
        {
            entry.holds += 1;
        }
        Carried {
            number: self.number,
            held: self.held,
        }
    }
}

impl Drop for Carried {
    fn drop(&mut self) {
        self.release(0);
    }
}

/// The caller's span a call or task made here now carries: in a child, the one of
/// what this thread handles; in the root, the span this thread is in, if any and if
/// children forward logs. Allocates nothing when there is none.
pub(crate) fn current() -> Option<Carried> {
    if let Some(number) = INHERITED.with(Cell::get) {
        return Some(Carried {
            number,
            held: false,
        });
    }
    if !me().identity.is_root() || super::forward_level().is_none() {
        return None;
    }
    let span = tracing::Span::current();
    let id = span.id()?.into_u64();
    let mut t = table();
    if let Some(&number) = t.by_id.get(&id)
        && let Some(entry) = t.entries.get_mut(&number)
    {
        entry.holds += 1;
        return Some(Carried { number, held: true });
    }
    if t.entries.len() >= MAX_ENTRIES {
        let waiting: Vec<u64> = t
            .entries
            .iter()
            .filter(|(_, e)| e.holds == 0)
            .map(|(n, _)| *n)
            .collect();
        for number in waiting {
            t.remove(number);
        }
        if t.entries.len() >= MAX_ENTRIES {
            return None;
        }
    }
    t.next += 1;
    let number = t.next;
    t.entries.insert(
        number,
        Entry {
            span,
            holds: 1,
            expected: 0,
            seen: 0,
        },
    );
    t.by_id.insert(id, number);
    Some(Carried { number, held: true })
}

/// In the root: the span a record stamped with `number` is replayed in, counted as
/// replayed; `None` once the span was let go of.
pub(super) fn replayed(number: u64) -> Option<tracing::Span> {
    let mut t = table();
    let entry = t.entries.get_mut(&number)?;
    entry.seen += 1;
    let span = entry.span.clone();
    if entry.done() {
        t.remove(number);
    }
    Some(span)
}

/// In a child: runs `f` as the handling of a call or task made in the caller's span
/// `number` (if any): what it logs is stamped with it, and what it calls carries it.
pub(crate) fn within<R>(number: Option<u64>, f: impl FnOnce() -> R) -> R {
    if number.is_none() {
        return f();
    }
    let outer = INHERITED.with(|c| c.replace(number));
    let out = f();
    INHERITED.with(|c| c.set(outer));
    out
}

/// In a child: the number to stamp a record of this thread with, counted as stamped.
pub(super) fn stamp() -> Option<u64> {
    let number = INHERITED.with(Cell::get)?;
    STAMPED.fetch_add(1, Ordering::Relaxed);
    Some(number)
}

/// How many records this process stamped so far.
pub(crate) fn stamped() -> u64 {
    STAMPED.load(Ordering::Relaxed)
}

/// How many spans are kept for calls and tasks (a test's look at the table).
#[cfg(test)]
fn kept() -> usize {
    table().entries.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_passes_on_what_it_handles_and_stamps_with_it() {
        assert!(stamp().is_none());
        within(Some(7), || {
            assert_eq!(current().map(|c| c.number()), Some(7));
            let before = stamped();
            assert_eq!(stamp(), Some(7));
            assert_eq!(stamped(), before + 1);
        });
        assert!(INHERITED.with(Cell::get).is_none());
        // A number passed on holds nothing here.
        let passed = Carried {
            number: 7,
            held: false,
        };
        drop(passed.clone());
        assert_eq!(kept(), 0);
    }
}
