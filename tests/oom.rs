//! A child killed by the kernel's OOM killer ends with `ExitReason::OutOfMemory`, as a
//! process and as a pool worker: the test runs itself again inside a memory cgroup it
//! makes (a limit of [`LIMIT_MIB`] MiB, no swap), where a child that allocates more is
//! killed for real.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{TestResult, trial};
use multiproc::blocking::{Pool, Process};
use multiproc::{ExitReason, PoolError, TaskError};

/// The memory cgroup's limit.
const LIMIT_MIB: usize = 192;
/// Set in the environment of the run inside the cgroup.
const INSIDE: &str = "MULTIPROC_TEST_OOM_INSIDE";

/// Allocates `mib` MiB, written so that it is resident; returns only if it fits.
fn hog(mib: usize) -> usize {
    let v = vec![1u8; mib << 20];
    v.iter().step_by(4096).map(|&b| usize::from(b)).sum()
}

/// [`hog`], as a process's function.
fn hog_process(mib: usize) {
    hog(mib);
}

multiproc::register!(hog, hog_process);

fn a_child_killed_for_memory_is_out_of_memory() -> TestResult {
    let mut p = Process::new(hog_process, LIMIT_MIB * 4);
    p.start()?;
    let reason = p.join()?;
    check_eq!(reason, ExitReason::OutOfMemory);
    check_eq!(p.exit_code(), Some(-9));
    // A child killed by hand is not taken for one.
    let mut q = Process::new(hog_process, 1);
    q.start()?;
    q.join()?;
    let mut r = Process::new(waits_for_stop, ());
    r.start()?;
    r.kill()?;
    check_eq!(r.join()?, ExitReason::Signaled(9));
    Ok(())
}

fn waits_for_stop() {
    multiproc::blocking::wait_for_stop();
}

multiproc::register!(waits_for_stop);

fn a_pool_task_killed_for_memory_says_so() -> TestResult {
    let pool = Pool::new(1)?;
    match pool.apply(hog, LIMIT_MIB * 4) {
        Err(PoolError::Task {
            error: TaskError::WorkerDied { reason, .. },
            ..
        }) => {
            check_eq!(reason, ExitReason::OutOfMemory);
        }
        other => return Err(format!("expected WorkerDied(OutOfMemory), got {other:?}").into()),
    }
    // The pool goes on with a new worker.
    check_eq!(pool.apply(hog, 1)?, 256);
    pool.close();
    pool.join()?;
    Ok(())
}

/// A memory cgroup below this process's own, limited to `LIMIT_MIB`, or why none.
fn make_cgroup() -> Result<(PathBuf, &'static str), String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
    let name = format!("multiproc-oom-{}", std::process::id());
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let path = path.trim_start_matches('/');
        let (root, limit_file) = if controllers.split(',').any(|c| c == "memory") {
            (
                PathBuf::from("/sys/fs/cgroup/memory"),
                "memory.limit_in_bytes",
            )
        } else if controllers.is_empty()
            && std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        {
            (PathBuf::from("/sys/fs/cgroup"), "memory.max")
        } else {
            continue;
        };
        let dir = root.join(path).join(&name);
        std::fs::create_dir(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        let limit = (LIMIT_MIB << 20).to_string();
        if let Err(e) = std::fs::write(dir.join(limit_file), &limit) {
            let _ = std::fs::remove_dir(&dir);
            return Err(format!("cannot limit {}: {e}", dir.display()));
        }
        // No swap to escape to, where the kernel accounts it.
        let _ = std::fs::write(dir.join("memory.swap.max"), "0");
        let _ = std::fs::write(dir.join("memory.memsw.limit_in_bytes"), &limit);
        return Ok((dir, "cgroup.procs"));
    }
    Err("no memory cgroup controller".into())
}

/// Waits for the processes listed in `procs` to end, on their pidfds.
fn empty(procs: &std::path::Path) -> Result<(), String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(procs).map_err(|e| e.to_string())?;
        let pids: Vec<u32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        let Some(&pid) = pids.first() else {
            return Ok(());
        };
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || !common::wait_gone(pid, left) {
            return Err(format!(
                "processes outlived the test in {}: {pids:?}",
                procs.display()
            ));
        }
    }
}

fn trials() -> Vec<libtest_mimic::Trial> {
    vec![
        trial(
            "a_child_killed_for_memory_is_out_of_memory",
            a_child_killed_for_memory_is_out_of_memory,
        ),
        trial(
            "a_pool_task_killed_for_memory_says_so",
            a_pool_task_killed_for_memory_says_so,
        ),
    ]
}

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    // Listing starts nothing.
    if std::env::var_os(INSIDE).is_some() || args.iter().any(|a| a == "--list") {
        common::run(trials());
    }
    let (dir, procs) = match make_cgroup() {
        Ok(made) => made,
        Err(why) => {
            println!("oom: skipped, this machine gives the test no memory cgroup: {why}");
            return;
        }
    };
    // The run joins the cgroup before it is this program, so all of it is limited.
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"echo $$ > "$1" && shift && exec "$@""#)
        .arg("sh")
        .arg(dir.join(procs))
        .arg(std::env::current_exe().unwrap())
        .args(&args)
        .env(INSIDE, "1")
        .status();
    // Every child dies with the run's root, but not in the same instant.
    let removed = empty(&dir.join(procs)).and_then(|()| {
        std::fs::remove_dir(&dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))
    });
    let code = match status {
        Ok(s) => s.code().unwrap_or(101),
        Err(e) => {
            eprintln!("cannot run the test in {}: {e}", dir.display());
            101
        }
    };
    if let Err(e) = removed {
        eprintln!("{e}");
        std::process::exit(101);
    }
    std::process::exit(code);
}
