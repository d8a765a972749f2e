//! A snapshot of the running tree, as data: every process this one knows of, with its
//! name, pid, parent, kind, state, restarts, last exit and figures.
//!
//! What the process taking the snapshot knows first-hand comes from its own tables:
//! its children (the runtime's), which of them its supervisors run (with their
//! restarts and last exits), its pools' workers (with the tasks they answered), its
//! manager servers and its forkserver. What lies below its children (their own
//! children, which only they could describe) comes from `/proc`, as kind
//! [`ProcessKind::Descendant`], named by its command line. Figures (resident memory,
//! CPU time, age) come from `/proc` for every process on this host.
//!
//! With the feature `observer`, [`Observer`] serves the snapshot live over HTTP: a
//! page that shows the tree as it changes, JSON, and server-sent events.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use multiproc_core::{ChildKind, EntryKind, ExitReason, Identity};

use crate::supervision::ChildState;

#[cfg(feature = "observer")]
mod observer;
mod proc;

#[cfg(feature = "observer")]
pub use observer::{
    DEFAULT_HISTORY, DEFAULT_OBSERVER_ADDR, DEFAULT_SAMPLE_INTERVAL, Observer, ObserverBuilder,
    ObserverError, ObserverHandle,
};

/// What a process of the tree runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProcessKind {
    /// The process that took the snapshot.
    Root,
    /// A child running a function.
    Function,
    /// A child hosting an actor.
    Actor,
    /// A supervised child whose spec says it runs a supervisor of its own.
    Supervisor,
    /// A pool's worker.
    PoolWorker,
    /// The forkserver.
    Forkserver,
    /// A manager's server.
    Manager,
    /// A process below a child, seen through `/proc` only: its parent alone could say
    /// what it runs.
    Descendant,
}

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProcessState {
    /// It runs.
    Running,
    /// It was asked to stop and has not ended yet.
    Stopping,
    /// A supervised child between two processes: it waits to be started again.
    Restarting,
    /// A supervised child that is not running and will not be restarted unless asked.
    Stopped,
}

/// One process of a [`Snapshot`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ProcessInfo {
    /// Its name (`Process-1:2`, `PoolWorker-3`, `forkserver`, `MainProcess`); for a
    /// supervised child that is not running, its last process's name or its id.
    pub name: String,
    /// Its identity, where the snapshot's process knows it.
    pub identity: Option<Identity>,
    /// Its process id; `None` for a supervised child between two processes.
    pub pid: Option<u32>,
    /// The pid of its parent in the tree: the process that started it (for a child
    /// the forkserver forked, the one that asked, not the forkserver).
    pub parent_pid: Option<u32>,
    /// The node it runs on, when it was placed on one; `None` for this host.
    pub node: Option<String>,
    /// What it runs.
    pub kind: ProcessKind,
    /// Where it is in its life.
    pub state: ProcessState,
    /// The id of its child spec, for a supervised child.
    pub supervised_as: Option<String>,
    /// How many times its supervisor started it again.
    pub restarts: u32,
    /// How its last process ended, for a supervised child that was restarted or ended.
    pub last_exit: Option<ExitReason>,
    /// Messages waiting in its actor's mailbox: known for an actor child of this
    /// process, which shows it in its link's shared memory as it changes.
    pub mailbox_depth: Option<usize>,
    /// Messages (calls and casts) its actor has handled, for an actor child of this
    /// process; tasks done, for a pool worker.
    pub calls_served: Option<u64>,
    /// How long its process has run.
    pub uptime: Option<Duration>,
    /// Its resident memory, in bytes.
    pub rss_bytes: Option<u64>,
    /// The CPU time it has used, user and system.
    pub cpu_time: Option<Duration>,
}

impl ProcessInfo {
    fn new(name: String, pid: Option<u32>, parent_pid: Option<u32>, kind: ProcessKind) -> Self {
        ProcessInfo {
            name,
            identity: None,
            pid,
            parent_pid,
            node: None,
            kind,
            state: ProcessState::Running,
            supervised_as: None,
            restarts: 0,
            last_exit: None,
            mailbox_depth: None,
            calls_served: None,
            uptime: None,
            rss_bytes: None,
            cpu_time: None,
        }
    }
}

/// The tree as this process sees it now: itself first, then every process below it,
/// each after its parent.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct Snapshot {
    /// The processes, in tree order (a parent before its children).
    pub processes: Vec<ProcessInfo>,
}

impl Snapshot {
    /// The first process named `name`.
    pub fn get(&self, name: &str) -> Option<&ProcessInfo> {
        self.processes.iter().find(|p| p.name == name)
    }

    /// The process with this pid.
    pub fn by_pid(&self, pid: u32) -> Option<&ProcessInfo> {
        self.processes.iter().find(|p| p.pid == Some(pid))
    }

    /// The processes whose parent is `pid`.
    pub fn children_of(&self, pid: u32) -> impl Iterator<Item = &ProcessInfo> {
        self.processes
            .iter()
            .filter(move |p| p.parent_pid == Some(pid) && p.pid != Some(pid))
    }

    fn depth(&self, p: &ProcessInfo) -> usize {
        let mut depth = 0;
        let mut parent = p.parent_pid;
        let mut seen = HashSet::new();
        while let Some(pp) = parent {
            match self.by_pid(pp) {
                Some(up) if seen.insert(pp) && up.pid != p.pid => {
                    depth += 1;
                    parent = up.parent_pid;
                }
                _ => break,
            }
        }
        depth
    }
}

/// The tree, one process a line, indented under its parent.
impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.processes {
            let indent = "  ".repeat(self.depth(p));
            let pid = p.pid.map_or("-".to_owned(), |pid| pid.to_string());
            write!(
                f,
                "{indent}{} [{:?}] pid={pid} {:?}",
                p.name, p.kind, p.state
            )?;
            if let Some(id) = &p.supervised_as {
                write!(f, " spec={id}")?;
            }
            if let Some(node) = &p.node {
                write!(f, " node={node}")?;
            }
            if p.restarts > 0 {
                write!(f, " restarts={}", p.restarts)?;
            }
            if let Some(exit) = &p.last_exit {
                write!(f, " last_exit={exit}")?;
            }
            if let Some(n) = p.calls_served {
                write!(f, " served={n}")?;
            }
            if let Some(n) = p.mailbox_depth {
                write!(f, " mailbox={n}")?;
            }
            if let Some(rss) = p.rss_bytes {
                write!(f, " rss={}KiB", rss / 1024)?;
            }
            if let Some(cpu) = p.cpu_time {
                write!(f, " cpu={}ms", cpu.as_millis())?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// A snapshot of the tree below (and including) this process.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let snap = multiproc_supervisor::observe::snapshot().await;
/// let me = &snap.processes[0];
/// assert_eq!(me.kind, multiproc_supervisor::observe::ProcessKind::Root);
/// assert_eq!(me.pid, Some(std::process::id()));
/// # }
/// ```
pub async fn snapshot() -> Snapshot {
    let mut supervised = Vec::new();
    for sup in crate::supervision::running() {
        if let Ok(children) = sup.which_children().await {
            supervised.extend(children);
        }
    }
    take(supervised)
}

/// Builds the snapshot from this process's tables, the supervisors' children given.
fn take(supervised: Vec<crate::supervision::ChildStatus>) -> Snapshot {
    let me = std::process::id();
    let current = crate::runtime::current::me();
    let mut root = ProcessInfo::new(current.name.clone(), Some(me), None, ProcessKind::Root);
    root.identity = Some(current.identity.clone());
    root.parent_pid = current.parent.as_ref().map(|p| p.pid);
    let mut list = vec![root];

    let children = crate::runtime::children::observed();
    let identities: Vec<Identity> = children.iter().map(|c| c.identity.clone()).collect();
    let managers = crate::manager::servers_among(&identities);
    // A worker on another node has a pid of that host's: it is listed apart.
    let (workers, remote_workers): (Vec<_>, Vec<_>) = crate::pool::all_workers()
        .into_iter()
        .partition(|w| w.node.is_none());
    let workers: HashMap<u32, crate::pool::WorkerInfo> =
        workers.into_iter().map(|w| (w.pid, w)).collect();
    let by_identity: HashMap<&Identity, &crate::supervision::ChildStatus> = supervised
        .iter()
        .filter_map(|s| s.identity.as_ref().map(|i| (i, s)))
        .collect();
    for c in &children {
        let kind = if managers.contains(&c.identity) {
            ProcessKind::Manager
        } else if workers.contains_key(&c.pid) {
            ProcessKind::PoolWorker
        } else {
            match c.kind {
                EntryKind::Actor => ProcessKind::Actor,
                _ => ProcessKind::Function,
            }
        };
        let mut p = ProcessInfo::new(c.name.clone(), Some(c.pid), Some(me), kind);
        p.identity = Some(c.identity.clone());
        if c.stopping {
            p.state = ProcessState::Stopping;
        }
        if let Some(w) = workers.get(&c.pid) {
            p.calls_served = Some(w.tasks_done);
        } else if let Some((waiting, handled)) = c.actor {
            p.mailbox_depth = Some(usize::try_from(waiting).unwrap_or(usize::MAX));
            p.calls_served = Some(handled);
        }
        if let Some(s) = by_identity.get(&c.identity) {
            supervise(&mut p, s);
        }
        list.push(p);
    }
    // Supervised children with no live process here: between two processes, stopped,
    // or placed on another node.
    let local: HashSet<&Identity> = identities.iter().collect();
    for s in &supervised {
        let here = s.identity.as_ref().is_some_and(|i| local.contains(i));
        if here {
            continue;
        }
        let name = s.name.clone().unwrap_or_else(|| s.id.clone());
        let mut p = ProcessInfo::new(name, s.pid, Some(me), ProcessKind::Function);
        p.identity = s.identity.clone();
        supervise(&mut p, s);
        list.push(p);
    }
    for w in remote_workers {
        let mut p = ProcessInfo::new(w.name, Some(w.pid), Some(me), ProcessKind::PoolWorker);
        p.node = w.node;
        p.calls_served = Some(w.tasks_done);
        list.push(p);
    }
    if let Some(server) = crate::runtime::forkserver::pid() {
        let name = "forkserver".to_owned();
        list.push(ProcessInfo::new(
            name,
            Some(server),
            Some(me),
            ProcessKind::Forkserver,
        ));
    }
    add_descendants(&mut list);
    for p in &mut list {
        if p.node.is_some() {
            continue;
        }
        if let Some(f) = p.pid.and_then(proc::figures) {
            p.rss_bytes = f.rss_bytes;
            p.cpu_time = f.cpu_time;
            p.uptime = f.uptime;
        }
    }
    Snapshot {
        processes: tree_order(list),
    }
}

/// What a supervisor says of its child.
fn supervise(p: &mut ProcessInfo, s: &crate::supervision::ChildStatus) {
    p.supervised_as = Some(s.id.clone());
    p.restarts = s.restarts;
    p.last_exit = s.last_exit.clone();
    p.node = s.node.clone();
    if s.kind == ChildKind::Supervisor {
        p.kind = ProcessKind::Supervisor;
    }
    match s.state {
        ChildState::Running => {}
        ChildState::Restarting => p.state = ProcessState::Restarting,
        ChildState::Stopped => p.state = ProcessState::Stopped,
    }
}

/// Adds, from `/proc`, the processes below those listed that are not listed
/// themselves: the children's own children, the forkserver's spare, and so on down.
/// A forked child, whose parent in `/proc` is the forkserver, is listed already.
fn add_descendants(list: &mut Vec<ProcessInfo>) {
    let me = std::process::id();
    let mut known: HashSet<u32> = list.iter().filter_map(|p| p.pid).collect();
    let mut frontier: Vec<u32> = list
        .iter()
        .filter(|p| p.node.is_none())
        .filter_map(|p| p.pid)
        .collect();
    while let Some(pid) = frontier.pop() {
        for child in proc::children(pid) {
            if !known.insert(child) {
                continue;
            }
            // A process of ours that `/proc` shows before our tables do (it is being
            // started) is not a descendant of anyone else.
            if pid == me {
                continue;
            }
            let name = proc::name(child).unwrap_or_else(|| child.to_string());
            list.push(ProcessInfo::new(
                name,
                Some(child),
                Some(pid),
                ProcessKind::Descendant,
            ));
            frontier.push(child);
        }
    }
}

/// Orders the list so that each process follows its parent (depth first, siblings by
/// pid), the root first.
fn tree_order(list: Vec<ProcessInfo>) -> Vec<ProcessInfo> {
    let root_pid = list.first().and_then(|p| p.pid);
    let mut below: BTreeMap<Option<u32>, Vec<usize>> = BTreeMap::new();
    for (i, p) in list.iter().enumerate().skip(1) {
        below.entry(p.parent_pid).or_default().push(i);
    }
    for kids in below.values_mut() {
        kids.sort_by_key(|&i| (list[i].pid.unwrap_or(u32::MAX), list[i].name.clone()));
    }
    let mut order = vec![0];
    let mut stack: Vec<usize> = below
        .get(&root_pid)
        .map(|k| k.iter().rev().copied().collect())
        .unwrap_or_default();
    let mut placed: HashSet<usize> = HashSet::from([0]);
    while let Some(i) = stack.pop() {
        if !placed.insert(i) {
            continue;
        }
        order.push(i);
        if let Some(kids) = list[i].pid.and_then(|pid| below.get(&Some(pid))) {
            stack.extend(kids.iter().rev().copied());
        }
    }
    // Anything not reached (a parent that left the list meanwhile) goes last.
    order.extend((0..list.len()).filter(|i| !placed.contains(i)));
    let mut slots: Vec<Option<ProcessInfo>> = list.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}
