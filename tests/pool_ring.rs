//! The pool's rings under failure, with real worker processes: a worker killed in
//! the middle of writing its answer into the ring, a worker that corrupts its ring,
//! a ring full of tasks for a stopped worker, and frames too big for a ring, which
//! go on the socket behind a marker.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::{TestResult, trial};
use multiproc::__private::test_hooks::{PoolRingDamage, damage_pool_ring};
use multiproc::blocking::Pool;
use multiproc::{ExitReason, PoolError, TaskError};

fn sq(x: u64) -> u64 {
    x * x
}

/// Answers, but its worker is killed after writing the answer's record and before
/// publishing it.
fn die_mid_write(x: u64) -> u64 {
    damage_pool_ring(PoolRingDamage::DieMidWrite);
    x
}

/// Puts its worker's answer ring's tail behind its head instead of answering.
fn corrupt_ring(x: u64) -> u64 {
    damage_pool_ring(PoolRingDamage::TailBehindHead);
    x
}

/// The length of its argument, and the argument reversed.
fn reverse(s: String) -> (usize, String) {
    (s.len(), s.chars().rev().collect())
}

multiproc::register!(sq);
multiproc::register!(die_mid_write);
multiproc::register!(corrupt_ring);
multiproc::register!(reverse);

/// The worker and how it ended, if `r` says a worker died.
fn died(r: Result<u64, PoolError>) -> Option<ExitReason> {
    match r {
        Err(PoolError::Task {
            error: TaskError::WorkerDied { reason, .. },
            ..
        }) => Some(reason),
        _ => None,
    }
}

fn a_worker_killed_mid_ring_write_is_worker_died_and_the_pool_goes_on() -> TestResult {
    let pool = Pool::new(1).unwrap();
    check_eq!(pool.apply(sq, 3).unwrap(), 9);
    let reason = died(pool.apply(die_mid_write, 5));
    check!(
        reason == Some(ExitReason::Signaled(9)),
        "the unpublished answer is no answer; the death is: {reason:?}"
    );
    check_eq!(pool.apply(sq, 4).unwrap(), 16);
    check_eq!(pool.map(sq, 0..100).unwrap()[99], 99 * 99);
    Ok(())
}

fn a_corrupt_pool_ring_kills_its_worker_and_the_pool_goes_on() -> TestResult {
    let pool = Pool::new(2).unwrap();
    let reason = died(pool.apply(corrupt_ring, 5));
    check!(
        matches!(reason, Some(ExitReason::Signaled(9) | ExitReason::Killed)),
        "the pool kills a worker whose ring is corrupt: {reason:?}"
    );
    check_eq!(pool.apply(sq, 7).unwrap(), 49);
    check_eq!(
        pool.map(sq, 0..1000).unwrap(),
        (0..1000).map(|x| x * x).collect::<Vec<_>>()
    );
    Ok(())
}

/// A stopped worker's window of tasks is more than its ring holds: the rest waits in
/// the pool, `apply_async` returns at once, and once the worker runs again every
/// task is answered, in order.
fn a_full_ring_waits_for_a_stopped_worker_and_loses_nothing() -> TestResult {
    let pool = Pool::new(1).unwrap();
    // Short tasks: the pool learns that a worker may hold a window of many.
    pool.map(reverse, (0..200).map(|i| i.to_string())).unwrap();
    let pid = pool.workers()[0].pid;
    let stop = |sig| {
        let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
    };
    stop(rustix::process::Signal::STOP);
    // 300 tasks of 8 KiB: 2.4 MB against a ring of 128 KiB.
    let args: Vec<String> = (0..300u32)
        .map(|i| format!("{i:08}").repeat(1024))
        .collect();
    let started = std::time::Instant::now();
    let mut results: Vec<_> = args
        .iter()
        .map(|a| pool.apply_async(reverse, a.clone()))
        .collect();
    let submitting = started.elapsed();
    stop(rustix::process::Signal::CONT);
    check!(
        submitting < std::time::Duration::from_secs(5),
        "submitting to a full ring does not wait for the worker: {submitting:?}"
    );
    for (a, r) in args.iter().zip(results.iter_mut()) {
        let (len, rev) = r.get(None).unwrap();
        check_eq!(len, a.len());
        check!(
            rev.chars().rev().eq(a.chars()),
            "each answer is its own task's"
        );
    }
    Ok(())
}

/// Frames over a quarter of the ring go on the socket behind a marker, both ways,
/// and keep their place among the frames that go through the ring.
fn big_frames_go_on_the_socket_in_their_place() -> TestResult {
    let pool = Pool::new(2).unwrap();
    let args: Vec<String> = (0..40u32)
        .map(|i| {
            // Every fourth is 1 MiB; the others fit in the ring.
            let n = if i % 4 == 0 { 1 << 17 } else { 16 };
            format!("{i:08}").repeat(n)
        })
        .collect();
    let mapped = pool.imap(reverse, args.clone(), 1);
    for (a, r) in args.iter().zip(mapped) {
        let (len, rev) = r.unwrap();
        check_eq!(len, a.len());
        check!(
            rev.chars().rev().eq(a.chars()),
            "each answer is its own task's"
        );
    }
    let mut pending: Vec<_> = args
        .iter()
        .map(|a| pool.apply_async(reverse, a.clone()))
        .collect();
    for (a, r) in args.iter().zip(pending.iter_mut()) {
        check_eq!(r.get(None).unwrap().0, a.len());
    }
    Ok(())
}

fn main() {
    // Workers die and are replaced: bounded, whatever a regression does.
    common::cgroup::confine("pool_ring");
    common::run(vec![
        trial(
            "a_worker_killed_mid_ring_write_is_worker_died_and_the_pool_goes_on",
            a_worker_killed_mid_ring_write_is_worker_died_and_the_pool_goes_on,
        ),
        trial(
            "a_corrupt_pool_ring_kills_its_worker_and_the_pool_goes_on",
            a_corrupt_pool_ring_kills_its_worker_and_the_pool_goes_on,
        ),
        trial(
            "a_full_ring_waits_for_a_stopped_worker_and_loses_nothing",
            a_full_ring_waits_for_a_stopped_worker_and_loses_nothing,
        ),
        trial(
            "big_frames_go_on_the_socket_in_their_place",
            big_frames_go_on_the_socket_in_their_place,
        ),
    ]);
}
