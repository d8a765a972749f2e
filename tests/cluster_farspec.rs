//! Queues and locks of the root in supervised child specs placed on a node: the
//! spec keeps its arguments encoded for a node, and each incarnation there gets the
//! same far handles, exported again at each start. Real node processes on loopback
//! (this test program in node mode), real sessions, real SIGKILL.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::Duration;

use common::node::TestNode;
use common::{TestResult, trial};
use multiproc::blocking::node::NodeError;
use multiproc::blocking::{DynamicSupervisor, Event, Events, Lock, Queue, SupervisorRef};
use multiproc::{
    AdminError, Restart, Supervisor, SupervisorEvent, SupervisorExit, SupervisorFlags, SyncError,
    function_child,
};

/// How long a test waits for what should come at once.
const WAIT: Duration = Duration::from_secs(20);

// ---- entry points, run on a node ----

/// Puts its pid to the root's queue, then waits to be stopped.
fn puts_its_pid(pids: Queue<u32>) -> Result<(), Box<dyn std::error::Error>> {
    pids.put(&std::process::id(), true, None)?;
    multiproc::blocking::wait_for_stop();
    Ok(())
}

/// Once `go` is set, takes the root's lock, says so with its pid, and holds it
/// until killed.
fn holds_the_lock(
    lock: Lock,
    pids: Queue<u32>,
    go: Event,
) -> Result<(), Box<dyn std::error::Error>> {
    if !go.wait(Some(WAIT))? {
        return Err("never told to go".into());
    }
    if !lock.acquire(true, Some(WAIT))? {
        return Err("the lock stayed taken".into());
    }
    pids.put(&std::process::id(), true, None)?;
    multiproc::blocking::wait_for_stop();
    Ok(())
}

fn takes_a_value(_v: multiproc::Value<u64>) {
    multiproc::blocking::wait_for_stop();
}

multiproc::register!(puts_its_pid);
multiproc::register!(holds_the_lock);
multiproc::register!(takes_a_value);

// ---- helpers ----

fn wait_for<T>(
    events: &mut Events,
    mut want: impl FnMut(SupervisorEvent) -> Option<T>,
) -> Result<T, String> {
    loop {
        let event = events
            .recv_timeout(WAIT)
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

fn child_pid(sup: &SupervisorRef, id: &str) -> Result<(Option<String>, Option<u32>), String> {
    let c = sup
        .which_children()
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|c| c.id == id)
        .ok_or(format!("no child {id}"))?;
    Ok((c.node, c.pid))
}

fn expect_value_refused(got: Result<(), AdminError>, id: &str, node: &str) -> TestResult {
    match got {
        Err(AdminError::Start {
            id: refused,
            source: multiproc::Error::Node(NodeError::NotAcrossNodes { what, node: on }),
        }) => {
            check_eq!(refused, id);
            check!(what.contains("Value"), "{what}");
            check_eq!(on, node);
            Ok(())
        }
        other => Err(format!("{id}: expected NotAcrossNodes, got {other:?}").into()),
    }
}

// ---- tests ----

/// A supervised child placed on a node with a root queue in its arguments puts to
/// it; killed there, it is restarted, and its new incarnation puts to the same
/// queue.
fn a_placed_childs_queue_works_across_its_restarts() -> TestResult {
    let (_n, node) = TestNode::connected("fs-a")?;
    let pids = Queue::<u32>::new(0)?;
    let sup = SupervisorRef::start(
        Supervisor::new(SupervisorFlags::default())
            .child(function_child("worker", puts_its_pid, pids.clone())?.on(&node)),
    )?;
    let mut events = sup.events_from_start();
    let first = pids.get(true, Some(WAIT))?;
    check_eq!(
        child_pid(&sup, "worker")?,
        (Some("fs-a".to_string()), Some(first))
    );
    kill(first)?;
    let restarted = wait_for(&mut events, |e| match e {
        SupervisorEvent::Restarted { id, pid, .. } if id == "worker" => Some(pid),
        _ => None,
    })?;
    let second = pids.get(true, Some(WAIT))?;
    check!(second != first, "a new incarnation: {second}");
    check_eq!(restarted, second);
    // Once more: the export outlives each incarnation.
    kill(second)?;
    let third = pids.get(true, Some(WAIT))?;
    check!(third != second, "a third incarnation: {third}");
    check_eq!(sup.shutdown(), SupervisorExit::Shutdown);
    Ok(())
}

/// A lock in a placed child's spec, taken there: its holder SIGKILLed, the root's
/// next acquire gets `OwnerDied`.
fn a_placed_childs_lock_is_freed_when_it_is_killed() -> TestResult {
    let (_n, node) = TestNode::connected("fs-b")?;
    let (lock, pids, go) = (Lock::new()?, Queue::<u32>::new(0)?, Event::new()?);
    go.set()?;
    let args = (lock.clone(), pids.clone(), go.clone());
    let mut spec = function_child("holder", holds_the_lock, args)?.on(&node);
    spec.restart = Restart::Temporary;
    let sup = SupervisorRef::start(Supervisor::new(SupervisorFlags::default()).child(spec))?;
    let pid = pids.get(true, Some(WAIT))?;
    check!(!lock.acquire(false, None)?, "held on the node");
    kill(pid)?;
    match lock.acquire(true, Some(WAIT)) {
        Err(SyncError::OwnerDied) => {}
        other => return Err(format!("expected OwnerDied, got {other:?}").into()),
    }
    lock.release()?;
    check_eq!(sup.shutdown(), SupervisorExit::Shutdown);
    Ok(())
}

/// A dynamic supervisor's placed template: each child gets the queue given to
/// `start_child`; a `Value` is still refused, typed, naming it, and so is one in a
/// static spec placed on a node.
fn a_placed_template_takes_a_queue_and_refuses_a_value() -> TestResult {
    let (_n, node) = TestNode::connected("fs-c")?;
    let pids = Queue::<u32>::new(0)?;
    let template = function_child("job", puts_its_pid, pids.clone())?.on(&node);
    let dynamic = DynamicSupervisor::start(SupervisorFlags::default(), template, None)?;
    let first = dynamic.start_child(&pids)?;
    let second = dynamic.start_child(&pids)?;
    let got = [pids.get(true, Some(WAIT))?, pids.get(true, Some(WAIT))?];
    let sup = dynamic.supervisor();
    for id in [&first, &second] {
        let (on, pid) = child_pid(&sup, id)?;
        check_eq!(on.as_deref(), Some("fs-c"));
        check!(
            got.contains(&pid.ok_or("a pid")?),
            "{id}: {pid:?} not in {got:?}"
        );
    }
    check_eq!(sup.shutdown(), SupervisorExit::Shutdown);

    let value = multiproc::Value::new(1u64)?;
    let values = DynamicSupervisor::start(
        SupervisorFlags::default(),
        function_child("holder", takes_a_value, value.clone())?.on(&node),
        None,
    )?;
    expect_value_refused(values.start_child(&value).map(drop), "holder-1", "fs-c")?;
    check_eq!(values.supervisor().shutdown(), SupervisorExit::Shutdown);
    let sup = SupervisorRef::start(Supervisor::new(SupervisorFlags::default()))?;
    expect_value_refused(
        sup.start_child(function_child("v", takes_a_value, value.clone())?.on(&node)),
        "v",
        "fs-c",
    )?;
    check_eq!(sup.which_children()?.len(), 0);
    check_eq!(sup.shutdown(), SupervisorExit::Shutdown);
    Ok(())
}

/// A supervisor on the node, its child spec holding a root lock and queue: the child
/// takes the lock there; SIGKILLed, the root's next acquire gets `OwnerDied`; the
/// node restarts it, and its new incarnation takes the same lock again.
fn a_node_supervisors_child_holds_a_root_lock() -> TestResult {
    let (_n, node) = TestNode::connected("fs-d")?;
    let (lock, pids, go) = (Lock::new()?, Queue::<u32>::new(0)?, Event::new()?);
    go.set()?;
    let args = (lock.clone(), pids.clone(), go.clone());
    let sup = SupervisorRef::start(
        Supervisor::new(SupervisorFlags::default())
            .child(function_child("holder", holds_the_lock, args)?)
            .on(&node),
    )?;
    check_eq!(sup.node(), Some("fs-d"));
    let mut events = sup.events_from_start();
    let first = pids.get(true, Some(WAIT))?;
    check_eq!(child_pid(&sup, "holder")?.1, Some(first));
    check!(!lock.acquire(false, None)?, "held on the node");
    // Its next incarnation waits: the root is the next acquirer.
    go.clear()?;
    kill(first)?;
    match lock.acquire(true, Some(WAIT)) {
        Err(SyncError::OwnerDied) => {}
        other => return Err(format!("expected OwnerDied, got {other:?}").into()),
    }
    wait_for(&mut events, |e| match e {
        SupervisorEvent::Restarted { id, .. } if id == "holder" => Some(()),
        _ => None,
    })?;
    lock.release()?;
    go.set()?;
    let second = pids.get(true, Some(WAIT))?;
    check!(second != first, "a new incarnation: {second}");
    check!(!lock.acquire(false, None)?, "held again on the node");
    check_eq!(sup.shutdown(), SupervisorExit::Shutdown);
    Ok(())
}

/// A dynamic supervisor on the node: `start_child` with a root queue, the child
/// puts to it; a `Value` is refused, typed, naming it.
fn a_node_dynamic_supervisors_children_take_a_root_queue() -> TestResult {
    let (_n, node) = TestNode::connected("fs-e")?;
    let pids = Queue::<u32>::new(0)?;
    let dynamic = DynamicSupervisor::start_on(
        &node,
        SupervisorFlags::default(),
        function_child("job", puts_its_pid, pids.clone())?,
        None,
    )?;
    let id = dynamic.start_child(&pids)?;
    let pid = pids.get(true, Some(WAIT))?;
    check_eq!(
        child_pid(&dynamic.supervisor(), &id)?,
        (Some("fs-e".to_string()), Some(pid))
    );
    let value = multiproc::Value::new(1u64)?;
    match dynamic.start_child(&value) {
        Err(AdminError::Start {
            source: multiproc::Error::Node(NodeError::NotAcrossNodes { what, node }),
            ..
        }) => {
            check!(what.contains("Value"), "{what}");
            check_eq!(node, "fs-e");
        }
        other => return Err(format!("expected NotAcrossNodes, got {other:?}").into()),
    }
    check_eq!(dynamic.supervisor().shutdown(), SupervisorExit::Shutdown);
    Ok(())
}

/// The process of a supervisor on the node SIGKILLed while its child holds a root
/// lock: no `ChildExited` comes from there, and the lock is freed with the export,
/// `OwnerDied` for the root's next acquire.
fn a_node_supervisors_end_frees_what_its_children_held() -> TestResult {
    let (_n, node) = TestNode::connected("fs-f")?;
    let (lock, pids, go) = (Lock::new()?, Queue::<u32>::new(0)?, Event::new()?);
    go.set()?;
    let args = (lock.clone(), pids.clone(), go.clone());
    let sup = SupervisorRef::start(
        Supervisor::new(SupervisorFlags::default())
            .child(function_child("holder", holds_the_lock, args)?)
            .on(&node),
    )?;
    let pid = pids.get(true, Some(WAIT))?;
    // Its parent there is the process that hosts the supervisor.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = &stat[stat.rfind(')').ok_or("a stat line")? + 2..];
    let host: u32 = after_name.split(' ').nth(1).ok_or("a ppid")?.parse()?;
    check!(!lock.acquire(false, None)?, "held on the node");
    kill(host)?;
    match lock.acquire(true, Some(WAIT)) {
        Err(SyncError::OwnerDied) => {}
        other => return Err(format!("expected OwnerDied, got {other:?}").into()),
    }
    lock.release()?;
    check!(
        matches!(sup.join(), SupervisorExit::Lost { .. }),
        "its end is Lost"
    );
    Ok(())
}

/// A supervisor on the node as a child of one here (`Supervisor::into_child`), its
/// own child holding a root queue: each incarnation of the nested supervisor starts
/// it with the same far queue, restarted here after its process is killed.
fn a_nested_supervisors_child_takes_a_root_queue() -> TestResult {
    let (_n, node) = TestNode::connected("fs-g")?;
    let pids = Queue::<u32>::new(0)?;
    let nested = Supervisor::new(SupervisorFlags::default())
        .child(function_child("worker", puts_its_pid, pids.clone())?)
        .on(&node)
        .into_child("nested")?;
    let sup = SupervisorRef::start(Supervisor::new(SupervisorFlags::default()).child(nested))?;
    let mut events = sup.events_from_start();
    let first = pids.get(true, Some(WAIT))?;
    let (on, host) = child_pid(&sup, "nested")?;
    check_eq!(on.as_deref(), Some("fs-g"));
    kill(host.ok_or("the nested supervisor's pid")?)?;
    wait_for(&mut events, |e| match e {
        SupervisorEvent::Restarted { id, .. } if id == "nested" => Some(()),
        _ => None,
    })?;
    let second = pids.get(true, Some(WAIT))?;
    check!(second != first, "a new incarnation: {second}");
    check_eq!(sup.shutdown(), SupervisorExit::Shutdown);
    Ok(())
}

fn main() {
    common::cgroup::confine("cluster_farspec");
    // One at a time: a process's connections to nodes are shared.
    common::run_serial(vec![
        trial(
            "a_placed_childs_queue_works_across_its_restarts",
            a_placed_childs_queue_works_across_its_restarts,
        ),
        trial(
            "a_placed_childs_lock_is_freed_when_it_is_killed",
            a_placed_childs_lock_is_freed_when_it_is_killed,
        ),
        trial(
            "a_placed_template_takes_a_queue_and_refuses_a_value",
            a_placed_template_takes_a_queue_and_refuses_a_value,
        ),
        trial(
            "a_node_supervisors_child_holds_a_root_lock",
            a_node_supervisors_child_holds_a_root_lock,
        ),
        trial(
            "a_node_dynamic_supervisors_children_take_a_root_queue",
            a_node_dynamic_supervisors_children_take_a_root_queue,
        ),
        trial(
            "a_node_supervisors_end_frees_what_its_children_held",
            a_node_supervisors_end_frees_what_its_children_held,
        ),
        trial(
            "a_nested_supervisors_child_takes_a_root_queue",
            a_nested_supervisors_child_takes_a_root_queue,
        ),
    ]);
}
