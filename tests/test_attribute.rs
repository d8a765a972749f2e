//! `#[multiproc::test]` under the standard test harness, as a user's crate has it: no
//! `harness = false`, no `init()` in a `main` of our own.
//!
//! Each test runs twice. Bare, it runs itself again (this test binary, that test alone)
//! inside a pids cgroup it makes, and checks what that run printed: were children to
//! run the harness instead of their function, every generation would start the test
//! again, and the cgroup bounds it. Inside the cgroup, it does the work.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::cgroup::{self, Cgroup};
use multiproc::blocking::{Connection, Pool, Process, pipe};
use multiproc::{Actor, BoxError, StartMethod};

/// Most tasks a test's cgroup may hold: a test starts a handful of processes.
const PIDS_MAX: u32 = 64;

/// How long a confined run may take; a healthy one takes well under a second.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether this is the run inside the cgroup. Bare, runs `test` alone inside one and
/// checks that it passed, that the harness ran once (a child that ran the harness
/// would print its banner again), and that the run printed each of `expect`.
fn confined(test: &str, expect: &[&str]) -> bool {
    if cgroup::inside() {
        return true;
    }
    let cg = Cgroup::create(test, PIDS_MAX).unwrap();
    let exe = std::env::current_exe().unwrap();
    let run = cg
        .command(&exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A run whose children ran the harness may never end: the cgroup's processes are
    // killed past the deadline, which ends the output.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(run.wait_with_output()));
    let out = match finished.recv_timeout(RUN_TIMEOUT) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            cg.kill_all();
            let out = finished.recv().unwrap().unwrap();
            panic!(
                "the confined run did not end within {RUN_TIMEOUT:?}; its output:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = format!(
        "status {}\n--- stdout\n{stdout}--- stderr\n{stderr}",
        out.status
    );
    assert!(out.status.success(), "the confined run failed: {report}");
    assert_eq!(
        stdout.matches("running 1 test").count(),
        1,
        "the harness ran more than once: {report}"
    );
    assert!(stdout.contains("1 passed"), "{report}");
    for line in expect {
        assert!(stdout.contains(line), "missing {line:?}: {report}");
    }
    assert!(
        cg.hit_limit() == 0,
        "the run hit the cgroup's limit of {PIDS_MAX}: {report}"
    );
    assert_eq!(cg.wait_empty(Duration::from_secs(10)), Vec::<i32>::new());
    false
}

fn report(code: i32, mut up: Connection) {
    // A child that became itself before `main` still has the program's arguments.
    let args = std::env::args_os().count();
    up.send(&(args > 0)).unwrap();
    println!("child ran with code {code}");
    std::process::exit(code);
}

fn starts_a_child(mut up: Connection) {
    let (mut ours, theirs) = pipe(true).unwrap();
    let mut p = Process::new(report, (5, theirs));
    p.start().unwrap();
    let has_args: bool = ours.recv().unwrap();
    p.join().unwrap();
    up.send(&(has_args, p.exit_code())).unwrap();
}

fn square(x: u64) -> u64 {
    x * x
}

struct Doubler;

impl Actor for Doubler {
    type Args = ();
    type Msg = u64;
    type Reply = u64;

    async fn start(_: ()) -> Result<Self, BoxError> {
        Ok(Doubler)
    }

    async fn handle(&mut self, n: u64) -> u64 {
        n * 2
    }
}

multiproc::register!(report, starts_a_child, square);
multiproc::register_actor!(Doubler);

#[multiproc::test]
fn a_child_runs_its_function_not_the_tests() {
    if !confined(
        "a_child_runs_its_function_not_the_tests",
        &["child ran with code 3", "child ran with code 4"],
    ) {
        return;
    }
    for (code, method) in [(3, StartMethod::Spawn), (4, StartMethod::Forkserver)] {
        let (mut ours, theirs) = pipe(true).unwrap();
        let mut p = Process::new(report, (code, theirs)).start_method(method);
        p.start().unwrap();
        let has_args: bool = ours.recv().unwrap();
        p.join().unwrap();
        assert!(has_args, "{method:?}: the child saw no arguments");
        assert_eq!(p.exit_code(), Some(code), "{method:?}");
    }
}

#[multiproc::test]
fn a_grandchild_also_runs_its_function() {
    if !confined(
        "a_grandchild_also_runs_its_function",
        &["child ran with code 5"],
    ) {
        return;
    }
    let (mut ours, theirs) = pipe(true).unwrap();
    let mut p = Process::new(starts_a_child, theirs);
    p.start().unwrap();
    let (has_args, code): (bool, Option<i32>) = ours.recv().unwrap();
    p.join().unwrap();
    assert!(has_args);
    assert_eq!(code, Some(5));
    assert_eq!(p.exit_code(), Some(0));
}

#[multiproc::test]
fn a_pool_maps_in_a_test() -> Result<(), Box<dyn std::error::Error>> {
    if !confined("a_pool_maps_in_a_test", &[]) {
        return Ok(());
    }
    let pool = Pool::new(2)?;
    let squares = pool.map(square, (0..100u64).collect::<Vec<_>>())?;
    assert_eq!(squares, (0..100u64).map(|x| x * x).collect::<Vec<_>>());
    pool.close();
    pool.join()?;
    Ok(())
}

#[multiproc::test(flavor = "current_thread")]
async fn an_async_test_calls_an_actor() {
    if !confined("an_async_test_calls_an_actor", &[]) {
        return;
    }
    let mut p = multiproc::Process::actor::<Doubler>(());
    p.start().await.unwrap();
    let doubler = p.actor_ref::<Doubler>();
    assert_eq!(doubler.call(21).await.unwrap(), 42);
    p.terminate().unwrap();
    p.join().await.unwrap();
}
