//! Queue and Lock scenarios: primitives hosted by the bench process, used by children
//! started for each round (as shared/bench/python/bench_queue.py and bench_lock.py):
//! `queue_1to1`, `joinable_queue_1to1`, `lock_cross_process`, `lock_contended_2`.

use multiproc::SyncError;
use multiproc::blocking::{Event, Lock, Process, Queue};

use crate::python::Python;
use crate::stamp::{Stamp, Who, finish, mono_ns, reports, secs, serve_if, sync_rounds};
use crate::{Better, Res, Samples, Scenario, detail};

/// Items per round of `queue_1to1` and `joinable_queue_1to1` for multiproc, as many
/// as Python moves ([`PY_QUEUE_ITEMS`]). Both are items/s, from "go" to the end.
const QUEUE_ITEMS: u64 = 100_000;
/// Items per round of the Python queue references (shared/bench's figure).
const PY_QUEUE_ITEMS: usize = 100_000;
/// Acquire/release pairs per round of `lock_cross_process` for multiproc, as many as
/// `python-mplock`'s: a lock in shared memory does one in tens of nanoseconds.
const LOCK_PAIRS: u64 = 1_000_000;
/// Pairs per process of `lock_contended_2` for multiproc, as `python-mplock`'s.
const LOCK_CONTENDED_PAIRS: u64 = 500_000;
/// Pairs per round of `python-manager` (each is two round trips to a server).
const PY_MANAGER_PAIRS: usize = 2000;
/// Untimed pairs a lock child does before "go" (the host's first contact with it).
const LOCK_WARMUP: u64 = 100;
/// Pairs per round of `python-mplock` in `lock_cross_process` (shared/bench's figure).
const PY_MPLOCK_PAIRS: usize = 1_000_000;
/// Pairs per process of `python-mplock` in `lock_contended_2` (shared/bench's figure).
const PY_MPLOCK_CONTENDED_PAIRS: usize = 500_000;

/// The queue's end, Python's `None`: the producer puts it after its items.
const QUEUE_END: u64 = u64::MAX;
/// The queue scenarios' producer, `producer` of shared/bench/python/bench_queue.py:
/// after "go", puts `0..n` and the end; with `joinable`, then waits in `join` and
/// reports when it returned.
fn queue_producer(
    q: Queue<u64>,
    go: Event,
    n: u64,
    joinable: bool,
    res: Queue<Stamp>,
) -> Result<(), SyncError> {
    go.wait(None)?;
    for i in 0..n {
        q.put(&i, true, None)?;
    }
    q.put(&QUEUE_END, true, None)?;
    if joinable {
        q.join()?;
        let t = mono_ns();
        let stamp = Stamp {
            who: Who::ProducerJoined,
            first_ns: t,
            last_ns: t,
            count: n,
            in_order: true,
        };
        res.put(&stamp, true, None)?;
    }
    Ok(())
}

/// The queue scenarios' consumer, `consumer` of bench_queue.py: after "go", gets until
/// the end (with `joinable`, `task_done` for each, the end included), then reports.
fn queue_consumer(
    q: Queue<u64>,
    go: Event,
    joinable: bool,
    res: Queue<Stamp>,
) -> Result<(), SyncError> {
    go.wait(None)?;
    let (mut count, mut in_order, mut first) = (0, true, None);
    loop {
        let x = q.get(true, None)?;
        first.get_or_insert_with(mono_ns);
        if joinable {
            q.task_done()?;
        }
        if x == QUEUE_END {
            break;
        }
        in_order &= x == count;
        count += 1;
    }
    let last = mono_ns();
    let stamp = Stamp {
        who: Who::Consumer,
        first_ns: first.unwrap_or(last),
        last_ns: last,
        count,
        in_order,
    };
    res.put(&stamp, true, None)
}

/// The lock scenarios' child, `hammer` of shared/bench/python/bench_lock.py: `warmup`
/// pairs, then after "go" `n` acquire/release pairs on a lock hosted by the bench
/// process, timed; reports the span.
fn lock_pairs(
    lock: Lock,
    go: Event,
    warmup: u64,
    n: u64,
    res: Queue<Stamp>,
) -> Result<(), SyncError> {
    for _ in 0..warmup {
        lock.acquire(true, None)?;
        lock.release()?;
    }
    go.wait(None)?;
    let t0 = mono_ns();
    for _ in 0..n {
        lock.acquire(true, None)?;
        lock.release()?;
    }
    let stamp = Stamp {
        who: Who::Locker,
        first_ns: t0,
        last_ns: mono_ns(),
        count: n,
        in_order: true,
    };
    res.put(&stamp, true, None)
}

multiproc::register!(queue_producer, queue_consumer, lock_pairs);

/// `queue_1to1` (`joinable`: `joinable_queue_1to1`): a producer child puts
/// [`QUEUE_ITEMS`] `u64`s into a queue the bench process hosts, a consumer child gets
/// them; items/s from "go" (set by the bench process) to the consumer's last `get`,
/// or, with `joinable`, to the later of that and the producer's `join` returning.
pub(crate) fn queue_1to1(py: Option<&Python>, joinable: bool) -> Res {
    let name = if joinable {
        "joinable_queue_1to1"
    } else {
        "queue_1to1"
    };
    let n = QUEUE_ITEMS;
    // The consumer's first `get` to its last, a `#` line.
    let mut first_to_last = Vec::new();
    let mp_once = || -> Res<f64> {
        let (q, go, res) = (
            Queue::<u64>::new(0)?,
            Event::new()?,
            Queue::<Stamp>::new(0)?,
        );
        let mut procs = [
            Process::new(
                queue_producer,
                (q.clone(), go.clone(), n, joinable, res.clone()),
            )
            .daemon(true),
            Process::new(queue_consumer, (q, go.clone(), joinable, res.clone())).daemon(true),
        ];
        for p in &mut procs {
            p.start()?;
        }
        let t0 = mono_ns();
        go.set()?;
        let stamps = reports(&res, 1 + usize::from(joinable), &procs)?;
        finish(&procs)?;
        let consumer = stamps
            .iter()
            .find(|s| s.who == Who::Consumer)
            .ok_or("no report from the consumer")?;
        if consumer.count != n || !consumer.in_order {
            return Err(format!(
                "{name}: the consumer got {} of {n} items, in order: {}",
                consumer.count, consumer.in_order
            )
            .into());
        }
        let end = stamps.iter().map(|s| s.last_ns).max().unwrap_or(t0);
        first_to_last.push(n as f64 / secs(consumer.first_ns, consumer.last_ns));
        Ok(n as f64 / secs(t0, end))
    };
    let mode = if joinable { "joinable_queue" } else { "queue" };
    let servers = vec![(
        "python",
        serve_if(
            py,
            "python",
            "queue_lock.py",
            &[mode, "fork"],
            &[("ITEMS", PY_QUEUE_ITEMS)],
        )?,
    )];
    let sc = Scenario {
        name,
        unit: "items/s",
        better: Better::Higher,
    };
    sync_rounds(&sc, mp_once, servers)?;
    // The warm-up's figure is not one of the samples.
    let detail_samples = Samples(vec![first_to_last.split_off(1.min(first_to_last.len()))]);
    detail(
        &format!("{name} multiproc consumer's first get to last get"),
        "items/s",
        &detail_samples,
    );
    Ok(())
}

/// `lock_cross_process`: a child does [`LOCK_PAIRS`] `acquire` + `release` pairs on a
/// lock the bench process hosts; pairs/s over the child's loop. One lock for the
/// scenario, a fresh child each round.
pub(crate) fn lock_cross_process(py: Option<&Python>) -> Res {
    let lock = Lock::new()?;
    let mp_once = || -> Res<f64> {
        let stamps = run_lockers(&lock, 1, LOCK_WARMUP, LOCK_PAIRS)?;
        Ok(stamps[0].count as f64 / secs(stamps[0].first_ns, stamps[0].last_ns))
    };
    let servers = vec![
        (
            "python-manager",
            serve_if(
                py,
                "python-manager",
                "queue_lock.py",
                &["manager_lock", "fork"],
                &[("N", PY_MANAGER_PAIRS)],
            )?,
        ),
        (
            "python-mplock",
            serve_if(
                py,
                "python-mplock",
                "queue_lock.py",
                &["mplock", "fork"],
                &[("N", PY_MPLOCK_PAIRS)],
            )?,
        ),
    ];
    let sc = Scenario {
        name: "lock_cross_process",
        unit: "pairs/s",
        better: Better::Higher,
    };
    sync_rounds(&sc, mp_once, servers)
}

/// `lock_contended_2`: two children, each [`LOCK_CONTENDED_PAIRS`] pairs on one lock the bench
/// process hosts; total pairs / (last end - first start).
pub(crate) fn lock_contended_2(py: Option<&Python>) -> Res {
    let lock = Lock::new()?;
    let mp_once = || -> Res<f64> {
        let stamps = run_lockers(&lock, 2, 0, LOCK_CONTENDED_PAIRS)?;
        let start = stamps.iter().map(|s| s.first_ns).min().unwrap_or(0);
        let end = stamps.iter().map(|s| s.last_ns).max().unwrap_or(0);
        let total: u64 = stamps.iter().map(|s| s.count).sum();
        Ok(total as f64 / secs(start, end))
    };
    let servers = vec![(
        "python-mplock",
        serve_if(
            py,
            "python-mplock",
            "queue_lock.py",
            &["mplock_contended", "fork"],
            &[("N", PY_MPLOCK_CONTENDED_PAIRS)],
        )?,
    )];
    let sc = Scenario {
        name: "lock_contended_2",
        unit: "pairs/s",
        better: Better::Higher,
    };
    sync_rounds(&sc, mp_once, servers)
}

/// Starts `k` [`lock_pairs`] children on `lock` (`n` pairs each), sets "go", and
/// returns their reports.
fn run_lockers(lock: &Lock, k: usize, warmup: u64, n: u64) -> Res<Vec<Stamp>> {
    let (go, res) = (Event::new()?, Queue::<Stamp>::new(0)?);
    let mut procs: Vec<Process> = (0..k)
        .map(|_| {
            Process::new(
                lock_pairs,
                (lock.clone(), go.clone(), warmup, n, res.clone()),
            )
            .daemon(true)
        })
        .collect();
    for p in &mut procs {
        p.start()?;
    }
    go.set()?;
    let stamps = reports(&res, k, &procs)?;
    finish(&procs)?;
    Ok(stamps)
}
