//! `Process`: names, exit codes and reasons, lifecycle errors, the handshake's checks,
//! stopping, output capture and logging. Every case runs real child processes.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use multiproc::__private::test_hooks;
use std::time::Duration;

use common::{TestResult, trial};
use multiproc::blocking::{Connection, Process, pipe};
use multiproc::{Error, ExitReason};

// ---- entry points used by the tests ----

fn returns() {}

fn exits_with(code: i32) {
    std::process::exit(code);
}

fn panics() {
    panic!("deliberate test panic");
}

fn aborts() {
    std::process::abort();
}

fn fails() -> Result<(), String> {
    Err("the function said no".into())
}

fn waits_for_stop() {
    multiproc::blocking::wait_for_stop();
}

fn ignores_stop(mut conn: Connection) {
    // Tell the parent we run, then block on a message that never comes.
    let _ = conn.send(&"running");
    let _: Result<String, _> = conn.recv();
}

fn prints(text: String) {
    println!("{text}");
    eprintln!("err:{text}");
}

/// Leaves text in Rust's and C's stdout buffers: no newline, no flush.
#[allow(unsafe_code, reason = "printf, to leave text in C's stdio buffer")]
fn prints_unflushed(text: String) {
    print!("rust:{text};");
    let c = std::ffi::CString::new(format!("c:{text}")).unwrap();
    // SAFETY: a valid format string and a valid C string for its `%s`.
    unsafe {
        libc::printf(c"%s".as_ptr(), c.as_ptr());
    }
}

fn logs(text: String) {
    tracing::info!("{text}");
}

fn report_identity(mut conn: Connection) -> Result<(), multiproc::connection::Error> {
    let me = multiproc::current_process();
    let parent = multiproc::parent_process().map(|p| (p.name().to_string(), p.pid()));
    conn.send(&(me.name().to_string(), me.pid(), parent))
}

/// Creates three process objects (one never started, one renamed) and starts the
/// third, which reports its own name: Python's counter rules, in a fresh process.
fn names_probe(mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    let never_started = Process::new(returns, ());
    let renamed = Process::new(returns, ()).named("custom");
    let (mut ours, theirs) = pipe(true)?;
    let mut third = Process::new(report_identity, theirs);
    third.start()?;
    let (reported, _pid, parent): (String, u32, Option<(String, u32)>) = ours.recv()?;
    third.join()?;
    let names = vec![
        never_started.name().to_string(),
        renamed.name().to_string(),
        third.name().to_string(),
        reported,
        parent.map(|p| p.0).unwrap_or_default(),
    ];
    up.send(&names)?;
    Ok(())
}

/// Starts a non-daemon child that waits for the root's word, and returns at once: its
/// own exit must wait for that child.
fn starts_waiting_child(relay: Connection) -> Result<(), multiproc::Error> {
    let mut child = Process::new(waits_for_word, relay);
    child.start()
}

fn waits_for_word(mut conn: Connection) {
    let _: Result<String, _> = conn.recv();
}

/// Starts a daemon child that would wait forever, reports its pid, and returns.
fn starts_daemon(mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    let mut d = Process::new(waits_for_stop, ()).daemon(true);
    d.start()?;
    up.send(&d.pid())?;
    Ok(())
}

fn burns_cpu() {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

fn allocates(bytes: usize) {
    let v = vec![1u8; bytes];
    println!("allocated {}", std::hint::black_box(v).len());
}

fn opens_files(n: usize) -> Result<(), String> {
    let mut files = Vec::new();
    for i in 0..n {
        files.push(std::fs::File::open("/dev/null").map_err(|e| format!("file {i}: {e}"))?);
    }
    Ok(())
}

/// Works for a while, saying it is alive between steps.
fn beats(steps: u32) {
    for _ in 0..steps {
        multiproc::heartbeat();
        // The child's simulated unit of work: what the test checks is that it outlasts
        // the heartbeat interval, so time must pass here (the test itself waits on
        // the child's exit, not on time).
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn not_registered() {}

multiproc::register!(
    returns,
    exits_with,
    panics,
    aborts,
    fails,
    waits_for_stop,
    ignores_stop,
    prints,
    prints_unflushed,
    logs,
    report_identity,
    names_probe,
    starts_waiting_child,
    waits_for_word,
    starts_daemon,
    burns_cpu,
    allocates,
    opens_files,
    beats,
);

// ---- tests ----

fn names_follow_pythons_counter() -> TestResult {
    let (mut ours, theirs) = pipe(true)?;
    let mut probe = Process::new(names_probe, theirs);
    let k = probe.identity().to_string();
    check_eq!(probe.name(), format!("Process-{k}"));
    probe.start()?;
    let names: Vec<String> = ours.recv()?;
    check_eq!(probe.join()?, ExitReason::Normal);
    let want = vec![
        format!("Process-{k}:1"),
        "custom".to_string(),
        format!("Process-{k}:3"),
        format!("Process-{k}:3"),
        format!("Process-{k}"),
    ];
    check_eq!(names, want);
    Ok(())
}

fn parent_process_is_the_creator() -> TestResult {
    let (mut ours, theirs) = pipe(true)?;
    let mut p = Process::new(report_identity, theirs);
    p.start()?;
    let (name, pid, parent): (String, u32, Option<(String, u32)>) = ours.recv()?;
    p.join()?;
    check_eq!(name, p.name());
    check_eq!(Some(pid), p.pid());
    check_eq!(
        parent,
        Some(("MainProcess".to_string(), std::process::id()))
    );
    check!(
        multiproc::parent_process().is_none(),
        "the root has no parent"
    );
    Ok(())
}

fn exit_codes_and_reasons_follow_python() -> TestResult {
    let mut ret = Process::new(returns, ());
    let mut exit3 = Process::new(exits_with, 3);
    let mut panic = Process::new(panics, ()).capture_output();
    let mut abort = Process::new(aborts, ());
    let mut failed = Process::new(fails, ()).capture_output();
    for p in [&mut ret, &mut exit3, &mut panic, &mut abort, &mut failed] {
        p.start()?;
    }
    check_eq!(ret.join()?, ExitReason::Normal);
    check_eq!(ret.exit_code(), Some(0));
    check_eq!(exit3.join()?, ExitReason::Exited(3));
    check_eq!(exit3.exit_code(), Some(3));
    match panic.join()? {
        ExitReason::Panicked { message, location } => {
            check_eq!(message, "deliberate test panic");
            check!(
                location
                    .as_deref()
                    .is_some_and(|l| l.contains("process_lifecycle.rs")),
                "{location:?}"
            );
        }
        other => return Err(format!("expected a panic, got {other}").into()),
    }
    check_eq!(panic.exit_code(), Some(1));
    let stderr = String::from_utf8_lossy(&panic.output().unwrap_or_default().stderr).to_string();
    check!(
        stderr.contains(&format!("Process {}:", panic.name())),
        "stderr: {stderr}"
    );
    check_eq!(abort.join()?, ExitReason::Signaled(6));
    check_eq!(abort.exit_code(), Some(-6));
    check_eq!(
        failed.join()?,
        ExitReason::Failed {
            message: "the function said no".into()
        }
    );
    check_eq!(failed.exit_code(), Some(1));
    Ok(())
}

fn terminate_and_kill_give_negative_codes() -> TestResult {
    let mut t = Process::new(waits_for_stop, ());
    let mut k = Process::new(waits_for_stop, ());
    t.start()?;
    k.start()?;
    check!(t.is_alive() && k.is_alive(), "both run");
    t.terminate()?;
    k.kill()?;
    check_eq!(t.join()?, ExitReason::Signaled(15));
    check_eq!(t.exit_code(), Some(-15));
    check_eq!(k.join()?, ExitReason::Signaled(9));
    check_eq!(k.exit_code(), Some(-9));
    check!(!t.is_alive(), "exited");
    // Signalling a process that has exited is a no-op, as in Python.
    t.terminate()?;
    Ok(())
}

fn join_on_a_never_started_process_is_an_error() -> TestResult {
    let p = Process::new(returns, ());
    let err = p.join().unwrap_err();
    check!(matches!(err, Error::NotStarted(_)), "{err:?}");
    check!(err.to_string().contains("has not been started"), "{err}");
    check_eq!(p.exit_code(), None);
    check_eq!(p.pid(), None);
    Ok(())
}

fn starting_twice_is_an_error() -> TestResult {
    let mut p = Process::new(returns, ());
    p.start()?;
    let err = p.start().unwrap_err();
    check!(matches!(err, Error::AlreadyStarted(_)), "{err:?}");
    check!(
        err.to_string().contains("cannot start a process twice"),
        "{err}"
    );
    check_eq!(p.join()?, ExitReason::Normal);
    Ok(())
}

fn closing_a_running_process_is_an_error() -> TestResult {
    let mut p = Process::new(waits_for_stop, ());
    p.start()?;
    let err = p.close().unwrap_err();
    check!(matches!(err, Error::StillRunning(_)), "{err:?}");
    check!(p.is_alive(), "close did not touch the process");
    p.kill()?;
    p.join()?;
    p.close()?;
    let err = p.join().unwrap_err();
    check!(matches!(err, Error::Closed(_)), "{err:?}");
    Ok(())
}

fn unregistered_function_names_the_macro() -> TestResult {
    let mut p = Process::new(not_registered, ());
    let err = p.start().unwrap_err();
    check!(matches!(err, Error::Unregistered { .. }), "{err:?}");
    check!(
        err.to_string()
            .contains("multiproc::register!(not_registered)"),
        "{err}"
    );
    Ok(())
}

fn a_closure_is_refused_with_a_hint() -> TestResult {
    let mut p = Process::new(|x: i32| println!("{x}"), 1);
    let err = p.start().unwrap_err();
    check!(matches!(err, Error::Closure { .. }), "{err:?}");
    check!(err.to_string().contains("define a `fn`"), "{err}");
    Ok(())
}

fn arguments_over_the_frame_limit_are_refused_before_spawning() -> TestResult {
    let mut p = Process::new(prints, "x".repeat(multiproc::MAX_FRAME_LEN));
    let err = p.start().unwrap_err();
    check!(matches!(err, Error::ArgsTooLarge { .. }), "{err:?}");
    check_eq!(p.pid(), None);
    Ok(())
}

fn protocol_mismatch_is_refused_by_the_child() -> TestResult {
    let mut p = Process::from(test_hooks::hello_versions(
        multiproc::Process::new(returns, ()),
        999,
        0,
    ));
    let err = p.start().unwrap_err();
    match &err {
        Error::Bootstrap { source, .. } => check!(
            source.to_string().contains("protocol version mismatch"),
            "{err}"
        ),
        other => return Err(format!("expected a bootstrap error, got {other:?}").into()),
    }
    Ok(())
}

fn multiproc_core_protocol() -> u32 {
    1
}

fn build_id_mismatch_is_refused_by_the_child() -> TestResult {
    let mut p = Process::from(test_hooks::hello_versions(
        multiproc::Process::new(returns, ()),
        multiproc_core_protocol(),
        0xdead_beef,
    ));
    let err = p.start().unwrap_err();
    match &err {
        Error::Bootstrap { source, .. } => {
            check!(source.to_string().contains("build id mismatch"), "{err}")
        }
        other => return Err(format!("expected a bootstrap error, got {other:?}").into()),
    }
    Ok(())
}

fn stop_shuts_down_a_cooperating_child() -> TestResult {
    let mut p = Process::new(waits_for_stop, ());
    p.start()?;
    check_eq!(p.stop(Duration::from_secs(10))?, ExitReason::Shutdown);
    check_eq!(p.exit_code(), Some(0));
    Ok(())
}

fn stop_kills_a_child_that_ignores_it() -> TestResult {
    let (mut ours, theirs) = pipe(true)?;
    let mut p = Process::new(ignores_stop, theirs);
    p.start()?;
    let _: String = ours.recv()?;
    check_eq!(p.stop(Duration::from_millis(200))?, ExitReason::Killed);
    check_eq!(p.exit_code(), Some(-9));
    Ok(())
}

fn output_can_be_captured() -> TestResult {
    let mut p = Process::new(prints, "captured text".to_string()).capture_output();
    p.start()?;
    p.join()?;
    let out = p.output().ok_or("no output")?;
    check_eq!(String::from_utf8_lossy(&out.stdout), "captured text\n");
    check_eq!(String::from_utf8_lossy(&out.stderr), "err:captured text\n");
    Ok(())
}

/// A child ends as Python's do (`os._exit` after flushing), and what it left in the
/// buffers of Rust's and C's stdout still reaches its parent.
fn a_childs_unflushed_output_is_flushed_at_its_end() -> TestResult {
    let mut p = Process::new(prints_unflushed, "left".to_string()).capture_output();
    p.start()?;
    check_eq!(p.join()?, ExitReason::Normal);
    let out = p.output().ok_or("no output")?;
    check_eq!(String::from_utf8_lossy(&out.stdout), "rust:left;c:left");
    Ok(())
}

fn child_logs_reach_the_parent_subscriber() -> TestResult {
    let text = format!("log line from a child {}", std::process::id());
    let mut p = Process::new(logs, text.clone());
    p.start()?;
    p.join()?;
    let logs = common::child_logs();
    check!(
        logs.iter()
            .any(|(process, message)| process == p.name() && message == &text),
        "{logs:?}"
    );
    Ok(())
}

fn active_children_lists_running_children_only() -> TestResult {
    let mut running = Process::new(waits_for_stop, ());
    let mut done = Process::new(returns, ());
    running.start()?;
    done.start()?;
    done.join()?;
    let active = multiproc::active_children();
    check!(
        active.iter().any(|c| Some(c.pid) == running.pid()),
        "{active:?}"
    );
    check!(
        !active.iter().any(|c| Some(c.pid) == done.pid()),
        "{active:?}"
    );
    running.stop(Duration::from_secs(10))?;
    check!(
        !multiproc::active_children()
            .iter()
            .any(|c| Some(c.pid) == running.pid()),
        "still listed"
    );
    Ok(())
}

fn non_daemon_children_are_joined_before_their_parent_exits() -> TestResult {
    let (mut word, relay) = pipe(true)?;
    let mut p = Process::new(starts_waiting_child, relay);
    p.start()?;
    check_eq!(p.join_timeout(Duration::from_millis(300))?, None);
    word.send(&"go")?;
    check_eq!(p.join()?, ExitReason::Normal);
    Ok(())
}

fn daemon_children_are_stopped_when_their_parent_exits() -> TestResult {
    let (mut ours, theirs) = pipe(true)?;
    let mut p = Process::new(starts_daemon, theirs);
    p.start()?;
    let daemon_pid: Option<u32> = ours.recv()?;
    let daemon_pid = daemon_pid.ok_or("daemon had no pid")?;
    check_eq!(p.join()?, ExitReason::Normal);
    check!(
        common::wait_gone(daemon_pid, Duration::from_secs(5)),
        "daemon {daemon_pid} outlived its parent"
    );
    Ok(())
}

fn sentinel_completes_when_the_process_exits() -> TestResult {
    let mut p = Process::new(exits_with, 7);
    p.start()?;
    let sentinel = p.as_async().sentinel()?;
    let reason = multiproc_block_on(sentinel.wait());
    check_eq!(reason, ExitReason::Exited(7));
    Ok(())
}

fn multiproc_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn a_cpu_limit_ends_the_child_and_says_so() -> TestResult {
    let limits = multiproc::Limits {
        cpu: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let mut p = Process::new(burns_cpu, ()).limits(limits);
    p.start()?;
    let reason = p.join()?;
    check_eq!(
        reason,
        ExitReason::LimitExceeded {
            limit: multiproc::Limit::Cpu,
            signal: 24
        }
    );
    check_eq!(p.exit_code(), Some(-24));
    Ok(())
}

fn a_memory_limit_stops_a_large_allocation() -> TestResult {
    let limits = multiproc::Limits {
        memory: Some(512 << 20),
        ..Default::default()
    };
    let mut big = Process::new(allocates, 1 << 30)
        .limits(limits)
        .capture_output();
    let mut small = Process::new(allocates, 1 << 20)
        .limits(limits)
        .capture_output();
    big.start()?;
    small.start()?;
    // Rust aborts when an allocation fails: the reason cannot name the limit.
    check_eq!(big.join()?, ExitReason::Signaled(6));
    let stderr = String::from_utf8_lossy(&big.output().unwrap_or_default().stderr).to_string();
    check!(stderr.contains("memory allocation of"), "{stderr}");
    check_eq!(small.join()?, ExitReason::Normal);
    Ok(())
}

fn an_open_files_limit_is_enforced() -> TestResult {
    let limits = multiproc::Limits {
        open_files: Some(32),
        ..Default::default()
    };
    let mut p = Process::new(opens_files, 100).limits(limits);
    p.start()?;
    match p.join()? {
        ExitReason::Failed { message } => {
            check!(message.contains("Too many open files"), "{message}")
        }
        other => return Err(format!("expected a failure, got {other}").into()),
    }
    let mut ok = Process::new(opens_files, 10).limits(limits);
    ok.start()?;
    check_eq!(ok.join()?, ExitReason::Normal);
    Ok(())
}

fn a_child_that_misses_its_heartbeat_is_killed_as_hung() -> TestResult {
    let mut silent = Process::new(waits_for_stop, ()).heartbeat(Duration::from_millis(200));
    silent.start()?;
    check_eq!(silent.join()?, ExitReason::Hung);
    check_eq!(silent.exit_code(), Some(-9));
    Ok(())
}

fn a_child_that_beats_is_left_alone() -> TestResult {
    // 60 steps of 20 ms: 1.2 s in all, past the 500 ms interval, with room for a
    // loaded machine between two beats.
    let mut p = Process::new(beats, 60).heartbeat(Duration::from_millis(500));
    p.start()?;
    check_eq!(p.join()?, ExitReason::Normal);
    Ok(())
}

/// Makes a child's `main` block forever before `init()`: it never answers its Hello.
const HANG_BEFORE_INIT: &str = "MULTIPROC_TEST_HANG_BEFORE_INIT";

fn a_child_that_never_answers_is_killed_after_the_handshake_timeout() -> TestResult {
    let mut p = Process::new(returns, ())
        .env(HANG_BEFORE_INIT, "1")
        .handshake_timeout(Duration::from_millis(300));
    let err = p.start().unwrap_err();
    check!(matches!(err, Error::HandshakeTimeout { .. }), "{err:?}");
    check!(err.to_string().contains("multiproc::init()"), "{err}");
    check!(
        multiproc::active_children().is_empty() || p.pid().is_none(),
        "the child was not left running"
    );
    Ok(())
}

fn main() {
    if std::env::var_os(HANG_BEFORE_INIT).is_some() {
        // A program that does something long before `init()`, which is not its first
        // line: its parent must not wait for it forever.
        loop {
            std::thread::park();
        }
    }
    common::run(vec![
        trial("names_follow_pythons_counter", names_follow_pythons_counter),
        trial(
            "parent_process_is_the_creator",
            parent_process_is_the_creator,
        ),
        trial(
            "exit_codes_and_reasons_follow_python",
            exit_codes_and_reasons_follow_python,
        ),
        trial(
            "terminate_and_kill_give_negative_codes",
            terminate_and_kill_give_negative_codes,
        ),
        trial(
            "join_on_a_never_started_process_is_an_error",
            join_on_a_never_started_process_is_an_error,
        ),
        trial("starting_twice_is_an_error", starting_twice_is_an_error),
        trial(
            "closing_a_running_process_is_an_error",
            closing_a_running_process_is_an_error,
        ),
        trial(
            "unregistered_function_names_the_macro",
            unregistered_function_names_the_macro,
        ),
        trial(
            "protocol_mismatch_is_refused_by_the_child",
            protocol_mismatch_is_refused_by_the_child,
        ),
        trial(
            "build_id_mismatch_is_refused_by_the_child",
            build_id_mismatch_is_refused_by_the_child,
        ),
        trial(
            "stop_shuts_down_a_cooperating_child",
            stop_shuts_down_a_cooperating_child,
        ),
        trial(
            "stop_kills_a_child_that_ignores_it",
            stop_kills_a_child_that_ignores_it,
        ),
        trial("output_can_be_captured", output_can_be_captured),
        trial(
            "a_childs_unflushed_output_is_flushed_at_its_end",
            a_childs_unflushed_output_is_flushed_at_its_end,
        ),
        trial(
            "child_logs_reach_the_parent_subscriber",
            child_logs_reach_the_parent_subscriber,
        ),
        trial(
            "active_children_lists_running_children_only",
            active_children_lists_running_children_only,
        ),
        trial(
            "non_daemon_children_are_joined_before_their_parent_exits",
            non_daemon_children_are_joined_before_their_parent_exits,
        ),
        trial(
            "daemon_children_are_stopped_when_their_parent_exits",
            daemon_children_are_stopped_when_their_parent_exits,
        ),
        trial(
            "sentinel_completes_when_the_process_exits",
            sentinel_completes_when_the_process_exits,
        ),
        trial(
            "a_closure_is_refused_with_a_hint",
            a_closure_is_refused_with_a_hint,
        ),
        trial(
            "arguments_over_the_frame_limit_are_refused_before_spawning",
            arguments_over_the_frame_limit_are_refused_before_spawning,
        ),
        trial(
            "a_cpu_limit_ends_the_child_and_says_so",
            a_cpu_limit_ends_the_child_and_says_so,
        ),
        trial(
            "a_memory_limit_stops_a_large_allocation",
            a_memory_limit_stops_a_large_allocation,
        ),
        trial(
            "an_open_files_limit_is_enforced",
            an_open_files_limit_is_enforced,
        ),
        trial(
            "a_child_that_misses_its_heartbeat_is_killed_as_hung",
            a_child_that_misses_its_heartbeat_is_killed_as_hung,
        ),
        trial(
            "a_child_that_beats_is_left_alone",
            a_child_that_beats_is_left_alone,
        ),
        trial(
            "a_child_that_never_answers_is_killed_after_the_handshake_timeout",
            a_child_that_never_answers_is_killed_after_the_handshake_timeout,
        ),
    ])
}
