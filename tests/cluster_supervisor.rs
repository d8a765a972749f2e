//! Supervisors whose own actor runs on a node: real node processes on loopback (this
//! test program in node mode, children of the test), real sessions, real signals.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::{Duration, Instant};

use common::node::{COOKIE, TestNode};
use common::{TestResult, trial};
use multiproc::blocking::node::{self, NodeError};
use multiproc::blocking::{Connection, DynamicSupervisor, Events, Process, SupervisorRef, pipe};
use multiproc::{
    AdminError, CallError, ChildKind, ChildState, ExitReason, RestartIntensity, RestartPlacement,
    Supervisor, SupervisorEvent, SupervisorExit, SupervisorFlags, function_child,
};

/// How long any one event may take to come.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

// ---- entry points ----

fn waits_for_stop() {
    multiproc::blocking::wait_for_stop();
}

fn fails_at_once() {
    std::process::exit(3);
}

fn takes_value_and_waits(_v: multiproc::Value<u64>) {
    multiproc::blocking::wait_for_stop();
}

/// A root of its own: connects to the node at `addr`, starts a dynamic supervisor
/// there with one child, sends the child's pid up, and waits to be killed.
fn root_with_a_supervisor_there(
    addr: String,
    mut up: Connection,
) -> Result<(), Box<dyn std::error::Error>> {
    let node = node::connect(&addr, COOKIE)?;
    let dynamic = DynamicSupervisor::start_on(
        &node,
        flags(),
        function_child("job", waits_for_stop, ())?,
        None,
    )?;
    let id = dynamic.start_child(&())?;
    let (_, pid) = child(&dynamic.supervisor(), &id)?;
    up.send(&pid)?;
    loop {
        std::thread::park();
    }
}

/// A supervisor as the work of its process, with one child: a subtree, wherever that
/// process runs.
fn subtree() -> Result<(), Box<dyn std::error::Error>> {
    let sup = Supervisor::new(flags()).child(function_child("leaf", waits_for_stop, ())?);
    Ok(multiproc::blocking::run_supervisor(sup)?)
}

multiproc::register!(
    waits_for_stop,
    fails_at_once,
    takes_value_and_waits,
    subtree
);
/// A root of its own: starts a dynamic supervisor with one child on the node at
/// `addr`, sends the child's pid up, and returns, so that its exit finishes it.
fn root_that_returns(addr: String, mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    let node = node::connect(&addr, COOKIE)?;
    let dynamic = DynamicSupervisor::start_on(
        &node,
        flags(),
        function_child("job", waits_for_stop, ())?,
        None,
    )?;
    let id = dynamic.start_child(&())?;
    let (_, pid) = child(&dynamic.supervisor(), &id)?;
    up.send(&pid)?;
    Ok(())
}

multiproc::register!(root_with_a_supervisor_there, root_that_returns);

// ---- helpers ----

fn flags() -> SupervisorFlags {
    SupervisorFlags {
        intensity: RestartIntensity {
            max_restarts: 5,
            within: Duration::from_secs(60),
        },
        backoff: multiproc::Backoff::NONE,
        ..SupervisorFlags::default()
    }
}

/// (node, pid) of child `id`, as `which_children` reports it.
fn child(sup: &SupervisorRef, id: &str) -> Result<(Option<String>, u32), String> {
    let children = sup.which_children().map_err(|e| e.to_string())?;
    let c = children
        .into_iter()
        .find(|c| c.id == id)
        .ok_or(format!("no child {id}"))?;
    Ok((c.node, c.pid.ok_or(format!("{id} has no pid"))?))
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

// ---- tests ----

/// Children started through the root run on the node, a killed one is restarted
/// there, and the root sees it all in `which_children` and the events.
fn a_dynamic_supervisor_runs_on_a_node_and_restarts_there() -> TestResult {
    let (_n, node) = TestNode::connected("sup-a")?;
    let dynamic = DynamicSupervisor::start_on(
        &node,
        flags(),
        function_child("job", waits_for_stop, ())?,
        None,
    )?;
    let sup = dynamic.supervisor();
    check_eq!(sup.node(), Some("sup-a"));
    let mut events = sup.events_from_start();
    let first = dynamic.start_child(&())?;
    let second = dynamic.start_child(&())?;
    check_eq!((first.as_str(), second.as_str()), ("job-1", "job-2"));
    let started = wait_for(&mut events, |e| match e {
        SupervisorEvent::ChildStarted { id, node, .. } if id == first => Some(node),
        _ => None,
    })?;
    check_eq!(started, Some("sup-a".to_string()));
    let children = sup.which_children()?;
    check_eq!(children.len(), 2);
    for c in &children {
        check_eq!(c.node.as_deref(), Some("sup-a"));
        check_eq!(c.state, ChildState::Running);
    }
    // Named Python's way, under the process that hosts the supervisor there.
    let name = children[0].name.clone().ok_or("a name")?;
    check!(
        name.starts_with("Process-") && name.matches(':').count() >= 1,
        "{name}"
    );
    check_eq!(sup.count_children()?.active, 2);

    let (_, pid) = child(&sup, &first)?;
    kill(pid)?;
    let exit = wait_for(&mut events, |e| match e {
        SupervisorEvent::ChildExited { id, reason } if id == first => Some(reason),
        _ => None,
    })?;
    check_eq!(exit, ExitReason::Signaled(9));
    let (new_pid, where_) = wait_for(&mut events, |e| match e {
        SupervisorEvent::Restarted { id, pid, node, .. } if id == first => Some((pid, node)),
        _ => None,
    })?;
    check!(new_pid != pid, "a new process: {new_pid}");
    check_eq!(where_, Some("sup-a".to_string()));
    let restarted = sup
        .which_children()?
        .into_iter()
        .find(|c| c.id == first)
        .ok_or("the restarted child")?;
    check_eq!(restarted.restarts, 1);
    check_eq!(restarted.pid, Some(new_pid));
    check_eq!(restarted.last_exit, Some(ExitReason::Signaled(9)));

    // The admin requests, each a call to the node.
    let state = |id: &str| -> Result<ChildState, String> {
        let children = sup.which_children().map_err(|e| e.to_string())?;
        let c = children.iter().find(|c| c.id == id).ok_or("no child")?;
        Ok(c.state)
    };
    sup.terminate_child(&first)?;
    check_eq!(state(&first)?, ChildState::Stopped);
    check!(
        common::wait_gone(new_pid, Duration::from_secs(10)),
        "a terminated child's process is gone"
    );
    sup.restart_child(&first)?;
    check_eq!(state(&first)?, ChildState::Running);
    match sup.delete_child(&first) {
        Err(AdminError::Running(id)) => check_eq!(id, first),
        other => return Err(format!("expected Running, got {other:?}").into()),
    }
    let (_, new_pid) = child(&sup, &first)?;
    dynamic.terminate_child(&second)?;
    check_eq!(sup.which_children()?.len(), 1);
    match sup.terminate_child("nobody") {
        Err(AdminError::NotFound(id)) => check_eq!(id, "nobody"),
        other => return Err(format!("expected NotFound, got {other:?}").into()),
    }
    check_eq!(sup.shutdown(), SupervisorExit::Shutdown);
    check!(
        common::wait_gone(new_pid, Duration::from_secs(10)),
        "the child is stopped with its supervisor"
    );
    let end = wait_for(&mut events, |e| match e {
        SupervisorEvent::ShutDown { reason } => Some(reason),
        _ => None,
    })?;
    check_eq!(end, SupervisorExit::Shutdown);
    check!(
        matches!(sup.which_children(), Err(AdminError::Gone)),
        "an ended supervisor is gone"
    );
    Ok(())
}

/// A static supervisor on a node starts its children there, and its own end
/// (restart intensity) is seen here.
fn a_supervisor_on_a_node_reports_its_end() -> TestResult {
    let (_n, node) = TestNode::connected("sup-b")?;
    let flags = SupervisorFlags {
        intensity: RestartIntensity {
            max_restarts: 1,
            within: Duration::from_secs(60),
        },
        ..flags()
    };
    let sup = Supervisor::new(flags)
        .child(function_child("steady", waits_for_stop, ())?)
        .on(&node);
    let mut events = Events::from(sup.events());
    let sup = SupervisorRef::start(sup)?;
    let started = wait_for(&mut events, |e| match e {
        SupervisorEvent::ChildStarted { id, node, .. } => Some((id, node)),
        _ => None,
    })?;
    check_eq!(started, ("steady".to_string(), Some("sup-b".to_string())));
    // A child that keeps failing: one restart allowed, the second refused.
    sup.start_child(function_child("crasher", fails_at_once, ())?)?;
    check_eq!(sup.join(), SupervisorExit::IntensityExceeded);
    let end = wait_for(&mut events, |e| match e {
        SupervisorEvent::ShutDown { reason } => Some(reason),
        _ => None,
    })?;
    check_eq!(end, SupervisorExit::IntensityExceeded);
    Ok(())
}

/// The node SIGKILLed: the supervisor's end is `Lost` with `NodeDown`, and every call
/// after fails typed, without waiting.
fn a_killed_node_ends_its_supervisor_node_down() -> TestResult {
    let (n, node) = TestNode::connected("sup-c")?;
    let dynamic = DynamicSupervisor::start_on(
        &node,
        flags(),
        function_child("job", waits_for_stop, ())?,
        None,
    )?;
    let sup = dynamic.supervisor();
    let mut events = sup.events();
    let id = dynamic.start_child(&())?;
    let (_, pid) = child(&sup, &id)?;
    let killed = Instant::now();
    n.process.kill()?;
    let lost = SupervisorExit::Lost {
        reason: ExitReason::NodeDown {
            node: "sup-c".to_string(),
        },
    };
    check_eq!(sup.join(), lost);
    check!(
        killed.elapsed() < Duration::from_secs(5),
        "the end took {:?}",
        killed.elapsed()
    );
    let end = wait_for(&mut events, |e| match e {
        SupervisorEvent::ShutDown { reason } => Some(reason),
        _ => None,
    })?;
    check_eq!(end, lost);
    let asked = Instant::now();
    match sup.which_children() {
        Err(AdminError::Node(NodeError::NodeDown { node, .. })) => check_eq!(node, "sup-c"),
        other => return Err(format!("expected NodeDown, got {other:?}").into()),
    }
    match dynamic.start_child(&()) {
        Err(AdminError::Node(NodeError::NodeDown { .. })) => {}
        other => return Err(format!("expected NodeDown, got {other:?}").into()),
    }
    check!(
        asked.elapsed() < Duration::from_secs(2),
        "calls failed at once"
    );
    check_eq!(sup.shutdown(), lost);
    check!(
        common::wait_gone(pid, Duration::from_secs(10)),
        "the child is gone with its node"
    );
    // A supervisor is not started on a node known to be down.
    match DynamicSupervisor::start_on(
        &node,
        flags(),
        function_child("job", waits_for_stop, ())?,
        None,
    ) {
        Err(AdminError::Start {
            source: multiproc::Error::Node(NodeError::NodeDown { .. }),
            ..
        }) => {}
        other => return Err(format!("expected NodeDown, got {other:?}").into()),
    }
    Ok(())
}

/// What cannot go to the node is refused, typed, before anything is sent.
fn what_cannot_travel_is_refused() -> TestResult {
    let (_n, node) = TestNode::connected("sup-d")?;
    let value = multiproc::Value::new(1u64)?;
    let not_across = |r: Result<(), AdminError>, id: &str| -> TestResult {
        match r {
            Err(AdminError::Start {
                id: refused,
                source: multiproc::Error::Node(NodeError::NotAcrossNodes { node, .. }),
            }) => {
                check_eq!(refused, id);
                check_eq!(node, "sup-d");
                Ok(())
            }
            other => Err(format!("{id}: expected NotAcrossNodes, got {other:?}").into()),
        }
    };
    // A template holding a handle of this host; a template placed elsewhere.
    let holder = function_child("holder", takes_value_and_waits, value.clone())?;
    not_across(
        DynamicSupervisor::start_on(&node, flags(), holder.clone(), None).map(drop),
        "holder",
    )?;
    let placed = function_child("placed", waits_for_stop, ())?.on(&node);
    not_across(
        DynamicSupervisor::start_on(&node, flags(), placed.clone(), None).map(drop),
        "placed",
    )?;
    not_across(
        SupervisorRef::start(Supervisor::new(flags()).child(holder).on(&node)).map(drop),
        "holder",
    )?;
    // Arguments given to a child of a supervisor there.
    let dynamic = DynamicSupervisor::start_on(
        &node,
        flags(),
        function_child("v", waits_for_stop, ())?,
        None,
    )?;
    match dynamic.start_child(&value) {
        Err(AdminError::Start {
            source: multiproc::Error::Node(NodeError::NotAcrossNodes { .. }),
            ..
        }) => {}
        other => return Err(format!("expected NotAcrossNodes, got {other:?}").into()),
    }
    let sup = dynamic.supervisor();
    not_across(sup.start_child(placed), "placed")?;
    check_eq!(sup.which_children()?.len(), 0);
    // A stable handle calls through the supervisor there (`cluster_supervised_ref`):
    // the refused child never started.
    let job = sup.child_ref::<Counter>("v-1");
    match job.call(()) {
        Err(CallError::NotRunning(id, why)) => {
            check_eq!(id, "v-1");
            check_eq!(why, "no child has this id");
        }
        other => return Err(format!("expected NotRunning, got {other:?}").into()),
    }
    // It travels within this tree (`cluster_supervised_ref`): encoded and decoded,
    // it calls the same supervisor.
    let bytes = multiproc::codec::encode(job.as_async())?;
    let job: multiproc::SupervisedRef<Counter> = multiproc::codec::decode(&bytes)?;
    match multiproc::blocking::SupervisedRef::from(job).call(()) {
        Err(CallError::NotRunning(id, why)) => {
            check_eq!(id, "v-1");
            check_eq!(why, "no child has this id");
        }
        other => return Err(format!("expected NotRunning, got {other:?}").into()),
    }
    check_eq!(sup.shutdown(), SupervisorExit::Shutdown);
    Ok(())
}

/// The root lost: the node stops the supervisor and its children after the grace
/// period, as any process placed there.
fn a_lost_roots_supervisor_is_stopped_with_its_children() -> TestResult {
    let mut n = TestNode::start("sup-e", COOKIE, None, Duration::from_millis(300));
    let (mut ours, theirs) = pipe(true)?;
    let mut root = Process::new(root_with_a_supervisor_there, (n.addr.clone(), theirs));
    root.start()?;
    check!(
        ours.poll(Some(Duration::from_secs(20)))?,
        "the root reports its supervisor's child"
    );
    let pid: u32 = ours.recv()?;
    check!(
        !common::wait_gone(pid, Duration::ZERO),
        "the child runs while its root lives"
    );
    root.kill()?;
    root.join()?;
    n.event("lost root ")?;
    n.event("released root ")?;
    check!(
        common::wait_gone(pid, Duration::from_secs(10)),
        "the child of a dead root's supervisor is gone"
    );
    Ok(())
}

/// A root that exits stops its supervisor on a node, children first, at once (not
/// after the node's grace period, a minute here).
fn a_roots_exit_stops_its_supervisor_on_a_node() -> TestResult {
    let n = TestNode::start("sup-h", COOKIE, None, Duration::from_secs(60));
    let (mut ours, theirs) = pipe(true)?;
    let mut root = Process::new(root_that_returns, (n.addr.clone(), theirs));
    root.start()?;
    check!(
        ours.poll(Some(Duration::from_secs(20)))?,
        "the root reports its supervisor's child"
    );
    let pid: u32 = ours.recv()?;
    check_eq!(root.join()?, ExitReason::Normal);
    check!(
        common::wait_gone(pid, Duration::from_secs(10)),
        "the child of an exited root's supervisor is gone"
    );
    Ok(())
}

/// A subtree placed as a supervisor child of a supervisor here: its node's death is
/// its exit, and the supervisor here starts it again on a live node.
fn a_subtree_on_a_dead_node_is_restarted_on_a_live_one() -> TestResult {
    let (a, node_a) = TestNode::connected("sup-f")?;
    let (_b, _node_b) = TestNode::connected("sup-g")?;
    let mut spec = function_child("subtree", subtree, ())?
        .on(&node_a)
        .restart_on(RestartPlacement::AnyLiveNode);
    spec.kind = ChildKind::Supervisor;
    let sup = Supervisor::new(flags()).child(spec);
    let mut events = Events::from(sup.events());
    let sup = SupervisorRef::start(sup)?;
    check_eq!(child(&sup, "subtree")?.0, Some("sup-f".to_string()));
    a.process.kill()?;
    let exit = wait_for(&mut events, |e| match e {
        SupervisorEvent::ChildExited { id, reason } if id == "subtree" => Some(reason),
        _ => None,
    })?;
    check_eq!(
        exit,
        ExitReason::NodeDown {
            node: "sup-f".to_string()
        }
    );
    let moved = wait_for(&mut events, |e| match e {
        SupervisorEvent::Restarted { id, node, .. } if id == "subtree" => Some(node),
        _ => None,
    })?;
    check_eq!(moved, Some("sup-g".to_string()));
    check_eq!(sup.shutdown(), SupervisorExit::Shutdown);
    Ok(())
}

/// An actor type, only for the type of a stable handle.
struct Counter;

impl multiproc::Actor for Counter {
    type Args = ();
    type Msg = ();
    type Reply = ();

    async fn start((): ()) -> Result<Self, multiproc::BoxError> {
        Ok(Counter)
    }

    async fn handle(&mut self, (): ()) {}
}

multiproc::register_actor!(Counter);

fn main() {
    // Supervisors restart processes: bounded, whatever a regression does.
    common::cgroup::confine("cluster_supervisor");
    // One at a time: a process's connections to nodes are shared.
    common::run_serial(vec![
        trial(
            "a_dynamic_supervisor_runs_on_a_node_and_restarts_there",
            a_dynamic_supervisor_runs_on_a_node_and_restarts_there,
        ),
        trial(
            "a_supervisor_on_a_node_reports_its_end",
            a_supervisor_on_a_node_reports_its_end,
        ),
        trial(
            "a_killed_node_ends_its_supervisor_node_down",
            a_killed_node_ends_its_supervisor_node_down,
        ),
        trial(
            "what_cannot_travel_is_refused",
            what_cannot_travel_is_refused,
        ),
        trial(
            "a_subtree_on_a_dead_node_is_restarted_on_a_live_one",
            a_subtree_on_a_dead_node_is_restarted_on_a_live_one,
        ),
        trial(
            "a_roots_exit_stops_its_supervisor_on_a_node",
            a_roots_exit_stops_its_supervisor_on_a_node,
        ),
        trial(
            "a_lost_roots_supervisor_is_stopped_with_its_children",
            a_lost_roots_supervisor_is_stopped_with_its_children,
        ),
    ]);
}
