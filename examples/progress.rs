//! A progress bar over a long `map`: `Pool::map_with_progress` with the
//! `indicatif` feature's `progress_bar`.
//!
//! ```text
//! cargo run --example progress --features indicatif
//! ```
//!
//! Four workers each take a few milliseconds per item of 400; the bar (on a terminal)
//! moves as chunks come back. Then the example prints how many progress reports came,
//! and the sum of the results.

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use multiproc::blocking::Pool;

/// Items in the `map`.
const ITEMS: u64 = 400;
/// What one item costs a worker.
const WORK: Duration = Duration::from_millis(5);

fn slow_square(x: u64) -> u64 {
    std::thread::sleep(WORK);
    x * x
}
multiproc::register!(slow_square);

#[multiproc::main]
fn main() -> Result<(), Box<dyn Error>> {
    let pool = Pool::new(4)?;
    // ANCHOR: progress
    let bar = indicatif::ProgressBar::new(ITEMS);
    let mut show = multiproc::progress_bar(bar);
    let reports = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&reports);
    let squares = pool.map_with_progress(slow_square, 0..ITEMS, move |p| {
        counted.fetch_add(1, Ordering::Relaxed);
        show(p);
    })?;
    // ANCHOR_END: progress
    let reports = reports.load(Ordering::Relaxed);
    println!("{reports} progress reports for {ITEMS} items");
    println!("sum of squares: {}", squares.iter().sum::<u64>());
    pool.close();
    pool.join()?;
    Ok(())
}
