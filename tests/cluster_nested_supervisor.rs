//! A supervisor on a node as the child of a supervisor here, which restarts it on a
//! live node when its node dies, and the parent's handle to it across restarts: real
//! node processes on loopback (this test program in node mode), real SIGKILLs.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::Duration;

use common::node::TestNode;
use common::{TestResult, trial};
use multiproc::blocking::node::{self, NodeError};
use multiproc::blocking::{ChildSupervisorRef, Events, Process, SupervisedRef, SupervisorRef};
use multiproc::{
    AdminError, Backoff, CallError, ChildKind, ChildState, ExitReason, RestartIntensity,
    RestartPlacement, SpecError, Supervisor, SupervisorEvent, SupervisorExit, SupervisorFlags,
    actor_child, function_child,
};

/// How long any one event may take to come.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A restart delay no test waits out: the child stays `Restarting`.
const NEVER: Duration = Duration::from_secs(3600);

fn waits_for_stop() {
    multiproc::blocking::wait_for_stop();
}

multiproc::register!(waits_for_stop);

/// A counter that says which process it runs in.
struct Tally(u64);

impl multiproc::Actor for Tally {
    type Args = ();
    type Msg = u64;
    /// (pid, total)
    type Reply = (u32, u64);

    async fn start((): ()) -> Result<Self, multiproc::BoxError> {
        Ok(Tally(0))
    }

    async fn handle(&mut self, n: u64) -> (u32, u64) {
        self.0 += n;
        (std::process::id(), self.0)
    }
}

multiproc::register_actor!(Tally);

/// Takes a handle to a nested supervisor's child: one that may not get it.
struct Holder;

impl multiproc::Actor for Holder {
    type Args = ();
    type Msg = multiproc::SupervisedRef<Tally>;
    type Reply = ();

    async fn start((): ()) -> Result<Self, multiproc::BoxError> {
        Ok(Holder)
    }

    async fn handle(&mut self, _: multiproc::SupervisedRef<Tally>) {}
}

multiproc::register_actor!(Holder);

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

/// The nested supervisor `nested` on `a` with the actor child `tally`, itself
/// restarted by `flags`, restarted on any live node.
fn tally_on(
    a: &node::Node,
    flags: SupervisorFlags,
) -> Result<multiproc::ChildSpec, Box<dyn std::error::Error>> {
    Ok(Supervisor::new(flags)
        .child(actor_child::<Tally>("tally", ())?)
        .on(a)
        .into_child("nested")?
        .restart_on(RestartPlacement::AnyLiveNode))
}

/// Flags whose restarts wait [`NEVER`]: a child stays `Restarting`.
fn slow() -> SupervisorFlags {
    SupervisorFlags {
        backoff: Backoff {
            min: NEVER,
            max: NEVER,
            jitter: 0.0,
            ..Backoff::default()
        },
        ..flags()
    }
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
    let (a, node_a) = TestNode::connected("nest-a")?;
    let (_b, _node_b) = TestNode::connected("nest-b")?;
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
    let (a, node_a) = TestNode::connected("nest-e")?;
    let (_b, _node_b) = TestNode::connected("nest-f")?;
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
    let (a, node_a) = TestNode::connected("nest-c")?;
    let root = Supervisor::new(slow()).child(nested_on(&node_a)?);
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
    let (_a, node_a) = TestNode::connected("nest-d")?;
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
    let unknown: SupervisedRef<Tally> = root.child_supervisor("nested").child_ref("tally");
    match unknown.call(1) {
        Err(CallError::NotRunning(id, why)) if id == "tally" => check!(
            why.contains("nested") && why.contains("no child has this id"),
            "{why}"
        ),
        other => return Err(format!("child_ref not NotRunning: {other:?}").into()),
    }
    let worker: SupervisedRef<Tally> = root.child_supervisor("worker").child_ref("tally");
    match worker.try_call(1) {
        Err(CallError::NotHosted(id)) if id == "worker" => {}
        other => return Err(format!("child_ref not NotHosted: {other:?}").into()),
    }
    check_eq!(root.shutdown(), SupervisorExit::Shutdown);
    Ok(())
}

/// The pid and node of `tally`, as the nested supervisor reports them.
fn tally_at(nested: &ChildSupervisorRef) -> Result<(u32, Option<String>), String> {
    let children = nested.which_children().map_err(|e| e.to_string())?;
    let tally = children
        .into_iter()
        .find(|c| c.id == "tally")
        .ok_or("no tally")?;
    Ok((tally.pid.ok_or("tally not running")?, tally.node))
}

/// A `SupervisedRef` from the nested supervisor's handle reaches its child's new
/// process after a SIGKILL of the child, and after A's death the one the nested
/// supervisor restarted on B starts there.
fn a_child_ref_follows_the_child_and_its_supervisor_to_another_node() -> TestResult {
    let (a, node_a) = TestNode::connected("nest-g")?;
    let (_b, _node_b) = TestNode::connected("nest-h")?;
    let root = Supervisor::new(flags()).child(tally_on(&node_a, flags())?);
    let mut root_events = Events::from(root.events());
    let root = SupervisorRef::start(root)?;
    let nested = root.child_supervisor("nested");
    let tally: SupervisedRef<Tally> = nested.child_ref("tally");
    let (first, at) = tally_at(&nested)?;
    check_eq!(at.as_deref(), Some("nest-g"));
    check_eq!(tally.call(1)?, (first, 1));

    // It works in the parent's process only: refused before anything is sent.
    let mut far = Process::actor::<Holder>(()).on(&node_a);
    far.start()?;
    match far
        .actor_ref::<Holder>()
        .call(nested.child_ref("tally").into_async())
    {
        Err(CallError::Node(NodeError::NotAcrossNodes { node, what })) => {
            check_eq!(node, "nest-g");
            check!(what.contains("SupervisedRef"), "{what}");
        }
        other => return Err(format!("to a node, not NotAcrossNodes: {other:?}").into()),
    }
    let mut near = Process::actor::<Holder>(());
    near.start()?;
    match near
        .actor_ref::<Holder>()
        .call(nested.child_ref("tally").into_async())
    {
        Err(CallError::Encode(e)) => check!(e.to_string().contains("parent's process"), "{e}"),
        other => return Err(format!("to a process here, not Encode: {other:?}").into()),
    }
    far.kill()?;
    near.kill()?;

    let mut events = nested.events()?;
    kill(first)?;
    let second = wait_for(&mut events, |e| match e {
        SupervisorEvent::Restarted { id, pid, .. } if id == "tally" => Some(pid),
        _ => None,
    })?;
    check!(second != first, "a new process for tally");
    check_eq!(tally.call(2)?, (second, 2));
    check_eq!(tally.try_call(3)?, (second, 5));

    a.process.kill()?;
    let moved = wait_for(&mut root_events, |e| match e {
        SupervisorEvent::Restarted { id, node, .. } if id == "nested" => Some(node),
        _ => None,
    })?;
    check_eq!(moved.as_deref(), Some("nest-h"));
    let (third, at) = tally_at(&nested)?;
    check_eq!(at.as_deref(), Some("nest-h"));
    check_eq!(tally.call(4)?, (third, 4));
    check_eq!(tally.call_timeout(1, EVENT_TIMEOUT)?, (third, 5));
    tally.cast(10)?;
    check_eq!(tally.try_call(0)?, (third, 15));

    check_eq!(root.shutdown(), SupervisorExit::Shutdown);
    match tally.call(1) {
        Err(CallError::NotRunning(id, why)) if id == "tally" => check!(
            why.contains("nested") && why.contains("its supervisor ended"),
            "{why}"
        ),
        other => return Err(format!("not NotRunning: {other:?}").into()),
    }
    Ok(())
}

/// Between two incarnations of the child, or of the nested supervisor, `try_call`
/// says `Restarting` at once and `call_timeout` gives up with `Timeout`.
fn a_child_ref_between_incarnations_says_restarting() -> TestResult {
    let (a, node_a) = TestNode::connected("nest-i")?;
    let root = Supervisor::new(slow()).child(tally_on(&node_a, slow())?);
    let mut root_events = Events::from(root.events());
    let root = SupervisorRef::start(root)?;
    let nested = root.child_supervisor("nested");
    let tally: SupervisedRef<Tally> = nested.child_ref("tally");
    let (pid, _) = tally_at(&nested)?;
    check_eq!(tally.try_call(1)?, (pid, 1));
    let restarting = |out: Result<(u32, u64), CallError>| match out {
        Err(CallError::Restarting(id)) if id == "tally" => Ok(()),
        other => Err(format!("not Restarting: {other:?}")),
    };
    let wait = Duration::from_millis(300);

    // The child restarts, the nested supervisor runs.
    let mut events = nested.events()?;
    kill(pid)?;
    wait_for(&mut events, |e| match e {
        SupervisorEvent::Restarting { id, .. } if id == "tally" => Some(()),
        _ => None,
    })?;
    restarting(tally.try_call(1))?;
    check_eq!(tally.call_timeout(1, wait), Err(CallError::Timeout(wait)));

    // The nested supervisor restarts.
    a.process.kill()?;
    wait_for(&mut root_events, |e| match e {
        SupervisorEvent::Restarting { id, .. } if id == "nested" => Some(()),
        _ => None,
    })?;
    restarting(tally.try_call(1))?;
    check_eq!(tally.call_timeout(1, wait), Err(CallError::Timeout(wait)));
    check_eq!(root.shutdown(), SupervisorExit::Shutdown);
    Ok(())
}

/// `join` waits through the nested supervisor's restart on another node and
/// returns once it is terminated, once its parent shuts down, once its parent gives
/// up, once it ends as a temporary child; at once for an id its parent has not.
fn join_returns_once_the_nested_supervisor_is_gone() -> TestResult {
    let (a, node_a) = TestNode::connected("nest-j")?;
    let (b, node_b) = TestNode::connected("nest-k")?;
    let root = Supervisor::new(flags()).child(tally_on(&node_a, flags())?);
    let mut root_events = Events::from(root.events());
    let root = SupervisorRef::start(root)?;
    let nested = root.child_supervisor("nested");
    let join = |nested: &ChildSupervisorRef| {
        let nested = nested.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(nested.join()));
        rx
    };

    let joined = join(&nested);
    a.process.kill()?;
    let moved = wait_for(&mut root_events, |e| match e {
        SupervisorEvent::Restarted { id, node, .. } if id == "nested" => Some(node),
        _ => None,
    })?;
    check_eq!(moved.as_deref(), Some("nest-k"));
    check_eq!(tally_at(&nested)?.1, Some("nest-k".to_string()));
    check!(
        joined.try_recv().is_err(),
        "join returned across a restart of the nested supervisor"
    );
    root.terminate_child("nested")?;
    check_eq!(
        joined.recv_timeout(EVENT_TIMEOUT)?,
        SupervisorExit::Shutdown
    );

    root.restart_child("nested")?;
    let joined = join(&nested);
    check_eq!(tally_at(&nested)?.1, Some("nest-k".to_string()));
    check!(joined.try_recv().is_err(), "join returned while it runs");
    check_eq!(root.shutdown(), SupervisorExit::Shutdown);
    check_eq!(
        joined.recv_timeout(EVENT_TIMEOUT)?,
        SupervisorExit::Shutdown
    );
    check_eq!(nested.join(), SupervisorExit::Shutdown);

    // A parent that may not restart it gives up at its node's death.
    let brittle = SupervisorFlags {
        intensity: RestartIntensity {
            max_restarts: 0,
            within: Duration::from_secs(60),
        },
        ..flags()
    };
    let root = SupervisorRef::start(Supervisor::new(brittle).child(tally_on(&node_b, flags())?))?;
    let nested = root.child_supervisor("nested");
    check_eq!(tally_at(&nested)?.1, Some("nest-k".to_string()));
    let joined = join(&nested);
    check_eq!(
        root.child_supervisor("nope").join(),
        SupervisorExit::Shutdown
    );
    check!(joined.try_recv().is_err(), "join returned while it runs");
    b.process.kill()?;
    check_eq!(
        joined.recv_timeout(EVENT_TIMEOUT)?,
        SupervisorExit::IntensityExceeded
    );
    check_eq!(root.join(), SupervisorExit::IntensityExceeded);

    // A temporary one is not restarted: its end is how its process ended.
    let (c, node_c) = TestNode::connected("nest-l")?;
    let mut temporary = tally_on(&node_c, flags())?;
    temporary.restart = multiproc::Restart::Temporary;
    let root = SupervisorRef::start(Supervisor::new(flags()).child(temporary))?;
    let nested = root.child_supervisor("nested");
    check_eq!(tally_at(&nested)?.1, Some("nest-l".to_string()));
    let joined = join(&nested);
    c.process.kill()?;
    check_eq!(
        joined.recv_timeout(EVENT_TIMEOUT)?,
        SupervisorExit::Lost {
            reason: ExitReason::NodeDown {
                node: "nest-l".to_string()
            }
        }
    );
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
        trial(
            "a_child_ref_follows_the_child_and_its_supervisor_to_another_node",
            a_child_ref_follows_the_child_and_its_supervisor_to_another_node,
        ),
        trial(
            "a_child_ref_between_incarnations_says_restarting",
            a_child_ref_between_incarnations_says_restarting,
        ),
        trial(
            "join_returns_once_the_nested_supervisor_is_gone",
            join_returns_once_the_nested_supervisor_is_gone,
        ),
        trial("bad_input_is_refused_typed", bad_input_is_refused_typed),
    ]);
}
