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

fn leaf() {
    announce();
    multiproc::blocking::wait_for_stop();
}

fn branch(mut up: Connection) -> Result<(), Box<dyn Error>> {
    announce();
    let mut leaves = [Process::new(leaf, ()), Process::new(leaf, ())];
    for l in &mut leaves {
        l.start()?;
    }
    up.send(&"up")?;
    multiproc::blocking::wait_for_stop();
    Ok(())
}
multiproc::register!(leaf, branch);

fn main() -> Result<(), Box<dyn Error>> {
    multiproc::init();
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
    // Runs until SIGINT or SIGTERM, which stop the tree and exit 0.
    multiproc::blocking::wait_for_stop();
    Ok(())
}
