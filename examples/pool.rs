//! The seed's full Pool example, line for line.
//!
//! ```text
//! [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
//! 0 1 4 9 16 25 36 49 64 81   (one per line, in any order)
//! 400
//! <the pid of a worker>
//! [<four worker pids>]
//! We lacked patience and got a multiprocessing.TimeoutError
//! ```

use std::time::Duration;

use multiproc::PoolError;
use multiproc::blocking::Pool;

fn f(x: u64) -> u64 {
    x * x
}

fn getpid() -> u32 {
    std::process::id()
}

fn sleep(secs: u64) {
    std::thread::sleep(Duration::from_secs(secs));
}
multiproc::register!(f, getpid, sleep);

#[multiproc::main]
fn main() -> Result<(), PoolError> {
    let pool = Pool::new(4)?; // start 4 worker processes

    // prints "[0, 1, 4,..., 81]"
    println!("{:?}", pool.map(f, 0..10)?);

    // prints the same numbers in arbitrary order
    for i in pool.imap_unordered(f, 0..10, 1) {
        println!("{}", i?);
    }

    // evaluates "f(20)" asynchronously
    let mut res = pool.apply_async(f, 20); // runs in *only* one process
    println!("{}", res.get(Some(Duration::from_secs(1)))?); // prints "400"

    // evaluates "getpid()" asynchronously
    let mut res = pool.apply_async(getpid, ()); // runs in *only* one process
    println!("{}", res.get(Some(Duration::from_secs(1)))?); // prints the PID of that process

    // launching multiple evaluations asynchronously *may* use more processes
    let multiple_results: Vec<_> = (0..4).map(|_| pool.apply_async(getpid, ())).collect();
    let pids = multiple_results
        .into_iter()
        .map(|mut res| res.get(Some(Duration::from_secs(1))))
        .collect::<Result<Vec<_>, _>>()?;
    println!("{pids:?}");

    // makes a single worker sleep for 10 secs
    let mut res = pool.apply_async(sleep, 10);
    match res.get(Some(Duration::from_secs(1))) {
        Err(PoolError::Timeout(_)) => {
            println!("We lacked patience and got a multiprocessing.TimeoutError")
        }
        other => println!("unexpected: {other:?}"),
    }
    // Python's `with Pool()` would terminate here; say so explicitly, since dropping
    // the pool would let the sleeping task finish first.
    pool.terminate();
    Ok(())
}
