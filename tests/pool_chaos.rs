//! Pool workers and the forkserver SIGKILLed at random while `map`, `imap_unordered`
//! and `apply_async` run: every item ends once, as its value or as
//! `TaskError::WorkerDied`; no wait hangs; the pool recovers; and once it is joined no
//! process of it is left.
//!
//! The program under test is this binary again, run inside a pids cgroup the test
//! makes (`MULTIPROC_TEST_CHAOS` names the case): a pool that respawned in a loop
//! could multiply processes, and the cgroup both bounds that and shows every process
//! the program made, wherever the kernel reparented it. The kill schedule comes from
//! a seeded RNG; the test prints the seed, and `MULTIPROC_CHAOS_SEED=<seed>` replays
//! the schedule (the operating system's timing is another matter).

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::cgroup::{self, Program};
use common::{TestResult, trial};
use multiproc::blocking::Pool;
use multiproc::{ExitReason, PoolError, RestartIntensity, StartMethod, TaskError};

/// Set to the case's name in the program under test.
const CHAOS: &str = "MULTIPROC_TEST_CHAOS";
/// The seed of the kill schedule; set it to replay one.
const SEED: &str = "MULTIPROC_CHAOS_SEED";
/// The file in which each task notes that it ran to its end.
const RAN_LOG: &str = "MULTIPROC_TEST_CHAOS_LOG";

const WORKERS: usize = 3;
/// Calls of `map`, and items in each.
const MAPS: usize = 30;
const MAP_ITEMS: usize = 20;
/// Items of each `imap_unordered`, one per chunksize.
const IMAP_ITEMS: usize = 400;
const IMAP_CHUNKSIZES: [usize; 2] = [1, 4];
const APPLIES: usize = 500;
/// Items mapped once the kills have stopped, which must all come back as values.
const RECOVERY_ITEMS: usize = 30;
/// The pause before each kill is drawn from this range of milliseconds.
const KILL_PAUSE_MS: std::ops::Range<u64> = 2..30;
/// One kill in this many aims at the forkserver, when the pool has one.
const FORKSERVER_ODDS: u64 = 3;
/// How long one result may take, kills and restarts included, before the program
/// calls it a hang.
const WAIT: Duration = Duration::from_secs(30);

/// The cgroup's limit on tasks (threads count: the root has a runtime and a blocking
/// thread per worker orphaned by a dead forkserver, each worker a runtime of its own).
const PIDS_MAX: u32 = 1024;
/// Most tasks the cgroup may have held at once. A respawn loop fills `PIDS_MAX`.
const PEAK_BOUND: u32 = 256;
/// How long the whole program may run before the test calls it a hang.
const PROGRAM_DEADLINE: Duration = Duration::from_secs(120);
/// How long a process of the cgroup may outlive the program: the time for the kernel
/// to deliver a parent-death signal to the forkserver.
const ORPHAN_GRACE: Duration = Duration::from_secs(2);
/// How long the pool's workers may take to leave the cgroup once `join` returned:
/// they have all exited by then, so only a leftover process needs this long.
const JOIN_GRACE: Duration = Duration::from_secs(5);

/// Sets a task's value apart from its input; its own inverse, so a value names its
/// item.
const MARK: u64 = 0x0C4A_0500_0000_0000;

/// A task of up to 3 ms (long enough for kills to land in the middle of one, varied
/// so the workers do not move in step), which notes that it ran before it answers.
fn work(item: u64) -> u64 {
    std::thread::sleep(Duration::from_micros(mix(item) % 3000));
    note_ran(item);
    item ^ MARK
}

multiproc::register!(work);

fn note_ran(item: u64) {
    use std::io::Write;
    let path = std::env::var(RAN_LOG).expect("the test sets the log's path");
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    // One write of a whole line: with O_APPEND, lines of different workers stay whole.
    log.write_all(format!("{item}\n").as_bytes()).unwrap();
}

/// splitmix64's finalizer: a seeded schedule needs no RNG crate.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0) % n
    }

    fn within(&mut self, range: std::ops::Range<u64>) -> u64 {
        range.start + self.below(range.end - range.start)
    }
}

// ---- the kills ----------------------------------------------------------------------

#[derive(Debug, Default)]
struct Kills {
    /// The pids of the workers killed.
    workers: Vec<u32>,
    forkservers: usize,
}

/// A thread that SIGKILLs a random worker, or the forkserver, after each random pause,
/// until it is stopped.
struct Chaos {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<Kills>,
}

impl Chaos {
    fn start(pool: Pool, seed: u64, forkserver_too: bool) -> Chaos {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut rng = Rng(seed);
            let mut kills = Kills::default();
            loop {
                let pause = Duration::from_millis(rng.within(KILL_PAUSE_MS));
                if stopped.recv_timeout(pause) != Err(mpsc::RecvTimeoutError::Timeout) {
                    return kills;
                }
                if forkserver_too && rng.below(FORKSERVER_ODDS) == 0 {
                    if forkserver().is_some_and(|(_, fd)| sigkill(&fd)) {
                        kills.forkservers += 1;
                    }
                    continue;
                }
                let workers = pool.workers();
                if workers.is_empty() {
                    continue;
                }
                let victim = &workers[rng.below(workers.len() as u64) as usize];
                if cgroup::pidfd(victim.pid as i32).is_some_and(|fd| sigkill(&fd)) {
                    kills.workers.push(victim.pid);
                }
            }
        });
        Chaos { stop, thread }
    }

    fn stop(self) -> Kills {
        let _ = self.stop.send(());
        self.thread.join().unwrap()
    }
}

fn sigkill(pidfd: &OwnedFd) -> bool {
    rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL).is_ok()
}

/// This process's forkserver: the child named `forkserver` (its `comm`, which `top`
/// shows, and the end of its command line). The test finds and kills it by its pid,
/// as anything outside the program could.
fn forkserver() -> Option<(i32, OwnedFd)> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| parent_of(pid) == Some(me))
        .find_map(|pid| {
            // Checked again once the pidfd is open: it then names the process that was
            // checked, not one that took over its pid.
            let fd = cgroup::pidfd(pid)?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let title = cmdline.split(|&b| b == 0).next()?;
            let named = comm.trim_end() == "forkserver" && title.ends_with(b": forkserver");
            (named && parent_of(pid) == Some(me)).then_some((pid, fd))
        })
}

fn children_of(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn threads_of(pid: i32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()
        .map(|tasks| tasks.count())
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`, where comm may hold spaces and parentheses.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

// ---- the program under test -----------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Outcome {
    Value,
    Died,
}

/// What came of each item that ended on its own (`map` ends on its first error, so the
/// items of a failed `map` have none), and tallies by operation.
#[derive(Default)]
struct Ledger {
    outcomes: HashMap<u64, Outcome>,
    tally: HashMap<(&'static str, Outcome), usize>,
    maps_whole: usize,
    maps_failed: usize,
}

impl Ledger {
    fn record(&mut self, op: &'static str, item: u64, got: Outcome) -> Result<(), String> {
        if let Some(first) = self.outcomes.insert(item, got) {
            return Err(format!(
                "{op}: item {item} ended twice, as {first:?} then as {got:?}"
            ));
        }
        *self.tally.entry((op, got)).or_default() += 1;
        Ok(())
    }

    fn count(&self, op: &'static str, outcome: Outcome) -> usize {
        self.tally.get(&(op, outcome)).copied().unwrap_or(0)
    }
}

/// The input index of an error that is a worker's death, or why the error is not one.
fn death(op: &str, e: &PoolError) -> Result<usize, String> {
    match e {
        PoolError::Task {
            index,
            error: TaskError::WorkerDied { reason, .. },
        } => match reason {
            // Killed, as the forkserver relays it, or with the status lost with a
            // forkserver killed first.
            ExitReason::Signaled(9) | ExitReason::ForkserverLost => Ok(*index),
            other => Err(format!(
                "{op}: item {index}'s worker died of {other}, not of a SIGKILL"
            )),
        },
        PoolError::Timeout(_) => Err(format!("{op}: no answer within {WAIT:?}: a hang")),
        other => Err(format!("{op}: {other} ({other:?}), not a worker's death")),
    }
}

/// Item numbers, never used twice in a run, so the ran log tells every task apart.
struct Items(u64);

impl Items {
    fn take(&mut self, n: usize) -> Vec<u64> {
        let first = self.0;
        self.0 += n as u64;
        (first..self.0).collect()
    }
}

fn map_stage(pool: &Pool, items: &mut Items, ledger: &mut Ledger) -> Result<(), String> {
    for _ in 0..MAPS {
        let input = items.take(MAP_ITEMS);
        match pool.map_async(work, input.clone()).get(Some(WAIT)) {
            Ok(values) => {
                let want: Vec<u64> = input.iter().map(|i| i ^ MARK).collect();
                if values != want {
                    return Err(format!("map: {values:?} for {input:?}"));
                }
                for item in input {
                    ledger.record("map", item, Outcome::Value)?;
                }
                ledger.maps_whole += 1;
            }
            Err(e) => {
                let index = death("map", &e)?;
                if index >= input.len() {
                    return Err(format!("map of {} items failed at {index}", input.len()));
                }
                ledger.maps_failed += 1;
            }
        }
    }
    Ok(())
}

fn imap_stage(pool: &Pool, items: &mut Items, ledger: &mut Ledger) -> Result<(), String> {
    for chunksize in IMAP_CHUNKSIZES {
        let input = items.take(IMAP_ITEMS);
        let range = input[0]..input[0] + input.len() as u64;
        let mut ended = 0;
        let mut results = pool.imap_unordered(work, input.clone(), chunksize);
        while let Some(r) = results.next_timeout(WAIT) {
            let (item, got) = match r {
                Ok(value) => (value ^ MARK, Outcome::Value),
                Err(e) => {
                    let index = death("imap_unordered", &e)?;
                    let item = input.get(index).copied();
                    (
                        item.ok_or(format!("imap_unordered: no item {index}"))?,
                        Outcome::Died,
                    )
                }
            };
            if !range.contains(&item) {
                return Err(format!(
                    "imap_unordered: a result for item {item}, not asked"
                ));
            }
            ledger.record("imap_unordered", item, got)?;
            ended += 1;
        }
        // Each one in range, none twice: as many as asked means every one.
        if ended != input.len() {
            return Err(format!(
                "imap_unordered with chunksize {chunksize}: {ended} of {} items ended",
                input.len()
            ));
        }
    }
    Ok(())
}

fn apply_stage(pool: &Pool, items: &mut Items, ledger: &mut Ledger) -> Result<(), String> {
    let pending: Vec<_> = items
        .take(APPLIES)
        .into_iter()
        .map(|item| (item, pool.apply_async(work, item)))
        .collect();
    for (item, mut result) in pending {
        let got = match result.get(Some(WAIT)) {
            Ok(value) if value == item ^ MARK => Outcome::Value,
            Ok(value) => return Err(format!("apply_async: item {item} answered {value}")),
            Err(e) => {
                death("apply_async", &e)?;
                Outcome::Died
            }
        };
        ledger.record("apply_async", item, got)?;
    }
    Ok(())
}

/// Waits until the pool has seen the death of every worker the chaos killed: a task
/// dispatched to one of them in the moment between its kill and the pool hearing of
/// it fails, as it should, but the kills are over and the recovery must not see them.
fn settle(pool: &Pool, kills: &Kills) -> Result<(), String> {
    for &pid in &kills.workers {
        if !common::wait_gone(pid, WAIT) {
            return Err(format!("worker {pid} outlived its SIGKILL by {WAIT:?}"));
        }
    }
    // The pool hears of a death from its own wait for the worker; there is no event to
    // wait on from here, so poll, bounded.
    let deadline = Instant::now() + WAIT;
    while pool
        .workers()
        .iter()
        .any(|w| kills.workers.contains(&w.pid))
    {
        if Instant::now() > deadline {
            return Err(format!(
                "the pool still lists killed workers after {WAIT:?}"
            ));
        }
        std::thread::yield_now();
    }
    Ok(())
}

/// How many times each item noted that it ran.
fn runs(log: &str) -> Result<HashMap<u64, usize>, String> {
    let text = std::fs::read_to_string(log).map_err(|e| format!("cannot read {log}: {e}"))?;
    let mut runs = HashMap::new();
    for line in text.lines() {
        let item = line
            .parse()
            .map_err(|_| format!("a torn line {line:?} in {log}"))?;
        *runs.entry(item).or_default() += 1;
    }
    Ok(runs)
}

fn chaos_program(case: &str) -> Result<String, String> {
    let seed: u64 = std::env::var(SEED)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or("no seed")?;
    let log = std::env::var(RAN_LOG).map_err(|_| "no log")?;
    let method = match case {
        "forkserver" => StartMethod::Forkserver,
        "spawn" => StartMethod::Spawn,
        other => return Err(format!("unknown case {other}")),
    };
    let t0 = Instant::now();
    let pool = Pool::builder()
        .processes(WORKERS)
        .start_method(method)
        // The kills land on starting workers too, by design; start intensity is for
        // workers that fail on their own (tests/pool.rs), so here it never trips.
        .start_intensity(RestartIntensity {
            max_restarts: u32::MAX,
            within: Duration::from_secs(1),
        })
        .start()
        .map_err(|e| format!("the pool did not start: {e}"))?;
    let chaos = Chaos::start(pool.clone(), seed, method == StartMethod::Forkserver);
    let mut items = Items(0);
    let mut ledger = Ledger::default();
    // Where it hung, should it: the test prints this on its deadline.
    eprintln!("map");
    map_stage(&pool, &mut items, &mut ledger)?;
    eprintln!("imap_unordered");
    imap_stage(&pool, &mut items, &mut ledger)?;
    eprintln!("apply_async");
    apply_stage(&pool, &mut items, &mut ledger)?;
    let kills = chaos.stop();
    let chaos_took = t0.elapsed();
    settle(&pool, &kills)?;

    eprintln!("recovery");
    let input = items.take(RECOVERY_ITEMS);
    let values = pool
        .map_async(work, input.clone())
        .get(Some(WAIT))
        .map_err(|e| format!("the pool did not recover: {e}"))?;
    if values != input.iter().map(|i| i ^ MARK).collect::<Vec<_>>() {
        return Err(format!("after the chaos, map gave {values:?}"));
    }
    for item in input {
        ledger.record("recovery", item, Outcome::Value)?;
    }

    eprintln!("join");
    pool.close();
    pool.join().map_err(|e| format!("join: {e}"))?;
    if !pool.workers().is_empty() {
        return Err(format!("workers after join: {:?}", pool.workers()));
    }
    // Every worker has exited; whatever else is in the cgroup but this process and
    // its forkserver (which serves the whole program) was left by the pool.
    let mut keep = vec![std::process::id() as i32];
    if let Some((server, _)) = forkserver() {
        keep.push(server);
        // And its spare, the one child it forks ahead of a request: a fork of the
        // single-threaded forkserver that has not started (a worker that did has a
        // thread more, and none is left after the join).
        let spares: Vec<i32> = children_of(server)
            .into_iter()
            .filter(|&pid| threads_of(pid) == Some(1))
            .collect();
        if spares.len() > 1 {
            return Err(format!(
                "the forkserver has {} spares: {spares:?}",
                spares.len()
            ));
        }
        keep.extend(spares);
    }
    let left = cgroup::wait_own_only(&keep, JOIN_GRACE);
    if !left.is_empty() {
        return Err(format!("processes {left:?} outlived the pool's join"));
    }

    // Every task has ended now, so the log is complete: each item ran at most once,
    // and each that answered ran exactly once.
    let runs = runs(&log)?;
    if let Some((item, n)) = runs.iter().find(|&(_, &n)| n > 1) {
        return Err(format!("item {item} ran {n} times"));
    }
    for (item, outcome) in &ledger.outcomes {
        if *outcome == Outcome::Value && !runs.contains_key(item) {
            return Err(format!("item {item} answered without running"));
        }
    }

    let died = ledger.count("imap_unordered", Outcome::Died)
        + ledger.count("apply_async", Outcome::Died)
        + ledger.maps_failed;
    if kills.workers.is_empty() || died == 0 {
        return Err(format!("the chaos did not bite: {kills:?}, {died} deaths"));
    }
    if method == StartMethod::Forkserver && kills.forkservers == 0 {
        return Err("no forkserver was killed".into());
    }
    Ok(format!(
        "{case}: {} workers and {} forkservers killed in {chaos_took:?}; map: {} of {MAPS} \
         calls whole, {} failed on a death; imap_unordered: {} values, {} deaths; \
         apply_async: {} values, {} deaths; {} tasks ran, none twice; {} recovery items \
         whole; joined after {:?}",
        kills.workers.len(),
        kills.forkservers,
        ledger.maps_whole,
        ledger.maps_failed,
        ledger.count("imap_unordered", Outcome::Value),
        ledger.count("imap_unordered", Outcome::Died),
        ledger.count("apply_async", Outcome::Value),
        ledger.count("apply_async", Outcome::Died),
        runs.len(),
        ledger.count("recovery", Outcome::Value),
        t0.elapsed(),
    ))
}

fn chaos_main(case: &str) -> ! {
    match chaos_program(case) {
        Ok(summary) => {
            println!("{summary}");
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("pool chaos: {e}");
            std::process::exit(1)
        }
    }
}

// ---- the cases ------------------------------------------------------------------------

fn seed() -> u64 {
    std::env::var(SEED)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            mix(now.as_nanos() as u64 ^ u64::from(std::process::id()))
        })
}

/// Runs the chaos program for `case` in a fresh cgroup: it must succeed, stay far
/// from the cgroup's limit and leave no process behind.
fn pool_under_chaos(case: &'static str) -> TestResult {
    let seed = seed();
    eprintln!("pool_chaos {case}: seed {seed}; replay with {SEED}={seed}");
    let log =
        std::env::temp_dir().join(format!("multiproc-chaos-{case}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let run = Program {
        case: &format!("chaos-{case}"),
        pids_max: PIDS_MAX,
        env: &[
            (CHAOS, case),
            (SEED, &seed.to_string()),
            (RAN_LOG, &log.to_string_lossy()),
        ],
        deadline: PROGRAM_DEADLINE,
        grace: ORPHAN_GRACE,
    }
    .run();
    let _ = std::fs::remove_file(&log);
    let run = run.map_err(|e| format!("seed {seed}: {e}"))?;
    eprintln!(
        "{}; the program exited {} after {:?}, peak {:?} tasks",
        run.stdout.trim(),
        run.status,
        run.took,
        run.peak
    );
    check!(
        run.status.success(),
        "seed {seed}: the program failed: {}",
        run.stderr.trim()
    );
    check!(
        run.left.is_empty(),
        "seed {seed}: processes {:?} outlived the program",
        run.left
    );
    check!(
        run.hit_limit == 0,
        "seed {seed}: forks failed {} times at the cgroup's limit",
        run.hit_limit
    );
    check!(
        run.peak.is_none_or(|p| p <= PEAK_BOUND),
        "seed {seed}: the cgroup held {:?} tasks at once",
        run.peak
    );
    Ok(())
}

fn forkserver_pool_under_chaos() -> TestResult {
    pool_under_chaos("forkserver")
}

fn spawn_pool_under_chaos() -> TestResult {
    pool_under_chaos("spawn")
}

fn main() {
    // The program under test refuses to run outside its cgroup before anything else;
    // its workers pass through here too, on their way into `init()`.
    if let Ok(case) = std::env::var(CHAOS) {
        cgroup::refuse_to_run_bare("the pool chaos program");
        multiproc::init();
        chaos_main(&case);
    }
    common::run(vec![
        trial("forkserver_pool_under_chaos", forkserver_pool_under_chaos),
        trial("spawn_pool_under_chaos", spawn_pool_under_chaos),
    ]);
}
