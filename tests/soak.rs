//! Long-running loops: processes, supervisor restarts, pools and primitives, each
//! repeated thousands of times, with the loop process's fds, threads and RSS compared
//! against their starting values.
//!
//! The restart loop could multiply processes if multiproc regressed, so it runs as
//! this binary again inside a pids cgroup the test makes (`tests/common/cgroup.rs`).

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;
#[path = "support/live_alloc.rs"]
mod live_alloc;

#[global_allocator]
static ALLOC: live_alloc::LiveAlloc = live_alloc::LiveAlloc;

use std::time::{Duration, Instant};

use common::cgroup::{self, Program};
use common::{TestResult, trial};
use multiproc::blocking::{
    Barrier, BoundedSemaphore, Condition, Connection, Event, Events, Lock, Pool, Process, Queue,
    RLock, Semaphore, SupervisorRef, pipe,
};
use multiproc::{
    Array, Backoff, RestartIntensity, Supervisor, SupervisorEvent, SupervisorFlags, Value,
    function_child,
};

fn noop() {}
multiproc::register!(noop);

fn square(x: u64) -> u64 {
    x * x
}
multiproc::register!(square);

/// How many times each loop runs: enough to show a leak of one fd per iteration a
/// thousand times over, small enough for CI.
fn iterations() -> usize {
    std::env::var("MULTIPROC_SOAK_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000)
}

#[derive(Debug, Clone, Copy)]
struct Usage {
    fds: usize,
    threads: usize,
    rss_kib: u64,
}

fn usage() -> Usage {
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
    let threads = std::fs::read_dir("/proc/self/task").unwrap().count();
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    Usage {
        fds,
        threads,
        rss_kib: pages * 4,
    }
}

fn soak(name: &str, n: usize, mut body: impl FnMut(usize) -> TestResult) -> TestResult {
    // Warm up: lazily built runtimes, spawner thread, forkserver, caches.
    for i in 0..20 {
        body(i)?;
    }
    let start = usage();
    let t0 = Instant::now();
    for i in 0..n {
        body(i)?;
    }
    let elapsed = t0.elapsed();
    let end = usage();
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
    multiproc::__private::__primitive_counts()
}

/// Creates, uses and drops one primitive of every kind per iteration: each must give
/// back its memory, its fd and its host's record.
fn primitive_loop() -> TestResult {
    let before = counts();
    soak("primitives", iterations(), |i| {
        let l = Lock::new();
        check!(l.acquire(true, None)?, "lock not acquired");
        l.release()?;
        let r = RLock::new();
        check!(r.acquire(true, None)?, "rlock not acquired");
        r.release()?;
        let s = Semaphore::new(1);
        check!(s.acquire(true, None)?, "semaphore not acquired");
        s.release()?;
        let b = BoundedSemaphore::new(1);
        check!(b.acquire(false, None)?, "bounded semaphore not acquired");
        b.release()?;
        let e = Event::new();
        e.set()?;
        check!(e.wait(None)?, "event not set");
        let q = Queue::<u64>::new(0);
        q.put(&(i as u64), true, None)?;
        check_eq!(q.get(true, None)?, i as u64);
        let c = Condition::new();
        check!(c.acquire(true, None)?, "condition not acquired");
        c.notify(1)?;
        c.release()?;
        let bar = Barrier::new(1);
        bar.wait(None)?;
        let v = Value::new(i as u64);
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
        let q = Queue::<u64>::new(0);
        q.put(&i, true, None)?;
        check_eq!(q.get(true, None)?, i);
        let j = Queue::<u64>::joinable(0);
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
    let lock = Lock::new();
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
    let mut p = Process::new(hold_forever, (Lock::new(), theirs));
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

/// Set in the program the restart loop runs in, inside its cgroup.
const RESTART_LOOP: &str = "MULTIPROC_TEST_SOAK_RESTART";
/// The restart loop's child.
const FLAPPER: &str = "flapper";

/// The program in the cgroup: a `OneForOne` supervisor restarting a child that exits
/// at once, without backoff and without ever giving up; the fds at rest (the child
/// stopped through the admin API) before and after the restarts must be the same.
fn restart_loop_program() -> ! {
    cgroup::refuse_to_run_bare("the restart loop");
    match restart_loop_body() {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("restart loop: {e}");
            std::process::exit(1)
        }
    }
}

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

fn restart_loop_body() -> BoxResult<()> {
    let flags = SupervisorFlags {
        intensity: RestartIntensity {
            max_restarts: u32::MAX,
            within: Duration::from_secs(1),
        },
        backoff: Backoff::NONE,
        ..SupervisorFlags::default()
    };
    let supervisor = Supervisor::new(flags).child(function_child(FLAPPER, noop, ())?);
    let mut events = Events(supervisor.events());
    let sup = SupervisorRef::start(supervisor)?;
    restarts(&mut events, 20)?;
    let start = at_rest(&sup, &mut events)?;
    let n = iterations();
    let t0 = Instant::now();
    restarts(&mut events, n)?;
    let elapsed = t0.elapsed();
    let end = at_rest(&sup, &mut events)?;
    sup.shutdown();
    eprintln!(
        "restart: {n} restarts in {elapsed:?} ({:.0}/s): fds {} -> {}, threads {} -> {}, rss {} -> {} KiB",
        n as f64 / elapsed.as_secs_f64(),
        start.fds,
        end.fds,
        start.threads,
        end.threads,
        start.rss_kib,
        end.rss_kib
    );
    if end.fds > start.fds {
        return Err(format!(
            "fds grew from {} to {} over {n} restarts",
            start.fds, end.fds
        )
        .into());
    }
    Ok(())
}

/// Waits for `n` more restarts.
fn restarts(events: &mut Events, n: usize) -> BoxResult<()> {
    let mut seen = 0;
    while seen < n {
        match events.next() {
            Some(SupervisorEvent::Restarted { .. }) => seen += 1,
            Some(e @ SupervisorEvent::IntensityExceeded { .. }) => {
                return Err(format!("the supervisor gave up: {e:?}").into());
            }
            Some(_) => {}
            None => return Err("the supervisor ended".into()),
        }
    }
    Ok(())
}

/// The least of four readings, each one restart apart with the child stopped: a task
/// serving the last child may still be closing its fds as the terminate returns,
/// which is no leak; a leak shows in every reading.
fn at_rest(sup: &SupervisorRef, events: &mut Events) -> BoxResult<Usage> {
    let mut least: Option<Usage> = None;
    for _ in 0..4 {
        restarts(events, 1)?;
        sup.terminate_child(FLAPPER)?;
        let u = usage();
        least = Some(least.map_or(u, |l| Usage {
            fds: l.fds.min(u.fds),
            threads: l.threads.min(u.threads),
            rss_kib: l.rss_kib.min(u.rss_kib),
        }));
        sup.restart_child(FLAPPER)?;
    }
    Ok(least.expect("four readings"))
}

/// A supervisor restarting a child that exits at once gives back each incarnation's
/// pidfd and link: a child that exited before its start was done was once kept in
/// the list of live children for good.
fn restart_loop() -> TestResult {
    let run = Program {
        case: "soak_restart",
        pids_max: 128,
        env: &[(RESTART_LOOP, "1")],
        deadline: Duration::from_secs(300),
        grace: Duration::from_secs(1),
    }
    .run()?;
    eprint!("{}", run.stderr);
    check!(
        run.status.success(),
        "the restart loop failed: {}",
        run.status
    );
    check!(
        run.left.is_empty(),
        "processes {:?} outlived the loop",
        run.left
    );
    check_eq!(run.hit_limit, 0);
    Ok(())
}

fn main() {
    multiproc::init();
    if std::env::var_os(RESTART_LOOP).is_some() {
        restart_loop_program();
    }
    common::run_serial(vec![
        trial("process_loop", process_loop),
        trial("restart_loop", restart_loop),
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
