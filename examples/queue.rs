//! The seed's Queue example: a child puts an item, the parent gets it.
//!
//! ```text
//! (42, None, "hello")
//! ```

use multiproc::blocking::{Process, Queue};

type Item = (i32, Option<i32>, String);

fn f(q: Queue<Item>) -> Result<(), multiproc::SyncError> {
    q.put(&(42, None, "hello".to_string()), true, None)
}
multiproc::register!(f);

#[multiproc::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let q = Queue::<Item>::new(0)?;
    let mut p = Process::new(f, q.clone());
    p.start()?;
    println!("{:?}", q.get(true, None)?); // prints "(42, None, "hello")"
    p.join()?;
    Ok(())
}
