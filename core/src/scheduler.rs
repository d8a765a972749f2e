//! The pool's scheduler: which task runs on which worker, when a worker is spawned,
//! retired or killed, and how each task ends. A pure state machine: the pool actor
//! feeds it events with the time, and carries out the actions it returns.
//!
//! # Invariants
//!
//! - Every submitted task ends exactly once, with one [`Action::Finish`].
//! - A task is in at most one place: the queue, or one worker's in-flight list.
//! - Only the head of a worker's in-flight list is running (a worker runs its tasks
//!   in order); the others wait in its pipe and go back to the front of the queue, in
//!   order and without counting a death, if the worker dies.
//! - While the pool runs, it has `processes` workers that are starting or ready
//!   (a retiring worker's replacement is spawned when it is told to retire).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use crate::{
    AfterDeath, ExitReason, IntensityExceeded, RestartIntensity, RestartWindow, RetryPolicy,
};

/// A task: one chunk of one job, as the pool numbers it.
pub type TaskId = u64;
/// A worker incarnation; a replacement gets a new one.
pub type WorkerId = u64;

/// How much queued work the scheduler lets wait behind a running task on one worker,
/// in expected run time. Enough to hide the round trip of short tasks; short enough
/// that a long task holds few others back.
pub const QUEUED_WORK: Duration = Duration::from_millis(1);

/// The most tasks one worker holds at once.
pub const MAX_WINDOW: usize = 64;

/// The settings the scheduler decides with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Worker processes while the pool runs (at least 1).
    pub processes: usize,
    /// Tasks a worker runs before it is replaced (Python's `maxtasksperchild`).
    pub max_tasks_per_worker: Option<u32>,
    /// How long one item may run; a chunk of `n` items gets `n` times this.
    pub task_timeout: Option<Duration>,
    /// Retry or quarantine of tasks whose worker died.
    pub retry: RetryPolicy,
    /// How many workers may fail to start (exit before they are ready, as a failing
    /// initializer makes them) within a window before the pool gives up.
    pub start_intensity: RestartIntensity,
}

/// Why a task ended without a result.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The worker running it exited.
    WorkerDied {
        /// The worker.
        worker: WorkerId,
        /// How it ended.
        reason: ExitReason,
    },
    /// It ran past its timeout; its worker was killed.
    Timeout {
        /// The worker that was killed.
        worker: WorkerId,
        /// The time it was allowed.
        limit: Duration,
    },
    /// It killed `deaths` workers in a row and will not run again.
    Quarantined {
        /// Workers it killed.
        deaths: u32,
        /// How the last one ended.
        reason: ExitReason,
    },
    /// It was cancelled before it started.
    Cancelled,
    /// The pool was terminated before it finished.
    Terminated,
    /// Workers kept failing to start; the last one ended so.
    Broken {
        /// How the last worker that failed to start ended.
        reason: ExitReason,
    },
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Finished {
    /// Its worker answered (the answer itself, success or error, is the pool's).
    Done,
    /// It failed for this reason.
    Failed(Failure),
}

/// What the pool actor must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start a worker process with this id.
    Spawn(WorkerId),
    /// Send the task to the worker.
    Dispatch {
        /// To whom.
        worker: WorkerId,
        /// Which.
        task: TaskId,
    },
    /// Tell the worker to exit once it has answered what it was sent.
    Retire(WorkerId),
    /// Kill the worker now (SIGKILL: it hangs, or the pool is terminated).
    Kill(WorkerId),
    /// The task ended.
    Finish(TaskId, Finished),
    /// The pool gave up: workers keep failing to start.
    Broke(IntensityExceeded),
}

/// The pool's lifecycle, as `close`, `terminate` and failures move it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Takes tasks.
    Running,
    /// Takes no new tasks; workers retire when the queue is empty.
    Closed,
    /// Everything was failed and the workers killed.
    Terminated,
    /// Workers kept failing to start; everything was failed.
    Broken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting,
    Ready,
    Retiring,
}

#[derive(Debug)]
struct Worker {
    phase: Phase,
    inflight: VecDeque<TaskId>,
    /// The items of the tasks in `inflight`, kept as they change: the window is
    /// checked at every dispatch, and summing it there cost a hash lookup per task
    /// held (a third of the pool's time in a `map` of one-item chunks).
    load: u64,
    dispatched: u32,
    head_since: Duration,
    killed_for: Option<TaskId>,
}

#[derive(Debug, Clone, Copy)]
struct Task {
    items: u32,
    deaths: u32,
}

/// Hashes task ids (sequential `u64`s) with one multiplication: SipHash, the
/// default, was a tenth of the pool's time in a `map` of one-item chunks. Ids are
/// made by the pool, not by a peer, so there is nothing to defend against.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The hasher of maps keyed by task id.
pub type IdHash = std::hash::BuildHasherDefault<IdHasher>;

/// The scheduler. See the module documentation for its invariants.
#[derive(Debug)]
pub struct Scheduler {
    cfg: SchedulerConfig,
    mode: Mode,
    queue: VecDeque<TaskId>,
    tasks: HashMap<TaskId, Task, IdHash>,
    workers: BTreeMap<WorkerId, Worker>,
    next_worker: WorkerId,
    start_failures: RestartWindow,
    /// Smoothed run time of one item, in nanoseconds.
    per_item_ns: Option<f64>,
}

impl Scheduler {
    /// A scheduler that spawns `cfg.processes` workers at once.
    pub fn new(cfg: SchedulerConfig, out: &mut Vec<Action>) -> Scheduler {
        let mut s = Scheduler {
            cfg,
            mode: Mode::Running,
            queue: VecDeque::new(),
            tasks: HashMap::default(),
            workers: BTreeMap::new(),
            next_worker: 1,
            start_failures: RestartWindow::default(),
            per_item_ns: None,
        };
        for _ in 0..cfg.processes.max(1) {
            s.spawn(out);
        }
        s
    }

    /// The lifecycle state.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Tasks not yet ended (queued or in flight).
    pub fn pending(&self) -> usize {
        self.tasks.len()
    }

    /// How many tasks the worker holds (running and waiting in its pipe).
    pub fn in_flight(&self, worker: WorkerId) -> usize {
        self.workers.get(&worker).map_or(0, |w| w.inflight.len())
    }

    /// Whether the worker is alive or starting (its exit not yet seen).
    pub fn has_worker(&self, worker: WorkerId) -> bool {
        self.workers.contains_key(&worker)
    }

    /// Workers alive or starting.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Whether the pool is closed or terminated and every worker has exited: what
    /// `join` waits for.
    pub fn is_finished(&self) -> bool {
        self.mode != Mode::Running && self.workers.is_empty()
    }

    /// Whether a ready worker may take one more task: always when it has none; else
    /// while the tasks it holds add up to less than [`QUEUED_WORK`] of expected work
    /// (by the smoothed run time per item, so a big chunk counts as what it is), up to
    /// [`MAX_WINDOW`] tasks. Until run times are known, one task each.
    fn has_room(&self, w: &Worker) -> bool {
        if w.inflight.is_empty() {
            return true;
        }
        let Some(ns) = self.per_item_ns else {
            return false;
        };
        if w.inflight.len() >= MAX_WINDOW {
            return false;
        }
        (w.load as f64) * ns.max(1.0) < QUEUED_WORK.as_nanos() as f64
    }

    /// How many one-item tasks a ready worker may hold: one, until run times are
    /// known; then enough for about [`QUEUED_WORK`] of expected work.
    pub fn window(&self) -> usize {
        match self.per_item_ns {
            None => 1,
            Some(ns) => {
                let per = ns.max(1.0);
                ((QUEUED_WORK.as_nanos() as f64 / per) as usize).clamp(1, MAX_WINDOW)
            }
        }
    }

    fn spawn(&mut self, out: &mut Vec<Action>) {
        let id = self.next_worker;
        self.next_worker += 1;
        self.workers.insert(
            id,
            Worker {
                phase: Phase::Starting,
                inflight: VecDeque::new(),
                load: 0,
                dispatched: 0,
                head_since: Duration::ZERO,
                killed_for: None,
            },
        );
        out.push(Action::Spawn(id));
    }

    /// A new task of `items` items. In any mode but `Running` it ends at once with
    /// `Terminated` (the pool refuses work before it gets here; this keeps the
    /// invariant that every task ends).
    pub fn submit(&mut self, task: TaskId, items: u32, now: Duration, out: &mut Vec<Action>) {
        if self.mode != Mode::Running {
            out.push(Action::Finish(task, Finished::Failed(Failure::Terminated)));
            return;
        }
        self.tasks.insert(
            task,
            Task {
                items: items.max(1),
                deaths: 0,
            },
        );
        self.queue.push_back(task);
        self.pump(now, out);
    }

    /// Cancels a task that has not been dispatched; returns whether it was.
    pub fn cancel(&mut self, task: TaskId, out: &mut Vec<Action>) -> bool {
        let Some(pos) = self.queue.iter().position(|&t| t == task) else {
            return false;
        };
        self.queue.remove(pos);
        self.tasks.remove(&task);
        out.push(Action::Finish(task, Finished::Failed(Failure::Cancelled)));
        self.maybe_retire_idle(out);
        true
    }

    /// The worker finished starting (its initializer ran).
    pub fn ready(&mut self, worker: WorkerId, now: Duration, out: &mut Vec<Action>) {
        if let Some(w) = self.workers.get_mut(&worker)
            && w.phase == Phase::Starting
        {
            w.phase = Phase::Ready;
            if self.mode == Mode::Closed && self.queue.is_empty() {
                w.phase = Phase::Retiring;
                out.push(Action::Retire(worker));
            }
        }
        self.pump(now, out);
    }

    /// The worker answered `task` (the head of its in-flight list).
    pub fn done(&mut self, worker: WorkerId, task: TaskId, now: Duration, out: &mut Vec<Action>) {
        let Some(w) = self.workers.get_mut(&worker) else {
            return;
        };
        let Some(pos) = w.inflight.iter().position(|&t| t == task) else {
            return;
        };
        w.inflight.remove(pos);
        let items = self.tasks.get(&task).map_or(1, |t| u64::from(t.items));
        w.load = w.load.saturating_sub(items);
        let ran = now.saturating_sub(w.head_since);
        w.head_since = now;
        if let Some(t) = self.tasks.remove(&task) {
            let sample = ran.as_nanos() as f64 / f64::from(t.items);
            self.per_item_ns = Some(match self.per_item_ns {
                None => sample,
                Some(avg) => avg * 0.8 + sample * 0.2,
            });
            out.push(Action::Finish(task, Finished::Done));
        }
        self.pump(now, out);
        self.maybe_retire_idle(out);
    }

    /// The worker asked to be replaced (its memory passed the pool's limit): it is
    /// retired as at `max_tasks_per_worker`, taking no more tasks, finishing those it
    /// holds, and a replacement starts while there is work or the pool runs.
    pub fn retire(&mut self, worker: WorkerId, out: &mut Vec<Action>) {
        let Some(w) = self.workers.get_mut(&worker) else {
            return;
        };
        if w.phase != Phase::Ready {
            return;
        }
        w.phase = Phase::Retiring;
        out.push(Action::Retire(worker));
        if self.mode == Mode::Running || !self.queue.is_empty() {
            self.spawn(out);
        }
    }

    /// The worker exited (for whatever reason, including being told to).
    pub fn exited(
        &mut self,
        worker: WorkerId,
        reason: &ExitReason,
        now: Duration,
        out: &mut Vec<Action>,
    ) {
        let Some(mut w) = self.workers.remove(&worker) else {
            return;
        };
        if self.mode == Mode::Terminated || self.mode == Mode::Broken {
            return;
        }
        if w.phase == Phase::Starting
            && let Err(exceeded) = self.start_failures.add(self.cfg.start_intensity, now)
        {
            out.push(Action::Broke(exceeded));
            self.fail_everything(
                Mode::Broken,
                Failure::Broken {
                    reason: reason.clone(),
                },
                out,
            );
            return;
        }
        match (w.inflight.pop_front(), w.killed_for) {
            (Some(head), Some(late)) if late != head => {
                // The timed-out task answered just before the kill; the one after it
                // died of our kill, not of itself: it runs again, uncounted.
                w.inflight.push_front(head);
            }
            (Some(head), killed_for) => {
                let timed_out = killed_for == Some(head);
                self.after_death(worker, head, timed_out, reason, out);
            }
            (None, _) => {}
        }
        // The rest never started: back to the front of the queue, in order.
        while let Some(t) = w.inflight.pop_back() {
            self.queue.push_front(t);
        }
        let replace = match self.mode {
            Mode::Running => w.phase != Phase::Retiring,
            Mode::Closed => !self.queue.is_empty() && self.live_workers() < self.cfg.processes,
            _ => false,
        };
        if replace {
            self.spawn(out);
        }
        self.pump(now, out);
        self.maybe_retire_idle(out);
    }

    fn live_workers(&self) -> usize {
        self.workers
            .values()
            .filter(|w| w.phase != Phase::Retiring)
            .count()
    }

    fn after_death(
        &mut self,
        worker: WorkerId,
        task: TaskId,
        timed_out: bool,
        reason: &ExitReason,
        out: &mut Vec<Action>,
    ) {
        let Some(t) = self.tasks.get_mut(&task) else {
            return;
        };
        if timed_out {
            let limit = self.cfg.task_timeout.unwrap_or_default() * t.items;
            self.tasks.remove(&task);
            out.push(Action::Finish(
                task,
                Finished::Failed(Failure::Timeout { worker, limit }),
            ));
            return;
        }
        t.deaths += 1;
        match self.cfg.retry.after_death(t.deaths) {
            AfterDeath::Retry => self.queue.push_front(task),
            AfterDeath::Fail => {
                self.tasks.remove(&task);
                out.push(Action::Finish(
                    task,
                    Finished::Failed(Failure::WorkerDied {
                        worker,
                        reason: reason.clone(),
                    }),
                ));
            }
            AfterDeath::Quarantine => {
                let deaths = t.deaths;
                self.tasks.remove(&task);
                out.push(Action::Finish(
                    task,
                    Finished::Failed(Failure::Quarantined {
                        deaths,
                        reason: reason.clone(),
                    }),
                ));
            }
        }
    }

    /// When the next timeout falls due, if any task is running under one.
    pub fn next_deadline(&self) -> Option<Duration> {
        let limit = self.cfg.task_timeout?;
        self.workers
            .values()
            .filter(|w| w.killed_for.is_none())
            .filter_map(|w| {
                let head = w.inflight.front()?;
                let items = self.tasks.get(head)?.items;
                Some(w.head_since + limit * items)
            })
            .min()
    }

    /// Kills the workers whose running task is past its timeout.
    pub fn tick(&mut self, now: Duration, out: &mut Vec<Action>) {
        let Some(limit) = self.cfg.task_timeout else {
            return;
        };
        for (&id, w) in self.workers.iter_mut() {
            if w.killed_for.is_some() {
                continue;
            }
            let Some(&head) = w.inflight.front() else {
                continue;
            };
            let Some(t) = self.tasks.get(&head) else {
                continue;
            };
            if now >= w.head_since + limit * t.items {
                w.killed_for = Some(head);
                out.push(Action::Kill(id));
            }
        }
    }

    /// No new tasks; the workers retire once the queue is empty.
    pub fn close(&mut self, out: &mut Vec<Action>) {
        if self.mode == Mode::Running {
            self.mode = Mode::Closed;
            self.maybe_retire_idle(out);
        }
    }

    /// Fails every task that has not ended and kills every worker.
    pub fn terminate(&mut self, out: &mut Vec<Action>) {
        if self.mode == Mode::Running || self.mode == Mode::Closed {
            self.fail_everything(Mode::Terminated, Failure::Terminated, out);
        }
    }

    fn fail_everything(&mut self, mode: Mode, why: Failure, out: &mut Vec<Action>) {
        self.mode = mode;
        let mut ids: Vec<TaskId> = self.queue.drain(..).collect();
        for w in self.workers.values_mut() {
            ids.extend(w.inflight.drain(..));
            w.load = 0;
        }
        ids.sort_unstable();
        for id in ids {
            self.tasks.remove(&id);
            out.push(Action::Finish(id, Finished::Failed(why.clone())));
        }
        for &id in self.workers.keys() {
            out.push(Action::Kill(id));
        }
    }

    fn maybe_retire_idle(&mut self, out: &mut Vec<Action>) {
        if self.mode != Mode::Closed || !self.queue.is_empty() {
            return;
        }
        for (&id, w) in self.workers.iter_mut() {
            if w.phase == Phase::Ready && w.inflight.is_empty() {
                w.phase = Phase::Retiring;
                out.push(Action::Retire(id));
            }
        }
    }

    /// Hands queued tasks to ready workers, least loaded first, up to the window.
    fn pump(&mut self, now: Duration, out: &mut Vec<Action>) {
        while !self.queue.is_empty() {
            let Some((&id, _)) = self
                .workers
                .iter()
                .filter(|(_, w)| {
                    w.phase == Phase::Ready && w.killed_for.is_none() && self.has_room(w)
                })
                .min_by_key(|(_, w)| w.inflight.len())
            else {
                break;
            };
            let task = self.queue.pop_front().expect("queue is not empty");
            let w = self.workers.get_mut(&id).expect("worker exists");
            if w.inflight.is_empty() {
                w.head_since = now;
            }
            w.inflight.push_back(task);
            w.load += self.tasks.get(&task).map_or(1, |t| u64::from(t.items));
            w.dispatched += 1;
            out.push(Action::Dispatch { worker: id, task });
            if self
                .cfg
                .max_tasks_per_worker
                .is_some_and(|max| w.dispatched >= max)
            {
                w.phase = Phase::Retiring;
                out.push(Action::Retire(id));
                if self.mode == Mode::Running || !self.queue.is_empty() {
                    self.spawn(out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
}
