//! Pools across nodes on loopback: real node processes (this test program in node
//! mode, children of the test), workers placed on them, real TCP sessions through
//! `ractor_cluster`, a real SIGKILL of a node in the middle of a map.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::node::{COOKIE, TestNode};
use common::{TestResult, trial};
use multiproc::blocking::Pool;
use multiproc::blocking::node::{self, NodeError, Refusal};
use multiproc::{ExitReason, MAX_NODE_FRAME_LEN, PoolError, RetryPolicy, StartMethod, TaskError};

const GRACE: Duration = Duration::from_secs(5);
const READY: Option<Duration> = Some(Duration::from_secs(30));

// ---- tasks ----

/// `i` squared, and the pid of the program that started this worker: a node's pid
/// for a worker on a node.
fn square_where(i: u64) -> (u64, u32) {
    (i * i, parent_pid())
}

fn parent_pid() -> u32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32)
}

/// `i` and where it ran. With a gate, it first connects there and says where it runs,
/// then waits for the gate to close: the test holds it open to know the task is
/// running, and kills the node under it.
fn gated(i: u64, gate: Option<String>) -> (u64, u32) {
    if let Some(addr) = gate {
        let mut conn = TcpStream::connect(addr).expect("the test listens");
        conn.write_all(&parent_pid().to_be_bytes())
            .expect("the test reads");
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest);
    }
    (i, parent_pid())
}

fn byte_count(bytes: Vec<u8>) -> usize {
    bytes.len()
}

fn bytes_of(n: usize) -> Vec<u8> {
    vec![1; n]
}

multiproc::register!(square_where, gated, byte_count, bytes_of);

// ---- helpers ----

fn two_nodes(a: &str, b: &str) -> Result<(TestNode, TestNode, node::Node, node::Node), String> {
    let (na, ha) = TestNode::connected(a)?;
    let (nb, hb) = TestNode::connected(b)?;
    Ok((na, nb, ha, hb))
}

/// How many workers `pool.workers()` shows on each node (`None`: this host).
fn per_node(pool: &Pool) -> BTreeMap<Option<String>, usize> {
    let mut count = BTreeMap::new();
    for w in pool.workers() {
        *count.entry(w.node).or_default() += 1;
    }
    count
}

fn on(name: &str, n: usize) -> (Option<String>, usize) {
    (Some(name.to_string()), n)
}

// ---- tests ----

fn map_across_two_nodes_runs_on_both() -> TestResult {
    let (na, nb, a, b) = two_nodes("pa", "pb")?;
    let pool = Pool::builder().nodes([(&a, 2), (&b, 2)]).start()?;
    check_eq!(pool.processes(), 4);
    pool.wait_ready(READY)?;
    let workers = pool.workers();
    check_eq!(per_node(&pool), BTreeMap::from([on("pa", 2), on("pb", 2)]));
    for w in &workers {
        check!(
            w.name.starts_with("PoolWorker-") && !w.name.contains(':'),
            "named as local workers are: {}",
            w.name
        );
    }
    // One item a chunk, every worker ready: each worker takes work at once.
    let out = pool.map_chunked(square_where, 0..64u64, 1)?;
    let squares: Vec<u64> = out.iter().map(|r| r.0).collect();
    check_eq!(squares, (0..64u64).map(|i| i * i).collect::<Vec<_>>());
    let ran_on: std::collections::BTreeSet<u32> = out.iter().map(|r| r.1).collect();
    let (pa, pb) = (na.process.pid().unwrap(), nb.process.pid().unwrap());
    check!(
        ran_on.contains(&pa) && ran_on.contains(&pb),
        "ran under both nodes ({pa}, {pb}): {ran_on:?}"
    );
    // The default map (Python's chunksize) too.
    let out = pool.map(square_where, 0..1000u64)?;
    check_eq!(out.len(), 1000);
    check!(
        out.iter().enumerate().all(|(i, r)| r.0 == (i * i) as u64),
        "map's results"
    );
    pool.close();
    pool.join()?;
    check_eq!(pool.workers().len(), 0);
    Ok(())
}

fn apply_async_and_imap_unordered_across_nodes_and_here() -> TestResult {
    let (na, nb, a, b) = two_nodes("pc", "pd")?;
    // Spawned, so that a local worker's parent is this process.
    let pool = Pool::builder()
        .processes(1)
        .start_method(StartMethod::Spawn)
        .nodes([(&a, 1), (&b, 1)])
        .start()?;
    check_eq!(pool.processes(), 3);
    pool.wait_ready(READY)?;
    check_eq!(
        per_node(&pool),
        BTreeMap::from([(None, 1), on("pc", 1), on("pd", 1)])
    );
    let mut pending: Vec<_> = (0..30u64)
        .map(|i| pool.apply_async(square_where, i))
        .collect();
    for (i, r) in pending.iter_mut().enumerate() {
        check_eq!(r.get(None)?.0, (i * i) as u64);
    }
    let mut seen: Vec<u64> = Vec::new();
    let mut parents = std::collections::BTreeSet::new();
    for r in pool.imap_unordered(square_where, 0..200u64, 1) {
        let (sq, parent) = r?;
        seen.push(sq);
        parents.insert(parent);
    }
    seen.sort_unstable();
    check_eq!(seen, (0..200u64).map(|i| i * i).collect::<Vec<_>>());
    let here = std::process::id();
    let (pc, pd) = (na.process.pid().unwrap(), nb.process.pid().unwrap());
    check!(
        parents.iter().all(|p| [here, pc, pd].contains(p)),
        "every result from a worker of the pool: {parents:?}"
    );
    pool.terminate();
    Ok(())
}

/// Waits until item 0 of a `gated` map runs: the pid of the node program it runs
/// under, and its connection, which holds it running until dropped.
fn hold_item_zero(listener: &TcpListener) -> Result<(u32, TcpStream), String> {
    let (mut held, _) = listener.accept().map_err(|e| e.to_string())?;
    let mut pid = [0u8; 4];
    held.read_exact(&mut pid).map_err(|e| e.to_string())?;
    Ok((u32::from_be_bytes(pid), held))
}

fn items(n: u64, gate: &str) -> Vec<(u64, Option<String>)> {
    (0..n)
        .map(|i| (i, (i == 0).then(|| gate.to_string())))
        .collect()
}

fn a_killed_nodes_tasks_fail_with_node_down() -> TestResult {
    let (na, nb, a, b) = two_nodes("pe", "pf")?;
    let pool = Pool::builder().nodes([(&a, 2), (&b, 2)]).start()?;
    pool.wait_ready(READY)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let gate = listener.local_addr()?.to_string();
    let mut run = pool.map_async_chunked(gated, items(40, &gate), 1);
    let (parent, _held) = hold_item_zero(&listener)?;
    let (victim, victim_name, survivor) = if parent == na.process.pid().unwrap() {
        (&na, "pe", "pf")
    } else {
        (&nb, "pf", "pe")
    };
    victim.process.kill()?;
    // map fails as a whole at its first failed item: item 0, its worker's node gone.
    match run.get(None) {
        Err(PoolError::Task {
            error: TaskError::WorkerDied { reason, .. },
            ..
        }) => check_eq!(
            reason,
            ExitReason::NodeDown {
                node: victim_name.to_string()
            }
        ),
        other => return Err(format!("expected WorkerDied(NodeDown), got {other:?}").into()),
    }
    // Its workers are replaced on the live node.
    pool.wait_ready(READY)?;
    check_eq!(per_node(&pool), BTreeMap::from([on(survivor, 4)]));
    let out = pool.map(square_where, 0..100u64)?;
    check_eq!(out.len(), 100);
    pool.terminate();
    Ok(())
}

fn a_node_killed_mid_map_loses_no_task_with_retry() -> TestResult {
    let (na, nb, a, b) = two_nodes("pg", "ph")?;
    let pool = Pool::builder()
        .nodes([(&a, 2), (&b, 2)])
        .retry(RetryPolicy {
            retries: 3,
            quarantine_after: 3,
        })
        .start()?;
    pool.wait_ready(READY)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let gate = listener.local_addr()?.to_string();
    let mut run = pool.map_async_chunked(gated, items(200, &gate), 1);
    let (parent, held) = hold_item_zero(&listener)?;
    let (victim, survivor, alive) = if parent == na.process.pid().unwrap() {
        (&na, "ph", nb.process.pid().unwrap())
    } else {
        (&nb, "pg", na.process.pid().unwrap())
    };
    victim.process.kill()?;
    // Item 0 runs again, on the live node: it connects again, and is let go.
    let (again, rerun) = hold_item_zero(&listener)?;
    check_eq!(again, alive);
    drop(rerun);
    drop(held);
    let out = run.get(Some(Duration::from_secs(60)))?;
    // Every item exactly once, in order.
    check_eq!(
        out.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..200u64).collect::<Vec<_>>()
    );
    check_eq!(out[0].1, alive);
    pool.wait_ready(READY)?;
    check_eq!(per_node(&pool), BTreeMap::from([on(survivor, 4)]));
    pool.terminate();
    Ok(())
}

fn a_chunk_over_the_node_frame_cap_is_split_and_an_item_over_it_refused() -> TestResult {
    let n = TestNode::start("pi", COOKIE, None, GRACE);
    let a = node::connect(&n.addr, COOKIE)?;
    let pool = Pool::builder().nodes([(&a, 2)]).start()?;
    // Three items of 6 MiB in one chunk of 18 MiB: over the cap, cut to fit.
    const BIG: usize = 6 << 20;
    let out = pool.map_chunked(byte_count, (0..3).map(|_| vec![7u8; BIG]), 3)?;
    check_eq!(out, vec![BIG; 3]);
    // One item over the cap: no chunk can carry it.
    match pool.apply(byte_count, vec![0u8; MAX_NODE_FRAME_LEN + 1]) {
        Err(PoolError::TooLarge { max, .. }) => check_eq!(max, MAX_NODE_FRAME_LEN),
        other => return Err(format!("expected TooLarge, got {other:?}").into()),
    }
    // A result over the cap fails its task, typed, and the worker lives on.
    match pool.apply(bytes_of, MAX_NODE_FRAME_LEN + 1) {
        Err(PoolError::Task {
            error: TaskError::Encode { message },
            ..
        }) => check!(message.contains("max_frame_len"), "{message}"),
        other => return Err(format!("expected Encode, got {other:?}").into()),
    }
    check_eq!(pool.apply(byte_count, vec![1u8; 10])?, 10);
    pool.terminate();
    Ok(())
}

fn a_node_the_pool_cannot_use_is_a_typed_error_at_build() -> TestResult {
    let n = TestNode::start("pj", "the-right-cookie", None, GRACE);
    match node::connect(&n.addr, "a-wrong-cookie") {
        Err(NodeError::Refused {
            reason: Refusal::Cookie,
            ..
        }) => {}
        other => return Err(format!("expected a cookie refusal, got {other:?}").into()),
    }
    // Refused, so not connected: a pool on it is refused at once.
    match Pool::builder().nodes([("pj", 2)]).start() {
        Err(PoolError::Node(NodeError::NodeDown { node, why })) => {
            check_eq!(node, "pj");
            check!(why.contains("not connected"), "{why}");
        }
        other => return Err(format!("expected PoolError::Node, got {other:?}").into()),
    }
    // A node that died before the pool is built.
    let m = TestNode::start("pk", COOKIE, None, GRACE);
    let k = node::connect(&m.addr, COOKIE)?;
    m.process.kill()?;
    node::wait_down(&k);
    match Pool::builder().nodes([(&k, 2)]).start() {
        Err(PoolError::Node(NodeError::NodeDown { node, .. })) => check_eq!(node, "pk"),
        other => return Err(format!("expected PoolError::Node, got {other:?}").into()),
    }
    match Pool::builder().nodes([("pk", 0)]).start() {
        Err(PoolError::Invalid(_)) => {}
        other => return Err(format!("expected Invalid, got {other:?}").into()),
    }
    Ok(())
}

fn a_pool_whose_only_node_died_is_broken_not_hung() -> TestResult {
    let n = TestNode::start("pl", COOKIE, None, GRACE);
    let a = node::connect(&n.addr, COOKIE)?;
    let pool = Pool::builder().nodes([(&a, 1)]).start()?;
    pool.wait_ready(READY)?;
    n.process.kill()?;
    node::wait_down(&a);
    // A task sent before the pool learned of its worker's death dies with it.
    let outcome = match pool.apply(square_where, 3) {
        Err(PoolError::Task {
            error:
                TaskError::WorkerDied {
                    reason: ExitReason::NodeDown { .. },
                    ..
                },
            ..
        }) => pool.apply(square_where, 3),
        other => other,
    };
    // No place is left for a replacement: its starts fail, and past the start
    // intensity the pool gives up, naming why.
    match outcome {
        Err(PoolError::Broken { reason }) => check_eq!(
            reason,
            ExitReason::NodeDown {
                node: "pl".to_string()
            }
        ),
        other => return Err(format!("expected Broken(NodeDown), got {other:?}").into()),
    }
    Ok(())
}

fn main() {
    // Pools replace workers: bounded, whatever a regression does.
    common::cgroup::confine("cluster_pool");
    // One at a time: a process's connections to nodes are shared.
    common::run_serial(vec![
        trial(
            "map_across_two_nodes_runs_on_both",
            map_across_two_nodes_runs_on_both,
        ),
        trial(
            "apply_async_and_imap_unordered_across_nodes_and_here",
            apply_async_and_imap_unordered_across_nodes_and_here,
        ),
        trial(
            "a_killed_nodes_tasks_fail_with_node_down",
            a_killed_nodes_tasks_fail_with_node_down,
        ),
        trial(
            "a_node_killed_mid_map_loses_no_task_with_retry",
            a_node_killed_mid_map_loses_no_task_with_retry,
        ),
        trial(
            "a_chunk_over_the_node_frame_cap_is_split_and_an_item_over_it_refused",
            a_chunk_over_the_node_frame_cap_is_split_and_an_item_over_it_refused,
        ),
        trial(
            "a_pool_whose_only_node_died_is_broken_not_hung",
            a_pool_whose_only_node_died_is_broken_not_hung,
        ),
        trial(
            "a_node_the_pool_cannot_use_is_a_typed_error_at_build",
            a_node_the_pool_cannot_use_is_a_typed_error_at_build,
        ),
    ]);
}
