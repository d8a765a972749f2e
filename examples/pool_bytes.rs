//! Byte payloads in a pool: a `Vec<u8>` marked `#[serde(with = "serde_bytes")]`
//! crosses as one msgpack `bin` (a length, then the bytes), where a plain `Vec<u8>` is
//! an array of integers, one to two bytes each, encoded and decoded one by one. This
//! times an `apply` with a 1 MiB argument both ways, and prints the bytes each takes.
//!
//! ```sh
//! cargo run --release --example pool_bytes
//! ```

use std::error::Error;
use std::time::Instant;

use multiproc::blocking::Pool;
use serde::{Deserialize, Serialize};

/// The payload's length.
const PAYLOAD: usize = 1 << 20;
/// Calls timed each way; the figure is their median.
const CALLS: usize = 31;

// ANCHOR: bytes
/// Bytes that cross as bytes: `serde_bytes` encodes them as one msgpack `bin`.
#[derive(Serialize, Deserialize)]
struct Blob(#[serde(with = "serde_bytes")] Vec<u8>);

fn checksum_blob(blob: Blob) -> u64 {
    blob.0.iter().map(|&b| u64::from(b)).sum()
}
// ANCHOR_END: bytes

/// The same bytes as a plain `Vec<u8>`: serde sees a sequence of `u8`.
fn checksum_vec(bytes: Vec<u8>) -> u64 {
    bytes.iter().map(|&b| u64::from(b)).sum()
}

multiproc::register!(checksum_blob, checksum_vec);

/// The median of `CALLS` runs of `call`, in milliseconds.
fn median_ms(
    mut call: impl FnMut() -> Result<u64, multiproc::PoolError>,
) -> Result<f64, Box<dyn Error>> {
    let mut ms = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let t = Instant::now();
        call()?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms[CALLS / 2])
}

#[multiproc::main]
fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt::init();
    let pool = Pool::new(1)?;
    // Every byte value, so the plain encoding pays its two-byte integers (128..=255).
    let bytes: Vec<u8> = (0..PAYLOAD).map(|i| (i % 256) as u8).collect();
    let sum: u64 = bytes.iter().map(|&b| u64::from(b)).sum();
    assert_eq!(pool.apply(checksum_vec, bytes.clone())?, sum);
    assert_eq!(pool.apply(checksum_blob, Blob(bytes.clone()))?, sum);

    let plain_len = multiproc::codec::encode(&bytes)?.len();
    let bin_len = multiproc::codec::encode(&Blob(bytes.clone()))?.len();
    let plain = median_ms(|| pool.apply(checksum_vec, bytes.clone()))?;
    let bin = median_ms(|| pool.apply(checksum_blob, Blob(bytes.clone())))?;
    println!("Vec<u8>:             {plain:6.2} ms per apply, {plain_len} bytes encoded");
    println!("serde_bytes Vec<u8>: {bin:6.2} ms per apply, {bin_len} bytes encoded");
    println!("{:.1}x faster", plain / bin);
    pool.close();
    pool.join()?;
    Ok(())
}
