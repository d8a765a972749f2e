//! Whether the kernel's OOM killer ended a child: the `oom_kill` count of this
//! process's memory cgroup (cgroup v2 `memory.events`, v1 `memory.oom_control`),
//! which children share unless moved, read when a child dies of SIGKILL.
//!
//! The count says that the kernel killed some process of the cgroup, not which: each
//! rise is put down to one SIGKILLed child, the usual case of children over the
//! cgroup's limit. Two children killed before either is seen are both counted, as each
//! takes one kill from the count. A process of the cgroup that multiproc did not start,
//! killed by the OOM killer, could be taken for a child that was SIGKILLed by someone
//! else later.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The file that holds the count, if this process has a memory cgroup.
fn counter_file() -> Option<&'static PathBuf> {
    static FILE: OnceLock<Option<PathBuf>> = OnceLock::new();
    FILE.get_or_init(|| {
        let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let mut unified = None;
        for line in cgroups.lines() {
            let mut f = line.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            let path = path.trim_start_matches('/');
            if controllers.split(',').any(|c| c == "memory") {
                let file = PathBuf::from("/sys/fs/cgroup/memory")
                    .join(path)
                    .join("memory.oom_control");
                if file.exists() {
                    return Some(file);
                }
            } else if controllers.is_empty() {
                unified = Some(
                    PathBuf::from("/sys/fs/cgroup")
                        .join(path)
                        .join("memory.events"),
                );
            }
        }
        unified.filter(|f| f.exists())
    })
    .as_ref()
}

fn read_count() -> Option<u64> {
    let text = std::fs::read_to_string(counter_file()?).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

/// The kills already put down to a child (or seen before the first child started);
/// `u64::MAX` before the first look.
static SEEN: AtomicU64 = AtomicU64::new(u64::MAX);

/// Takes the count as it is before a child could be killed: called when a child is
/// started, so that kills before it are not put down to it. Reads once per process.
pub(crate) fn baseline() {
    if SEEN.load(Ordering::Relaxed) == u64::MAX
        && let Some(n) = read_count()
    {
        let _ = SEEN.compare_exchange(u64::MAX, n, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// Whether the OOM killer killed a process of this cgroup that no child has been
/// given yet: asked for a child that died of SIGKILL that multiproc did not send.
pub(crate) fn killed_since_last_look() -> bool {
    let Some(now) = read_count() else {
        return false;
    };
    take_one(&SEEN, now)
}

/// Takes one kill of `now` not yet in `seen`, if there is one.
fn take_one(seen: &AtomicU64, now: u64) -> bool {
    seen.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |given| {
        (given != u64::MAX && now > given).then(|| given + 1)
    })
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_kills_seen_in_one_read_go_to_two_children() {
        let seen = AtomicU64::new(3);
        assert!(take_one(&seen, 5));
        assert!(take_one(&seen, 5));
        assert!(!take_one(&seen, 5));
        assert_eq!(seen.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn nothing_is_given_before_the_baseline() {
        let seen = AtomicU64::new(u64::MAX);
        assert!(!take_one(&seen, 7));
    }
}
