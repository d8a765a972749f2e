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

use crate::{AfterDeath, ExitReason, RestartIntensity, RestartWindow, RetryPolicy};

mod action;

pub use action::{Action, Failure, Finished, Mode, TaskId, WorkerId};

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
mod tests;
