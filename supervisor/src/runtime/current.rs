//! This process and its relatives: `current_process()`, `parent_process()`,
//! `active_children()`, `cpu_count()`.

use std::sync::{Mutex, OnceLock};

use multiproc_core::{Counter, Identity};

/// What this process knows about itself. Set once: by `init()` in a child, on first
/// use in the root.
#[derive(Debug)]
pub(crate) struct Me {
    pub(crate) identity: Identity,
    pub(crate) name: String,
    pub(crate) daemon: bool,
    pub(crate) parent: Option<ParentProcess>,
}

static ME: OnceLock<Me> = OnceLock::new();

pub(crate) fn me() -> &'static Me {
    ME.get_or_init(|| Me {
        identity: Identity::root(),
        name: "MainProcess".to_string(),
        daemon: false,
        parent: None,
    })
}

/// Sets who this process is; called by the child bootstrap before any user code.
pub(crate) fn set_me(me: Me) {
    // The bootstrap runs before user code, so nothing can have read the root default.
    let _ = ME.set(me);
}

/// Takes the next number for a process object created by this process.
pub(crate) fn next_child_number() -> u32 {
    static COUNTER: Mutex<Counter> = Mutex::new(Counter::new());
    COUNTER.lock().unwrap_or_else(|e| e.into_inner()).next()
}

/// This process, as Python's `multiprocessing.current_process()` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentProcess {
    name: String,
    identity: Identity,
    pid: u32,
    daemon: bool,
}

impl CurrentProcess {
    /// The name: `MainProcess` in the root, `Process-1:2` (or a custom name) in a child.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The identity, which is also this process's address in the tree.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }
    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }
    /// Whether this process is a daemon.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }
}

/// The process running this code.
///
/// ```
/// let me = multiproc_supervisor::current_process();
/// assert_eq!(me.name(), "MainProcess");
/// assert!(me.identity().is_root());
/// assert_eq!(me.pid(), std::process::id());
/// ```
pub fn current_process() -> CurrentProcess {
    let me = me();
    CurrentProcess {
        name: me.name.clone(),
        identity: me.identity.clone(),
        pid: std::process::id(),
        daemon: me.daemon,
    }
}

/// The parent of a child process, as Python's `multiprocessing.parent_process()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentProcess {
    pub(crate) name: String,
    pub(crate) identity: Identity,
    pub(crate) pid: u32,
}

impl ParentProcess {
    /// The parent's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The parent's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }
    /// The parent's OS process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }
    /// Whether the parent still runs.
    pub fn is_alive(&self) -> bool {
        rustix::process::Pid::from_raw(self.pid as i32)
            .is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok())
    }
}

/// The parent of this process, or `None` in the root.
///
/// ```
/// assert!(multiproc_supervisor::parent_process().is_none());
/// ```
pub fn parent_process() -> Option<ParentProcess> {
    me().parent.clone()
}

/// The number of CPUs this process may use: its CPU affinity mask, capped by its
/// cgroup's CPU quota (unlike Python's `cpu_count()`, which counts the machine's).
///
/// ```
/// assert!(multiproc_supervisor::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Whether this process is a child started by multiproc (its bootstrap has begun).
pub(crate) fn is_child() -> bool {
    IS_CHILD.load(std::sync::atomic::Ordering::Relaxed)
}

pub(crate) static IS_CHILD: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);
