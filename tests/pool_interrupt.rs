//! Ctrl-C during `map`: the call returns promptly with `Interrupted`, the workers are
//! stopped, and the program goes on (a binary of its own: SIGINT reaches the whole
//! process).

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::{Duration, Instant};

use common::{TestResult, trial, wait_gone};
use multiproc::PoolError;
use multiproc::blocking::Pool;

/// Announces its pid on the FIFO `fifo` (when given), then sleeps `ms`.
fn nap(fifo: String, ms: u64) -> u32 {
    if !fifo.is_empty() {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
        writeln!(f, "{}", std::process::id()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

fn sq(x: u64) -> u64 {
    x * x
}
multiproc::register!(nap, sq);

fn sigint_during_map_interrupts_it_and_stops_the_workers() -> TestResult {
    let fifo = std::env::temp_dir().join(format!("multiproc-interrupt-{}", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    check!(made.success(), "mkfifo");
    let pool = Pool::new(2).unwrap();
    let announcing = fifo.to_string_lossy().into_owned();
    let reader = std::thread::spawn({
        let fifo = fifo.clone();
        move || {
            // Blocks until a task runs; then Ctrl-C, as a terminal would send it.
            let pid: u32 = std::fs::read_to_string(&fifo)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::INT)
                .unwrap();
            (pid, Instant::now())
        }
    });
    let mut work = vec![(announcing, 60_000)];
    work.extend((0..9).map(|_| (String::new(), 60_000)));
    let r = pool.map_chunked(nap, work, 1);
    let (pid, sent) = reader.join().unwrap();
    let _ = std::fs::remove_file(&fifo);
    check!(matches!(r, Err(PoolError::Interrupted)), "{r:?}");
    check!(
        sent.elapsed() < Duration::from_secs(2),
        "promptly: {:?}",
        sent.elapsed()
    );
    check!(
        wait_gone(pid, Duration::from_secs(5)),
        "the busy worker is stopped"
    );
    check!(
        matches!(pool.apply(sq, 2), Err(PoolError::Interrupted)),
        "the pool stays interrupted"
    );
    pool.join().unwrap();
    check!(pool.workers().is_empty(), "no workers left");
    // The process was not stopped: a new pool works.
    let again = Pool::new(1).unwrap();
    check_eq!(again.apply(sq, 3).unwrap(), 9);
    Ok(())
}

fn main() {
    common::run(vec![trial(
        "sigint_during_map_interrupts_it_and_stops_the_workers",
        sigint_during_map_interrupts_it_and_stops_the_workers,
    )]);
}
