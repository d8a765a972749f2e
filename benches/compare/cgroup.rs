//! A pids cgroup for a bench child that could multiply processes (the soak loops).
//!
//! The bench runs as root, where `RLIMIT_NPROC` does not hold: a restart loop or a
//! process loop that regressed could fill the machine's pid table. A soak loop runs
//! as this bench binary again, inside a cgroup whose `pids.max` bounds it, and the
//! cgroup tells afterwards how many tasks ran at once, whether a fork hit the limit
//! and whether a process outlived the loop. After `tests/common/cgroup.rs`, which a
//! bench cannot import; only what the bench needs.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Every cgroup the bench makes is named with this prefix.
const PREFIX: &str = "multiproc-bench-";

/// A pids cgroup of its own, emptied and removed when dropped (also after an error).
pub(crate) struct Cgroup {
    dir: PathBuf,
    /// cgroup v2 has `cgroup.kill`; v1 is emptied by signalling each process.
    v2: bool,
}

impl Cgroup {
    /// Makes a cgroup limited to `max` tasks (threads count), or says why none can be
    /// made.
    pub(crate) fn create(name: &str, max: u32) -> Result<Cgroup, String> {
        let (root, v2) = pids_hierarchy()?;
        let dir = root.join(format!("{PREFIX}{name}-{}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let cg = Cgroup { dir, v2 };
        cg.write("pids.max", &max.to_string())?;
        Ok(cg)
    }

    /// `exe` as a command whose process joins this cgroup before it runs: a shell
    /// writes its own pid into `cgroup.procs`, then becomes `exe`, so nothing of the
    /// program runs outside.
    pub(crate) fn command(&self, exe: &Path) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"echo $$ > "$1" && exec "$2""#)
            .arg("sh")
            .arg(self.dir.join("cgroup.procs"))
            .arg(exe);
        cmd
    }

    fn write(&self, file: &str, value: &str) -> Result<(), String> {
        let path = self.dir.join(file);
        std::fs::write(&path, value)
            .map_err(|e| format!("cannot write {value} to {}: {e}", path.display()))
    }

    fn read(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(file)).ok()
    }

    /// The processes in the cgroup now.
    fn procs(&self) -> Vec<i32> {
        self.read("cgroup.procs")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Most tasks the cgroup held at once, where the kernel keeps it (`pids.peak`).
    pub(crate) fn peak(&self) -> Option<u32> {
        self.read("pids.peak").and_then(|s| s.trim().parse().ok())
    }

    /// How many times a fork or clone failed at the limit.
    pub(crate) fn hit_limit(&self) -> u64 {
        self.read("pids.events")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("max ").and_then(|n| n.trim().parse().ok()))
            .unwrap_or(0)
    }

    /// Waits up to `grace` for every process of the cgroup to end, following the ones
    /// that appear meanwhile; returns those still there.
    pub(crate) fn wait_empty(&self, grace: Duration) -> Vec<i32> {
        let deadline = Instant::now() + grace;
        loop {
            let procs = self.procs();
            if procs.is_empty() {
                return procs;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return procs;
            };
            let fds: Vec<OwnedFd> = procs.iter().filter_map(|&p| pidfd(p)).collect();
            if fds.is_empty() {
                // They ended between the read and the pidfd_open: read again.
                continue;
            }
            wait_any(&fds, left);
        }
    }

    /// Kills every process in the cgroup and waits for them to end.
    fn kill_all(&self) {
        if self.v2 && self.write("cgroup.kill", "1").is_ok() {
            self.wait_empty(Duration::from_secs(10));
            return;
        }
        // v1: a process may fork while we go through the list; a forked one appears in
        // the next read, and the limit bounds how many there can be.
        for _ in 0..1000 {
            let procs = self.procs();
            if procs.is_empty() {
                return;
            }
            for p in procs.into_iter().filter_map(rustix::process::Pid::from_raw) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
            self.wait_empty(Duration::from_millis(100));
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.kill_all();
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            eprintln!("# cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// Where a pids cgroup can be made: the v2 hierarchy if it has the pids controller,
/// else the v1 pids hierarchy. An error says why neither can be used.
fn pids_hierarchy() -> Result<(PathBuf, bool), String> {
    for v2 in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let v2 = Path::new(v2);
        let controllers =
            std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "pids") {
            let control = v2.join("cgroup.subtree_control");
            let enabled = std::fs::read_to_string(&control).unwrap_or_default();
            if !enabled.split_whitespace().any(|c| c == "pids") {
                std::fs::write(&control, "+pids").map_err(|e| {
                    format!(
                        "cannot enable the pids controller in {}: {e}",
                        control.display()
                    )
                })?;
            }
            return Ok((v2.to_path_buf(), true));
        }
    }
    let v1 = Path::new("/sys/fs/cgroup/pids");
    if v1.join("cgroup.procs").exists() {
        return Ok((v1.to_path_buf(), false));
    }
    Err(
        "no pids cgroup controller (neither cgroup v2 with `pids` nor a v1 pids \
         hierarchy at /sys/fs/cgroup/pids)"
            .into(),
    )
}

/// Whether this process is in a pids cgroup the bench made (v1 `N:pids:/path` or v2
/// `0::/path`): a soak child refuses to run anywhere else.
pub(crate) fn inside() -> bool {
    std::fs::read_to_string("/proc/self/cgroup").is_ok_and(|s| {
        s.lines().any(|l| {
            let mut f = l.splitn(3, ':');
            let (_, controllers, path) = (f.next(), f.next(), f.next());
            let pids = matches!(controllers, Some(""))
                || controllers.is_some_and(|c| c.split(',').any(|c| c == "pids"));
            pids && path.is_some_and(|p| p.contains(PREFIX))
        })
    })
}

pub(crate) fn pidfd(pid: i32) -> Option<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

/// Waits until one of the processes behind `fds` ends, or `timeout` passes.
pub(crate) fn wait_any(fds: &[OwnedFd], timeout: Duration) {
    let mut set: Vec<_> = fds
        .iter()
        .map(|fd| rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN))
        .collect();
    let timeout = rustix::event::Timespec {
        tv_sec: timeout.as_secs() as _,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    let _ = rustix::event::poll(&mut set, Some(&timeout));
}
