//! What the system ran out of when it refused a file descriptor, memory, a process or
//! a thread: the limit that was reached, its value, and how to raise it.
//!
//! The facts are read from the kernel where the refusal happened (the transport
//! crate does it); which limit they point at is decided here, by pure functions.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The system refused a resource because a limit was reached; which one, with its
/// value. Its `Display` names the limit and how to raise it.
///
/// ```
/// use multiproc_core::Exhausted;
/// let e = Exhausted::OpenFiles { soft: Some(64), hard: Some(4096), open: Some(64) };
/// assert_eq!(
///     e.to_string(),
///     "too many open files: 64 are open and RLIMIT_NOFILE allows 64 (hard limit 4096); \
///      close some, or raise the limit with `ulimit -n`"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Exhausted {
    /// `EMFILE`: every descriptor number under this process's `RLIMIT_NOFILE` is in use.
    OpenFiles {
        /// The soft limit (`ulimit -n`); `None`: unlimited.
        soft: Option<u64>,
        /// The hard limit, the most the soft one can be raised to without privilege.
        hard: Option<u64>,
        /// Descriptors open when the limit was read, when they could be counted.
        open: Option<u64>,
    },
    /// `ENFILE`: the system's table of open files is full.
    SystemFiles {
        /// `fs.file-max`, when it could be read (reading needs a file, too).
        max: Option<u64>,
    },
    /// `ENOMEM`: no memory for a mapping or a new task.
    Memory {
        /// Bytes asked for, when the call asked for a size (a shared memory segment).
        requested: Option<u64>,
        /// The limit that was reached.
        limit: MemoryLimit,
    },
    /// `EAGAIN` from `fork`, `clone` or a new thread: no room for another task.
    Processes {
        /// The limit that was reached.
        limit: ProcessLimit,
    },
}

/// Which limit an `ENOMEM` met; decided from [`MemoryFacts`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MemoryLimit {
    /// `vm.max_map_count`: the process has as many mappings as the kernel allows
    /// (each shared primitive maps one segment).
    MapCount {
        /// `vm.max_map_count`.
        max: u64,
        /// The process's mappings.
        maps: u64,
    },
    /// `RLIMIT_AS`: the mapping would take the address space past its limit.
    AddressSpace {
        /// The soft limit, in bytes.
        limit: u64,
        /// Bytes of address space in use, when known.
        used: Option<u64>,
    },
    /// No limit of this process was reached: the machine, or its memory cgroup, is out
    /// of memory.
    System,
}

/// Which limit refused a new process or thread; decided from [`ProcessFacts`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ProcessLimit {
    /// `pids.max` of a cgroup this process is in (or of one above it).
    Cgroup {
        /// The cgroup's directory.
        dir: String,
        /// Its `pids.max`.
        max: u64,
        /// Its `pids.current`: tasks (processes and threads) in it.
        current: u64,
    },
    /// `kernel.threads-max`: the system runs as many threads as it allows.
    ThreadsMax {
        /// `kernel.threads-max`.
        max: u64,
        /// Threads on the system.
        threads: u64,
    },
    /// `kernel.pid_max`: every process id is taken.
    PidMax {
        /// `kernel.pid_max`.
        max: u64,
        /// Tasks on the system, each holding an id.
        threads: u64,
    },
    /// `RLIMIT_NPROC`: this user runs as many processes as it may (it does not hold
    /// for root).
    Nproc {
        /// The soft limit (`ulimit -u`).
        soft: u64,
        /// The hard limit; `None`: unlimited.
        hard: Option<u64>,
    },
    /// None was seen at its value: it may have been freed since. Every limit, as read
    /// (boxed: errors that carry this stay small).
    Unknown(Box<ProcessFacts>),
}

/// One cgroup's pids controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidsCgroup {
    /// The cgroup's directory.
    pub dir: String,
    /// Its `pids.max`; `None`: `max` (no limit).
    pub max: Option<u64>,
    /// Its `pids.current`.
    pub current: u64,
}

/// What the system said about its task limits after a fork or clone failed with
/// `EAGAIN`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProcessFacts {
    /// The process's pids cgroup and the ones above it, innermost first.
    pub cgroups: Vec<PidsCgroup>,
    /// Threads on the system.
    pub threads: Option<u64>,
    /// `kernel.threads-max`.
    pub threads_max: Option<u64>,
    /// `kernel.pid_max`.
    pub pid_max: Option<u64>,
    /// `RLIMIT_NPROC` soft limit; `None`: unlimited.
    pub nproc: Option<u64>,
    /// `RLIMIT_NPROC` hard limit; `None`: unlimited.
    pub nproc_hard: Option<u64>,
    /// Whether the process runs as root, for whom `RLIMIT_NPROC` does not hold.
    pub root: bool,
}

/// Process ids under this are not handed out again once the kernel wraps around.
const RESERVED_PIDS: u64 = 300;

impl ProcessFacts {
    /// The limit these facts show reached: a full cgroup first (the innermost), then
    /// the system's thread and pid tables, then the user's `RLIMIT_NPROC`.
    ///
    /// ```
    /// use multiproc_core::{PidsCgroup, ProcessFacts, ProcessLimit};
    /// let facts = ProcessFacts {
    ///     cgroups: vec![PidsCgroup { dir: "/sys/fs/cgroup/job".into(), max: Some(8), current: 8 }],
    ///     ..ProcessFacts::default()
    /// };
    /// assert!(matches!(facts.limit(), ProcessLimit::Cgroup { max: 8, .. }));
    /// ```
    pub fn limit(self) -> ProcessLimit {
        if let Some(cg) = self
            .cgroups
            .iter()
            .find(|c| c.max.is_some_and(|max| c.current >= max))
        {
            return ProcessLimit::Cgroup {
                dir: cg.dir.clone(),
                max: cg.max.unwrap_or(u64::MAX),
                current: cg.current,
            };
        }
        if let (Some(threads), Some(max)) = (self.threads, self.threads_max)
            && threads >= max
        {
            return ProcessLimit::ThreadsMax { max, threads };
        }
        if let (Some(threads), Some(max)) = (self.threads, self.pid_max)
            && threads + RESERVED_PIDS >= max
        {
            return ProcessLimit::PidMax { max, threads };
        }
        if let (Some(soft), false) = (self.nproc, self.root) {
            return ProcessLimit::Nproc {
                soft,
                hard: self.nproc_hard,
            };
        }
        ProcessLimit::Unknown(Box::new(self))
    }
}

/// What the system said about this process's memory after a mapping failed with
/// `ENOMEM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MemoryFacts {
    /// Bytes asked for.
    pub requested: Option<u64>,
    /// `RLIMIT_AS` soft limit; `None`: unlimited.
    pub address_space: Option<u64>,
    /// Bytes of address space in use (`VmSize`).
    pub used: Option<u64>,
    /// The process's mappings.
    pub maps: Option<u64>,
    /// `vm.max_map_count`.
    pub max_map_count: Option<u64>,
}

impl MemoryFacts {
    /// The limit these facts show reached: the map count, then the address space, else
    /// the system.
    ///
    /// ```
    /// use multiproc_core::{MemoryFacts, MemoryLimit};
    /// let facts = MemoryFacts {
    ///     requested: Some(1 << 30),
    ///     address_space: Some(1 << 29),
    ///     used: Some(1 << 28),
    ///     ..MemoryFacts::default()
    /// };
    /// assert_eq!(facts.limit(), MemoryLimit::AddressSpace { limit: 1 << 29, used: Some(1 << 28) });
    /// ```
    pub fn limit(self) -> MemoryLimit {
        if let (Some(maps), Some(max)) = (self.maps, self.max_map_count)
            && maps + 1 >= max
        {
            return MemoryLimit::MapCount { max, maps };
        }
        if let Some(limit) = self.address_space
            && self
                .used
                .unwrap_or(0)
                .saturating_add(self.requested.unwrap_or(0))
                > limit
        {
            return MemoryLimit::AddressSpace {
                limit,
                used: self.used,
            };
        }
        MemoryLimit::System
    }
}

/// A limit's value, or "unlimited".
struct Value(Option<u64>);

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("unlimited"),
        }
    }
}

impl fmt::Display for Exhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exhausted::OpenFiles { soft, hard, open } => {
                f.write_str("too many open files: ")?;
                match open {
                    Some(open) => write!(f, "{open} are open and RLIMIT_NOFILE allows ")?,
                    None => f.write_str("RLIMIT_NOFILE allows ")?,
                }
                write!(
                    f,
                    "{} (hard limit {}); close some, or raise the limit with `ulimit -n`",
                    Value(*soft),
                    Value(*hard)
                )
            }
            Exhausted::SystemFiles { max } => {
                f.write_str("the system's table of open files is full (fs.file-max")?;
                if let Some(max) = max {
                    write!(f, " is {max}")?;
                }
                f.write_str("); close files, or raise it with `sysctl fs.file-max=N`")
            }
            Exhausted::Memory { requested, limit } => {
                f.write_str("out of memory")?;
                if let Some(bytes) = requested {
                    write!(f, " for {bytes} bytes")?;
                }
                f.write_str(": ")?;
                match limit {
                    MemoryLimit::MapCount { max, maps } => write!(
                        f,
                        "this process has {maps} memory mappings and vm.max_map_count is \
                         {max}; drop some shared objects, or raise it with \
                         `sysctl vm.max_map_count=N`"
                    ),
                    MemoryLimit::AddressSpace { limit, used } => {
                        write!(f, "RLIMIT_AS is {limit} bytes")?;
                        if let Some(used) = used {
                            write!(f, " and {used} are in use")?;
                        }
                        f.write_str("; raise it with `ulimit -v` (or `Limits::memory` for a child)")
                    }
                    MemoryLimit::System => f.write_str(
                        "no limit of this process was reached, so the machine or its memory \
                         cgroup is out of memory (see memory.max of the cgroup)",
                    ),
                }
            }
            Exhausted::Processes { limit } => {
                f.write_str("no room for another process or thread: ")?;
                match limit {
                    ProcessLimit::Cgroup { dir, max, current } => write!(
                        f,
                        "{dir}/pids.max is {max} and the cgroup holds {current} tasks; raise \
                         its pids.max, or end some of its processes or threads"
                    ),
                    ProcessLimit::ThreadsMax { max, threads } => write!(
                        f,
                        "kernel.threads-max is {max} and {threads} threads run; raise it with \
                         `sysctl kernel.threads-max=N`"
                    ),
                    ProcessLimit::PidMax { max, threads } => write!(
                        f,
                        "kernel.pid_max is {max} and {threads} tasks hold a process id; raise \
                         it with `sysctl kernel.pid_max=N`"
                    ),
                    ProcessLimit::Nproc { soft, hard } => write!(
                        f,
                        "RLIMIT_NPROC allows this user {soft} processes (hard limit {}); \
                         raise it with `ulimit -u`",
                        Value(*hard)
                    ),
                    ProcessLimit::Unknown(facts) => {
                        f.write_str(
                            "the system refused it (EAGAIN) with no limit seen at its value, \
                             so one was freed since or another applies; ",
                        )?;
                        for cg in facts.cgroups.iter().filter(|c| c.max.is_some()) {
                            write!(
                                f,
                                "{}/pids.max is {} with {} tasks, ",
                                cg.dir,
                                Value(cg.max),
                                cg.current
                            )?;
                        }
                        write!(
                            f,
                            "kernel.threads-max is {} with {} threads, kernel.pid_max is {}, \
                             RLIMIT_NPROC is {}",
                            Value(facts.threads_max),
                            Value(facts.threads),
                            Value(facts.pid_max),
                            Value(facts.nproc)
                        )
                    }
                }
            }
        }
    }
}

impl std::error::Error for Exhausted {}

#[cfg(test)]
mod tests;
