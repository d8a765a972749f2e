//! Node scenarios: `remote_call_roundtrip` (an actor call to an actor placed on a node
//! on loopback, against the same call to a local child, Python's `BaseManager` proxy
//! call over TCP and a bare TCP ping-pong; with what each costs the processes it
//! crosses in sleeps and CPU time), `node_down_detect` (SIGKILL of a node to
//! the `NodeDown` exit of a process placed there) and `pool_map_2nodes` (a pool's map
//! with its workers on two nodes against the same workers on one node).

use std::time::{Duration, Instant};

use multiproc::blocking::node::{self, Node, NodeConfig};
use multiproc::blocking::{Connection, Pool, Process, pipe};
use multiproc::{Actor, BoxError, ExitReason};

use crate::engine::EngineEcho;
use crate::pool::sq;
use crate::python::Python;
use crate::raw::RawChild;
use crate::{
    Better, ROUNDS, Res, STOP_TIMEOUT, Samples, Scenario, median, num, spread, us, wanted,
};

const COOKIE: &str = "bench-cookie";
/// Round trips per round.
const CALL_BATCH: usize = 2000;
/// Round trips before the first round.
const CALL_WARMUP: usize = 500;
/// Items per map of `pool_map_2nodes`, and their chunksize: a chunk a round trip to
/// a node, so that the map measures the path to the nodes, not the task.
const NODE_MAP_ITEMS: u64 = 20_000;
const NODE_MAP_CHUNK: usize = 10;

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
    // The processes a remote call wakes: this one, the node program, the actor's.
    let remote_pids = [std::process::id(), node.pid(), remote.pid().unwrap_or(0)];
    let local_pids = [std::process::id(), local.pid().unwrap_or(0)];
    let mut server = py
        .filter(|_| wanted("python-manager"))
        .map(|py| py.serve("remote_manager.py", &[], &[("ITERS", CALL_BATCH)]))
        .transpose()?;
    let mut tcp = wanted("raw").then(|| TcpEcho::start(false)).transpose()?;
    let mut spin = wanted("raw").then(|| TcpEcho::start(true)).transpose()?;
    let mut engine = wanted("raw").then(EngineEcho::start).transpose()?;
    batch(&remote_ref, CALL_WARMUP)?;
    batch(&local_ref, CALL_WARMUP)?;
    for t in tcp.iter_mut().chain(spin.iter_mut()) {
        t.batch(CALL_WARMUP)?;
    }
    if let Some(e) = engine.as_mut() {
        e.batch(CALL_WARMUP)?;
    }
    let (mut mp, mut loc, mut python, mut raw, mut bare, mut spun) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    let (mut mp_use, mut loc_use, mut raw_use, mut py_use, mut bare_use, mut spun_use) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for _ in 0..ROUNDS {
        let before = Cost::of(&remote_pids);
        mp.push(vec![batch(&remote_ref, CALL_BATCH)?]);
        mp_use.push(Cost::of(&remote_pids).since(before));
        let before = Cost::of(&local_pids);
        loc.push(vec![batch(&local_ref, CALL_BATCH)?]);
        loc_use.push(Cost::of(&local_pids).since(before));
        if let Some(s) = server.as_mut() {
            let pids = s.pids();
            let before = Cost::of(&pids);
            python.push(s.rep()?.samples);
            py_use.push(Cost::of(&pids).since(before));
        }
        if let Some(t) = tcp.as_mut() {
            let pids = [std::process::id(), t.child.child.id()];
            let before = Cost::of(&pids);
            raw.push(vec![t.batch(CALL_BATCH)?]);
            raw_use.push(Cost::of(&pids).since(before));
        }
        if let Some(t) = spin.as_mut() {
            let pids = [std::process::id(), t.child.child.id()];
            let before = Cost::of(&pids);
            spun.push(vec![t.batch(CALL_BATCH)?]);
            spun_use.push(Cost::of(&pids).since(before));
        }
        if let Some(e) = engine.as_mut() {
            let pids = e.pids();
            let before = Cost::of(&pids);
            bare.push(vec![e.batch(CALL_BATCH)?]);
            bare_use.push(Cost::of(&pids).since(before));
        }
    }
    if let Some(e) = engine {
        e.finish()?;
    }
    for TcpEcho { child, conn } in tcp.into_iter().chain(spin) {
        // The child serves the connection until its end.
        drop(conn);
        child.finish()?;
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
    // The floor: 8 bytes there and back over loopback TCP between two processes, no
    // framing, no session, no actor.
    sc.report("raw-tcp", &mp, &raw);
    // The same with both ends polling their non-blocking sockets: the floor of a
    // round trip over TCP between two processes here, whatever the engine.
    sc.report("raw-tcp-spin", &mp, &spun);
    // The engine's floor: a call through a `ractor_cluster` session to an actor of
    // the other process, with nothing of multiproc (`compare/engine.rs`).
    sc.report("ractor-cluster", &mp, &bare);
    // What a call costs the processes it crosses, which the machine's load changes
    // far less than the time: their threads' sleeps (voluntary context switches: each
    // one a wake-up to come) and preemptions, and their CPU time.
    println!(
        "remote_call_roundtrip: per call, sleeps+preemptions and CPU of the processes crossed: multiproc={} python-manager={} local-call={} raw-tcp={} raw-tcp-spin={} ractor-cluster={}",
        Cost::median(&mp_use),
        Cost::median(&py_use),
        Cost::median(&loc_use),
        Cost::median(&raw_use),
        Cost::median(&spun_use),
        Cost::median(&bare_use),
    );
    Ok(())
}

/// Context switches and CPU time of every thread of some processes, from /proc.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    voluntary: f64,
    involuntary: f64,
    cpu_ns: f64,
}

impl Cost {
    /// So far, over every thread of `pids` (`/proc/PID/task/*/status` and
    /// `schedstat`, whose first field is the thread's time on a CPU, in ns).
    fn of(pids: &[u32]) -> Cost {
        let mut total = Cost::default();
        for pid in pids {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for task in tasks.flatten() {
                let read =
                    |f: &str| std::fs::read_to_string(task.path().join(f)).unwrap_or_default();
                for line in read("status").lines() {
                    let count = |prefix: &str| {
                        line.strip_prefix(prefix)
                            .and_then(|n| n.trim().parse::<f64>().ok())
                    };
                    if let Some(n) = count("voluntary_ctxt_switches:") {
                        total.voluntary += n;
                    } else if let Some(n) = count("nonvoluntary_ctxt_switches:") {
                        total.involuntary += n;
                    }
                }
                let schedstat = read("schedstat");
                if let Some(ns) = schedstat
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<f64>().ok())
                {
                    total.cpu_ns += ns;
                }
            }
        }
        total
    }

    /// Per call of a batch, from the totals before it.
    fn since(self, before: Cost) -> Cost {
        let n = CALL_BATCH as f64;
        Cost {
            voluntary: (self.voluntary - before.voluntary) / n,
            involuntary: (self.involuntary - before.involuntary) / n,
            cpu_ns: (self.cpu_ns - before.cpu_ns) / n,
        }
    }

    /// The rounds' medians, as text.
    fn median(rounds: &[Cost]) -> String {
        if rounds.is_empty() {
            return "-".to_string();
        }
        let of = |f: fn(&Cost) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
        format!(
            "{}+{} {}us",
            num(of(|c| c.voluntary)),
            num(of(|c| c.involuntary)),
            num(of(|c| c.cpu_ns) / 1000.0)
        )
    }
}

/// A raw child echoing 8-byte messages over loopback TCP, and this end's connection.
struct TcpEcho {
    child: RawChild,
    conn: std::net::TcpStream,
}

impl TcpEcho {
    /// `spin`: both ends poll their non-blocking sockets.
    fn start(spin: bool) -> Res<TcpEcho> {
        use std::io::Read;
        let role = if spin {
            "raw-tcp-spin-echo"
        } else {
            "raw-tcp-echo"
        };
        let mut child = RawChild::start(role, &[])?;
        let mut port = [0u8; 2];
        child.sock.read_exact(&mut port)?;
        let conn = std::net::TcpStream::connect(("127.0.0.1", u16::from_be_bytes(port)))?;
        conn.set_nodelay(true)?;
        conn.set_nonblocking(spin)?;
        Ok(TcpEcho { child, conn })
    }

    /// µs per round trip over `n`.
    fn batch(&mut self, n: usize) -> Res<f64> {
        use std::io::Write;
        let t0 = Instant::now();
        let mut back = [0u8; 8];
        for i in 0..n as u64 {
            self.conn.write_all(&i.to_le_bytes())?;
            crate::raw::read_full(&mut self.conn, &mut back)?;
            check(i, u64::from_le_bytes(back))?;
        }
        Ok(us(t0) / n as f64)
    }
}

/// `pool_map_2nodes`: tasks/s of `map_chunked(sq, ..)` on a pool with one worker on
/// each of two nodes, against two workers on one node (same total), and two local
/// workers, in the same rounds.
pub(crate) fn pool_map_2nodes() -> Res {
    let (p1, n1) = start_node()?;
    let (p2, n2) = start_node()?;
    let two = Pool::builder().nodes([(&n1, 1), (&n2, 1)]).start()?;
    let one = Pool::builder().nodes([(&n1, 2)]).start()?;
    let local = Pool::builder().processes(2).start()?;
    let expected: Vec<u64> = (0..NODE_MAP_ITEMS).map(|i| i * i).collect();
    let map = |pool: &Pool| -> Res<f64> {
        let t0 = Instant::now();
        let out = pool.map_chunked(sq, 0..NODE_MAP_ITEMS, NODE_MAP_CHUNK)?;
        let secs = us(t0) / 1e6;
        if out != expected {
            return Err("pool_map_2nodes: wrong results".into());
        }
        Ok(NODE_MAP_ITEMS as f64 / secs)
    };
    for pool in [&two, &one, &local] {
        pool.wait_ready(Some(Duration::from_secs(30)))?;
        map(pool)?;
    }
    let (mut s2, mut s1, mut sl) = (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        s2.push(vec![map(&two)?]);
        s1.push(vec![map(&one)?]);
        sl.push(vec![map(&local)?]);
    }
    for pool in [two, one, local] {
        pool.close();
        pool.join()?;
    }
    p1.0.stop(STOP_TIMEOUT)?;
    p2.0.stop(STOP_TIMEOUT)?;
    let sc = Scenario {
        name: "pool_map_2nodes",
        unit: "tasks/s",
        better: Better::Higher,
    };
    sc.report("1-node", &s2, &s1);
    sc.report("local", &s2, &sl);
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
