//! A dynamic supervisor that runs on a node: its children start, die and restart
//! there, and this program watches and steers it.
//!
//! ```text
//! cargo run --example node_supervisor
//! ```
//!
//! The program starts itself once in node mode (as its own child, on loopback: on a
//! real host the node would be started there), connects to it, and:
//!
//! - starts a `DynamicSupervisor` on the node and two children through it, and prints
//!   where each runs;
//! - kills one child with SIGKILL, and prints its exit and its restart, made by the
//!   node;
//! - kills the node, and prints the supervisor's end (`Lost`, the node down) and what
//!   a call to it says then.

use std::error::Error;
use std::time::Duration;

use multiproc::blocking::node::{self, NodeConfig};
use multiproc::blocking::{Connection, DynamicSupervisor, Process, pipe};
use multiproc::{Backoff, RestartIntensity, SupervisorEvent, SupervisorFlags, function_child};

const COOKIE: &str = "node-supervisor-example-cookie";

/// A node: serves on a free loopback port and sends its address up.
fn node_main(name: String, mut up: Connection) -> Result<(), Box<dyn Error>> {
    let serving = node::serve(NodeConfig::new(name, "127.0.0.1:0".parse()?, COOKIE))?;
    up.send(&serving.addr().to_string())?;
    multiproc::blocking::wait_for_stop();
    node::shutdown(serving);
    Ok(())
}

/// A supervised job: runs until stopped.
fn job() {
    multiproc::blocking::wait_for_stop();
}

multiproc::register!(node_main, job);

fn main() -> Result<(), Box<dyn Error>> {
    multiproc::init();

    let (mut ours, theirs) = pipe(true)?;
    let mut node_process = Process::new(node_main, ("node-1".to_string(), theirs));
    node_process.start()?;
    let addr: String = ours.recv()?;
    let node = node::connect(&addr, COOKIE)?;

    // ANCHOR: start_on
    let flags = SupervisorFlags {
        intensity: RestartIntensity {
            max_restarts: 3,
            within: Duration::from_secs(10),
        },
        backoff: Backoff::NONE,
        ..SupervisorFlags::default()
    };
    // The supervisor itself runs on the node; its children are started there by it.
    let jobs = DynamicSupervisor::start_on(&node, flags, function_child("job", job, ())?, None)?;
    let sup = jobs.supervisor();
    let mut events = sup.events();
    let first = jobs.start_child(&())?;
    jobs.start_child(&())?;
    for c in sup.which_children()? {
        println!(
            "{} runs on {} as {}",
            c.id,
            c.node.unwrap_or_default(),
            c.name.unwrap_or_default()
        );
    }
    // ANCHOR_END: start_on

    // A child killed on the node is restarted there, by the supervisor there.
    let pid = sup
        .which_children()?
        .into_iter()
        .find(|c| c.id == first)
        .and_then(|c| c.pid)
        .ok_or("the first job runs")?;
    let pid = rustix::process::Pid::from_raw(pid as i32).ok_or("a pid")?;
    rustix::process::kill_process(pid, rustix::process::Signal::KILL)?;
    for e in events.by_ref() {
        match e {
            SupervisorEvent::ChildExited { id, reason } => println!("{id} exited: {reason}"),
            SupervisorEvent::Restarted { id, node, .. } => {
                println!("{id} restarted on {}", node.unwrap_or_default());
                break;
            }
            _ => {}
        }
    }

    // The node dies: so does the supervisor, and calls to it say why.
    node_process.kill()?;
    println!("supervisor: {:?}", sup.join());
    if let Err(e) = sup.which_children() {
        println!("which_children: {e}");
    }
    Ok(())
}
