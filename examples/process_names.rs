//! Python's naming rules: the root starts two children and the first starts two of its
//! own, so `Process-1`, `Process-1:1`, `Process-1:2` and `Process-2` each print their
//! name.
//!
//! ```text
//! cargo run --example process_names
//! ```

use std::error::Error;

use multiproc::blocking::Process;

fn leaf() {
    println!("{}", multiproc::current_process().name());
}

fn parent_of_two() -> Result<(), multiproc::Error> {
    println!("{}", multiproc::current_process().name());
    let mut children = [Process::new(leaf, ()), Process::new(leaf, ())];
    for c in &mut children {
        c.start()?;
        c.join()?;
    }
    Ok(())
}
multiproc::register!(leaf, parent_of_two);

#[multiproc::main]
fn main() -> Result<(), Box<dyn Error>> {
    let mut first = Process::new(parent_of_two, ());
    let mut second = Process::new(leaf, ());
    first.start()?;
    first.join()?;
    second.start()?;
    second.join()?;
    Ok(())
}
