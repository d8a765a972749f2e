//! Locks, semaphores, events and queues across real processes, and every way they
//! can be misused or lose a party.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::{Duration, Instant};

use common::{TestResult, trial};
use multiproc::blocking::{
    Barrier, BoundedSemaphore, Condition, Connection, Event, Lock, Process, Queue, RLock,
    Semaphore, pipe,
};
use multiproc::{BarrierBroken, ExitReason, Identity, Misuse, SyncError};
use serde::{Deserialize, Serialize};

/// Acquires the lock, says so on `up`, then holds it until stopped or killed.
fn hold(lock: Lock, mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    lock.acquire(true, None)?;
    up.send(&multiproc::current_process().pid())?;
    multiproc::blocking::wait_for_stop();
    Ok(())
}

fn release(lock: Lock) -> Result<(), SyncError> {
    lock.release()
}

/// Waits for the event, then reports what it saw.
fn await_event(event: Event, mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    up.send(&"waiting")?;
    let set = event.wait(Some(Duration::from_secs(10)))?;
    up.send(&set)?;
    Ok(())
}

/// Blocks in `get` on an empty queue, after saying so.
fn blocked_consumer(q: Queue<u64>, mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    up.send(&multiproc::current_process().pid())?;
    let _ = q.get(true, None)?;
    Ok(())
}

/// Creates a lock here, hands its handle up, and exits.
fn lend_a_lock(mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    up.send(&Lock::new()?)?;
    Ok(())
}

fn put_three(q: Queue<u64>) -> Result<(), SyncError> {
    for i in 1..=3 {
        q.put(&i, true, None)?;
    }
    Ok(())
}

/// Puts `0..n` and exits at once, without waiting for the puts' answers.
fn put_many(q: Queue<u64>, n: u64) -> Result<(), SyncError> {
    for i in 0..n {
        q.put(&i, true, None)?;
    }
    Ok(())
}

/// Creates a queue here, hands its handle up, and exits.
fn lend_a_queue(mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    up.send(&Queue::<u64>::new(0)?)?;
    Ok(())
}
/// Takes the condition's lock, says so, and waits to be notified.
fn await_notify(cond: Condition, mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    cond.acquire(true, None)?;
    up.send(&"waiting")?;
    let notified = cond.wait(Some(Duration::from_secs(10)))?;
    cond.release()?;
    up.send(&notified)?;
    Ok(())
}

/// Waits at the barrier and reports its index.
fn barrier_party(barrier: Barrier, mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    let index = barrier.wait(Some(Duration::from_secs(10)))?;
    up.send(&index)?;
    Ok(())
}

/// A barrier's action: sets the event.
fn set_event(event: Event) -> Result<(), SyncError> {
    event.set()
}

/// Waits at the barrier until killed.
fn wait_at(barrier: Barrier) -> Result<(), SyncError> {
    barrier.wait(None).map(|_| ())
}

/// An item whose decoding, in a process that armed it, says so and never ends: a
/// consumer caught in the middle of a `get`, after the item left the queue and
/// before the caller has it.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Stall(u64);

static STALL: std::sync::Mutex<Option<Connection>> = std::sync::Mutex::new(None);

impl Serialize for Stall {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Stall {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        let armed = STALL.lock().unwrap().take();
        if let Some(mut up) = armed {
            let _ = up.send(&v);
            loop {
                std::thread::park();
            }
        }
        Ok(Stall(v))
    }
}

/// Gets an item and is caught decoding it (see `Stall`).
fn stall_in_get(q: Queue<Stall>, up: Connection) -> Result<(), SyncError> {
    *STALL.lock().unwrap() = Some(up);
    q.get(true, None)?;
    Ok(())
}

/// Gets an item, says which, and never marks it done.
fn take_and_hold(q: Queue<u64>, mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    let v = q.get(true, None)?;
    up.send(&v)?;
    multiproc::blocking::wait_for_stop();
    Ok(())
}

/// Hosts a held lock and a queue, hands them up, and exits when told.
fn host_then_exit(mut chan: Connection) -> Result<(), Box<dyn std::error::Error>> {
    let lock = Lock::new()?;
    lock.acquire(true, None)?;
    chan.send(&(lock, Queue::<u64>::new(0)?, Event::new()?))?;
    let _: String = chan.recv()?;
    Ok(())
}

/// Takes a permit, says so, and holds it until killed.
fn hold_permit(sem: Semaphore, mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    sem.acquire(true, None)?;
    up.send(&multiproc::current_process().pid())?;
    multiproc::blocking::wait_for_stop();
    Ok(())
}

/// Takes the recursive lock twice, says so, and holds it until killed.
fn hold_rlock(lock: RLock, mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    lock.acquire(true, None)?;
    lock.acquire(true, None)?;
    up.send(&multiproc::current_process().pid())?;
    multiproc::blocking::wait_for_stop();
    Ok(())
}

multiproc::register!(
    hold,
    release,
    await_event,
    blocked_consumer,
    lend_a_lock,
    put_three,
    put_many,
    lend_a_queue,
    await_notify,
    barrier_party,
    set_event,
    wait_at,
    stall_in_get,
    take_and_hold,
    host_then_exit,
    hold_permit,
    hold_rlock
);

fn kill(pid: u32) {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
}

fn a_lock_may_be_released_by_another_process_but_not_twice() -> TestResult {
    let lock = Lock::new()?;
    check_eq!(lock.acquire(true, None).unwrap(), true);
    check_eq!(lock.acquire(false, None).unwrap(), false);
    let t = Instant::now();
    check_eq!(
        lock.acquire(true, Some(Duration::from_millis(50))).unwrap(),
        false
    );
    check!(
        t.elapsed() >= Duration::from_millis(50),
        "{:?}",
        t.elapsed()
    );
    let mut p = Process::new(release, lock.clone());
    p.start().unwrap();
    check_eq!(p.join().unwrap(), ExitReason::Normal);
    check_eq!(lock.acquire(false, None).unwrap(), true);
    lock.release().unwrap();
    check!(
        matches!(
            lock.release(),
            Err(SyncError::Misuse(Misuse::ReleasedTooManyTimes))
        ),
        "a second release"
    );
    Ok(())
}

fn an_rlock_is_recursive_and_only_its_owner_releases_it() -> TestResult {
    let lock = RLock::new()?;
    check!(lock.acquire(true, None).unwrap(), "first");
    check!(lock.acquire(true, None).unwrap(), "recursive");
    let other = lock.clone();
    let from_another_thread = std::thread::spawn(move || other.release()).join().unwrap();
    check!(
        matches!(
            from_another_thread,
            Err(SyncError::Misuse(Misuse::NotOwner))
        ),
        "{from_another_thread:?}"
    );
    lock.release().unwrap();
    lock.release().unwrap();
    check!(
        matches!(lock.release(), Err(SyncError::Misuse(_))),
        "not held any more"
    );
    Ok(())
}

fn a_bounded_semaphore_refuses_over_release() -> TestResult {
    let sem = BoundedSemaphore::new(2)?;
    check!(sem.acquire(true, None).unwrap(), "one");
    sem.release().unwrap();
    check!(
        matches!(sem.release(), Err(SyncError::Misuse(_))),
        "over-release"
    );
    Ok(())
}

fn a_dead_holders_lock_goes_to_the_next_acquirer_who_is_told() -> TestResult {
    let lock = Lock::new()?;
    let (mut ours, theirs) = pipe(true).unwrap();
    let mut p = Process::new(hold, (lock.clone(), theirs));
    p.start().unwrap();
    let pid: u32 = ours.recv().unwrap();
    check_eq!(lock.acquire(false, None).unwrap(), false);
    // Waiting while the holder dies: the wait ends with the lock, and the news.
    let waiter = {
        let lock = lock.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            (
                lock.acquire(true, Some(Duration::from_secs(10))),
                t.elapsed(),
            )
        })
    };
    kill(pid);
    let (got, waited) = waiter.join().unwrap();
    check!(matches!(got, Err(SyncError::OwnerDied)), "{got:?}");
    check!(waited < Duration::from_secs(3), "promptly: {waited:?}");
    p.join().unwrap();
    // The waiter's thread holds it now; released by this one (a Lock allows it).
    lock.release().unwrap();
    let guard = lock.guard().unwrap();
    check!(!guard.owner_died(), "told once");
    Ok(())
}

fn an_event_wakes_a_waiting_process() -> TestResult {
    let event = Event::new()?;
    check!(!event.is_set().unwrap(), "starts clear");
    check!(
        !event.wait(Some(Duration::from_millis(20))).unwrap(),
        "times out"
    );
    let (mut ours, theirs) = pipe(true).unwrap();
    let mut p = Process::new(await_event, (event.clone(), theirs));
    p.start().unwrap();
    let _: String = ours.recv().unwrap();
    event.set().unwrap();
    check_eq!(ours.recv::<bool>().unwrap(), true);
    check_eq!(p.join().unwrap(), ExitReason::Normal);
    event.clear().unwrap();
    check!(!event.is_set().unwrap(), "cleared");
    Ok(())
}

fn a_queue_is_fifo_bounded_and_says_full_and_empty() -> TestResult {
    let mut q = Queue::<u64>::new(2)?;
    check!(q.empty().unwrap(), "starts empty");
    q.put(&1, true, None).unwrap();
    q.put_nowait(&2).unwrap();
    check!(q.full().unwrap(), "full at 2");
    check!(
        matches!(q.put_nowait(&3), Err(SyncError::Full)),
        "put_nowait on full"
    );
    check!(
        matches!(
            q.put(&3, true, Some(Duration::from_millis(20))),
            Err(SyncError::Full)
        ),
        "timed put on full"
    );
    check_eq!(q.qsize().unwrap(), 2);
    check_eq!(q.get(true, None).unwrap(), 1);
    check_eq!(q.get_nowait().unwrap(), 2);
    check!(
        matches!(q.get_nowait(), Err(SyncError::Empty)),
        "get_nowait on empty"
    );
    check!(
        matches!(
            q.get(true, Some(Duration::from_millis(20))),
            Err(SyncError::Empty)
        ),
        "timed get on empty"
    );
    // A producer in another process exits right after its puts, before anyone reads
    // them: no feeder thread to flush, so joining it cannot deadlock (Python's can).
    let unbounded = Queue::<u64>::new(0)?;
    let mut p = Process::new(put_three, unbounded.clone());
    p.start().unwrap();
    check_eq!(p.join().unwrap(), ExitReason::Normal);
    let got: Vec<u64> = (0..3).map(|_| unbounded.get(true, None).unwrap()).collect();
    check_eq!(got, vec![1, 2, 3]);
    // Puts to an unbounded queue do not wait for their answers; none is lost when
    // the producer exits at once, and they arrive in order.
    let mut p = Process::new(put_many, (unbounded.clone(), 1000));
    p.start().unwrap();
    check_eq!(p.join().unwrap(), ExitReason::Normal);
    let got: Vec<u64> = (0..1000)
        .map(|_| unbounded.get(true, None).unwrap())
        .collect();
    check_eq!(got, (0..1000).collect::<Vec<u64>>());
    check!(unbounded.empty().unwrap(), "nothing more");
    q.close();
    check!(
        matches!(q.put(&4, true, None), Err(SyncError::Closed)),
        "put after close"
    );
    Ok(())
}

fn a_joinable_queue_counts_task_done() -> TestResult {
    let q = Queue::<u64>::joinable(0)?;
    q.join().unwrap();
    q.put(&1, true, None).unwrap();
    q.put(&2, true, None).unwrap();
    let joiner = {
        let q = q.clone();
        std::thread::spawn(move || q.join())
    };
    q.get(true, None).unwrap();
    q.task_done().unwrap();
    q.get(true, None).unwrap();
    q.task_done().unwrap();
    joiner.join().unwrap().unwrap();
    check!(
        matches!(q.task_done(), Err(SyncError::Queue(_))),
        "task_done called too many times"
    );
    Ok(())
}

fn a_consumer_that_dies_waiting_loses_nothing() -> TestResult {
    let q = Queue::<u64>::new(0)?;
    let (mut ours, theirs) = pipe(true).unwrap();
    let mut p = Process::new(blocked_consumer, (q.clone(), theirs));
    p.start().unwrap();
    let pid: u32 = ours.recv().unwrap();
    kill(pid);
    p.join().unwrap();
    q.put(&7, true, None).unwrap();
    check_eq!(q.get(true, Some(Duration::from_secs(5))).unwrap(), 7);
    Ok(())
}

fn an_item_of_the_wrong_type_is_an_error_and_stays_queued() -> TestResult {
    let q = Queue::<u64>::new(0)?;
    q.put(&5, true, None).unwrap();
    let bytes = multiproc::codec::encode(&q).unwrap();
    let wrong: Queue<String> = multiproc::codec::decode(&bytes).unwrap();
    let got = wrong.get(true, None);
    check!(matches!(got, Err(SyncError::Decode(_))), "{got:?}");
    check_eq!(q.get(true, None).unwrap(), 5);
    Ok(())
}

fn a_queue_whose_owner_has_exited_fails_puts_and_gets() -> TestResult {
    let (mut ours, theirs) = pipe(true).unwrap();
    let mut p = Process::new(lend_a_queue, theirs);
    p.start().unwrap();
    let q: Queue<u64> = ours.recv().unwrap();
    p.join().unwrap();
    // The put itself may return before its answer; `flush` (or the next put) has it.
    let first = q.put(&1, true, None);
    let flushed = q.flush();
    check!(
        matches!(first, Err(SyncError::OwnerGone(_)))
            || matches!(flushed, Err(SyncError::OwnerGone(_))),
        "{first:?} {flushed:?}"
    );
    check!(
        matches!(q.get(true, None), Err(SyncError::OwnerGone(_))),
        "get"
    );
    Ok(())
}

fn a_handle_whose_owner_has_exited_fails_at_once() -> TestResult {
    let (mut ours, theirs) = pipe(true).unwrap();
    let mut p = Process::new(lend_a_lock, theirs);
    p.start().unwrap();
    let lock: Lock = ours.recv().unwrap();
    p.join().unwrap();
    let t = Instant::now();
    let got = lock.acquire(true, None);
    check!(matches!(got, Err(SyncError::OwnerGone(_))), "{got:?}");
    check!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    Ok(())
}

/// The shape of a handle on the wire, to forge one.
#[derive(Clone, Serialize, Deserialize)]
#[serde(from = "ForgedWire", into = "ForgedWire")]
struct Forged {
    mem: ForgedMem,
}

/// A handle here (not one used from another node).
#[derive(Serialize, Deserialize)]
enum ForgedWire {
    Here(ForgedMem),
}

impl From<ForgedWire> for Forged {
    fn from(ForgedWire::Here(mem): ForgedWire) -> Forged {
        Forged { mem }
    }
}

impl From<Forged> for ForgedWire {
    fn from(f: Forged) -> ForgedWire {
        ForgedWire::Here(f.mem)
    }
}

/// A primitive in shared memory: its host's address and its memory.
#[derive(Clone, Serialize, Deserialize)]
struct ForgedMem {
    addr: ForgedAddr,
    seg: ForgedSeg,
}

#[derive(Clone, Serialize, Deserialize)]
struct ForgedSeg {
    pid: u32,
    fd: i32,
    ino: u64,
    len: u64,
}

#[derive(Clone, Serialize, Deserialize)]
struct ForgedAddr {
    owner: Identity,
    id: u64,
    secret: u64,
}

fn a_forged_or_corrupted_handle_reaches_nothing() -> TestResult {
    let lock = Lock::new()?;
    let event = Event::new()?;
    let mut forged: Forged =
        multiproc::codec::decode(&multiproc::codec::encode(&lock).unwrap()).unwrap();
    forged.mem.addr.secret ^= 1;
    let bad: Lock = multiproc::codec::decode(&multiproc::codec::encode(&forged).unwrap()).unwrap();
    check!(
        matches!(bad.acquire(true, None), Err(SyncError::Forged)),
        "a wrong secret"
    );
    // An event's genuine address, with the lock's memory: not a lock (nor the event).
    let mut as_lock: Forged =
        multiproc::codec::decode(&multiproc::codec::encode(&event).unwrap()).unwrap();
    as_lock.mem.seg = forged.mem.seg.clone();
    let as_lock: Lock =
        multiproc::codec::decode(&multiproc::codec::encode(&as_lock).unwrap()).unwrap();
    check!(
        matches!(as_lock.acquire(true, None), Err(SyncError::Forged)),
        "another kind"
    );
    // An event's genuine address with a lock's genuine memory: not an event.
    let mut as_event: Forged =
        multiproc::codec::decode(&multiproc::codec::encode(&event).unwrap()).unwrap();
    let lock_wire: Forged =
        multiproc::codec::decode(&multiproc::codec::encode(&lock).unwrap()).unwrap();
    as_event.mem.seg = lock_wire.mem.seg;
    let as_event: Event =
        multiproc::codec::decode(&multiproc::codec::encode(&as_event).unwrap()).unwrap();
    check!(
        matches!(as_event.set(), Err(SyncError::Forged)),
        "a lock's memory as an event"
    );
    // A lock's genuine address with another lock's memory: reaches neither.
    let other = Lock::new()?;
    let mut mixed: Forged =
        multiproc::codec::decode(&multiproc::codec::encode(&lock).unwrap()).unwrap();
    let theirs: Forged =
        multiproc::codec::decode(&multiproc::codec::encode(&other).unwrap()).unwrap();
    mixed.mem.seg = theirs.mem.seg;
    let mixed: Lock = multiproc::codec::decode(&multiproc::codec::encode(&mixed).unwrap()).unwrap();
    check!(
        matches!(mixed.acquire(true, None), Err(SyncError::Forged)),
        "another lock's memory"
    );
    check!(
        other.acquire(false, None).unwrap(),
        "the other lock is untouched"
    );
    // A corrupted memory reference maps nothing.
    let mut corrupt: Forged =
        multiproc::codec::decode(&multiproc::codec::encode(&lock).unwrap()).unwrap();
    corrupt.mem.seg.ino ^= 1;
    let corrupt: Lock =
        multiproc::codec::decode(&multiproc::codec::encode(&corrupt).unwrap()).unwrap();
    check!(
        corrupt.acquire(true, None).is_err(),
        "a corrupted memory reference"
    );
    check!(!event.is_set().unwrap(), "the event is untouched");
    check!(
        lock.acquire(false, None).unwrap(),
        "the real lock is untouched"
    );
    Ok(())
}

fn negative_timeouts_mean_zero_as_in_python() -> TestResult {
    check_eq!(multiproc::timeout_secs(Some(-1.0)), Some(Duration::ZERO));
    check_eq!(multiproc::timeout_secs(None), None);
    let lock = Lock::new()?;
    lock.acquire(true, None).unwrap();
    check_eq!(
        lock.acquire(true, multiproc::timeout_secs(Some(-5.0)))
            .unwrap(),
        false
    );
    Ok(())
}

fn a_condition_wakes_a_process_waiting_in_another() -> TestResult {
    let cond = Condition::new()?;
    check!(
        matches!(cond.wait(None), Err(SyncError::Misuse(_))),
        "wait without the lock"
    );
    check!(
        matches!(cond.notify(1), Err(SyncError::Misuse(_))),
        "notify without the lock"
    );
    cond.acquire(true, None).unwrap();
    check_eq!(cond.wait(Some(Duration::from_millis(20))).unwrap(), false);
    cond.release().unwrap();
    let (mut ours, theirs) = pipe(true).unwrap();
    let mut p = Process::new(await_notify, (cond.clone(), theirs));
    p.start().unwrap();
    let _: String = ours.recv().unwrap();
    // The child's wait gives the lock up, so this acquire returns once it sleeps.
    cond.acquire(true, None).unwrap();
    cond.notify_all().unwrap();
    cond.release().unwrap();
    check_eq!(ours.recv::<bool>().unwrap(), true);
    check_eq!(p.join().unwrap(), ExitReason::Normal);
    Ok(())
}

fn a_barrier_lets_all_pass_after_its_action() -> TestResult {
    let ran = Event::new()?;
    let barrier = Barrier::with_action(3, set_event, ran.clone()).unwrap();
    let mut parties = Vec::new();
    for _ in 0..2 {
        let (ours, theirs) = pipe(true).unwrap();
        let mut p = Process::new(barrier_party, (barrier.clone(), theirs));
        p.start().unwrap();
        parties.push((p, ours));
    }
    let mut indices = vec![barrier.wait(Some(Duration::from_secs(10))).unwrap()];
    for (p, mut conn) in parties {
        indices.push(conn.recv().unwrap());
        check_eq!(p.join().unwrap(), ExitReason::Normal);
    }
    indices.sort_unstable();
    check_eq!(indices, vec![0, 1, 2]);
    check!(ran.is_set().unwrap(), "the action ran");
    Ok(())
}

fn a_barrier_breaks_when_a_party_dies_or_times_out() -> TestResult {
    let barrier = Barrier::new(3)?;
    let mut p = Process::new(wait_at, barrier.clone());
    p.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while barrier.n_waiting().unwrap() < 1 {
        check!(Instant::now() < deadline, "the child never arrived");
    }
    let waiter = {
        let b = barrier.clone();
        std::thread::spawn(move || b.wait(None))
    };
    while barrier.n_waiting().unwrap() < 2 {
        check!(Instant::now() < deadline, "the thread never arrived");
    }
    p.kill().unwrap();
    let got = waiter.join().unwrap();
    check_eq!(got, Err(SyncError::BrokenBarrier(BarrierBroken::PartyDied)));
    check!(barrier.broken().unwrap(), "broken");
    barrier.reset().unwrap();
    check!(!barrier.broken().unwrap(), "whole again");
    let got = barrier.wait(Some(Duration::from_millis(20)));
    check_eq!(got, Err(SyncError::BrokenBarrier(BarrierBroken::TimedOut)));
    check!(barrier.broken().unwrap(), "broken by the timeout");
    let got = barrier.wait(None);
    // A later wait is told what broke it.
    check_eq!(got, Err(SyncError::BrokenBarrier(BarrierBroken::TimedOut)));
    check_eq!(barrier.parties().unwrap(), 3);
    Ok(())
}

fn a_consumer_killed_in_the_middle_of_a_get_loses_nothing() -> TestResult {
    let q = Queue::<Stall>::new(0)?;
    q.put(&Stall(1), true, None).unwrap();
    q.put(&Stall(2), true, None).unwrap();
    let (mut ours, theirs) = pipe(true).unwrap();
    let mut p = Process::new(stall_in_get, (q.clone(), theirs));
    p.start().unwrap();
    // The child is decoding item 1: out of the queue, not yet the caller's.
    check_eq!(ours.recv::<u64>().unwrap(), 1);
    check_eq!(q.qsize().unwrap(), 1);
    p.kill().unwrap();
    p.join().unwrap();
    let wait = Some(Duration::from_secs(10));
    let mut got = vec![q.get(true, wait).unwrap(), q.get(true, wait).unwrap()];
    got.sort();
    check_eq!(got, vec![Stall(1), Stall(2)]);
    check!(q.empty().unwrap(), "each item once");
    Ok(())
}

fn a_joinable_item_unfinished_by_a_dead_worker_goes_back() -> TestResult {
    let q = Queue::<u64>::joinable(0)?;
    q.put(&1, true, None).unwrap();
    q.put(&2, true, None).unwrap();
    let (mut ours, theirs) = pipe(true).unwrap();
    let mut p = Process::new(take_and_hold, (q.clone(), theirs));
    p.start().unwrap();
    check_eq!(ours.recv::<u64>().unwrap(), 1);
    p.kill().unwrap();
    p.join().unwrap();
    let wait = Some(Duration::from_secs(10));
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(q.get(true, wait).unwrap());
        q.task_done().unwrap();
    }
    got.sort();
    check_eq!(got, vec![1, 2]);
    // Every item put is done, the one the dead worker held included.
    q.join().unwrap();
    check!(
        matches!(q.task_done(), Err(SyncError::Queue(_))),
        "no item is left unfinished"
    );
    Ok(())
}

fn waiters_are_told_when_the_host_exits() -> TestResult {
    let (mut ours, theirs) = pipe(true).unwrap();
    let mut p = Process::new(host_then_exit, theirs);
    p.start().unwrap();
    let (lock, q, event): (Lock, Queue<u64>, Event) = ours.recv().unwrap();
    // All are mapped here while their host lives.
    check!(
        !lock.acquire(false, None).unwrap(),
        "the host holds the lock"
    );
    check!(
        matches!(q.get(false, None), Err(SyncError::Empty)),
        "the queue is empty"
    );
    check!(!event.is_set().unwrap(), "the event is clear");
    ours.send(&"exit".to_string()).unwrap();
    let t = Instant::now();
    let got = lock.acquire(true, None);
    check!(matches!(got, Err(SyncError::OwnerGone(_))), "lock: {got:?}");
    let got = q.get(true, None);
    check!(
        matches!(got, Err(SyncError::OwnerGone(_))),
        "queue: {got:?}"
    );
    let got = event.wait(None);
    check!(
        matches!(got, Err(SyncError::OwnerGone(_))),
        "event: {got:?}"
    );
    check!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    p.join().unwrap();
    Ok(())
}

fn an_item_larger_than_the_queue_is_refused_and_nothing_is_lost() -> TestResult {
    let q = Queue::<Vec<u8>>::new(0)?;
    q.put(&vec![1], true, None).unwrap();
    let got = q.put(&vec![0; 40 << 20], true, None);
    check!(matches!(got, Err(SyncError::TooLarge { .. })), "{got:?}");
    q.put(&vec![2], true, None).unwrap();
    check_eq!(q.get(false, None).unwrap(), vec![1]);
    check_eq!(q.get(false, None).unwrap(), vec![2]);
    Ok(())
}

fn a_dead_holders_permits_come_back_and_the_next_is_told() -> TestResult {
    let sem = Semaphore::new(2)?;
    let (mut ours, theirs) = pipe(true).unwrap();
    let mut p = Process::new(hold_permit, (sem.clone(), theirs));
    p.start().unwrap();
    let pid: u32 = ours.recv().unwrap();
    check!(sem.acquire(false, None).unwrap(), "one permit left");
    check!(!sem.acquire(false, None).unwrap(), "none left");
    kill(pid);
    p.join().unwrap();
    let got = sem.acquire(true, Some(Duration::from_secs(5)));
    check!(matches!(got, Err(SyncError::OwnerDied)), "{got:?}");
    check_eq!(sem.get_value().unwrap(), 0);
    sem.release().unwrap();
    sem.release().unwrap();
    check_eq!(sem.get_value().unwrap(), 2);
    Ok(())
}

fn a_dead_owners_rlock_goes_to_the_next_who_is_told() -> TestResult {
    let lock = RLock::new()?;
    let (mut ours, theirs) = pipe(true).unwrap();
    let mut p = Process::new(hold_rlock, (lock.clone(), theirs));
    p.start().unwrap();
    let pid: u32 = ours.recv().unwrap();
    check!(!lock.acquire(false, None).unwrap(), "owned by the child");
    check!(
        matches!(lock.release(), Err(SyncError::Misuse(_))),
        "not the owner"
    );
    kill(pid);
    p.join().unwrap();
    let got = lock.acquire(true, Some(Duration::from_secs(5)));
    check!(matches!(got, Err(SyncError::OwnerDied)), "{got:?}");
    // Held once here, whatever depth the dead owner had.
    lock.release().unwrap();
    check!(
        matches!(lock.release(), Err(SyncError::Misuse(_))),
        "free again"
    );
    Ok(())
}

fn main() {
    common::run(vec![
        trial(
            "a_dead_owners_rlock_goes_to_the_next_who_is_told",
            a_dead_owners_rlock_goes_to_the_next_who_is_told,
        ),
        trial(
            "a_dead_holders_permits_come_back_and_the_next_is_told",
            a_dead_holders_permits_come_back_and_the_next_is_told,
        ),
        trial(
            "a_consumer_killed_in_the_middle_of_a_get_loses_nothing",
            a_consumer_killed_in_the_middle_of_a_get_loses_nothing,
        ),
        trial(
            "a_joinable_item_unfinished_by_a_dead_worker_goes_back",
            a_joinable_item_unfinished_by_a_dead_worker_goes_back,
        ),
        trial(
            "waiters_are_told_when_the_host_exits",
            waiters_are_told_when_the_host_exits,
        ),
        trial(
            "an_item_larger_than_the_queue_is_refused_and_nothing_is_lost",
            an_item_larger_than_the_queue_is_refused_and_nothing_is_lost,
        ),
        trial(
            "a_lock_may_be_released_by_another_process_but_not_twice",
            a_lock_may_be_released_by_another_process_but_not_twice,
        ),
        trial(
            "an_rlock_is_recursive_and_only_its_owner_releases_it",
            an_rlock_is_recursive_and_only_its_owner_releases_it,
        ),
        trial(
            "a_bounded_semaphore_refuses_over_release",
            a_bounded_semaphore_refuses_over_release,
        ),
        trial(
            "a_dead_holders_lock_goes_to_the_next_acquirer_who_is_told",
            a_dead_holders_lock_goes_to_the_next_acquirer_who_is_told,
        ),
        trial(
            "an_event_wakes_a_waiting_process",
            an_event_wakes_a_waiting_process,
        ),
        trial(
            "a_queue_is_fifo_bounded_and_says_full_and_empty",
            a_queue_is_fifo_bounded_and_says_full_and_empty,
        ),
        trial(
            "a_joinable_queue_counts_task_done",
            a_joinable_queue_counts_task_done,
        ),
        trial(
            "a_consumer_that_dies_waiting_loses_nothing",
            a_consumer_that_dies_waiting_loses_nothing,
        ),
        trial(
            "an_item_of_the_wrong_type_is_an_error_and_stays_queued",
            an_item_of_the_wrong_type_is_an_error_and_stays_queued,
        ),
        trial(
            "a_handle_whose_owner_has_exited_fails_at_once",
            a_handle_whose_owner_has_exited_fails_at_once,
        ),
        trial(
            "a_forged_or_corrupted_handle_reaches_nothing",
            a_forged_or_corrupted_handle_reaches_nothing,
        ),
        trial(
            "a_queue_whose_owner_has_exited_fails_puts_and_gets",
            a_queue_whose_owner_has_exited_fails_puts_and_gets,
        ),
        trial(
            "negative_timeouts_mean_zero_as_in_python",
            negative_timeouts_mean_zero_as_in_python,
        ),
        trial(
            "a_condition_wakes_a_process_waiting_in_another",
            a_condition_wakes_a_process_waiting_in_another,
        ),
        trial(
            "a_barrier_lets_all_pass_after_its_action",
            a_barrier_lets_all_pass_after_its_action,
        ),
        trial(
            "a_barrier_breaks_when_a_party_dies_or_times_out",
            a_barrier_breaks_when_a_party_dies_or_times_out,
        ),
    ]);
}
