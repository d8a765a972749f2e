//! Three nodes on this machine, and a supervised tree and placed processes across them.
//!
//! ```text
//! cargo run --example cluster
//! ```
//!
//! The program starts itself three times in node mode (as its own children, on
//! loopback: on real hosts each would be started there), connects to each node, and:
//!
//! - runs a supervisor whose three children are placed one per node (restarts go to any
//!   live node), and prints where each runs;
//! - calls an actor placed on `node-2`;
//! - runs a function on each node and prints its exit;
//! - runs a pool with one worker on each node, and prints where its workers run and
//!   which node ran each task;
//! - kills `node-1` with SIGKILL, and prints its child's `NodeDown` exit and where the
//!   supervisor restarted it.

use std::error::Error;
use std::time::Duration;

use multiproc::blocking::node::{self, Node, NodeConfig};
use multiproc::blocking::{Connection, Events, Pool, Process, SupervisorRef, pipe};
use multiproc::{
    Actor, Backoff, BoxError, RestartIntensity, RestartPlacement, Strategy, Supervisor,
    SupervisorEvent, SupervisorFlags, function_child,
};

const COOKIE: &str = "cluster-example-cookie";
/// Tasks in the pool's map: one per chunk, so that every node's worker takes some.
const POOL_TASKS: u64 = 9;

/// A node: serves on a free loopback port and sends its address up.
fn node_main(name: String, mut up: Connection) -> Result<(), Box<dyn Error>> {
    let serving = node::serve(NodeConfig::new(name, "127.0.0.1:0".parse()?, COOKIE))?;
    up.send(&serving.addr().to_string())?;
    multiproc::blocking::wait_for_stop();
    node::shutdown(serving);
    Ok(())
}

/// A supervised worker: runs until stopped.
fn worker() {
    multiproc::blocking::wait_for_stop();
}

/// Exits with `n * n`, so its exit code is its answer.
fn square(n: i32) {
    std::process::exit(n * n);
}

/// A pool task: `n` cubed, and the pid of the program that started its worker (its
/// node), so that the root can say where it ran.
fn cube(n: u64) -> (u64, u32) {
    (n * n * n, std::os::unix::process::parent_id())
}

/// An actor placed on a node.
struct Adder(i64);

impl Actor for Adder {
    type Args = i64;
    type Msg = i64;
    type Reply = i64;

    async fn start(first: i64) -> Result<Self, BoxError> {
        Ok(Adder(first))
    }

    async fn handle(&mut self, n: i64) -> i64 {
        self.0 += n;
        self.0
    }
}

multiproc::register!(node_main, worker, square, cube);
multiproc::register_actor!(Adder);

fn main() -> Result<(), Box<dyn Error>> {
    multiproc::init();

    // Three nodes, children of this program (they die with it).
    let mut node_processes = Vec::new();
    let mut nodes: Vec<Node> = Vec::new();
    for i in 1..=3 {
        let (mut ours, theirs) = pipe(true)?;
        let mut p = Process::new(node_main, (format!("node-{i}"), theirs));
        p.start()?;
        let addr: String = ours.recv()?;
        let node = node::connect(&addr, COOKIE)?;
        println!("connected to {} at {addr}", node.name());
        nodes.push(node);
        node_processes.push(p);
    }

    // A supervised tree across them.
    let flags = SupervisorFlags {
        strategy: Strategy::OneForOne,
        intensity: RestartIntensity {
            max_restarts: 3,
            within: Duration::from_secs(10),
        },
        backoff: Backoff::NONE,
        ..SupervisorFlags::default()
    };
    let mut sup = Supervisor::new(flags);
    for (i, node) in nodes.iter().enumerate() {
        sup = sup.child(
            function_child(format!("w{}", i + 1), worker, ())?
                .on(node)
                .restart_on(RestartPlacement::AnyLiveNode),
        );
    }
    let mut events = Events::from(sup.events());
    let sup = SupervisorRef::start(sup)?;
    for c in sup.which_children()? {
        println!(
            "child {} runs on {} as {}",
            c.id,
            c.node.unwrap_or_default(),
            c.name.unwrap_or_default()
        );
    }

    // An actor on node-2.
    let mut adder = Process::actor::<Adder>(40).on(&nodes[1]);
    adder.start()?;
    let answer = adder.actor_ref::<Adder>().call(2)?;
    println!(
        "actor {} on {} answered {answer}",
        adder.name(),
        nodes[1].name()
    );
    adder.stop(Duration::from_secs(2))?;

    // A function on each node.
    for (i, node) in nodes.iter().enumerate() {
        let mut p = Process::new(square, i as i32 + 2).on(node);
        p.start()?;
        let reason = p.join()?;
        println!("{} on {} exited: {reason}", p.name(), node.name());
    }

    // ANCHOR: pool
    // A pool with a worker on each node: chunks go out over the nodes' sessions.
    let pool = Pool::builder()
        .nodes(nodes.iter().map(|n| (n, 1)))
        .start()?;
    pool.wait_ready(Some(Duration::from_secs(10)))?;
    for w in pool.workers() {
        println!(
            "pool worker {} runs on {}",
            w.name,
            w.node.unwrap_or_default()
        );
    }
    let results = pool.map_chunked(cube, 0..POOL_TASKS, 1)?;
    let node_of = |pid: u32| nodes.iter().find(|n| n.pid() == pid).map(Node::name);
    let mut ran_on = std::collections::BTreeSet::new();
    for (i, (value, pid)) in results.iter().enumerate() {
        let node = node_of(*pid).unwrap_or("?");
        println!("task {i} -> {value} on {node}");
        ran_on.insert(node);
    }
    let ran_on: Vec<&str> = ran_on.into_iter().collect();
    println!("pool tasks ran on {}", ran_on.join(", "));
    pool.close();
    pool.join()?;
    // ANCHOR_END: pool

    // node-1 dies: its child's exit is NodeDown, and it is restarted elsewhere.
    node_processes[0].kill()?;
    for e in events.by_ref() {
        match e {
            SupervisorEvent::ChildExited { id, reason } => println!("{id} exited: {reason}"),
            SupervisorEvent::Restarted { id, .. } => {
                let node = sup
                    .which_children()?
                    .into_iter()
                    .find(|c| c.id == id)
                    .and_then(|c| c.node)
                    .unwrap_or_default();
                println!("{id} restarted on {node}");
                break;
            }
            _ => {}
        }
    }
    println!("supervisor: {:?}", sup.shutdown());
    for p in &node_processes[1..] {
        p.stop(Duration::from_secs(5))?;
    }
    Ok(())
}
