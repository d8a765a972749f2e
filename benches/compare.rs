//! `cargo bench --bench compare`: multiproc side by side with CPython's `multiprocessing`
//! and with bare syscalls (`raw`), in one run, one line per scenario and reference.
//!
//! ```text
//! cargo bench --bench compare                                   # every scenario
//! cargo bench --bench compare -- spawn_join call_roundtrip      # filters (substrings)
//! cargo bench --bench compare -- pool apply_async imap          # the Pool scenarios
//! cargo bench --bench compare -- queue lock                     # Queue and Lock
//! cargo bench --bench compare -- soak                           # the soak loops
//! ```
//!
//! Each round takes one sample of every implementation in turn, so multiproc and its
//! references share the same noise; figures are medians over the rounds, after a
//! warm-up. What each scenario measures and how to read the lines: benches/README.md.

use std::cell::Cell;
use std::error::Error;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use multiproc::blocking::{
    self, Connection, Event, Lock, Pool, Process, Queue, SharedMemory, SharedMemoryRef, Value, pipe,
};
use multiproc::{
    Actor, Backoff, BoxError, Manager, PoolError, RestartIntensity, StartMethod, Supervisor,
    SupervisorEvent, SupervisorFlags, SyncError, TaskError, function_child,
};

// Cargo would take a `benches/<name>.rs` for a bench target of its own.
#[path = "compare/cgroup.rs"]
mod cgroup;
#[path = "compare/soak.rs"]
mod soak;

type Res<T = ()> = Result<T, Box<dyn Error>>;

/// Set on the bench binary's own `raw` children: which role `main` plays.
const ROLE_ENV: &str = "MULTIPROC_BENCH_ROLE";
/// Restricts the references measured: a comma-separated list (`raw,python`); all by default.
const REFS_ENV: &str = "MULTIPROC_BENCH_REFS";
/// Rounds per scenario (each round samples every implementation once).
const ROUNDS: usize = 9;
/// Processes started and joined per round, per implementation.
const SPAWN_BATCH: usize = 20;
/// Python `spawn` processes per round (about 60 ms each).
const PY_SPAWN_BATCH: usize = 3;
/// Round trips per round.
const CALL_BATCH: usize = 5000;
/// Round trips before the first round.
const CALL_WARMUP: usize = 1000;
/// Messages per round of `stream_1k` (100 MB).
const STREAM_1K_COUNT: usize = 100_000;
/// Messages per round of `stream_1m` (1 GB).
const STREAM_1M_COUNT: usize = 1000;
/// Idle children started for `idle_rss`.
const IDLE_CHILDREN: usize = 20;
/// Children of `tree_1000`, and how many of them are killed.
const TREE_CHILDREN: usize = 1000;
const TREE_KILLS: usize = 100;
/// Kills per round of `restart`.
const RESTART_BATCH: usize = 20;
/// How long a child gets to stop before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Items of `pool_map_1e6` (Python's default chunksize).
const POOL_MAP_ITEMS: u64 = 1_000_000;
/// Items of `pool_map_chunk1` and `imap_unordered_chunk1` (chunksize 1).
const POOL_CHUNK1_ITEMS: u64 = 100_000;
/// `apply_async(..).get()` calls per round of `apply_async_latency`.
const APPLY_BATCH: usize = 2000;
/// Pools started per round of `pool_start` (`python-spawn`: [`PY_SPAWN_BATCH`]).
const POOL_START_BATCH: usize = 10;
/// Workers killed per round of `pool_worker_killed`.
const POOL_KILL_BATCH: usize = 5;
/// How long the killed task would sleep; it is killed long before.
const SLEEPER_SECS: u64 = 30;
/// Bounds every wait of the pool scenarios on something that should come at once.
const POOL_WAIT: Duration = Duration::from_secs(10);
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
/// Increments per round of `value_locked_2proc` (half in each child), as
/// `bench_value.py`'s.
const VALUE_INCS: u64 = 500_000;
/// Bytes written and read per round of `shm_bandwidth`.
const SHM_BYTES: usize = 1 << 20;
/// Operations per round of `manager_dict`, as `bench_lock.py`'s.
const MANAGER_OPS: u64 = 10_000;
/// Pairs per round of `python-manager` (each is two round trips to a server).
const PY_MANAGER_PAIRS: usize = 2000;
/// Untimed pairs a lock child does before "go" (the host's first contact with it).
const LOCK_WARMUP: u64 = 100;
/// Pairs per round of `python-mplock` in `lock_cross_process` (shared/bench's figure).
const PY_MPLOCK_PAIRS: usize = 1_000_000;
/// Pairs per process of `python-mplock` in `lock_contended_2` (shared/bench's figure).
const PY_MPLOCK_CONTENDED_PAIRS: usize = 500_000;
/// Bounds every wait of the queue and lock scenarios for a child's report.
const SYNC_WAIT: Duration = Duration::from_secs(60);
/// The references that a Python script measures.
const PY_REFS: [&str; 4] = ["python", "python-spawn", "python-manager", "python-mplock"];

const SCENARIOS: [&str; 25] = [
    "spawn_join",
    "spawn_join_forkserver",
    "restart",
    "restart_forkserver",
    "tree_1000",
    "call_roundtrip",
    "call_roundtrip_async",
    "stream_1k",
    "stream_1m",
    "idle_rss",
    "pool_map_1e6",
    "pool_map_chunk1",
    "imap_unordered_chunk1",
    "apply_async_latency",
    "pool_start",
    "pool_start_spawn",
    "pool_start_forkserver",
    "pool_worker_killed",
    "queue_1to1",
    "joinable_queue_1to1",
    "lock_cross_process",
    "lock_contended_2",
    "value_locked_2proc",
    "shm_bandwidth",
    "manager_dict",
];

// ---------------------------------------------------------------------------------
// What the multiproc children run.

fn noop() {}

fn idle() {
    multiproc::blocking::wait_for_stop();
}

/// Sends `count` messages of `size` bytes after "go", then waits for "done".
fn stream_source(
    (mut conn, size, count): (Connection, usize, usize),
) -> Result<(), multiproc::connection::Error> {
    let payload = vec![0xA5u8; size];
    conn.recv::<u8>()?;
    for _ in 0..count {
        conn.send_bytes(&payload)?;
    }
    conn.recv::<u8>()?;
    Ok(())
}

/// The pool scenarios' task, Python's `f(x) = x*x`.
fn sq(x: u64) -> u64 {
    x * x
}

/// Writes the worker's pid to `path` (a rename, so that it appears whole), then
/// sleeps; `pool_worker_killed` polls for the file and kills the worker.
fn pid_then_sleep(running: Queue<(usize, u32)>, task: usize) -> u32 {
    let pid = std::process::id();
    let _ = running.put(&(task, pid), true, None);
    // The workload: a task that is still running when its worker is killed.
    std::thread::sleep(Duration::from_secs(SLEEPER_SECS));
    pid
}

/// What a queue or lock child reports when it is done: which child, its first and
/// last instants (`CLOCK_MONOTONIC`, shared by every process, in ns), and its count.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Stamp {
    who: Who,
    first_ns: u64,
    last_ns: u64,
    count: u64,
    /// For the consumer: whether every item came in the order it was put.
    in_order: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Who {
    /// The queue's consumer: first and last `get`.
    Consumer,
    /// The joinable queue's producer: when its `join` returned.
    ProducerJoined,
    /// A lock child: before its first and after its last pair.
    Locker,
    /// A `Value` child: before its first and after its last increment.
    Incrementer,
    /// A shared-memory writer: before and after its write.
    Writer,
}

/// The queue's end, Python's `None`: the producer puts it after its items.
const QUEUE_END: u64 = u64::MAX;

/// `CLOCK_MONOTONIC` in ns: Python's `perf_counter`, comparable between processes.
fn mono_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

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

/// After "go", `n` increments of `v` under its lock, timed; reports the span.
fn value_incs(v: Value<u64>, go: Event, n: u64, res: Queue<Stamp>) -> Result<(), Box<dyn Error>> {
    go.wait(None)?;
    let t0 = mono_ns();
    for _ in 0..n {
        *v.lock()? += 1;
    }
    let stamp = Stamp {
        who: Who::Incrementer,
        first_ns: t0,
        last_ns: mono_ns(),
        count: n,
        in_order: true,
    };
    Ok(res.put(&stamp, true, None)?)
}

/// Writes `size` bytes of 7 into the block, timed; reports the span.
fn shm_write(block: SharedMemoryRef, size: usize, res: Queue<Stamp>) -> Result<(), Box<dyn Error>> {
    let block = block.open()?;
    let data = vec![7u8; size];
    let t0 = mono_ns();
    block.write(0, &data)?;
    let stamp = Stamp {
        who: Who::Writer,
        first_ns: t0,
        last_ns: mono_ns(),
        count: size as u64,
        in_order: true,
    };
    Ok(res.put(&stamp, true, None)?)
}

multiproc::register!(
    noop,
    idle,
    stream_source,
    sq,
    pid_then_sleep,
    queue_producer,
    queue_consumer,
    lock_pairs,
    value_incs,
    shm_write
);

/// Answers each number with itself.
struct Echo;

impl Actor for Echo {
    type Args = ();
    type Msg = u64;
    type Reply = u64;

    async fn start((): ()) -> Result<Self, BoxError> {
        Ok(Echo)
    }

    async fn handle(&mut self, n: u64) -> u64 {
        n
    }
}

multiproc::register_actor!(Echo);

// ---------------------------------------------------------------------------------
// Entry.

fn main() -> Res {
    multiproc::init();
    if let Ok(role) = std::env::var(ROLE_ENV) {
        if let Some(loop_name) = role.strip_prefix("soak-") {
            return soak::child(loop_name);
        }
        return raw_role(&role);
    }
    // `cargo bench` passes `--bench`; `cargo test --all-targets` and nextest's listing
    // run this binary without it, and must not start a ten-minute benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let started = Instant::now();
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    // A soak scenario takes minutes: only a filter that names `soak` selects one, so
    // that `pool` or `restart` still selects the quick scenarios alone.
    let matches =
        |s: &str, f: &str| s.contains(f) && (!s.starts_with("soak") || f.contains("soak"));
    let selected: Vec<&str> = SCENARIOS
        .iter()
        .chain(&soak::SCENARIOS)
        .copied()
        .filter(|s| filters.is_empty() || filters.iter().any(|f| matches(s, f)))
        .collect();
    if selected.is_empty() {
        return Err(format!(
            "no scenario matches {filters:?}; scenarios: {} {}",
            SCENARIOS.join(" "),
            soak::SCENARIOS.join(" ")
        )
        .into());
    }
    let any_py = PY_REFS.iter().any(|r| wanted(r));
    let py = if any_py { Python::detect() } else { None };
    println!(
        "# compare: {} CPUs, rounds={ROUNDS}, references={}, python: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::var(REFS_ENV).unwrap_or_else(|_| "all".into()),
        py.as_ref().map_or("-", |p| p.version.as_str())
    );
    if py.is_none() && any_py {
        println!("# python3 not found: skipping python references");
    }
    let py = py.as_ref();
    let has = |s: &str| selected.contains(&s);
    let timed = |name: &str, run: &dyn Fn() -> Res| -> Res {
        let t0 = Instant::now();
        run()?;
        println!("# {name} took {:.1} s", t0.elapsed().as_secs_f64());
        Ok(())
    };
    if has("spawn_join") {
        timed("spawn_join", &|| spawn_join(py))?;
    }
    if has("spawn_join_forkserver") {
        timed("spawn_join_forkserver", &|| spawn_join_forkserver(py))?;
    }
    if has("restart") {
        timed("restart", &|| restart(py, StartMethod::Spawn))?;
    }
    if has("restart_forkserver") {
        timed("restart_forkserver", &|| {
            restart(py, StartMethod::Forkserver)
        })?;
    }
    if has("tree_1000") {
        timed("tree_1000", &tree_1000)?;
    }
    // The blocking round trip's median, which `apply_async_latency` is set against.
    let roundtrip_us = Cell::new(None);
    if has("call_roundtrip") || has("call_roundtrip_async") {
        timed("call_roundtrip", &|| {
            roundtrip_us.set(call_roundtrip(
                py,
                has("call_roundtrip"),
                has("call_roundtrip_async"),
            )?);
            Ok(())
        })?;
    }
    if has("stream_1k") {
        timed("stream_1k", &|| {
            stream("stream_1k", 1024, STREAM_1K_COUNT, py)
        })?;
    }
    if has("stream_1m") {
        timed("stream_1m", &|| {
            stream("stream_1m", 1 << 20, STREAM_1M_COUNT, py)
        })?;
    }
    if has("idle_rss") {
        timed("idle_rss", &|| idle_rss(py))?;
    }
    if has("pool_map_1e6") {
        timed("pool_map_1e6", &|| {
            pool_map("pool_map_1e6", POOL_MAP_ITEMS, None, py)
        })?;
    }
    if has("pool_map_chunk1") {
        timed("pool_map_chunk1", &|| {
            pool_map("pool_map_chunk1", POOL_CHUNK1_ITEMS, Some(1), py)
        })?;
    }
    if has("imap_unordered_chunk1") {
        timed("imap_unordered_chunk1", &|| imap_unordered_chunk1(py))?;
    }
    if has("apply_async_latency") {
        timed("apply_async_latency", &|| {
            apply_async_latency(py, roundtrip_us.get())
        })?;
    }
    if has("pool_start") {
        timed("pool_start", &|| pool_start(py, "pool_start", None))?;
    }
    if has("pool_start_spawn") {
        timed("pool_start_spawn", &|| {
            pool_start(py, "pool_start_spawn", Some(StartMethod::Spawn))
        })?;
    }
    if has("pool_start_forkserver") {
        timed("pool_start_forkserver", &|| {
            pool_start(py, "pool_start_forkserver", Some(StartMethod::Forkserver))
        })?;
    }
    if has("pool_worker_killed") {
        timed("pool_worker_killed", &|| pool_worker_killed(py))?;
    }
    if has("queue_1to1") {
        timed("queue_1to1", &|| queue_1to1(py, false))?;
    }
    if has("joinable_queue_1to1") {
        timed("joinable_queue_1to1", &|| queue_1to1(py, true))?;
    }
    if has("lock_cross_process") {
        timed("lock_cross_process", &|| lock_cross_process(py))?;
    }
    if has("lock_contended_2") {
        timed("lock_contended_2", &|| lock_contended_2(py))?;
    }
    if has("value_locked_2proc") {
        timed("value_locked_2proc", &|| value_locked_2proc(py))?;
    }
    if has("shm_bandwidth") {
        timed("shm_bandwidth", &|| shm_bandwidth(py))?;
    }
    if has("manager_dict") {
        timed("manager_dict", &|| manager_dict(py))?;
    }
    for scenario in soak::SCENARIOS.into_iter().filter(|s| has(s)) {
        soak::run(scenario)?;
    }
    println!("# total time: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Whether `reference` is measured: all are, unless [`REFS_ENV`] lists some.
fn wanted(reference: &str) -> bool {
    static REFS: OnceLock<Option<Vec<String>>> = OnceLock::new();
    REFS.get_or_init(|| {
        std::env::var(REFS_ENV)
            .ok()
            .map(|v| v.split(',').map(|r| r.trim().to_string()).collect())
    })
    .as_ref()
    .is_none_or(|refs| refs.iter().any(|r| r == reference))
}

// ---------------------------------------------------------------------------------
// Scenarios.

fn spawn_join(py: Option<&Python>) -> Res {
    let exe = std::env::current_exe()?;
    let raw_once = || -> Res<f64> {
        let t0 = Instant::now();
        let status = Command::new(&exe).env(ROLE_ENV, "raw-spawn").status()?;
        let dt = ms(t0);
        if !status.success() {
            return Err(format!("raw child failed: {status}").into());
        }
        Ok(dt)
    };
    let mp_once = || -> Res<(f64, f64)> {
        let t0 = Instant::now();
        let mut p = Process::new(noop, ());
        p.start()?;
        let started = ms(t0);
        let reason = p.join()?;
        let total = ms(t0);
        if reason.exit_code() != 0 {
            return Err(format!("multiproc child ended with {reason}").into());
        }
        Ok((total, started))
    };
    let raw_on = wanted("raw");
    let mut fork = py
        .filter(|_| wanted("python"))
        .map(|py| py.serve("spawn_join.py", &["fork"], &[("N", SPAWN_BATCH)]))
        .transpose()?;
    let mut spawn = py
        .filter(|_| wanted("python-spawn"))
        .map(|py| py.serve("spawn_join.py", &["spawn"], &[("N", PY_SPAWN_BATCH)]))
        .transpose()?;
    for _ in 0..3 {
        mp_once()?;
        if raw_on {
            raw_once()?;
        }
    }
    let (mut mp, mut mp_start, mut raw) =
        (Samples::default(), Samples::default(), Samples::default());
    let (mut py_fork, mut py_fork_start, mut py_spawn) =
        (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        let (totals, starts): (Vec<f64>, Vec<f64>) = (0..SPAWN_BATCH)
            .map(|_| mp_once())
            .collect::<Res<Vec<_>>>()?
            .into_iter()
            .unzip();
        mp.push(totals);
        mp_start.push(starts);
        if raw_on {
            raw.push((0..SPAWN_BATCH).map(|_| raw_once()).collect::<Res<_>>()?);
        }
        if let Some(s) = fork.as_mut() {
            let rep = s.rep()?;
            py_fork.push(rep.samples.clone());
            py_fork_start.push(rep.series("start")?);
        }
        if let Some(s) = spawn.as_mut() {
            py_spawn.push(s.rep()?.samples);
        }
    }
    for s in [fork, spawn].into_iter().flatten() {
        s.finish()?;
    }
    let sc = Scenario {
        name: "spawn_join",
        unit: "ms",
        better: Better::Lower,
    };
    detail("spawn_join multiproc start() alone", "ms", &mp_start);
    detail("spawn_join python start() alone", "ms", &py_fork_start);
    sc.report("python", &mp, &py_fork);
    sc.report("python-spawn", &mp, &py_spawn);
    sc.report("raw", &mp, &raw);
    Ok(())
}

/// Start + join with the forkserver start method, against Python's.
fn spawn_join_forkserver(py: Option<&Python>) -> Res {
    let mp_once = || -> Res<f64> {
        let t0 = Instant::now();
        let mut p = Process::new(noop, ()).start_method(StartMethod::Forkserver);
        p.start()?;
        let reason = p.join()?;
        if reason.exit_code() != 0 {
            return Err(format!("multiproc child ended with {reason}").into());
        }
        Ok(ms(t0))
    };
    let mut server = py
        .filter(|_| wanted("python"))
        .map(|py| py.serve("spawn_join.py", &["forkserver"], &[("N", SPAWN_BATCH)]))
        .transpose()?;
    for _ in 0..3 {
        mp_once()?;
    }
    let (mut mp, mut python) = (Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        mp.push((0..SPAWN_BATCH).map(|_| mp_once()).collect::<Res<_>>()?);
        if let Some(s) = server.as_mut() {
            python.push(s.rep()?.samples);
        }
    }
    if let Some(s) = server {
        s.finish()?;
    }
    let sc = Scenario {
        name: "spawn_join_forkserver",
        unit: "ms",
        better: Better::Lower,
    };
    sc.report("python", &mp, &python);
    Ok(())
}

/// SIGKILL a supervised child, until its replacement is ready (`Restarted`).
fn restart(py: Option<&Python>, method: StartMethod) -> Res {
    let forkserver = method == StartMethod::Forkserver;
    let name = if forkserver {
        "restart_forkserver"
    } else {
        "restart"
    };
    let flags = SupervisorFlags {
        start_method: method,
        // Restart as often as the bench kills: this measures the restart, not intensity.
        intensity: RestartIntensity {
            max_restarts: u32::MAX,
            within: Duration::from_secs(1),
        },
        backoff: Backoff::NONE,
        ..SupervisorFlags::default()
    };
    let supervisor = Supervisor::new(flags).child(function_child("victim", idle, ())?);
    let mut events = blocking::Events(supervisor.events());
    let sup = blocking::SupervisorRef::start(supervisor)?;
    let mut pid = match events.next() {
        Some(SupervisorEvent::ChildStarted { pid, .. }) => pid,
        other => return Err(format!("expected the first start, got {other:?}").into()),
    };
    // (kill to replacement ready, kill to the exit seen by the supervisor)
    let mut mp_once = || -> Res<(f64, f64)> {
        let t0 = Instant::now();
        kill(pid)?;
        let mut seen = 0.0;
        for event in events.by_ref() {
            match event {
                SupervisorEvent::ChildExited { .. } => seen = ms(t0),
                SupervisorEvent::Restarted { pid: new, .. } => {
                    pid = new;
                    return Ok((ms(t0), seen));
                }
                _ => {}
            }
        }
        Err("the supervisor ended".into())
    };
    let raw_on = wanted("raw");
    let mut current = if raw_on { Some(ready_raw()?) } else { None };
    let mut raw_once = || -> Res<Option<f64>> {
        let Some(child) = current.as_mut() else {
            return Ok(None);
        };
        let t0 = Instant::now();
        child.child.kill()?;
        child.child.wait()?;
        *child = ready_raw()?;
        Ok(Some(ms(t0)))
    };
    let mut python = py
        .filter(|_| wanted("python"))
        .map(|py| py.serve("restart.py", &[], &[("N", RESTART_BATCH / 4)]))
        .transpose()?;
    for _ in 0..3 {
        mp_once()?;
        raw_once()?;
    }
    let (mut mp, mut mp_seen) = (Samples::default(), Samples::default());
    let (mut raw, mut py_s) = (Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        let (ready, seen): (Vec<f64>, Vec<f64>) = (0..RESTART_BATCH)
            .map(|_| mp_once())
            .collect::<Res<Vec<_>>>()?
            .into_iter()
            .unzip();
        mp.push(ready);
        mp_seen.push(seen);
        if raw_on {
            let samples: Vec<f64> = (0..RESTART_BATCH)
                .filter_map(|_| raw_once().transpose())
                .collect::<Res<_>>()?;
            raw.push(samples);
        }
        if let Some(s) = python.as_mut() {
            py_s.push(s.rep()?.samples);
        }
    }
    if let Some(s) = python {
        s.finish()?;
    }
    sup.shutdown();
    let sc = Scenario {
        name,
        unit: "ms",
        better: Better::Lower,
    };
    // Python's executor only reports the death; this is multiproc's report of it.
    detail(
        &format!("{name} multiproc kill to ChildExited"),
        "ms",
        &mp_seen,
    );
    sc.report("raw", &mp, &raw);
    sc.report("python", &mp, &py_s);
    Ok(())
}

/// A supervisor of 1000 idle children: start them all, kill 100 of them, wait until
/// all are back; wall times and memory.
fn tree_1000() -> Res {
    let flags = SupervisorFlags {
        intensity: RestartIntensity {
            max_restarts: u32::MAX,
            within: Duration::from_secs(1),
        },
        backoff: Backoff::NONE,
        ..SupervisorFlags::default()
    };
    let rss_before = proc_status("self", "VmRSS")?;
    let mut supervisor = Supervisor::new(flags);
    for i in 0..TREE_CHILDREN {
        supervisor = supervisor.child(function_child(format!("w{i}"), idle, ())?);
    }
    let mut events = blocking::Events(supervisor.events());
    let t0 = Instant::now();
    let sup = blocking::SupervisorRef::start(supervisor)?;
    let started = ms(t0);
    let rss_after = proc_status("self", "VmRSS")?;
    let children = sup.which_children()?;
    let pids: Vec<u32> = children.iter().filter_map(|c| c.pid).collect();
    if pids.len() != TREE_CHILDREN {
        return Err(format!("{} of {TREE_CHILDREN} children run", pids.len()).into());
    }
    let rss: Vec<f64> = pids
        .iter()
        .step_by(TREE_CHILDREN / 20)
        .map(|p| proc_status(&p.to_string(), "VmRSS"))
        .collect::<Res<_>>()?;
    let anon: Vec<f64> = pids
        .iter()
        .step_by(TREE_CHILDREN / 20)
        .map(|p| proc_status(&p.to_string(), "RssAnon"))
        .collect::<Res<_>>()?;
    // Shared pages (the binary, libc) count in each child's RSS; PSS divides them
    // among the processes that share them: the memory a child really adds.
    let pss: Vec<f64> = pids
        .iter()
        .step_by(TREE_CHILDREN / 20)
        .map(|p| proc_field(&p.to_string(), "smaps_rollup", "Pss"))
        .collect::<Res<_>>()?;
    // A fixed, spread-out choice of victims (every tenth child, shifted).
    let victims: Vec<u32> = pids
        .iter()
        .skip(3)
        .step_by(TREE_CHILDREN / TREE_KILLS)
        .copied()
        .collect();
    let t1 = Instant::now();
    for &pid in &victims {
        kill(pid)?;
    }
    let mut back = 0;
    for event in events.by_ref() {
        if matches!(event, SupervisorEvent::Restarted { .. }) {
            back += 1;
            if back == victims.len() {
                break;
            }
        }
    }
    let recovered = ms(t1);
    let active = sup.count_children()?.active;
    let t2 = Instant::now();
    sup.shutdown();
    let stopped = ms(t2);
    if active != TREE_CHILDREN {
        return Err(format!("{active} of {TREE_CHILDREN} children run after the restarts").into());
    }
    println!("tree_1000: multiproc={} ms", num(started + recovered));
    println!(
        "# tree_1000: start {TREE_CHILDREN}={} ms, kill {} and all back={} ms, shutdown={} ms",
        num(started),
        victims.len(),
        num(recovered),
        num(stopped)
    );
    println!(
        "# tree_1000: parent RSS {} KiB (+{} KiB per child); idle child RSS median {} KiB (RssAnon {} KiB, PSS {} KiB), target <= 4096 KiB",
        num(rss_after),
        num((rss_after - rss_before) / TREE_CHILDREN as f64),
        num(median(&rss)),
        num(median(&anon)),
        num(median(&pss))
    );
    Ok(())
}

/// A raw replacement worker that has said it is ready.
fn ready_raw() -> Res<RawChild> {
    let mut child = RawChild::start("raw-ready", &[])?;
    let mut byte = [0u8; 1];
    child.sock.read_exact(&mut byte)?;
    Ok(child)
}

fn kill(pid: u32) -> Res {
    let pid = rustix::process::Pid::from_raw(pid as i32).ok_or("bad pid")?;
    rustix::process::kill_process(pid, rustix::process::Signal::KILL)?;
    Ok(())
}

/// Returns the median blocking round trip (µs), when it was measured.
fn call_roundtrip(py: Option<&Python>, blocking: bool, asynchronous: bool) -> Res<Option<f64>> {
    // A daemon, so that an early error cannot leave it running: at exit, daemon
    // children are stopped while the others are joined (they never end by themselves).
    let mut p = Process::actor::<Echo>(()).daemon(true);
    p.start()?;
    let echo = p.actor_ref::<Echo>();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mp_batch = |n: usize| -> Res<f64> {
        let t0 = Instant::now();
        for i in 0..n as u64 {
            check_echo(i, echo.call(i)?)?;
        }
        Ok(us(t0) / n as f64)
    };
    let async_batch = |n: usize| -> Res<f64> {
        rt.block_on(async {
            let t0 = Instant::now();
            for i in 0..n as u64 {
                check_echo(i, echo.0.call(i).await?)?;
            }
            Ok(us(t0) / n as f64)
        })
    };
    let mut raw = if wanted("raw") {
        Some(RawChild::start("raw-echo", &[])?)
    } else {
        None
    };
    let mut raw_batch = |n: usize| -> Res<Option<f64>> {
        let Some(raw) = raw.as_mut() else {
            return Ok(None);
        };
        let mut buf = [0u8; 8];
        let t0 = Instant::now();
        for i in 0..n as u64 {
            raw.sock.write_all(&i.to_le_bytes())?;
            raw.sock.read_exact(&mut buf)?;
            check_echo(i, u64::from_le_bytes(buf))?;
        }
        Ok(Some(us(t0) / n as f64))
    };
    let mut server = py
        .filter(|_| wanted("python"))
        .map(|py| py.serve("pipe_roundtrip.py", &["fork"], &[("ITERS", CALL_BATCH)]))
        .transpose()?;
    if blocking {
        mp_batch(CALL_WARMUP)?;
    }
    if asynchronous {
        async_batch(CALL_WARMUP)?;
    }
    raw_batch(CALL_WARMUP)?;
    let (mut mp, mut mp_async) = (Samples::default(), Samples::default());
    let (mut raw_s, mut python) = (Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        if blocking {
            mp.push(vec![mp_batch(CALL_BATCH)?]);
        }
        if asynchronous {
            mp_async.push(vec![async_batch(CALL_BATCH)?]);
        }
        if let Some(v) = raw_batch(CALL_BATCH)? {
            raw_s.push(vec![v]);
        }
        if let Some(s) = server.as_mut() {
            python.push(s.rep()?.samples);
        }
    }
    if let Some(raw) = raw {
        raw.finish()?;
    }
    if let Some(s) = server {
        s.finish()?;
    }
    p.stop(STOP_TIMEOUT)?;
    for (on, name, samples) in [
        (blocking, "call_roundtrip", &mp),
        (asynchronous, "call_roundtrip_async", &mp_async),
    ] {
        if on {
            let sc = Scenario {
                name,
                unit: "us",
                better: Better::Lower,
            };
            sc.report("python", samples, &python);
            sc.report("raw", samples, &raw_s);
        }
    }
    Ok(blocking.then(|| median(&mp.all())))
}

fn check_echo(sent: u64, got: u64) -> Res {
    if sent != got {
        return Err(format!("echo answered {got} to {sent}").into());
    }
    Ok(())
}

fn stream(name: &'static str, size: usize, count: usize, py: Option<&Python>) -> Res {
    let mp_once = || -> Res<f64> {
        let (mut conn, theirs) = pipe(true)?;
        let mut p = Process::new(stream_source, (theirs, size, count));
        p.start()?;
        let mut buf = Vec::with_capacity(size);
        let t0 = Instant::now();
        conn.send(&1u8)?;
        for _ in 0..count {
            conn.recv_bytes_into(&mut buf)?;
            check_len(buf.len(), size)?;
        }
        let dt = t0.elapsed().as_secs_f64();
        conn.send(&2u8)?;
        let reason = p.join()?;
        if reason.exit_code() != 0 {
            return Err(format!("multiproc stream child ended with {reason}").into());
        }
        Ok((size * count) as f64 / dt / 1e6)
    };
    let raw_once = || -> Res<f64> {
        let mut c = RawChild::start(
            "raw-stream",
            &[("BENCH_SIZE", size), ("BENCH_COUNT", count)],
        )?;
        let mut byte = [0u8; 1];
        c.sock.read_exact(&mut byte)?; // the child is running
        let mut buf = vec![0u8; size];
        let mut header = [0u8; 4];
        let t0 = Instant::now();
        c.sock.write_all(b"g")?;
        for _ in 0..count {
            c.sock.read_exact(&mut header)?;
            let len = u32::from_be_bytes(header) as usize;
            if len > buf.len() {
                buf.resize(len, 0);
            }
            c.sock.read_exact(&mut buf[..len])?;
            check_len(len, size)?;
        }
        let dt = t0.elapsed().as_secs_f64();
        c.sock.write_all(b"d")?;
        c.finish()?;
        Ok((size * count) as f64 / dt / 1e6)
    };
    let raw_on = wanted("raw");
    let mut server = py
        .filter(|_| wanted("python"))
        .map(|py| {
            py.serve(
                "stream.py",
                &[&size.to_string(), &count.to_string(), "fork"],
                &[],
            )
        })
        .transpose()?;
    mp_once()?;
    if raw_on {
        raw_once()?;
    }
    let (mut mp, mut raw, mut python) =
        (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        mp.push(vec![mp_once()?]);
        if raw_on {
            raw.push(vec![raw_once()?]);
        }
        if let Some(s) = server.as_mut() {
            python.push(s.rep()?.samples);
        }
    }
    if let Some(s) = server {
        s.finish()?;
    }
    let sc = Scenario {
        name,
        unit: "MB/s",
        better: Better::Higher,
    };
    sc.report("python", &mp, &python);
    sc.report("raw", &mp, &raw);
    Ok(())
}

fn check_len(got: usize, want: usize) -> Res {
    if got != want {
        return Err(format!("received {got} bytes, expected {want}").into());
    }
    Ok(())
}

fn idle_rss(py: Option<&Python>) -> Res {
    let mut warm = Process::new(idle, ()).daemon(true);
    warm.start()?;
    warm.stop(STOP_TIMEOUT)?;
    let before = proc_status("self", "VmRSS")?;
    let mut children = Vec::with_capacity(IDLE_CHILDREN);
    for _ in 0..IDLE_CHILDREN {
        let mut p = Process::new(idle, ()).daemon(true);
        p.start()?;
        children.push(p);
    }
    // Each child answered its handshake before `start` returned: it is set up and
    // about to wait, so there is nothing to let settle.
    let after = proc_status("self", "VmRSS")?;
    let mut rss = Vec::new();
    let mut anon = Vec::new();
    for p in &children {
        let pid = p.pid().ok_or("a started child has no pid")?.to_string();
        rss.push(proc_status(&pid, "VmRSS")?);
        anon.push(proc_status(&pid, "RssAnon")?);
    }
    for p in &children {
        p.stop(STOP_TIMEOUT)?;
    }
    let child = median(&rss);
    let per_child = (after - before) / IDLE_CHILDREN as f64;
    println!("# idle_rss: child={child:.0} KiB parent_per_child={per_child:.0} KiB");
    println!(
        "# idle_rss multiproc: child RssAnon={:.0} KiB n={IDLE_CHILDREN}",
        median(&anon)
    );
    let Some(py) = py.filter(|_| wanted("python")) else {
        return Ok(());
    };
    let fork = py.once("idle_rss.py", &["fork"], &[("N", IDLE_CHILDREN)])?;
    let spawn = py.once("idle_rss.py", &["spawn"], &[("N", PY_SPAWN_BATCH)])?;
    for (method, r) in [("fork", &fork), ("spawn", &spawn)] {
        println!(
            "# idle_rss python ({method}): child={:.0} KiB child RssAnon={:.0} KiB parent_per_child={:.0} KiB n={:.0}",
            r.sample()?,
            r.number("child_anon")?,
            r.number("parent_per_child")?,
            r.number("n")?
        );
    }
    let reference = fork.sample()?;
    println!(
        "idle_rss vs python: multiproc={child:.0} KiB reference={reference:.0} KiB ratio={:.2}",
        reference / child
    );
    Ok(())
}

// ---------------------------------------------------------------------------------
// Pool scenarios: `Pool(2)` with `sq`, Python's `f(x) = x*x`.

/// `Pool(2).map` over `0..items`, in Python's default chunks or in `chunksize`; one
/// pool for the whole scenario, as the Python script keeps one.
fn pool_map(name: &'static str, items: u64, chunksize: Option<usize>, py: Option<&Python>) -> Res {
    let pool = Pool::new(2)?;
    pool.map(sq, 0..1000u64)?;
    let mp_once = || -> Res<f64> {
        let t0 = Instant::now();
        let out = match chunksize {
            Some(c) => pool.map_chunked(sq, 0..items, c)?,
            None => pool.map(sq, 0..items)?,
        };
        let dt = t0.elapsed().as_secs_f64();
        if out.len() as u64 != items || out.iter().zip(0..).any(|(&v, x)| v != x * x) {
            return Err(format!("{name}: wrong results ({} of {items})", out.len()).into());
        }
        Ok(items as f64 / dt)
    };
    let env = [("N", items as usize), ("CHUNKSIZE", chunksize.unwrap_or(0))];
    pool_rounds(name, &pool, py, "map", &env, &mp_once)
}

/// The rounds of a pool throughput scenario: `mp_once` against `pool.py MODE fork`,
/// then the pool is closed and joined.
fn pool_rounds(
    name: &'static str,
    pool: &Pool,
    py: Option<&Python>,
    mode: &str,
    env: &[(&str, usize)],
    mp_once: &dyn Fn() -> Res<f64>,
) -> Res {
    let mut server = py
        .filter(|_| wanted("python"))
        .map(|py| py.serve("pool.py", &[mode, "fork"], env))
        .transpose()?;
    mp_once()?;
    let (mut mp, mut python) = (Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        mp.push(vec![mp_once()?]);
        if let Some(s) = server.as_mut() {
            python.push(s.rep()?.samples);
        }
    }
    if let Some(s) = server {
        s.finish()?;
    }
    pool.close();
    pool.join()?;
    let sc = Scenario {
        name,
        unit: "tasks/s",
        better: Better::Higher,
    };
    sc.report("python", &mp, &python);
    Ok(())
}

/// `imap_unordered` over `0..1e5` in chunks of 1, every result consumed (summed).
fn imap_unordered_chunk1(py: Option<&Python>) -> Res {
    let n = POOL_CHUNK1_ITEMS;
    let pool = Pool::new(2)?;
    pool.map(sq, 0..1000u64)?;
    let mp_once = || -> Res<f64> {
        let t0 = Instant::now();
        let sum = pool
            .imap_unordered(sq, 0..n, 1)
            .sum::<Result<u64, PoolError>>()?;
        let dt = t0.elapsed().as_secs_f64();
        let want = (n - 1) * n * (2 * n - 1) / 6;
        if sum != want {
            return Err(format!("imap_unordered summed to {sum}, not {want}").into());
        }
        Ok(n as f64 / dt)
    };
    let env = [("N", n as usize), ("CHUNKSIZE", 1)];
    pool_rounds(
        "imap_unordered_chunk1",
        &pool,
        py,
        "imap_unordered",
        &env,
        &mp_once,
    )
}

/// `apply_async(sq, i).get()` one at a time; `roundtrip_us` is this run's
/// `call_roundtrip`, if it ran.
fn apply_async_latency(py: Option<&Python>, roundtrip_us: Option<f64>) -> Res {
    let pool = Pool::new(2)?;
    pool.map(sq, 0..1000u64)?;
    let batch = |n: usize| -> Res<f64> {
        let t0 = Instant::now();
        for i in 0..n as u64 {
            check_square(i, pool.apply_async(sq, i).get(None)?)?;
        }
        Ok(us(t0) / n as f64)
    };
    let mut server = py
        .filter(|_| wanted("python"))
        .map(|py| {
            py.serve(
                "pool.py",
                &["apply_async", "fork"],
                &[("ITERS", APPLY_BATCH)],
            )
        })
        .transpose()?;
    batch(APPLY_BATCH)?;
    let (mut mp, mut python) = (Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        mp.push(vec![batch(APPLY_BATCH)?]);
        if let Some(s) = server.as_mut() {
            python.push(s.rep()?.samples);
        }
    }
    if let Some(s) = server {
        s.finish()?;
    }
    pool.close();
    pool.join()?;
    let sc = Scenario {
        name: "apply_async_latency",
        unit: "us",
        better: Better::Lower,
    };
    sc.report("python", &mp, &python);
    if let Some(rt) = roundtrip_us {
        let apply = median(&mp.all());
        println!(
            "# apply_async_latency vs call_roundtrip (this run): {} us / {} us = {:.2}x, target <= 2x",
            num(apply),
            num(rt),
            apply / rt
        );
    }
    Ok(())
}

fn check_square(x: u64, got: u64) -> Res {
    if got != x * x {
        return Err(format!("sq({x}) answered {got}").into());
    }
    Ok(())
}

/// `Pool(2)` built and its first `apply` answered; then `terminate` + `join`, timed
/// apart.
/// `pool_start` uses the pool's default start method (the forkserver) against Python's
/// default (fork) and spawn; `pool_start_spawn` the spawn method against Python's fork;
/// `pool_start_forkserver` the forkserver against Python's forkserver.
fn pool_start(py: Option<&Python>, name: &'static str, method: Option<StartMethod>) -> Res {
    let forkserver = name == "pool_start_forkserver";
    // (start to first result, terminate + join)
    let mp_once = || -> Res<(f64, f64)> {
        let t0 = Instant::now();
        let builder = Pool::builder().processes(2);
        let builder = match method {
            Some(method) => builder.start_method(method),
            None => builder,
        };
        let pool = builder.start()?;
        let got = pool.apply(sq, 3)?;
        let started = ms(t0);
        check_square(3, got)?;
        let t1 = Instant::now();
        pool.terminate();
        pool.join()?;
        Ok((started, ms(t1)))
    };
    // `python` is Python's own start method for each: fork, or forkserver.
    let mut python = py
        .filter(|_| wanted("python"))
        .map(|py| {
            let method = if forkserver { "forkserver" } else { "fork" };
            py.serve("pool.py", &["start", method], &[("N", POOL_START_BATCH)])
        })
        .transpose()?;
    let mut spawn = py
        .filter(|_| wanted("python-spawn") && name == "pool_start")
        .map(|py| py.serve("pool.py", &["start", "spawn"], &[("N", PY_SPAWN_BATCH)]))
        .transpose()?;
    for _ in 0..3 {
        mp_once()?;
    }
    let (mut mp, mut mp_stop) = (Samples::default(), Samples::default());
    let (mut py_s, mut py_stop, mut py_spawn) =
        (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        let (starts, stops): (Vec<f64>, Vec<f64>) = (0..POOL_START_BATCH)
            .map(|_| mp_once())
            .collect::<Res<Vec<_>>>()?
            .into_iter()
            .unzip();
        mp.push(starts);
        mp_stop.push(stops);
        if let Some(s) = python.as_mut() {
            let rep = s.rep()?;
            py_s.push(rep.samples.clone());
            py_stop.push(rep.series("shutdown")?);
        }
        if let Some(s) = spawn.as_mut() {
            py_spawn.push(s.rep()?.samples);
        }
    }
    for s in [python, spawn].into_iter().flatten() {
        s.finish()?;
    }
    let sc = Scenario {
        name,
        unit: "ms",
        better: Better::Lower,
    };
    detail(
        &format!("{name} multiproc terminate()+join()"),
        "ms",
        &mp_stop,
    );
    detail(&format!("{name} python terminate()+join()"), "ms", &py_stop);
    sc.report("python", &mp, &py_s);
    sc.report("python-spawn", &mp, &py_spawn);
    Ok(())
}

/// SIGKILL a pool worker running a task, until that task's result is `WorkerDied`;
/// the pool then still serves.
fn pool_worker_killed(py: Option<&Python>) -> Res {
    // Each running task puts (its number, its worker's pid) here.
    let running = Queue::<(usize, u32)>::new(0)?;
    // (kill to WorkerDied, kill to the replacement's first result)
    let mp_once = || -> Res<(f64, f64)> {
        // A fresh pool each time, as Python's executor: its window is one task per
        // worker until a task has finished, so each sleeper gets a worker of its own.
        let pool = Pool::new(2)?;
        let mut tasks: Vec<_> = (0..2)
            .map(|i| pool.apply_async(pid_then_sleep, (running.clone(), i)))
            .collect();
        // Both workers are inside their task.
        let mut pids = [0u32; 2];
        for _ in 0..2 {
            let (task, pid) = running.get(true, Some(POOL_WAIT))?;
            pids[task] = pid;
        }
        let victim = pids[0];
        let t0 = Instant::now();
        kill(victim)?;
        let got = tasks[0].get(Some(POOL_WAIT));
        let died = ms(t0);
        match got {
            Err(PoolError::Task {
                error: TaskError::WorkerDied { pid, .. },
                ..
            }) if pid == victim => {}
            other => {
                pool.terminate();
                return Err(format!("the killed task ended with {other:?}").into());
            }
        }
        // Outside the timed part: the pool still serves, on the replacement (the other
        // worker is still asleep).
        check_square(7, pool.apply(sq, 7)?)?;
        let serves = ms(t0);
        pool.terminate();
        match tasks[1].get(Some(POOL_WAIT)) {
            Err(PoolError::Terminated) => {}
            other => return Err(format!("the other sleeper ended with {other:?}").into()),
        }
        pool.join()?;
        Ok((died, serves))
    };
    let mut python = py
        .filter(|_| wanted("python"))
        .map(|py| {
            py.serve(
                "pool.py",
                &["worker_killed", "fork"],
                &[("N", POOL_KILL_BATCH)],
            )
        })
        .transpose()?;
    mp_once()?;
    let (mut mp, mut mp_serves, mut py_s) =
        (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        let (died, serves): (Vec<f64>, Vec<f64>) = (0..POOL_KILL_BATCH)
            .map(|_| mp_once())
            .collect::<Res<Vec<_>>>()?
            .into_iter()
            .unzip();
        mp.push(died);
        mp_serves.push(serves);
        if let Some(s) = python.as_mut() {
            py_s.push(s.rep()?.samples);
        }
    }
    if let Some(s) = python {
        s.finish()?;
    }
    let sc = Scenario {
        name: "pool_worker_killed",
        unit: "ms",
        better: Better::Lower,
    };
    // Python's executor is broken for good; this is the pool going on.
    detail(
        "pool_worker_killed multiproc kill to apply(sq, 7) answered by the replacement",
        "ms",
        &mp_serves,
    );
    sc.report("python", &mp, &py_s);
    Ok(())
}

// ---------------------------------------------------------------------------------
// Queue and Lock scenarios: primitives hosted by the bench process, used by children
// started for each round (as shared/bench/python/bench_queue.py and bench_lock.py).

/// `queue_1to1` (`joinable`: `joinable_queue_1to1`): a producer child puts
/// [`QUEUE_ITEMS`] `u64`s into a queue the bench process hosts, a consumer child gets
/// them; items/s from "go" (set by the bench process) to the consumer's last `get`,
/// or, with `joinable`, to the later of that and the producer's `join` returning.
fn queue_1to1(py: Option<&Python>, joinable: bool) -> Res {
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
fn lock_cross_process(py: Option<&Python>) -> Res {
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
fn lock_contended_2(py: Option<&Python>) -> Res {
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

/// `value_locked_2proc`: two children, fresh each round, each [`VALUE_INCS`]` / 2`
/// increments of one `Value<u64>` under its lock; total / (last end - first start).
/// The value is checked.
fn value_locked_2proc(py: Option<&Python>) -> Res {
    let mp_once = || -> Res<f64> {
        let v = Value::new(0u64)?;
        let (go, res) = (Event::new()?, Queue::<Stamp>::new(0)?);
        let n = VALUE_INCS / 2;
        let mut procs: Vec<Process> = (0..2)
            .map(|_| Process::new(value_incs, (v.clone(), go.clone(), n, res.clone())).daemon(true))
            .collect();
        for p in &mut procs {
            p.start()?;
        }
        go.set()?;
        let stamps = reports(&res, 2, &procs)?;
        finish(&procs)?;
        if v.get()? != 2 * n {
            return Err(format!("the value is {}, not {}", v.get()?, 2 * n).into());
        }
        let start = stamps.iter().map(|s| s.first_ns).min().unwrap_or(0);
        let end = stamps.iter().map(|s| s.last_ns).max().unwrap_or(0);
        Ok((2 * n) as f64 / secs(start, end))
    };
    let servers = vec![(
        "python",
        serve_if(
            py,
            "python",
            "shared.py",
            &["value_locked", "fork"],
            &[("N", VALUE_INCS as usize)],
        )?,
    )];
    let sc = Scenario {
        name: "value_locked_2proc",
        unit: "incr/s",
        better: Better::Higher,
    };
    sync_rounds(&sc, mp_once, servers)
}

/// `shm_bandwidth`: a child, fresh each round, opens a [`SHM_BYTES`] block this
/// process created and writes it whole; this process then reads it whole; bytes
/// moved / (write time + read time). The child's write includes its first touch of
/// each page of a fresh mapping. `raw`: the same two copies between three warm
/// buffers of this process.
fn shm_bandwidth(py: Option<&Python>) -> Res {
    let block = SharedMemory::create(SHM_BYTES)?;
    let mut buf = vec![0u8; SHM_BYTES];
    let mut mp_once = || -> Res<f64> {
        let res = Queue::<Stamp>::new(0)?;
        let mut p = Process::new(shm_write, (block.handle(), SHM_BYTES, res.clone())).daemon(true);
        p.start()?;
        let procs = [p];
        let stamp = reports(&res, 1, &procs)?.remove(0);
        finish(&procs)?;
        let t0 = Instant::now();
        block.read(0, &mut buf)?;
        let read = t0.elapsed().as_secs_f64();
        if buf.iter().any(|&b| b != 7) {
            return Err("the block does not hold what the child wrote".into());
        }
        buf.fill(0);
        Ok(2.0 * SHM_BYTES as f64 / 1e9 / (secs(stamp.first_ns, stamp.last_ns) + read))
    };
    let (a, mut b, mut c) = (
        vec![7u8; SHM_BYTES],
        vec![1u8; SHM_BYTES],
        vec![1u8; SHM_BYTES],
    );
    let mut raw_once = || -> f64 {
        let t0 = Instant::now();
        b.copy_from_slice(std::hint::black_box(&a));
        c.copy_from_slice(std::hint::black_box(&b));
        let t = t0.elapsed().as_secs_f64();
        std::hint::black_box(&c);
        2.0 * SHM_BYTES as f64 / 1e9 / t
    };
    let mut server = serve_if(
        py,
        "python",
        "shared.py",
        &["shm_bandwidth", "fork"],
        &[("SIZE", SHM_BYTES)],
    )?;
    mp_once()?;
    let (mut mp, mut raw, mut pys) = (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        mp.push(vec![mp_once()?]);
        raw.push(vec![raw_once()]);
        if let Some(s) = server.as_mut() {
            pys.push(s.rep()?.samples);
        }
    }
    if let Some(s) = server {
        s.finish()?;
    }
    let sc = Scenario {
        name: "shm_bandwidth",
        unit: "GB/s",
        better: Better::Higher,
    };
    sc.report("python", &mp, &pys);
    sc.report("raw", &mp, &raw);
    Ok(())
}

/// `manager_dict`: [`MANAGER_OPS`] operations through a dict proxy from this
/// process, `d[k] = v` then `d[k]` alternating on 100 keys; one manager for the
/// scenario, warmed up with 500 operations. ops/s.
fn manager_dict(py: Option<&Python>) -> Res {
    let manager = Manager::start()?;
    let d = manager.dict::<u64, u64>()?;
    let ops = |n: u64| -> Res<f64> {
        let t0 = Instant::now();
        for i in 0..n / 2 {
            d.set(&(i % 100), &i)?;
            if d.get(&(i % 100))? != Some(i) {
                return Err("the dict lost a value".into());
            }
        }
        Ok((n / 2 * 2) as f64 / t0.elapsed().as_secs_f64())
    };
    ops(500)?;
    let servers = vec![(
        "python",
        serve_if(
            py,
            "python",
            "shared.py",
            &["manager_dict", "fork"],
            &[("N", MANAGER_OPS as usize)],
        )?,
    )];
    let sc = Scenario {
        name: "manager_dict",
        unit: "ops/s",
        better: Better::Higher,
    };
    sync_rounds(&sc, || ops(MANAGER_OPS), servers)?;
    manager.shutdown()?;
    Ok(())
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

/// `script` serving `reference`, if that reference is measured.
fn serve_if(
    py: Option<&Python>,
    reference: &str,
    script: &str,
    args: &[&str],
    env: &[(&str, usize)],
) -> Res<Option<PyServer>> {
    py.filter(|_| wanted(reference))
        .map(|py| py.serve(script, args, env))
        .transpose()
}

/// The rounds of a queue or lock scenario: one `mp_once` (warm-up), then in each round
/// `mp_once` and one repetition of each reference's server; a line per reference.
fn sync_rounds(
    sc: &Scenario,
    mut mp_once: impl FnMut() -> Res<f64>,
    mut servers: Vec<(&str, Option<PyServer>)>,
) -> Res {
    mp_once()?;
    let mut mp = Samples::default();
    let mut refs: Vec<Samples> = servers.iter().map(|_| Samples::default()).collect();
    for _ in 0..ROUNDS {
        mp.push(vec![mp_once()?]);
        for ((_, server), samples) in servers.iter_mut().zip(&mut refs) {
            if let Some(s) = server.as_mut() {
                samples.push(s.rep()?.samples);
            }
        }
    }
    let names: Vec<&str> = servers.iter().map(|(r, _)| *r).collect();
    for (_, server) in servers.drain(..) {
        if let Some(s) = server {
            s.finish()?;
        }
    }
    for (reference, samples) in names.into_iter().zip(&refs) {
        sc.report(reference, &mp, samples);
    }
    Ok(())
}

/// Waits for `k` reports on `res`, at most [`SYNC_WAIT`]; fails at once when one of
/// `procs` has ended badly (a child that cannot report).
fn reports(res: &Queue<Stamp>, k: usize, procs: &[Process]) -> Res<Vec<Stamp>> {
    let t0 = Instant::now();
    let mut out = Vec::with_capacity(k);
    while out.len() < k {
        match res.get(true, Some(Duration::from_millis(200))) {
            Ok(stamp) => out.push(stamp),
            Err(SyncError::Empty) => {
                for p in procs {
                    if let Some(reason) = p.exit_reason().filter(|r| r.exit_code() != 0) {
                        return Err(format!("a child ended with {reason}").into());
                    }
                }
                if t0.elapsed() > SYNC_WAIT {
                    let alive = procs.iter().filter(|p| p.is_alive()).count();
                    return Err(format!(
                        "{} of {k} reports in {SYNC_WAIT:?} ({alive} of {} children alive)",
                        out.len(),
                        procs.len()
                    )
                    .into());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// Joins children that have reported, at most [`POOL_WAIT`] each; each must exit 0.
fn finish(procs: &[Process]) -> Res {
    for p in procs {
        match p.join_timeout(POOL_WAIT)? {
            Some(reason) if reason.exit_code() == 0 => {}
            Some(reason) => return Err(format!("a child ended with {reason}").into()),
            None => return Err(format!("a child still runs {POOL_WAIT:?} after its report").into()),
        }
    }
    Ok(())
}

/// Seconds between two [`mono_ns`] instants.
fn secs(from_ns: u64, to_ns: u64) -> f64 {
    to_ns.saturating_sub(from_ns) as f64 / 1e9
}

fn proc_status(pid: &str, field: &str) -> Res<f64> {
    proc_field(pid, "status", field)
}

/// A `Field: <n> kB` line of `/proc/<pid>/<file>`, in KiB.
fn proc_field(pid: &str, file: &str, field: &str) -> Res<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/{file}"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'));
    let kib = line
        .and_then(|l| l.split_whitespace().nth(1))
        .ok_or_else(|| format!("no {field} in /proc/{pid}/{file}"))?;
    Ok(kib.parse()?)
}

// ---------------------------------------------------------------------------------
// The bench binary's own `raw` children: no multiproc, plain syscalls.

/// A child of this binary in a raw role, with a socketpair on its stdin.
struct RawChild {
    child: Child,
    sock: UnixStream,
}

impl RawChild {
    fn start(role: &str, env: &[(&str, usize)]) -> Res<RawChild> {
        let (sock, theirs) = UnixStream::pair()?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.env(ROLE_ENV, role)
            .stdin(Stdio::from(OwnedFd::from(theirs)));
        for (k, v) in env {
            cmd.env(k, v.to_string());
        }
        Ok(RawChild {
            child: cmd.spawn()?,
            sock,
        })
    }

    /// Closes the socket (the child ends at EOF) and checks how the child ended.
    fn finish(mut self) -> Res {
        self.sock.shutdown(std::net::Shutdown::Both)?;
        let status = self.child.wait()?;
        if !status.success() {
            return Err(format!("raw child failed: {status}").into());
        }
        Ok(())
    }
}

impl Drop for RawChild {
    fn drop(&mut self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        let _ = self.child.wait();
    }
}

fn raw_role(role: &str) -> Res {
    match role {
        // What every multiproc child costs at least: exec, a tokio runtime, one task.
        "raw-spawn" => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(rt.spawn(async {}))?;
            Ok(())
        }
        // A replacement worker: exec, a tokio runtime, then "ready" on the socket.
        "raw-ready" => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(rt.spawn(async {}))?;
            let mut sock = stdin_socket()?;
            sock.write_all(b"r")?;
            let mut rest = Vec::new();
            sock.read_to_end(&mut rest)?;
            Ok(())
        }
        "raw-echo" => {
            let mut sock = stdin_socket()?;
            let mut buf = [0u8; 8];
            loop {
                match sock.read_exact(&mut buf) {
                    Ok(()) => sock.write_all(&buf)?,
                    Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        "raw-stream" => {
            let size: usize = std::env::var("BENCH_SIZE")?.parse()?;
            let count: usize = std::env::var("BENCH_COUNT")?.parse()?;
            let mut sock = stdin_socket()?;
            let mut frame = (size as u32).to_be_bytes().to_vec();
            frame.resize(4 + size, 0xA5);
            let mut byte = [0u8; 1];
            sock.write_all(b"r")?;
            sock.read_exact(&mut byte)?;
            for _ in 0..count {
                sock.write_all(&frame)?;
            }
            sock.read_exact(&mut byte)?;
            Ok(())
        }
        other => Err(format!("unknown {ROLE_ENV}={other}").into()),
    }
}

fn stdin_socket() -> Res<UnixStream> {
    Ok(UnixStream::from(
        std::io::stdin().as_fd().try_clone_to_owned()?,
    ))
}

// ---------------------------------------------------------------------------------
// The Python references.

/// The interpreter behind `python3`, called directly (pyenv's shim costs ~50 ms).
struct Python {
    exe: PathBuf,
    version: String,
    scripts: PathBuf,
}

impl Python {
    fn detect() -> Option<Python> {
        let out = Command::new("python3")
            .args([
                "-c",
                "import sys; print(sys.executable); print(sys.version.split()[0])",
            ])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        let mut lines = text.lines();
        let (exe, version) = (lines.next()?, lines.next()?);
        (out.status.success() && !exe.is_empty()).then(|| Python {
            exe: exe.into(),
            version: format!("{exe} {version}"),
            scripts: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/python"),
        })
    }

    fn command(&self, script: &str, args: &[&str], env: &[(&str, usize)]) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.arg(self.scripts.join(script))
            .args(args)
            .current_dir(&self.scripts);
        for (k, v) in env {
            cmd.env(k, v.to_string());
        }
        cmd
    }

    /// Starts `script --serve` and waits until it has set up and warmed up.
    fn serve(&self, script: &str, args: &[&str], env: &[(&str, usize)]) -> Res<PyServer> {
        let mut child = self
            .command(script, args, env)
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut server = PyServer {
            child,
            stdin: Some(stdin),
            stdout,
            what: format!("{script} {}", args.join(" ")),
        };
        match server.line()?.as_deref().map(str::trim) {
            Some("ready") => Ok(server),
            other => Err(format!("python {script} did not say it was ready: {other:?}").into()),
        }
    }

    /// Runs `script` once and reads its one result.
    fn once(&self, script: &str, args: &[&str], env: &[(&str, usize)]) -> Res<PyReply> {
        let out = self
            .command(script, args, env)
            .stderr(Stdio::inherit())
            .output()?;
        if !out.status.success() {
            return Err(format!("{script} failed: {}", out.status).into());
        }
        let text = String::from_utf8(out.stdout)?;
        let mut lines = text.lines().map(str::to_string);
        PyReply::read(script, &mut || Ok(lines.next()))
    }
}

/// A reference script run with `--serve`: one `rep` line in, one result out.
struct PyServer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    what: String,
}

impl PyServer {
    /// The next line of output, without its end; `None` at the end of the output.
    fn line(&mut self) -> Res<Option<String>> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        Ok(Some(line.trim_end().to_string()))
    }

    fn rep(&mut self) -> Res<PyReply> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        stdin.write_all(b"rep\n")?;
        stdin.flush()?;
        let what = self.what.clone();
        PyReply::read(&what, &mut || self.line())
    }

    fn finish(mut self) -> Res {
        drop(self.stdin.take());
        let status = self.child.wait()?;
        if !status.success() {
            return Err(format!("python {} failed: {status}", self.what).into());
        }
        Ok(())
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        // End of input makes the script clean up its children and exit.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// One result of a reference script (benches/python/common.py): zero or more
/// `NAME V1 V2 ...` lines of extra series, ended by one `samples UNIT V1 V2 ...` line.
#[derive(Debug, Default)]
struct PyReply {
    samples: Vec<f64>,
    series: Vec<(String, Vec<f64>)>,
}

impl PyReply {
    /// Reads one result from `lines` (each without its end); `what` names the script.
    fn read(what: &str, lines: &mut dyn FnMut() -> Res<Option<String>>) -> Res<PyReply> {
        let mut reply = PyReply::default();
        loop {
            let line = lines()?.ok_or_else(|| format!("python {what} ended early"))?;
            let mut words = line.split_whitespace();
            match words.next() {
                Some("error") => {
                    let why = line.trim_start().trim_start_matches("error").trim();
                    return Err(format!("python {what}: {why}").into());
                }
                Some("samples") => {
                    words
                        .next()
                        .ok_or_else(|| format!("python {what}: no unit in {line:?}"))?;
                    reply.samples = numbers(what, words)?;
                    return Ok(reply);
                }
                Some(name) => reply.series.push((name.to_string(), numbers(what, words)?)),
                None => return Err(format!("python {what}: an empty line").into()),
            }
        }
    }

    /// The values of the series `name`.
    fn series(&self, name: &str) -> Res<Vec<f64>> {
        self.series
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("no {name:?} in a python result").into())
    }

    /// The one value of the series `name`.
    fn number(&self, name: &str) -> Res<f64> {
        match self.series(name)?.as_slice() {
            &[v] => Ok(v),
            other => Err(format!("{name:?} is not one number: {other:?}").into()),
        }
    }

    /// The one sample.
    fn sample(&self) -> Res<f64> {
        match self.samples.as_slice() {
            &[v] => Ok(v),
            other => Err(format!("not one sample: {other:?}").into()),
        }
    }
}

/// The numbers of a result line, as Python's `str` writes them.
fn numbers<'a>(what: &str, words: impl Iterator<Item = &'a str>) -> Res<Vec<f64>> {
    words
        .map(|w| {
            w.parse()
                .map_err(|_| format!("python {what}: {w:?} is not a number").into())
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Statistics and output.

/// Samples of one implementation, grouped by round.
#[derive(Debug, Default)]
struct Samples(Vec<Vec<f64>>);

impl Samples {
    fn push(&mut self, round: Vec<f64>) {
        self.0.push(round);
    }

    fn all(&self) -> Vec<f64> {
        self.0.concat()
    }

    fn round_medians(&self) -> Vec<f64> {
        self.0.iter().map(|r| median(r)).collect()
    }
}

#[derive(Debug, Clone, Copy)]
enum Better {
    Lower,
    Higher,
}

struct Scenario {
    name: &'static str,
    unit: &'static str,
    better: Better,
}

impl Scenario {
    fn ratio(&self, mp: f64, reference: f64) -> f64 {
        match self.better {
            Better::Lower => reference / mp,
            Better::Higher => mp / reference,
        }
    }

    /// Prints the scenario's line for `reference`, unless it was not measured.
    fn report(&self, reference: &str, mp: &Samples, rf: &Samples) {
        if rf.0.is_empty() {
            return;
        }
        let (name, unit) = (self.name, self.unit);
        let (m, r) = (median(&mp.all()), median(&rf.all()));
        println!(
            "{name} vs {reference}: multiproc={} {unit} reference={} {unit} ratio={}",
            num(m),
            num(r),
            ratio(self.ratio(m, r))
        );
        let mut per_round: Vec<f64> = mp
            .round_medians()
            .iter()
            .zip(rf.round_medians())
            .map(|(&m, r)| self.ratio(m, r))
            .collect();
        per_round.sort_by(f64::total_cmp);
        println!(
            "#   multiproc {}; {reference} {}; ratio per round {}..{}",
            spread(&mp.all()),
            spread(&rf.all()),
            per_round.first().map_or("-".into(), |&v| ratio(v)),
            per_round.last().map_or("-".into(), |&v| ratio(v)),
        );
    }
}

fn detail(label: &str, unit: &str, s: &Samples) {
    let all = s.all();
    if !all.is_empty() {
        println!(
            "# {label}: median={} {unit} {}",
            num(median(&all)),
            spread(&all)
        );
    }
}

fn spread(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("min={} max={} n={}", num(min), num(max), v.len())
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// A ratio: two decimals, or two significant digits below 0.1 (0.0011, not 0.00).
fn ratio(v: f64) -> String {
    if v.abs() >= 0.1 || v == 0.0 || !v.is_finite() {
        return format!("{v:.2}");
    }
    let decimals = (1.0 - v.abs().log10().floor()) as usize;
    format!("{v:.decimals$}")
}

/// Three significant digits or so, without exponents.
fn num(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        a if a >= 1.0 => format!("{v:.2}"),
        _ => format!("{v:.3}"),
    }
}

fn ms(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1e3
}

fn us(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1e6
}
