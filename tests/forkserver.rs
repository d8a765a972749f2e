//! The forkserver start method: children forked from a single-threaded zygote behave
//! as spawned ones, and outlive the forkserver if it dies.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::Duration;

use common::{TestResult, trial};
use multiproc::blocking::{Connection, Process, pipe};
use multiproc::{Actor, BoxError, ExitReason, StartMethod};

fn returns() {}

fn exits_with(code: i32) {
    std::process::exit(code);
}

fn panics() {
    panic!("forked and panicked");
}

fn aborts() {
    std::process::abort();
}

/// Starts a spawned child that exits 4, and exits with 10 more than its exit code:
/// a forked child reaps its own children.
fn spawns_and_joins() {
    let mut p = Process::new(exits_with, 4).start_method(StartMethod::Spawn);
    let code = p
        .start()
        .and_then(|()| p.join())
        .map_or(99, |r| r.exit_code());
    std::process::exit(10 + code);
}

fn waits() {
    multiproc::blocking::wait_for_stop();
}

fn reports(mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    let me = multiproc::current_process();
    let parent = multiproc::parent_process().ok_or("no parent")?;
    up.send(&(
        me.name().to_string(),
        parent.pid(),
        std::env::var("FORKED_ENV").ok(),
    ))?;
    Ok(())
}

/// Waits to be asked to stop, then exits with `code` (no report: `exit` skips it).
fn waits_then_exits(code: i32) {
    multiproc::blocking::wait_for_stop();
    std::process::exit(code);
}

multiproc::register!(
    returns,
    exits_with,
    panics,
    waits,
    waits_then_exits,
    reports,
    aborts,
    spawns_and_joins
);

struct Double;

impl Actor for Double {
    type Args = ();
    type Msg = u32;
    type Reply = u32;

    async fn start((): ()) -> Result<Self, BoxError> {
        Ok(Double)
    }

    async fn handle(&mut self, n: u32) -> u32 {
        2 * n
    }
}

multiproc::register_actor!(Double);

/// Tests share this process's forkserver; the one that kills it runs alone, or the
/// others' children would lose their exit statuses with it (as documented).
static FORKSERVER: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    FORKSERVER.read().unwrap_or_else(|e| e.into_inner())
}

fn forked(p: Process) -> Process {
    p.start_method(StartMethod::Forkserver)
}

fn forked_children_end_as_spawned_ones_do() -> TestResult {
    let _shared = shared();
    let mut ok = forked(Process::new(returns, ()));
    let mut three = forked(Process::new(exits_with, 3));
    let mut panic = forked(Process::new(panics, ()));
    let mut killed = forked(Process::new(waits, ()));
    for p in [&mut ok, &mut three, &mut panic, &mut killed] {
        p.start()?;
    }
    killed.kill()?;
    check_eq!(ok.join()?, ExitReason::Normal);
    check_eq!(three.join()?, ExitReason::Exited(3));
    check!(
        matches!(panic.join()?, ExitReason::Panicked { .. }),
        "{:?}",
        panic.exit_reason()
    );
    check_eq!(killed.join()?, ExitReason::Signaled(9));
    let mut stopped = forked(Process::new(waits, ()));
    stopped.start()?;
    check_eq!(stopped.stop(Duration::from_secs(10))?, ExitReason::Shutdown);
    Ok(())
}

fn forked_children_get_their_arguments_names_and_environment() -> TestResult {
    let _shared = shared();
    let (mut ours, theirs) = pipe(true)?;
    let mut p = forked(Process::new(reports, theirs)).env("FORKED_ENV", "yes");
    p.start()?;
    let (name, parent, env): (String, u32, Option<String>) = ours.recv()?;
    check_eq!(name, p.name());
    check_eq!(parent, std::process::id());
    check_eq!(env.as_deref(), Some("yes"));
    p.join()?;
    Ok(())
}

fn forked_actors_answer_calls() -> TestResult {
    let _shared = shared();
    let mut p = forked(Process::actor::<Double>(()));
    p.start()?;
    check_eq!(p.actor_ref::<Double>().call(21)?, 42);
    check_eq!(p.stop(Duration::from_secs(10))?, ExitReason::Shutdown);
    Ok(())
}

fn children_outlive_a_dead_forkserver_which_is_restarted() -> TestResult {
    let _alone = FORKSERVER.write().unwrap_or_else(|e| e.into_inner());
    let mut first = forked(Process::actor::<Double>(()));
    first.start()?;
    let server = multiproc::__private::test_hooks::kill_forkserver().ok_or("no forkserver runs")?;
    check!(
        common::wait_gone(server, Duration::from_secs(5)),
        "the forkserver survived"
    );
    // The child it forked still runs and answers.
    check_eq!(first.actor_ref::<Double>().call(5)?, 10);
    // The next start brings up a new forkserver.
    let mut second = forked(Process::actor::<Double>(()));
    second.start()?;
    check_eq!(second.actor_ref::<Double>().call(1)?, 2);
    // The first child's status went with the forkserver; its own report still says
    // how it ended.
    check_eq!(first.stop(Duration::from_secs(10))?, ExitReason::Shutdown);
    check_eq!(second.stop(Duration::from_secs(10))?, ExitReason::Shutdown);
    Ok(())
}

fn a_child_forked_just_before_its_forkserver_died_is_still_joined() -> TestResult {
    let _alone = FORKSERVER.write().unwrap_or_else(|e| e.into_inner());
    // The forkserver dies after it answered, before the answer is handled: the exit it
    // will never relay must not be waited for.
    multiproc::__private::test_hooks::kill_forkserver_after_next_fork();
    let mut p = forked(Process::new(returns, ()));
    p.start()?;
    let reason = p.join_timeout(Duration::from_secs(30))?;
    check_eq!(reason, Some(ExitReason::Normal));
    // The next start brings up a new forkserver.
    let mut again = forked(Process::new(returns, ()));
    again.start()?;
    check_eq!(again.join()?, ExitReason::Normal);
    Ok(())
}

/// The forkserver's children that no start asked for: its spare (see the book's
/// architecture chapter), once the children of `ours` are left out.
fn spares(server: u32, ours: &[u32]) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{server}/task/{server}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|p| !ours.contains(p))
        .collect()
}

/// The spare, once there is exactly one and it is not `before`'s: the forkserver
/// forks it after it answers a request, so a start can return before it exists.
/// Nothing outside the forkserver signals its fork; it is looked for within a bound.
fn next_spare(server: u32, ours: &[u32], before: &[u32]) -> Vec<u32> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = spares(server, ours);
        if (now.len() == 1 && now != before) || std::time::Instant::now() >= deadline {
            return now;
        }
        std::thread::yield_now();
    }
}

fn the_spare_is_used_replaced_and_dies_with_its_forkserver() -> TestResult {
    let _alone = FORKSERVER.write().unwrap_or_else(|e| e.into_inner());
    let mut p = forked(Process::new(waits, ()));
    p.start()?;
    let server = multiproc::__private::test_hooks::forkserver_pid().ok_or("no forkserver")?;
    let ours = [p.pid().ok_or("no pid")?];
    let first = next_spare(server, &ours, &[]);
    check_eq!(first.len(), 1);
    // The next start takes the spare, and the forkserver forks another.
    let mut q = forked(Process::new(returns, ()));
    q.start()?;
    check_eq!(q.pid(), Some(first[0]));
    check_eq!(q.join()?, ExitReason::Normal);
    let second = next_spare(server, &ours, &first);
    check!(
        second.len() == 1 && second != first,
        "{first:?} then {second:?}"
    );
    // A spare killed from outside is reaped, not used, and replaced.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(second[0] as i32).ok_or("pid")?,
        rustix::process::Signal::KILL,
    )?;
    check!(
        common::wait_gone(second[0], Duration::from_secs(5)),
        "the spare survived SIGKILL"
    );
    let mut r = forked(Process::new(exits_with, 3));
    r.start()?;
    check!(r.pid() != Some(second[0]), "a dead spare was used");
    check_eq!(r.join()?, ExitReason::Exited(3));
    check!(
        !std::path::Path::new(&format!("/proc/{}", second[0])).exists(),
        "the killed spare was not reaped"
    );
    let third = next_spare(server, &ours, &second);
    check!(
        third.len() == 1 && third != second,
        "{second:?} then {third:?}"
    );
    // With its forkserver, the spare ends; the child it had forked runs on.
    multiproc::__private::test_hooks::kill_forkserver();
    check!(
        common::wait_gone(third[0], Duration::from_secs(5)),
        "the spare outlived its forkserver"
    );
    check!(p.is_alive(), "a forked child died with its forkserver");
    p.stop(Duration::from_secs(10))?;
    Ok(())
}

/// Whether this kernel keeps a reaped child's status for its pidfd (Linux 6.15+), so a
/// forkserver may let the kernel reap its children.
fn kernel_keeps_exits_for_pidfds() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 15)
}

/// Every way a child ends, as its reason, with a forkserver that relays the exits
/// and with one whose children the kernel reaps (their statuses then read through
/// their pidfds): the same reasons both ways.
fn exits_end_the_same_relayed_or_read_through_pidfds() -> TestResult {
    use multiproc::__private::test_hooks;
    let _alone = FORKSERVER.write().unwrap_or_else(|e| e.into_inner());
    let mut by_path = Vec::new();
    for relay in [true, false] {
        // A forkserver of the path under test: the running one (of either) goes.
        if let Some(server) = test_hooks::kill_forkserver() {
            check!(
                common::wait_gone(server, Duration::from_secs(5)),
                "the forkserver survived"
            );
        }
        test_hooks::forkserver_relays_exits(relay);
        let mut ok = forked(Process::new(returns, ()));
        ok.start()?;
        let autoreaps = test_hooks::forkserver_autoreaps();
        test_hooks::forkserver_relays_exits(false);
        let expected = !relay && kernel_keeps_exits_for_pidfds();
        check_eq!(autoreaps, Some(expected));
        let mut zero = forked(Process::new(exits_with, 0));
        let mut three = forked(Process::new(exits_with, 3));
        let mut panic = forked(Process::new(panics, ()));
        let mut abort = forked(Process::new(aborts, ()));
        let mut killed = forked(Process::new(waits, ()));
        let mut terminated = forked(Process::new(waits, ()));
        let mut stopped = forked(Process::new(waits_then_exits, 5));
        let mut shut = forked(Process::new(waits, ()));
        for p in [
            &mut zero,
            &mut three,
            &mut panic,
            &mut abort,
            &mut killed,
            &mut terminated,
            &mut stopped,
            &mut shut,
        ] {
            p.start()?;
        }
        killed.kill()?;
        terminated.terminate()?;
        let reasons = vec![
            ok.join()?,
            zero.join()?,
            three.join()?,
            panic.join()?,
            abort.join()?,
            killed.join()?,
            terminated.join()?,
            stopped.stop(Duration::from_secs(10))?,
            shut.stop(Duration::from_secs(10))?,
        ];
        let codes: Vec<i32> = reasons.iter().map(ExitReason::exit_code).collect();
        eprintln!("relayed {relay}: {reasons:?}, exit codes {codes:?}");
        check_eq!(reasons[0], ExitReason::Normal);
        check_eq!(reasons[2], ExitReason::Exited(3));
        check!(
            matches!(reasons[3], ExitReason::Panicked { .. }),
            "{:?}",
            reasons[3]
        );
        check_eq!(reasons[5], ExitReason::Signaled(9));
        check_eq!(reasons[8], ExitReason::Shutdown);
        by_path.push((reasons, codes));
    }
    check_eq!(by_path[0], by_path[1]);
    Ok(())
}

fn forked_children_wait_for_their_own_children() -> TestResult {
    let _shared = shared();
    let mut p = forked(Process::new(spawns_and_joins, ()));
    p.start()?;
    check_eq!(p.join()?, ExitReason::Exited(14));
    Ok(())
}

fn capture_is_refused_with_the_forkserver() -> TestResult {
    let _shared = shared();
    let mut p = forked(Process::new(returns, ())).capture_output();
    let err = p.start().unwrap_err();
    check!(matches!(err, multiproc::Error::Unsupported(_)), "{err:?}");
    Ok(())
}

fn a_supervisor_can_fork_its_children() -> TestResult {
    let _shared = shared();
    let flags = multiproc::SupervisorFlags {
        start_method: StartMethod::Forkserver,
        backoff: multiproc::Backoff::NONE,
        ..multiproc::SupervisorFlags::default()
    };
    let supervisor =
        multiproc::Supervisor::new(flags).child(multiproc::function_child("w", waits, ())?);
    let mut events = multiproc::blocking::Events::from(supervisor.events());
    let sup = multiproc::blocking::SupervisorRef::start(supervisor)?;
    let pid = sup.which_children()?[0].pid.ok_or("no pid")?;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).ok_or("pid")?,
        rustix::process::Signal::KILL,
    )?;
    let mut exited = None;
    for event in events.by_ref() {
        match event {
            multiproc::SupervisorEvent::ChildExited { reason, .. } => exited = Some(reason),
            multiproc::SupervisorEvent::Restarted { .. } => break,
            _ => {}
        }
    }
    check_eq!(exited, Some(ExitReason::Signaled(9)));
    check!(
        sup.which_children()?[0].pid.is_some_and(|p| p != pid),
        "replaced"
    );
    sup.shutdown();
    Ok(())
}

fn a_dead_forkservers_children_end_with_their_reason_not_255() -> TestResult {
    let _alone = FORKSERVER.write().unwrap_or_else(|e| e.into_inner());
    let mut killed = forked(Process::new(waits, ()));
    killed.start()?;
    let mut exits = forked(Process::new(waits_then_exits, 3));
    exits.start()?;
    let server = multiproc::__private::test_hooks::kill_forkserver().ok_or("no forkserver runs")?;
    check!(
        common::wait_gone(server, Duration::from_secs(5)),
        "the forkserver survived"
    );
    // Killed from outside, with no report of its own: the kernel's status, read
    // through its pidfd once its new parent has reaped it, or `ForkserverLost` where
    // that cannot be read; never the `Exited(255)` it used to be.
    let pid = rustix::process::Pid::from_raw(killed.pid().ok_or("no pid")? as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL)?;
    let reason = killed.join()?;
    eprintln!("a forked child SIGKILLed after its forkserver died: {reason}");
    check!(
        matches!(reason, ExitReason::Signaled(9) | ExitReason::ForkserverLost),
        "{reason:?}"
    );
    check!(!reason.to_string().contains("255"), "{reason}");
    let reason = exits.stop(Duration::from_secs(10))?;
    eprintln!("a forked child that exited 3 after its forkserver died: {reason}");
    check!(
        matches!(reason, ExitReason::Exited(3) | ExitReason::ForkserverLost),
        "{reason:?}"
    );
    Ok(())
}

fn main() {
    // Restarts and respawns in loops: bounded, whatever a regression does.
    common::cgroup::confine("forkserver");
    common::run(vec![
        trial(
            "forked_children_end_as_spawned_ones_do",
            forked_children_end_as_spawned_ones_do,
        ),
        trial(
            "forked_children_get_their_arguments_names_and_environment",
            forked_children_get_their_arguments_names_and_environment,
        ),
        trial("forked_actors_answer_calls", forked_actors_answer_calls),
        trial(
            "a_child_forked_just_before_its_forkserver_died_is_still_joined",
            a_child_forked_just_before_its_forkserver_died_is_still_joined,
        ),
        trial(
            "children_outlive_a_dead_forkserver_which_is_restarted",
            children_outlive_a_dead_forkserver_which_is_restarted,
        ),
        trial(
            "the_spare_is_used_replaced_and_dies_with_its_forkserver",
            the_spare_is_used_replaced_and_dies_with_its_forkserver,
        ),
        trial(
            "a_dead_forkservers_children_end_with_their_reason_not_255",
            a_dead_forkservers_children_end_with_their_reason_not_255,
        ),
        trial(
            "exits_end_the_same_relayed_or_read_through_pidfds",
            exits_end_the_same_relayed_or_read_through_pidfds,
        ),
        trial(
            "forked_children_wait_for_their_own_children",
            forked_children_wait_for_their_own_children,
        ),
        trial(
            "capture_is_refused_with_the_forkserver",
            capture_is_refused_with_the_forkserver,
        ),
        trial(
            "a_supervisor_can_fork_its_children",
            a_supervisor_can_fork_its_children,
        ),
    ])
}
