//! A supervised tree that survives its crashes.
//!
//! ```text
//! cargo run --example supervise
//! ```
//!
//! A `OneForOne` supervisor runs a steady worker and a crash-prone one that, after a
//! random moment, panics, segfaults, aborts or exits with an error. Each supervisor
//! event is printed on one line; after eight restarts the supervisor is shut down and a
//! summary line `restarts=<n> escalations=<n>` ends the output.

use std::error::Error;
use std::time::Duration;

use multiproc::blocking::SupervisorRef;
use multiproc::{
    Backoff, RestartIntensity, Strategy, Supervisor, SupervisorEvent, SupervisorFlags,
    function_child,
};

/// Restarts to watch before shutting the tree down.
const RESTARTS: usize = 8;

fn steady() {
    multiproc::blocking::wait_for_stop();
}

fn crash_prone() {
    // Different in each incarnation: the pid picks the moment and the way to die.
    let dice = std::process::id().wrapping_mul(2_654_435_761) >> 16;
    std::thread::sleep(Duration::from_millis(20 + u64::from(dice % 80)));
    match dice % 4 {
        0 => panic!("crash_prone gave up"),
        1 => {
            // Rust's own SIGSEGV handler lets the first one pass (it only handles
            // stack overflows, then restores the default); the second one kills.
            let me = rustix::process::getpid();
            for _ in 0..2 {
                let _ = rustix::process::kill_process(me, rustix::process::Signal::SEGV);
            }
        }
        2 => std::process::abort(),
        _ => std::process::exit(2),
    }
}
multiproc::register!(steady, crash_prone);

#[multiproc::main]
fn main() -> Result<(), Box<dyn Error>> {
    // ANCHOR: supervisor
    let flags = SupervisorFlags {
        strategy: Strategy::OneForOne,
        intensity: RestartIntensity {
            max_restarts: 20,
            within: Duration::from_secs(5),
        },
        backoff: Backoff {
            min: Duration::from_millis(5),
            ..Backoff::default()
        },
        ..SupervisorFlags::default()
    };
    let supervisor = Supervisor::new(flags)
        .child(function_child("steady", steady, ())?)
        .child(function_child("crash_prone", crash_prone, ())?);
    let sup = SupervisorRef::start(supervisor)?;
    // Every event since the start (the children's first starts included), then the
    // new ones.
    let mut events = sup.events_from_start();
    // ANCHOR_END: supervisor

    let (mut restarts, mut escalations) = (0, 0);
    for event in events.by_ref() {
        println!("{event:?}");
        match event {
            SupervisorEvent::Restarted { .. } => restarts += 1,
            SupervisorEvent::IntensityExceeded { .. } => escalations += 1,
            SupervisorEvent::ShutDown { .. } => break,
            _ => {}
        }
        if restarts == RESTARTS {
            sup.shutdown();
        }
    }
    println!("restarts={restarts} escalations={escalations}");
    Ok(())
}
