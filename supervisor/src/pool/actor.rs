//! The pool actor: one task that owns the scheduler and the workers' sockets.
//!
//! Its mailbox has two doors: requests from the pool's handles (closed when the last
//! handle is dropped, which closes the pool) and events from the workers' tasks (each
//! worker has a task that starts it, reads its socket and reports its exit, in that
//! order, so a worker's last answers always arrive before its death).

use std::collections::HashMap;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use multiproc_core::scheduler::{Action, Failure, Finished, Scheduler, SchedulerConfig, WorkerId};
use multiproc_core::{Exhausted, ExitReason};
use multiproc_transport::{Connection, FrameDecoder};
use tokio::net::UnixStream;
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
    /// A worker started, or did not: how it ended, and the limit that refused it
    /// when the system had no room for it.
    Started(WorkerId, Result<Started, (ExitReason, Option<Exhausted>)>),
    Frames(WorkerId, Vec<Vec<u8>>),
    Exited(WorkerId, ExitReason),
}

struct Started {
    process: Arc<Process>,
    pid: u32,
    to_worker: Outbox,
}

/// Frames for one worker. A task for an idle worker is written at once by whoever
/// dispatches it (often the caller's own thread: no task switch on the way); the rest
/// go to the worker's writer task, which writes many per system call.
struct Outbox {
    stream: Arc<UnixStream>,
    queued: Arc<AtomicUsize>,
    tx: mpsc::UnboundedSender<Arc<Vec<u8>>>,
}

impl Outbox {
    fn send(&self, frame: Arc<Vec<u8>>, direct: bool) {
        let mut frame = frame;
        if direct && self.queued.load(Ordering::Acquire) == 0 {
            match self.stream.try_write(&frame) {
                Ok(n) if n == frame.len() => return,
                Ok(n) => frame = Arc::new(frame[n..].to_vec()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                // The worker is gone; its exit is on its way to the actor.
                Err(_) => return,
            }
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        let _ = self.tx.send(frame);
    }
}

/// How workers are launched.
pub(crate) struct Launch {
    pub init: Option<(String, Vec<u8>)>,
    pub method: StartMethod,
    pub prefix: String,
    /// The pool link's frame limit, both ways.
    pub max_frame_len: usize,
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

pub(crate) struct PoolActor {
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
    /// The limit that refused the last worker that failed to start, if one did.
    last_exhausted: Option<Exhausted>,
    exit_frame: Arc<Vec<u8>>,
}

/// The actor's state. Its own task handles the workers' events, timeouts and the
/// mailbox; a caller submitting work takes the lock and dispatches it itself.
pub(crate) type Core = Arc<Mutex<PoolActor>>;

fn lock(core: &Core) -> std::sync::MutexGuard<'_, PoolActor> {
    core.lock().unwrap_or_else(|e| e.into_inner())
}

/// Submits chunks from the caller's thread.
pub(crate) fn submit(core: &Core, tasks: Vec<NewTask>) {
    let mut actor = lock(core);
    let mut out = Vec::new();
    let now = actor.now();
    actor.submit(tasks, now, &mut out);
    actor.act(out);
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
    let actor = PoolActor {
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
        last_exhausted: None,
        exit_frame: Arc::new(
            wire::finish(wire::start(wire::EXIT, 0, "", 0), usize::MAX).expect("no limit"),
        ),
    };
    let core = Arc::new(Mutex::new(actor));
    lock(&core).act(actions);
    runtime::handle().spawn(run(Arc::clone(&core), requests, events));
    (tx, core)
}

async fn run(
    core: Core,
    mut requests: mpsc::UnboundedReceiver<Request>,
    mut events: mpsc::UnboundedReceiver<Event>,
) {
    let mut handles_open = true;
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
            Event::Started(w, Err((reason, exhausted))) => {
                tracing::warn!(%reason, "a pool worker failed to start");
                self.last_exit = reason.clone();
                self.last_exhausted = exhausted;
                self.sched.exited(w, &reason, now, out);
            }
            Event::Frames(w, frames) => {
                for frame in frames {
                    match wire::split(&frame) {
                        Ok((h, _)) if h.tag == wire::READY => self.sched.ready(w, now, out),
                        Ok((h, _)) if h.tag == wire::DONE => {
                            let task = h.task;
                            if self.tasks.contains_key(&task) {
                                self.answers.insert(task, Done { frame });
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
                    let frame = self.tasks.get(&task).map(|t| Arc::clone(&t.frame));
                    let to = self.workers.get(&worker).and_then(|s| s.started.as_ref());
                    if let (Some(frame), Some(to)) = (frame, to) {
                        // Straight to an idle worker; behind others, batched.
                        to.to_worker.send(frame, self.sched.in_flight(worker) <= 1);
                    }
                }
                Action::Retire(w) => {
                    if let Some(to) = self.workers.get(&w).and_then(|s| s.started.as_ref()) {
                        to.to_worker.send(Arc::clone(&self.exit_frame), false);
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
                let exhausted = match &e {
                    multiproc_transport::Error::Exhausted(x) => Some(x.clone()),
                    _ => None,
                };
                let reason = ExitReason::Failed {
                    message: format!("cannot make the worker's socket: {e}"),
                };
                let _ = events.send(Event::Started(w, Err((reason, exhausted))));
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
            max_frame_len: launch.max_frame_len,
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
                let exhausted = match &e {
                    crate::Error::Exhausted { source, .. } => Some(source.clone()),
                    _ => None,
                };
                let reason = ExitReason::Failed {
                    message: e.to_string(),
                };
                let _ = events.send(Event::Started(w, Err((reason, exhausted))));
                return;
            }
            let process = Arc::new(process);
            let pid = process.pid().unwrap_or(0);
            let stream = match into_stream(mine) {
                Ok(stream) => Arc::new(stream),
                Err(e) => {
                    tracing::error!(error = %e, "cannot use a pool worker's socket; killing it");
                    let _ = process.kill();
                    let reason = process.join().await.unwrap_or(ExitReason::Killed);
                    let _ = events.send(Event::Started(w, Err((reason, None))));
                    return;
                }
            };
            let (tx, frames) = mpsc::unbounded_channel();
            let queued = Arc::new(AtomicUsize::new(0));
            runtime::handle().spawn(write_frames(
                Arc::clone(&stream),
                frames,
                Arc::clone(&queued),
            ));
            let started = Started {
                process: Arc::clone(&process),
                pid,
                to_worker: Outbox {
                    stream: Arc::clone(&stream),
                    queued,
                    tx,
                },
            };
            if events.send(Event::Started(w, Ok(started))).is_err() {
                let _ = process.kill();
                return;
            }
            let reason = read_frames(w, &stream, &process, &events, launch.max_frame_len).await;
            let _ = events.send(Event::Exited(w, reason));
        });
    }
}

fn into_stream(conn: Connection) -> std::io::Result<UnixStream> {
    let fd = conn.into_owned_fd().map_err(std::io::Error::other)?;
    let std = StdUnixStream::from(fd);
    std.set_nonblocking(true)?;
    let _enter = runtime::handle().enter();
    UnixStream::from_std(std)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Writes the frames queued for a worker, many per system call when they queue up.
async fn write_frames(
    stream: Arc<UnixStream>,
    mut frames: mpsc::UnboundedReceiver<Arc<Vec<u8>>>,
    queued: Arc<AtomicUsize>,
) {
    const BATCH: usize = 256 * 1024;
    let mut buf: Vec<u8> = Vec::new();
    while let Some(first) = frames.recv().await {
        let mut taken = 1;
        buf.extend_from_slice(&first);
        while buf.len() < BATCH {
            match frames.try_recv() {
                Ok(frame) => {
                    buf.extend_from_slice(&frame);
                    taken += 1;
                }
                Err(_) => break,
            }
        }
        if write_all(&stream, &buf).await.is_err() {
            return;
        }
        buf.clear();
        queued.fetch_sub(taken, Ordering::AcqRel);
    }
}

async fn write_all(stream: &UnixStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads a worker's frames until it exits; returns how it ended. Whatever it wrote
/// before it died is read and reported first.
async fn read_frames(
    w: WorkerId,
    rd: &UnixStream,
    process: &Process,
    events: &mpsc::UnboundedSender<Event>,
    max_frame_len: usize,
) -> ExitReason {
    let mut decoder = FrameDecoder::new(max_frame_len);
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
