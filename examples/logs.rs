//! Children's `tracing` events in the root's subscriber, as they happened: their own
//! target, level, fields and spans, inside a `process{name=…}` span, filtered by the
//! root's `RUST_LOG` (default here: `info,logs::noisy=off`). A pool task's events are
//! also inside the span its caller called `map` in, and a `task{…}` span of its own.
//!
//! ```console
//! cargo run --release --example logs
//! RUST_LOG=debug cargo run --release --example logs
//! ```

use multiproc::blocking::{Pool, Process};
use tracing_subscriber::EnvFilter;

fn fetch(url: String) {
    let span = tracing::info_span!("fetch", %url);
    let _in = span.enter();
    tracing::info!(target: "logs::net", bytes = 1024u64, cached = false, "fetched");
    tracing::debug!(target: "logs::net", "headers parsed");
    tracing::info!(target: "logs::noisy", "a line nobody asked for");
}

fn square(x: u64) -> u64 {
    tracing::info!(target: "logs::pool", x, "squaring");
    x * x
}

multiproc::register!(fetch, square);

#[multiproc::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,logs::noisy=off"));
    // Plain text on stdout, without colours or times, so the output reads the same
    // on every run.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .with_writer(std::io::stdout)
        .init();

    let mut p = Process::new(fetch, "https://example.org/".to_string());
    p.start()?;
    p.join()?;

    let pool = Pool::new(2)?;
    // ANCHOR: caller_span
    let batch = tracing::info_span!("batch", size = 2);
    let squares = batch.in_scope(|| pool.map(square, vec![3, 4]))?;
    // ANCHOR_END: caller_span
    pool.close();
    pool.join()?;
    println!("squares: {squares:?}");
    Ok(())
}
