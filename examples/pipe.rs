//! The seed's `Pipe` example: a child sends `(42, None, "hello")` to its parent.
//!
//! ```text
//! cargo run --example pipe
//! ```

use std::error::Error;

use multiproc::blocking::{Connection, Process, pipe};

type Message = (i32, Option<()>, String);

// ANCHOR: child
fn f(mut conn: Connection) -> Result<(), multiproc::connection::Error> {
    conn.send(&(42, None::<()>, "hello".to_string()))?;
    conn.close();
    Ok(())
}
multiproc::register!(f);
// ANCHOR_END: child

#[multiproc::main]
fn main() -> Result<(), Box<dyn Error>> {
    // ANCHOR: parent
    let (mut parent_conn, child_conn) = pipe(true)?;
    let mut p = Process::new(f, child_conn);
    p.start()?;
    let got: Message = parent_conn.recv()?;
    println!("{got:?}");
    p.join()?;
    // ANCHOR_END: parent
    Ok(())
}
