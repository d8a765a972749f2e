//! Handles two sessions away, by way of the root: an `ActorRef` of the root's tree,
//! sent on by a process placed on one node to an actor placed on another, works
//! there; and the handle of an actor a placed process started on its node, sent to
//! the root's tree, works there and on another node, whether it came in a message,
//! in a call's reply or in a queue's item. Their calls go through the root, which
//! holds the sessions. Real node
//! processes on loopback (this test program in node mode), real TCP sessions, real
//! SIGKILL.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::Duration;

use common::node::{COOKIE, EnvNode};
use common::{TestResult, trial};
use multiproc::blocking::node::{self, NodeError};
use multiproc::blocking::{Process, Queue};
use multiproc::{Actor, ActorRef, BoxError, CallError, ExitReason, RemoteError};
use serde::{Deserialize, Serialize};

/// How long a test waits for something that should come at once.
const WAIT: Duration = Duration::from_secs(20);

/// The actor the handles name.
struct Counter(i64);

#[derive(Debug, Serialize, Deserialize)]
enum CounterMsg {
    Add(i64),
    Get,
    /// Answers after this many milliseconds (a slow handler, for timeouts).
    Slow(u64),
    /// Connects to this address (so the test knows the call arrived), then never
    /// answers.
    HangAfterConnecting(String),
    /// Puts the count into this queue of the root's tree.
    PutInto(multiproc::Queue<i64>),
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
            CounterMsg::Get => {}
            CounterMsg::Slow(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            CounterMsg::PutInto(q) => {
                let _ = q.put(&self.0, true, None).await;
            }
            CounterMsg::HangAfterConnecting(addr) => {
                let _conn = std::net::TcpStream::connect(addr);
                std::future::pending::<()>().await
            }
        }
        self.0
    }
}

/// How one call ended, as the test checks it.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
enum Outcome {
    Reply(i64),
    NodeDown {
        node: String,
    },
    NoProcess,
    NotAcrossNodes,
    Exited,
    Timeout,
    /// The handles a [`Caller`] keeps.
    Handles(Vec<ActorRef<Counter>>),
    Other(String),
}

fn outcome(r: Result<i64, CallError>) -> Outcome {
    match r {
        Ok(n) => Outcome::Reply(n),
        Err(CallError::Node(NodeError::NodeDown { node, .. })) => Outcome::NodeDown { node },
        Err(CallError::Remote(RemoteError::NoProcess(_))) => Outcome::NoProcess,
        Err(CallError::Node(NodeError::NotAcrossNodes { .. })) => Outcome::NotAcrossNodes,
        Err(CallError::Remote(RemoteError::Exited(_))) => Outcome::Exited,
        Err(CallError::Timeout(_)) => Outcome::Timeout,
        Err(e) => Outcome::Other(format!("{e:?}")),
    }
}

/// A call to a [`Caller`]: the outcome it reports, or how the call to it failed.
fn relayed(r: Result<Outcome, CallError>) -> Outcome {
    r.unwrap_or_else(|e| Outcome::Other(format!("the caller's call: {e:?}")))
}

/// Placed on a node: calls the handles it is given, or keeps, and answers how each
/// call ended.
struct Caller(Vec<ActorRef<Counter>>);

#[derive(Debug, Serialize, Deserialize)]
enum CallerMsg {
    /// Calls this handle with the message.
    Call(ActorRef<Counter>, CounterMsg),
    /// Keeps these handles for later calls; answers how many it keeps.
    Keep(Vec<ActorRef<Counter>>),
    /// Calls the kept handle with this index.
    CallKept(usize, CounterMsg),
    /// Calls the kept handle with this index, giving up after this many milliseconds.
    CallKeptWithin(usize, CounterMsg, u64),
    /// Answers the handles it keeps.
    Give,
}

impl Actor for Caller {
    type Args = ();
    type Msg = CallerMsg;
    type Reply = Outcome;

    async fn start((): ()) -> Result<Self, BoxError> {
        Ok(Caller(Vec::new()))
    }

    async fn handle(&mut self, msg: CallerMsg) -> Outcome {
        match msg {
            CallerMsg::Call(to, msg) => outcome(to.call(msg).await),
            CallerMsg::Keep(handles) => {
                self.0 = handles;
                Outcome::Reply(self.0.len() as i64)
            }
            CallerMsg::CallKept(i, msg) => match self.0.get(i) {
                Some(to) => outcome(to.call(msg).await),
                None => Outcome::Other(format!("no handle {i} kept")),
            },
            CallerMsg::CallKeptWithin(i, msg, ms) => match self.0.get(i) {
                Some(to) => outcome(to.call_timeout(msg, Duration::from_millis(ms)).await),
                None => Outcome::Other(format!("no handle {i} kept")),
            },
            CallerMsg::Give => Outcome::Handles(self.0.clone()),
        }
    }
}

/// Placed on a node: starts counters in its own subtree there, and gives their
/// handles in its replies, or puts them into a queue of the root's tree.
struct Spawner(Vec<Process>);

#[derive(Debug, Serialize, Deserialize)]
enum SpawnerMsg {
    /// Starts a counter from this number; answers its handle.
    Start(i64),
    /// Starts a counter from this number and puts its handle into the queue;
    /// answers `Reply(0)`.
    StartInto(i64, Queue<ActorRef<Counter>>),
    /// Stops the counter started last; answers `Reply(0)`.
    StopLast,
}

impl Actor for Spawner {
    type Args = ();
    type Msg = SpawnerMsg;
    type Reply = Outcome;

    async fn start((): ()) -> Result<Self, BoxError> {
        Ok(Spawner(Vec::new()))
    }

    async fn handle(&mut self, msg: SpawnerMsg) -> Outcome {
        let started = |first: i64| -> Result<(Process, ActorRef<Counter>), String> {
            let mut p = Process::actor::<Counter>(first);
            p.start().map_err(|e| e.to_string())?;
            let handle = p.actor_ref::<Counter>().as_async().clone();
            Ok((p, handle))
        };
        match msg {
            SpawnerMsg::Start(first) => match started(first) {
                Ok((p, handle)) => {
                    self.0.push(p);
                    Outcome::Handles(vec![handle])
                }
                Err(e) => Outcome::Other(e),
            },
            SpawnerMsg::StartInto(first, handles) => match started(first) {
                Ok((p, handle)) => {
                    self.0.push(p);
                    match handles.put(&handle, true, None) {
                        Ok(()) => Outcome::Reply(0),
                        Err(e) => Outcome::Other(format!("the put: {e:?}")),
                    }
                }
                Err(e) => Outcome::Other(e),
            },
            SpawnerMsg::StopLast => match self.0.pop().map(|p| p.stop(WAIT)) {
                Some(Ok(_)) => Outcome::Reply(0),
                other => Outcome::Other(format!("{other:?}")),
            },
        }
    }
}

/// On a node: calls the handle `first` (from a reply to the root), then the two it
/// takes from `handles` (put there by a process on another node, then by the root),
/// then one it gets in the
/// reply of `spawner` (on another node) to its own call; reports each outcome.
fn takes_and_calls(
    spawner: ActorRef<Spawner>,
    first: ActorRef<Counter>,
    handles: Queue<ActorRef<Counter>>,
    reports: Queue<Outcome>,
) -> Result<(), BoxError> {
    let report = |o: Outcome| reports.put(&o, true, None);
    let call = |to: ActorRef<Counter>| {
        outcome(multiproc::blocking::ActorRef::from(to).call(CounterMsg::Add(1)))
    };
    report(call(first))?;
    report(call(handles.get(true, Some(WAIT))?))?;
    report(call(handles.get(true, Some(WAIT))?))?;
    let spawner = multiproc::blocking::ActorRef::from(spawner);
    report(match spawner.call(SpawnerMsg::Start(60)) {
        Ok(Outcome::Handles(mut replied)) if replied.len() == 1 => call(replied.remove(0)),
        other => Outcome::Other(format!("{other:?}")),
    })?;
    Ok(())
}

/// On a node: sends the handles of the root's tree it was given on to the actor
/// `caller`, placed on another node, which calls them there; reports each outcome.
fn passes_on(
    home: ActorRef<Counter>,
    near: ActorRef<Counter>,
    caller: ActorRef<Caller>,
    reports: Queue<Outcome>,
) -> Result<(), BoxError> {
    let caller = multiproc::blocking::ActorRef::from(caller);
    let report = |o: Outcome| reports.put(&o, true, None);
    report(relayed(
        caller.call(CallerMsg::Call(home.clone(), CounterMsg::Add(1))),
    ))?;
    report(relayed(
        caller.call(CallerMsg::Call(near.clone(), CounterMsg::Get)),
    ))?;
    report(relayed(caller.call(CallerMsg::Keep(vec![home, near]))))?;
    Ok(())
}

/// On a node: starts two counters of its own there, in its subtree, and sends their
/// handles to `keeper`, an actor of the root's tree; stops the second at the first
/// word on `go`, says so, and ends at the next.
fn starts_its_own(
    keeper: ActorRef<Caller>,
    go: Queue<u8>,
    reports: Queue<Outcome>,
) -> Result<(), BoxError> {
    let mut first = Process::actor::<Counter>(70);
    first.start()?;
    let mut second = Process::actor::<Counter>(80);
    second.start()?;
    let handles = vec![
        first.actor_ref::<Counter>().as_async().clone(),
        second.actor_ref::<Counter>().as_async().clone(),
    ];
    let keeper = multiproc::blocking::ActorRef::from(keeper);
    reports.put(&relayed(keeper.call(CallerMsg::Keep(handles))), true, None)?;
    go.get(true, None)?;
    second.stop(WAIT)?;
    reports.put(&Outcome::Reply(0), true, None)?;
    go.get(true, None)?;
    Ok(())
}

/// On a node: one call with `counter`, reported.
fn calls_once(counter: ActorRef<Counter>, reports: Queue<Outcome>) -> Result<(), BoxError> {
    let blocking = multiproc::blocking::ActorRef::from(counter);
    reports.put(&outcome(blocking.call(CounterMsg::Add(1))), true, None)?;
    Ok(())
}

multiproc::register!(passes_on);
multiproc::register!(starts_its_own);
multiproc::register!(calls_once);
multiproc::register!(takes_and_calls);
multiproc::register_actor!(Counter);
multiproc::register_actor!(Caller);
multiproc::register_actor!(Spawner);

/// Kills `node` (named `name`) while `target`, an actor there, is in a call: that
/// call and the next fail with `NodeDown` naming the node, the outcome returned.
fn node_dies_mid_call(
    target: &multiproc::blocking::ActorRef<Counter>,
    node: EnvNode,
    name: &str,
) -> Result<Outcome, BoxError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let hang = CounterMsg::HangAfterConnecting(listener.local_addr()?.to_string());
    let (tx, rx) = std::sync::mpsc::channel();
    let in_flight = target.clone();
    let call = std::thread::spawn(move || {
        let _ = tx.send(outcome(in_flight.call(hang)));
    });
    let _arrived = accept(&listener)?;
    let down = Outcome::NodeDown {
        node: name.to_string(),
    };
    drop(node);
    check_eq!(rx.recv_timeout(WAIT)?, down);
    call.join().unwrap();
    // Known down: the next call fails the same way.
    check_eq!(outcome(target.call(CounterMsg::Get)), down);
    Ok(down)
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
    Ok(conn.into_std()?)
}

// ---- tests ----

/// Erlang's transparency, one more hop: a handle of the root's tree, on node A, sent
/// in a message to an actor on node B, which calls it there; its failures are the
/// ones a caller in the root sees.
fn a_root_handle_sent_on_from_one_node_to_another_works_there() -> TestResult {
    // Nodes of their own trees, as on other hosts: a handle's path in the root's tree
    // names another process there, or none.
    let (a, a_addr) = EnvNode::serve("tau")?;
    let (_b, b_addr) = EnvNode::serve("upsilon")?;
    let (node_a, node_b) = (
        node::connect(&a_addr, COOKIE)?,
        node::connect(&b_addr, COOKIE)?,
    );
    let mut home = Process::actor::<Counter>(3);
    home.start()?;
    let home_ref = home.actor_ref::<Counter>();
    let mut near = Process::actor::<Counter>(40).on(&node_a);
    near.start()?;
    let near_ref = near.actor_ref::<Counter>();
    let mut caller = Process::actor::<Caller>(()).on(&node_b);
    caller.start()?;
    let caller_ref = caller.actor_ref::<Caller>();
    let reports = Queue::<Outcome>::new(0)?;
    let mut sender = Process::new(
        passes_on,
        (
            home_ref.as_async().clone(),
            near_ref.as_async().clone(),
            caller_ref.as_async().clone(),
            reports.clone(),
        ),
    )
    .on(&node_a);
    sender.start()?;
    // From B: an actor of the root, and one the root placed on A.
    check_eq!(reports.get(true, Some(WAIT))?, Outcome::Reply(4));
    check_eq!(reports.get(true, Some(WAIT))?, Outcome::Reply(40));
    check_eq!(reports.get(true, Some(WAIT))?, Outcome::Reply(2));
    check_eq!(sender.join()?, ExitReason::Normal);

    // Kept on B, they work there after the process that sent them is gone.
    check_eq!(
        caller_ref.call(CallerMsg::CallKept(0, CounterMsg::Add(1)))?,
        Outcome::Reply(5)
    );
    check_eq!(home_ref.call(CounterMsg::Get)?, 5);
    check_eq!(
        caller_ref.call(CallerMsg::CallKeptWithin(1, CounterMsg::Slow(500), 50))?,
        Outcome::Timeout
    );
    // The late answer of the call that gave up is not taken for this one's.
    check_eq!(
        caller_ref.call(CallerMsg::CallKept(1, CounterMsg::Add(2)))?,
        Outcome::Reply(42)
    );

    // The target exited: B's caller gets what a caller in the root gets.
    home.stop(WAIT)?;
    let here = outcome(home_ref.call(CounterMsg::Get));
    check!(
        matches!(here, Outcome::NoProcess | Outcome::Exited),
        "{here:?}"
    );
    check_eq!(
        caller_ref.call(CallerMsg::CallKept(0, CounterMsg::Get))?,
        here
    );

    // The target's node dies mid-call: B's call fails, naming that node.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let hang = CallerMsg::CallKept(
        1,
        CounterMsg::HangAfterConnecting(listener.local_addr()?.to_string()),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let in_flight = caller_ref.clone();
    let call = std::thread::spawn(move || {
        let _ = tx.send(in_flight.call(hang));
    });
    let _arrived = accept(&listener)?;
    drop(a);
    let tau = || Outcome::NodeDown {
        node: "tau".to_string(),
    };
    check_eq!(rx.recv_timeout(WAIT)??, tau());
    call.join().unwrap();
    // Known down: the next call fails the same way.
    check_eq!(
        caller_ref.call(CallerMsg::CallKept(1, CounterMsg::Get))?,
        tau()
    );
    check_eq!(near.join()?, ExitReason::NodeDown { node: "tau".into() });
    caller.stop(WAIT)?;
    Ok(())
}

/// The other way: an actor a process on node A started in its own subtree there,
/// its handle sent to the root's tree, is called there, and from node B by way of
/// the root; its node dies mid-call, and the call says which node.
fn a_nodes_own_actor_sent_to_the_root_works_there() -> TestResult {
    let (a, a_addr) = EnvNode::serve("phi")?;
    let (_b, b_addr) = EnvNode::serve("chi")?;
    let (node_a, node_b) = (
        node::connect(&a_addr, COOKIE)?,
        node::connect(&b_addr, COOKIE)?,
    );
    let mut keeper = Process::actor::<Caller>(());
    keeper.start()?;
    let keeper_ref = keeper.actor_ref::<Caller>();
    let (go, reports) = (Queue::<u8>::new(0)?, Queue::<Outcome>::new(0)?);
    let mut p = Process::new(
        starts_its_own,
        (keeper_ref.as_async().clone(), go.clone(), reports.clone()),
    )
    .on(&node_a);
    p.start()?;
    check_eq!(reports.get(true, Some(WAIT))?, Outcome::Reply(2));
    // The keeper, an actor of the root's tree, calls them on A.
    check_eq!(
        keeper_ref.call(CallerMsg::CallKept(0, CounterMsg::Add(1)))?,
        Outcome::Reply(71)
    );
    // And the root itself, with the handles the keeper gives it.
    let Outcome::Handles(handles) = keeper_ref.call(CallerMsg::Give)? else {
        return Err("the keeper gave no handles".into());
    };
    check_eq!(handles.len(), 2);
    check_eq!(handles[0].node(), Some("phi"));
    let first = multiproc::blocking::ActorRef::from(handles[0].clone());
    let second = multiproc::blocking::ActorRef::from(handles[1].clone());
    check_eq!(first.call(CounterMsg::Add(1))?, 72);
    check_eq!(second.call(CounterMsg::Get)?, 80);
    first.cast(CounterMsg::Add(10))?;
    check_eq!(first.call(CounterMsg::Get)?, 82);
    check_eq!(
        outcome(first.call_timeout(CounterMsg::Slow(500), Duration::from_millis(50))),
        Outcome::Timeout
    );
    // The late answer of the call that gave up is not taken for this one's.
    check_eq!(first.call(CounterMsg::Get)?, 82);
    // A root's queue in a message to it: exported to its placed ancestor there.
    let q = Queue::<i64>::new(0)?;
    check_eq!(first.call(CounterMsg::PutInto(q.clone().into_async()))?, 82);
    check_eq!(q.get(true, Some(WAIT))?, 82);

    // From node B, by way of the root.
    let mut from_b = Process::new(calls_once, (handles[0].clone(), reports.clone())).on(&node_b);
    from_b.start()?;
    check_eq!(reports.get(true, Some(WAIT))?, Outcome::Reply(83));
    check_eq!(from_b.join()?, ExitReason::Normal);

    // The target exited: the root's call says so, as for a local actor.
    go.put(&1, true, None)?;
    check_eq!(reports.get(true, Some(WAIT))?, Outcome::Reply(0));
    let gone = outcome(second.call(CounterMsg::Get));
    check!(
        matches!(gone, Outcome::NoProcess | Outcome::Exited),
        "{gone:?}"
    );

    // Its node dies mid-call: the call fails, naming that node, and so do the next.
    node_dies_mid_call(&first, a, "phi")?;
    check_eq!(p.join()?, ExitReason::NodeDown { node: "phi".into() });
    keeper.stop(WAIT)?;
    Ok(())
}

/// Erlang's `gen_server:call` returning a pid: a placed actor on node A answers the
/// root's call with the handle of an actor it started in its own subtree there, or
/// puts one into a queue of the root's tree; each works in the root, and on node B by
/// way of the root; its node dies mid-call, and the calls say which node.
fn a_nodes_own_actor_in_a_reply_or_a_queue_item_works_in_the_root() -> TestResult {
    let (a, a_addr) = EnvNode::serve("psi")?;
    let (_b, b_addr) = EnvNode::serve("omega")?;
    let (node_a, node_b) = (
        node::connect(&a_addr, COOKIE)?,
        node::connect(&b_addr, COOKIE)?,
    );
    let mut spawner = Process::actor::<Spawner>(()).on(&node_a);
    spawner.start()?;
    let spawner_ref = spawner.actor_ref::<Spawner>();

    // In a reply.
    let Outcome::Handles(replied) = spawner_ref.call(SpawnerMsg::Start(70))? else {
        return Err("the spawner answered no handle".into());
    };
    check_eq!(replied.len(), 1);
    check_eq!(replied[0].node(), Some("psi"));
    let first = multiproc::blocking::ActorRef::from(replied[0].clone());
    check_eq!(first.call(CounterMsg::Add(1))?, 71);
    first.cast(CounterMsg::Add(10))?;
    check_eq!(first.call(CounterMsg::Get)?, 81);
    check_eq!(
        outcome(first.call_timeout(CounterMsg::Slow(500), Duration::from_millis(50))),
        Outcome::Timeout
    );
    // The late answer of the call that gave up is not taken for this one's.
    check_eq!(first.call(CounterMsg::Get)?, 81);

    // In a queue's item, taken in the root.
    let handles = Queue::<ActorRef<Counter>>::new(0)?;
    check_eq!(
        spawner_ref.call(SpawnerMsg::StartInto(90, handles.clone()))?,
        Outcome::Reply(0)
    );
    let item = handles.get(true, Some(WAIT))?;
    check_eq!(item.node(), Some("psi"));
    let second = multiproc::blocking::ActorRef::from(item);
    check_eq!(second.call(CounterMsg::Add(1))?, 91);

    // From node B, by way of the root: the replied handle, an item put on A and taken
    // on B, and a handle in the reply to B's own call.
    check_eq!(
        spawner_ref.call(SpawnerMsg::StartInto(100, handles.clone()))?,
        Outcome::Reply(0)
    );
    // And one of the root's tree, put by the root.
    let mut home = Process::actor::<Counter>(5);
    home.start()?;
    handles.put(home.actor_ref::<Counter>().as_async(), true, None)?;
    let reports = Queue::<Outcome>::new(0)?;
    let mut from_b = Process::new(
        takes_and_calls,
        (
            spawner_ref.as_async().clone(),
            replied[0].clone(),
            handles.clone(),
            reports.clone(),
        ),
    )
    .on(&node_b);
    from_b.start()?;
    check_eq!(reports.get(true, Some(WAIT))?, Outcome::Reply(82));
    check_eq!(reports.get(true, Some(WAIT))?, Outcome::Reply(101));
    check_eq!(reports.get(true, Some(WAIT))?, Outcome::Reply(6));
    check_eq!(reports.get(true, Some(WAIT))?, Outcome::Reply(61));
    check_eq!(from_b.join()?, ExitReason::Normal);

    // The target exited: the root's call says so, as for a local actor.
    let Outcome::Handles(doomed) = spawner_ref.call(SpawnerMsg::Start(50))? else {
        return Err("the spawner answered no handle".into());
    };
    let doomed = multiproc::blocking::ActorRef::from(doomed[0].clone());
    check_eq!(doomed.call(CounterMsg::Get)?, 50);
    check_eq!(spawner_ref.call(SpawnerMsg::StopLast)?, Outcome::Reply(0));
    let gone = outcome(doomed.call(CounterMsg::Get));
    check!(
        matches!(gone, Outcome::NoProcess | Outcome::Exited),
        "{gone:?}"
    );

    // Its node dies mid-call: the call fails, naming that node, and so do the next,
    // the queue's item's too.
    let psi = node_dies_mid_call(&first, a, "psi")?;
    check_eq!(outcome(second.call(CounterMsg::Get)), psi);
    check_eq!(spawner.join()?, ExitReason::NodeDown { node: "psi".into() });
    home.stop(WAIT)?;
    Ok(())
}

fn main() {
    common::cgroup::confine("cluster_twohop");
    // One at a time: a process's connections to nodes are shared.
    common::run_serial(vec![
        trial(
            "a_root_handle_sent_on_from_one_node_to_another_works_there",
            a_root_handle_sent_on_from_one_node_to_another_works_there,
        ),
        trial(
            "a_nodes_own_actor_sent_to_the_root_works_there",
            a_nodes_own_actor_sent_to_the_root_works_there,
        ),
        trial(
            "a_nodes_own_actor_in_a_reply_or_a_queue_item_works_in_the_root",
            a_nodes_own_actor_in_a_reply_or_a_queue_item_works_in_the_root,
        ),
    ]);
}
