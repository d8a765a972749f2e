//! The seed's shared-memory example: a child writes a `Value` and negates an
//! `Array` in place; the parent prints both.
//!
//! ```text
//! 3.1415927
//! [0, -1, -2, -3, -4, -5, -6, -7, -8, -9]
//! ```

use multiproc::blocking::{Array, Process, Value};

// The seed's number, not π: it prints as written.
#[allow(clippy::approx_constant)]
fn f(n: Value<f64>, a: Array<i32>) -> Result<(), multiproc::SharedMemoryError> {
    n.set(3.1415927)?;
    for x in a.lock()?.iter_mut() {
        *x = -*x;
    }
    Ok(())
}
multiproc::register!(f);

#[multiproc::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let num = Value::new(0.0)?;
    let arr = Array::from_slice(&(0..10).collect::<Vec<i32>>())?;
    let mut p = Process::new(f, (num.clone(), arr.clone()));
    p.start()?;
    p.join()?;
    println!("{}", num.get()?);
    println!("{:?}", arr.to_vec()?);
    Ok(())
}
