//! Cancel safety of the async API: a pending future of every primitive dropped under
//! `tokio::time::timeout` and under `tokio::select!`, then the primitive's state
//! checked: no lock taken, no permit lost, no item consumed or put.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::future::Future;
use std::time::Duration;

use common::{TestResult, trial};
use multiproc::{
    Barrier, BoundedSemaphore, Condition, Event, JoinableQueue, Lock, Queue, RLock, SyncError,
};

/// Long enough that the future is surely waiting when it is dropped; what is tested
/// does not depend on it.
const PATIENCE: Duration = Duration::from_millis(50);
/// A bound for waits that must succeed.
const SOON: Duration = Duration::from_secs(5);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Drops `fut` while it waits, the two ways a user does: a timeout, and the other
/// branch of a `select!` winning (after `fut` was polled and parked).
async fn abandon<F: Future>(make: impl Fn() -> F) -> TestResult {
    check!(
        tokio::time::timeout(PATIENCE, make()).await.is_err(),
        "the future completed; it should have waited"
    );
    let other = async {
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
    };
    let won = tokio::select! {
        biased;
        _ = make() => false,
        () = other => true,
    };
    check!(won, "the future completed; it should have waited");
    Ok(())
}

fn lock() -> TestResult {
    runtime().block_on(async {
        let l = Lock::new()?;
        check!(l.acquire(true, None).await?, "first acquire");
        abandon(|| l.acquire(true, None)).await?;
        l.release().await?;
        // The abandoned acquires took nothing: the lock is free now.
        check!(
            l.acquire(false, None).await?,
            "the lock was taken by an abandoned acquire"
        );
        l.release().await?;
        check!(
            l.acquire(true, Some(SOON)).await?,
            "a timed acquire after the abandoned ones"
        );
        Ok(())
    })
}

fn rlock() -> TestResult {
    let r = RLock::new()?;
    // Held by another thread, so that this one must wait.
    let holder = multiproc::blocking::RLock::from(r.clone());
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        assert!(holder.acquire(true, None).unwrap());
        held_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        holder.release().unwrap();
    });
    held_rx.recv().unwrap();
    runtime().block_on(async {
        abandon(|| r.acquire(true, None)).await?;
        go_tx.send(()).unwrap();
        t.join().unwrap();
        check!(
            r.acquire(true, Some(SOON)).await?,
            "free after the holder released"
        );
        r.release().await?;
        Ok::<_, common::Failed>(())
    })?;
    // No abandoned acquire owns it: another thread takes it at once.
    let other = multiproc::blocking::RLock::from(r.clone());
    let free = std::thread::spawn(move || other.acquire(false, None).unwrap())
        .join()
        .unwrap();
    check!(free, "an abandoned acquire left the rlock owned");
    Ok(())
}

fn semaphore() -> TestResult {
    runtime().block_on(async {
        let s = BoundedSemaphore::new(1)?;
        check!(s.acquire(true, None).await?, "first permit");
        abandon(|| s.acquire(true, None)).await?;
        s.release().await?;
        check_eq!(s.get_value().await?, 1);
        Ok(())
    })
}

fn event() -> TestResult {
    runtime().block_on(async {
        let e = Event::new()?;
        abandon(|| e.wait(None)).await?;
        check!(!e.is_set().await?, "clear still");
        e.set().await?;
        check!(e.wait(Some(SOON)).await?, "a wait after the abandoned ones");
        Ok(())
    })
}

fn queue_get() -> TestResult {
    runtime().block_on(async {
        let q = Queue::<u64>::new(0)?;
        abandon(|| q.get(true, None)).await?;
        q.put(&7, true, None).await?;
        check_eq!(q.get(true, Some(SOON)).await?, 7);
        Ok(())
    })
}

fn queue_put() -> TestResult {
    runtime().block_on(async {
        let q = Queue::<u64>::new(1)?;
        q.put(&1, true, None).await?;
        abandon(|| q.put(&2, true, None)).await?;
        check_eq!(q.get(true, Some(SOON)).await?, 1);
        // The abandoned puts put nothing.
        check!(
            matches!(q.get(false, None).await, Err(SyncError::Empty)),
            "an abandoned put went in"
        );
        Ok(())
    })
}

fn joinable_join() -> TestResult {
    runtime().block_on(async {
        let q = JoinableQueue::<u64>::joinable(0)?;
        q.put(&1, true, None).await?;
        abandon(|| q.join()).await?;
        check_eq!(q.get(true, None).await?, 1);
        q.task_done().await?;
        tokio::time::timeout(SOON, q.join()).await.unwrap()?;
        Ok(())
    })
}

/// Whether another thread takes the condition's lock (and gives it back) in time.
fn free_elsewhere(c: &Condition) -> bool {
    let other = multiproc::blocking::Condition::from(c.clone());
    std::thread::spawn(move || {
        let got = other.acquire(true, Some(SOON)).unwrap();
        other.release().unwrap();
        got
    })
    .join()
    .unwrap()
}

fn condition() -> TestResult {
    let c = Condition::new()?;
    runtime().block_on(async {
        // An abandoned wait takes the lock back and must give it up again.
        check!(c.acquire(true, None).await?, "acquire");
        check!(
            tokio::time::timeout(PATIENCE, c.wait(None)).await.is_err(),
            "the wait completed"
        );
        Ok::<_, common::Failed>(())
    })?;
    // The condition's lock is taken by nobody for long: another thread gets it.
    let got = free_elsewhere(&c);
    check!(got, "an abandoned wait left the condition's lock held");

    // An abandoned acquire, while another thread holds the lock.
    let holder = c.clone();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        let holder = multiproc::blocking::Condition::from(holder);
        assert!(holder.acquire(true, None).unwrap());
        held_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        holder.release().unwrap();
    });
    held_rx.recv().unwrap();
    runtime().block_on(async {
        abandon(|| c.acquire(true, None)).await?;
        go_tx.send(()).unwrap();
        t.join().unwrap();
        Ok::<_, common::Failed>(())
    })?;
    let got = free_elsewhere(&c);
    check!(got, "an abandoned acquire left the condition's lock held");
    Ok(())
}

fn barrier() -> TestResult {
    runtime().block_on(async {
        let b = Barrier::new(2)?;
        check!(
            tokio::time::timeout(PATIENCE, b.wait(None)).await.is_err(),
            "the wait completed"
        );
        // As a timed-out wait does in Python, an abandoned one breaks the barrier
        // (once the host has heard of it), rather than leaving a party counted that
        // will never come.
        let deadline = std::time::Instant::now() + SOON;
        loop {
            let (_, waiting, broken) = b.info().await?;
            if broken && waiting == 0 {
                break;
            }
            check!(
                std::time::Instant::now() < deadline,
                "the barrier still counts the abandoned party"
            );
            tokio::task::yield_now().await;
        }
        Ok(())
    })
}

fn main() {
    common::run(vec![
        trial("an_abandoned_lock_acquire_takes_nothing", lock),
        trial("an_abandoned_rlock_acquire_takes_nothing", rlock),
        trial("an_abandoned_semaphore_acquire_takes_no_permit", semaphore),
        trial("an_abandoned_event_wait_leaves_the_event_usable", event),
        trial("an_abandoned_get_consumes_no_item", queue_get),
        trial("an_abandoned_put_puts_nothing", queue_put),
        trial("an_abandoned_join_leaves_the_queue_joinable", joinable_join),
        trial(
            "an_abandoned_condition_wait_or_acquire_leaves_no_lock_held",
            condition,
        ),
        trial("an_abandoned_barrier_wait_breaks_the_barrier", barrier),
    ]);
}
