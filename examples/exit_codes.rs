//! Exit codes and exit reasons: six children that return, `exit(3)`, panic, abort,
//! receive SIGTERM and receive SIGKILL.
//!
//! ```text
//! cargo run --example exit_codes
//! ```
//!
//! prints, for each child, `<name> exitcode=<code> reason=<reason>`, with the codes
//! 0, 3, 1, -6, -15 and -9.

use std::error::Error;

use multiproc::blocking::Process;

fn returns() {}

fn exits() {
    std::process::exit(3);
}

fn panics() {
    panic!("this child panics on purpose");
}

fn aborts() {
    std::process::abort();
}

fn waits() {
    multiproc::blocking::wait_for_stop();
}
multiproc::register!(returns, exits, panics, aborts, waits);

#[multiproc::main]
fn main() -> Result<(), Box<dyn Error>> {
    let mut children = vec![
        Process::new(returns, ()),
        Process::new(exits, ()),
        Process::new(panics, ()).capture_output(),
        Process::new(aborts, ()),
        Process::new(waits, ()),
        Process::new(waits, ()),
    ];
    for c in &mut children {
        c.start()?;
    }
    children[4].terminate()?;
    children[5].kill()?;
    for c in &children {
        let reason = c.join()?;
        println!(
            "{} exitcode={} reason={reason}",
            c.name(),
            reason.exit_code()
        );
    }
    Ok(())
}
