//! A `SupervisedRef` of the root's tree given to a process placed on a node: its calls
//! and casts go through the root's gateway and follow the supervised actor across a
//! SIGKILL and its restart; a stopped child, an ended supervisor and a lost root are
//! typed errors there. Real node processes on loopback (this test program in node
//! mode), real TCP sessions, real SIGKILL.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::Duration;

use common::node::{COOKIE, TestNode};
use common::{TestResult, trial};
use multiproc::blocking::node::{self, NodeError};
use multiproc::blocking::{Events, Process, Queue, SupervisorRef};
use multiproc::{
    Actor, Backoff, BoxError, CallError, ExitReason, RestartIntensity, Strategy, SupervisedRef,
    Supervisor, SupervisorEvent, SupervisorFlags, actor_child,
};
use serde::{Deserialize, Serialize};

/// How long a test waits for something that should come at once.
const WAIT: Duration = Duration::from_secs(20);

/// The supervised actor: a counter that also says which process it runs in.
struct Counter(i64);

#[derive(Debug, Serialize, Deserialize)]
enum CounterMsg {
    Add(i64),
    Get,
    Pid,
    /// Carries a supervised child's handle: the answer is that child's count.
    With(SupervisedRef<Counter>),
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
            CounterMsg::With(child) => {
                return child.call(CounterMsg::Get).await.unwrap_or(-1);
            }
            CounterMsg::Pid => return i64::from(std::process::id()),
        }
        self.0
    }
}

/// What the test asks the placed caller to do.
#[derive(Debug, Serialize, Deserialize)]
enum Ask {
    Call(CounterMsg),
    TryCall(CounterMsg),
    CallTimeout(CounterMsg, Duration),
    Cast(CounterMsg),
    Quit,
}

/// What the placed caller reports of one request.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
enum Outcome {
    Reply(i64),
    Cast,
    NotRunning(String),
    Restarting,
    NodeDown { node: String },
    Other(String),
}

fn outcome(r: Result<i64, CallError>) -> Outcome {
    match r {
        Ok(n) => Outcome::Reply(n),
        Err(CallError::NotRunning(_, why)) => Outcome::NotRunning(why),
        Err(CallError::Restarting(_)) => Outcome::Restarting,
        Err(CallError::Node(NodeError::NodeDown { node, .. })) => Outcome::NodeDown { node },
        Err(e) => Outcome::Other(format!("{e:?}")),
    }
}

/// On a node, with the handle: does what it is asked through `asks`, reports each
/// outcome through `reports` (queues of the root, which cross).
fn calls_from_a_node(
    counter: SupervisedRef<Counter>,
    asks: Queue<Ask>,
    reports: Queue<Outcome>,
) -> Result<(), BoxError> {
    let counter = multiproc::blocking::SupervisedRef::from(counter);
    loop {
        let out = match asks.get(true, Some(WAIT))? {
            Ask::Call(m) => outcome(counter.call(m)),
            Ask::TryCall(m) => outcome(counter.try_call(m)),
            Ask::CallTimeout(m, t) => outcome(counter.call_timeout(m, t)),
            Ask::Cast(m) => match counter.cast(m) {
                Ok(()) => Outcome::Cast,
                Err(e) => outcome(Err(e)),
            },
            Ask::Quit => return Ok(()),
        };
        reports.put(&out, true, None)?;
    }
}

/// A root of its own (a child of the test) with a supervised counter, and a caller of
/// it placed on the node: the test kills this root between the caller's two calls.
fn roots_a_supervised_caller(
    node_addr: String,
    hang: String,
    report: String,
) -> Result<(), BoxError> {
    let node = node::connect(&node_addr, COOKIE)?;
    let sup = Supervisor::new(flags()).child(actor_child::<Counter>("c", 9)?);
    let sup = SupervisorRef::start(sup)?;
    let counter = sup.child_ref::<Counter>("c").into_async();
    let mut caller = Process::new(calls_until_the_root_dies, (counter, hang, report)).on(&node);
    caller.start()?;
    caller.join()?;
    Ok(())
}

/// On the node: a call, then, once the test says its root is dead (or its
/// connection ends), one more; it writes both outcomes to `report`.
fn calls_until_the_root_dies(
    counter: SupervisedRef<Counter>,
    hang: String,
    report: String,
) -> Result<(), BoxError> {
    use std::io::{Read as _, Write as _};
    let counter = multiproc::blocking::SupervisedRef::from(counter);
    let first = outcome(counter.call(CounterMsg::Get));
    let mut wait = std::net::TcpStream::connect(hang)?;
    let _ = wait.read(&mut [0]);
    let second = outcome(counter.call(CounterMsg::Get));
    let mut out = std::net::TcpStream::connect(report)?;
    writeln!(out, "{first:?}\n{second:?}")?;
    Ok(())
}

/// A local child of the root, with the handle of an actor the root placed: sends it
/// the handle of a child of the root's supervisor, then of a supervisor of its own,
/// running and then ended, and reports each answer.
fn sends_supervised_refs(
    placed: multiproc::ActorRef<Counter>,
    roots: SupervisedRef<Counter>,
    reports: Queue<String>,
) -> Result<(), BoxError> {
    let placed = multiproc::blocking::ActorRef::from(placed);
    let report = |r: Result<i64, CallError>| reports.put(&format!("{r:?}"), true, None);
    report(placed.call(CounterMsg::With(roots)))?;
    let own =
        SupervisorRef::start(Supervisor::new(flags()).child(actor_child::<Counter>("d", 7)?))?;
    let mine = own.child_ref::<Counter>("d").into_async();
    report(placed.call(CounterMsg::With(mine.clone())))?;
    own.shutdown();
    report(placed.call(CounterMsg::With(mine)))?;
    Ok(())
}

multiproc::register!(sends_supervised_refs);
multiproc::register!(calls_from_a_node);
multiproc::register!(roots_a_supervised_caller);
multiproc::register!(calls_until_the_root_dies);
multiproc::register_actor!(Counter);

fn flags() -> SupervisorFlags {
    SupervisorFlags {
        strategy: Strategy::OneForOne,
        intensity: RestartIntensity {
            max_restarts: 10,
            within: Duration::from_secs(60),
        },
        backoff: Backoff::NONE,
        ..SupervisorFlags::default()
    }
}

/// Reads events until one matches, waiting at most [`WAIT`] for each.
fn until(events: &mut Events, stop: impl Fn(&SupervisorEvent) -> bool) -> TestResult {
    loop {
        let e = events
            .recv_timeout(WAIT)
            .map_err(|e| format!("no matching event: {e:?}"))?;
        if stop(&e) {
            return Ok(());
        }
    }
}

fn pid_of(sup: &SupervisorRef, id: &str) -> Result<u32, BoxError> {
    sup.which_children()?
        .into_iter()
        .find(|c| c.id == id)
        .and_then(|c| c.pid)
        .ok_or_else(|| format!("no running child {id}").into())
}

fn kill(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
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

fn a_placed_processs_calls_follow_the_actor_across_a_sigkill_and_restart() -> TestResult {
    let (_n, node) = TestNode::connected("sigma")?;
    let sup = Supervisor::new(flags()).child(actor_child::<Counter>("c", 0)?);
    let mut events = Events::from(sup.events());
    let sup = SupervisorRef::start(sup)?;
    let counter = sup.child_ref::<Counter>("c");
    let (asks, reports) = (Queue::<Ask>::new(0)?, Queue::<Outcome>::new(0)?);
    let mut caller = Process::new(
        calls_from_a_node,
        (counter.as_async().clone(), asks.clone(), reports.clone()),
    )
    .on(&node);
    caller.start()?;
    let ask = |a: Ask| -> Result<Outcome, BoxError> {
        asks.put(&a, true, None)?;
        Ok(reports.get(true, Some(WAIT))?)
    };
    let first = pid_of(&sup, "c")?;
    check_eq!(
        ask(Ask::Call(CounterMsg::Pid))?,
        Outcome::Reply(first.into())
    );
    check_eq!(ask(Ask::Call(CounterMsg::Add(5)))?, Outcome::Reply(5));
    kill(first);
    until(&mut events, |e| {
        matches!(e, SupervisorEvent::Restarted { .. })
    })?;
    let second = pid_of(&sup, "c")?;
    check!(second != first, "the same pid {first} after a restart");
    check_eq!(
        ask(Ask::Call(CounterMsg::Pid))?,
        Outcome::Reply(second.into())
    );
    check_eq!(ask(Ask::Call(CounterMsg::Get))?, Outcome::Reply(0));
    check_eq!(ask(Ask::Cast(CounterMsg::Add(3)))?, Outcome::Cast);
    check_eq!(
        ask(Ask::CallTimeout(CounterMsg::Get, WAIT))?,
        Outcome::Reply(3)
    );
    kill(second);
    until(&mut events, |e| {
        matches!(e, SupervisorEvent::Restarted { .. })
    })?;
    check_eq!(ask(Ask::Cast(CounterMsg::Add(7)))?, Outcome::Cast);
    check_eq!(ask(Ask::TryCall(CounterMsg::Get))?, Outcome::Reply(7));
    sup.terminate_child("c")?;
    check_eq!(
        ask(Ask::Call(CounterMsg::Get))?,
        Outcome::NotRunning("it is stopped".into())
    );
    sup.restart_child("c")?;
    check_eq!(ask(Ask::Call(CounterMsg::Get))?, Outcome::Reply(0));
    sup.shutdown();
    check_eq!(
        ask(Ask::Call(CounterMsg::Get))?,
        Outcome::NotRunning("its supervisor ended".into())
    );
    asks.put(&Ask::Quit, true, None)?;
    check_eq!(caller.join_timeout(WAIT)?, Some(ExitReason::Normal));
    Ok(())
}

fn a_supervised_ref_in_a_message_to_a_placed_actor_works_there() -> TestResult {
    let (_n, node) = TestNode::connected("tau")?;
    let sup =
        SupervisorRef::start(Supervisor::new(flags()).child(actor_child::<Counter>("c", 5)?))?;
    let mut placed = Process::actor::<Counter>(1).on(&node);
    placed.start()?;
    let placed_ref = placed.actor_ref::<Counter>();
    // From the process that placed the actor, its supervisor is exported with the
    // message, bound to the actor's process, as a queue or a lock would be.
    check_eq!(
        placed_ref.call(CounterMsg::With(sup.child_ref::<Counter>("c").into_async()))?,
        5
    );
    check_eq!(placed_ref.call(CounterMsg::Get)?, 1);
    placed.stop(WAIT)?;
    sup.shutdown();
    Ok(())
}

/// The placing root relays a local child's message to its placed actor and exports
/// the supervised handles in it: the actor's calls through them ask the root's
/// supervisor, or the child's own (through the root, which asks the child), and an
/// ended supervisor is an error there (the actor answers -1).
fn a_supervised_ref_from_a_local_child_to_a_placed_actor_works_there() -> TestResult {
    let (_n, node) = TestNode::connected("phi")?;
    let sup =
        SupervisorRef::start(Supervisor::new(flags()).child(actor_child::<Counter>("c", 5)?))?;
    let mut placed = Process::actor::<Counter>(1).on(&node);
    placed.start()?;
    let reports = Queue::<String>::new(0)?;
    let mut child = Process::new(
        sends_supervised_refs,
        (
            placed.actor_ref::<Counter>().as_async().clone(),
            sup.child_ref::<Counter>("c").into_async(),
            reports.clone(),
        ),
    );
    child.start()?;
    for want in ["Ok(5)", "Ok(7)", "Ok(-1)"] {
        check_eq!(reports.get(true, Some(WAIT))?, want);
    }
    check_eq!(child.join_timeout(WAIT)?, Some(ExitReason::Normal));
    check_eq!(placed.actor_ref::<Counter>().call(CounterMsg::Get)?, 1);
    placed.stop(WAIT)?;
    sup.shutdown();
    Ok(())
}

fn a_placed_processs_call_fails_with_node_down_when_its_root_dies() -> TestResult {
    use std::io::Read as _;
    let n = TestNode::start("upsilon", COOKIE, None, Duration::from_secs(5));
    let hang = std::net::TcpListener::bind("127.0.0.1:0")?;
    let report = std::net::TcpListener::bind("127.0.0.1:0")?;
    let mut root = Process::new(
        roots_a_supervised_caller,
        (
            n.addr.clone(),
            hang.local_addr()?.to_string(),
            report.local_addr()?.to_string(),
        ),
    );
    root.start()?;
    // The caller made its first call and waits for the word.
    let waiting = accept(&hang)?;
    root.kill()?;
    check_eq!(root.join_timeout(WAIT)?, Some(ExitReason::Signaled(9)));
    drop(waiting);
    let mut conn = accept(&report)?;
    conn.set_read_timeout(Some(WAIT))?;
    let mut text = String::new();
    conn.read_to_string(&mut text)?;
    let down = Outcome::NodeDown {
        node: "the root".to_string(),
    };
    check_eq!(text, format!("{:?}\n{down:?}\n", Outcome::Reply(9)));
    Ok(())
}

fn main() {
    common::cgroup::confine("cluster_supervised");
    // One at a time: a process's connections to nodes are shared.
    common::run_serial(vec![
        trial(
            "a_placed_processs_calls_follow_the_actor_across_a_sigkill_and_restart",
            a_placed_processs_calls_follow_the_actor_across_a_sigkill_and_restart,
        ),
        trial(
            "a_supervised_ref_in_a_message_to_a_placed_actor_works_there",
            a_supervised_ref_in_a_message_to_a_placed_actor_works_there,
        ),
        trial(
            "a_supervised_ref_from_a_local_child_to_a_placed_actor_works_there",
            a_supervised_ref_from_a_local_child_to_a_placed_actor_works_there,
        ),
        trial(
            "a_placed_processs_call_fails_with_node_down_when_its_root_dies",
            a_placed_processs_call_fails_with_node_down_when_its_root_dies,
        ),
    ]);
}
