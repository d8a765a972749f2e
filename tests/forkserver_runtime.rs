//! A function child builds its runtime only when its work needs one: until then it
//! has no runtime thread, and what needs one (a primitive, a log record, a child of
//! its own, a stop request, its parent's death) still works, the runtime built then.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::Duration;

use common::{TestResult, trial};
use multiproc::blocking::{Connection, Event, Process, pipe};
use multiproc::{ExitReason, StartMethod};

/// The names of this process's threads.
fn threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|dir| {
            dir.flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|name| name.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn has_runtime(threads: &[String]) -> bool {
    threads.iter().any(|t| t == "multiproc-rt")
}

fn returns() {}

/// Reports its threads, then uses what needs the runtime, and reports what it got.
fn grows(mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    let before = threads();
    let event = Event::new()?;
    event.set()?;
    tracing::info!("a lazy child logs");
    let mut own = Process::new(returns, ()).start_method(StartMethod::Forkserver);
    own.start()?;
    let joined = own.join()?;
    let after = threads();
    up.send(&(before, after, event.is_set()?, joined.to_string()))?;
    // Served from this thread, the link leaves the watcher nothing to watch: it ends.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while threads().iter().any(|t| t == "multiproc-watch") {
        if std::time::Instant::now() > deadline {
            return Err("the watcher outlived the link's start".into());
        }
        std::thread::yield_now();
    }
    Ok(())
}

/// Reports its threads, then works until asked to stop, looking only at the flag.
fn polls_for_stop(mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    up.send(&threads())?;
    while !multiproc::stop_requested() {
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Starts a forked grandchild that works without a runtime, sends its pid up, and
/// waits to be killed.
fn starts_a_worker(mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    let (mut ours, theirs) = pipe(true)?;
    let mut worker = Process::new(works_for_ever, theirs).start_method(StartMethod::Forkserver);
    worker.start()?;
    let threads: Vec<String> = ours.recv()?;
    up.send(&(worker.pid().unwrap_or(0), threads))?;
    multiproc::blocking::wait_for_stop();
    Ok(())
}

fn works_for_ever(mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    up.send(&threads())?;
    loop {
        std::thread::sleep(Duration::from_millis(10));
    }
}

multiproc::register!(
    returns,
    grows,
    polls_for_stop,
    starts_a_worker,
    works_for_ever
);

fn forked(p: Process) -> Process {
    p.start_method(StartMethod::Forkserver)
}

fn a_function_child_builds_its_runtime_when_its_work_needs_it() -> TestResult {
    for method in [StartMethod::Forkserver, StartMethod::Spawn] {
        let (mut ours, theirs) = pipe(true)?;
        let mut p = Process::new(grows, theirs).start_method(method);
        p.start()?;
        let (before, after, set, joined): (Vec<String>, Vec<String>, bool, String) = ours.recv()?;
        check!(
            !has_runtime(&before),
            "{method:?}: a runtime at once: {before:?}"
        );
        check!(
            has_runtime(&after),
            "{method:?}: no runtime after use: {after:?}"
        );
        check!(set, "{method:?}: the event is not set");
        check_eq!(joined, ExitReason::Normal.to_string());
        check_eq!(p.join()?, ExitReason::Normal);
        let logs = common::child_logs();
        check!(
            logs.iter()
                .any(|(process, message)| process == p.name() && message == "a lazy child logs"),
            "{method:?}: {logs:?}"
        );
    }
    Ok(())
}

fn a_function_child_without_a_runtime_is_stopped() -> TestResult {
    let (mut ours, theirs) = pipe(true)?;
    let mut p = forked(Process::new(polls_for_stop, theirs));
    p.start()?;
    let before: Vec<String> = ours.recv()?;
    check!(!has_runtime(&before), "a runtime at once: {before:?}");
    check_eq!(p.stop(Duration::from_secs(10))?, ExitReason::Shutdown);
    Ok(())
}

fn a_function_child_without_a_runtime_ends_with_its_parent() -> TestResult {
    let (mut ours, theirs) = pipe(true)?;
    let mut middle = Process::new(starts_a_worker, theirs);
    middle.start()?;
    let (worker, threads): (u32, Vec<String>) = ours.recv()?;
    check!(!has_runtime(&threads), "a runtime at once: {threads:?}");
    middle.kill()?;
    check_eq!(middle.join()?, ExitReason::Signaled(9));
    check!(
        common::wait_gone(worker, Duration::from_secs(10)),
        "the worker {worker} outlived its parent"
    );
    Ok(())
}

fn main() {
    // Children that start children: bounded, whatever a regression does.
    common::cgroup::confine("forkserver_runtime");
    common::run(vec![
        trial(
            "a_function_child_builds_its_runtime_when_its_work_needs_it",
            a_function_child_builds_its_runtime_when_its_work_needs_it,
        ),
        trial(
            "a_function_child_without_a_runtime_is_stopped",
            a_function_child_without_a_runtime_is_stopped,
        ),
        trial(
            "a_function_child_without_a_runtime_ends_with_its_parent",
            a_function_child_without_a_runtime_ends_with_its_parent,
        ),
    ])
}
