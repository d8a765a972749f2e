//! A root's queue or lock held on a node as a far handle, passed on from there: back
//! to the root's tree (in a message to an actor of it, or a queue item), where it is
//! the root's own primitive again; and to an actor of the node's own tree, where it
//! works through the same gateway, with the same death handling. Real node
//! processes on loopback (this test program in node mode).

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::Duration;

use common::node::TestNode;
use common::{TestResult, trial};
use multiproc::blocking::node::NodeError;
use multiproc::blocking::{Event, Lock, Process, Queue};
use multiproc::{Actor, BoxError, CallError, ExitReason, SyncError};
use serde::{Deserialize, Serialize};

type BoxResult = Result<(), Box<dyn std::error::Error>>;

/// How long a test waits for what should come at once.
const SOON: Duration = Duration::from_secs(10);

/// An actor of the root's tree that gets handles sent home from a node.
struct Home;

#[derive(Debug, Serialize, Deserialize)]
enum HomeMsg {
    /// Takes an item from the queue.
    Take(Queue<u64>),
    /// Tries the lock without waiting; releases it if it got it.
    Try(Lock),
    /// A one-machine object of the node: refused before it leaves.
    Keep(multiproc::Value<u64>),
    KeepArray(multiproc::Array<u8>),
}

impl Actor for Home {
    type Args = ();
    type Msg = HomeMsg;
    type Reply = String;

    async fn start((): ()) -> Result<Self, BoxError> {
        Ok(Home)
    }

    async fn handle(&mut self, msg: HomeMsg) -> String {
        match msg {
            HomeMsg::Take(q) => format!("{:?}", q.as_async().get(true, Some(SOON)).await),
            HomeMsg::Try(lock) => {
                let got = lock.as_async().acquire(false, None).await;
                if let Ok(true) = got {
                    let _ = lock.as_async().release().await;
                }
                format!("{got:?}")
            }
            HomeMsg::Keep(_) | HomeMsg::KeepArray(_) => "kept".to_string(),
        }
    }
}

multiproc::register_actor!(Home);

/// An actor that a process placed on a node starts on that node, in its own tree.
struct Holder;

#[derive(Debug, Serialize, Deserialize)]
enum HolderMsg {
    /// Puts the number in the queue, then takes the lock and keeps it.
    Hold(Lock, Queue<u64>, u64),
}

impl Actor for Holder {
    type Args = ();
    type Msg = HolderMsg;
    type Reply = String;

    async fn start((): ()) -> Result<Self, BoxError> {
        Ok(Holder)
    }

    async fn handle(&mut self, msg: HolderMsg) -> String {
        match msg {
            HolderMsg::Hold(lock, q, n) => {
                let put = q.as_async().put(&n, true, Some(SOON)).await;
                let took = lock.as_async().acquire(true, Some(SOON)).await;
                format!("{put:?} {took:?}")
            }
        }
    }
}

multiproc::register_actor!(Holder);

fn refusal(got: Result<String, CallError>) -> String {
    match got {
        Err(CallError::Node(NodeError::NotAcrossNodes { what, .. })) => {
            format!("NotAcrossNodes: {what}")
        }
        other => format!("{other:?}"),
    }
}

// ---- entry points, run on a node ----

/// Puts into the root's queue, then sends it home to `home`, which takes the item;
/// takes the root's lock and sends it home, where it is held, then releases it and
/// sends it again; puts the lock into `back`; sends a `Value` and an `Array`.
/// Reports each answer.
fn sends_home(
    home: multiproc::ActorRef<Home>,
    q: Queue<u64>,
    lock: Lock,
    back: Queue<Lock>,
    reports: Queue<String>,
) -> BoxResult {
    let home = multiproc::blocking::ActorRef::from(home);
    let report = |s: String| reports.put(&s, true, None);
    q.put(&5, true, None)?;
    report(format!("{:?}", home.call(HomeMsg::Take(q.clone()))))?;
    check_true(lock.acquire(true, Some(SOON))?)?;
    report(format!("{:?}", home.call(HomeMsg::Try(lock.clone()))))?;
    lock.release()?;
    report(format!("{:?}", home.call(HomeMsg::Try(lock.clone()))))?;
    back.put(&lock, true, None)?;
    report(refusal(home.call(HomeMsg::Keep(multiproc::Value::new(1)?))))?;
    report(refusal(home.call(HomeMsg::KeepArray(
        multiproc::Array::from_slice(&[1, 2])?,
    ))))?;
    Ok(())
}

fn check_true(b: bool) -> BoxResult {
    if b {
        Ok(())
    } else {
        Err("not acquired".into())
    }
}

/// Starts a `Holder` in its own tree here and hands it the root's lock and queue;
/// reports its answer; kills it once `kill` is set, reports how it ended, and stays
/// until `done` is set (so that only the holder's end frees the lock).
fn hands_down(
    lock: Lock,
    q: Queue<u64>,
    reports: Queue<String>,
    kill: Event,
    done: Event,
) -> BoxResult {
    let mut holder = Process::actor::<Holder>(());
    holder.start()?;
    let held = holder
        .actor_ref::<Holder>()
        .call(HolderMsg::Hold(lock, q, 7));
    reports.put(&format!("{held:?}"), true, None)?;
    kill.wait(None)?;
    holder.kill()?;
    reports.put(&format!("{:?}", holder.join()?), true, None)?;
    done.wait(None)?;
    Ok(())
}

multiproc::register!(sends_home);
multiproc::register!(hands_down);

fn expect_owner_died(got: Result<bool, SyncError>) -> TestResult {
    match got {
        Err(SyncError::OwnerDied) => Ok(()),
        other => Err(format!("expected OwnerDied, got {other:?}").into()),
    }
}

// ---- tests ----

/// The root's queue and lock, sent home from a node to an actor of the root's tree,
/// are the root's own there: the actor takes the item the node put, finds the lock
/// held while the node holds it and takes it once released; put into a root queue,
/// the lock comes out as the root's lock. A `Value` and an `Array` of the node are
/// refused, typed.
fn a_root_queue_and_lock_sent_home_are_the_roots_own() -> TestResult {
    let (_n, node) = TestNode::connected("fh")?;
    let mut home = Process::actor::<Home>(());
    home.start()?;
    let (q, lock) = (Queue::<u64>::new(0)?, Lock::new()?);
    let (back, reports) = (Queue::<Lock>::new(0)?, Queue::<String>::new(0)?);
    let mut p = Process::new(
        sends_home,
        (
            home.actor_ref::<Home>().as_async().clone(),
            q.clone(),
            lock.clone(),
            back.clone(),
            reports.clone(),
        ),
    )
    .on(&node);
    p.start()?;
    check_eq!(reports.get(true, Some(SOON))?, "Ok(\"Ok(5)\")");
    check_eq!(reports.get(true, Some(SOON))?, "Ok(\"Ok(false)\")");
    check_eq!(reports.get(true, Some(SOON))?, "Ok(\"Ok(true)\")");
    let came = back.get(true, Some(SOON))?;
    check_eq!(came, lock);
    check!(came.acquire(false, None)?, "the lock came home free");
    check!(
        !lock.acquire(false, None)?,
        "the same lock, taken through it"
    );
    came.release()?;
    for one_machine in ["Value", "Array"] {
        let refused = reports.get(true, Some(SOON))?;
        check!(
            refused.starts_with("NotAcrossNodes: ") && refused.contains(one_machine),
            "{refused}"
        );
    }
    check_eq!(p.join()?, ExitReason::Normal);
    check!(q.empty()?, "the item was taken at home");
    home.kill()?;
    home.join()?;
    Ok(())
}

/// The root's lock and queue, handed by a placed process to an actor it started on
/// its node: the actor puts into the queue and holds the lock there; killed, the
/// root's next acquire gets `OwnerDied` while the placed process still runs.
fn a_far_lock_handed_down_on_its_node_works_and_dies_with_its_holder() -> TestResult {
    let (_n, node) = TestNode::connected("fd")?;
    let (q, lock, reports) = (
        Queue::<u64>::new(0)?,
        Lock::new()?,
        Queue::<String>::new(0)?,
    );
    let (kill, done) = (Event::new()?, Event::new()?);
    let mut p = Process::new(
        hands_down,
        (
            lock.clone(),
            q.clone(),
            reports.clone(),
            kill.clone(),
            done.clone(),
        ),
    )
    .on(&node);
    p.start()?;
    check_eq!(reports.get(true, Some(SOON))?, "Ok(\"Ok(()) Ok(true)\")");
    check_eq!(q.get(true, Some(SOON))?, 7);
    check!(!lock.acquire(false, None)?, "held by the actor on the node");
    kill.set()?;
    check_eq!(reports.get(true, Some(SOON))?, "Signaled(9)");
    expect_owner_died(lock.acquire(true, Some(SOON)))?;
    lock.release()?;
    check!(p.is_alive(), "its placed process still runs");
    done.set()?;
    check_eq!(p.join()?, ExitReason::Normal);
    Ok(())
}

fn main() {
    // Nodes and their processes come and go: bounded, whatever a regression does.
    common::cgroup::confine("cluster_farhome");
    // One at a time: a process's connections to nodes are shared.
    common::run_serial(vec![
        trial(
            "a_root_queue_and_lock_sent_home_are_the_roots_own",
            a_root_queue_and_lock_sent_home_are_the_roots_own,
        ),
        trial(
            "a_far_lock_handed_down_on_its_node_works_and_dies_with_its_holder",
            a_far_lock_handed_down_on_its_node_works_and_dies_with_its_holder,
        ),
    ]);
}
