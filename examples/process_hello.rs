//! The seed's first `Process` example: a child prints `hello bob`.
//!
//! ```text
//! cargo run --example process_hello
//! ```

// ANCHOR: all
use std::error::Error;

use multiproc::blocking::Process;

fn f(name: String) {
    println!("hello {name}");
}
multiproc::register!(f);

#[multiproc::main]
fn main() -> Result<(), Box<dyn Error>> {
    // ANCHOR: start
    let mut p = Process::new(f, "bob".to_string());
    p.start()?;
    p.join()?;
    // ANCHOR_END: start
    Ok(())
}
// ANCHOR_END: all
