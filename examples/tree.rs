//! A tree of seven processes that run until stopped.
//!
//! ```text
//! cargo run --example tree
//! ```
//!
//! The root starts two children that each start two of their own; every process prints
//! `<name> pid=<pid>` once running, and the root prints `ready` once all seven are up.
//! Then send SIGINT (^C) or SIGTERM to the root: the whole tree stops and the root
//! exits 0. Send SIGKILL to the root: no descendant survives it.

use std::error::Error;

use multiproc::blocking::{Connection, Process, pipe};

fn announce() {
    let me = multiproc::current_process();
    println!("{} pid={}", me.name(), me.pid());
}

/// Prints its line, then tells its parent it is up (so `ready` comes after every line).
fn leaf(mut up: Connection) -> Result<(), Box<dyn Error>> {
    announce();
    up.send(&"up")?;
    multiproc::blocking::wait_for_stop();
    Ok(())
}

fn branch(mut up: Connection) -> Result<(), Box<dyn Error>> {
    announce();
    let mut leaves = Vec::new();
    for _ in 0..2 {
        let (mut ours, theirs) = pipe(true)?;
        let mut l = Process::new(leaf, theirs);
        l.start()?;
        let _: String = ours.recv()?;
        leaves.push(l);
    }
    up.send(&"up")?;
    multiproc::blocking::wait_for_stop();
    Ok(())
}
multiproc::register!(leaf, branch);

#[multiproc::main]
fn main() -> Result<(), Box<dyn Error>> {
    announce();
    let mut branches = Vec::new();
    for _ in 0..2 {
        let (mut ours, theirs) = pipe(true)?;
        let mut p = Process::new(branch, theirs);
        p.start()?;
        let _: String = ours.recv()?;
        branches.push(p);
    }
    println!("ready");
    // Returns on SIGINT or SIGTERM, while the tree stops; returning from `main` then
    // waits for the children to finish stopping.
    multiproc::blocking::wait_for_stop();
    Ok(())
}
