//! The pool actor: one task that owns the scheduler and the workers' sockets.
//!
//! Its mailbox has two doors: requests from the pool's handles (closed when the last
//! handle is dropped, which closes the pool) and events from the workers' tasks (each
//! worker has a task that starts it, reads its socket and reports its exit, in that
//! order, so a worker's last answers always arrive before its death).

use std::collections::HashMap;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use multiproc_core::ExitReason;
use multiproc_core::scheduler::{Action, Failure, Finished, Scheduler, SchedulerConfig, WorkerId};
use multiproc_transport::{Connection, FrameDecoder, MAX_FRAME_LEN};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::worker::{Setup, worker_entry};
use super::{
    BROKEN, ChunkFailure, Done, NewTask, PoolError, ReplyTo, Shared, TaskError, WorkerInfo, wire,
};
use crate::{Process, StartMethod, runtime};

/// What the pool's handles ask.
pub(crate) enum Request {
    Submit(Vec<NewTask>),
    Cancel(u64, oneshot::Sender<bool>),
    Close,
    Terminate,
    Join(oneshot::Sender<()>),
    Workers(oneshot::Sender<Vec<WorkerInfo>>),
}

/// What the workers' tasks report.
enum Event {
    Started(WorkerId, Result<Started, ExitReason>),
    Frames(WorkerId, Vec<Vec<u8>>),
    Exited(WorkerId, ExitReason),
}

struct Started {
    process: Arc<Process>,
    pid: u32,
    to_worker: mpsc::UnboundedSender<Arc<Vec<u8>>>,
}

/// How workers are launched.
pub(crate) struct Launch {
    pub init: Option<(String, Vec<u8>)>,
    pub method: StartMethod,
    pub prefix: String,
}

struct WorkerSlot {
    name: String,
    started: Option<Started>,
    kill_on_start: bool,
}

struct TaskSlot {
    frame: Arc<Vec<u8>>,
    reply: ReplyTo,
}

struct PoolActor {
    sched: Scheduler,
    shared: Arc<Shared>,
    launch: Arc<Launch>,
    events: mpsc::UnboundedSender<Event>,
    epoch: Instant,
    tasks: HashMap<u64, TaskSlot>,
    workers: HashMap<WorkerId, WorkerSlot>,
    answers: HashMap<u64, Done>,
    joiners: Vec<oneshot::Sender<()>>,
    last_exit: ExitReason,
    exit_frame: Arc<Vec<u8>>,
}

/// Starts the actor; returns its request mailbox.
pub(crate) fn start(
    cfg: SchedulerConfig,
    launch: Launch,
    shared: Arc<Shared>,
) -> mpsc::UnboundedSender<Request> {
    let (tx, requests) = mpsc::unbounded_channel();
    let (events_tx, events) = mpsc::unbounded_channel();
    let mut actions = Vec::new();
    let sched = Scheduler::new(cfg, &mut actions);
    let mut actor = PoolActor {
        sched,
        shared,
        launch: Arc::new(launch),
        events: events_tx,
        epoch: Instant::now(),
        tasks: HashMap::new(),
        workers: HashMap::new(),
        answers: HashMap::new(),
        joiners: Vec::new(),
        last_exit: ExitReason::Normal,
        exit_frame: Arc::new(wire::finish(wire::start(wire::EXIT, 0, "", 0)).expect("small")),
    };
    runtime::handle().spawn(async move {
        actor.act(actions);
        actor.run(requests, events).await;
    });
    tx
}

impl PoolActor {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    async fn run(
        &mut self,
        mut requests: mpsc::UnboundedReceiver<Request>,
        mut events: mpsc::UnboundedReceiver<Event>,
    ) {
        let mut handles_open = true;
        while !self.sched.is_finished() {
            let deadline = self.sched.next_deadline().map(|d| self.epoch + d);
            let mut out = Vec::new();
            tokio::select! {
                biased;
                event = events.recv() => {
                    let Some(event) = event else { break };
                    self.on_event(event, &mut out);
                }
                request = requests.recv(), if handles_open => match request {
                    Some(request) => self.on_request(request, &mut out),
                    None => {
                        // Every handle is gone: close, so submitted work still finishes.
                        handles_open = false;
                        self.sched.close(&mut out);
                    }
                },
                () = sleep_until(deadline) => {
                    let now = self.now();
                    self.sched.tick(now, &mut out);
                }
            }
            self.act(out);
        }
        for joiner in self.joiners.drain(..) {
            let _ = joiner.send(());
        }
        // Late requests (a join after the end) find the mailbox closed and return.
    }

    fn on_request(&mut self, request: Request, out: &mut Vec<Action>) {
        let now = self.now();
        match request {
            Request::Submit(tasks) => {
                for t in tasks {
                    let (id, items) = (t.id, t.items);
                    self.tasks.insert(
                        id,
                        TaskSlot {
                            frame: t.frame,
                            reply: t.reply,
                        },
                    );
                    self.sched.submit(id, items, now, out);
                }
            }
            Request::Cancel(id, reply) => {
                let _ = reply.send(self.sched.cancel(id, out));
            }
            Request::Close => self.sched.close(out),
            Request::Terminate => self.sched.terminate(out),
            Request::Join(tx) => self.joiners.push(tx),
            Request::Workers(tx) => {
                let mut list: Vec<WorkerInfo> = self
                    .workers
                    .values()
                    .filter_map(|w| {
                        w.started.as_ref().map(|s| WorkerInfo {
                            name: w.name.clone(),
                            pid: s.pid,
                        })
                    })
                    .collect();
                list.sort_by_key(|w| w.pid);
                let _ = tx.send(list);
            }
        }
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
            Event::Started(w, Err(reason)) => {
                tracing::warn!(%reason, "a pool worker failed to start");
                self.last_exit = reason.clone();
                self.sched.exited(w, &reason, now, out);
            }
            Event::Frames(w, frames) => {
                for frame in frames {
                    match wire::split(&frame) {
                        Ok((h, _)) if h.tag == wire::READY => self.sched.ready(w, now, out),
                        Ok((h, _)) if h.tag == wire::DONE => {
                            let task = h.task;
                            if self.tasks.contains_key(&task) {
                                self.answers.insert(task, Done { frame, at: 0 });
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
                self.last_exit = reason.clone();
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
                    let frame = self.tasks.get(&task).map(|t| Arc::clone(&t.frame));
                    let to = self.workers.get(&worker).and_then(|s| s.started.as_ref());
                    if let (Some(frame), Some(to)) = (frame, to) {
                        let _ = to.to_worker.send(frame);
                    }
                }
                Action::Retire(w) => {
                    if let Some(to) = self.workers.get(&w).and_then(|s| s.started.as_ref()) {
                        let _ = to.to_worker.send(Arc::clone(&self.exit_frame));
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
                    slot.reply.send(outcome);
                }
                Action::Broke(exceeded) => {
                    tracing::error!(reason = %self.last_exit, %exceeded, "pool workers keep failing to start; the pool gives up");
                    *self.shared.broken.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(self.last_exit.clone());
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
            Failure::Broken { reason } => ChunkFailure::Pool(PoolError::Broken { reason }),
        }
    }

    fn kill(&mut self, w: WorkerId) {
        if let Some(slot) = self.workers.get_mut(&w) {
            match &slot.started {
                Some(s) => {
                    let _ = s.process.kill();
                }
                None => slot.kill_on_start = true,
            }
        }
    }

    fn spawn(&mut self, w: WorkerId) {
        let launch = Arc::clone(&self.launch);
        let events = self.events.clone();
        let pair = multiproc_transport::pipe(true);
        let (mine, theirs) = match pair {
            Ok(pair) => pair,
            Err(e) => {
                let _ = events.send(Event::Started(
                    w,
                    Err(ExitReason::Failed {
                        message: format!("cannot make the worker's socket: {e}"),
                    }),
                ));
                self.workers.insert(
                    w,
                    WorkerSlot {
                        name: format!("worker {w}"),
                        started: None,
                        kill_on_start: false,
                    },
                );
                return;
            }
        };
        let setup = Setup {
            init: launch.init.clone(),
        };
        let process = Process::with_entry(worker_entry(), &(theirs, setup));
        let name = process.identity().default_name(&launch.prefix);
        let mut process = process
            .named(name.clone())
            .start_method(launch.method)
            .supervised();
        self.workers.insert(
            w,
            WorkerSlot {
                name,
                started: None,
                kill_on_start: false,
            },
        );
        runtime::handle().spawn(async move {
            if let Err(e) = process.start().await {
                let _ = events.send(Event::Started(
                    w,
                    Err(ExitReason::Failed {
                        message: e.to_string(),
                    }),
                ));
                return;
            }
            let process = Arc::new(process);
            let pid = process.pid().unwrap_or(0);
            let (rd, wr) = match split(mine) {
                Ok(halves) => halves,
                Err(e) => {
                    tracing::error!(error = %e, "cannot use a pool worker's socket; killing it");
                    let _ = process.kill();
                    let reason = process.join().await.unwrap_or(ExitReason::Killed);
                    let _ = events.send(Event::Started(w, Err(reason)));
                    return;
                }
            };
            let (to_worker, frames) = mpsc::unbounded_channel();
            runtime::handle().spawn(write_frames(wr, frames));
            let started = Started {
                process: Arc::clone(&process),
                pid,
                to_worker,
            };
            if events.send(Event::Started(w, Ok(started))).is_err() {
                let _ = process.kill();
                return;
            }
            let reason = read_frames(w, rd, &process, &events).await;
            let _ = events.send(Event::Exited(w, reason));
        });
    }
}

fn split(conn: Connection) -> std::io::Result<(OwnedReadHalf, OwnedWriteHalf)> {
    let fd = conn.into_owned_fd().map_err(std::io::Error::other)?;
    let std = StdUnixStream::from(fd);
    std.set_nonblocking(true)?;
    let _enter = runtime::handle().enter();
    Ok(tokio::net::UnixStream::from_std(std)?.into_split())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Writes the frames the actor sends, many per write when they queue up.
async fn write_frames(mut wr: OwnedWriteHalf, mut frames: mpsc::UnboundedReceiver<Arc<Vec<u8>>>) {
    const BATCH: usize = 256 * 1024;
    let mut buf: Vec<u8> = Vec::new();
    while let Some(first) = frames.recv().await {
        let mut next = Some(first);
        while let Some(frame) = next.take() {
            if frame.len() >= BATCH / 4 {
                if !buf.is_empty() && wr.write_all(&buf).await.is_err() {
                    return;
                }
                buf.clear();
                if wr.write_all(&frame).await.is_err() {
                    return;
                }
            } else {
                buf.extend_from_slice(&frame);
            }
            if buf.len() < BATCH {
                next = frames.try_recv().ok();
            }
        }
        if !buf.is_empty() && wr.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
    }
}

/// Reads a worker's frames until it exits; returns how it ended. Whatever it wrote
/// before it died is read and reported first.
async fn read_frames(
    w: WorkerId,
    rd: OwnedReadHalf,
    process: &Process,
    events: &mpsc::UnboundedSender<Event>,
) -> ExitReason {
    let mut decoder = FrameDecoder::new(MAX_FRAME_LEN);
    let exit = process.join();
    tokio::pin!(exit);
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            readable = rd.readable(), if open => {
                if readable.is_err() {
                    open = false;
                    continue;
                }
                match rd.try_read(decoder.read_buf()) {
                    Ok(0) => open = false,
                    Ok(n) => {
                        decoder.commit(n);
                        if !forward(w, &mut decoder, events) {
                            let _ = process.kill();
                            open = false;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => open = false,
                }
            }
            reason = &mut exit => {
                // Drain what it wrote before it went.
                if open {
                    loop {
                        match rd.try_read(decoder.read_buf()) {
                            Ok(n) if n > 0 => {
                                decoder.commit(n);
                                if !forward(w, &mut decoder, events) {
                                    break;
                                }
                            }
                            _ => break,
                        }
                    }
                }
                return reason.unwrap_or(ExitReason::Killed);
            }
        }
    }
}

/// Sends the complete frames to the actor; false if the worker sent garbage.
fn forward(w: WorkerId, decoder: &mut FrameDecoder, events: &mpsc::UnboundedSender<Event>) -> bool {
    let mut frames = Vec::new();
    let ok = loop {
        match decoder.next_frame() {
            Ok(Some(frame)) => frames.push(frame.to_vec()),
            Ok(None) => break true,
            Err(e) => {
                tracing::error!(worker = w, error = %e, "bad frame from a pool worker");
                break false;
            }
        }
    };
    if !frames.is_empty() {
        let _ = events.send(Event::Frames(w, frames));
    }
    ok
}
