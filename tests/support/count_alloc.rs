//! A global allocator that counts the allocations made, in the whole process, for
//! tests that a hot path allocates nothing.
//!
//! Included with `#[path]`; a test binary installs it with `#[global_allocator]`.
//! While [`watch`] is on, the first allocation is also described (its thread, its
//! size and a backtrace), so that a failing count names what allocated.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Forwards to [`System`], counting allocations (a `realloc` counts as one).
pub(crate) struct CountAlloc;

static COUNT: AtomicU64 = AtomicU64::new(0);
static WATCHING: AtomicBool = AtomicBool::new(false);
static FIRST: Mutex<Option<String>> = Mutex::new(None);

thread_local! {
    /// Set while this thread describes an allocation: what that allocates is not
    /// described again.
    static DESCRIBING: Cell<bool> = const { Cell::new(false) };
}

fn counted(size: usize) {
    // The description's own allocations are the test's, not the path's.
    if DESCRIBING.with(Cell::get) {
        return;
    }
    COUNT.fetch_add(1, Ordering::Relaxed);
    if !WATCHING.load(Ordering::Relaxed) {
        return;
    }
    // One thread describes the first one; the others only count.
    if WATCHING
        .compare_exchange(true, false, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    DESCRIBING.with(|d| d.set(true));
    let thread = std::thread::current();
    let trace = std::backtrace::Backtrace::force_capture().to_string();
    let text = format!(
        "{size} bytes on thread {:?}:\n{}",
        thread.name().unwrap_or("(unnamed)"),
        trace.lines().take(60).collect::<Vec<_>>().join("\n")
    );
    if let Ok(mut first) = FIRST.lock() {
        *first = Some(text);
    }
    DESCRIBING.with(|d| d.set(false));
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for CountAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        counted(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        counted(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        counted(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
    }
}

/// Allocations made so far by every thread of this process.
pub(crate) fn allocations() -> u64 {
    COUNT.load(Ordering::Relaxed)
}

/// Describes the next allocation of this process, whatever thread makes it.
pub(crate) fn watch() {
    if let Ok(mut first) = FIRST.lock() {
        *first = None;
    }
    WATCHING.store(true, Ordering::Release);
}

/// Stops watching, and gives the description of the first allocation since
/// [`watch`], if one was made.
pub(crate) fn first_seen() -> Option<String> {
    WATCHING.store(false, Ordering::Release);
    FIRST.lock().ok().and_then(|mut first| first.take())
}
