//! The seed's first example: a pool of five workers squares three numbers.
//!
//! ```text
//! [1, 4, 9]
//! ```

use multiproc::blocking::Pool;

fn f(x: u64) -> u64 {
    x * x
}
multiproc::register!(f);

#[multiproc::main]
fn main() -> Result<(), multiproc::PoolError> {
    let pool = Pool::new(5)?;
    println!("{:?}", pool.map(f, [1, 2, 3])?);
    Ok(())
}
