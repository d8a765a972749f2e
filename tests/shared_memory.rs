//! `Value`, `Array` and `SharedMemory` across real processes: what one writes the
//! other reads, the lock protects read-modify-write, a dead holder is reported,
//! bad handles map nothing, and nothing is ever left in `/dev/shm`.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::{TestResult, trial};
use multiproc::blocking::{Connection, Process, pipe};
use multiproc::{
    Array, RawArray, RawValue, SharedMemory, SharedMemoryError, SharedMemoryRef, Value,
};
use serde::{Deserialize, Serialize};

/// Adds 1, `n` times, each under the value's lock.
fn add(v: Value<u64>, n: u64) -> Result<(), SharedMemoryError> {
    for _ in 0..n {
        *v.lock()? += 1;
    }
    Ok(())
}

/// Writes `text` into the block at `offset`.
fn write_block(
    block: SharedMemoryRef,
    offset: usize,
    text: String,
) -> Result<(), SharedMemoryError> {
    block.open()?.write(offset, text.as_bytes())
}

/// Takes the value's lock, says so, and holds it until killed.
fn hold_value(v: Value<u64>, mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    let mut g = v.lock()?;
    *g = 7;
    up.send(&"holding")?;
    multiproc::blocking::wait_for_stop();
    Ok(())
}

/// Creates a block, hands its handle up, and exits (dropping the owner).
fn lend_a_block(mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    let block = SharedMemory::create(64)?;
    up.send(&block.handle())?;
    let _: String = up.recv()?;
    Ok(())
}

multiproc::register!(add, write_block, hold_value, lend_a_block);

fn shm_entries() -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn two_processes_add_under_the_lock() -> TestResult {
    let v = Value::new(0u64)?;
    let mut ps: Vec<Process> = (0..2)
        .map(|_| Process::new(add, (v.clone(), 20_000)))
        .collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    for p in &ps {
        check!(p.join().unwrap().is_normal(), "a child failed");
    }
    check_eq!(v.get().unwrap(), 40_000);
    Ok(())
}

fn a_child_writes_a_block_the_parent_reads() -> TestResult {
    let block = SharedMemory::create(1 << 20).unwrap();
    let mut p = Process::new(write_block, (block.handle(), 1000, "hello".to_string()));
    p.start().unwrap();
    check!(p.join().unwrap().is_normal(), "the child failed");
    let mut buf = [0u8; 5];
    block.read(1000, &mut buf).unwrap();
    check_eq!(&buf, b"hello");
    check!(
        matches!(
            block.write((1 << 20) - 2, b"abc"),
            Err(SharedMemoryError::OutOfBounds { .. })
        ),
        "a write past the end"
    );
    check!(
        matches!(SharedMemory::create(0), Err(SharedMemoryError::Size(_))),
        "a block of 0 bytes"
    );
    Ok(())
}

fn a_block_that_no_longer_exists_cannot_be_opened() -> TestResult {
    // Dropped by its owner here.
    let block = SharedMemory::create(64).unwrap();
    let handle = block.handle();
    let borrowed = handle.open().unwrap();
    drop(block);
    check!(
        matches!(handle.open(), Err(SharedMemoryError::Gone)),
        "opened after its owner dropped it"
    );
    // A mapping made before stays valid.
    borrowed.write(0, b"still here").unwrap();
    // Its owner, another process, exited.
    let (mut ours, theirs) = pipe(true).unwrap();
    let mut p = Process::new(lend_a_block, theirs);
    p.start().unwrap();
    let handle: SharedMemoryRef = ours.recv().unwrap();
    ours.send(&"exit".to_string()).unwrap();
    p.join().unwrap();
    check!(
        matches!(handle.open(), Err(SharedMemoryError::Gone)),
        "opened after its owner exited"
    );
    Ok(())
}

/// A handle's shape on the wire, to corrupt one.
#[derive(Serialize, Deserialize)]
struct WireBlock {
    block: WireInner,
}

#[derive(Serialize, Deserialize)]
struct WireInner {
    seg: WireSeg,
    secret: u64,
    addr: WireAddr,
}

/// The counted address a block's handle carries (see the book's handle lifetimes).
#[derive(Serialize, Deserialize)]
struct WireAddr {
    owner: multiproc::Identity,
    id: u64,
    secret: u64,
}

#[derive(Serialize, Deserialize)]
struct WireSeg {
    pid: u32,
    fd: i32,
    ino: u64,
    len: u64,
}

fn a_forged_or_mistyped_handle_maps_nothing() -> TestResult {
    let v = RawValue::new(5u64)?;
    // Decoded as a value of another type: another element size.
    let as_u32: RawValue<u32> =
        multiproc::codec::decode(&multiproc::codec::encode(&v).unwrap()).unwrap();
    check!(
        matches!(as_u32.get(), Err(SharedMemoryError::Forged)),
        "a u64 read as a u32"
    );
    // A wrong secret.
    let mut wire: WireBlock =
        multiproc::codec::decode(&multiproc::codec::encode(&v).unwrap()).unwrap();
    wire.block.secret ^= 1;
    let forged: RawValue<u64> =
        multiproc::codec::decode(&multiproc::codec::encode(&wire).unwrap()).unwrap();
    check!(
        matches!(forged.get(), Err(SharedMemoryError::Forged)),
        "a wrong secret"
    );
    // An array's handle read as a value's: another kind.
    let a = RawArray::from_slice(&[1u64, 2]).unwrap();
    let as_value: RawValue<u64> =
        multiproc::codec::decode(&multiproc::codec::encode(&a).unwrap()).unwrap();
    check!(
        matches!(as_value.get(), Err(SharedMemoryError::Forged)),
        "an array as a value"
    );
    check_eq!(v.get().unwrap(), 5);
    check!(
        matches!(
            a.get(2),
            Err(SharedMemoryError::OutOfBounds { index: 2, len: 2 })
        ),
        "index past the end"
    );
    Ok(())
}

fn a_dead_holder_of_a_values_lock_is_reported() -> TestResult {
    let v = Value::new(0u64)?;
    let (mut ours, theirs) = pipe(true).unwrap();
    let mut p = Process::new(hold_value, (v.clone(), theirs));
    p.start().unwrap();
    let _: String = ours.recv().unwrap();
    p.kill().unwrap();
    p.join().unwrap();
    let g = v.lock().unwrap();
    check!(g.owner_died(), "the next holder is told");
    check_eq!(*g, 7);
    Ok(())
}

fn nothing_is_left_in_dev_shm() -> TestResult {
    let before = shm_entries();
    {
        let v = Value::new(1u32)?;
        let a = Array::<u8>::zeroed(4096).unwrap();
        let block = SharedMemory::create(4096).unwrap();
        let (mut ours, theirs) = pipe(true).unwrap();
        let mut p = Process::new(hold_value, (Value::new(0u64)?, theirs));
        p.start().unwrap();
        let _: String = ours.recv().unwrap();
        p.kill().unwrap();
        p.join().unwrap();
        let _ = (v, a, block);
    }
    let after = shm_entries();
    check_eq!(after, before);
    Ok(())
}

fn main() {
    common::run(vec![
        trial(
            "two_processes_add_under_the_lock",
            two_processes_add_under_the_lock,
        ),
        trial(
            "a_child_writes_a_block_the_parent_reads",
            a_child_writes_a_block_the_parent_reads,
        ),
        trial(
            "a_block_that_no_longer_exists_cannot_be_opened",
            a_block_that_no_longer_exists_cannot_be_opened,
        ),
        trial(
            "a_forged_or_mistyped_handle_maps_nothing",
            a_forged_or_mistyped_handle_maps_nothing,
        ),
        trial(
            "a_dead_holder_of_a_values_lock_is_reported",
            a_dead_holder_of_a_values_lock_is_reported,
        ),
        trial("nothing_is_left_in_dev_shm", nothing_is_left_in_dev_shm),
    ]);
}
