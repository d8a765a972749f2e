//! The pool: Python's `Pool` API, and every way a task or a worker can fail, with real
//! worker processes.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{TestResult, trial, wait_gone};
use multiproc::__private::test_hooks::{run_raw_slab, takes_slabs};
use multiproc::blocking::Pool;
use multiproc::bytemuck;
use multiproc::{ExitReason, PoolError, RestartIntensity, RetryPolicy, StartMethod, TaskError};
use serde::{Deserialize, Serialize, Serializer};

fn sq(x: u64) -> u64 {
    x * x
}

fn add(a: i64, b: i64) -> i64 {
    a + b
}

fn getpid() -> u32 {
    std::process::id()
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Sends `sig` to its own worker.
fn die(sig: i32) -> u32 {
    raise(sig);
    std::process::id()
}

fn raise(sig: i32) {
    let sig = rustix::process::Signal::from_named_raw(sig).unwrap();
    rustix::process::kill_process(rustix::process::getpid(), sig).unwrap();
}

fn abort_now() -> u32 {
    std::process::abort()
}

fn exit_zero() -> u32 {
    std::process::exit(0)
}

fn panics_on_3(x: u64) -> u64 {
    assert_ne!(x, 3, "three is not allowed");
    x
}

fn fallible(x: i64) -> Result<i64, String> {
    if x < 0 {
        Err(format!("{x} is negative"))
    } else {
        Ok(x)
    }
}

/// A result whose `Serialize` fails.
#[derive(Debug, Deserialize)]
struct Unencodable(#[allow(dead_code)] u8);

impl Serialize for Unencodable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this value refuses to encode"))
    }
}

fn unencodable() -> Unencodable {
    Unencodable(1)
}

static INIT_VALUE: AtomicU64 = AtomicU64::new(0);

fn set_init(v: u64) {
    INIT_VALUE.store(v, Ordering::SeqCst);
}

fn read_init() -> u64 {
    INIT_VALUE.load(Ordering::SeqCst)
}

fn failing_init() {
    panic!("the database is not there");
}

/// An initializer that never ends by itself: its worker is never ready.
fn init_hangs() {
    multiproc::blocking::wait_for_stop();
}

/// Kills its worker the first time (when `marker` does not exist yet), then succeeds.
fn flaky(marker: String) -> u32 {
    if std::fs::File::create_new(&marker).is_ok() {
        raise(libc::SIGKILL);
    }
    std::process::id()
}

/// Writes its pid into the FIFO at `fifo` (the test blocks reading it, so it knows the
/// task runs), then sleeps `ms`.
fn announce_then_sleep(fifo: String, ms: u64) -> u64 {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
    writeln!(f, "{}", std::process::id()).unwrap();
    drop(f);
    sleep_ms(ms)
}

/// A FIFO in the temp dir, removed when dropped.
struct Fifo(std::path::PathBuf);

impl Fifo {
    fn new(tag: &str) -> Fifo {
        let path =
            std::env::temp_dir().join(format!("multiproc-pool-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo {}", path.display());
        Fifo(path)
    }

    fn path(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }

    /// Blocks until the task has written its pid.
    fn read_pid(&self) -> u32 {
        std::fs::read_to_string(&self.0)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Kills its worker on 2.
fn kill_on_2(x: u64) -> u64 {
    if x == 2 {
        raise(libc::SIGKILL);
    }
    x
}

fn big(len: usize) -> Vec<u8> {
    vec![7; len]
}

fn byte_len(bytes: Vec<u8>) -> usize {
    bytes.len()
}

/// The first byte and the length, which tell the test's big items apart; an empty item
/// panics.
fn first_and_len(bytes: Vec<u8>) -> (u8, usize) {
    (*bytes.first().expect("an empty item"), bytes.len())
}

/// Big test items: `n` of `len` bytes, each all one value of 128 or more (which
/// msgpack encodes in 2 bytes), different for each item.
fn big_items(n: usize, len: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| vec![128 + (i % 128) as u8; len]).collect()
}

/// Runs in a child process: a pool there is named by the child's counter.
fn nested_pool() -> Result<(), String> {
    let pool = Pool::new(1).map_err(|e| e.to_string())?;
    let pid = pool.apply(getpid, ()).map_err(|e| e.to_string())?;
    let me = multiproc::current_process().name().to_string();
    let n = me
        .strip_prefix("Process-")
        .ok_or(format!("child named {me}"))?;
    let workers = pool.workers();
    match workers.as_slice() {
        [w] if w.pid == pid && w.name == format!("PoolWorker-{n}:1") => Ok(()),
        other => Err(format!("{me}: {other:?}")),
    }
}

fn unregistered(x: u64) -> u64 {
    x
}

fn halve(x: f64) -> f64 {
    x / 2.0
}

/// Plain data of the caller's own: `#[repr(C)]` with no padding, which bytemuck's
/// derive checks.
#[derive(
    Debug, Clone, Copy, PartialEq, Serialize, Deserialize, bytemuck::Pod, bytemuck::Zeroable,
)]
#[bytemuck(crate = "multiproc::bytemuck")]
#[repr(C)]
struct Particle {
    pos: [f32; 3],
    mass: f32,
    id: u64,
}

/// Moves a particle by its id; panics on id 3.
fn step(p: Particle) -> Particle {
    assert_ne!(p.id, 3, "particle three is lost");
    Particle {
        pos: p.pos.map(|c| c + p.id as f32),
        mass: p.mass * 2.0,
        id: p.id,
    }
}

fn particles(n: u64) -> Vec<Particle> {
    (0..n)
        .map(|id| Particle {
            pos: [id as f32, -(id as f32), 0.5],
            mass: 1.0 + id as f32,
            id,
        })
        .collect()
}

/// 8 KiB of plain data.
type Block = [[u64; 32]; 32];

fn block_sum(b: Block) -> u64 {
    b.iter().flatten().sum()
}

/// 72 KiB of plain data, more than a frame of 64 KiB holds.
fn huge_first(h: [Block; 9]) -> u64 {
    h[0][0][0]
}

/// Not plain data: a `String` points into its process's heap.
fn shout(s: String) -> String {
    s.to_uppercase()
}

/// Grows this worker's heap by `mib` MiB, written so that it is resident, and keeps
/// it; returns the worker's pid.
fn hog(mib: usize) -> u32 {
    std::mem::forget(vec![1u8; mib << 20]);
    std::process::id()
}

multiproc::register!(
    sq,
    hog,
    kill_on_2,
    big,
    byte_len,
    first_and_len,
    nested_pool,
    add,
    getpid,
    sleep_ms,
    die,
    abort_now,
    exit_zero,
    panics_on_3,
    fallible,
    unencodable,
    set_init,
    read_init,
    failing_init,
    init_hangs,
    flaky,
    announce_then_sleep,
    halve,
    step,
    shout,
    block_sum,
    huge_first
);

fn pool(n: usize) -> Pool {
    Pool::new(n).unwrap()
}

fn map_in_order_with_the_default_chunksize() -> TestResult {
    let pool = pool(2);
    check_eq!(
        pool.map(sq, 0..100).unwrap(),
        (0..100).map(|x| x * x).collect::<Vec<_>>()
    );
    check_eq!(pool.map(sq, Vec::<u64>::new()).unwrap(), Vec::<u64>::new());
    for chunksize in [1, 3, 7, 1000] {
        check_eq!(
            pool.map_chunked(sq, 0..50, chunksize).unwrap(),
            (0..50).map(|x| x * x).collect::<Vec<_>>()
        );
    }
    check_eq!(pool.starmap(add, [(1, 2), (3, 4)]).unwrap(), vec![3, 7]);
    check_eq!(
        pool.starmap_async(add, [(5, 5)]).get(None).unwrap(),
        vec![10]
    );
    check_eq!(pool.map_async(sq, [4]).get(None).unwrap(), vec![16]);
    Ok(())
}

fn apply_and_async_results() -> TestResult {
    let pool = pool(2);
    check_eq!(pool.apply(add, (2, 3)).unwrap(), 5);
    let mut r = pool.apply_async(sq, 9);
    check!(r.wait(None), "wait without a timeout returns once ready");
    check!(r.ready(), "ready after wait");
    check_eq!(r.successful().unwrap(), true);
    check_eq!(r.get(None).unwrap(), 81);
    check!(matches!(r.get(None), Err(PoolError::Taken)), "a second get");
    check_eq!(r.successful().unwrap(), true);
    let mut failed = pool.apply_async(panics_on_3, 3);
    check!(failed.get(None).is_err(), "it panics");
    check_eq!(failed.successful().unwrap(), false);
    // A task's own `Result` is a value, with its error type intact.
    check_eq!(
        pool.apply(fallible, -2).unwrap(),
        Err("-2 is negative".to_string())
    );
    check_eq!(pool.apply(fallible, 2).unwrap(), Ok(2));
    Ok(())
}

fn get_with_a_timeout_leaves_the_task_running() -> TestResult {
    let pool = pool(1);
    let mut r = pool.apply_async(sleep_ms, 300);
    check!(!r.ready(), "a 300 ms task is not ready at once");
    check!(
        matches!(r.successful(), Err(PoolError::NotReady)),
        "successful before ready"
    );
    let t = Instant::now();
    check!(
        matches!(
            r.get(Some(Duration::from_millis(50))),
            Err(PoolError::Timeout(_))
        ),
        "get(50 ms) times out"
    );
    check!(
        t.elapsed() < Duration::from_millis(250),
        "the timeout is honoured: {:?}",
        t.elapsed()
    );
    check!(
        !r.wait(Some(Duration::from_millis(10))),
        "wait(10 ms) is false"
    );
    check_eq!(r.get(None).unwrap(), 300);
    Ok(())
}

fn imap_next_with_a_timeout_loses_nothing() -> TestResult {
    let pool = pool(1);
    let mut it = pool.imap(sleep_ms, [300u64, 1], 1);
    let t = Instant::now();
    check!(
        matches!(
            it.next_timeout(Duration::from_millis(50)),
            Some(Err(PoolError::Timeout(_)))
        ),
        "next_timeout(50 ms) times out on a 300 ms task"
    );
    check!(
        t.elapsed() < Duration::from_millis(250),
        "the timeout is honoured: {:?}",
        t.elapsed()
    );
    // The result that was late is the next one, then the rest, then the end.
    check_eq!(
        it.next_timeout(Duration::from_secs(30)).map(Result::unwrap),
        Some(300)
    );
    check_eq!(it.next().map(Result::unwrap), Some(1));
    check!(
        it.next_timeout(Duration::from_secs(30)).is_none(),
        "the end"
    );
    Ok(())
}

fn imap_orders_and_imap_unordered_does_not_lose() -> TestResult {
    let pool = pool(2);
    let ordered: Vec<u64> = pool.imap(sq, 0..200u64, 3).map(Result::unwrap).collect();
    check_eq!(ordered, (0..200).map(|x| x * x).collect::<Vec<_>>());
    let mut unordered: Vec<u64> = pool
        .imap_unordered(sq, 0..200u64, 1)
        .map(Result::unwrap)
        .collect();
    unordered.sort_unstable();
    check_eq!(unordered, (0..200).map(|x| x * x).collect::<Vec<_>>());
    // An error is one item; the others still come, in order.
    let mixed: Vec<_> = pool.imap(panics_on_3, 0..6u64, 1).collect();
    check_eq!(mixed.len(), 6);
    check!(
        matches!(
            &mixed[3],
            Err(PoolError::Task {
                index: 3,
                error: TaskError::Panicked { .. }
            })
        ),
        "{:?}",
        mixed[3]
    );
    check_eq!(mixed[5].as_ref().unwrap(), &5);
    Ok(())
}

fn imap_reports_every_item_of_a_chunk_whose_worker_died() -> TestResult {
    let pool = pool(2);
    for ordered in [true, false] {
        let results: Vec<_> = if ordered {
            pool.imap(kill_on_2, 0..6u64, 2).collect()
        } else {
            pool.imap_unordered(kill_on_2, 0..6u64, 2).collect()
        };
        check_eq!(results.len(), 6);
        let mut died: Vec<usize> = results
            .iter()
            .filter_map(|r| match r {
                Err(PoolError::Task {
                    index,
                    error: TaskError::WorkerDied { .. },
                }) => Some(*index),
                _ => None,
            })
            .collect();
        died.sort_unstable();
        check_eq!(died, vec![2, 3]);
        let mut ok: Vec<u64> = results.into_iter().filter_map(Result::ok).collect();
        ok.sort_unstable();
        check_eq!(ok, vec![0, 1, 4, 5]);
    }
    Ok(())
}

static PULLED: AtomicUsize = AtomicUsize::new(0);

fn imap_over_an_endless_input_reads_a_bounded_window() -> TestResult {
    let pool = pool(2);
    let input = (0u64..).inspect(|_| {
        PULLED.fetch_add(1, Ordering::SeqCst);
    });
    let mut results = pool.imap(sq, input, 2);
    let window = results.as_async().window();
    for (i, r) in results.by_ref().take(5000).enumerate() {
        check_eq!(r.unwrap(), (i as u64) * (i as u64));
    }
    let pulled = PULLED.load(Ordering::SeqCst);
    check!(
        pulled <= 5000 + window * 2,
        "read {pulled} items for 5000 results, over the window of {window} chunks of 2"
    );
    Ok(())
}

fn callbacks_run_with_the_result_or_the_error() -> TestResult {
    let pool = pool(1);
    let (tx, rx) = std::sync::mpsc::channel();
    let tx2 = tx.clone();
    let mut done = pool.apply_async(sq, 7).then(
        move |v| tx.send(format!("ok {v}")).unwrap(),
        |e| panic!("{e}"),
    );
    let mut failed = pool.apply_async(panics_on_3, 3).then(
        |v| panic!("{v}"),
        move |e| tx2.send(format!("err {e}")).unwrap(),
    );
    done.get(None).unwrap();
    failed.get(None).unwrap();
    let mut got: Vec<String> = rx.try_iter().collect();
    got.sort();
    check_eq!(got.len(), 2);
    check!(
        got[0].starts_with("err task 0 failed: task panicked"),
        "{}",
        got[0]
    );
    check_eq!(got[1], "ok 49");
    Ok(())
}

fn submit_and_cancel_a_queued_task() -> TestResult {
    let pool = pool(1);
    let fifo = Fifo::new("cancel");
    let mut running = pool.submit(announce_then_sleep, (fifo.path(), 200));
    let mut queued = pool.submit(sleep_ms, 1);
    fifo.read_pid();
    check!(queued.cancel(), "a queued task can be cancelled");
    check!(
        matches!(
            queued.get(None),
            Err(PoolError::Task {
                error: TaskError::Cancelled,
                ..
            })
        ),
        "a cancelled task fails with Cancelled"
    );
    check!(!running.cancel(), "a running task cannot");
    check_eq!(running.get(None).unwrap(), 200);
    Ok(())
}

fn workers_are_named_by_pythons_rules() -> TestResult {
    let pool = pool(2);
    pool.map(sq, 0..4).unwrap();
    let workers = pool.workers();
    check!(!workers.is_empty() && workers.len() <= 2, "{workers:?}");
    for w in &workers {
        let n = w.name.strip_prefix("PoolWorker-");
        check!(n.is_some_and(|n| n.parse::<u32>().is_ok()), "{}", w.name);
    }
    let custom = Pool::builder()
        .processes(1)
        .name_prefix("Cruncher")
        .start()
        .unwrap();
    custom.apply(sq, 1).unwrap();
    check!(
        custom.workers()[0].name.starts_with("Cruncher-"),
        "{:?}",
        custom.workers()
    );
    Ok(())
}

fn worker_died(r: Result<u32, PoolError>) -> Option<(u32, ExitReason)> {
    match r {
        Err(PoolError::Task {
            error: TaskError::WorkerDied { pid, reason, .. },
            ..
        }) => Some((pid, reason)),
        _ => None,
    }
}

fn a_killed_worker_fails_its_task_and_the_pool_goes_on() -> TestResult {
    let pool = pool(2);
    let mut dead = Vec::new();
    let died = worker_died(pool.apply(die, libc::SIGKILL));
    check!(
        matches!(
            died,
            Some((_, ExitReason::Signaled(9) | ExitReason::Killed))
        ),
        "{died:?}"
    );
    dead.extend(died.map(|d| d.0));
    let died = worker_died(pool.apply(abort_now, ()));
    check!(
        matches!(died, Some((_, ExitReason::Signaled(6)))),
        "{died:?}"
    );
    dead.extend(died.map(|d| d.0));
    let died = worker_died(pool.apply(exit_zero, ()));
    check!(
        matches!(died, Some((_, ExitReason::Normal | ExitReason::Exited(0)))),
        "{died:?}"
    );
    dead.extend(died.map(|d| d.0));
    // Replaced: every task still runs, and no dead worker is listed.
    check_eq!(pool.map(sq, 0..20).unwrap().len(), 20);
    let alive: Vec<u32> = pool.workers().iter().map(|w| w.pid).collect();
    check!(
        alive.iter().all(|p| !dead.contains(p)),
        "alive {alive:?}, dead {dead:?}"
    );
    for pid in dead {
        check!(
            wait_gone(pid, Duration::from_secs(5)),
            "dead worker {pid} is reaped"
        );
    }
    Ok(())
}

fn a_worker_killed_from_outside_is_replaced() -> TestResult {
    let pool = pool(1);
    let fifo = Fifo::new("killed");
    let mut busy = pool.apply_async(announce_then_sleep, (fifo.path(), 10_000));
    let victim = fifo.read_pid();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(victim as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let t = Instant::now();
    let died = worker_died(busy.get(None).map(|_| 0));
    check!(matches!(died, Some((pid, _)) if pid == victim), "{died:?}");
    check!(
        t.elapsed() < Duration::from_secs(2),
        "promptly: {:?}",
        t.elapsed()
    );
    check_eq!(pool.apply(sq, 5).unwrap(), 25);
    check!(
        wait_gone(victim, Duration::from_secs(5)),
        "the victim is reaped"
    );
    Ok(())
}

fn panics_and_unencodable_results_fail_only_their_item() -> TestResult {
    let pool = pool(2);
    match pool.map_chunked(panics_on_3, 0..10, 4) {
        Err(PoolError::Task {
            index: 3,
            error: TaskError::Panicked { message, location },
        }) => {
            check!(message.contains("three is not allowed"), "{message}");
            check!(
                location.as_deref().is_some_and(|l| l.contains("pool.rs")),
                "{location:?}"
            );
        }
        other => return Err(format!("{other:?}").into()),
    }
    let r = pool.apply(unencodable, ());
    check!(
        matches!(&r, Err(PoolError::Task { error: TaskError::Encode { message }, .. }) if message.contains("refuses")),
        "{r:?}"
    );
    // The same workers go on.
    check_eq!(pool.map(sq, 0..8).unwrap().len(), 8);
    Ok(())
}

fn plain_data_crosses_as_slabs_with_the_same_results_in_order() -> TestResult {
    check!(
        takes_slabs(sq) && takes_slabs(halve) && takes_slabs(step) && takes_slabs(panics_on_3),
        "numbers and Pod structs take the bulk path"
    );
    check!(
        !takes_slabs(shout) && !takes_slabs(add) && !takes_slabs(big) && !takes_slabs(getpid),
        "strings, tuples, vectors and `()` take rmp-serde"
    );
    let pool = pool(2);
    let squares = |n: u64| (0..n).map(|x| x * x).collect::<Vec<_>>();
    check_eq!(pool.map(sq, 0..10_000).unwrap(), squares(10_000));
    for chunksize in [1, 7, 4096] {
        check_eq!(
            pool.map_chunked(sq, 0..1000, chunksize).unwrap(),
            squares(1000)
        );
    }
    // Floats cross bit for bit, NaN and -0.0 included.
    let xs = [
        1.5,
        -0.0,
        f64::NAN,
        f64::INFINITY,
        f64::MIN_POSITIVE,
        -3.25e300,
    ];
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let halves: Vec<f64> = xs.iter().map(|&x| halve(x)).collect();
    check_eq!(
        bits(&pool.map_chunked(halve, xs, 4).unwrap()),
        bits(&halves)
    );
    check_eq!(bits(&pool.starmap(halve, xs).unwrap()), bits(&halves));
    // A struct of the caller's, by map and imap.
    let ps: Vec<Particle> = particles(1000).into_iter().filter(|p| p.id != 3).collect();
    let moved: Vec<Particle> = ps.iter().map(|&p| step(p)).collect();
    check_eq!(pool.map(step, ps.clone()).unwrap(), moved);
    let imapped: Result<Vec<_>, _> = pool.imap(step, ps.clone(), 13).collect();
    check_eq!(imapped.unwrap(), moved);
    let mut unordered: Vec<u64> = pool
        .imap_unordered(sq, 0..1000, 10)
        .collect::<Result<_, _>>()
        .unwrap();
    unordered.sort_unstable();
    check_eq!(unordered, squares(1000));
    // Not plain data: rmp-serde, as before.
    let words = ["plain", "old", "data"].map(String::from);
    check_eq!(
        pool.map(shout, words.clone()).unwrap(),
        ["PLAIN", "OLD", "DATA"]
    );
    let shouted: Result<Vec<_>, _> = pool.imap(shout, words, 1).collect();
    check_eq!(shouted.unwrap(), ["PLAIN", "OLD", "DATA"]);
    Ok(())
}

fn a_panic_in_a_slab_fails_only_its_item_with_its_index() -> TestResult {
    let pool = pool(2);
    let r = pool.map_chunked(step, particles(10), 4);
    check!(
        matches!(&r, Err(PoolError::Task { index: 3, error: TaskError::Panicked { message, .. } }) if message.contains("particle three")),
        "{r:?}"
    );
    for (chunksize, ordered) in [(4, true), (1, true), (4, false)] {
        let results: Vec<_> = if ordered {
            pool.imap(panics_on_3, 0..10, chunksize).collect()
        } else {
            pool.imap_unordered(panics_on_3, 0..10, chunksize).collect()
        };
        check_eq!(results.len(), 10);
        let mut oks = Vec::new();
        for r in results {
            match r {
                Ok(x) => oks.push(x),
                Err(PoolError::Task {
                    index: 3,
                    error: TaskError::Panicked { .. },
                }) => {}
                other => return Err(format!("{other:?}").into()),
            }
        }
        oks.sort_unstable();
        check_eq!(oks, vec![0, 1, 2, 4, 5, 6, 7, 8, 9]);
    }
    Ok(())
}

fn plain_and_serde_tasks_share_a_pool() -> TestResult {
    let pool = pool(2);
    let mut squares = pool.map_async_chunked(sq, 0..5000, 100);
    let mut words = pool.map_async(shout, (0..500).map(|i| format!("w{i}")));
    let mut sums = pool.starmap_async(add, (0..500).map(|i| (i, -2 * i)));
    let mut moved = pool.map_async_chunked(step, particles(600).split_off(4), 7);
    let mut one = pool.apply_async(sq, 12);
    check_eq!(
        squares.get(None).unwrap(),
        (0..5000).map(|x| x * x).collect::<Vec<u64>>()
    );
    check_eq!(
        words.get(None).unwrap(),
        (0..500).map(|i| format!("W{i}")).collect::<Vec<_>>()
    );
    check_eq!(
        sums.get(None).unwrap(),
        (0..500).map(|i| -i).collect::<Vec<i64>>()
    );
    check_eq!(
        moved.get(None).unwrap(),
        particles(600)[4..]
            .iter()
            .map(|&p| step(p))
            .collect::<Vec<_>>()
    );
    check_eq!(one.get(None).unwrap(), 144);
    Ok(())
}

fn a_slab_is_cut_to_fit_the_frame_limit() -> TestResult {
    const LIMIT: usize = 64 << 10;
    let pool = Pool::builder()
        .processes(1)
        .max_frame_len(LIMIT)
        .start()
        .unwrap();
    check!(
        takes_slabs(block_sum) && takes_slabs(huge_first),
        "arrays are Pod"
    );
    // Twenty 8 KiB items asked for in one chunk go seven to a frame.
    let blocks: Vec<Block> = (0..20).map(|i| [[i; 32]; 32]).collect();
    check_eq!(
        pool.map_chunked(block_sum, blocks, 20).unwrap(),
        (0..20).map(|i| i * 1024).collect::<Vec<u64>>()
    );
    let r = pool.map(huge_first, [[[[1; 32]; 32]; 9]]);
    check!(
        matches!(r, Err(PoolError::TooLarge { len, max: LIMIT }) if len > LIMIT),
        "an item over the limit: {r:?}"
    );
    Ok(())
}

fn a_malformed_slab_is_a_typed_error_for_its_chunk() -> TestResult {
    let pool = pool(1);
    let args_errors = |r: Vec<Result<u64, TaskError>>, n: usize, says: &str| -> TestResult {
        check_eq!(r.len(), n);
        for e in r {
            check!(
                matches!(&e, Err(TaskError::Args { message }) if message.contains(says)),
                "{e:?}, not an Args error saying {says:?}"
            );
        }
        Ok(())
    };
    // Seven bytes are no u64.
    args_errors(
        run_raw_slab(&pool, sq, &[0; 7], 1).unwrap(),
        1,
        "not a multiple of their size, 8",
    )?;
    // Two u64 where three were announced, and one where none were.
    args_errors(
        run_raw_slab(&pool, sq, &[0; 16], 3).unwrap(),
        3,
        "holds 2 of them where 3",
    )?;
    check_eq!(run_raw_slab(&pool, sq, &[0; 8], 0).unwrap(), vec![]);
    // A slab for a task that does not take plain data.
    let r = run_raw_slab(&pool, shout, &[1, 2, 3], 2).unwrap();
    check!(
        r.len() == 2
            && r.iter().all(|e| matches!(e, Err(TaskError::Args { message }) if message.contains("does not take a slab"))),
        "{r:?}"
    );
    // The worker goes on, and a well-formed slab from the same hook works.
    let slab = bytemuck::cast_slice::<u64, u8>(&[3, 4]).to_vec();
    check_eq!(
        run_raw_slab(&pool, sq, &slab, 2).unwrap(),
        vec![Ok(9), Ok(16)]
    );
    check_eq!(pool.map(sq, 0..4).unwrap(), vec![0, 1, 4, 9]);
    Ok(())
}

fn a_task_past_its_timeout_is_killed_and_fails() -> TestResult {
    let pool = Pool::builder()
        .processes(1)
        .task_timeout(Duration::from_millis(200))
        .start()
        .unwrap();
    let t = Instant::now();
    let r = pool.apply(sleep_ms, 10_000);
    check!(
        matches!(&r, Err(PoolError::Task { error: TaskError::Timeout { limit, .. }, .. }) if *limit == Duration::from_millis(200)),
        "{r:?}"
    );
    check!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // A chunk of 3 quick items is allowed 3 × 200 ms.
    check_eq!(
        pool.map_chunked(sleep_ms, [100, 100, 100], 3).unwrap(),
        vec![100, 100, 100]
    );
    check_eq!(pool.apply(sq, 3).unwrap(), 9);
    Ok(())
}

/// A task that a caller hands straight to an idle worker brings the pool's next
/// deadline forward: the pool's task, asleep until the deadline it read before (none,
/// here), must wake for it.
fn a_task_given_to_an_idle_worker_still_times_out() -> TestResult {
    let pool = Pool::builder()
        .processes(1)
        .task_timeout(Duration::from_millis(200))
        .start()
        .unwrap();
    // The worker is up and idle once its first task is answered.
    check_eq!(pool.apply(sq, 3).unwrap(), 9);
    let t = Instant::now();
    let r = pool.apply(sleep_ms, 10_000);
    check!(
        matches!(
            &r,
            Err(PoolError::Task {
                error: TaskError::Timeout { .. },
                ..
            })
        ),
        "{r:?}"
    );
    check!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    Ok(())
}

fn a_poison_task_is_quarantined_and_a_flaky_one_retried() -> TestResult {
    let pool = Pool::builder()
        .processes(2)
        .retry(RetryPolicy {
            retries: 5,
            quarantine_after: 3,
        })
        .start()
        .unwrap();
    let r = pool.apply(die, libc::SIGKILL);
    check!(
        matches!(
            &r,
            Err(PoolError::Task {
                error: TaskError::Quarantined { deaths: 3, .. },
                ..
            })
        ),
        "{r:?}"
    );
    let marker = std::env::temp_dir().join(format!("multiproc-flaky-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let r = pool.apply(flaky, marker.to_string_lossy().into_owned());
    let _ = std::fs::remove_file(&marker);
    check!(r.is_ok(), "retried after one death: {r:?}");
    check_eq!(pool.apply(sq, 4).unwrap(), 16);
    Ok(())
}

fn the_initializer_runs_in_every_worker() -> TestResult {
    let pool = Pool::builder()
        .processes(2)
        .initializer(set_init, 42)
        .start()
        .unwrap();
    check_eq!(pool.apply(read_init, ()).unwrap(), 42);
    Ok(())
}

fn a_failing_initializer_breaks_the_pool_instead_of_respawning_forever() -> TestResult {
    let pool = Pool::builder()
        .processes(2)
        .initializer(failing_init, ())
        .start_intensity(RestartIntensity {
            max_restarts: 2,
            within: Duration::from_secs(60),
        })
        .start()
        .unwrap();
    let r = pool.apply(sq, 2);
    match &r {
        Err(PoolError::Broken {
            reason: ExitReason::Panicked { message, .. },
        }) => check!(message.contains("database"), "{message}"),
        other => return Err(format!("{other:?}").into()),
    }
    check!(
        matches!(pool.apply(sq, 2), Err(PoolError::Broken { .. })),
        "stays broken"
    );
    pool.close();
    pool.join().unwrap();
    check!(pool.workers().is_empty(), "no worker left");
    Ok(())
}

fn max_rss_per_child_replaces_a_heavy_worker_after_its_task() -> TestResult {
    for method in [StartMethod::Forkserver, StartMethod::Spawn] {
        let pool = Pool::builder()
            .processes(1)
            .start_method(method)
            .max_rss_per_child(96 << 20)
            .start()?;
        let first = pool.apply(hog, 1)?;
        check_eq!(pool.apply(hog, 1)?, first);
        // Its result comes back from the worker that passed the limit ...
        check_eq!(pool.apply(hog, 160)?, first);
        // ... which takes no more work, and is gone.
        let next = pool.apply(hog, 1)?;
        check!(
            next != first,
            "{method:?}: worker {first} kept past max_rss_per_child"
        );
        check!(
            wait_gone(first, Duration::from_secs(10)),
            "{method:?}: {first} still runs"
        );
        check_eq!(pool.apply(hog, 1)?, next);
        pool.close();
        pool.join()?;
    }
    check!(
        matches!(
            Pool::builder().max_rss_per_child(0).start(),
            Err(PoolError::Invalid(_))
        ),
        "zero bytes is refused"
    );
    Ok(())
}

fn max_tasks_per_child_recycles_workers_and_loses_nothing() -> TestResult {
    let pool = Pool::builder()
        .processes(1)
        .max_tasks_per_child(2)
        .start()
        .unwrap();
    let pids = pool.map_chunked(getpid, vec![(); 8], 1).unwrap();
    check_eq!(pids.len(), 8);
    let distinct: HashSet<u32> = pids.iter().copied().collect();
    check_eq!(distinct.len(), 4);
    Ok(())
}

fn bad_input_is_a_clear_error() -> TestResult {
    let pool = pool(1);
    let e = pool.apply(unregistered, 1).unwrap_err();
    check!(
        e.to_string().contains("multiproc::register!(unregistered)"),
        "{e}"
    );
    // By name, with the wrong argument or result types: checked on the wire.
    let name = format!("{}::sq", module_path!());
    let r = pool
        .apply_by_name::<_, u64>(&name, "not a number")
        .get(None);
    check!(
        matches!(
            r,
            Err(PoolError::Task {
                error: TaskError::Args { .. },
                ..
            })
        ),
        "{r:?}"
    );
    let r = pool.apply_by_name::<_, String>(&name, 3u64).get(None);
    check!(
        matches!(
            r,
            Err(PoolError::Task {
                error: TaskError::Decode { .. },
                ..
            })
        ),
        "{r:?}"
    );
    let r = pool
        .apply_by_name::<_, u64>("nowhere::nothing", 3u64)
        .get(None);
    check!(matches!(r, Err(PoolError::UnknownTask(_))), "{r:?}");
    check!(
        matches!(pool.map_chunked(sq, 0..3, 0), Err(PoolError::Invalid(_))),
        "chunksize 0"
    );
    let r: Vec<_> = pool.imap(sq, 0..3u64, 0).collect();
    check!(
        matches!(r.as_slice(), [Err(PoolError::Invalid(_))]),
        "{r:?}"
    );
    check!(
        matches!(Pool::new(0), Err(PoolError::Invalid(_))),
        "zero processes"
    );
    check!(
        matches!(
            Pool::builder().max_tasks_per_child(0).start(),
            Err(PoolError::Invalid(_))
        ),
        "zero tasks per child"
    );
    check!(
        matches!(pool.join(), Err(PoolError::NotClosed)),
        "join before close"
    );
    pool.close();
    check!(
        matches!(pool.map(sq, 0..3), Err(PoolError::Closed)),
        "map after close"
    );
    check!(
        matches!(pool.apply_async(sq, 1).get(None), Err(PoolError::Closed)),
        "apply after close"
    );
    pool.join().unwrap();
    Ok(())
}

fn frames_over_a_configured_limit_fail_only_their_task() -> TestResult {
    const LIMIT: usize = 1 << 20;
    let pool = Pool::builder()
        .processes(1)
        .max_frame_len(LIMIT)
        .start()
        .unwrap();
    let r = pool.apply(big, 2 * LIMIT);
    check!(
        matches!(&r, Err(PoolError::Task { error: TaskError::Encode { message }, .. }) if message.contains("max_frame_len of 1048576")),
        "a result over the limit: {r:?}"
    );
    let r = pool.apply(byte_len, vec![0u8; 2 * LIMIT]);
    check!(
        matches!(r, Err(PoolError::TooLarge { len, max: LIMIT }) if len > 2 * LIMIT),
        "arguments over the limit: {r:?}"
    );
    // Items that fit one at a time, not two by two as the default chunksize would have
    // them (2 x 800 KiB encoded): cut to fit, every result comes back.
    let items = big_items(8, 400 << 10);
    let want: Vec<(u8, usize)> = items.iter().map(|i| (i[0], i.len())).collect();
    check_eq!(pool.map(first_and_len, items).unwrap(), want);
    check_eq!(pool.apply(byte_len, vec![0u8; 1 << 10]).unwrap(), 1 << 10);
    let r = Pool::builder().processes(1).max_frame_len(1000).start();
    check!(matches!(r, Err(PoolError::Invalid(_))), "{r:?}");
    Ok(())
}

fn a_map_whose_default_chunks_pass_16_mib_gets_every_result() -> TestResult {
    let pool = pool(1);
    // 16 items with one process: Python's default chunksize is 4, and 4 items of
    // 3 MiB take 24 MiB encoded, past the 16 MiB that used to fail the whole map.
    let items = big_items(16, 3 << 20);
    let chunk = multiproc::codec::encode(&items[..4]).unwrap().len();
    check!(chunk > 16 << 20, "a default chunk takes {chunk} bytes");
    let want: Vec<(u8, usize)> = items.iter().map(|i| (i[0], i.len())).collect();
    check_eq!(pool.map(first_and_len, items.clone()).unwrap(), want);
    check_eq!(pool.starmap(first_and_len, items.clone()).unwrap(), want);
    let got: Vec<(u8, usize)> = pool
        .imap(first_and_len, items, 4)
        .collect::<Result<_, _>>()
        .unwrap();
    check_eq!(got, want);

    // Results: 2 per chunk of 9 MiB each, 18 MiB in one answer.
    let got = pool.map(big, vec![9 << 20; 4]).unwrap();
    check!(
        got.iter()
            .all(|r| r.len() == 9 << 20 && r.iter().all(|&b| b == 7)),
        "results of {:?} bytes",
        got.iter().map(Vec::len).collect::<Vec<_>>()
    );
    Ok(())
}

fn chunks_cut_by_size_keep_every_items_index() -> TestResult {
    let pool = pool(2);
    // Items of 3 MiB (6 MiB encoded) with a chunksize of 8: every chunk is cut at one
    // item by size, so an index that followed from the chunksize would be wrong.
    let mut items = big_items(6, 3 << 20);
    items[3].clear();
    for ordered in [true, false] {
        let results: Vec<_> = if ordered {
            pool.imap(first_and_len, items.clone(), 8).collect()
        } else {
            pool.imap_unordered(first_and_len, items.clone(), 8)
                .collect()
        };
        check_eq!(results.len(), 6);
        let failed: Vec<usize> = results
            .iter()
            .filter_map(|r| match r {
                Err(PoolError::Task {
                    index,
                    error: TaskError::Panicked { .. },
                }) => Some(*index),
                _ => None,
            })
            .collect();
        check_eq!(failed, vec![3]);
        let mut ok: Vec<u8> = results
            .into_iter()
            .filter_map(|r| r.ok().map(|(first, _)| first))
            .collect();
        ok.sort_unstable();
        check_eq!(ok, vec![128, 129, 130, 132, 133]);
    }
    let r = pool.map_chunked(first_and_len, items, 8);
    check!(matches!(r, Err(PoolError::Task { index: 3, .. })), "{r:?}");
    Ok(())
}

fn a_pool_in_a_child_is_named_by_its_counter() -> TestResult {
    let mut p = multiproc::blocking::Process::new(nested_pool, ());
    p.start().unwrap();
    let reason = p.join().unwrap();
    check_eq!(reason, ExitReason::Normal);
    Ok(())
}

fn the_async_api_mirrors_the_blocking_one() -> TestResult {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = multiproc::Pool::new(2).unwrap();
        check_eq!(pool.map(sq, 0..5).await.unwrap(), vec![0, 1, 4, 9, 16]);
        check_eq!(pool.apply(add, (1, 1)).await.unwrap(), 2);
        // An AsyncResult is a future.
        check_eq!(pool.apply_async(sq, 6).await.unwrap(), 36);
        check_eq!(pool.submit(sq, 7).await.unwrap(), 49);
        let mut r = pool.apply_async(sleep_ms, 200);
        check!(
            matches!(
                r.get_timeout(Duration::from_millis(10)).await,
                Err(PoolError::Timeout(_))
            ),
            "async get_timeout"
        );
        check_eq!(r.get().await.unwrap(), 200);
        let mut it = pool.imap(sq, 0..10u64, 2);
        let mut got = Vec::new();
        while let Some(r) = it.next().await {
            got.push(r.unwrap());
        }
        check_eq!(got, (0..10).map(|x| x * x).collect::<Vec<_>>());
        check_eq!(pool.map_async_chunked(sq, [3], 1).await.unwrap(), vec![9]);
        pool.close();
        pool.join().await.unwrap();
        check!(pool.workers().await.is_empty(), "workers gone after join");
        Ok(())
    })
}

fn close_lets_work_finish_and_terminate_fails_it() -> TestResult {
    let pool = pool(1);
    let mut pending = pool.apply_async(sleep_ms, 100);
    pool.close();
    pool.join().unwrap();
    check_eq!(pending.get(None).unwrap(), 100);

    let pool = self::pool(1);
    let fifo = Fifo::new("terminate");
    let mut running = pool.apply_async(announce_then_sleep, (fifo.path(), 10_000));
    let mut queued = pool.apply_async(sleep_ms, 1);
    let pids = vec![fifo.read_pid()];
    let t = Instant::now();
    pool.terminate();
    check!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    check!(
        matches!(running.get(None), Err(PoolError::Terminated)),
        "running task"
    );
    check!(
        matches!(queued.get(None), Err(PoolError::Terminated)),
        "queued task"
    );
    pool.join().unwrap();
    for pid in pids {
        check!(
            wait_gone(pid, Duration::from_secs(5)),
            "worker {pid} is gone"
        );
    }
    Ok(())
}

fn dropping_the_pool_closes_it_and_pending_results_still_arrive() -> TestResult {
    let pool = pool(1);
    let fifo = Fifo::new("drop");
    let mut r = pool.apply_async(announce_then_sleep, (fifo.path(), 50));
    let pid = fifo.read_pid();
    drop(pool);
    check_eq!(r.get(None).unwrap(), 50);
    check!(
        wait_gone(pid, Duration::from_secs(5)),
        "worker {pid} exits once idle"
    );
    Ok(())
}

/// Workers start by the forkserver by default; the spawn method works the same.
fn spawned_workers() -> TestResult {
    let pool = Pool::builder()
        .processes(2)
        .start_method(StartMethod::Spawn)
        .start()
        .unwrap();
    check_eq!(pool.map(sq, 0..10).unwrap()[9], 81);
    check!(
        worker_died(pool.apply(die, libc::SIGKILL)).is_some(),
        "a death is reported"
    );
    check_eq!(pool.apply(sq, 6).unwrap(), 36);
    Ok(())
}

/// The items that failed with `WorkerDied`, and the values of the others.
fn split_died(results: &[Result<u64, TaskError>]) -> (Vec<usize>, Vec<u64>) {
    let died = results
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, Err(TaskError::WorkerDied { .. })))
        .map(|(i, _)| i)
        .collect();
    let ok = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    (died, ok)
}

fn map_results_keeps_every_result_when_a_worker_dies_mid_map() -> TestResult {
    let pool = pool(2);
    // Python's map fails as a whole at the item whose worker died.
    let whole = pool.map_chunked(kill_on_2, 0..6u64, 1);
    check!(
        matches!(
            whole,
            Err(PoolError::Task {
                index: 2,
                error: TaskError::WorkerDied { .. }
            })
        ),
        "{whole:?}"
    );
    // One task per chunk: only the task whose worker died fails.
    let results = pool.map_results_chunked(kill_on_2, 0..6u64, 1).unwrap();
    check_eq!(results.len(), 6);
    check_eq!(split_died(&results), (vec![2], vec![0, 1, 3, 4, 5]));
    // Chunks of two: the dead worker's chunk fails item by item, in place.
    let results = pool.map_results_chunked(kill_on_2, 0..6u64, 2).unwrap();
    check_eq!(split_died(&results), (vec![2, 3], vec![0, 1, 4, 5]));
    // The default chunksize, and a panic: each failure is its own item's.
    let results = pool.map_results(panics_on_3, 0..40u64).unwrap();
    check_eq!(results.len(), 40);
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(v) => check_eq!(*v, i as u64),
            Err(TaskError::Panicked { .. }) => check_eq!(i, 3),
            Err(e) => return Err(format!("item {i}: {e}").into()),
        }
    }
    check!(results[3].is_err(), "item 3 panicked");
    check_eq!(
        pool.map_results(sq, Vec::<u64>::new()).unwrap(),
        Vec::<Result<u64, TaskError>>::new()
    );
    check!(
        matches!(
            pool.map_results_chunked(sq, 0..3u64, 0),
            Err(PoolError::Invalid(_))
        ),
        "a chunksize of 0"
    );
    // The async face gives the same.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = rt
        .block_on(pool.as_async().map_results_chunked(kill_on_2, 0..6u64, 1))
        .unwrap();
    check_eq!(split_died(&results), (vec![2], vec![0, 1, 3, 4, 5]));
    Ok(())
}

fn wait_ready_returns_once_every_worker_is_up() -> TestResult {
    for method in [StartMethod::Forkserver, StartMethod::Spawn] {
        let pool = Pool::builder()
            .processes(3)
            .start_method(method)
            .initializer(set_init, 7)
            .start()
            .unwrap();
        pool.wait_ready(Some(Duration::from_secs(30)))?;
        let workers = pool.workers();
        check_eq!(workers.len(), 3);
        let pids: HashSet<u32> = workers.iter().map(|w| w.pid).collect();
        check_eq!(pids.len(), 3);
        // Ready means the initializer has run.
        check_eq!(pool.apply(read_init, ()).unwrap(), 7);
        pool.close();
        check!(
            matches!(pool.wait_ready(None), Err(PoolError::Closed)),
            "a closed pool is never ready again"
        );
        pool.join().unwrap();
    }
    // Workers that never get ready: the wait ends at its timeout, and the pool goes on.
    let pool = Pool::builder()
        .processes(1)
        .initializer(init_hangs, ())
        .start()
        .unwrap();
    let limit = Duration::from_millis(50);
    let got = pool.wait_ready(Some(limit));
    check!(
        matches!(got, Err(PoolError::Timeout(d)) if d == limit),
        "{got:?}"
    );
    pool.terminate();
    check!(
        matches!(pool.wait_ready(None), Err(PoolError::Terminated)),
        "a terminated pool"
    );
    // Workers that cannot start: the wait is the pool's breakage, not a hang.
    let pool = Pool::builder()
        .processes(2)
        .initializer(failing_init, ())
        .start_intensity(RestartIntensity {
            max_restarts: 2,
            within: Duration::from_secs(60),
        })
        .start()
        .unwrap();
    let got = pool.wait_ready(None);
    check!(matches!(got, Err(PoolError::Broken { .. })), "{got:?}");
    pool.terminate();
    Ok(())
}

fn main() {
    // Restarts and respawns in loops: bounded, whatever a regression does.
    common::cgroup::confine("pool");
    common::run(vec![
        trial(
            "map_in_order_with_the_default_chunksize",
            map_in_order_with_the_default_chunksize,
        ),
        trial(
            "max_rss_per_child_replaces_a_heavy_worker_after_its_task",
            max_rss_per_child_replaces_a_heavy_worker_after_its_task,
        ),
        trial("apply_and_async_results", apply_and_async_results),
        trial(
            "get_with_a_timeout_leaves_the_task_running",
            get_with_a_timeout_leaves_the_task_running,
        ),
        trial(
            "imap_next_with_a_timeout_loses_nothing",
            imap_next_with_a_timeout_loses_nothing,
        ),
        trial(
            "imap_orders_and_imap_unordered_does_not_lose",
            imap_orders_and_imap_unordered_does_not_lose,
        ),
        trial(
            "imap_over_an_endless_input_reads_a_bounded_window",
            imap_over_an_endless_input_reads_a_bounded_window,
        ),
        trial(
            "imap_reports_every_item_of_a_chunk_whose_worker_died",
            imap_reports_every_item_of_a_chunk_whose_worker_died,
        ),
        trial(
            "callbacks_run_with_the_result_or_the_error",
            callbacks_run_with_the_result_or_the_error,
        ),
        trial(
            "submit_and_cancel_a_queued_task",
            submit_and_cancel_a_queued_task,
        ),
        trial(
            "workers_are_named_by_pythons_rules",
            workers_are_named_by_pythons_rules,
        ),
        trial(
            "a_killed_worker_fails_its_task_and_the_pool_goes_on",
            a_killed_worker_fails_its_task_and_the_pool_goes_on,
        ),
        trial(
            "map_results_keeps_every_result_when_a_worker_dies_mid_map",
            map_results_keeps_every_result_when_a_worker_dies_mid_map,
        ),
        trial(
            "wait_ready_returns_once_every_worker_is_up",
            wait_ready_returns_once_every_worker_is_up,
        ),
        trial(
            "a_worker_killed_from_outside_is_replaced",
            a_worker_killed_from_outside_is_replaced,
        ),
        trial(
            "panics_and_unencodable_results_fail_only_their_item",
            panics_and_unencodable_results_fail_only_their_item,
        ),
        trial(
            "plain_data_crosses_as_slabs_with_the_same_results_in_order",
            plain_data_crosses_as_slabs_with_the_same_results_in_order,
        ),
        trial(
            "a_panic_in_a_slab_fails_only_its_item_with_its_index",
            a_panic_in_a_slab_fails_only_its_item_with_its_index,
        ),
        trial(
            "plain_and_serde_tasks_share_a_pool",
            plain_and_serde_tasks_share_a_pool,
        ),
        trial(
            "a_slab_is_cut_to_fit_the_frame_limit",
            a_slab_is_cut_to_fit_the_frame_limit,
        ),
        trial(
            "a_malformed_slab_is_a_typed_error_for_its_chunk",
            a_malformed_slab_is_a_typed_error_for_its_chunk,
        ),
        trial(
            "a_task_past_its_timeout_is_killed_and_fails",
            a_task_past_its_timeout_is_killed_and_fails,
        ),
        trial(
            "a_task_given_to_an_idle_worker_still_times_out",
            a_task_given_to_an_idle_worker_still_times_out,
        ),
        trial(
            "a_poison_task_is_quarantined_and_a_flaky_one_retried",
            a_poison_task_is_quarantined_and_a_flaky_one_retried,
        ),
        trial(
            "the_initializer_runs_in_every_worker",
            the_initializer_runs_in_every_worker,
        ),
        trial(
            "a_failing_initializer_breaks_the_pool_instead_of_respawning_forever",
            a_failing_initializer_breaks_the_pool_instead_of_respawning_forever,
        ),
        trial(
            "max_tasks_per_child_recycles_workers_and_loses_nothing",
            max_tasks_per_child_recycles_workers_and_loses_nothing,
        ),
        trial("bad_input_is_a_clear_error", bad_input_is_a_clear_error),
        trial(
            "close_lets_work_finish_and_terminate_fails_it",
            close_lets_work_finish_and_terminate_fails_it,
        ),
        trial(
            "dropping_the_pool_closes_it_and_pending_results_still_arrive",
            dropping_the_pool_closes_it_and_pending_results_still_arrive,
        ),
        trial("spawned_workers", spawned_workers),
        trial(
            "the_async_api_mirrors_the_blocking_one",
            the_async_api_mirrors_the_blocking_one,
        ),
        trial(
            "frames_over_a_configured_limit_fail_only_their_task",
            frames_over_a_configured_limit_fail_only_their_task,
        ),
        trial(
            "a_map_whose_default_chunks_pass_16_mib_gets_every_result",
            a_map_whose_default_chunks_pass_16_mib_gets_every_result,
        ),
        trial(
            "chunks_cut_by_size_keep_every_items_index",
            chunks_cut_by_size_keep_every_items_index,
        ),
        trial(
            "a_pool_in_a_child_is_named_by_its_counter",
            a_pool_in_a_child_is_named_by_its_counter,
        ),
    ]);
}
