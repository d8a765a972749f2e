//! `remote_lock_roundtrip` (`remote_rlock_roundtrip`): an acquire and a release of a
//! `Lock` (an `RLock`) from a process placed on a node on loopback (each one travels
//! to the root's gateway and back), against the same pair from a local child (shared
//! memory, no message).

use std::time::{Duration, Instant};

use multiproc::blocking::node::{self, Node, NodeConfig};
use multiproc::blocking::{Connection, Lock, Process, Queue, RLock, pipe};

use crate::{Better, ROUNDS, Res, STOP_TIMEOUT, Samples, Scenario};

const COOKIE: &str = "bench-far-cookie";
/// Acquire + release pairs per round.
const BATCH: u64 = 500;
/// Pairs before the first round.
const WARMUP: u64 = 100;
/// How long the bench waits for a round's figure.
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);

/// A node: serves on a free loopback port and sends its address up.
fn far_bench_node(mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    let serving = node::serve(NodeConfig::new(
        format!("bench-far-{}", std::process::id()),
        "127.0.0.1:0".parse()?,
        COOKIE,
    ))?;
    up.send(&serving.addr().to_string())?;
    multiproc::blocking::wait_for_stop();
    node::shutdown(serving);
    Ok(())
}

/// For each count it gets (0 ends it): that many acquire + release pairs, and the
/// mean time of one pair (µs) put back.
fn lock_pairs(
    lock: Lock,
    asks: Queue<u64>,
    figures: Queue<f64>,
) -> Result<(), Box<dyn std::error::Error>> {
    loop {
        let n = asks.get(true, None)?;
        if n == 0 {
            return Ok(());
        }
        let t0 = Instant::now();
        for _ in 0..n {
            lock.acquire(true, None)?;
            lock.release()?;
        }
        figures.put(&(t0.elapsed().as_secs_f64() * 1e6 / n as f64), true, None)?;
    }
}

/// As `lock_pairs`, with an `RLock` (its far owner is a stand-in thread of the root).
fn rlock_pairs(
    lock: RLock,
    asks: Queue<u64>,
    figures: Queue<f64>,
) -> Result<(), Box<dyn std::error::Error>> {
    loop {
        let n = asks.get(true, None)?;
        if n == 0 {
            return Ok(());
        }
        let t0 = Instant::now();
        for _ in 0..n {
            lock.acquire(true, None)?;
            lock.release()?;
        }
        figures.put(&(t0.elapsed().as_secs_f64() * 1e6 / n as f64), true, None)?;
    }
}

multiproc::register!(far_bench_node, lock_pairs, rlock_pairs);

/// A node process, child of the bench, killed when dropped.
struct NodeProcess(Process);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.join();
    }
}

fn start_node() -> Res<(NodeProcess, Node)> {
    let (mut ours, theirs) = pipe(true)?;
    let mut p = NodeProcess(Process::new(far_bench_node, theirs));
    p.0.start()?;
    if !ours.poll(Some(Duration::from_secs(10)))? {
        return Err("the bench node did not report its address".into());
    }
    let addr: String = ours.recv()?;
    Ok((p, node::connect(&addr, COOKIE)?))
}

/// A `lock_pairs` process and its queues.
struct Pairs {
    process: Process,
    asks: Queue<u64>,
    figures: Queue<f64>,
}

/// The lock a `Pairs` process takes.
enum Either {
    Lock(Lock),
    RLock(RLock),
}

impl Pairs {
    fn start(lock: &Either, node: Option<&Node>) -> Res<Pairs> {
        let (asks, figures) = (Queue::new(0)?, Queue::new(0)?);
        let mut process = match lock {
            Either::Lock(l) => Process::new(lock_pairs, (l.clone(), asks.clone(), figures.clone())),
            Either::RLock(l) => {
                Process::new(rlock_pairs, (l.clone(), asks.clone(), figures.clone()))
            }
        };
        if let Some(node) = node {
            process = process.on(node);
        }
        process.start()?;
        Ok(Pairs {
            process,
            asks,
            figures,
        })
    }

    fn round(&self, n: u64) -> Res<f64> {
        self.asks.put(&n, true, None)?;
        Ok(self.figures.get(true, Some(ROUND_TIMEOUT))?)
    }

    fn end(self) -> Res {
        self.asks.put(&0, true, None)?;
        self.process.join()?;
        Ok(())
    }
}

/// `remote_lock_roundtrip`.
pub(crate) fn remote_lock_roundtrip() -> Res {
    pairs_roundtrip(
        "remote_lock_roundtrip",
        "local-lock",
        &Either::Lock(Lock::new()?),
    )
}

/// `remote_rlock_roundtrip`.
pub(crate) fn remote_rlock_roundtrip() -> Res {
    pairs_roundtrip(
        "remote_rlock_roundtrip",
        "local-rlock",
        &Either::RLock(RLock::new()?),
    )
}

/// `name`: pairs from a node, against `reference`, the same pairs from a local child.
fn pairs_roundtrip(name: &'static str, reference: &str, lock: &Either) -> Res {
    let (node_process, node) = start_node()?;
    let remote = Pairs::start(lock, Some(&node))?;
    let local = Pairs::start(lock, None)?;
    remote.round(WARMUP)?;
    local.round(WARMUP)?;
    let (mut far, mut near) = (Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        far.push(vec![remote.round(BATCH)?]);
        near.push(vec![local.round(BATCH)?]);
    }
    remote.end()?;
    local.end()?;
    node_process.0.stop(STOP_TIMEOUT)?;
    Scenario {
        name,
        unit: "us",
        better: Better::Lower,
    }
    .report(reference, &far, &near);
    Ok(())
}
