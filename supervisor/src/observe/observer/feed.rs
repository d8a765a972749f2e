//! What the observer knows and streams: a snapshot every interval with the figures
//! it adds to the history, and the log of supervision events and children's exits,
//! each sent to the live streams the moment it is known.
//!
//! # Concurrency
//!
//! One task (`run`) takes the snapshots and reads the events; the connections read
//! what it keeps. Everything it keeps sits behind one lock, under which it also sends
//! each frame, so that a stream that subscribes gets the state up to some frame and
//! every frame after it, none missed and none twice.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use multiproc_core::ExitReason;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;

use super::history::{History, Reading};
use super::json::{self, EventView};
use crate::observe::Snapshot;
use crate::runtime::exits::ChildExit;
use crate::supervision::{SupervisorEvent, SupervisorExit};

/// Entries of the event log kept for a page that opens late.
const LOG_LEN: usize = 256;
/// Processes whose figures are kept at most.
const MAX_PROCESSES: usize = 1024;
/// Frames a slow stream may fall behind before it skips the oldest.
const STREAM_BUFFER: usize = 64;

/// The observer's state and its live stream.
#[derive(Debug)]
pub(super) struct Feed {
    interval: Duration,
    samples: usize,
    program: String,
    state: Mutex<State>,
    frames: broadcast::Sender<Bytes>,
}

#[derive(Debug)]
struct State {
    /// The last snapshot's JSON.
    latest: Option<Bytes>,
    history: History,
    /// Each process's CPU share at the last snapshot, by key.
    cpu: HashMap<String, f32>,
    /// The key of each process of the last snapshot, by name.
    key_of: HashMap<String, String>,
    log: VecDeque<EventView>,
    seq: u64,
    /// The spec each supervised child's pid runs, to name its exit.
    spec_of: HashMap<u32, String>,
    /// The node each spec last ran on: exits on another node reach no local reaper,
    /// so the supervisor's word for them is logged.
    node_of: HashMap<String, Option<String>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Feed {
    /// A feed that names the program `program`, takes a snapshot every `interval`
    /// and keeps `samples` of each process.
    pub(super) fn new(program: String, interval: Duration, samples: usize) -> Feed {
        Feed {
            interval,
            samples,
            program,
            state: Mutex::new(State {
                latest: None,
                history: History::new(samples, MAX_PROCESSES),
                cpu: HashMap::new(),
                key_of: HashMap::new(),
                log: VecDeque::new(),
                seq: 0,
                spec_of: HashMap::new(),
                node_of: HashMap::new(),
            }),
            frames: broadcast::channel(STREAM_BUFFER).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn interval_ms(&self) -> u64 {
        self.interval.as_millis() as u64
    }

    /// The interval and the window of the figures over time, in milliseconds.
    fn span_ms(&self) -> (u64, u64) {
        (self.interval_ms(), self.interval_ms() * self.samples as u64)
    }

    /// `snap` as JSON, with each process's CPU share of the last round.
    pub(super) fn render(&self, snap: &Snapshot) -> Bytes {
        let state = self.lock();
        let view = json::snapshot(snap, now_ms(), &self.program, self.span_ms(), &state.cpu);
        json::to_bytes(&view)
    }

    /// The figures over time of the process `name` (its key, or the name of a process
    /// of the last snapshot), or of every process.
    pub(super) fn history(&self, name: Option<&str>) -> Option<Bytes> {
        let state = self.lock();
        let view = match name {
            None => json::history(self.interval_ms(), state.history.all()),
            Some(name) => {
                let key = match state.history.get(name) {
                    Some(_) => name.to_owned(),
                    None => state.key_of.get(name)?.clone(),
                };
                let samples = state.history.get(&key)?;
                json::history(self.interval_ms(), std::iter::once((key.as_str(), samples)))
            }
        };
        Some(json::to_bytes(&view))
    }

    /// A live stream: the frames that bring a new page up to date (the figures over
    /// time, the log, the last snapshot), then every frame from then on.
    pub(super) fn subscribe(&self) -> (Vec<Bytes>, broadcast::Receiver<Bytes>) {
        let state = self.lock();
        let history = json::history(self.interval_ms(), state.history.all());
        let mut first = vec![
            json::frame("history", &json::to_bytes(&history)),
            json::frame("backlog", &json::to_bytes(&state.log)),
        ];
        if let Some(latest) = &state.latest {
            first.push(json::frame("snapshot", latest));
        }
        (first, self.frames.subscribe())
    }

    /// Adds a snapshot taken at `now` (monotonic) to the history, and sends it.
    fn sample(&self, snap: &Snapshot, now: Duration) {
        let t = now_ms();
        let mut state = self.lock();
        let mut cpu = HashMap::new();
        state.key_of.clear();
        for p in &snap.processes {
            let key = json::key(p);
            state.key_of.insert(p.name.clone(), key.clone());
            let reading = Reading {
                pid: p.pid,
                rss: p.rss_bytes,
                cpu_time: p.cpu_time,
                mailbox: p.mailbox_depth,
            };
            if let Some(share) = state.history.record(&key, now, t, reading) {
                cpu.insert(key, share);
            }
            if let (Some(pid), Some(id)) = (p.pid, &p.supervised_as) {
                state.spec_of.insert(pid, id.clone());
            }
        }
        state.history.end_round();
        state.cpu = cpu;
        let view = json::snapshot(snap, t, &self.program, self.span_ms(), &state.cpu);
        let bytes = json::to_bytes(&view);
        let _ = self.frames.send(json::frame("snapshot", &bytes));
        state.latest = Some(bytes);
        // Pids of children that are gone are not asked about again.
        let live: HashSet<u32> = snap.processes.iter().filter_map(|p| p.pid).collect();
        state.spec_of.retain(|pid, _| live.contains(pid));
    }

    /// Logs a child's exit.
    fn child_exit(&self, exit: ChildExit) {
        let mut state = self.lock();
        let spec = state.spec_of.remove(&exit.pid);
        let mut text = format!("{} (pid {}) exited: {}", exit.name, exit.pid, exit.reason);
        if let Some(id) = &spec {
            text.push_str(&format!(" [{id}]"));
        }
        let event = EventView {
            seq: 0,
            t: now_ms(),
            kind: "exit",
            level: exit_level(&exit.reason),
            name: Some(exit.name),
            pid: Some(exit.pid),
            spec,
            node: None,
            exit_code: Some(exit.reason.exit_code()),
            reason: Some(exit.reason.to_string()),
            text,
        };
        self.log(&mut state, event);
    }

    /// Logs what a supervisor did.
    fn supervision(&self, event: SupervisorEvent) {
        let mut state = self.lock();
        let blank = EventView {
            seq: 0,
            t: now_ms(),
            kind: "",
            level: "info",
            name: None,
            pid: None,
            spec: None,
            node: None,
            reason: None,
            exit_code: None,
            text: String::new(),
        };
        let view = match event {
            SupervisorEvent::ChildStarted {
                id,
                name,
                pid,
                node,
            } => {
                state.spec_of.insert(pid, id.clone());
                state.node_of.insert(id.clone(), node.clone());
                EventView {
                    kind: "started",
                    text: format!("{id} started as {name} (pid {pid}){}", on(&node)),
                    name: Some(name),
                    pid: Some(pid),
                    spec: Some(id),
                    node,
                    ..blank
                }
            }
            SupervisorEvent::Restarted {
                id,
                name,
                pid,
                node,
            } => {
                state.spec_of.insert(pid, id.clone());
                state.node_of.insert(id.clone(), node.clone());
                EventView {
                    kind: "restarted",
                    level: "warn",
                    text: format!("{id} restarted as {name} (pid {pid}){}", on(&node)),
                    name: Some(name),
                    pid: Some(pid),
                    spec: Some(id),
                    node,
                    ..blank
                }
            }
            SupervisorEvent::ChildExited { id, reason } => {
                // A local child's exit was logged by its reaper, with its name and pid.
                let Some(Some(node)) = state.node_of.get(&id).cloned() else {
                    return;
                };
                EventView {
                    kind: "exit",
                    level: exit_level(&reason),
                    text: format!("{id} on {node} exited: {reason}"),
                    spec: Some(id),
                    node: Some(node),
                    exit_code: Some(reason.exit_code()),
                    reason: Some(reason.to_string()),
                    ..blank
                }
            }
            SupervisorEvent::Restarting { id, delay } => EventView {
                kind: "restarting",
                level: "warn",
                text: format!("{id} restarts in {} ms", delay.as_millis()),
                spec: Some(id),
                ..blank
            },
            SupervisorEvent::RestartFailed { id, error } => EventView {
                kind: "restart_failed",
                level: "error",
                text: format!("{id} failed to restart: {error}"),
                spec: Some(id),
                ..blank
            },
            SupervisorEvent::IntensityExceeded {
                restarts,
                max,
                within,
            } => EventView {
                kind: "intensity_exceeded",
                level: "error",
                text: format!(
                    "{restarts} restarts within {within:?} (at most {max}): the supervisor gives up"
                ),
                ..blank
            },
            SupervisorEvent::ShutDown { reason } => EventView {
                kind: "supervisor_down",
                level: match reason {
                    SupervisorExit::Shutdown | SupervisorExit::AutoShutdown => "info",
                    _ => "error",
                },
                text: format!("a supervisor ended: {}", supervisor_exit(&reason)),
                ..blank
            },
        };
        self.log(&mut state, view);
    }

    /// Numbers `event`, keeps it in the log and sends it.
    fn log(&self, state: &mut State, mut event: EventView) {
        state.seq += 1;
        event.seq = state.seq;
        let _ = self
            .frames
            .send(json::frame("event", &json::to_bytes(&event)));
        if state.log.len() == LOG_LEN {
            state.log.pop_front();
        }
        state.log.push_back(event);
    }
}

fn on(node: &Option<String>) -> String {
    node.as_ref().map_or(String::new(), |n| format!(" on {n}"))
}

fn exit_level(reason: &ExitReason) -> &'static str {
    if reason.is_normal() { "info" } else { "error" }
}

fn supervisor_exit(reason: &SupervisorExit) -> String {
    match reason {
        SupervisorExit::Shutdown => "shut down".to_owned(),
        SupervisorExit::IntensityExceeded => "restart intensity exceeded".to_owned(),
        SupervisorExit::AutoShutdown => "a significant child ended".to_owned(),
        SupervisorExit::Escalated { id, reason } => format!("{id} escalated its exit: {reason}"),
        SupervisorExit::Lost { reason } => format!("its process on a node was lost: {reason}"),
    }
}

/// Takes a snapshot every interval and reads the supervisors' events and the
/// children's exits, until `stop` says so.
pub(super) async fn run(feed: Arc<Feed>, mut stop: watch::Receiver<bool>) {
    let mut exits = crate::runtime::exits::watch();
    let (events_tx, mut events) = mpsc::channel::<SupervisorEvent>(STREAM_BUFFER);
    let mut watched = HashSet::new();
    let mut watchers = JoinSet::new();
    // Supervisors running already: their past is not ours to time.
    watch_supervisors(&mut watched, &mut watchers, &events_tx, false);
    let start = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(feed.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            got = exits.recv() => match got {
                Ok(exit) => feed.child_exit(exit),
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
            Some(event) = events.recv() => feed.supervision(event),
            _ = tick.tick() => {
                // Supervisors started since: from their start, which was this round.
                watch_supervisors(&mut watched, &mut watchers, &events_tx, true);
                let snap = crate::observe::snapshot().await;
                feed.sample(&snap, start.elapsed());
            }
        }
    }
    watchers.shutdown().await;
}

/// Follows the events of each supervisor running and not yet followed.
fn watch_supervisors(
    watched: &mut HashSet<ractor::ActorId>,
    watchers: &mut JoinSet<()>,
    tx: &mpsc::Sender<SupervisorEvent>,
    from_start: bool,
) {
    let running = crate::supervision::running();
    let keys: HashSet<ractor::ActorId> = running.iter().filter_map(|s| s.key()).collect();
    watched.retain(|k| keys.contains(k));
    for sup in running {
        if !sup.key().is_some_and(|k| watched.insert(k)) {
            continue;
        }
        let mut events = if from_start {
            sup.events_from_start()
        } else {
            sup.events()
        };
        let tx = tx.clone();
        watchers.spawn(async move {
            while let Some(event) = events.next().await {
                if tx.send(event).await.is_err() {
                    break;
                }
            }
        });
    }
    // Finished followers (their supervisor ended) are let go of.
    while watchers.try_join_next().is_some() {}
}
