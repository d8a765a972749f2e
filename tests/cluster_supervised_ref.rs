//! A `SupervisedRef` of a supervisor that runs on a node, used from the root that
//! placed it: real node processes on loopback (this test program in node mode,
//! children of the test), real sessions, real signals.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::{Duration, Instant};

use common::node::TestNode;
use common::{TestResult, trial};
use multiproc::blocking::node::{self, NodeError};
use multiproc::blocking::{Event, Events, Process, Queue, SupervisedRef, SupervisorRef};
use multiproc::{
    Backoff, CallError, RestartIntensity, Supervisor, SupervisorEvent, SupervisorExit,
    SupervisorFlags, actor_child,
};
use serde::{Deserialize, Serialize};

/// How long any one event may take to come.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a restart waits: long enough to see the child between its exit and
/// its new incarnation.
const RESTART_DELAY: Duration = Duration::from_millis(1500);

/// A counter that says which process it runs in.
struct Tally(u64);

#[derive(Debug, Serialize, Deserialize)]
enum Op {
    Add(u64),
    /// Answers after this many milliseconds: a call that outlasts its timeout.
    Slow(u64),
    /// Sets the first event, then answers once the second is set (events of the
    /// root, exported to the node with the message).
    Hold(multiproc::Event, multiproc::Event),
}

impl multiproc::Actor for Tally {
    type Args = ();
    type Msg = Op;
    /// (pid, total)
    type Reply = (u32, u64);

    async fn start((): ()) -> Result<Self, multiproc::BoxError> {
        Ok(Tally(0))
    }

    async fn handle(&mut self, op: Op) -> (u32, u64) {
        match op {
            Op::Add(n) => self.0 += n,
            Op::Slow(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Op::Hold(holding, release) => {
                let _ = holding.set().await;
                let _ = release.wait(Some(EVENT_TIMEOUT * 3)).await;
            }
        }
        (std::process::id(), self.0)
    }
}

multiproc::register_actor!(Tally);
multiproc::register!(calls_from_the_tree);

/// What the test asks the caller in a local child to do.
#[derive(Debug, Serialize, Deserialize)]
enum Ask {
    Call(Op),
    TryCall(Op),
    CallTimeout(Op, Duration),
    Cast(Op),
    Quit,
}

/// What the caller reports of one request.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
enum Outcome {
    Reply(u32, u64),
    Cast,
    NotRunning(String),
    Restarting,
    NodeDown { node: String },
    Other(String),
}

fn outcome(r: Result<(u32, u64), CallError>) -> Outcome {
    match r {
        Ok((pid, total)) => Outcome::Reply(pid, total),
        Err(CallError::NotRunning(_, why)) => Outcome::NotRunning(why),
        Err(CallError::Restarting(_)) => Outcome::Restarting,
        Err(CallError::Node(NodeError::NodeDown { node, .. })) => Outcome::NodeDown { node },
        Err(e) => Outcome::Other(format!("{e:?}")),
    }
}

/// In a child of the root, with a handle of the child of a supervisor on a node:
/// does what it is asked through `asks`, reports through `reports`.
fn calls_from_the_tree(
    tally: multiproc::SupervisedRef<Tally>,
    asks: Queue<Ask>,
    reports: Queue<Outcome>,
) -> Result<(), multiproc::BoxError> {
    let tally = SupervisedRef::from(tally);
    loop {
        let out = match asks.get(true, Some(EVENT_TIMEOUT * 3))? {
            Ask::Call(op) => outcome(tally.call(op)),
            Ask::TryCall(op) => outcome(tally.try_call(op)),
            Ask::CallTimeout(op, t) => outcome(tally.call_timeout(op, t)),
            Ask::Cast(op) => match tally.cast(op) {
                Ok(()) => Outcome::Cast,
                Err(e) => outcome(Err(e)),
            },
            Ask::Quit => return Ok(()),
        };
        reports.put(&out, true, None)?;
    }
}

fn flags(backoff: Backoff) -> SupervisorFlags {
    SupervisorFlags {
        intensity: RestartIntensity {
            max_restarts: 5,
            within: Duration::from_secs(60),
        },
        backoff,
        ..SupervisorFlags::default()
    }
}

/// A supervisor on `node` with the one child `tally`.
fn start_on(node: &node::Node, backoff: Backoff) -> Result<SupervisorRef, String> {
    start_with(node, backoff, &["tally"])
}

/// A supervisor on `node` with a `Tally` child of each id.
fn start_with(node: &node::Node, backoff: Backoff, ids: &[&str]) -> Result<SupervisorRef, String> {
    let mut sup = Supervisor::new(flags(backoff));
    for id in ids {
        sup = sup.child(actor_child::<Tally>(*id, ()).map_err(|e| e.to_string())?);
    }
    SupervisorRef::start(sup.on(node)).map_err(|e| e.to_string())
}

/// The next event that `want` keeps, within [`EVENT_TIMEOUT`] each.
fn wait_for<T>(
    events: &mut Events,
    mut want: impl FnMut(SupervisorEvent) -> Option<T>,
) -> Result<T, String> {
    loop {
        let event = events
            .recv_timeout(EVENT_TIMEOUT)
            .map_err(|e| format!("no awaited event: {e:?}"))?;
        if let Some(t) = want(event) {
            return Ok(t);
        }
    }
}

fn kill(pid: u32) -> TestResult {
    let pid = rustix::process::Pid::from_raw(pid as i32).ok_or("a pid")?;
    rustix::process::kill_process(pid, rustix::process::Signal::KILL)?;
    Ok(())
}

fn not_running<T: std::fmt::Debug>(
    r: Result<T, CallError>,
    id: &str,
    why: &str,
) -> Result<(), String> {
    match r {
        Err(CallError::NotRunning(child, reason)) if child == id && reason.contains(why) => Ok(()),
        other => Err(format!("expected NotRunning({id}, {why}), got {other:?}")),
    }
}

// ---- tests ----

/// Calls and casts reach the child on the node; after a SIGKILL there, the next
/// call reaches its new incarnation, with a fresh count.
fn calls_reach_the_child_on_a_node_across_its_restarts() -> TestResult {
    let (_n, node) = TestNode::connected("ref-a")?;
    let backoff = Backoff {
        min: RESTART_DELAY,
        max: RESTART_DELAY,
        factor: 1,
        jitter: 0.0,
        reset_after: Duration::from_secs(60),
    };
    let sup = start_on(&node, backoff)?;
    let tally: SupervisedRef<Tally> = sup.child_ref("tally");
    let (pid, total) = tally.call(Op::Add(2))?;
    check_eq!(total, 2);
    let listed = sup.which_children()?[0].pid;
    check_eq!(listed, Some(pid));
    tally.cast(Op::Add(3))?;
    check_eq!(tally.try_call(Op::Add(1))?, (pid, 6));
    check_eq!(
        tally.call_timeout(Op::Add(1), Duration::from_secs(5))?,
        (pid, 7)
    );

    let mut events = sup.events();
    kill(pid)?;
    wait_for(&mut events, |e| match e {
        SupervisorEvent::ChildExited { id, .. } if id == "tally" => Some(()),
        _ => None,
    })?;
    // Between its exit and its restart: try_call does not wait, call does.
    match tally.try_call(Op::Add(1)) {
        Err(CallError::Restarting(id)) => check_eq!(id, "tally"),
        other => return Err(format!("expected Restarting, got {other:?}").into()),
    }
    let (new_pid, total) = tally.call(Op::Add(1))?;
    check!(new_pid != pid, "a new incarnation: {new_pid}");
    check_eq!(total, 1);
    let restarted = wait_for(&mut events, |e| match e {
        SupervisorEvent::Restarted { id, pid, .. } if id == "tally" => Some(pid),
        _ => None,
    })?;
    check_eq!(restarted, new_pid);

    // A call that outlasts its timeout; the child serves the next one after it.
    let asked = Instant::now();
    match tally.call_timeout(Op::Slow(3000), Duration::from_millis(300)) {
        Err(CallError::Timeout(t)) => check_eq!(t, Duration::from_millis(300)),
        other => return Err(format!("expected Timeout, got {other:?}").into()),
    }
    check!(
        asked.elapsed() < Duration::from_secs(2),
        "the timeout took {:?}",
        asked.elapsed()
    );
    check_eq!(tally.call(Op::Add(1))?, (new_pid, 2));

    // Stopped, unknown, ended: typed.
    sup.terminate_child("tally")?;
    not_running(tally.call(Op::Add(1)), "tally", "it is stopped")?;
    not_running(tally.cast(Op::Add(1)), "tally", "it is stopped")?;
    let nobody: SupervisedRef<Tally> = sup.child_ref("nobody");
    not_running(nobody.call(Op::Add(1)), "nobody", "no child has this id")?;
    sup.restart_child("tally")?;
    check_eq!(tally.call(Op::Add(4))?.1, 4);
    check_eq!(sup.shutdown(), SupervisorExit::Shutdown);
    not_running(tally.call(Op::Add(1)), "tally", "its supervisor ended")?;
    Ok(())
}

/// The node SIGKILLed: a call in flight and the calls after fail with `NodeDown`,
/// without waiting.
fn a_killed_node_fails_its_childs_calls_node_down() -> TestResult {
    let (n, node) = TestNode::connected("ref-b")?;
    let sup = start_on(&node, Backoff::NONE)?;
    let tally: SupervisedRef<Tally> = sup.child_ref("tally");
    check_eq!(tally.call(Op::Add(1))?.1, 1);
    let (tx, rx) = std::sync::mpsc::channel();
    let in_flight = {
        let tally: SupervisedRef<Tally> = sup.child_ref("tally");
        std::thread::spawn(move || {
            let _ = tx.send(());
            tally.call(Op::Slow(60_000))
        })
    };
    rx.recv_timeout(EVENT_TIMEOUT)?;
    let killed = Instant::now();
    n.process.kill()?;
    let node_down = |r: Result<(), CallError>| -> TestResult {
        match r {
            Err(CallError::Node(NodeError::NodeDown { node, .. })) => check_eq!(node, "ref-b"),
            other => return Err(format!("expected NodeDown, got {other:?}").into()),
        }
        Ok(())
    };
    node_down(in_flight.join().unwrap().map(drop))?;
    check!(
        killed.elapsed() < Duration::from_secs(5),
        "the call in flight failed after {:?}",
        killed.elapsed()
    );
    let asked = Instant::now();
    node_down(tally.call(Op::Add(1)).map(drop))?;
    node_down(tally.try_call(Op::Add(1)).map(drop))?;
    node_down(tally.cast(Op::Add(1)))?;
    node_down(
        tally
            .call_timeout(Op::Add(1), Duration::from_secs(30))
            .map(drop),
    )?;
    check!(
        asked.elapsed() < Duration::from_secs(2),
        "calls failed at once, not after {:?}",
        asked.elapsed()
    );
    Ok(())
}

/// A call held in child `a` on the node holds up neither a call to child `b`, nor the
/// next call to `a` sent meanwhile, nor the supervisor's admin requests.
fn a_held_call_holds_up_no_other_call() -> TestResult {
    let (_n, node) = TestNode::connected("ref-c")?;
    let sup = start_with(&node, Backoff::NONE, &["a", "b"])?;
    let (a, b): (SupervisedRef<Tally>, SupervisedRef<Tally>) =
        (sup.child_ref("a"), sup.child_ref("b"));
    let (holding, release) = (Event::new()?, Event::new()?);
    let (tx, rx) = std::sync::mpsc::channel();
    let held = {
        let a: SupervisedRef<Tally> = sup.child_ref("a");
        let hold = Op::Hold(holding.clone().into_async(), release.clone().into_async());
        std::thread::spawn(move || {
            let out = a.call_timeout(hold, EVENT_TIMEOUT * 2);
            let _ = tx.send(());
            out
        })
    };
    check!(
        holding.wait(Some(EVENT_TIMEOUT))?,
        "the call reached child a"
    );
    let (_, b_total) = b.call(Op::Add(5))?;
    check_eq!(b_total, 5);
    check_eq!(sup.which_children()?.len(), 2);
    check_eq!(sup.count_children()?.active, 2);
    // A cast to the held child is sent on, in its turn: it waits in the child's
    // mailbox, not in the supervisor.
    a.cast(Op::Add(1))?;
    check!(
        rx.try_recv().is_err(),
        "the held call answered before the others"
    );
    // Timed out, given up on, while the child still holds the first call.
    match a.call_timeout(Op::Add(1), Duration::from_millis(300)) {
        Err(CallError::Timeout(t)) => check_eq!(t, Duration::from_millis(300)),
        other => return Err(format!("expected Timeout, got {other:?}").into()),
    }
    release.set()?;
    let (a_pid, _) = held.join().unwrap()?;
    // In order: the cast, then the timed-out call (handled all the same), then this.
    check_eq!(a.call(Op::Add(0))?, (a_pid, 2));
    check_eq!(sup.shutdown(), SupervisorExit::Shutdown);
    Ok(())
}

/// The handle given to a child of the root, on this host: its calls reach the child
/// on the node, its new incarnation after a SIGKILL there, carry the root's events
/// there, and fail with `NodeDown` once the node is killed. Given to a process
/// placed on another node, it works there the same way, through the root.
fn the_handle_works_from_a_child_of_the_root() -> TestResult {
    let (n, node) = TestNode::connected("ref-d")?;
    let sup = start_on(&node, Backoff::NONE)?;
    let tally: SupervisedRef<Tally> = sup.child_ref("tally");
    let (asks, reports) = (Queue::<Ask>::new(0)?, Queue::<Outcome>::new(0)?);
    let mut caller = Process::new(
        calls_from_the_tree,
        (tally.into_async(), asks.clone(), reports.clone()),
    );
    caller.start()?;
    let ask = |a: Ask| -> Result<Outcome, String> {
        asks.put(&a, true, None).map_err(|e| e.to_string())?;
        reports
            .get(true, Some(EVENT_TIMEOUT))
            .map_err(|e| format!("no report for {a:?}: {e}"))
    };
    let pid = sup.which_children()?[0].pid.ok_or("a pid")?;
    check_eq!(ask(Ask::Call(Op::Add(2)))?, Outcome::Reply(pid, 2));
    check_eq!(ask(Ask::Cast(Op::Add(3)))?, Outcome::Cast);
    check_eq!(ask(Ask::TryCall(Op::Add(1)))?, Outcome::Reply(pid, 6));
    check_eq!(
        ask(Ask::CallTimeout(Op::Slow(3000), Duration::from_millis(300)))?,
        Outcome::Other(format!(
            "{:?}",
            CallError::Timeout(Duration::from_millis(300))
        ))
    );

    let mut events = sup.events();
    kill(pid)?;
    let new_pid = wait_for(&mut events, |e| match e {
        SupervisorEvent::Restarted { id, pid, .. } if id == "tally" => Some(pid),
        _ => None,
    })?;
    check!(new_pid != pid, "a new incarnation: {new_pid}");
    check_eq!(ask(Ask::Call(Op::Add(1)))?, Outcome::Reply(new_pid, 1));

    // The root's events in a call and a cast from the child: the root, which placed
    // the supervisor, exports them with the request, as it does its own.
    let hold = || -> Result<(Op, Event, Event), multiproc::SyncError> {
        let (holding, release) = (Event::new()?, Event::new()?);
        let op = Op::Hold(holding.clone().into_async(), release.clone().into_async());
        Ok((op, holding, release))
    };
    let (op, holding, release) = hold()?;
    asks.put(&Ask::Call(op), true, None)?;
    check!(holding.wait(Some(EVENT_TIMEOUT))?, "set on the node");
    release.set()?;
    check_eq!(
        reports.get(true, Some(EVENT_TIMEOUT))?,
        Outcome::Reply(new_pid, 1)
    );
    let (op, holding, release) = hold()?;
    check_eq!(ask(Ask::Cast(op))?, Outcome::Cast);
    check!(
        holding.wait(Some(EVENT_TIMEOUT))?,
        "set on the node by the cast"
    );
    release.set()?;

    // Placed on another node, it works there too: its calls go through the root,
    // which holds both sessions. A root's event that the process on that node
    // holds is a far handle there, which goes to no other node: refused, typed.
    let (_n2, node2) = TestNode::connected("ref-d2")?;
    let (far_asks, far_reports) = (Queue::<Ask>::new(0)?, Queue::<Outcome>::new(0)?);
    let tally: SupervisedRef<Tally> = sup.child_ref("tally");
    let mut placed = Process::new(
        calls_from_the_tree,
        (tally.into_async(), far_asks.clone(), far_reports.clone()),
    )
    .on(&node2);
    placed.start()?;
    let far_ask = |a: Ask| -> Result<Outcome, String> {
        far_asks.put(&a, true, None).map_err(|e| e.to_string())?;
        far_reports
            .get(true, Some(EVENT_TIMEOUT))
            .map_err(|e| format!("no report from the node for {a:?}: {e}"))
    };
    check_eq!(far_ask(Ask::Call(Op::Add(1)))?, Outcome::Reply(new_pid, 2));
    check_eq!(far_ask(Ask::Cast(Op::Add(1)))?, Outcome::Cast);
    check_eq!(
        far_ask(Ask::TryCall(Op::Add(0)))?,
        Outcome::Reply(new_pid, 3)
    );
    let (op, _, _) = hold()?;
    match far_ask(Ask::Call(op))? {
        Outcome::Other(e) if e.contains("NotAcrossNodes") => {}
        other => return Err(format!("expected NotAcrossNodes, got {other:?}").into()),
    }

    n.process.kill()?;
    let killed = Instant::now();
    check_eq!(
        ask(Ask::Call(Op::Add(1)))?,
        Outcome::NodeDown {
            node: "ref-d".into()
        }
    );
    check_eq!(
        ask(Ask::Cast(Op::Add(1)))?,
        Outcome::NodeDown {
            node: "ref-d".into()
        }
    );
    check!(
        killed.elapsed() < Duration::from_secs(5),
        "NodeDown came after {:?}",
        killed.elapsed()
    );
    check_eq!(
        far_ask(Ask::Call(Op::Add(1)))?,
        Outcome::NodeDown {
            node: "ref-d".into()
        }
    );
    asks.put(&Ask::Quit, true, None)?;
    caller.join()?;
    far_asks.put(&Ask::Quit, true, None)?;
    check_eq!(placed.join()?, multiproc::ExitReason::Normal);
    Ok(())
}

fn main() {
    // Supervisors restart processes: bounded, whatever a regression does.
    common::cgroup::confine("cluster_supervised_ref");
    // One at a time: a process's connections to nodes are shared.
    common::run_serial(vec![
        trial(
            "calls_reach_the_child_on_a_node_across_its_restarts",
            calls_reach_the_child_on_a_node_across_its_restarts,
        ),
        trial(
            "a_killed_node_fails_its_childs_calls_node_down",
            a_killed_node_fails_its_childs_calls_node_down,
        ),
        trial(
            "a_held_call_holds_up_no_other_call",
            a_held_call_holds_up_no_other_call,
        ),
        trial(
            "the_handle_works_from_a_child_of_the_root",
            the_handle_works_from_a_child_of_the_root,
        ),
    ]);
}
