//! A `OneForOne` supervisor restarting a child that exits at once, thousands of times,
//! on quiet CPUs and on busy ones: the supervising process's fds and threads come back
//! to where they were, and its memory hardly grows.
//!
//! A restart loop is what could multiply processes if multiproc regressed, so the
//! program under test is this binary again (`MULTIPROC_TEST_SUPERVISOR_SOAK` names the
//! case), run inside a pids cgroup the test makes. It measures itself after a warm-up
//! and after the loop, each time with the child stopped, and prints both; the test
//! checks them, the cgroup's peak, and that no process outlived the program.
//! `MULTIPROC_SOAK_ITERATIONS` sets the number of restarts, as in `soak.rs`.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::{Duration, Instant};

use common::cgroup::{self, Program};
use common::usage::{BusyCpus, Usage, iterations};
use common::{TestResult, trial};
use multiproc::blocking::{Events, SupervisorRef};
use multiproc::{
    Backoff, ExitReason, RestartIntensity, Strategy, Supervisor, SupervisorEvent, SupervisorExit,
    SupervisorFlags, function_child,
};

/// Set to the case's name in the program under test.
const SOAK: &str = "MULTIPROC_TEST_SUPERVISOR_SOAK";
/// Restarts before the first measurement: the runtime's threads, the spawner and the
/// allocator's arenas are all made by then.
const WARM_UP: usize = 50;
/// How much the supervising process's RSS may grow over the loop.
const RSS_GROWTH_KIB: u64 = 1024;
/// The cgroup's limit on tasks (threads count).
const PIDS_MAX: u32 = 256;
/// Most tasks the cgroup may have held at once: the supervising process's threads and
/// a child or two (one exiting as the next starts). Children that pile up fill
/// `PIDS_MAX`.
const PEAK_BOUND: u32 = 64;
/// How long the program may run before the test calls it a hang.
const PROGRAM_DEADLINE: Duration = Duration::from_secs(300);
/// How long a process of the cgroup may outlive the program.
const ORPHAN_GRACE: Duration = Duration::from_secs(2);

fn exits_at_once() {}

multiproc::register!(exits_at_once);

// ---- the program under test -----------------------------------------------------------

/// Reads events until `n` restarts have been seen; every exit before them must be a
/// normal one.
fn restarts(events: &mut Events, n: usize) -> Result<(), String> {
    let mut seen = 0;
    while seen < n {
        match events.next() {
            Some(SupervisorEvent::Restarted { .. }) => seen += 1,
            Some(SupervisorEvent::ChildExited { reason, .. }) if reason != ExitReason::Normal => {
                return Err(format!("the child exited {reason} after {seen} restarts"));
            }
            Some(_) => {}
            None => return Err(format!("the supervisor ended after {seen} restarts")),
        }
    }
    Ok(())
}

fn soak_program(case: &str) -> Result<String, String> {
    let (n, busy) = match case {
        "quiet" => (iterations(), false),
        // Half as many: each takes longer, and a leak shows within a few hundred.
        "busy" => (iterations() / 2, true),
        other => return Err(format!("unknown case {other}")),
    };
    let flags = SupervisorFlags {
        strategy: Strategy::OneForOne,
        // The loop is the point: no intensity ends it, no backoff slows it.
        intensity: RestartIntensity {
            max_restarts: u32::MAX,
            within: Duration::from_secs(1),
        },
        backoff: Backoff::NONE,
        ..SupervisorFlags::default()
    };
    let child = function_child("quick", exits_at_once, ()).map_err(|e| e.to_string())?;
    let supervisor = Supervisor::new(flags).child(child);
    let mut events = Events::from(supervisor.events());
    let sup = SupervisorRef::start(supervisor).map_err(|e| e.to_string())?;
    // Where it hung, should it: the test prints this on its deadline.
    eprintln!("warm-up");
    restarts(&mut events, WARM_UP)?;
    // Measured with the child stopped, so no restart is half done, and with the busy
    // threads (and what the allocator made for them) both times.
    sup.terminate_child("quick").map_err(|e| e.to_string())?;
    let busy = busy.then(BusyCpus::start);
    let before = Usage::now();
    let mut events = sup.events();
    let t0 = Instant::now();
    sup.restart_child("quick").map_err(|e| e.to_string())?;
    eprintln!("loop");
    restarts(&mut events, n)?;
    sup.terminate_child("quick").map_err(|e| e.to_string())?;
    let took = t0.elapsed();
    let after = Usage::now();
    drop(busy);
    let exit = sup.shutdown();
    if exit != SupervisorExit::Shutdown {
        return Err(format!("the supervisor ended with {exit:?}"));
    }
    Ok(format!(
        "restarts: {n} in {took:?} ({:.0}/s)\nbefore: {before}\nafter: {after}",
        n as f64 / took.as_secs_f64()
    ))
}

// ---- the test -------------------------------------------------------------------------

/// The value of the line `name: value` of the program's report.
fn reported<'a>(stdout: &'a str, name: &str) -> Result<&'a str, String> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        .ok_or_else(|| format!("no {name} in the program's report: {stdout:?}"))
}

fn a_restart_loop_leaks_nothing(case: &'static str) -> TestResult {
    let iterations = iterations().to_string();
    let run = Program {
        case: &format!("supervisor-soak-{case}"),
        pids_max: PIDS_MAX,
        env: &[(SOAK, case), ("MULTIPROC_SOAK_ITERATIONS", &iterations)],
        deadline: PROGRAM_DEADLINE,
        grace: ORPHAN_GRACE,
    }
    .run()?;
    check!(
        run.status.success(),
        "the program failed ({}): {}",
        run.status,
        run.stderr.trim()
    );
    let before: Usage = reported(&run.stdout, "before")?.parse()?;
    let after: Usage = reported(&run.stdout, "after")?.parse()?;
    eprintln!(
        "supervisor restarts, {case} CPUs: {}; fds {} -> {}, threads {} -> {}, rss {} -> {} \
         KiB; peak {:?} tasks",
        reported(&run.stdout, "restarts")?,
        before.fds,
        after.fds,
        before.threads,
        after.threads,
        before.rss_kib,
        after.rss_kib,
        run.peak
    );
    check!(
        after.fds <= before.fds,
        "fds grew from {} to {}",
        before.fds,
        after.fds
    );
    check!(
        after.threads <= before.threads,
        "threads grew from {} to {}",
        before.threads,
        after.threads
    );
    check!(
        after.rss_kib <= before.rss_kib + RSS_GROWTH_KIB,
        "RSS grew from {} to {} KiB, more than {RSS_GROWTH_KIB} KiB",
        before.rss_kib,
        after.rss_kib
    );
    check!(
        run.left.is_empty(),
        "processes {:?} outlived the program",
        run.left
    );
    check!(
        run.hit_limit == 0,
        "forks failed {} times at the cgroup's limit",
        run.hit_limit
    );
    check!(
        run.peak.is_none_or(|p| p <= PEAK_BOUND),
        "the cgroup held {:?} tasks at once",
        run.peak
    );
    Ok(())
}

fn a_restart_loop_on_quiet_cpus_leaks_nothing() -> TestResult {
    a_restart_loop_leaks_nothing("quiet")
}

fn a_restart_loop_on_busy_cpus_leaks_nothing() -> TestResult {
    a_restart_loop_leaks_nothing("busy")
}

fn main() {
    // The program under test refuses to run outside its cgroup before anything else;
    // its children pass through here too, on their way into `init()`.
    if let Ok(case) = std::env::var(SOAK) {
        cgroup::refuse_to_run_bare("the supervisor soak program");
        multiproc::init();
        let code = match soak_program(&case) {
            Ok(report) => {
                println!("{report}");
                0
            }
            Err(e) => {
                eprintln!("supervisor soak: {e}");
                1
            }
        };
        std::process::exit(code);
    }
    // One at a time: each measures a program that the other's load would disturb.
    common::run_serial(vec![
        trial(
            "a_restart_loop_on_quiet_cpus_leaks_nothing",
            a_restart_loop_on_quiet_cpus_leaks_nothing,
        ),
        trial(
            "a_restart_loop_on_busy_cpus_leaks_nothing",
            a_restart_loop_on_busy_cpus_leaks_nothing,
        ),
    ]);
}
