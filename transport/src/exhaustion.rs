//! Reading the system's limits when it refuses a file descriptor, memory, a process
//! or a thread, so that the error names the limit instead of an errno.
//!
//! Only a failed call pays for this: the limits are read after the refusal, from
//! `getrlimit` and `/proc` and `/sys`, and a file that cannot be read (at `EMFILE`,
//! none can) leaves its value unknown.

#![allow(unsafe_code)]

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use multiproc_core::{Exhausted, MemoryFacts, PidsCgroup, ProcessFacts};
use rustix::process::{Resource as Rlimit, getrlimit};

/// What a failed call was creating, which decides what its error means: `EAGAIN`
/// means "no room for a task" from `fork` or `clone`, and "try again" elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// A file descriptor: a socket, a pipe, a memfd, a pidfd, an opened file.
    Fd,
    /// A mapping, or a memfd's size, of this many bytes.
    Memory {
        /// Bytes asked for.
        bytes: u64,
    },
    /// A process or a thread: `fork`, `clone`, `posix_spawn`, a new thread (which
    /// may also need descriptors and memory).
    Task,
}

/// The limit behind `error`, read from the system now, if `error` is an exhaustion:
/// `EMFILE`, `ENFILE`, `ENOMEM`, or `EAGAIN` while creating a [`Resource::Task`].
///
/// ```
/// use multiproc_core::Exhausted;
/// use multiproc_transport::{Resource, exhausted};
///
/// let emfile = std::io::Error::from_raw_os_error(24);
/// assert!(matches!(exhausted(&emfile, Resource::Fd), Some(Exhausted::OpenFiles { .. })));
/// let eagain = std::io::Error::from_raw_os_error(11);
/// assert!(exhausted(&eagain, Resource::Fd).is_none());
/// assert!(matches!(exhausted(&eagain, Resource::Task), Some(Exhausted::Processes { .. })));
/// ```
pub fn exhausted(error: &io::Error, creating: Resource) -> Option<Exhausted> {
    match (error.raw_os_error()?, creating) {
        (libc::EMFILE, _) => Some(open_files()),
        (libc::ENFILE, _) => Some(Exhausted::SystemFiles {
            max: read_number("/proc/sys/fs/file-max"),
        }),
        (libc::ENOMEM, Resource::Memory { bytes }) => Some(memory(Some(bytes))),
        (libc::ENOMEM, _) => Some(memory(None)),
        (libc::EAGAIN, Resource::Task) => Some(Exhausted::Processes {
            limit: process_facts().limit(),
        }),
        _ => None,
    }
}

/// Past this many descriptor numbers, they are not counted: the count would cost more
/// than it tells.
const MAX_COUNTED_FDS: u64 = 1 << 16;

fn open_files() -> Exhausted {
    let (soft, hard) = limits(Rlimit::Nofile);
    let open = soft.filter(|&s| s <= MAX_COUNTED_FDS).map(|soft| {
        // No directory can be opened to list them at EMFILE: each number is asked.
        (0..soft as i32)
            // SAFETY: F_GETFD reads one flag of whatever descriptor has this number,
            // or fails with EBADF; it changes nothing and touches no memory of ours.
            .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1)
            .count() as u64
    });
    Exhausted::OpenFiles { soft, hard, open }
}

fn memory(requested: Option<u64>) -> Exhausted {
    let facts = MemoryFacts {
        requested,
        address_space: limits(Rlimit::As).0,
        used: status_field("VmSize:").map(|kib| kib * 1024),
        maps: count_lines("/proc/self/maps"),
        max_map_count: read_number("/proc/sys/vm/max_map_count"),
    };
    Exhausted::Memory {
        requested,
        limit: facts.limit(),
    }
}

/// The soft and hard limits of `resource`; `None` is unlimited.
fn limits(resource: Rlimit) -> (Option<u64>, Option<u64>) {
    let l = getrlimit(resource);
    (l.current, l.maximum)
}

fn process_facts() -> ProcessFacts {
    let (nproc, nproc_hard) = limits(Rlimit::Nproc);
    ProcessFacts {
        cgroups: pids_cgroups(),
        // The fourth field of loadavg is "runnable/total" scheduling entities: threads.
        threads: std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().nth(3)?.split_once('/')?.1.parse().ok()),
        threads_max: read_number("/proc/sys/kernel/threads-max"),
        pid_max: read_number("/proc/sys/kernel/pid_max"),
        nproc,
        nproc_hard,
        root: rustix::process::geteuid().is_root(),
    }
}

/// This process's pids cgroup (v2, or the v1 pids hierarchy) and those above it up to
/// the hierarchy's root, innermost first.
fn pids_cgroups() -> Vec<PidsCgroup> {
    let Ok(table) = std::fs::read_to_string("/proc/self/cgroup") else {
        return Vec::new();
    };
    // "id:controllers:path"; v2 has no controllers, v1 names them.
    let mut found = None;
    for line in table.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if controllers.split(',').any(|c| c == "pids") {
            found = Some((PathBuf::from("/sys/fs/cgroup/pids"), path));
            break;
        }
        if controllers.is_empty() {
            let root = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
                .into_iter()
                .map(PathBuf::from)
                .find(|r| {
                    std::fs::read_to_string(r.join("cgroup.controllers"))
                        .is_ok_and(|c| c.split_whitespace().any(|c| c == "pids"))
                });
            if let Some(root) = root {
                found = Some((root, path));
            }
        }
    }
    let Some((root, path)) = found else {
        return Vec::new();
    };
    let mut dir = root.join(path.trim_start_matches('/'));
    let mut cgroups = Vec::new();
    while dir.starts_with(&root) {
        if let Some(current) = read_number(dir.join("pids.current")) {
            cgroups.push(PidsCgroup {
                dir: dir.display().to_string(),
                // "max" is no limit.
                max: read_number(dir.join("pids.max")),
                current,
            });
        }
        if !dir.pop() {
            break;
        }
    }
    cgroups
}

fn read_number(path: impl AsRef<Path>) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A `Name:  value kB` line of /proc/self/status.
fn status_field(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix(name))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Lines of a file, read through a small buffer: out of memory, a file of tens of
/// thousands of mappings is not read whole.
fn count_lines(path: &str) -> Option<u64> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut buf = [0u8; 8192];
    let mut lines = 0u64;
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Some(lines),
            Ok(n) => lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use multiproc_core::{MemoryLimit, ProcessLimit};

    #[test]
    fn other_errors_are_not_exhaustion() {
        for errno in [libc::EBADF, libc::EPIPE, libc::EACCES] {
            let e = io::Error::from_raw_os_error(errno);
            for creating in [Resource::Fd, Resource::Task, Resource::Memory { bytes: 1 }] {
                assert!(exhausted(&e, creating).is_none(), "{e}");
            }
        }
        assert!(exhausted(&io::Error::other("no errno"), Resource::Task).is_none());
    }

    #[test]
    fn emfile_reads_this_process_s_limit_and_counts_its_descriptors() {
        let e = exhausted(&io::Error::from_raw_os_error(libc::EMFILE), Resource::Fd);
        let Some(Exhausted::OpenFiles { soft, open, .. }) = e else {
            panic!("{e:?}");
        };
        let l = getrlimit(Rlimit::Nofile);
        assert_eq!(soft, l.current);
        // stdin, stdout and stderr at least.
        assert!(open.is_none_or(|n| n >= 3), "{open:?}");
    }

    #[test]
    fn enomem_of_a_small_mapping_is_the_system_s() {
        let e = exhausted(
            &io::Error::from_raw_os_error(libc::ENOMEM),
            Resource::Memory { bytes: 4096 },
        );
        assert!(
            matches!(
                e,
                Some(Exhausted::Memory {
                    requested: Some(4096),
                    limit: MemoryLimit::System | MemoryLimit::AddressSpace { .. }
                })
            ),
            "{e:?}"
        );
    }

    #[test]
    fn eagain_of_a_task_reads_the_system_s_tables() {
        let e = exhausted(&io::Error::from_raw_os_error(libc::EAGAIN), Resource::Task);
        let Some(Exhausted::Processes { limit }) = e else {
            panic!("{e:?}");
        };
        // Nothing is full here: every table is reported, as read.
        match limit {
            ProcessLimit::Unknown(facts) => {
                assert!(
                    facts.pid_max.is_some() && facts.threads.is_some(),
                    "{facts:?}"
                );
            }
            other => assert!(matches!(other, ProcessLimit::Nproc { .. }), "{other:?}"),
        }
    }
}
