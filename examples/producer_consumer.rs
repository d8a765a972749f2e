//! A `JoinableQueue` with three producers and three consumers, one of which is killed
//! midway. Its unfinished item goes back to the queue, the others finish the work,
//! `join` returns, and nothing is lost.
//!
//! ```text
//! produced 300 items
//! killed consumer Process-4 midway
//! consumed 300 items
//! ```

use std::collections::HashSet;
use std::time::Duration;

use multiproc::SyncError;
use multiproc::blocking::{Process, Queue};

/// Tells a consumer to stop.
const STOP: u64 = u64::MAX;

fn producer(q: Queue<u64>, first: u64, n: u64) -> Result<(), SyncError> {
    for i in first..first + n {
        q.put(&i, true, None)?;
    }
    Ok(())
}

/// Takes items until told to stop, reports each one on `done`, marks it done.
fn consumer(q: Queue<u64>, done: Queue<u64>, pace: Duration) -> Result<(), SyncError> {
    loop {
        let item = q.get(true, None)?;
        if item == STOP {
            return q.task_done();
        }
        std::thread::sleep(pace);
        done.put(&item, true, None)?;
        q.task_done()?;
    }
}
multiproc::register!(producer, consumer);

#[multiproc::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let q = Queue::<u64>::joinable(0)?;
    let done = Queue::<u64>::new(0)?;
    let mut producers = Vec::new();
    for p in 0..3 {
        let mut proc = Process::new(producer, (q.clone(), p * 100, 100));
        proc.start()?;
        producers.push(proc);
    }
    let mut consumers = Vec::new();
    for pace in [5, 1, 1] {
        let mut proc = Process::new(
            consumer,
            (q.clone(), done.clone(), Duration::from_millis(pace)),
        );
        proc.start()?;
        consumers.push(proc);
    }
    for p in &producers {
        p.join()?;
    }
    println!("produced 300 items");

    // Let the work get going, then kill the slow consumer in the middle of it.
    let mut reports = Vec::new();
    while reports.len() < 50 {
        reports.push(done.get(true, None)?);
    }
    consumers[0].kill()?;
    consumers[0].join()?;
    println!("killed consumer {} midway", consumers[0].name());

    q.join()?; // every item done, including the one the dead consumer held
    for _ in 1..consumers.len() {
        q.put(&STOP, true, None)?;
    }
    for c in &consumers[1..] {
        c.join()?;
    }
    while let Ok(item) = done.get_nowait() {
        reports.push(item);
    }
    let distinct: HashSet<u64> = reports.iter().copied().collect();
    println!("consumed {} items", distinct.len());
    if reports.len() > distinct.len() {
        println!(
            "({} reported twice: done by the killed consumer, which died before its task_done)",
            reports.len() - distinct.len()
        );
    }
    Ok(())
}
