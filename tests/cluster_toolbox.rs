//! The rest of the synchronization toolbox across nodes: `RLock`, `Semaphore`,
//! `BoundedSemaphore`, `Condition` and `Barrier` used by processes placed on real
//! node processes on loopback (this test program in node mode), through the root
//! that placed them, checked against the root's side; their errors, and what a far
//! holder's death (its process killed, or its node) does to each.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::Duration;

use common::node::TestNode;
use common::{TestResult, trial};
use multiproc::blocking::Lock;
use multiproc::blocking::node::NodeError;
use multiproc::blocking::{
    Barrier, BoundedSemaphore, Condition, Event, Process, Queue, RLock, Semaphore,
};
use multiproc::{Actor, BarrierBroken, BoxError, CallError, ExitReason, Misuse, SyncError};
use serde::{Deserialize, Serialize};

type BoxResult = Result<(), Box<dyn std::error::Error>>;

/// How long a test waits for what should come at once.
const SOON: Duration = Duration::from_secs(10);
/// A wait that is meant to run out.
const SHORT: Duration = Duration::from_millis(50);

// ---- entry points, run on a node ----

/// Takes the lock twice (it is re-entrant for its owner), reports whether another
/// thread of this process could take it too, says it holds it, and holds it until
/// killed.
fn holds_rlock(lock: RLock, reports: Queue<String>, holding: Event) -> BoxResult {
    reports.put(&format!("{:?}", lock.acquire(true, Some(SOON))), true, None)?;
    reports.put(&format!("{:?}", lock.acquire(false, None)), true, None)?;
    let other = {
        let lock = lock.clone();
        std::thread::spawn(move || format!("{:?}", lock.acquire(false, None)))
            .join()
            .map_err(|_| "the other thread panicked")?
    };
    reports.put(&other, true, None)?;
    // Once of twice: still held.
    lock.release()?;
    holding.set()?;
    multiproc::blocking::wait_for_stop();
    Ok(())
}

/// Releases a lock it does not own, and reports how that went.
fn releases_an_rlock(lock: RLock, reports: Queue<String>) -> BoxResult {
    reports.put(&format!("{:?}", lock.release()), true, None)?;
    Ok(())
}

/// Takes both permits of `sem` and the one of `bounded`, over-releases `bounded`
/// first, reports the values and the refusal, says it holds them, and holds them
/// until its node is killed.
fn takes_permits(
    sem: Semaphore,
    bounded: BoundedSemaphore,
    reports: Queue<String>,
    holding: Event,
) -> BoxResult {
    reports.put(&format!("{:?}", bounded.release()), true, None)?;
    for _ in 0..2 {
        reports.put(&format!("{:?}", sem.acquire(true, Some(SOON))), true, None)?;
    }
    reports.put(&format!("{:?}", sem.get_value()), true, None)?;
    reports.put(
        &format!("{:?}", bounded.acquire(true, Some(SOON))),
        true,
        None,
    )?;
    reports.put(&format!("{:?}", bounded.get_value()), true, None)?;
    holding.set()?;
    multiproc::blocking::wait_for_stop();
    Ok(())
}

/// Notifies a waiter of the root, with the lock; then, without it, reports the
/// refusal.
fn notifies(cond: Condition, reports: Queue<String>) -> BoxResult {
    if !cond.acquire(true, Some(SOON))? {
        return Err("the condition's lock never came".into());
    }
    cond.notify_all()?;
    cond.release()?;
    reports.put(&format!("{:?}", cond.notify(1)), true, None)?;
    Ok(())
}

/// Waits for the root's notification (through `wait_for`), after a wait that runs
/// out; reports both; then holds the lock until killed.
fn waits_then_holds(cond: Condition, reports: Queue<String>, waiting: Event) -> BoxResult {
    if !cond.acquire(true, Some(SOON))? {
        return Err("the condition's lock never came".into());
    }
    reports.put(&format!("{:?}", cond.wait(Some(SHORT))), true, None)?;
    // Still holding the lock: the root cannot take it before this waits.
    waiting.set()?;
    let mut asked = 0;
    let woken = cond.wait_for(
        || {
            asked += 1;
            asked > 1
        },
        Some(SOON),
    );
    reports.put(&format!("{woken:?}"), true, None)?;
    multiproc::blocking::wait_for_stop();
    Ok(())
}

/// One party of a barrier: passes once with the root, then finds it aborted, then
/// (after the root's reset) times out alone; reports each.
fn party(barrier: Barrier, reports: Queue<String>, go: Event) -> BoxResult {
    let report = |s: String| reports.put(&s, true, None);
    report(format!("{:?}", barrier.wait(Some(SOON))))?;
    if !go.wait(Some(SOON))? {
        return Err("never told to go on".into());
    }
    report(format!("{:?}", barrier.wait(Some(SOON))))?;
    report(format!("{:?}", barrier.broken()))?;
    barrier.reset()?;
    report(format!("{:?}", barrier.wait(Some(SHORT))))?;
    report(format!("{:?}", barrier.parties()))?;
    Ok(())
}

/// A party that waits until killed.
fn waits_for_ever(barrier: Barrier) -> BoxResult {
    barrier.wait(None)?;
    Ok(())
}

/// An actor placed on a node that gets handles in its messages.
struct Keeper;

#[derive(Debug, Serialize, Deserialize)]
enum KeeperMsg {
    /// Puts twice the number in the queue.
    Double(Queue<u64>, u64),
    /// Takes the lock and keeps it; sets the event once it has it.
    Take(Lock, Event),
    /// A one-machine object: refused before it leaves.
    Keep(multiproc::Value<u64>),
}

impl Actor for Keeper {
    type Args = ();
    type Msg = KeeperMsg;
    type Reply = String;

    async fn start((): ()) -> Result<Self, BoxError> {
        Ok(Keeper)
    }

    async fn handle(&mut self, msg: KeeperMsg) -> String {
        match msg {
            KeeperMsg::Double(q, n) => {
                format!("{:?}", q.as_async().put(&(2 * n), true, Some(SOON)).await)
            }
            KeeperMsg::Take(lock, taken) => {
                let took = lock.as_async().acquire(true, Some(SOON)).await;
                let said = taken.as_async().set().await;
                format!("{took:?} {said:?}")
            }
            KeeperMsg::Keep(_) => "kept".to_string(),
        }
    }
}

multiproc::register_actor!(Keeper);

/// A local child of the root with a placed `Keeper`'s handle, and no session with
/// its node: sends it a queue (a call, then a cast), a lock and an event, and a
/// `Value`; reports each answer.
fn sends_handles_to_the_keeper(
    keeper: multiproc::ActorRef<Keeper>,
    q: Queue<u64>,
    lock: Lock,
    taken: Event,
    reports: Queue<String>,
) -> BoxResult {
    let keeper = multiproc::blocking::ActorRef::from(keeper);
    let report = |s: String| reports.put(&s, true, None);
    report(format!(
        "{:?}",
        keeper.call(KeeperMsg::Double(q.clone(), 10))
    ))?;
    keeper.cast(KeeperMsg::Double(q.clone(), 11))?;
    report(format!("{:?}", keeper.call(KeeperMsg::Take(lock, taken))))?;
    let refused = match keeper.call(KeeperMsg::Keep(multiproc::Value::new(1)?)) {
        Err(CallError::Node(NodeError::NotAcrossNodes { what, .. })) => {
            format!("NotAcrossNodes: {what}")
        }
        other => format!("{other:?}"),
    };
    report(refused)?;
    Ok(())
}
multiproc::register!(holds_rlock);
multiproc::register!(sends_handles_to_the_keeper);
multiproc::register!(releases_an_rlock);
multiproc::register!(takes_permits);
multiproc::register!(notifies);
multiproc::register!(waits_then_holds);
multiproc::register!(party);
multiproc::register!(waits_for_ever);

/// The next `n` reports.
fn reports(q: &Queue<String>, n: usize) -> Result<Vec<String>, SyncError> {
    (0..n).map(|_| q.get(true, Some(SOON))).collect()
}

fn expect_owner_died(got: Result<bool, SyncError>) -> TestResult {
    match got {
        Err(SyncError::OwnerDied) => Ok(()),
        other => Err(format!("expected OwnerDied, got {other:?}").into()),
    }
}

// ---- tests ----

fn an_rlock_is_owned_by_its_far_thread_and_freed_when_it_is_killed() -> TestResult {
    let (_n, node) = TestNode::connected("rl")?;
    let (lock, q, holding) = (RLock::new()?, Queue::<String>::new(0)?, Event::new()?);
    // Held here: a far release is the non-owner's error, as here.
    check!(lock.acquire(false, None)?, "a new lock is free");
    let mut r = Process::new(releases_an_rlock, (lock.clone(), q.clone())).on(&node);
    r.start()?;
    check_eq!(
        reports(&q, 1)?,
        vec![format!(
            "{:?}",
            Err::<(), _>(SyncError::Misuse(Misuse::NotOwner))
        )]
    );
    check_eq!(r.join()?, ExitReason::Normal);
    lock.release()?;
    let mut p = Process::new(holds_rlock, (lock.clone(), q.clone(), holding.clone())).on(&node);
    p.start()?;
    // Taken, again by its owner, not by another thread of its process.
    check_eq!(reports(&q, 3)?, vec!["Ok(true)", "Ok(true)", "Ok(false)"]);
    check!(holding.wait(Some(SOON))?, "the far owner never let go once");
    check!(!lock.acquire(false, None)?, "taken here while held there");
    check!(
        matches!(lock.release(), Err(SyncError::Misuse(Misuse::NotOwner))),
        "released here though held there"
    );
    p.kill()?;
    check_eq!(p.join()?, ExitReason::Signaled(9));
    expect_owner_died(lock.acquire(true, Some(SOON)))?;
    lock.release()?;
    check!(lock.acquire(false, None)?, "free, and told once");
    lock.release()?;
    Ok(())
}

fn semaphore_permits_count_across_a_node_and_come_back_with_it() -> TestResult {
    let (n, node) = TestNode::connected("se")?;
    let (sem, bounded) = (Semaphore::new(2)?, BoundedSemaphore::new(1)?);
    let (q, holding) = (Queue::<String>::new(0)?, Event::new()?);
    let mut p = Process::new(
        takes_permits,
        (sem.clone(), bounded.clone(), q.clone(), holding.clone()),
    )
    .on(&node);
    p.start()?;
    let over = format!(
        "{:?}",
        Err::<(), _>(SyncError::Misuse(Misuse::ReleasedTooManyTimes))
    );
    check_eq!(
        reports(&q, 6)?,
        vec![
            over.as_str(),
            "Ok(true)",
            "Ok(true)",
            "Ok(0)",
            "Ok(true)",
            "Ok(0)"
        ]
    );
    check!(holding.wait(Some(SOON))?, "the node never took its permits");
    check!(!sem.acquire(false, None)?, "a permit the node holds");
    check!(!bounded.acquire(false, None)?, "a permit the node holds");
    // A release here gives one back, as any process may.
    sem.release()?;
    check_eq!(sem.get_value()?, 1);
    check!(sem.acquire(false, None)?, "the permit released here");
    n.process.kill()?;
    // The node's permits come back as a dead holder's: the next acquirer is told.
    expect_owner_died(sem.acquire(true, Some(SOON)))?;
    expect_owner_died(bounded.acquire(true, Some(SOON)))?;
    check!(
        matches!(p.join()?, ExitReason::NodeDown { .. }),
        "the placed process died with its node"
    );
    bounded.release()?;
    check!(
        matches!(
            bounded.release(),
            Err(SyncError::Misuse(Misuse::ReleasedTooManyTimes))
        ),
        "the bounded one is back to its value, no further"
    );
    Ok(())
}

fn a_condition_waits_and_notifies_across_a_node() -> TestResult {
    let (_n, node) = TestNode::connected("co")?;
    let (cond, q, waiting) = (Condition::new()?, Queue::<String>::new(0)?, Event::new()?);
    // The root waits; the node notifies (it gets the lock only once the root sleeps).
    check!(cond.acquire(true, None)?, "a new condition's lock is free");
    let mut p = Process::new(notifies, (cond.clone(), q.clone())).on(&node);
    p.start()?;
    check!(cond.wait(Some(SOON))?, "never notified from the node");
    cond.release()?;
    check_eq!(
        reports(&q, 1)?,
        vec![format!(
            "{:?}",
            Err::<(), _>(SyncError::Misuse(Misuse::NotHeld))
        )]
    );
    check_eq!(p.join()?, ExitReason::Normal);
    // The node waits; the root notifies.
    let mut p =
        Process::new(waits_then_holds, (cond.clone(), q.clone(), waiting.clone())).on(&node);
    p.start()?;
    check_eq!(reports(&q, 1)?, vec!["Ok(false)"]);
    check!(waiting.wait(Some(SOON))?, "the node never came to wait");
    check!(
        cond.acquire(true, Some(SOON))?,
        "the waiter gave the lock up"
    );
    cond.notify(1)?;
    cond.release()?;
    check_eq!(reports(&q, 1)?, vec!["Ok(true)"]);
    // It holds the lock again; killed, it leaves it as a dead holder's.
    check!(!cond.acquire(false, None)?, "taken here while held there");
    p.kill()?;
    check_eq!(p.join()?, ExitReason::Signaled(9));
    expect_owner_died(cond.acquire(true, Some(SOON)))?;
    cond.release()?;
    Ok(())
}

fn a_barrier_has_a_party_at_the_root_and_one_on_a_node() -> TestResult {
    let (_n, node) = TestNode::connected("ba")?;
    let (barrier, q, go) = (Barrier::new(2)?, Queue::<String>::new(0)?, Event::new()?);
    let mut p = Process::new(party, (barrier.clone(), q.clone(), go.clone())).on(&node);
    p.start()?;
    let mine = barrier.wait(Some(SOON))?;
    let theirs = reports(&q, 1)?.remove(0);
    check_eq!(theirs, format!("Ok({})", 1 - mine));
    check_eq!(barrier.n_waiting()?, 0);
    // Aborted here, before or while the node waits: it fails there.
    barrier.abort()?;
    go.set()?;
    let broken = |why| format!("{:?}", Err::<usize, _>(SyncError::BrokenBarrier(why)));
    check_eq!(
        reports(&q, 2)?,
        vec![broken(BarrierBroken::Aborted), "Ok(true)".into()]
    );
    // Reset there; its lone wait then runs out, which breaks it for all.
    check_eq!(
        reports(&q, 2)?,
        vec![broken(BarrierBroken::TimedOut), "Ok(2)".into()]
    );
    check!(barrier.broken()?, "a wait that ran out there broke it here");
    check_eq!(p.join()?, ExitReason::Normal);
    barrier.reset()?;
    check!(!barrier.broken()?, "whole again");
    // A far party killed while it waits breaks it, as a dead party here does
    // (a third party never comes: the root's wait cannot pass).
    let barrier = Barrier::new(3)?;
    let mut p = Process::new(waits_for_ever, barrier.clone()).on(&node);
    p.start()?;
    // Nothing tells of its arrival but the barrier's count: polled, bounded.
    let deadline = std::time::Instant::now() + SOON;
    while barrier.n_waiting()? == 0 {
        check!(
            std::time::Instant::now() < deadline,
            "the far party never came"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    p.kill()?;
    match barrier.wait(Some(SOON)) {
        Err(SyncError::BrokenBarrier(BarrierBroken::PartyDied)) => {}
        other => return Err(format!("expected PartyDied, got {other:?}").into()),
    }
    check_eq!(p.join()?, ExitReason::Signaled(9));
    Ok(())
}

fn handles_in_a_message_to_a_placed_actor_work_there() -> TestResult {
    let (_n, node) = TestNode::connected("me")?;
    let mut p = Process::actor::<Keeper>(()).on(&node);
    p.start()?;
    let keeper = p.actor_ref::<Keeper>();
    let q = Queue::<u64>::new(0)?;
    for x in [1, 2] {
        check_eq!(keeper.call(KeeperMsg::Double(q.clone(), x))?, "Ok(())");
        check_eq!(q.get(true, Some(SOON))?, 2 * x);
    }
    let (lock, taken) = (Lock::new()?, Event::new()?);
    check_eq!(
        keeper.call(KeeperMsg::Take(lock.clone(), taken.clone()))?,
        "Ok(true) Ok(())"
    );
    check!(taken.is_set()?, "set from the node");
    check!(!lock.acquire(false, None)?, "taken here while held there");
    match keeper.call(KeeperMsg::Keep(multiproc::Value::new(1)?)) {
        Err(CallError::Node(NodeError::NotAcrossNodes { what, .. })) => {
            check!(what.contains("Value"), "{what}");
        }
        other => return Err(format!("expected NotAcrossNodes, got {other:?}").into()),
    }
    // The actor's process holds it: killed, it leaves it as a dead holder's.
    p.kill()?;
    check_eq!(p.join()?, ExitReason::Signaled(9));
    expect_owner_died(lock.acquire(true, Some(SOON)))?;
    lock.release()?;
    Ok(())
}

/// A local child of the root, with the handle of an actor the root placed, sends it
/// a queue, a lock and an event in messages: they work there, exported by the root
/// (which holds the session) to the actor's process; the actor killed holding the
/// lock, the root's next acquire gets `OwnerDied`; a `Value` is refused, typed.
fn handles_in_a_message_from_a_local_child_work_there() -> TestResult {
    let (_n, node) = TestNode::connected("mf")?;
    let mut p = Process::actor::<Keeper>(()).on(&node);
    p.start()?;
    let keeper = p.actor_ref::<Keeper>().as_async().clone();
    let (q, lock, taken) = (Queue::<u64>::new(0)?, Lock::new()?, Event::new()?);
    let reports = Queue::<String>::new(0)?;
    let mut child = Process::new(
        sends_handles_to_the_keeper,
        (
            keeper,
            q.clone(),
            lock.clone(),
            taken.clone(),
            reports.clone(),
        ),
    );
    child.start()?;
    check_eq!(reports.get(true, Some(SOON))?, "Ok(\"Ok(())\")");
    check_eq!(q.get(true, Some(SOON))?, 20);
    // The cast, and the call after it, in that order.
    check_eq!(q.get(true, Some(SOON))?, 22);
    check_eq!(reports.get(true, Some(SOON))?, "Ok(\"Ok(true) Ok(())\")");
    let refused = reports.get(true, Some(SOON))?;
    check!(
        refused.starts_with("NotAcrossNodes: ") && refused.contains("Value"),
        "{refused}"
    );
    check_eq!(child.join()?, ExitReason::Normal);
    check!(taken.is_set()?, "set from the node");
    check!(!lock.acquire(false, None)?, "taken here while held there");
    p.kill()?;
    check_eq!(p.join()?, ExitReason::Signaled(9));
    expect_owner_died(lock.acquire(true, Some(SOON)))?;
    lock.release()?;
    Ok(())
}

fn main() {
    // Nodes and their processes come and go: bounded, whatever a regression does.
    common::cgroup::confine("cluster_toolbox");
    // One at a time: a process's connections to nodes are shared.
    common::run_serial(vec![
        trial(
            "an_rlock_is_owned_by_its_far_thread_and_freed_when_it_is_killed",
            an_rlock_is_owned_by_its_far_thread_and_freed_when_it_is_killed,
        ),
        trial(
            "semaphore_permits_count_across_a_node_and_come_back_with_it",
            semaphore_permits_count_across_a_node_and_come_back_with_it,
        ),
        trial(
            "a_condition_waits_and_notifies_across_a_node",
            a_condition_waits_and_notifies_across_a_node,
        ),
        trial(
            "a_barrier_has_a_party_at_the_root_and_one_on_a_node",
            a_barrier_has_a_party_at_the_root_and_one_on_a_node,
        ),
        trial(
            "handles_in_a_message_to_a_placed_actor_work_there",
            handles_in_a_message_to_a_placed_actor_work_there,
        ),
        trial(
            "handles_in_a_message_from_a_local_child_work_there",
            handles_in_a_message_from_a_local_child_work_there,
        ),
    ]);
}
