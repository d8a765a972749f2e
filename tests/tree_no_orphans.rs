//! No process outlives its root: SIGKILL at the root takes every descendant with it,
//! SIGINT or SIGTERM stops the tree gracefully and the root exits 0.
//!
//! Each case starts this test binary again as a separate root (role `tree_root`),
//! which builds a tree of seven processes and prints their pids.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{TestResult, trial};
use multiproc::blocking::{Connection, Process, pipe};

const ROLE: &str = "MULTIPROC_TEST_ROLE";
/// Set to `fork` to build the tree with the forkserver start method.
const METHOD: &str = "MULTIPROC_TEST_METHOD";

fn method() -> multiproc::StartMethod {
    match std::env::var(METHOD).as_deref() {
        Ok("fork") => multiproc::StartMethod::Forkserver,
        _ => multiproc::StartMethod::Spawn,
    }
}

fn leaf(mut up: Connection) -> Result<(), multiproc::connection::Error> {
    up.send(&multiproc::current_process().pid())?;
    multiproc::blocking::wait_for_stop();
    Ok(())
}

fn branch(mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    let mut pids = vec![multiproc::current_process().pid()];
    let mut leaves = Vec::new();
    for _ in 0..2 {
        let (mut ours, theirs) = pipe(true)?;
        let mut l = Process::new(leaf, theirs).start_method(method());
        l.start()?;
        pids.push(ours.recv()?);
        leaves.push(l);
    }
    up.send(&pids)?;
    multiproc::blocking::wait_for_stop();
    Ok(())
}
/// A pool task that says where it runs, then holds its worker until the tree stops.
fn announce_and_hold() -> u32 {
    use std::io::Write;
    let pid = multiproc::current_process().pid();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "worker {pid}");
    let _ = out.flush();
    multiproc::blocking::wait_for_stop();
    pid
}
multiproc::register!(leaf, branch, waits, announce_and_hold);

/// A separate root with a pool (forkserver workers, the default) whose two workers
/// each print `worker <pid>` from inside a task.
fn pool_root() -> ! {
    multiproc::init();
    let pool = multiproc::blocking::Pool::new(2).expect("pool");
    let held: Vec<_> = (0..2)
        .map(|_| pool.apply_async(announce_and_hold, ()))
        .collect();
    multiproc::blocking::wait_for_stop();
    drop(held);
    std::process::exit(0)
}

/// A separate root with a manager, which prints `manager <pid>` once it serves.
fn manager_root() -> ! {
    multiproc::init();
    let manager = multiproc::Manager::start().expect("manager");
    let pid = manager.process().and_then(|p| p.pid()).expect("a pid");
    println!("manager {pid}");
    multiproc::blocking::wait_for_stop();
    drop(manager);
    std::process::exit(0)
}

/// Starts a `manager_root` and reads its manager's pid.
fn start_manager_root() -> Result<Root, Box<dyn std::error::Error>> {
    let mut child = Command::new(std::env::current_exe()?)
        .env(ROLE, "manager_root")
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let line = BufReader::new(stdout)
        .lines()
        .next()
        .ok_or("the manager root ended early")??;
    let pid = line
        .strip_prefix("manager ")
        .ok_or_else(|| format!("unexpected line {line:?}"))?
        .parse()?;
    Ok(Root {
        child,
        pids: vec![pid],
    })
}

fn sigkill_at_the_root_takes_its_manager() -> TestResult {
    let mut root = start_manager_root()?;
    signal(root.child.id(), rustix::process::Signal::KILL)?;
    root.child.wait()?;
    let pid = root.pids[0];
    check!(
        common::wait_gone(pid, Duration::from_secs(3)),
        "manager {pid} survived SIGKILL of the root"
    );
    Ok(())
}

fn sigterm_at_the_root_stops_its_manager() -> TestResult {
    let mut root = start_manager_root()?;
    signal(root.child.id(), rustix::process::Signal::TERM)?;
    let status = root.child.wait()?;
    check_eq!(status.code(), Some(0));
    let pid = root.pids[0];
    check!(
        common::wait_gone(pid, Duration::from_secs(1)),
        "manager {pid} outlived the root"
    );
    Ok(())
}

/// Starts a `pool_root` and reads its two workers' pids.
fn start_pool_root() -> Result<Root, Box<dyn std::error::Error>> {
    let mut child = Command::new(std::env::current_exe()?)
        .env(ROLE, "pool_root")
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut pids = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    while pids.len() < 2 {
        let line = lines.next().ok_or("the pool root ended early")??;
        if let Some(pid) = line.strip_prefix("worker ") {
            pids.push(pid.parse()?);
        }
    }
    Ok(Root { child, pids })
}

fn sigkill_at_the_root_takes_its_pool_workers() -> TestResult {
    let mut root = start_pool_root()?;
    signal(root.child.id(), rustix::process::Signal::KILL)?;
    root.child.wait()?;
    for &pid in &root.pids {
        check!(
            common::wait_gone(pid, Duration::from_secs(3)),
            "pool worker {pid} survived SIGKILL of the root"
        );
    }
    Ok(())
}

fn sigterm_at_the_root_stops_its_pool_workers() -> TestResult {
    let mut root = start_pool_root()?;
    signal(root.child.id(), rustix::process::Signal::TERM)?;
    let status = root.child.wait()?;
    check_eq!(status.code(), Some(0));
    for &pid in &root.pids {
        check!(
            common::wait_gone(pid, Duration::from_secs(1)),
            "pool worker {pid} outlived the root"
        );
    }
    Ok(())
}

/// The separate root: builds the tree, prints `pids <all six descendants>`, waits.
fn tree_root() -> ! {
    multiproc::init();
    let mut all: Vec<u32> = Vec::new();
    let mut branches = Vec::new();
    for _ in 0..2 {
        let (mut ours, theirs) = pipe(true).expect("pipe");
        let mut b = Process::new(branch, theirs).start_method(method());
        b.start().expect("start branch");
        let pids: Vec<u32> = ours.recv().expect("branch pids");
        all.extend(pids);
        branches.push(b);
    }
    let line: Vec<String> = all.iter().map(u32::to_string).collect();
    println!("pids {}", line.join(" "));
    // Returns on SIGINT/SIGTERM; the exit handler then waits for the stopping tree.
    multiproc::blocking::wait_for_stop();
    std::process::exit(0)
}

/// A harness whose only test fails while a child of it still runs.
fn failing_harness() -> ! {
    common::run(vec![trial("fails_leaving_a_child", || {
        let mut p = Process::new(waits, ());
        p.start()?;
        println!("leftover-pid={}", p.pid().unwrap_or(0));
        Err("this test fails on purpose".into())
    })])
}

fn waits() {
    multiproc::blocking::wait_for_stop();
}

struct Root {
    child: std::process::Child,
    pids: Vec<u32>,
}

impl Drop for Root {
    fn drop(&mut self) {
        // A failing test must not leave the tree behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_root() -> Result<Root, Box<dyn std::error::Error>> {
    start_root_with("spawn")
}

fn start_root_with(method: &str) -> Result<Root, Box<dyn std::error::Error>> {
    let mut child = Command::new(std::env::current_exe()?)
        .env(ROLE, "tree_root")
        .env(METHOD, method)
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let pids = line
        .trim()
        .strip_prefix("pids ")
        .ok_or_else(|| format!("unexpected line {line:?}"))?
        .split(' ')
        .map(str::parse)
        .collect::<Result<Vec<u32>, _>>()?;
    Ok(Root { child, pids })
}

fn signal(pid: u32, sig: rustix::process::Signal) -> Result<(), Box<dyn std::error::Error>> {
    let pid = rustix::process::Pid::from_raw(pid as i32).ok_or("bad pid")?;
    rustix::process::kill_process(pid, sig)?;
    Ok(())
}

fn sigkill_at_the_root_leaves_no_descendant() -> TestResult {
    let mut root = start_root()?;
    check_eq!(root.pids.len(), 6);
    signal(root.child.id(), rustix::process::Signal::KILL)?;
    root.child.wait()?;
    for &pid in &root.pids {
        check!(
            common::wait_gone(pid, Duration::from_secs(1)),
            "descendant {pid} survived SIGKILL of the root"
        );
    }
    Ok(())
}

fn sigkill_at_the_root_leaves_no_forked_descendant() -> TestResult {
    // Forked children have no parent-death signal (the forkserver may die without
    // them): they go by the end of their control link and a pidfd on their parent,
    // stopping their own children first, within a second.
    let mut root = start_root_with("fork")?;
    check_eq!(root.pids.len(), 6);
    signal(root.child.id(), rustix::process::Signal::KILL)?;
    root.child.wait()?;
    for &pid in &root.pids {
        check!(
            common::wait_gone(pid, Duration::from_secs(3)),
            "forked descendant {pid} survived SIGKILL of the root"
        );
    }
    Ok(())
}

fn graceful_stop(sig: rustix::process::Signal) -> TestResult {
    let mut root = start_root()?;
    signal(root.child.id(), sig)?;
    let status = root.child.wait()?;
    check_eq!(status.code(), Some(0));
    for &pid in &root.pids {
        check!(
            common::wait_gone(pid, Duration::from_secs(1)),
            "descendant {pid} outlived the root"
        );
    }
    Ok(())
}

fn sigterm_at_the_root_stops_the_tree_and_exits_0() -> TestResult {
    graceful_stop(rustix::process::Signal::TERM)
}

fn sigint_at_the_root_stops_the_tree_and_exits_0() -> TestResult {
    graceful_stop(rustix::process::Signal::INT)
}

fn a_failing_test_leaves_no_process_behind() -> TestResult {
    let out = Command::new(std::env::current_exe()?)
        .env(ROLE, "failing_harness")
        .arg("--test-threads=1")
        .output()?;
    check_eq!(out.status.code(), Some(101));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // libtest prints the test's name on the same line, so find the marker anywhere.
    let after = stdout
        .split("leftover-pid=")
        .nth(1)
        .ok_or_else(|| format!("no child pid in {stdout:?}"))?;
    let pid: u32 = after
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()?;
    check!(
        common::wait_gone(pid, Duration::from_secs(1)),
        "child {pid} outlived the failed harness"
    );
    Ok(())
}

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("tree_root") => tree_root(),
        Ok("failing_harness") => failing_harness(),
        Ok("pool_root") => pool_root(),
        Ok("manager_root") => manager_root(),
        _ => {}
    }
    common::run(vec![
        trial(
            "sigkill_at_the_root_takes_its_manager",
            sigkill_at_the_root_takes_its_manager,
        ),
        trial(
            "sigterm_at_the_root_stops_its_manager",
            sigterm_at_the_root_stops_its_manager,
        ),
        trial(
            "sigkill_at_the_root_leaves_no_descendant",
            sigkill_at_the_root_leaves_no_descendant,
        ),
        trial(
            "sigterm_at_the_root_stops_the_tree_and_exits_0",
            sigterm_at_the_root_stops_the_tree_and_exits_0,
        ),
        trial(
            "sigint_at_the_root_stops_the_tree_and_exits_0",
            sigint_at_the_root_stops_the_tree_and_exits_0,
        ),
        trial(
            "a_failing_test_leaves_no_process_behind",
            a_failing_test_leaves_no_process_behind,
        ),
        trial(
            "sigkill_at_the_root_leaves_no_forked_descendant",
            sigkill_at_the_root_leaves_no_forked_descendant,
        ),
        trial(
            "sigkill_at_the_root_takes_its_pool_workers",
            sigkill_at_the_root_takes_its_pool_workers,
        ),
        trial(
            "sigterm_at_the_root_stops_its_pool_workers",
            sigterm_at_the_root_stops_its_pool_workers,
        ),
    ])
}
