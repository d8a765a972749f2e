//! The observer's JSON: the snapshot with each process's CPU share, the events of
//! the log, and the figures over time; and the server-sent event frames that carry
//! them.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use serde::Serialize;

use super::history::Sample;
use crate::observe::{ProcessInfo, ProcessKind, ProcessState, Snapshot};

/// The snapshot as the page and `/api/snapshot` get it.
#[derive(Debug, Serialize)]
pub(super) struct SnapshotView<'a> {
    /// When it was taken, in milliseconds since the Unix epoch.
    pub(super) t: u64,
    /// The program's name, as `ps` shows it in the children's titles, or the title
    /// the observer was given.
    pub(super) program: &'a str,
    /// Milliseconds between two snapshots of the live stream.
    pub(super) interval_ms: u64,
    /// How far back the figures over time go, in milliseconds.
    pub(super) history_ms: u64,
    pub(super) processes: Vec<ProcessView<'a>>,
}

/// One process of [`SnapshotView`].
#[derive(Debug, Serialize)]
pub(super) struct ProcessView<'a> {
    /// What its figures over time are kept under: the child spec's id for a
    /// supervised child (so that they run on across its restarts), else its name.
    key: String,
    name: &'a str,
    identity: Option<String>,
    pid: Option<u32>,
    parent_pid: Option<u32>,
    node: Option<&'a str>,
    kind: &'static str,
    state: &'static str,
    /// How deep in the tree it is: 0 for the root.
    depth: usize,
    supervised_as: Option<&'a str>,
    restarts: u32,
    last_exit: Option<String>,
    last_exit_code: Option<i32>,
    mailbox_depth: Option<usize>,
    calls_served: Option<u64>,
    uptime_ms: Option<u64>,
    rss_bytes: Option<u64>,
    cpu_ms: Option<u64>,
    cpu_percent: Option<f32>,
}

/// The key a process's figures are kept under.
pub(super) fn key(p: &ProcessInfo) -> String {
    match &p.supervised_as {
        Some(id) => format!("spec:{id}"),
        None => p.name.clone(),
    }
}

fn kind(k: ProcessKind) -> &'static str {
    match k {
        ProcessKind::Root => "root",
        ProcessKind::Function => "function",
        ProcessKind::Actor => "actor",
        ProcessKind::Supervisor => "supervisor",
        ProcessKind::PoolWorker => "pool_worker",
        ProcessKind::Forkserver => "forkserver",
        ProcessKind::Manager => "manager",
        ProcessKind::Descendant => "descendant",
    }
}

fn state(s: ProcessState) -> &'static str {
    match s {
        ProcessState::Running => "running",
        ProcessState::Stopping => "stopping",
        ProcessState::Restarting => "restarting",
        ProcessState::Stopped => "stopped",
    }
}

/// The snapshot's view, each process with its CPU share from `cpu` (by key).
pub(super) fn snapshot<'a>(
    snap: &'a Snapshot,
    t: u64,
    program: &'a str,
    (interval_ms, history_ms): (u64, u64),
    cpu: &HashMap<String, f32>,
) -> SnapshotView<'a> {
    let processes = snap
        .processes
        .iter()
        .map(|p| {
            let key = key(p);
            ProcessView {
                cpu_percent: cpu.get(&key).copied(),
                key,
                name: &p.name,
                identity: p.identity.as_ref().map(ToString::to_string),
                pid: p.pid,
                parent_pid: p.parent_pid,
                node: p.node.as_deref(),
                kind: kind(p.kind),
                state: state(p.state),
                depth: snap.depth(p),
                supervised_as: p.supervised_as.as_deref(),
                restarts: p.restarts,
                last_exit: p.last_exit.as_ref().map(ToString::to_string),
                last_exit_code: p.last_exit.as_ref().map(|e| e.exit_code()),
                mailbox_depth: p.mailbox_depth,
                calls_served: p.calls_served,
                uptime_ms: p.uptime.map(|d| d.as_millis() as u64),
                rss_bytes: p.rss_bytes,
                cpu_ms: p.cpu_time.map(|d| d.as_millis() as u64),
            }
        })
        .collect();
    SnapshotView {
        t,
        program,
        interval_ms,
        history_ms,
        processes,
    }
}

/// One entry of the event log: a supervision event or a child's exit.
#[derive(Debug, Clone, Serialize)]
pub(super) struct EventView {
    /// Its number, counting from 1 in this observer.
    pub(super) seq: u64,
    /// When it happened, in milliseconds since the Unix epoch.
    pub(super) t: u64,
    /// `started`, `exit`, `restarting`, `restarted`, `restart_failed`,
    /// `intensity_exceeded` or `supervisor_down`.
    pub(super) kind: &'static str,
    /// `info`, `warn` or `error`.
    pub(super) level: &'static str,
    pub(super) name: Option<String>,
    pub(super) pid: Option<u32>,
    /// The child spec's id, for a supervised child.
    pub(super) spec: Option<String>,
    pub(super) node: Option<String>,
    /// Why it ended, for an exit.
    pub(super) reason: Option<String>,
    /// Python's `exitcode` for that reason.
    pub(super) exit_code: Option<i32>,
    /// The event in words.
    pub(super) text: String,
}

/// One process's figures over time, as columns.
#[derive(Debug, Default, Serialize)]
struct Series {
    t: Vec<u64>,
    rss: Vec<Option<u64>>,
    cpu: Vec<Option<f32>>,
    mailbox: Vec<Option<usize>>,
}

impl<'a> FromIterator<&'a Sample> for Series {
    fn from_iter<I: IntoIterator<Item = &'a Sample>>(samples: I) -> Series {
        let mut s = Series::default();
        for sample in samples {
            s.t.push(sample.t_ms);
            s.rss.push(sample.rss);
            s.cpu.push(sample.cpu);
            s.mailbox.push(sample.mailbox);
        }
        s
    }
}

/// Figures over time of the processes given, by key.
#[derive(Debug, Serialize)]
pub(super) struct HistoryView {
    interval_ms: u64,
    processes: HashMap<String, Series>,
}

/// The view of `rings`, each a key and its samples.
pub(super) fn history<'a>(
    interval_ms: u64,
    rings: impl Iterator<Item = (&'a str, &'a VecDeque<Sample>)>,
) -> HistoryView {
    HistoryView {
        interval_ms,
        processes: rings
            .map(|(key, samples)| (key.to_owned(), samples.iter().collect()))
            .collect(),
    }
}

/// `value` as JSON.
pub(super) fn to_bytes(value: &impl Serialize) -> Bytes {
    // Only maps with string keys, strings and numbers: nothing here fails to encode.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

/// A server-sent event of type `event` carrying `json` (one line: serde_json's
/// compact output escapes every newline).
pub(super) fn frame(event: &str, json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + event.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}
