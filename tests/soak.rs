//! Long-running loops: processes, pools and primitives, each repeated thousands of
//! times, with the loop process's fds, threads and RSS compared against their starting
//! values. A supervisor's restart loop runs in a pids cgroup of its own, in
//! `supervisor_soak.rs`.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;
#[path = "support/live_alloc.rs"]
mod live_alloc;

#[global_allocator]
static ALLOC: live_alloc::LiveAlloc = live_alloc::LiveAlloc;

use std::time::{Duration, Instant};

use common::usage::{BusyCpus, Usage, iterations};
use common::{TestResult, trial};
use multiproc::blocking::{
    Barrier, BoundedSemaphore, Condition, Connection, Event, Lock, Pool, Process, Queue, RLock,
    Semaphore, pipe,
};
use multiproc::{Array, StartMethod, Value};

fn noop() {}
multiproc::register!(noop);

fn square(x: u64) -> u64 {
    x * x
}
multiproc::register!(square);

fn soak(name: &str, n: usize, mut body: impl FnMut(usize) -> TestResult) -> TestResult {
    // Warm up: lazily built runtimes, spawner thread, forkserver, caches.
    for i in 0..20 {
        body(i)?;
    }
    let start = Usage::now();
    let t0 = Instant::now();
    for i in 0..n {
        body(i)?;
    }
    let elapsed = t0.elapsed();
    let end = Usage::now();
    eprintln!(
        "{name}: {n} iterations in {elapsed:?} ({:.0}/s): fds {} -> {}, threads {} -> {}, rss {} -> {} KiB",
        n as f64 / elapsed.as_secs_f64(),
        start.fds,
        end.fds,
        start.threads,
        end.threads,
        start.rss_kib,
        end.rss_kib
    );
    check!(
        end.fds <= start.fds,
        "{name}: fds grew from {} to {} over {n} iterations",
        start.fds,
        end.fds
    );
    Ok(())
}

fn process_loop() -> TestResult {
    soak("process", iterations(), |_| {
        let mut p = Process::new(noop, ());
        p.start()?;
        p.join()?;
        p.close()?;
        Ok(())
    })
}

/// Each child's fds are gone once its join has returned and its `Process` is dropped,
/// not a moment later, even beside busy CPUs, whatever the start method: its link's
/// flusher task once let go of the socket on the runtime's time, after the exit was
/// published.
fn a_joined_child_leaves_no_fd_behind() -> TestResult {
    let child = |method| -> TestResult {
        let mut p = Process::new(noop, ()).start_method(method);
        p.start()?;
        p.join()?;
        Ok(())
    };
    for method in [StartMethod::Spawn, StartMethod::Forkserver] {
        // The first child of a method makes what lasts (the forkserver, its sockets).
        child(method)?;
        let start = Usage::now().fds;
        let before = open_fds();
        let _busy = BusyCpus::start();
        for i in 0..iterations() / 4 {
            child(method)?;
            let now = Usage::now().fds;
            check!(
                now == start,
                "{method:?}: {now} fds once child {i} was joined, not {start}: {:?}, not {before:?}",
                open_fds()
            );
        }
    }
    Ok(())
}

/// What this process's descriptors point at, to name a leak.
fn open_fds() -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.filter_map(|e| {
                let e = e.ok()?;
                let target = std::fs::read_link(e.path()).ok()?;
                Some(format!(
                    "{}={}",
                    e.file_name().to_string_lossy(),
                    target.display()
                ))
            })
            .collect()
        })
        .unwrap_or_default();
    fds.sort();
    fds
}

fn pool_loop() -> TestResult {
    soak("pool", iterations() / 10, |i| {
        let pool = Pool::new(2)?;
        check_eq!(pool.apply(square, i as u64)?, (i * i) as u64);
        pool.terminate();
        pool.join()?;
        Ok(())
    })
}

/// Primitives hosted and handles alive in this process.
fn counts() -> (usize, usize) {
    multiproc::__private::test_hooks::primitive_counts()
}

/// Creates, uses and drops one primitive of every kind per iteration: each must give
/// back its memory, its fd and its host's record.
fn primitive_loop() -> TestResult {
    let before = counts();
    soak("primitives", iterations(), |i| {
        let l = Lock::new()?;
        check!(l.acquire(true, None)?, "lock not acquired");
        l.release()?;
        let r = RLock::new()?;
        check!(r.acquire(true, None)?, "rlock not acquired");
        r.release()?;
        let s = Semaphore::new(1)?;
        check!(s.acquire(true, None)?, "semaphore not acquired");
        s.release()?;
        let b = BoundedSemaphore::new(1)?;
        check!(b.acquire(false, None)?, "bounded semaphore not acquired");
        b.release()?;
        let e = Event::new()?;
        e.set()?;
        check!(e.wait(None)?, "event not set");
        let q = Queue::<u64>::new(0)?;
        q.put(&(i as u64), true, None)?;
        check_eq!(q.get(true, None)?, i as u64);
        let c = Condition::new()?;
        check!(c.acquire(true, None)?, "condition not acquired");
        c.notify(1)?;
        c.release()?;
        let bar = Barrier::new(1)?;
        bar.wait(None)?;
        let v = Value::new(i as u64)?;
        check_eq!(v.get()?, i as u64);
        let a = Array::from_slice(&[1u32, 2, 3])?;
        check_eq!(a.get(2)?, 3);
        Ok(())
    })?;
    check_eq!(counts(), before);
    Ok(())
}

/// Queues taken from leave nothing on the heap once dropped: each thread's cache of
/// its slot in every queue it took from was once never pruned, about 40 bytes a queue
/// for good (4 MiB of RSS over the soak bench's 100 000 queues).
fn queues_taken_from_leave_no_memory() -> TestResult {
    let body = |i: u64| -> TestResult {
        let q = Queue::<u64>::new(0)?;
        q.put(&i, true, None)?;
        check_eq!(q.get(true, None)?, i);
        let j = Queue::<u64>::joinable(0)?;
        j.put(&i, true, None)?;
        check_eq!(j.get(true, None)?, i);
        j.task_done()?;
        Ok(())
    };
    // Caches and pools grow to their steady size first.
    for i in 0..200 {
        body(i)?;
    }
    let before = live_alloc::live_bytes();
    let n = iterations();
    for i in 0..n as u64 {
        body(i)?;
    }
    let grown = live_alloc::live_bytes().saturating_sub(before);
    eprintln!(
        "queues: {n} iterations, heap {before} -> {} bytes",
        before + grown
    );
    check!(
        grown < 16 << 10,
        "the heap grew by {grown} bytes over {n} iterations of two queues"
    );
    Ok(())
}

fn use_lock_later(lock: Lock, mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    // Wait until the parent has dropped its own handle.
    let _: String = up.recv()?;
    let held = lock.acquire(true, Some(Duration::from_secs(10)))?;
    lock.release()?;
    up.send(&held)?;
    Ok(())
}
multiproc::register!(use_lock_later);

/// A handle sent to a child keeps the primitive alive after the parent dropped its
/// own; the child's drop frees it.
fn a_handle_in_a_child_outlives_the_parents() -> TestResult {
    let before = counts();
    let lock = Lock::new()?;
    check_eq!(counts().0, before.0 + 1);
    let (mut mine, theirs) = pipe(true)?;
    let mut p = Process::new(use_lock_later, (lock, theirs));
    p.start()?;
    // The parent's only handle went with the child's arguments.
    check_eq!(counts().1, before.1);
    check_eq!(counts().0, before.0 + 1);
    mine.send(&"go")?;
    let held: bool = mine.recv()?;
    check!(held, "the child could not take the lock");
    p.join()?;
    // The child's `Detach` travelled up its link before its exit report.
    check_eq!(counts(), before);
    Ok(())
}

fn hold_forever(lock: Lock, mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    up.send(&"holding")?;
    let _: String = up.recv()?;
    drop(lock);
    Ok(())
}
multiproc::register!(hold_forever);

/// A process killed while it holds a handle counts as having dropped it.
fn a_killed_holder_lets_go_of_its_handles() -> TestResult {
    let before = counts();
    let (mut mine, theirs) = pipe(true)?;
    let mut p = Process::new(hold_forever, (Lock::new()?, theirs));
    p.start()?;
    let _: String = mine.recv()?;
    check_eq!(counts().0, before.0 + 1);
    p.kill()?;
    p.join()?;
    // The host hears of the death from its watch, on the runtime's own time: there
    // is no event to wait on from here, so poll, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    while counts() != before && Instant::now() < deadline {
        std::thread::yield_now();
    }
    check_eq!(counts(), before);
    Ok(())
}

fn main() {
    // Restarts and respawns in loops: bounded, whatever a regression does.
    common::cgroup::confine("soak");
    common::run_serial(vec![
        trial("process_loop", process_loop),
        trial(
            "a_joined_child_leaves_no_fd_behind",
            a_joined_child_leaves_no_fd_behind,
        ),
        trial("pool_loop", pool_loop),
        trial("primitive_loop", primitive_loop),
        trial(
            "queues_taken_from_leave_no_memory",
            queues_taken_from_leave_no_memory,
        ),
        trial(
            "a_handle_in_a_child_outlives_the_parents",
            a_handle_in_a_child_outlives_the_parents,
        ),
        trial(
            "a_killed_holder_lets_go_of_its_handles",
            a_killed_holder_lets_go_of_its_handles,
        ),
    ]);
}
