//! The seed's `info` example: the main process and a child each print who they are.
//!
//! ```text
//! cargo run --example process_info
//! ```

use std::error::Error;

use multiproc::blocking::Process;

fn info(title: &str) {
    let me = multiproc::current_process();
    println!("{title}");
    println!("module name: {}", module_path!());
    println!("process name: {}", me.name());
    match multiproc::parent_process() {
        Some(parent) => println!("parent process: {} ({})", parent.pid(), parent.name()),
        None => println!("parent process: {}", std::os::unix::process::parent_id()),
    }
    println!("process id: {}", me.pid());
}

fn f(name: String) {
    info("function f");
    println!("hello {name}");
}
multiproc::register!(f);

#[multiproc::main]
fn main() -> Result<(), Box<dyn Error>> {
    info("main line");
    let mut p = Process::new(f, "bob".to_string());
    p.start()?;
    p.join()?;
    Ok(())
}
