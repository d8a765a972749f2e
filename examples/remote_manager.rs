//! A manager served on loopback TCP with an authkey, and another process tree (a
//! second program, started here) that connects to it and uses its objects from
//! processes of its own; a client with the wrong authkey is refused.
//!
//! ```text
//! manager listening on 127.0.0.1:<port>
//! client: 2 processes squared 5 numbers
//! client: a wrong authkey: authentication with the manager failed: digest sent was rejected
//! results: {1: 1, 2: 4, 3: 9, 4: 16, 5: 25}
//! ```

use std::process::Command;

use multiproc::blocking::Process;
use multiproc::connection::Address;
use multiproc::{DictProxy, Dynamic, Manager, ManagerError, QueueProxy, Registry};

const AUTHKEY: &[u8] = b"abracadabra";

/// The objects every start of this manager publishes.
fn shared(r: &mut Registry) {
    r.object("jobs", "queue", &(0u64,));
    r.object("results", "dict", &(Vec::<(Vec<u8>, Vec<u8>)>::new(),));
}
multiproc::manager_types!(shared);

/// In the client's tree: squares jobs until there are none.
fn worker(jobs: QueueProxy<i64>, results: DictProxy<i64, i64>) -> Result<(), ManagerError> {
    loop {
        match jobs.get(false, None) {
            Ok(n) => results.set(&n, &(n * n))?,
            Err(ManagerError::Empty) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}
multiproc::register!(worker);

fn client(address: &str) -> Result<(), Box<dyn std::error::Error>> {
    let address = Address::tcp(address)?;
    let m = Manager::connect(&address, AUTHKEY)?;
    let jobs: QueueProxy<i64> = m.lookup("jobs")?;
    let results: DictProxy<i64, i64> = m.lookup("results")?;
    let mut procs: Vec<Process> = (0..2)
        .map(|_| Process::new(worker, (jobs.clone(), results.clone())))
        .collect();
    for p in &mut procs {
        p.start()?;
    }
    for p in &procs {
        p.join()?;
    }
    println!("client: 2 processes squared {} numbers", results.len()?);
    match Manager::connect(&address, b"not the key") {
        Ok(_) => println!("client: a wrong authkey was accepted"),
        Err(e) => println!("client: a wrong authkey: {e}"),
    }
    Ok(())
}

#[multiproc::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, mode, address] = &args[..]
        && mode == "client"
    {
        return client(address);
    }
    let m = Manager::builder()
        .address(Address::tcp("127.0.0.1:0")?)
        .authkey(AUTHKEY)
        .types(shared)?
        .start()?;
    println!("manager listening on {}", m.address());
    let jobs: QueueProxy<i64> = m.lookup("jobs")?;
    for n in 1..=5 {
        jobs.put(&n, true, None)?;
    }
    // Another program: a process tree of its own, not a child of this one's.
    let status = Command::new(std::env::current_exe()?)
        .args(["client", &m.address().to_string()])
        .status()?;
    if !status.success() {
        return Err(format!("the client tree failed: {status}").into());
    }
    let results: DictProxy<Dynamic, Dynamic> = m.lookup("results")?;
    let mut items = results.items()?;
    items.sort_by_key(|(k, _)| match k {
        Dynamic::Int(n) => *n,
        _ => i64::MAX,
    });
    println!("results: {}", Dynamic::Dict(items));
    m.shutdown()?;
    Ok(())
}
