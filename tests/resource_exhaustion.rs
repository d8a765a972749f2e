//! Running out is an error that names the limit, never a panic, and creation works
//! again once something is freed.
//!
//! Descriptors and memory: a child started with lowered `Limits` (its own
//! `RLIMIT_NOFILE`, `RLIMIT_AS`) makes primitives, blocks, pipes and sockets until the
//! system refuses, and checks every error. Processes: a program run inside a pids
//! cgroup this test makes fills the cgroup with parked threads, then starts a process,
//! a pool, a manager or a supervised restart, and checks the error names `pids.max`.
//! As root `RLIMIT_NPROC` does not hold, so nothing here forks more than once outside
//! such a cgroup.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::error::Error as StdError;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use common::cgroup::{self, Program, Run};
use common::{TestResult, trial};
use multiproc::blocking::{Event, Lock, Pool, Process, Queue, RLock, Semaphore, SupervisorRef};
use multiproc::connection::{Address, Error as ConnectionError, Listener};
use multiproc::{
    Backoff, BootstrapError, Error, Exhausted, ExitReason, Limits, Manager, ManagerError,
    MemoryLimit, PoolError, ProcessLimit, RestartIntensity, SharedMemory, SharedMemoryError,
    StartMethod, Strategy, Supervisor, SupervisorEvent, SupervisorExit, SupervisorFlags, SyncError,
    Value, function_child, pipe,
};

/// Set to the case's name in the program run inside a cgroup.
const CASE: &str = "MULTIPROC_TEST_EXHAUST";
/// The cgroup's limit on tasks: the program's runtime, a child or two, and the threads
/// that fill it.
const PIDS_MAX: u32 = 48;
/// The supervisor's delay before a restart.
const RESTART_DELAY: Duration = Duration::from_millis(300);
/// How long the program may take.
const DEADLINE: Duration = Duration::from_secs(60);
/// How long a process of the cgroup may outlive the program.
const GRACE: Duration = Duration::from_secs(1);
/// The descriptors a child gets for the descriptor cases: its runtime and link take
/// about ten.
const OPEN_FILES: u64 = 64;
/// The address space a child gets for the memory case, and a block past it.
const ADDRESS_SPACE: u64 = 1 << 30;
const TOO_LARGE: usize = 2 << 30;

fn returns() {}

fn square(x: u64) -> u64 {
    x * x
}

fn waits() {
    multiproc::blocking::wait_for_stop();
}

/// Fails unless `cond`, with `msg`: in a child, the message becomes its exit reason.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Whether `e` is `RLIMIT_NOFILE` at `soft`, named in its message.
fn is_open_files(e: &Exhausted, soft: u64) -> bool {
    matches!(e, Exhausted::OpenFiles { soft: Some(s), open: Some(open), .. }
        if *s == soft && *open <= soft)
        && e.to_string()
            .contains(&format!("RLIMIT_NOFILE allows {soft}"))
}

/// In a child whose `RLIMIT_NOFILE` is [`OPEN_FILES`]: every kind of primitive, block
/// and connection is refused with the limit once the descriptors are gone, and comes
/// back when some are freed.
fn fill_descriptors() -> Result<(), String> {
    let mut held = Vec::new();
    let refused = loop {
        match Lock::new() {
            Ok(lock) => held.push(lock),
            Err(e) => break e,
        }
    };
    ensure!(
        matches!(&refused, SyncError::Exhausted(x) if is_open_files(x, OPEN_FILES)),
        "a lock past the limit: {refused:?}"
    );
    ensure!(
        held.len() > 10,
        "only {} locks before the limit",
        held.len()
    );
    let others: [(&str, Result<(), SyncError>); 4] = [
        ("rlock", RLock::new().map(drop)),
        ("semaphore", Semaphore::new(1).map(drop)),
        ("event", Event::new().map(drop)),
        ("queue", Queue::<u64>::new(0).map(drop)),
    ];
    for (what, got) in others {
        ensure!(
            matches!(&got, Err(SyncError::Exhausted(x)) if is_open_files(x, OPEN_FILES)),
            "{what} past the limit: {got:?}"
        );
    }
    let got = Value::new(1u64);
    ensure!(
        matches!(&got, Err(SharedMemoryError::Exhausted(x)) if is_open_files(x, OPEN_FILES)),
        "a value past the limit: {got:?}"
    );
    let got = SharedMemory::create(64);
    ensure!(
        matches!(&got, Err(SharedMemoryError::Exhausted(x)) if is_open_files(x, OPEN_FILES)),
        "a shared memory block past the limit: {got:?}"
    );
    let got = pipe(true);
    ensure!(
        matches!(&got, Err(ConnectionError::Exhausted(x)) if is_open_files(x, OPEN_FILES)),
        "a pipe past the limit: {got:?}"
    );
    let got = Listener::bind(
        &Address::tcp("127.0.0.1:0").map_err(|e| e.to_string())?,
        None,
    );
    ensure!(
        matches!(&got, Err(ConnectionError::Exhausted(x)) if is_open_files(x, OPEN_FILES)),
        "a listener past the limit: {got:?}"
    );
    // Refused at its socketpair: nothing is forked.
    let got = Process::new(returns, ()).start();
    ensure!(
        matches!(&got, Err(Error::Exhausted { source, .. }) if is_open_files(source, OPEN_FILES)),
        "a process past the limit: {got:?}"
    );

    // Four locks' descriptors back: four of anything, again.
    held.truncate(held.len() - 4);
    let lock = Lock::new().map_err(|e| format!("a lock after freeing: {e}"))?;
    let queue = Queue::<u64>::new(0).map_err(|e| format!("a queue after freeing: {e}"))?;
    queue.put(&7, true, None).map_err(|e| e.to_string())?;
    ensure!(queue.get(true, None) == Ok(7), "the queue after freeing");
    let value = Value::new(5u64).map_err(|e| format!("a value after freeing: {e}"))?;
    ensure!(value.get() == Ok(5), "the value after freeing");
    drop((lock, queue, value));
    let (a, b) = pipe(true).map_err(|e| format!("a pipe after freeing: {e}"))?;
    drop((a, b, held));
    Ok(())
}

/// In a child whose `RLIMIT_AS` is [`ADDRESS_SPACE`]: a block larger than that is
/// refused naming the limit and the size asked; a small one is not.
fn map_too_much() -> Result<(), String> {
    let got = SharedMemory::create(TOO_LARGE);
    let asked = (TOO_LARGE + 64) as u64;
    ensure!(
        matches!(
            &got,
            Err(SharedMemoryError::Exhausted(Exhausted::Memory {
                requested: Some(r),
                limit: MemoryLimit::AddressSpace { limit, .. },
            })) if *r == asked && *limit == ADDRESS_SPACE
        ),
        "a block past RLIMIT_AS: {got:?}"
    );
    let message = got.err().map(|e| e.to_string()).unwrap_or_default();
    ensure!(
        message.contains(&format!("RLIMIT_AS is {ADDRESS_SPACE} bytes"))
            && message.contains(&format!("for {asked} bytes")),
        "the message: {message}"
    );
    let small = SharedMemory::create(4096).map_err(|e| format!("a small block: {e}"))?;
    small.write(0, b"fits").map_err(|e| e.to_string())?;
    Ok(())
}

multiproc::register!(returns, square, waits, fill_descriptors, map_too_much);

// ---- descriptors and memory, in a child -------------------------------------------------

/// Runs `p` to its end, which must be normal: a child reports a failed check as its
/// exit reason.
fn passes(mut p: Process) -> TestResult {
    p.start()?;
    let reason = p.join()?;
    check_eq!(reason, ExitReason::Normal);
    Ok(())
}

fn everything_past_rlimit_nofile_is_exhausted_and_comes_back() -> TestResult {
    passes(Process::new(fill_descriptors, ()).limits(Limits {
        open_files: Some(OPEN_FILES),
        ..Limits::default()
    }))
}

fn a_block_past_rlimit_as_names_it_and_the_size_asked() -> TestResult {
    passes(Process::new(map_too_much, ()).limits(Limits {
        memory: Some(ADDRESS_SPACE),
        ..Limits::default()
    }))
}

/// A child with no descriptor for its runtime says so in the handshake.
fn a_child_without_descriptors_for_its_runtime_refuses_naming_the_limit() -> TestResult {
    let mut p = Process::new(returns, ()).limits(Limits {
        open_files: Some(3),
        ..Limits::default()
    });
    let got = p.start();
    check!(
        matches!(
            &got,
            Err(Error::Bootstrap { source: BootstrapError::Exhausted(x), .. })
                if matches!(x, Exhausted::OpenFiles { soft: Some(3), .. })
        ),
        "{got:?}"
    );
    let message = got.unwrap_err().to_string();
    check!(message.contains("RLIMIT_NOFILE allows 3"), "{message}");
    Ok(())
}

// ---- processes, in a cgroup -------------------------------------------------------------

/// Parked threads that take every free task of the cgroup; they end when dropped.
struct Filler {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Filler {
    /// Starts threads until the cgroup refuses one.
    fn fill() -> Filler {
        let mut f = Filler {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        };
        f.top_up();
        f
    }

    /// Takes whatever was freed since.
    fn top_up(&mut self) {
        // The cgroup bounds this loop: it ends at its pids.max.
        loop {
            let stop = Arc::clone(&self.stop);
            let spawned = std::thread::Builder::new()
                .stack_size(64 << 10)
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        std::thread::park();
                    }
                });
            match spawned {
                Ok(t) => self.threads.push(t),
                Err(_) => return,
            }
        }
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Whether `e` names the cgroup's full `pids.max`.
fn is_pids_max(e: &Exhausted) -> bool {
    matches!(
        e,
        Exhausted::Processes {
            limit: ProcessLimit::Cgroup { dir, max, current },
        } if dir.contains(cgroup::PREFIX) && *max == u64::from(PIDS_MAX) && current >= max
    ) && e.to_string().contains(&format!("pids.max is {PIDS_MAX}"))
}

type Outcome = Result<(), Box<dyn StdError>>;

fn start_one(method: StartMethod) -> Outcome {
    let mut p = Process::new(returns, ()).start_method(method);
    p.start()?;
    p.join()?;
    Ok(())
}

fn start_when_full(method: StartMethod) -> Outcome {
    // The runtime, the spawner thread and the forkserver exist before the cgroup fills.
    start_one(method)?;
    let mut filler = Filler::fill();
    filler.top_up();
    let mut p = Process::new(returns, ()).start_method(method);
    let got = p.start();
    drop(filler);
    match &got {
        Err(Error::Exhausted { source, .. }) if is_pids_max(source) => {
            println!("refused: {}", got.unwrap_err());
        }
        // The forkserver's spare, forked while there was room, takes the request;
        // the child it becomes then has no room for a thread, and refuses its Hello.
        Err(Error::Bootstrap {
            source: BootstrapError::Exhausted(source),
            ..
        }) if method == StartMethod::Forkserver && is_pids_max(source) => {
            println!("refused by the child: {}", got.unwrap_err());
        }
        _ => return Err(format!("a start in a full cgroup: {got:?}").into()),
    }
    start_one(method)?;
    println!("started again");
    Ok(())
}

fn pool_when_full() -> Outcome {
    start_one(StartMethod::Forkserver)?;
    let filler = Filler::fill();
    let pool = Pool::new(2)?;
    let got = pool.apply(square, 3);
    drop(filler);
    pool.terminate();
    pool.join()?;
    match &got {
        Err(PoolError::Exhausted(x)) if is_pids_max(x) => {
            println!("refused: {}", got.unwrap_err());
        }
        _ => return Err(format!("a pool in a full cgroup: {got:?}").into()),
    }
    let pool = Pool::new(1)?;
    let nine = pool.apply(square, 3)?;
    pool.close();
    pool.join()?;
    if nine != 9 {
        return Err(format!("square(3) = {nine}").into());
    }
    println!("started again");
    Ok(())
}

fn manager_when_full() -> Outcome {
    start_one(StartMethod::default())?;
    let filler = Filler::fill();
    let got = Manager::start();
    drop(filler);
    match &got {
        Err(ManagerError::Exhausted { source, .. }) if is_pids_max(source) => {
            println!("refused: {}", got.unwrap_err());
        }
        _ => return Err(format!("a manager in a full cgroup: {got:?}").into()),
    }
    drop(Manager::start()?);
    println!("started again");
    Ok(())
}

/// A supervisor that cannot restart its child reports each failed restart, naming
/// the limit, and gives up at its intensity: it does not loop.
fn supervisor_when_full() -> Outcome {
    let flags = SupervisorFlags {
        strategy: Strategy::OneForOne,
        intensity: RestartIntensity {
            max_restarts: 2,
            within: Duration::from_secs(60),
        },
        // Time to take the dead child's tasks before its restart.
        backoff: Backoff {
            min: RESTART_DELAY,
            max: RESTART_DELAY,
            factor: 1,
            jitter: 0.0,
            reset_after: Duration::ZERO,
        },
        ..SupervisorFlags::default()
    };
    let sup =
        SupervisorRef::start(Supervisor::new(flags).child(function_child("waiter", waits, ())?))?;
    let mut events = sup.events();
    let pid = sup.which_children()?[0].pid.ok_or("the child has no pid")?;
    let mut filler = Filler::fill();
    let pid = rustix::process::Pid::from_raw(pid as i32).ok_or("pid 0")?;
    rustix::process::kill_process(pid, rustix::process::Signal::KILL)?;
    let mut refused = Vec::new();
    let mut ended = None;
    for e in events.by_ref() {
        match e {
            // Reaped: its tasks are free, and taken before its restart is due.
            SupervisorEvent::ChildExited { .. } => filler.top_up(),
            SupervisorEvent::RestartFailed { error, .. } => refused.push(error),
            SupervisorEvent::ShutDown { reason } => {
                ended = Some(reason);
                break;
            }
            _ => {}
        }
    }
    drop(filler);
    if ended != Some(SupervisorExit::IntensityExceeded) {
        return Err(format!("the supervisor ended with {ended:?} after {refused:?}").into());
    }
    let named = format!("pids.max is {PIDS_MAX}");
    if refused.is_empty() || !refused.iter().all(|e| e.contains(&named)) {
        return Err(format!("failed restarts: {refused:?}").into());
    }
    println!("refused {} restarts: {}", refused.len(), refused[0]);
    check_exit(sup.join())
}

fn check_exit(exit: SupervisorExit) -> Outcome {
    if exit == SupervisorExit::IntensityExceeded {
        Ok(())
    } else {
        Err(format!("the supervisor's exit: {exit:?}").into())
    }
}

/// The program run inside a cgroup: one case, then exit 0 if it held.
fn in_cgroup_main(case: &str) -> ! {
    cgroup::refuse_to_run_bare("exhaustion mode");
    // The children of this program are this binary too: they branch off here.
    multiproc::init();
    let outcome = match case {
        "spawn" => start_when_full(StartMethod::Spawn),
        "forkserver" => start_when_full(StartMethod::Forkserver),
        "pool" => pool_when_full(),
        "manager" => manager_when_full(),
        "supervisor" => supervisor_when_full(),
        other => Err(format!("unknown case {other}").into()),
    };
    match outcome {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("in the cgroup: {e}");
            std::process::exit(1)
        }
    }
}

/// Runs `case` in a fresh cgroup: it must exit 0 having been refused with the limit,
/// and leave no process behind.
fn in_cgroup(case: &'static str) -> TestResult {
    let run: Run = Program {
        case,
        pids_max: PIDS_MAX,
        env: &[(CASE, case)],
        deadline: DEADLINE,
        grace: GRACE,
    }
    .run()?;
    eprintln!(
        "{case}: exited {} after {:?}; peak {:?} tasks; stdout: {}; stderr: {}",
        run.status,
        run.took,
        run.peak,
        run.stdout.trim(),
        run.stderr.trim()
    );
    check!(run.status.success(), "{case} failed: {}", run.stderr.trim());
    check!(
        run.stdout.contains("refused") && run.stdout.contains("pids.max"),
        "{case} printed no refusal: {}",
        run.stdout
    );
    check!(run.hit_limit > 0, "nothing hit the cgroup's limit");
    check!(
        run.left.is_empty(),
        "processes {:?} outlived the program",
        run.left
    );
    Ok(())
}

fn a_spawn_in_a_full_cgroup_names_pids_max() -> TestResult {
    in_cgroup("spawn")
}

fn a_fork_in_a_full_cgroup_names_pids_max() -> TestResult {
    in_cgroup("forkserver")
}

fn a_pool_in_a_full_cgroup_breaks_naming_pids_max() -> TestResult {
    in_cgroup("pool")
}

fn a_manager_in_a_full_cgroup_names_pids_max() -> TestResult {
    in_cgroup("manager")
}

fn a_supervisor_that_cannot_restart_reports_it_and_gives_up() -> TestResult {
    in_cgroup("supervisor")
}

fn main() {
    // Before `init()`: the program run in a cgroup calls it itself, after checking
    // where it runs.
    if let Ok(case) = std::env::var(CASE) {
        in_cgroup_main(&case);
    }
    common::run(vec![
        trial(
            "everything_past_rlimit_nofile_is_exhausted_and_comes_back",
            everything_past_rlimit_nofile_is_exhausted_and_comes_back,
        ),
        trial(
            "a_block_past_rlimit_as_names_it_and_the_size_asked",
            a_block_past_rlimit_as_names_it_and_the_size_asked,
        ),
        trial(
            "a_child_without_descriptors_for_its_runtime_refuses_naming_the_limit",
            a_child_without_descriptors_for_its_runtime_refuses_naming_the_limit,
        ),
        trial(
            "a_spawn_in_a_full_cgroup_names_pids_max",
            a_spawn_in_a_full_cgroup_names_pids_max,
        ),
        trial(
            "a_fork_in_a_full_cgroup_names_pids_max",
            a_fork_in_a_full_cgroup_names_pids_max,
        ),
        trial(
            "a_pool_in_a_full_cgroup_breaks_naming_pids_max",
            a_pool_in_a_full_cgroup_breaks_naming_pids_max,
        ),
        trial(
            "a_manager_in_a_full_cgroup_names_pids_max",
            a_manager_in_a_full_cgroup_names_pids_max,
        ),
        trial(
            "a_supervisor_that_cannot_restart_reports_it_and_gives_up",
            a_supervisor_that_cannot_restart_reports_it_and_gives_up,
        ),
    ]);
}
