//! Handles that travel: an `ActorRef` of an actor placed on a node, passed to another
//! process of the tree that has no session with the node, works there through the
//! process that placed it. Real node processes on loopback (this test program in node
//! mode), real TCP sessions, real SIGKILL.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::Duration;

use common::node::{COOKIE, TestNode};
use common::{TestResult, trial};
use multiproc::blocking::node::{self, NodeError};
use multiproc::blocking::{Connection, Lock, Process, Queue, pipe};
use multiproc::{Actor, ActorRef, BoxError, CallError, ExitReason, RemoteError};
use serde::{Deserialize, Serialize};

/// How long a test waits for something that should come at once.
const WAIT: Duration = Duration::from_secs(20);

/// An actor placed on nodes.
struct Counter(i64);

#[derive(Debug, Serialize, Deserialize)]
enum CounterMsg {
    Add(i64),
    Get,
    /// Connects to this address (so the test knows the call arrived), then never
    /// answers.
    HangAfterConnecting(String),
    /// A message that carries a one-machine handle: refused before it leaves.
    WithLock(Lock),
}

impl Actor for Counter {
    type Args = i64;
    type Msg = CounterMsg;
    type Reply = i64;

    async fn start(first: i64) -> Result<Self, BoxError> {
        Ok(Counter(first))
    }

    async fn handle(&mut self, msg: CounterMsg) -> i64 {
        match msg {
            CounterMsg::Add(n) => self.0 += n,
            CounterMsg::Get | CounterMsg::WithLock(_) => {}
            CounterMsg::HangAfterConnecting(addr) => {
                let _conn = std::net::TcpStream::connect(addr);
                std::future::pending::<()>().await
            }
        }
        self.0
    }
}

/// What a local child reports of one call: its reply, or its error as text with the
/// variant the test checks.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
enum Outcome {
    Reply(i64),
    NodeDown { node: String },
    NoProcess,
    NotAcrossNodes,
    Other(String),
}

fn outcome(r: Result<i64, CallError>) -> Outcome {
    match r {
        Ok(n) => Outcome::Reply(n),
        Err(CallError::Node(NodeError::NodeDown { node, .. })) => Outcome::NodeDown { node },
        Err(CallError::Remote(RemoteError::NoProcess(_))) => Outcome::NoProcess,
        Err(CallError::Node(NodeError::NotAcrossNodes { .. })) => Outcome::NotAcrossNodes,
        Err(e) => Outcome::Other(format!("{e:?}")),
    }
}

/// A local child with a placed actor's handle and no session with its node: calls,
/// a cast, a call with a timeout, a message that cannot cross, and a handle to the
/// same address made from its identity alone; reports each.
fn uses_the_handle(counter: ActorRef<Counter>, mut up: Connection) -> Result<(), BoxError> {
    let blocking = multiproc::blocking::ActorRef::from(counter.clone());
    up.send(&outcome(blocking.call(CounterMsg::Add(5))))?;
    blocking.cast(CounterMsg::Add(1))?;
    up.send(&outcome(blocking.call(CounterMsg::Get)))?;
    up.send(&outcome(blocking.call_timeout(CounterMsg::Add(4), WAIT)))?;
    up.send(&outcome(blocking.call(CounterMsg::WithLock(Lock::new()?))))?;
    let by_address =
        multiproc::blocking::ActorRef::<Counter>::from(ActorRef::at(counter.addr().clone()));
    up.send(&outcome(by_address.call(CounterMsg::Add(1))))?;
    Ok(())
}

/// A local child whose call is in flight when the node dies: it reports the call's
/// end, then the end of a call made once the node is known down.
fn calls_until_the_node_dies(
    counter: ActorRef<Counter>,
    listener: String,
    mut up: Connection,
) -> Result<(), BoxError> {
    let blocking = multiproc::blocking::ActorRef::from(counter);
    up.send(&outcome(
        blocking.call(CounterMsg::HangAfterConnecting(listener)),
    ))?;
    up.send(&outcome(blocking.call(CounterMsg::Get)))?;
    Ok(())
}

/// A grandchild of the root: it hands the handle on to a child of its own, which
/// calls, and passes the child's report up.
fn hands_it_on(counter: ActorRef<Counter>, mut up: Connection) -> Result<(), BoxError> {
    let (mut ours, theirs) = pipe(true)?;
    let mut child = Process::new(calls_once, (counter, theirs));
    child.start()?;
    let report: Outcome = recv(&mut ours)?;
    up.send(&report)?;
    child.join()?;
    Ok(())
}

fn calls_once(counter: ActorRef<Counter>, mut up: Connection) -> Result<(), BoxError> {
    let blocking = multiproc::blocking::ActorRef::from(counter);
    up.send(&outcome(blocking.call(CounterMsg::Add(100))))?;
    Ok(())
}

/// A process placed on a node with a handle from the root's tree: it reports its
/// call through a queue (which does cross).
fn calls_from_a_node(counter: ActorRef<Counter>, reports: Queue<Outcome>) -> Result<(), BoxError> {
    let blocking = multiproc::blocking::ActorRef::from(counter);
    reports.put(&outcome(blocking.call(CounterMsg::Get)), true, None)?;
    Ok(())
}

multiproc::register_actor!(Counter);
multiproc::register!(calls_from_a_node);
multiproc::register!(uses_the_handle);
multiproc::register!(calls_until_the_node_dies);
multiproc::register!(hands_it_on);
multiproc::register!(calls_once);

/// The next report on `conn`, waiting at most [`WAIT`].
fn recv<T: serde::de::DeserializeOwned>(conn: &mut Connection) -> Result<T, BoxError> {
    if !conn.poll(Some(WAIT))? {
        return Err(format!("no report within {WAIT:?}").into());
    }
    Ok(conn.recv()?)
}

// ---- tests ----

fn a_placed_actors_handle_works_from_a_local_child() -> TestResult {
    let n = TestNode::start("iota", COOKIE, None, Duration::from_secs(5));
    let node = node::connect(&n.addr, COOKIE)?;
    let mut p = Process::actor::<Counter>(10).on(&node);
    p.start()?;
    let counter = p.actor_ref::<Counter>();
    let (mut reports, theirs) = pipe(true)?;
    let mut child = Process::new(uses_the_handle, (counter.as_async().clone(), theirs));
    child.start()?;
    check_eq!(recv::<Outcome>(&mut reports)?, Outcome::Reply(15));
    // The cast went ahead of the call after it, as on one host.
    check_eq!(recv::<Outcome>(&mut reports)?, Outcome::Reply(16));
    check_eq!(recv::<Outcome>(&mut reports)?, Outcome::Reply(20));
    check_eq!(recv::<Outcome>(&mut reports)?, Outcome::NotAcrossNodes);
    check_eq!(recv::<Outcome>(&mut reports)?, Outcome::Reply(21));
    check_eq!(child.join()?, ExitReason::Normal);
    // The root's own handle sees what the child did.
    check_eq!(counter.call(CounterMsg::Get)?, 21);
    p.stop(WAIT)?;
    // Gone: the child's kind of call finds no process, named by its address here.
    let (mut reports, theirs) = pipe(true)?;
    let mut child = Process::new(calls_once, (counter.as_async().clone(), theirs));
    child.start()?;
    check_eq!(recv::<Outcome>(&mut reports)?, Outcome::NoProcess);
    child.join()?;
    Ok(())
}

fn a_grandchild_calls_through_the_tree() -> TestResult {
    let n = TestNode::start("kappa", COOKIE, None, Duration::from_secs(5));
    let node = node::connect(&n.addr, COOKIE)?;
    let mut p = Process::actor::<Counter>(1).on(&node);
    p.start()?;
    let counter = p.actor_ref::<Counter>();
    let (mut reports, theirs) = pipe(true)?;
    let mut child = Process::new(hands_it_on, (counter.as_async().clone(), theirs));
    child.start()?;
    check_eq!(recv::<Outcome>(&mut reports)?, Outcome::Reply(101));
    check_eq!(child.join()?, ExitReason::Normal);
    Ok(())
}

fn a_local_childs_call_fails_with_node_down_when_the_node_dies() -> TestResult {
    let n = TestNode::start("lambda", COOKIE, None, Duration::from_secs(5));
    let node = node::connect(&n.addr, COOKIE)?;
    let mut p = Process::actor::<Counter>(0).on(&node);
    p.start()?;
    let counter = p.actor_ref::<Counter>();
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?.to_string();
    let (mut reports, theirs) = pipe(true)?;
    let mut child = Process::new(
        calls_until_the_node_dies,
        (counter.as_async().clone(), addr, theirs),
    );
    child.start()?;
    // The handler connected: the child's call is in flight, and will never be
    // answered.
    let _arrived = listener.accept()?;
    n.process.kill()?;
    let lambda = || Outcome::NodeDown {
        node: "lambda".to_string(),
    };
    check_eq!(recv::<Outcome>(&mut reports)?, lambda());
    // Known down: the next call fails at once, the same way.
    check_eq!(recv::<Outcome>(&mut reports)?, lambda());
    check_eq!(child.join()?, ExitReason::Normal);
    check_eq!(
        p.join()?,
        ExitReason::NodeDown {
            node: "lambda".to_string()
        }
    );
    Ok(())
}

fn a_handle_sent_to_a_node_is_refused_there() -> TestResult {
    let n = TestNode::start("mu", COOKIE, None, Duration::from_secs(5));
    let node = node::connect(&n.addr, COOKIE)?;
    let mut p = Process::actor::<Counter>(7).on(&node);
    p.start()?;
    let counter = p.actor_ref::<Counter>();
    let reports = Queue::<Outcome>::new(0)?;
    let mut caller = Process::new(
        calls_from_a_node,
        (counter.as_async().clone(), reports.clone()),
    )
    .on(&node);
    caller.start()?;
    // Its address is a path in this tree, not in the node's: refused, typed, rather
    // than delivered to whatever process the node's tree has there.
    check_eq!(reports.get(true, Some(WAIT))?, Outcome::NotAcrossNodes);
    check_eq!(caller.join()?, ExitReason::Normal);
    check_eq!(counter.call(CounterMsg::Get)?, 7);
    Ok(())
}

fn main() {
    common::cgroup::confine("cluster_handles");
    // One at a time: a process's connections to nodes are shared.
    common::run_serial(vec![
        trial(
            "a_placed_actors_handle_works_from_a_local_child",
            a_placed_actors_handle_works_from_a_local_child,
        ),
        trial(
            "a_grandchild_calls_through_the_tree",
            a_grandchild_calls_through_the_tree,
        ),
        trial(
            "a_local_childs_call_fails_with_node_down_when_the_node_dies",
            a_local_childs_call_fails_with_node_down_when_the_node_dies,
        ),
        trial(
            "a_handle_sent_to_a_node_is_refused_there",
            a_handle_sent_to_a_node_is_refused_there,
        ),
    ]);
}
