//! A pool whose tasks sometimes crash their worker: SIGKILL, abort, panic, a hang past
//! the task timeout. Every task is accounted for, the pool replaces what died, and the
//! program ends.
//!
//! ```text
//! task 0: 0
//! task 1: failed: worker PoolWorker-… (pid …) died running the task: signaled(SIGKILL)
//! task 2: failed: worker PoolWorker-… (pid …) died running the task: signaled(SIGABRT)
//! task 3: failed: task panicked at examples/pool_crash.rs:…: task 3 panicked on purpose
//! task 4: failed: task ran past its timeout of 500ms; worker PoolWorker-… (pid …) was killed
//! task 5: Err("task 5 refused its input")
//! …
//! 12 tasks: 2 succeeded, 10 failed, none lost
//! ```

use std::time::Duration;

use multiproc::PoolError;
use multiproc::blocking::Pool;

/// What task `i` does depends on `i % 6`.
fn risky(i: u64) -> Result<u64, String> {
    match i % 6 {
        1 => {
            let me = rustix::process::getpid();
            let _ = rustix::process::kill_process(me, rustix::process::Signal::KILL);
            unreachable!("SIGKILL is not survivable")
        }
        2 => std::process::abort(),
        3 => panic!("task {i} panicked on purpose"),
        4 => {
            std::thread::sleep(Duration::from_secs(3600));
            Ok(i)
        }
        5 => Err(format!("task {i} refused its input")),
        _ => Ok(i * i),
    }
}
multiproc::register!(risky);

#[multiproc::main]
fn main() -> Result<(), PoolError> {
    let pool = Pool::builder()
        .processes(2)
        .task_timeout(Duration::from_millis(500))
        .start()?;
    let (mut ok, mut failed, mut seen) = (0, 0, 0);
    for (i, result) in pool.imap(risky, 0..12, 1).enumerate() {
        seen += 1;
        match result {
            Ok(Ok(v)) => {
                ok += 1;
                println!("task {i}: {v}");
            }
            Ok(Err(refusal)) => {
                failed += 1;
                println!("task {i}: Err({refusal:?})");
            }
            Err(PoolError::Task { error, .. }) => {
                failed += 1;
                println!("task {i}: failed: {error}");
            }
            Err(other) => return Err(other),
        }
    }
    let lost = 12 - seen;
    println!(
        "{seen} tasks: {ok} succeeded, {failed} failed, {}",
        if lost == 0 {
            "none lost".to_string()
        } else {
            format!("{lost} lost")
        }
    );
    Ok(())
}
