//! A `main` that forgets `multiproc::init()` gets an error naming it, never a fork bomb:
//! one case per start method, each run inside a pids cgroup this test creates.
//!
//! The program under test is this binary again, as a separate root in "forgetful
//! mode" (`FORGETFUL` names the case): its `main` skips `init()` and starts a process
//! or a pool, and so does every copy of it that multiproc starts. The cgroup bounds
//! what a regression could do (as root, `RLIMIT_NPROC` does not hold), and lets the
//! test see every process the program made: how many ran at once, whether one hit the
//! limit, and whether one outlived the root. Forgetful mode refuses to run outside
//! such a cgroup, and the test fails rather than run it without one.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::Duration;

use common::cgroup::{self, Program, Run};
use common::{TestResult, trial};
use multiproc::StartMethod;
use multiproc::blocking::{Pool, Process};

/// Set to the case's name in the program under test.
const FORGETFUL: &str = "MULTIPROC_TEST_FORGETFUL";
/// The cgroup's limit on tasks (threads count: a root with a runtime has a dozen).
const PIDS_MAX: u32 = 128;
/// Most tasks the cgroup may have held at once: a root, its runtime's threads, and a
/// few children that each end at their first library call. A bomb fills `PIDS_MAX`.
const PEAK_BOUND: u32 = 64;
/// How long the root may take: each failed start ends at once, or after the default
/// handshake timeout (10 s) at worst.
const ROOT_DEADLINE: Duration = Duration::from_secs(60);
/// How long a process of the cgroup may outlive the root: the time for the kernel to
/// deliver a parent-death signal, as `tree_no_orphans` allows.
const ORPHAN_GRACE: Duration = Duration::from_secs(1);

fn returns() {}

fn square(x: u64) -> u64 {
    x * x
}

multiproc::register!(returns, square);

// ---- the program under test ---------------------------------------------------------

/// `main` without `init()`: starts a process or uses a pool, prints what failed.
fn forgetful_main(case: &str) -> ! {
    cgroup::refuse_to_run_bare("forgetful mode");
    if let Some(method) = case.strip_suffix("_orphan") {
        // The names of multiproc's role markers: set in a process it started.
        let started = ["MULTIPROC_BOOTSTRAP", "MULTIPROC_FORKSERVER"]
            .iter()
            .any(|v| std::env::var_os(v).is_some());
        if started {
            // A copy that does something long before any library call (here: for ever)
            // after its root has died: only what multiproc did before `main` ends it.
            if let Some(parent) = rustix::process::getppid() {
                let _ = rustix::process::kill_process(parent, rustix::process::Signal::KILL);
            }
            loop {
                std::thread::park();
            }
        }
        let method = match method {
            "spawn" => StartMethod::Spawn,
            _ => StartMethod::Forkserver,
        };
        let _ = start_one(method);
        eprintln!("forgetful root: outlived its own SIGKILL");
        std::process::exit(3);
    }
    let result: Result<(), Box<dyn std::error::Error>> = match case {
        "spawn" => start_one(StartMethod::Spawn),
        "forkserver" => start_one(StartMethod::Forkserver),
        "pool" => use_pool(Pool::new(2)),
        "pool_spawn" => use_pool(
            Pool::builder()
                .processes(2)
                .start_method(StartMethod::Spawn)
                .start(),
        ),
        other => Err(format!("unknown case {other}").into()),
    };
    match result {
        Ok(()) => {
            eprintln!("forgetful root: no error");
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("forgetful root: {e}");
            std::process::exit(1)
        }
    }
}

fn start_one(method: StartMethod) -> Result<(), Box<dyn std::error::Error>> {
    let mut p = Process::new(returns, ()).start_method(method);
    p.start()?;
    p.join()?;
    Ok(())
}

fn use_pool(pool: Result<Pool, multiproc::PoolError>) -> Result<(), Box<dyn std::error::Error>> {
    let pool = pool?;
    pool.apply(square, 3)?;
    Ok(())
}

// ---- the cases ------------------------------------------------------------------------

/// Runs the forgetful program for `case` in a fresh cgroup and checks it made few
/// processes and left none behind.
fn run_forgetful(case: &'static str) -> Result<Run, Box<dyn std::error::Error>> {
    let run = Program {
        case,
        pids_max: PIDS_MAX,
        env: &[(FORGETFUL, case)],
        deadline: ROOT_DEADLINE,
        grace: ORPHAN_GRACE,
    }
    .run()?;
    eprintln!(
        "{case}: root exited {} after {:?}; peak {:?} tasks, {} at the root's exit; \
         stderr: {}",
        run.status,
        run.took,
        run.peak,
        run.at_exit,
        run.stderr.trim()
    );
    if !run.left.is_empty() {
        return Err(format!("processes {:?} outlived the root", run.left).into());
    }
    if run.hit_limit != 0 {
        return Err(format!("forks failed {} times at the cgroup's limit", run.hit_limit).into());
    }
    if run.peak.is_some_and(|p| p > PEAK_BOUND) {
        return Err(format!("the cgroup held {:?} tasks at once", run.peak).into());
    }
    Ok(run)
}

/// The forgetful root ends with an error naming `multiproc::init()`, having made few
/// processes and left none behind.
fn forgetful_root_fails_cleanly(case: &'static str) -> TestResult {
    let Run { status, stderr, .. } = run_forgetful(case)?;
    check_eq!(status.code(), Some(1));
    check!(
        stderr.contains("forgetful root:") && stderr.contains("multiproc::init()"),
        "the root's error does not name multiproc::init(): {stderr}"
    );
    Ok(())
}

/// A copy of the forgetful program that kills its root and then never reaches a
/// library call still ends with the root: it was tied to it before `main`.
fn forgetful_copy_dies_with_its_root(case: &'static str) -> TestResult {
    use std::os::unix::process::ExitStatusExt;
    let Run { status, stderr, .. } = run_forgetful(case)?;
    check!(
        status.signal() == Some(9),
        "the root was not killed by its copy: {status}; {stderr}"
    );
    Ok(())
}

fn spawn_child_of_a_forgetful_root_dies_with_it() -> TestResult {
    forgetful_copy_dies_with_its_root("spawn_orphan")
}

fn forkserver_of_a_forgetful_root_dies_with_it() -> TestResult {
    forgetful_copy_dies_with_its_root("forkserver_orphan")
}

fn spawn_child_of_a_forgetful_root() -> TestResult {
    forgetful_root_fails_cleanly("spawn")
}

fn forkserver_child_of_a_forgetful_root() -> TestResult {
    forgetful_root_fails_cleanly("forkserver")
}

fn pool_of_a_forgetful_root() -> TestResult {
    forgetful_root_fails_cleanly("pool")
}

fn spawn_pool_of_a_forgetful_root() -> TestResult {
    forgetful_root_fails_cleanly("pool_spawn")
}

fn main() {
    // Before `init()`: in forgetful mode this is the program under test, whose `main`
    // never calls it.
    if let Ok(case) = std::env::var(FORGETFUL) {
        forgetful_main(&case);
    }
    common::run(vec![
        trial(
            "spawn_child_of_a_forgetful_root",
            spawn_child_of_a_forgetful_root,
        ),
        trial(
            "forkserver_child_of_a_forgetful_root",
            forkserver_child_of_a_forgetful_root,
        ),
        trial("pool_of_a_forgetful_root", pool_of_a_forgetful_root),
        trial(
            "spawn_child_of_a_forgetful_root_dies_with_it",
            spawn_child_of_a_forgetful_root_dies_with_it,
        ),
        trial(
            "forkserver_of_a_forgetful_root_dies_with_it",
            forkserver_of_a_forgetful_root_dies_with_it,
        ),
        trial(
            "spawn_pool_of_a_forgetful_root",
            spawn_pool_of_a_forgetful_root,
        ),
    ]);
}
