//! A supervisor on a node as the child of a supervisor here, which restarts it on a
//! live node when its node dies, and the parent's handle to it across restarts: real
//! node processes on loopback (this test program in node mode), real SIGKILLs.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::Duration;

use common::node::{COOKIE, TestNode};
use common::{TestResult, trial};
use multiproc::blocking::node::{self, NodeError};
use multiproc::blocking::{ChildSupervisorRef, Events, SupervisorRef};
use multiproc::{
    AdminError, Backoff, ChildKind, ChildState, ExitReason, RestartIntensity, RestartPlacement,
    SpecError, Supervisor, SupervisorEvent, SupervisorExit, SupervisorFlags, function_child,
};

/// How long any one event may take to come.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A restart delay no test waits out: the child stays `Restarting`.
const NEVER: Duration = Duration::from_secs(3600);

fn waits_for_stop() {
    multiproc::blocking::wait_for_stop();
}

multiproc::register!(waits_for_stop);

fn flags() -> SupervisorFlags {
    SupervisorFlags {
        intensity: RestartIntensity {
            max_restarts: 5,
            within: Duration::from_secs(60),
        },
        backoff: Backoff::NONE,
        ..SupervisorFlags::default()
    }
}

/// The nested supervisor `nested` on `a`, with the children `one` and `two`,
/// restarted on any live node.
fn nested_on(a: &node::Node) -> Result<multiproc::ChildSpec, Box<dyn std::error::Error>> {
    Ok(Supervisor::new(flags())
        .child(function_child("one", waits_for_stop, ())?)
        .child(function_child("two", waits_for_stop, ())?)
        .on(a)
        .into_child("nested")?
        .restart_on(RestartPlacement::AnyLiveNode))
}

/// (id, node, running) of each child, as the handle reports them.
fn children(nested: &ChildSupervisorRef) -> Result<Vec<(String, Option<String>, bool)>, String> {
    let children = nested.which_children().map_err(|e| e.to_string())?;
    Ok(children
        .into_iter()
        .map(|c| {
            let running = c.state == ChildState::Running && c.pid.is_some();
            (c.id, c.node, running)
        })
        .collect())
}

fn on(node: &str, ids: &[&str]) -> Vec<(String, Option<String>, bool)> {
    ids.iter()
        .map(|id| (id.to_string(), Some(node.to_string()), true))
        .collect()
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

fn not_running(out: Result<impl std::fmt::Debug, AdminError>, want_why: &str) -> TestResult {
    match out {
        Err(AdminError::NotRunning { id, why }) if id == "nested" && why == want_why => Ok(()),
        other => Err(format!("not NotRunning({want_why}): {other:?}").into()),
    }
}

/// The handle reaches the nested supervisor on A; A's death is the nested child's
/// `NodeDown` exit, the root restarts it on B with its children, and the same handle
/// reaches it there; stopped, deleted, or its parent ended, it says `NotRunning`.
fn a_nested_supervisor_handle_follows_its_restart_to_a_live_node() -> TestResult {
    let a = TestNode::start("nest-a", COOKIE, None, Duration::from_secs(5));
    let b = TestNode::start("nest-b", COOKIE, None, Duration::from_secs(5));
    let node_a = node::connect(&a.addr, COOKIE)?;
    let _node_b = node::connect(&b.addr, COOKIE)?;
    let root = Supervisor::new(flags()).child(nested_on(&node_a)?);
    let mut events = Events::from(root.events());
    let root = SupervisorRef::start(root)?;
    let nested = root.child_supervisor("nested");
    check_eq!(nested.id(), "nested");
    check_eq!(children(&nested)?, on("nest-a", &["one", "two"]));
    check_eq!(nested.count_children()?.active, 2);
    let status = root.which_children()?;
    check_eq!(status[0].kind, ChildKind::Supervisor);
    check_eq!(status[0].node.as_deref(), Some("nest-a"));

    a.process.kill()?;
    let exit = wait_for(&mut events, |e| match e {
        SupervisorEvent::ChildExited { id, reason } if id == "nested" => Some(reason),
        _ => None,
    })?;
    check_eq!(
        exit,
        ExitReason::NodeDown {
            node: "nest-a".to_string()
        }
    );
    let moved = wait_for(&mut events, |e| match e {
        SupervisorEvent::Restarted { id, node, .. } if id == "nested" => Some(node),
        _ => None,
    })?;
    check_eq!(moved.as_deref(), Some("nest-b"));

    // The same handle, the new incarnation: its spec's children started again there.
    check_eq!(children(&nested)?, on("nest-b", &["one", "two"]));
    nested.start_child(function_child("three", waits_for_stop, ())?)?;
    check_eq!(children(&nested)?, on("nest-b", &["one", "two", "three"]));
    nested.terminate_child("three")?;
    check!(
        matches!(nested.restart_child("nope"), Err(AdminError::NotFound(id)) if id == "nope"),
        "an unknown child of the nested supervisor is NotFound"
    );
    nested.delete_child("three")?;
    nested.terminate_child("two")?;
    nested.restart_child("two")?;
    check_eq!(children(&nested)?, on("nest-b", &["one", "two"]));

    root.terminate_child("nested")?;
    not_running(nested.which_children(), "it is stopped")?;
    root.delete_child("nested")?;
    not_running(nested.count_children(), "no child has this id")?;
    check_eq!(root.shutdown(), SupervisorExit::Shutdown);
    not_running(nested.which_children(), "its supervisor ended")?;
    Ok(())
}

fn kill(pid: u32) -> TestResult {
    let pid = rustix::process::Pid::from_raw(pid as i32).ok_or("a pid")?;
    rustix::process::kill_process(pid, rustix::process::Signal::KILL)?;
    Ok(())
}

/// The pid of each running child, as the handle reports them.
fn pids(nested: &ChildSupervisorRef) -> Result<Vec<(String, u32)>, String> {
    let children = nested.which_children().map_err(|e| e.to_string())?;
    Ok(children
        .into_iter()
        .filter_map(|c| Some((c.id, c.pid?)))
        .collect())
}

/// The nested supervisor's events come back through its handle: its child
/// SIGKILLed on A is `ChildExited` then `Restarted`; after A's death, the same
/// subscription sees the incarnation on B start its children.
fn a_nested_supervisors_events_come_back_across_its_restarts() -> TestResult {
    let a = TestNode::start("nest-e", COOKIE, None, Duration::from_secs(5));
    let b = TestNode::start("nest-f", COOKIE, None, Duration::from_secs(5));
    let node_a = node::connect(&a.addr, COOKIE)?;
    let _node_b = node::connect(&b.addr, COOKIE)?;
    let root = Supervisor::new(flags()).child(nested_on(&node_a)?);
    let mut root_events = Events::from(root.events());
    let root = SupervisorRef::start(root)?;
    let nested = root.child_supervisor("nested");
    let mut events = nested.events()?;
    let before = pids(&nested)?;
    let one = before.iter().find(|(id, _)| id == "one").ok_or("no one")?.1;

    kill(one)?;
    wait_for(&mut events, |e| match e {
        SupervisorEvent::ChildExited { id, .. } if id == "one" => Some(()),
        _ => None,
    })?;
    let again = wait_for(&mut events, |e| match e {
        SupervisorEvent::Restarted { id, pid, .. } if id == "one" => Some(pid),
        _ => None,
    })?;
    check!(again != one, "a new process for one");
    check_eq!(
        pids(&nested)?,
        vec![("one".to_string(), again), before[1].clone()]
    );

    a.process.kill()?;
    let moved = wait_for(&mut root_events, |e| match e {
        SupervisorEvent::Restarted { id, node, .. } if id == "nested" => Some(node),
        _ => None,
    })?;
    check_eq!(moved.as_deref(), Some("nest-f"));
    let mut started = Vec::new();
    while started.len() < 2 {
        started.push(wait_for(&mut events, |e| match e {
            SupervisorEvent::ChildStarted { id, pid, .. } => Some((id, pid)),
            _ => None,
        })?);
    }
    // B's processes: the ones its supervisor reports now.
    check_eq!(started, pids(&nested)?);
    check_eq!(children(&nested)?, on("nest-f", &["one", "two"]));
    check_eq!(root.shutdown(), SupervisorExit::Shutdown);
    Ok(())
}

/// While the root waits to restart the nested supervisor, the handle says
/// `Restarting` at once, naming it.
fn a_handle_between_incarnations_says_restarting() -> TestResult {
    let a = TestNode::start("nest-c", COOKIE, None, Duration::from_secs(5));
    let node_a = node::connect(&a.addr, COOKIE)?;
    let slow = SupervisorFlags {
        backoff: Backoff {
            min: NEVER,
            max: NEVER,
            jitter: 0.0,
            ..Backoff::default()
        },
        ..flags()
    };
    let root = Supervisor::new(slow).child(nested_on(&node_a)?);
    let mut events = Events::from(root.events());
    let root = SupervisorRef::start(root)?;
    let nested = root.child_supervisor("nested");
    check_eq!(children(&nested)?, on("nest-c", &["one", "two"]));
    a.process.kill()?;
    wait_for(&mut events, |e| match e {
        SupervisorEvent::Restarting { id, .. } if id == "nested" => Some(()),
        _ => None,
    })?;
    match nested.start_child(function_child("three", waits_for_stop, ())?) {
        Err(AdminError::Restarting(id)) if id == "nested" => {}
        other => return Err(format!("not Restarting: {other:?}").into()),
    }
    check_eq!(root.shutdown(), SupervisorExit::Shutdown);
    Ok(())
}

/// Bad input gets its typed error: no node, a child that cannot go there, a child
/// that is no supervisor on a node, an id that names nothing.
fn bad_input_is_refused_typed() -> TestResult {
    let a = TestNode::start("nest-d", COOKIE, None, Duration::from_secs(5));
    let node_a = node::connect(&a.addr, COOKIE)?;
    match Supervisor::new(flags()).into_child("nested") {
        Err(AdminError::Invalid(SpecError::InvalidStart { child, .. })) if child == "nested" => {}
        other => return Err(format!("not InvalidStart: {other:?}").into()),
    }
    let placed = function_child("far", waits_for_stop, ())?.on(&node_a);
    match Supervisor::new(flags())
        .child(placed)
        .on(&node_a)
        .into_child("nested")
    {
        Err(AdminError::Start { id, source }) if id == "far" => check!(
            matches!(
                source,
                multiproc::Error::Node(NodeError::NotAcrossNodes { .. })
            ),
            "a placed child of a nested supervisor is NotAcrossNodes: {source:?}"
        ),
        other => return Err(format!("not Start: {other:?}").into()),
    }
    let root = SupervisorRef::start(Supervisor::new(flags()).child(function_child(
        "worker",
        waits_for_stop,
        (),
    )?))?;
    match root.child_supervisor("worker").which_children() {
        Err(AdminError::NotHosted(id)) if id == "worker" => {}
        other => return Err(format!("not NotHosted: {other:?}").into()),
    }
    match root.child_supervisor("worker").events() {
        Err(AdminError::NotHosted(id)) if id == "worker" => {}
        other => return Err(format!("events not NotHosted: {other:?}").into()),
    }
    not_running(
        root.child_supervisor("nested").events(),
        "no child has this id",
    )?;
    not_running(
        root.child_supervisor("nested").which_children(),
        "no child has this id",
    )?;
    check_eq!(root.shutdown(), SupervisorExit::Shutdown);
    Ok(())
}

fn main() {
    // Supervisors restart processes: bounded, whatever a regression does.
    common::cgroup::confine("cluster_nested_supervisor");
    // One at a time: a process's connections to nodes are shared.
    common::run_serial(vec![
        trial(
            "a_nested_supervisor_handle_follows_its_restart_to_a_live_node",
            a_nested_supervisor_handle_follows_its_restart_to_a_live_node,
        ),
        trial(
            "a_nested_supervisors_events_come_back_across_its_restarts",
            a_nested_supervisors_events_come_back_across_its_restarts,
        ),
        trial(
            "a_handle_between_incarnations_says_restarting",
            a_handle_between_incarnations_says_restarting,
        ),
        trial("bad_input_is_refused_typed", bad_input_is_refused_typed),
    ]);
}
