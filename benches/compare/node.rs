//! Node scenarios: `remote_call_roundtrip` (an actor call to an actor placed on a node
//! on loopback, against the same call to a local child and Python's `BaseManager`
//! proxy call over TCP) and `node_down_detect` (SIGKILL of a node to the `NodeDown`
//! exit of a process placed there).

use std::time::{Duration, Instant};

use multiproc::blocking::node::{self, Node, NodeConfig};
use multiproc::blocking::{Connection, Process, pipe};
use multiproc::{Actor, BoxError, ExitReason};

use crate::python::Python;
use crate::{
    Better, ROUNDS, Res, STOP_TIMEOUT, Samples, Scenario, median, num, spread, us, wanted,
};

const COOKIE: &str = "bench-cookie";
/// Round trips per round.
const CALL_BATCH: usize = 2000;
/// Round trips before the first round.
const CALL_WARMUP: usize = 500;

/// A node: serves on a free loopback port and sends its address up.
fn bench_node(mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    let serving = node::serve(NodeConfig::new(
        format!("bench-{}", std::process::id()),
        "127.0.0.1:0".parse()?,
        COOKIE,
    ))?;
    up.send(&serving.addr().to_string())?;
    multiproc::blocking::wait_for_stop();
    node::shutdown(serving);
    Ok(())
}

fn runs_until_stopped() {
    multiproc::blocking::wait_for_stop();
}

/// Answers each number with itself.
struct NodeEcho;

impl Actor for NodeEcho {
    type Args = ();
    type Msg = u64;
    type Reply = u64;

    async fn start((): ()) -> Result<Self, BoxError> {
        Ok(NodeEcho)
    }

    async fn handle(&mut self, x: u64) -> u64 {
        x
    }
}

multiproc::register!(bench_node, runs_until_stopped);
multiproc::register_actor!(NodeEcho);

/// A node process, child of the bench (not a daemon: a node starts children), killed
/// when dropped, so that an early error does not leave the bench waiting for it.
struct NodeProcess(Process);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.join();
    }
}

/// A node process and this process's connection to it.
fn start_node() -> Res<(NodeProcess, Node)> {
    let (mut ours, theirs) = pipe(true)?;
    let mut p = NodeProcess(Process::new(bench_node, theirs));
    p.0.start()?;
    if !ours.poll(Some(Duration::from_secs(10)))? {
        return Err("the bench node did not report its address".into());
    }
    let addr: String = ours.recv()?;
    Ok((p, node::connect(&addr, COOKIE)?))
}

fn check(i: u64, got: u64) -> Res {
    if i != got {
        return Err(format!("echo answered {got} to {i}").into());
    }
    Ok(())
}

/// `remote_call_roundtrip`.
pub(crate) fn remote_call_roundtrip(py: Option<&Python>) -> Res {
    let (node_process, node) = start_node()?;
    let mut remote = Process::actor::<NodeEcho>(()).on(&node);
    remote.start()?;
    let mut local = Process::actor::<NodeEcho>(()).daemon(true);
    local.start()?;
    let (remote_ref, local_ref) = (
        remote.actor_ref::<NodeEcho>(),
        local.actor_ref::<NodeEcho>(),
    );
    let batch = |r: &multiproc::blocking::ActorRef<NodeEcho>, n: usize| -> Res<f64> {
        let t0 = Instant::now();
        for i in 0..n as u64 {
            check(i, r.call(i)?)?;
        }
        Ok(us(t0) / n as f64)
    };
    let mut server = py
        .filter(|_| wanted("python-manager"))
        .map(|py| py.serve("remote_manager.py", &[], &[("ITERS", CALL_BATCH)]))
        .transpose()?;
    batch(&remote_ref, CALL_WARMUP)?;
    batch(&local_ref, CALL_WARMUP)?;
    let (mut mp, mut loc, mut python) =
        (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        mp.push(vec![batch(&remote_ref, CALL_BATCH)?]);
        loc.push(vec![batch(&local_ref, CALL_BATCH)?]);
        if let Some(s) = server.as_mut() {
            python.push(s.rep()?.samples);
        }
    }
    if let Some(s) = server {
        s.finish()?;
    }
    remote.stop(STOP_TIMEOUT)?;
    local.stop(STOP_TIMEOUT)?;
    node_process.0.stop(STOP_TIMEOUT)?;
    let sc = Scenario {
        name: "remote_call_roundtrip",
        unit: "us",
        better: Better::Lower,
    };
    sc.report("python-manager", &mp, &python);
    // The local call as the reference: the ratio is what crossing a node costs.
    sc.report("local-call", &mp, &loc);
    Ok(())
}

/// `node_down_detect`: per round, a fresh node with a process placed on it, SIGKILL of
/// the node, and the time until the process's `join` returns `NodeDown`.
pub(crate) fn node_down_detect() -> Res {
    let mut seen = Samples::default();
    for _ in 0..ROUNDS {
        let (node_process, node) = start_node()?;
        let mut p = Process::new(runs_until_stopped, ()).on(&node);
        p.start()?;
        let t0 = Instant::now();
        node_process.0.kill()?;
        let reason = p.join()?;
        let ms = us(t0) / 1000.0;
        if !matches!(reason, ExitReason::NodeDown { .. }) {
            return Err(format!("a killed node's process ended {reason:?}").into());
        }
        node_process.0.join()?;
        seen.push(vec![ms]);
    }
    let all = seen.all();
    println!(
        "node_down_detect: multiproc={} ms (SIGKILL of the node to NodeDown; target <= 1000 ms) {}",
        num(median(&all)),
        spread(&all)
    );
    Ok(())
}
