//! A `main` that forgets `multiproc::init()` gets an error naming it, never a fork bomb:
//! one case per start method, each run inside a pids cgroup this test creates.
//!
//! The program under test is this binary again, as a separate root in "forgetful
//! mode" (`FORGETFUL` names the case): its `main` skips `init()` and starts a process
//! or a pool, and so does every copy of it that multiproc starts. The cgroup bounds
//! what a regression could do (as root, `RLIMIT_NPROC` does not hold), and lets the
//! test see every process the program made: how many ran at once, whether one hit the
//! limit, and whether one outlived the root. Forgetful mode refuses to run outside
//! such a cgroup, and the test fails rather than run it without one.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{TestResult, trial};
use multiproc::StartMethod;
use multiproc::blocking::{Pool, Process};

/// Set to the case's name in the program under test.
const FORGETFUL: &str = "MULTIPROC_TEST_FORGETFUL";
/// Every cgroup this test makes is named with this prefix; forgetful mode checks it.
const CGROUP_PREFIX: &str = "multiproc-test-forgetful-";
/// The cgroup's limit on tasks (threads count: a root with a runtime has a dozen).
const PIDS_MAX: u32 = 128;
/// Most tasks the cgroup may have held at once: a root, its runtime's threads, and a
/// few children that each end at their first library call. A bomb fills `PIDS_MAX`.
const PEAK_BOUND: u32 = 64;
/// How long the root may take: each failed start ends at once, or after the default
/// handshake timeout (10 s) at worst.
const ROOT_DEADLINE: Duration = Duration::from_secs(60);
/// How long a process of the cgroup may outlive the root: the time for the kernel to
/// deliver a parent-death signal, as `tree_no_orphans` allows.
const ORPHAN_GRACE: Duration = Duration::from_secs(1);

fn returns() {}

fn square(x: u64) -> u64 {
    x * x
}

multiproc::register!(returns, square);

// ---- the program under test ---------------------------------------------------------

/// `main` without `init()`: starts a process or uses a pool, prints what failed.
fn forgetful_main(case: &str) -> ! {
    if !in_test_cgroup() {
        eprintln!(
            "forgetful mode runs only inside a pids cgroup named {CGROUP_PREFIX}*: \
             it is a fork bomb if multiproc regresses"
        );
        std::process::exit(2);
    }
    if let Some(method) = case.strip_suffix("_orphan") {
        // The names of multiproc's role markers: set in a process it started.
        let started = ["MULTIPROC_BOOTSTRAP", "MULTIPROC_FORKSERVER"]
            .iter()
            .any(|v| std::env::var_os(v).is_some());
        if started {
            // A copy that does something long before any library call (here: for ever)
            // after its root has died: only what multiproc did before `main` ends it.
            if let Some(parent) = rustix::process::getppid() {
                let _ = rustix::process::kill_process(parent, rustix::process::Signal::KILL);
            }
            loop {
                std::thread::park();
            }
        }
        let method = match method {
            "spawn" => StartMethod::Spawn,
            _ => StartMethod::Forkserver,
        };
        let _ = start_one(method);
        eprintln!("forgetful root: outlived its own SIGKILL");
        std::process::exit(3);
    }
    let result: Result<(), Box<dyn std::error::Error>> = match case {
        "spawn" => start_one(StartMethod::Spawn),
        "forkserver" => start_one(StartMethod::Forkserver),
        "pool" => use_pool(Pool::new(2)),
        "pool_spawn" => use_pool(
            Pool::builder()
                .processes(2)
                .start_method(StartMethod::Spawn)
                .start(),
        ),
        other => Err(format!("unknown case {other}").into()),
    };
    match result {
        Ok(()) => {
            eprintln!("forgetful root: no error");
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("forgetful root: {e}");
            std::process::exit(1)
        }
    }
}

fn start_one(method: StartMethod) -> Result<(), Box<dyn std::error::Error>> {
    let mut p = Process::new(returns, ()).start_method(method);
    p.start()?;
    p.join()?;
    Ok(())
}

fn use_pool(pool: Result<Pool, multiproc::PoolError>) -> Result<(), Box<dyn std::error::Error>> {
    let pool = pool?;
    pool.apply(square, 3)?;
    Ok(())
}

/// Whether this process is in a pids cgroup this test made (v1 `N:pids:/path` or v2
/// `0::/path`).
fn in_test_cgroup() -> bool {
    std::fs::read_to_string("/proc/self/cgroup").is_ok_and(|s| {
        s.lines().any(|l| {
            let mut f = l.splitn(3, ':');
            let (_, controllers, path) = (f.next(), f.next(), f.next());
            let pids = matches!(controllers, Some(""))
                || controllers.is_some_and(|c| c.split(',').any(|c| c == "pids"));
            pids && path.is_some_and(|p| p.contains(CGROUP_PREFIX))
        })
    })
}

// ---- the cgroup -----------------------------------------------------------------------

/// A pids cgroup of its own, killed and removed when dropped (also when a test fails).
struct Cgroup {
    dir: PathBuf,
    /// cgroup v2 has `cgroup.kill`; v1 is emptied by signalling each process.
    v2: bool,
}

impl Cgroup {
    /// Makes a cgroup limited to `max` tasks, or says why none can be made.
    fn create(case: &str, max: u32) -> Result<Cgroup, String> {
        let (root, v2) = pids_hierarchy()?;
        let dir = root.join(format!("{CGROUP_PREFIX}{case}-{}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let cg = Cgroup { dir, v2 };
        cg.write("pids.max", &max.to_string())?;
        Ok(cg)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn write(&self, file: &str, value: &str) -> Result<(), String> {
        std::fs::write(self.path(file), value)
            .map_err(|e| format!("cannot write {value} to {}: {e}", self.path(file).display()))
    }

    fn read(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(self.path(file)).ok()
    }

    /// The processes in the cgroup now.
    fn procs(&self) -> Vec<i32> {
        self.read("cgroup.procs")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Most tasks the cgroup held at once, where the kernel keeps it.
    fn peak(&self) -> Option<u32> {
        self.read("pids.peak").and_then(|s| s.trim().parse().ok())
    }

    /// How many times a fork or clone failed at the limit.
    fn hit_limit(&self) -> u64 {
        self.read("pids.events")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("max ").and_then(|n| n.trim().parse().ok()))
            .unwrap_or(0)
    }

    /// Waits up to `grace` for every process of the cgroup to end, following the ones
    /// that appear meanwhile; returns those still there.
    fn wait_empty(&self, grace: Duration) -> Vec<i32> {
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
         run a program that forgets init() without one"
            .into(),
    )
}

fn pidfd(pid: i32) -> Option<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

/// Waits until one of the processes behind `fds` ends, or `timeout` passes.
fn wait_any(fds: &[OwnedFd], timeout: Duration) {
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

// ---- the cases ------------------------------------------------------------------------

/// How a run of the forgetful program went.
struct Run {
    status: std::process::ExitStatus,
    stderr: String,
}

/// Runs the forgetful program for `case` in a fresh cgroup and checks it made few
/// processes and left none behind.
fn run_forgetful(case: &'static str) -> Result<Run, Box<dyn std::error::Error>> {
    let cgroup = Cgroup::create(case, PIDS_MAX)?;
    let exe = std::env::current_exe()?;
    // The shell joins the cgroup, then becomes the program: nothing of it runs outside.
    let mut root = Command::new("sh")
        .arg("-c")
        .arg(r#"echo $$ > "$1" && exec "$2""#)
        .arg("sh")
        .arg(cgroup.path("cgroup.procs"))
        .arg(&exe)
        .env(FORGETFUL, case)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stderr = root.stderr.take().ok_or("no stderr")?;
    let (stderr_tx, stderr_rx) = mpsc::channel();
    // Read on a thread: a leftover process would hold the pipe open after the root ends.
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = stderr_tx.send(text);
    });
    let started = Instant::now();
    let status = {
        let (tx, rx) = mpsc::channel();
        let pid = root.id();
        std::thread::spawn(move || {
            let _ = tx.send(root.wait());
        });
        match rx.recv_timeout(ROOT_DEADLINE) {
            Ok(status) => status?,
            Err(_) => {
                return Err(format!(
                    "the forgetful root (pid {pid}) still runs after {ROOT_DEADLINE:?}; \
                     the cgroup holds {:?}",
                    cgroup.procs()
                )
                .into());
            }
        }
    };
    let took = started.elapsed();
    let at_exit = cgroup.procs();
    let left = cgroup.wait_empty(ORPHAN_GRACE);
    let peak = cgroup.peak();
    let hit_limit = cgroup.hit_limit();
    drop(cgroup);
    let stderr = stderr_rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_default();
    eprintln!(
        "{case}: root exited {status} after {took:?}; peak {peak:?} tasks, {} at the root's \
         exit; stderr: {}",
        at_exit.len(),
        stderr.trim()
    );
    if !left.is_empty() {
        return Err(format!("processes {left:?} outlived the root").into());
    }
    if hit_limit != 0 {
        return Err(format!("forks failed {hit_limit} times at the cgroup's limit").into());
    }
    if peak.is_some_and(|p| p > PEAK_BOUND) {
        return Err(format!("the cgroup held {peak:?} tasks at once").into());
    }
    Ok(Run { status, stderr })
}

/// The forgetful root ends with an error naming `multiproc::init()`, having made few
/// processes and left none behind.
fn forgetful_root_fails_cleanly(case: &'static str) -> TestResult {
    let Run { status, stderr } = run_forgetful(case)?;
    check_eq!(status.code(), Some(1));
    check!(
        stderr.contains("forgetful root:") && stderr.contains("multiproc::init()"),
        "the root's error does not name multiproc::init(): {stderr}"
    );
    Ok(())
}

/// A copy of the forgetful program that kills its root and then never reaches a
/// library call still ends with the root: it was tied to it before `main`.
fn forgetful_copy_dies_with_its_root(case: &'static str) -> TestResult {
    use std::os::unix::process::ExitStatusExt;
    let Run { status, stderr } = run_forgetful(case)?;
    check!(
        status.signal() == Some(9),
        "the root was not killed by its copy: {status}; {stderr}"
    );
    Ok(())
}

fn spawn_child_of_a_forgetful_root_dies_with_it() -> TestResult {
    forgetful_copy_dies_with_its_root("spawn_orphan")
}

fn forkserver_of_a_forgetful_root_dies_with_it() -> TestResult {
    forgetful_copy_dies_with_its_root("forkserver_orphan")
}

fn spawn_child_of_a_forgetful_root() -> TestResult {
    forgetful_root_fails_cleanly("spawn")
}

fn forkserver_child_of_a_forgetful_root() -> TestResult {
    forgetful_root_fails_cleanly("forkserver")
}

fn pool_of_a_forgetful_root() -> TestResult {
    forgetful_root_fails_cleanly("pool")
}

fn spawn_pool_of_a_forgetful_root() -> TestResult {
    forgetful_root_fails_cleanly("pool_spawn")
}

fn main() {
    // Before `init()`: in forgetful mode this is the program under test, whose `main`
    // never calls it.
    if let Ok(case) = std::env::var(FORGETFUL) {
        forgetful_main(&case);
    }
    common::run(vec![
        trial(
            "spawn_child_of_a_forgetful_root",
            spawn_child_of_a_forgetful_root,
        ),
        trial(
            "forkserver_child_of_a_forgetful_root",
            forkserver_child_of_a_forgetful_root,
        ),
        trial("pool_of_a_forgetful_root", pool_of_a_forgetful_root),
        trial(
            "spawn_child_of_a_forgetful_root_dies_with_it",
            spawn_child_of_a_forgetful_root_dies_with_it,
        ),
        trial(
            "forkserver_of_a_forgetful_root_dies_with_it",
            forkserver_of_a_forgetful_root_dies_with_it,
        ),
        trial(
            "spawn_pool_of_a_forgetful_root",
            spawn_pool_of_a_forgetful_root,
        ),
    ]);
}
