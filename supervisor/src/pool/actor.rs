//! The pool actor: the scheduler with the tables of tasks and workers, behind one lock,
//! and the task that drives it.
//!
//! Its mailbox has two doors: requests from the pool's handles (closed when the last
//! handle is dropped, which closes the pool) and events from the workers' tasks (see
//! `launch.rs`: a worker's last answers always arrive before its death).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, Weak};
use std::time::Duration;

use multiproc_core::scheduler::{
    Action, Failure, Finished, IdHash, Scheduler, SchedulerConfig, WorkerId,
};
use multiproc_core::{Exhausted, ExitReason};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

mod workers;

use super::chunk::{ChunkFailure, Done, NewTask, ReplyTo};
use super::launch::Launch;
use super::report::{Event, Report, Started};
use super::shared::{BROKEN, CLOSED, RUNNING, Shared};
use super::{PoolError, TaskError, WorkerInfo, wire};
use crate::runtime;
use crate::runtime::logging::carry::Carried;

/// What the pool's handles ask.
pub(crate) enum Request {
    Submit(Vec<NewTask>),
    Cancel(u64, oneshot::Sender<bool>),
    Close,
    Terminate,
    Join(oneshot::Sender<()>),
    Workers(oneshot::Sender<Vec<WorkerInfo>>),
    /// Answered once every worker is up (started and ready for a task), or with the
    /// reason none will be.
    WaitReady(oneshot::Sender<Result<(), PoolError>>),
}

struct WorkerSlot {
    name: String,
    /// Where it was placed: `None` for this host.
    node: Option<String>,
    started: Option<Started>,
    /// It said it is ready for a task (its initializer, if any, has run).
    ready: bool,
    kill_on_start: bool,
    /// Tasks it answered.
    tasks_done: u64,
}

struct TaskSlot {
    frame: Arc<Vec<u8>>,
    reply: ReplyTo,
    /// Its hold on its caller's span: let go of once the records its worker stamped
    /// are replayed.
    carried: Option<Carried>,
    /// When the pool was handed it, and whether a worker was sent it yet: its
    /// queue wait and its duration.
    #[cfg(feature = "metrics")]
    submitted: (std::time::Instant, bool),
}

pub(crate) struct PoolActor {
    /// Handed to the workers' tasks.
    me: WeakCore,
    sched: Scheduler,
    shared: Arc<Shared>,
    launch: Arc<Launch>,
    events: mpsc::UnboundedSender<Event>,
    epoch: Instant,
    tasks: HashMap<u64, TaskSlot, IdHash>,
    workers: HashMap<WorkerId, WorkerSlot>,
    answers: HashMap<u64, Done, IdHash>,
    joiners: Vec<oneshot::Sender<()>>,
    ready_waiters: Vec<oneshot::Sender<Result<(), PoolError>>>,
    last_exit: ExitReason,
    /// The limit that refused the last worker that failed to start, if one did.
    last_exhausted: Option<Exhausted>,
    exit_frame: Arc<Vec<u8>>,
    /// The nodes seen down: a node does not come back under the same session, so no
    /// worker is placed there again, even before the node's handle has noticed.
    lost_nodes: std::collections::HashSet<String>,
    /// Wakes the pool's task when a caller's submission brought the next task deadline
    /// forward: the task sleeps until the deadline it read before.
    deadline_moved: Arc<tokio::sync::Notify>,
}

/// The actor's state. Its own task handles the workers' events, timeouts and the
/// mailbox; a caller submitting work takes the lock and dispatches it itself.
pub(crate) type Core = Arc<Mutex<PoolActor>>;

/// The pools of this process whose actor lives, for a snapshot of the tree: weak, so
/// that the list keeps none alive; the gone are dropped at each look.
fn registry() -> std::sync::MutexGuard<'static, Vec<WeakCore>> {
    static RUNNING: std::sync::Mutex<Vec<WeakCore>> = std::sync::Mutex::new(Vec::new());
    let mut list = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    list.retain(|p| p.strong_count() > 0);
    list
}

fn note_running(core: &Core) {
    registry().push(Arc::downgrade(core));
}

/// The workers of every pool of this process.
pub(crate) fn all_workers() -> Vec<WorkerInfo> {
    let pools: Vec<Core> = registry().iter().filter_map(Weak::upgrade).collect();
    pools.iter().flat_map(|p| lock(p).worker_list()).collect()
}

/// The actor's state as the workers' tasks hold it: they must not keep it alive.
pub(super) type WeakCore = Weak<Mutex<PoolActor>>;

fn lock(core: &Core) -> std::sync::MutexGuard<'_, PoolActor> {
    core.lock().unwrap_or_else(|e| e.into_inner())
}

/// Submits chunks from the caller's thread.
pub(crate) fn submit(core: &Core, tasks: Vec<NewTask>) {
    let mut actor = lock(core);
    let mut out = Vec::new();
    let now = actor.now();
    let before = actor.sched.next_deadline();
    actor.submit(tasks, now, &mut out);
    actor.act(out);
    let after = actor.sched.next_deadline();
    if after.is_some_and(|a| before.is_none_or(|b| a < b)) {
        actor.deadline_moved.notify_one();
    }
}

/// A worker's event, handed to the actor at once, on the worker's task, under the
/// lock: the workers' tasks deliver their starts and answers this way, so an answer
/// reaches its caller without a switch to the actor's task.
impl Report for Mutex<PoolActor> {
    fn report(&self, event: Event) {
        let mut actor = self.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        let before = actor.sched.next_deadline();
        actor.on_event(event, &mut out);
        actor.act(out);
        let after = actor.sched.next_deadline();
        // The actor's task sleeps until the deadline it read before, and ends only
        // when it looks and finds the pool finished.
        if after.is_some_and(|a| before.is_none_or(|b| a < b)) || actor.sched.is_finished() {
            actor.deadline_moved.notify_one();
        }
    }
}

/// Starts the actor; returns its request mailbox and its state.
pub(crate) fn start(
    cfg: SchedulerConfig,
    launch: Launch,
    shared: Arc<Shared>,
) -> (mpsc::UnboundedSender<Request>, Core) {
    let (tx, requests) = mpsc::unbounded_channel();
    let (events_tx, events) = mpsc::unbounded_channel();
    let mut actions = Vec::new();
    let sched = Scheduler::new(cfg, &mut actions);
    let core = Arc::new_cyclic(|me| {
        Mutex::new(PoolActor {
            me: me.clone(),
            sched,
            shared,
            launch: Arc::new(launch),
            events: events_tx,
            epoch: Instant::now(),
            tasks: HashMap::default(),
            workers: HashMap::new(),
            answers: HashMap::default(),
            joiners: Vec::new(),
            ready_waiters: Vec::new(),
            last_exit: ExitReason::Normal,
            last_exhausted: None,
            deadline_moved: Arc::new(tokio::sync::Notify::new()),
            lost_nodes: Default::default(),
            exit_frame: Arc::new(
                wire::finish(wire::start(wire::EXIT, 0, "", 0, wire::SERDE), usize::MAX)
                    .expect("no limit"),
            ),
        })
    });
    lock(&core).act(actions);
    note_running(&core);
    runtime::handle().spawn(run(Arc::clone(&core), requests, events));
    (tx, core)
}

async fn run(
    core: Core,
    mut requests: mpsc::UnboundedReceiver<Request>,
    mut events: mpsc::UnboundedReceiver<Event>,
) {
    let mut handles_open = true;
    let deadline_moved = Arc::clone(&lock(&core).deadline_moved);
    loop {
        let deadline = {
            let actor = lock(&core);
            if actor.sched.is_finished() {
                break;
            }
            actor.sched.next_deadline().map(|d| actor.epoch + d)
        };
        let mut out = Vec::new();
        tokio::select! {
            biased;
            event = events.recv() => {
                let Some(event) = event else { break };
                let mut actor = lock(&core);
                actor.on_event(event, &mut out);
                actor.act(out);
            }
            request = requests.recv(), if handles_open => {
                let mut actor = lock(&core);
                match request {
                    Some(request) => {
                        let mailed = matches!(request, Request::Submit(_));
                        actor.on_request(request, &mut out);
                        if mailed {
                            actor.shared.mailed.fetch_sub(1, Ordering::AcqRel);
                        }
                    }
                    None => {
                        // Every handle is gone: close, so submitted work still finishes.
                        handles_open = false;
                        actor.sched.close(&mut out);
                    }
                }
                actor.act(out);
            }
            () = deadline_moved.notified() => {}
            () = sleep_until(deadline) => {
                let mut actor = lock(&core);
                let now = actor.now();
                actor.sched.tick(now, &mut out);
                actor.act(out);
            }
        }
    }
    for joiner in lock(&core).joiners.drain(..) {
        let _ = joiner.send(());
    }
    // Late requests (a join after the end) find the mailbox closed and return.
}

impl PoolActor {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn submit(&mut self, tasks: Vec<NewTask>, now: Duration, out: &mut Vec<Action>) {
        for t in tasks {
            let (id, items) = (t.id, t.items);
            self.tasks.insert(
                id,
                TaskSlot {
                    frame: t.frame,
                    reply: t.reply,
                    carried: t.carried,
                    #[cfg(feature = "metrics")]
                    submitted: (std::time::Instant::now(), false),
                },
            );
            self.sched.submit(id, items, now, out);
        }
    }

    fn on_request(&mut self, request: Request, out: &mut Vec<Action>) {
        let now = self.now();
        match request {
            Request::Submit(tasks) => {
                self.submit(tasks, now, out);
            }
            Request::Cancel(id, reply) => {
                let _ = reply.send(self.sched.cancel(id, out));
            }
            Request::Close => self.sched.close(out),
            Request::Terminate => self.sched.terminate(out),
            Request::Join(tx) => self.joiners.push(tx),
            Request::WaitReady(tx) => self.ready_waiters.push(tx),
            Request::Workers(tx) => {
                let _ = tx.send(self.worker_list());
            }
        }
    }

    /// The workers that started, by pid.
    pub(crate) fn worker_list(&self) -> Vec<WorkerInfo> {
        let mut list: Vec<WorkerInfo> = self
            .workers
            .values()
            .filter_map(|w| {
                w.started.as_ref().map(|s| WorkerInfo {
                    name: w.name.clone(),
                    pid: s.pid,
                    node: s.node.clone(),
                    tasks_done: w.tasks_done,
                })
            })
            .collect();
        list.sort_by(|a, b| (&a.node, a.pid).cmp(&(&b.node, b.pid)));
        list
    }

    fn on_event(&mut self, event: Event, out: &mut Vec<Action>) {
        let now = self.now();
        match event {
            Event::Started(w, Ok(started)) => match self.workers.get_mut(&w) {
                Some(slot) => {
                    if slot.kill_on_start {
                        let _ = started.process.kill();
                    }
                    slot.started = Some(started);
                }
                None => {
                    let _ = started.process.kill();
                }
            },
            Event::Started(w, Err((reason, exhausted))) => {
                tracing::warn!(%reason, "a pool worker failed to start");
                self.note_lost(&reason);
                self.last_exit = reason.clone();
                self.last_exhausted = exhausted;
                self.sched.exited(w, &reason, now, out);
            }
            Event::Frames(w, frames) => {
                for frame in frames {
                    match wire::split(&frame) {
                        Ok((h, _)) if h.tag == wire::READY => {
                            if let Some(slot) = self.workers.get_mut(&w) {
                                slot.ready = true;
                            }
                            self.sched.ready(w, now, out)
                        }
                        Ok((h, _)) if h.tag == wire::HEAVY => {
                            tracing::debug!(
                                worker = w,
                                "a pool worker passed max_rss_per_child; retiring it"
                            );
                            self.sched.retire(w, out);
                        }
                        Ok((h, _)) if h.tag == wire::DONE => {
                            let task = h.task;
                            if self.tasks.contains_key(&task) {
                                self.answers.insert(task, Done { frame });
                            }
                            if let Some(slot) = self.workers.get_mut(&w) {
                                slot.tasks_done += 1;
                            }
                            self.sched.done(w, task, now, out);
                        }
                        other => {
                            let why = match other {
                                Ok((h, _)) => format!("unknown tag {}", h.tag),
                                Err(e) => e,
                            };
                            tracing::error!(worker = w, %why, "a pool worker sent garbage; killing it");
                            self.kill(w);
                            break;
                        }
                    }
                }
            }
            Event::Exited(w, reason) => {
                if !matches!(reason, ExitReason::Normal | ExitReason::Shutdown) {
                    tracing::debug!(worker = w, %reason, "pool worker exited");
                }
                self.note_lost(&reason);
                self.last_exit = reason.clone();
                self.last_exhausted = None;
                self.sched.exited(w, &reason, now, out);
            }
        }
    }

    /// Carries out the scheduler's actions (and those they lead to).
    fn act(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Spawn(w) => self.spawn(w),
                Action::Dispatch { worker, task } => {
                    #[cfg(feature = "metrics")]
                    if let Some((at, sent)) = self.tasks.get_mut(&task).map(|t| &mut t.submitted)
                        && !std::mem::replace(sent, true)
                    {
                        crate::runtime::metrics::task_waited(at.elapsed());
                    }
                    let frame = self.tasks.get(&task).map(|t| Arc::clone(&t.frame));
                    let to = self.workers.get(&worker).and_then(|s| s.started.as_ref());
                    if let (Some(frame), Some(to)) = (frame, to) {
                        to.to_worker.send(frame);
                    }
                }
                Action::Retire(w) => {
                    if let Some(to) = self.workers.get(&w).and_then(|s| s.started.as_ref()) {
                        to.to_worker.send(Arc::clone(&self.exit_frame));
                    }
                }
                Action::Kill(w) => self.kill(w),
                Action::Finish(task, how) => {
                    let Some(slot) = self.tasks.remove(&task) else {
                        continue;
                    };
                    let outcome = match how {
                        Finished::Done => match self.answers.remove(&task) {
                            Some(done) => Ok(done),
                            None => Err(ChunkFailure::Pool(self.shared.ended_error())),
                        },
                        Finished::Failed(f) => Err(self.failure(f)),
                    };
                    #[cfg(feature = "metrics")]
                    crate::runtime::metrics::task_took(slot.submitted.0.elapsed());
                    if let Some(carried) = slot.carried {
                        let stamped = match &outcome {
                            Ok(done) => wire::split(&done.frame).map_or(0, |(h, _)| h.stamped),
                            Err(_) => 0,
                        };
                        carried.release_after(stamped);
                    }
                    slot.reply.send(outcome);
                }
                Action::Broke(exceeded) => {
                    tracing::error!(reason = %self.last_exit, %exceeded, "pool workers keep failing to start; the pool gives up");
                    *self.shared.broken.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(self.broken(self.last_exit.clone()));
                    self.shared.state.store(BROKEN, Ordering::Release);
                }
            }
        }
        // Forget workers whose exit the scheduler has seen.
        let known: Vec<WorkerId> = self.workers.keys().copied().collect();
        for w in known {
            if !self.sched.has_worker(w) {
                self.workers.remove(&w);
            }
        }
        self.answer_ready_waiters();
    }

    /// Answers the `wait_ready` calls once every worker is up, or once none will be
    /// (the pool was closed, terminated or broke).
    fn answer_ready_waiters(&mut self) {
        if self.ready_waiters.is_empty() {
            return;
        }
        let answer = match self.shared.state.load(Ordering::Acquire) {
            RUNNING => {
                let up = self
                    .workers
                    .values()
                    .filter(|w| w.ready && w.started.is_some())
                    .count();
                if up < self.shared.processes {
                    return;
                }
                Ok(())
            }
            CLOSED => Err(PoolError::Closed),
            _ => Err(self.shared.ended_error()),
        };
        for waiter in self.ready_waiters.drain(..) {
            let _ = waiter.send(answer.clone());
        }
    }

    fn failure(&self, f: Failure) -> ChunkFailure {
        let who = |w: WorkerId| {
            self.workers
                .get(&w)
                .map(|s| (s.name.clone(), s.started.as_ref().map_or(0, |s| s.pid)))
                .unwrap_or_else(|| (format!("worker {w}"), 0))
        };
        match f {
            Failure::WorkerDied { worker, reason } => {
                let (worker, pid) = who(worker);
                ChunkFailure::Task(TaskError::WorkerDied {
                    worker,
                    pid,
                    reason,
                })
            }
            Failure::Timeout { worker, limit } => {
                let (worker, pid) = who(worker);
                ChunkFailure::Task(TaskError::Timeout { worker, pid, limit })
            }
            Failure::Quarantined { deaths, reason } => {
                ChunkFailure::Task(TaskError::Quarantined { deaths, reason })
            }
            Failure::Cancelled => ChunkFailure::Task(TaskError::Cancelled),
            Failure::Terminated => ChunkFailure::Pool(self.shared.ended_error()),
            Failure::Broken { reason } => ChunkFailure::Pool(self.broken(reason)),
        }
    }

    /// Why the pool gave up: the limit that refused its workers, if that is why they
    /// failed to start, else how the last one ended.
    fn broken(&self, reason: ExitReason) -> PoolError {
        match &self.last_exhausted {
            Some(x) => PoolError::Exhausted(x.clone()),
            None => PoolError::Broken { reason },
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
