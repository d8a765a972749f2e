//! Tests of the pool's scheduler.

use super::*;

fn cfg(processes: usize) -> SchedulerConfig {
    SchedulerConfig {
        processes,
        max_tasks_per_worker: None,
        task_timeout: None,
        retry: RetryPolicy::default(),
        start_intensity: RestartIntensity::default(),
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A scheduler whose workers are all ready.
fn ready(c: SchedulerConfig) -> Scheduler {
    let mut out = Vec::new();
    let mut s = Scheduler::new(c, &mut out);
    let ids: Vec<WorkerId> = s.workers.keys().copied().collect();
    for id in ids {
        s.ready(id, ms(0), &mut out);
    }
    s
}

fn finished(out: &[Action]) -> Vec<(TaskId, Finished)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Finish(t, f) => Some((*t, f.clone())),
            _ => None,
        })
        .collect()
}

fn dispatched(out: &[Action]) -> Vec<(WorkerId, TaskId)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Dispatch { worker, task } => Some((*worker, *task)),
            _ => None,
        })
        .collect()
}

#[test]
fn spawns_the_configured_number_of_workers() {
    let mut out = Vec::new();
    let s = Scheduler::new(cfg(3), &mut out);
    assert_eq!(
        out,
        vec![Action::Spawn(1), Action::Spawn(2), Action::Spawn(3)]
    );
    assert_eq!(s.workers(), 3);
}

#[test]
fn nothing_is_dispatched_to_a_starting_worker() {
    let mut out = Vec::new();
    let mut s = Scheduler::new(cfg(1), &mut out);
    out.clear();
    s.submit(10, 1, ms(0), &mut out);
    assert!(dispatched(&out).is_empty());
    s.ready(1, ms(1), &mut out);
    assert_eq!(dispatched(&out), vec![(1, 10)]);
}

#[test]
fn one_task_per_worker_until_run_times_are_known_then_a_window() {
    let mut s = ready(cfg(2));
    let mut out = Vec::new();
    for t in 0..6 {
        s.submit(t, 1, ms(0), &mut out);
    }
    assert_eq!(dispatched(&out), vec![(1, 0), (2, 1)]);
    out.clear();
    // 10 us per item: the window opens to its maximum.
    s.done(1, 0, Duration::from_micros(10), &mut out);
    assert_eq!(s.window(), MAX_WINDOW);
    assert_eq!(dispatched(&out).len(), 4);
}

#[test]
fn big_chunks_count_as_what_they_are() {
    let mut s = ready(cfg(1));
    s.per_item_ns = Some(100.0); // a 100-item chunk: 10 us; a 100 000-item one: 10 ms
    let mut out = Vec::new();
    s.submit(1, 100_000, ms(0), &mut out);
    s.submit(2, 100_000, ms(0), &mut out);
    s.submit(3, 100, ms(0), &mut out);
    assert_eq!(
        dispatched(&out),
        vec![(1, 1)],
        "10 ms queued is over the 1 ms window"
    );
    out.clear();
    s.done(1, 1, Duration::from_micros(10_000), &mut out);
    assert_eq!(dispatched(&out), vec![(1, 2)]);
}

#[test]
fn slow_tasks_keep_the_window_at_one() {
    let mut s = ready(cfg(1));
    let mut out = Vec::new();
    s.submit(0, 1, ms(0), &mut out);
    s.done(1, 0, ms(50), &mut out);
    assert_eq!(s.window(), 1);
}

#[test]
fn every_task_finishes_once_and_in_flight_followers_are_requeued_in_order() {
    let mut c = cfg(1);
    c.retry = RetryPolicy {
        retries: 0,
        quarantine_after: 3,
    };
    let mut s = ready(c);
    s.per_item_ns = Some(1000.0);
    let mut out = Vec::new();
    for t in 0..3 {
        s.submit(t, 1, ms(0), &mut out);
    }
    assert_eq!(dispatched(&out), vec![(1, 0), (1, 1), (1, 2)]);
    out.clear();
    s.exited(1, &ExitReason::Killed, ms(1), &mut out);
    // The running task fails; the two behind it wait for the replacement.
    assert_eq!(
        finished(&out),
        vec![(
            0,
            Finished::Failed(Failure::WorkerDied {
                worker: 1,
                reason: ExitReason::Killed
            })
        )]
    );
    assert!(out.contains(&Action::Spawn(2)));
    out.clear();
    s.ready(2, ms(2), &mut out);
    assert_eq!(dispatched(&out), vec![(2, 1), (2, 2)]);
}

#[test]
fn a_poison_task_is_retried_then_quarantined() {
    let mut c = cfg(1);
    c.retry = RetryPolicy {
        retries: 10,
        quarantine_after: 3,
    };
    let mut s = ready(c);
    let mut out = Vec::new();
    s.submit(7, 1, ms(0), &mut out);
    let mut worker = 1;
    for death in 1..=3u32 {
        out.clear();
        s.exited(
            worker,
            &ExitReason::Signaled(11),
            ms(u64::from(death)),
            &mut out,
        );
        worker += 1;
        if death < 3 {
            assert!(finished(&out).is_empty(), "retried after death {death}");
            s.ready(worker, ms(u64::from(death)), &mut out);
            assert_eq!(dispatched(&out), vec![(worker, 7)]);
        }
    }
    assert_eq!(
        finished(&out),
        vec![(
            7,
            Finished::Failed(Failure::Quarantined {
                deaths: 3,
                reason: ExitReason::Signaled(11)
            })
        )]
    );
    // The pool goes on: a replacement is spawned.
    assert!(out.contains(&Action::Spawn(worker)));
    assert_eq!(s.mode(), Mode::Running);
}

#[test]
fn a_timeout_kills_the_worker_and_fails_the_task_with_its_limit() {
    let mut c = cfg(1);
    c.task_timeout = Some(ms(100));
    let mut s = ready(c);
    let mut out = Vec::new();
    s.submit(1, 2, ms(0), &mut out);
    assert_eq!(
        s.next_deadline(),
        Some(ms(200)),
        "two items get twice the time"
    );
    s.tick(ms(199), &mut out);
    assert!(!out.contains(&Action::Kill(1)));
    s.tick(ms(200), &mut out);
    assert!(out.contains(&Action::Kill(1)));
    assert_eq!(s.next_deadline(), None, "killed once");
    out.clear();
    s.exited(1, &ExitReason::Killed, ms(201), &mut out);
    assert_eq!(
        finished(&out),
        vec![(
            1,
            Finished::Failed(Failure::Timeout {
                worker: 1,
                limit: ms(200)
            })
        )]
    );
}

#[test]
fn a_task_that_answers_as_its_worker_is_killed_costs_the_next_one_nothing() {
    let mut c = cfg(1);
    c.task_timeout = Some(ms(100));
    let mut s = ready(c);
    s.per_item_ns = Some(1000.0);
    let mut out = Vec::new();
    s.submit(1, 1, ms(0), &mut out);
    s.submit(2, 1, ms(0), &mut out);
    s.tick(ms(100), &mut out);
    assert!(out.contains(&Action::Kill(1)));
    out.clear();
    s.done(1, 1, ms(101), &mut out);
    assert_eq!(finished(&out), vec![(1, Finished::Done)]);
    s.submit(3, 1, ms(101), &mut out);
    assert!(
        dispatched(&out).is_empty(),
        "nothing more for a worker being killed"
    );
    out.clear();
    s.exited(1, &ExitReason::Killed, ms(102), &mut out);
    assert!(
        finished(&out).is_empty(),
        "task 2 is not failed for our kill"
    );
    s.ready(2, ms(103), &mut out);
    // Task 1 took 101 ms, so the window is back to one task per worker.
    assert_eq!(dispatched(&out), vec![(2, 2)]);
}

#[test]
fn the_timeout_clock_of_a_queued_task_starts_when_the_one_before_it_ends() {
    let mut c = cfg(1);
    c.task_timeout = Some(ms(100));
    let mut s = ready(c);
    s.per_item_ns = Some(1000.0);
    let mut out = Vec::new();
    s.submit(1, 1, ms(0), &mut out);
    s.submit(2, 1, ms(0), &mut out);
    s.done(1, 1, ms(90), &mut out);
    assert_eq!(s.next_deadline(), Some(ms(190)));
}

#[test]
fn workers_that_fail_to_start_break_the_pool_after_the_intensity() {
    let mut c = cfg(1);
    c.start_intensity = RestartIntensity {
        max_restarts: 2,
        within: ms(1000),
    };
    let mut out = Vec::new();
    let mut s = Scheduler::new(c, &mut out);
    s.submit(1, 1, ms(0), &mut out);
    let failed = ExitReason::Failed {
        message: "no database".into(),
    };
    for (worker, at) in [(1, 10), (2, 20)] {
        out.clear();
        s.exited(worker, &failed, ms(at), &mut out);
        assert_eq!(out, vec![Action::Spawn(worker + 1)]);
    }
    out.clear();
    s.exited(3, &failed, ms(30), &mut out);
    assert_eq!(s.mode(), Mode::Broken);
    assert_eq!(
        finished(&out),
        vec![(
            1,
            Finished::Failed(Failure::Broken {
                reason: failed.clone()
            })
        )]
    );
    assert!(
        matches!(out.first(), Some(Action::Broke(_))),
        "the pool is marked broken before anyone hears of it"
    );
    assert!(
        !out.iter().any(|a| matches!(a, Action::Spawn(_))),
        "no endless respawn"
    );
}

#[test]
fn max_tasks_retires_the_worker_and_spawns_its_replacement_at_once() {
    let mut c = cfg(1);
    c.max_tasks_per_worker = Some(2);
    let mut s = ready(c);
    s.per_item_ns = Some(1000.0);
    let mut out = Vec::new();
    for t in 0..3 {
        s.submit(t, 1, ms(0), &mut out);
    }
    assert_eq!(dispatched(&out), vec![(1, 0), (1, 1)]);
    assert!(out.contains(&Action::Retire(1)));
    assert!(out.contains(&Action::Spawn(2)));
    out.clear();
    s.ready(2, ms(1), &mut out);
    assert_eq!(
        dispatched(&out),
        vec![(2, 2)],
        "the third task does not wait for the first worker"
    );
    out.clear();
    s.done(1, 0, ms(2), &mut out);
    s.done(1, 1, ms(3), &mut out);
    s.exited(1, &ExitReason::Normal, ms(4), &mut out);
    assert!(
        !out.iter().any(|a| matches!(a, Action::Spawn(_))),
        "its replacement already runs"
    );
}

#[test]
fn a_worker_over_its_memory_is_retired_after_what_it_holds() {
    let mut s = ready(cfg(1));
    s.per_item_ns = Some(1000.0);
    let mut out = Vec::new();
    for t in 0..2 {
        s.submit(t, 1, ms(0), &mut out);
    }
    let held = dispatched(&out);
    out.clear();
    s.retire(1, &mut out);
    assert_eq!(out, vec![Action::Retire(1), Action::Spawn(2)]);
    out.clear();
    s.retire(1, &mut out);
    assert!(out.is_empty(), "retired once");
    for (_, t) in &held {
        s.done(1, *t, ms(1), &mut out);
    }
    s.submit(9, 1, ms(2), &mut out);
    assert!(
        !dispatched(&out).iter().any(|&(w, _)| w == 1),
        "a retiring worker takes no more tasks"
    );
}

#[test]
fn close_retires_workers_once_the_queue_drains_and_then_finishes() {
    let mut s = ready(cfg(2));
    let mut out = Vec::new();
    s.submit(1, 1, ms(0), &mut out);
    out.clear();
    s.close(&mut out);
    assert_eq!(
        out,
        vec![Action::Retire(2)],
        "the idle worker retires, the busy one not yet"
    );
    out.clear();
    s.done(1, 1, ms(1), &mut out);
    assert!(out.contains(&Action::Retire(1)));
    s.exited(1, &ExitReason::Normal, ms(2), &mut out);
    assert!(!s.is_finished());
    s.exited(2, &ExitReason::Normal, ms(2), &mut out);
    assert!(s.is_finished());
}

#[test]
fn terminate_fails_everything_and_kills_every_worker() {
    let mut s = ready(cfg(2));
    let mut out = Vec::new();
    for t in 0..4 {
        s.submit(t, 1, ms(0), &mut out);
    }
    out.clear();
    s.terminate(&mut out);
    let f = finished(&out);
    assert_eq!(f.len(), 4);
    assert!(
        f.iter()
            .all(|(_, how)| *how == Finished::Failed(Failure::Terminated))
    );
    assert!(out.contains(&Action::Kill(1)) && out.contains(&Action::Kill(2)));
    out.clear();
    s.submit(9, 1, ms(1), &mut out);
    assert_eq!(
        finished(&out),
        vec![(9, Finished::Failed(Failure::Terminated))]
    );
    s.exited(1, &ExitReason::Killed, ms(2), &mut out);
    s.exited(2, &ExitReason::Killed, ms(2), &mut out);
    assert!(s.is_finished());
}

#[test]
fn cancel_takes_back_a_queued_task_only() {
    let mut s = ready(cfg(1));
    let mut out = Vec::new();
    s.submit(1, 1, ms(0), &mut out);
    s.submit(2, 1, ms(0), &mut out);
    out.clear();
    assert!(!s.cancel(1, &mut out), "already running");
    assert!(s.cancel(2, &mut out));
    assert_eq!(
        finished(&out),
        vec![(2, Finished::Failed(Failure::Cancelled))]
    );
    assert_eq!(s.pending(), 1);
}

#[test]
fn work_goes_to_the_least_loaded_worker() {
    let mut s = ready(cfg(2));
    s.per_item_ns = Some(100_000.0); // 100 us: a window of 10
    let mut out = Vec::new();
    for t in 0..4 {
        s.submit(t, 1, ms(0), &mut out);
    }
    assert_eq!(dispatched(&out), vec![(1, 0), (2, 1), (1, 2), (2, 3)]);
}
