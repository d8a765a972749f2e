//! Handles that travel: an `ActorRef` of an actor placed on a node, passed to another
//! process of the tree that has no session with the node, works there through the
//! process that placed it; and an `ActorRef` of the root's tree, passed to a process
//! placed on a node, works there through the root's gateway. Real node processes on
//! loopback (this test program in node mode), real TCP sessions, real SIGKILL.

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
    /// A message that carries a lock: one made on a node goes no further.
    WithLock(Lock),
    /// A message that carries a one-machine handle: refused before it leaves.
    WithValue(multiproc::Value<u64>),
    /// A message that carries a queue: from a node, where it is the root's far
    /// handle, it is the root's queue again.
    WithQueue(Queue<Outcome>),
    /// Answers after this many milliseconds (a slow handler, for timeouts).
    Slow(u64),
    /// Casts `Add(n)` to the actor of this handle (sent back from a node, it is a
    /// handle of this tree again).
    CastTo(ActorRef<Counter>, i64),
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
            CounterMsg::Get
            | CounterMsg::WithLock(_)
            | CounterMsg::WithValue(_)
            | CounterMsg::WithQueue(_) => {}
            CounterMsg::Slow(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            CounterMsg::CastTo(to, n) => {
                let _ = to.cast(CounterMsg::Add(n));
            }
            CounterMsg::HangAfterConnecting(addr) => {
                let _conn = std::net::TcpStream::connect(addr);
                std::future::pending::<()>().await
            }
        }
        self.0
    }
}

/// Another actor type: its handle to a `Counter` makes calls the counter cannot
/// decode.
struct Liar;

impl Actor for Liar {
    type Args = ();
    type Msg = String;
    type Reply = i64;

    async fn start((): ()) -> Result<Self, BoxError> {
        Ok(Liar)
    }

    async fn handle(&mut self, _: String) -> i64 {
        0
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
    Exited,
    Undecodable,
    Timeout,
    Other(String),
}

fn outcome(r: Result<i64, CallError>) -> Outcome {
    match r {
        Ok(n) => Outcome::Reply(n),
        Err(CallError::Node(NodeError::NodeDown { node, .. })) => Outcome::NodeDown { node },
        Err(CallError::Remote(RemoteError::NoProcess(_))) => Outcome::NoProcess,
        Err(CallError::Node(NodeError::NotAcrossNodes { .. })) => Outcome::NotAcrossNodes,
        Err(CallError::Remote(RemoteError::Exited(_))) => Outcome::Exited,
        Err(CallError::Remote(RemoteError::Decode(_))) => Outcome::Undecodable,
        Err(CallError::Timeout(_)) => Outcome::Timeout,
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
    up.send(&outcome(
        blocking.call(CounterMsg::WithValue(multiproc::Value::new(1)?)),
    ))?;
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

/// A process placed on a node with a handle of an actor of the root's tree: calls,
/// casts, timeouts and failures, blocking and async, from here and from a child of
/// its own on the node; it reports each through a queue.
fn calls_the_root(
    counter: ActorRef<Counter>,
    liar: ActorRef<Liar>,
    reports: Queue<Outcome>,
) -> Result<(), BoxError> {
    let report = |o: Outcome| reports.put(&o, true, None);
    let blocking = multiproc::blocking::ActorRef::from(counter.clone());
    report(outcome(blocking.call(CounterMsg::Add(5))))?;
    blocking.cast(CounterMsg::Add(1))?;
    report(outcome(blocking.call(CounterMsg::Get)))?;
    report(outcome(blocking.call_timeout(CounterMsg::Add(4), WAIT)))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    counter.cast(CounterMsg::Add(10))?;
    report(outcome(rt.block_on(counter.call(CounterMsg::Get))))?;
    let short = Duration::from_millis(50);
    report(outcome(
        rt.block_on(counter.call_timeout(CounterMsg::Slow(500), short)),
    ))?;
    // The late answer of the call that gave up is not taken for this one's.
    report(outcome(rt.block_on(counter.call(CounterMsg::Add(1)))))?;
    let liar = multiproc::blocking::ActorRef::from(liar);
    report(outcome(liar.call("not a CounterMsg".to_string())))?;
    report(outcome(blocking.call(CounterMsg::Get)))?;
    report(outcome(blocking.call(CounterMsg::WithLock(Lock::new()?))))?;
    report(outcome(
        blocking.call(CounterMsg::WithQueue(reports.clone())),
    ))?;
    report(outcome(
        blocking.call(CounterMsg::CastTo(blocking.as_async().clone(), 7)),
    ))?;
    // A child of this process on the node: its call goes up through this one.
    let (mut ours, theirs) = pipe(true)?;
    let mut child = Process::new(calls_once, (counter, theirs));
    child.start()?;
    report(recv::<Outcome>(&mut ours)?)?;
    child.join()?;
    Ok(())
}

/// A root of its own (a child of the test) with an actor, and a caller of it placed
/// on the node: the test kills this root while the caller's call is in flight.
fn roots_a_caller(node_addr: String, hang: String, report: String) -> Result<(), BoxError> {
    let node = node::connect(&node_addr, COOKIE)?;
    let mut actor = Process::actor::<Counter>(0);
    actor.start()?;
    let counter = actor.actor_ref::<Counter>().as_async().clone();
    let mut caller = Process::new(calls_until_the_root_dies, (counter, hang, report)).on(&node);
    caller.start()?;
    caller.join()?;
    Ok(())
}

/// On the node: a call that hangs until its root dies, then one more; it writes
/// both outcomes to `report`.
fn calls_until_the_root_dies(
    counter: ActorRef<Counter>,
    hang: String,
    report: String,
) -> Result<(), BoxError> {
    use std::io::Write as _;
    let blocking = multiproc::blocking::ActorRef::from(counter);
    let first = outcome(blocking.call(CounterMsg::HangAfterConnecting(hang)));
    let second = outcome(blocking.call(CounterMsg::Get));
    let mut out = std::net::TcpStream::connect(report)?;
    writeln!(out, "{first:?}\n{second:?}")?;
    Ok(())
}

/// On a node: places a process with the handle it got on the node at `node_addr`,
/// and reports how that one ended.
fn sends_it_on(
    counter: ActorRef<Counter>,
    node_addr: String,
    reports: Queue<String>,
) -> Result<(), BoxError> {
    let node = node::connect(&node_addr, COOKIE)?;
    let mut p = Process::new(is_refused, counter).on(&node);
    p.start()?;
    reports.put(&format!("{:?}", p.join()?), true, None)?;
    Ok(())
}

/// Ends normally if its call with `counter` is refused as `NotAcrossNodes`.
fn is_refused(counter: ActorRef<Counter>) -> Result<(), BoxError> {
    let blocking = multiproc::blocking::ActorRef::from(counter);
    match outcome(blocking.call(CounterMsg::Get)) {
        Outcome::NotAcrossNodes => Ok(()),
        other => Err(format!("{other:?}").into()),
    }
}

multiproc::register!(calls_the_root);
multiproc::register!(roots_a_caller);
multiproc::register!(calls_until_the_root_dies);
multiproc::register!(sends_it_on);
multiproc::register!(is_refused);
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

/// The next connection to `listener`, waiting at most [`WAIT`].
fn accept(listener: &std::net::TcpListener) -> Result<std::net::TcpStream, BoxError> {
    let listener = listener.try_clone()?;
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (conn, _) = rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        match tokio::time::timeout(WAIT, listener.accept()).await {
            Ok(accepted) => Ok::<_, BoxError>(accepted?),
            Err(_) => Err(format!("no connection within {WAIT:?}").into()),
        }
    })?;
    let conn = conn.into_std()?;
    conn.set_nonblocking(false)?;
    Ok(conn)
}

// ---- tests ----

fn a_placed_actors_handle_works_from_a_local_child() -> TestResult {
    let (_n, node) = TestNode::connected("iota")?;
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
    let (_n, node) = TestNode::connected("kappa")?;
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
    let (n, node) = TestNode::connected("lambda")?;
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
    let _arrived = accept(&listener)?;
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

fn a_placed_actors_handle_works_from_another_process_on_its_node() -> TestResult {
    let (_n, node) = TestNode::connected("mu")?;
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
    // By way of the root, which placed both: its address is a path in the root's
    // tree, not in the node's.
    check_eq!(reports.get(true, Some(WAIT))?, Outcome::Reply(7));
    check_eq!(caller.join()?, ExitReason::Normal);
    Ok(())
}

/// Erlang's transparency: an actor on one node, called from a process on another,
/// by way of the root that placed both.
fn a_placed_actors_handle_works_from_a_process_on_another_node() -> TestResult {
    let a = TestNode::start("rho", COOKIE, None, Duration::from_secs(5));
    let b = TestNode::start("sigma", COOKIE, None, Duration::from_secs(5));
    let (node_a, node_b) = (
        node::connect(&a.addr, COOKIE)?,
        node::connect(&b.addr, COOKIE)?,
    );
    let mut p = Process::actor::<Counter>(11).on(&node_a);
    p.start()?;
    let counter = p.actor_ref::<Counter>();
    let reports = Queue::<Outcome>::new(0)?;
    let mut caller = Process::new(
        calls_from_a_node,
        (counter.as_async().clone(), reports.clone()),
    )
    .on(&node_b);
    caller.start()?;
    check_eq!(reports.get(true, Some(WAIT))?, Outcome::Reply(11));
    check_eq!(caller.join()?, ExitReason::Normal);
    // The actor's node dies: the next call from the other node fails typed.
    drop(a);
    check!(
        matches!(p.join()?, ExitReason::NodeDown { .. }),
        "the actor's exit is NodeDown"
    );
    let mut again = Process::new(
        calls_from_a_node,
        (counter.as_async().clone(), reports.clone()),
    )
    .on(&node_b);
    again.start()?;
    check_eq!(
        reports.get(true, Some(WAIT))?,
        Outcome::NodeDown {
            node: "rho".to_string()
        }
    );
    check_eq!(again.join()?, ExitReason::Normal);
    Ok(())
}

fn a_root_actor_answers_a_process_placed_on_a_node() -> TestResult {
    let (_n, node) = TestNode::connected("nu")?;
    let mut actor = Process::actor::<Counter>(10);
    actor.start()?;
    let counter = actor.actor_ref::<Counter>();
    let liar = ActorRef::<Liar>::at(counter.as_async().addr().clone());
    let reports = Queue::<Outcome>::new(0)?;
    let mut caller = Process::new(
        calls_the_root,
        (counter.as_async().clone(), liar, reports.clone()),
    )
    .on(&node);
    caller.start()?;
    use Outcome::{NotAcrossNodes, Reply, Timeout, Undecodable};
    // Each cast went ahead of the call after it, as on one host.
    for expected in [
        Reply(15),
        Reply(16),
        Reply(20),
        Reply(30),
        Timeout,
        Reply(31),
        Undecodable,
        Reply(31),
        // A lock made on the node; the root's own queue, back home.
        NotAcrossNodes,
        Reply(31),
        // The handle went back in the message, and the actor cast to itself with it.
        Reply(31),
        Reply(138),
    ] {
        check_eq!(reports.get(true, Some(WAIT))?, expected);
    }
    check_eq!(caller.join()?, ExitReason::Normal);
    check_eq!(counter.call(CounterMsg::Get)?, 138);
    actor.stop(WAIT)?;
    // Gone: a caller on the node gets what a caller here gets.
    let here = outcome(counter.call(CounterMsg::Get));
    check!(
        matches!(here, Outcome::NoProcess | Outcome::Exited),
        "{here:?}"
    );
    let mut caller = Process::new(
        calls_from_a_node,
        (counter.as_async().clone(), reports.clone()),
    )
    .on(&node);
    caller.start()?;
    check_eq!(reports.get(true, Some(WAIT))?, here);
    check_eq!(caller.join()?, ExitReason::Normal);
    Ok(())
}

fn a_placed_processs_call_fails_with_node_down_when_its_root_dies() -> TestResult {
    use std::io::Read as _;
    let n = TestNode::start("xi", COOKIE, None, Duration::from_secs(5));
    let hang = std::net::TcpListener::bind("127.0.0.1:0")?;
    let report = std::net::TcpListener::bind("127.0.0.1:0")?;
    let mut root = Process::new(
        roots_a_caller,
        (
            n.addr.clone(),
            hang.local_addr()?.to_string(),
            report.local_addr()?.to_string(),
        ),
    );
    root.start()?;
    // The handler connected: the caller's call is in flight, and will never be
    // answered.
    let _arrived = accept(&hang)?;
    root.kill()?;
    let mut conn = accept(&report)?;
    conn.set_read_timeout(Some(WAIT))?;
    let mut text = String::new();
    conn.read_to_string(&mut text)?;
    let down = format!(
        "{:?}",
        Outcome::NodeDown {
            node: "the root".to_string()
        }
    );
    check_eq!(text, format!("{down}\n{down}\n"));
    check_eq!(root.join()?, ExitReason::Signaled(9));
    Ok(())
}

fn a_handle_sent_on_from_a_node_to_another_is_refused_there() -> TestResult {
    let first = TestNode::start("omicron", COOKIE, None, Duration::from_secs(5));
    let second = TestNode::start("pi", COOKIE, None, Duration::from_secs(5));
    let node = node::connect(&first.addr, COOKIE)?;
    let mut actor = Process::actor::<Counter>(3);
    actor.start()?;
    let counter = actor.actor_ref::<Counter>();
    let reports = Queue::<String>::new(0)?;
    let mut p = Process::new(
        sends_it_on,
        (
            counter.as_async().clone(),
            second.addr.clone(),
            reports.clone(),
        ),
    )
    .on(&node);
    p.start()?;
    // Its tree is two sessions away from there: refused, typed, rather than
    // delivered to whatever process has that address in the first node's root's
    // tree.
    check_eq!(reports.get(true, Some(WAIT))?, "Normal");
    check_eq!(p.join()?, ExitReason::Normal);
    check_eq!(counter.call(CounterMsg::Get)?, 3);
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
            "a_placed_actors_handle_works_from_another_process_on_its_node",
            a_placed_actors_handle_works_from_another_process_on_its_node,
        ),
        trial(
            "a_placed_actors_handle_works_from_a_process_on_another_node",
            a_placed_actors_handle_works_from_a_process_on_another_node,
        ),
        trial(
            "a_root_actor_answers_a_process_placed_on_a_node",
            a_root_actor_answers_a_process_placed_on_a_node,
        ),
        trial(
            "a_placed_processs_call_fails_with_node_down_when_its_root_dies",
            a_placed_processs_call_fails_with_node_down_when_its_root_dies,
        ),
        trial(
            "a_handle_sent_on_from_a_node_to_another_is_refused_there",
            a_handle_sent_on_from_a_node_to_another_is_refused_there,
        ),
    ]);
}
