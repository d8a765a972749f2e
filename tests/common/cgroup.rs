//! Running a program that could multiply processes inside a pids cgroup the test makes.
//!
//! We run as root, so `RLIMIT_NPROC` does not hold: a regression in a test of a
//! forgotten `init()`, a restart loop or a chaos test could fill the machine's pid
//! table. Such a test runs its program as this test binary again, in a cgroup whose
//! `pids.max` bounds it, and sees every process it made: how many ran at once, whether
//! a fork hit the limit, whether one outlived the program. The program checks
//! [`inside`] and refuses to run bare.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Every cgroup the tests and the bench make is named with this prefix.
pub const PREFIX: &str = "multiproc-pids-";

/// A pids cgroup of its own, killed and removed when dropped (also when a test fails).
pub struct Cgroup {
    dir: PathBuf,
    /// cgroup v2 has `cgroup.kill`; v1 is emptied by signalling each process.
    v2: bool,
}

impl Cgroup {
    /// Makes a cgroup limited to `max` tasks, or says why none can be made.
    pub fn create(case: &str, max: u32) -> Result<Cgroup, String> {
        let (root, v2) = pids_hierarchy()?;
        let dir = root.join(format!("{PREFIX}{case}-{}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let cg = Cgroup { dir, v2 };
        cg.write("pids.max", &max.to_string())?;
        Ok(cg)
    }

    /// `exe` as a command whose process joins this cgroup before it runs: a shell
    /// writes its own pid into `cgroup.procs`, then becomes `exe` (with the arguments
    /// the caller adds), so nothing of the program runs outside.
    pub fn command(&self, exe: &Path) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"echo $$ > "$1" && shift && exec "$@""#)
            .arg("sh")
            .arg(self.path("cgroup.procs"))
            .arg(exe);
        cmd
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    pub fn write(&self, file: &str, value: &str) -> Result<(), String> {
        std::fs::write(self.path(file), value)
            .map_err(|e| format!("cannot write {value} to {}: {e}", self.path(file).display()))
    }

    fn read(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(self.path(file)).ok()
    }

    /// The processes in the cgroup now.
    pub fn procs(&self) -> Vec<i32> {
        self.read("cgroup.procs")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Most tasks the cgroup held at once, where the kernel keeps it.
    pub fn peak(&self) -> Option<u32> {
        self.read("pids.peak").and_then(|s| s.trim().parse().ok())
    }

    /// How many times a fork or clone failed at the limit.
    pub fn hit_limit(&self) -> u64 {
        self.read("pids.events")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("max ").and_then(|n| n.trim().parse().ok()))
            .unwrap_or(0)
    }

    /// Waits up to `grace` for every process of the cgroup to end, following the ones
    /// that appear meanwhile; returns those still there.
    pub fn wait_empty(&self, grace: Duration) -> Vec<i32> {
        wait_gone(|| self.procs(), grace)
    }

    /// Kills every process in the cgroup and waits for them to end.
    pub fn kill_all(&self) {
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
            eprintln!("cannot remove {}: {e}", self.dir.display());
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
        "no pids cgroup controller is available (neither cgroup v2 with `pids` in \
         cgroup.controllers nor a v1 pids hierarchy at /sys/fs/cgroup/pids); refusing to \
         run a program that could multiply processes without one"
            .into(),
    )
}

/// Waits up to `grace` until `read` (a cgroup's processes, or some of them) is empty,
/// following the processes that appear meanwhile; returns those still there.
fn wait_gone(read: impl Fn() -> Vec<i32>, grace: Duration) -> Vec<i32> {
    let deadline = Instant::now() + grace;
    loop {
        let procs = read();
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

/// The path, below its hierarchy's root, of the pids cgroup a test made that this
/// process is in (from v1 `N:pids:/path` or v2 `0::/path`).
fn own_path() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        let pids = controllers.is_empty() || controllers.split(',').any(|c| c == "pids");
        (pids && path.contains(PREFIX)).then(|| path.to_string())
    })
}

/// Whether this process is in a pids cgroup a test made.
pub fn inside() -> bool {
    own_path().is_some()
}

/// The processes of the test's cgroup this process is in: for the program under test,
/// to see every process it made, wherever the kernel reparented them.
pub fn own_procs() -> Vec<i32> {
    let Some(dir) = own_path().and_then(|path| {
        let (root, _) = pids_hierarchy().ok()?;
        Some(root.join(path.trim_start_matches('/')))
    }) else {
        return Vec::new();
    };
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Waits up to `grace` until the test's cgroup this process is in holds no process
/// but `keep`; returns the others still there.
pub fn wait_own_only(keep: &[i32], grace: Duration) -> Vec<i32> {
    wait_gone(
        || {
            let mut procs = own_procs();
            procs.retain(|p| !keep.contains(p));
            procs
        },
        grace,
    )
}

/// Exits with status 2 unless this process is inside a test's pids cgroup: for the
/// program under test, before it does anything that could multiply processes.
pub fn refuse_to_run_bare(what: &str) {
    if !inside() {
        eprintln!(
            "{what} runs only inside a pids cgroup named {PREFIX}*: it could multiply \
             processes if multiproc regresses"
        );
        std::process::exit(2);
    }
}

pub fn pidfd(pid: i32) -> Option<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

/// Waits until one of the processes behind `fds` ends, or `timeout` passes.
pub fn wait_any(fds: &[OwnedFd], timeout: Duration) {
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

/// How a program run in a cgroup went.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Most tasks (threads count) the cgroup held at once, where the kernel keeps it.
    pub peak: Option<u32>,
    /// Forks or clones that failed at the cgroup's limit.
    pub hit_limit: u64,
    /// Processes of the cgroup at the program's exit.
    pub at_exit: usize,
    /// Processes still there `grace` after the program's exit (killed since).
    pub left: Vec<i32>,
    pub took: Duration,
}

/// What to run in a cgroup: this test binary again, with `env` set.
pub struct Program<'a> {
    /// Names the cgroup (with [`PREFIX`] and this process's pid).
    pub case: &'a str,
    /// The cgroup's `pids.max`.
    pub pids_max: u32,
    pub env: &'a [(&'a str, &'a str)],
    /// How long the program may run before the test gives up on it.
    pub deadline: Duration,
    /// How long a process of the cgroup may outlive the program.
    pub grace: Duration,
}

impl Program<'_> {
    /// Runs the program in a fresh cgroup, then kills whatever is left of it and
    /// removes the cgroup. An error if no cgroup can be made or the program outlives
    /// its deadline.
    pub fn run(&self) -> Result<Run, Box<dyn std::error::Error>> {
        let cgroup = Cgroup::create(self.case, self.pids_max)?;
        let exe = std::env::current_exe()?;
        let mut root = cgroup.command(&exe);
        root.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in self.env {
            root.env(k, v);
        }
        let mut root = root.spawn()?;
        // Read on threads: a leftover process would hold the pipes open after the
        // program ends.
        let stdout = drain(root.stdout.take().ok_or("no stdout")?);
        let stderr = drain(root.stderr.take().ok_or("no stderr")?);
        let started = Instant::now();
        let status = {
            let (tx, rx) = mpsc::channel();
            let pid = root.id();
            std::thread::spawn(move || {
                let _ = tx.send(root.wait());
            });
            match rx.recv_timeout(self.deadline) {
                Ok(status) => status?,
                Err(_) => {
                    let procs = cgroup.procs();
                    let stacks: String = procs.iter().map(|&p| stacks_of(p)).collect();
                    drop(cgroup);
                    let err = stderr
                        .recv_timeout(Duration::from_secs(5))
                        .unwrap_or_default();
                    return Err(format!(
                        "{} (pid {pid}) still ran after {:?}; its cgroup held {procs:?}; \
                         stderr: {err}{stacks}",
                        self.case, self.deadline
                    )
                    .into());
                }
            }
        };
        let took = started.elapsed();
        let at_exit = cgroup.procs().len();
        let left = cgroup.wait_empty(self.grace);
        let peak = cgroup.peak();
        let hit_limit = cgroup.hit_limit();
        drop(cgroup);
        let wait = Duration::from_secs(10);
        Ok(Run {
            status,
            stdout: stdout.recv_timeout(wait).unwrap_or_default(),
            stderr: stderr.recv_timeout(wait).unwrap_or_default(),
            peak,
            hit_limit,
            at_exit,
            left,
            took,
        })
    }
}

fn drain(mut from: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = from.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    rx
}

/// Tasks a confined test binary may hold at once (threads count): libtest's threads,
/// a runtime per process, pools of a few workers, with room to spare; a regression
/// that multiplies processes meets it long before the machine's pid table.
pub const CONFINED_PIDS_MAX: u32 = 1024;

/// Runs this whole test binary inside a pids cgroup of its own, for a binary whose
/// tests restart or respawn processes in loops: called first in `main`, it re-runs the
/// binary with the same arguments in a fresh cgroup and exits with its status, after
/// killing whatever the run left behind (which fails the run). Inside the cgroup (and
/// in every process multiproc starts from there) it returns at once.
pub fn confine(case: &str) {
    if inside() {
        return;
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    // Listing the tests starts nothing.
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let code = match run_confined(case, &args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cannot run {case} in a pids cgroup: {e}");
            101
        }
    };
    std::process::exit(code);
}

#[allow(unsafe_code, reason = "pre_exec, to tie the binary to the test run")]
fn run_confined(case: &str, args: &[std::ffi::OsString]) -> Result<i32, String> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let cgroup = Cgroup::create(case, CONFINED_PIDS_MAX)?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = cgroup.command(&exe);
    cmd.args(args);
    // SAFETY: only a system call between fork and exec. The binary dies with this
    // process (the setting survives `exec`), so a killed test run leaves no copy.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let left = cgroup.wait_empty(Duration::from_secs(1));
    let hit_limit = cgroup.hit_limit();
    drop(cgroup);
    if !left.is_empty() {
        eprintln!("processes {left:?} outlived the test binary {case} (killed)");
        return Ok(101);
    }
    if hit_limit != 0 {
        eprintln!(
            "{case}: forks failed {hit_limit} times at the cgroup's limit of {CONFINED_PIDS_MAX} tasks"
        );
        return Ok(101);
    }
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// The threads' stacks of a process that hung, where gdb is installed (the diagnosis
/// of a hang seen once in CI), else nothing.
fn stacks_of(pid: i32) -> String {
    let out = Command::new("timeout")
        .args(["60", "gdb", "-batch", "-p", &pid.to_string()])
        .args(["-ex", "thread apply all bt 30"])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let frames: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("Thread ") || l.starts_with('#'))
                .take(400)
                .collect();
            format!("\n--- stacks of {pid} ---\n{}", frames.join("\n"))
        }
        _ => String::new(),
    }
}
