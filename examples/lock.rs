//! The seed's Lock example: ten processes print under one lock, so no line is cut.
//!
//! ```text
//! hello world 0
//! hello world 1
//! …            (all ten, in any order, each line whole)
//! ```

use std::io::Write;

use multiproc::blocking::{Lock, Process};

fn f(l: Lock, i: u32) -> Result<(), multiproc::SyncError> {
    let _held = l.guard()?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "hello world {i}");
    let _ = out.flush();
    Ok(())
}
multiproc::register!(f);

#[multiproc::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lock = Lock::new()?;
    let mut procs = Vec::new();
    for num in 0..10 {
        let mut p = Process::new(f, (lock.clone(), num));
        p.start()?;
        procs.push(p);
    }
    for p in &procs {
        p.join()?;
    }
    Ok(())
}
