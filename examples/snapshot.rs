//! A snapshot of a running tree, printed: a supervisor with a steady child (which
//! starts a child of its own) and a crash-prone one, a pool that has done some work,
//! a manager, and the forkserver.
//!
//! ```text
//! cargo run --example snapshot
//! ```
//!
//! Prints the tree once every part of it is up, one process a line, indented under its
//! parent: `name [kind] pid=… state`, with the supervisor's spec id, restarts and last
//! exit, the tasks a pool worker answered, resident memory and CPU time. Then a line
//! `processes=<n>` and the tree is stopped.

use std::error::Error;
use std::time::Duration;

use multiproc::blocking::{Pool, Process, SupervisorRef};
use multiproc::observe::{ProcessKind, Snapshot};
use multiproc::{Backoff, Manager, RestartIntensity, Supervisor, SupervisorFlags, function_child};

/// How long the tree gets to come up before the example gives up.
const READY_WITHIN: Duration = Duration::from_secs(20);
/// Restarts of the crash-prone child to see before the snapshot is printed.
const RESTARTS: u32 = 2;

fn leaf() {
    multiproc::blocking::wait_for_stop();
}

/// Starts a child of its own (a grandchild of the root), then waits to be stopped.
fn steady() -> Result<(), multiproc::Error> {
    let mut grandchild = Process::new(leaf, ());
    grandchild.start()?;
    multiproc::blocking::wait_for_stop();
    Ok(())
}

fn crash_prone() {
    std::process::exit(3);
}

fn square(x: u64) -> u64 {
    x * x
}
multiproc::register!(leaf, steady, crash_prone, square);

/// Whether every part of the tree shows in `snap`.
fn complete(snap: &Snapshot) -> bool {
    let has = |kind| snap.processes.iter().any(|p| p.kind == kind);
    let restarted = snap.processes.iter().any(|p| p.restarts >= RESTARTS);
    has(ProcessKind::Descendant)
        && has(ProcessKind::PoolWorker)
        && has(ProcessKind::Manager)
        && has(ProcessKind::Forkserver)
        && restarted
}

#[multiproc::main]
fn main() -> Result<(), Box<dyn Error>> {
    let flags = SupervisorFlags {
        intensity: RestartIntensity {
            max_restarts: 1000,
            within: Duration::from_secs(60),
        },
        backoff: Backoff {
            min: Duration::from_millis(100),
            ..Backoff::default()
        },
        ..SupervisorFlags::default()
    };
    let supervisor = Supervisor::new(flags)
        .child(function_child("steady", steady, ())?)
        .child(function_child("crash_prone", crash_prone, ())?);
    let sup = SupervisorRef::start(supervisor)?;
    let pool = Pool::new(2)?;
    let squares = pool.map(square, 0..20u64)?;
    assert_eq!(squares[19], 361);
    let manager = Manager::start()?;

    // ANCHOR: snapshot
    let deadline = std::time::Instant::now() + READY_WITHIN;
    let snap = loop {
        let snap = multiproc::blocking::snapshot();
        if complete(&snap) || std::time::Instant::now() > deadline {
            break snap;
        }
        // The grandchild and the restarts come in their own time; nothing to wait on
        // from here but the tree itself.
        std::thread::sleep(Duration::from_millis(50));
    };
    print!("{snap}");
    println!("processes={}", snap.processes.len());
    // ANCHOR_END: snapshot

    sup.shutdown();
    pool.close();
    pool.join()?;
    drop(manager);
    if !complete(&snap) {
        return Err("the tree did not come up in time".into());
    }
    Ok(())
}
