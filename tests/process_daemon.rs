//! Daemon children at their parent's exit: terminated at once (SIGTERM, as Python
//! does), not waited for, and reported as ended by SIGTERM.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use common::{TestResult, trial};
use multiproc::ExitReason;
use multiproc::blocking::{Connection, Process, pipe};

/// Well under the 5 s shutdown timeout a daemon would cost if it were asked to stop
/// and waited for, and well over what a SIGTERM and a reap take on a loaded machine.
const PROMPT: Duration = Duration::from_secs(2);

/// A daemon's work that never looks at `wait_for_stop`.
fn blocks_forever() {
    loop {
        std::thread::park();
    }
}

/// Starts a daemon that blocks forever, sends its pid up, and returns: the exit that
/// follows must not wait for the daemon.
fn starts_a_daemon(mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    let mut daemon = Process::new(blocks_forever, ()).daemon(true);
    daemon.start()?;
    up.send(&daemon.pid())?;
    Ok(())
}

/// Starts a daemon that blocks forever, winds its children down as its exit would,
/// and sends up how long that took and how the daemon ended.
fn finishes_a_daemon(mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    let mut daemon = Process::new(blocks_forever, ()).daemon(true);
    daemon.start()?;
    let t0 = Instant::now();
    multiproc::__private::finish_children();
    up.send(&(t0.elapsed(), daemon.exit_reason(), daemon.exit_code()))?;
    Ok(())
}

multiproc::register!(blocks_forever, starts_a_daemon, finishes_a_daemon);

/// A pidfd for `pid`, to see its end even though it is not our child; `None` when
/// it has ended (and been reaped) already.
fn pidfd(pid: u32) -> Result<Option<OwnedFd>, Box<dyn std::error::Error>> {
    let pid = rustix::process::Pid::from_raw(pid as i32).ok_or("bad pid")?;
    match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::SRCH) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether the process behind `pidfd` has ended (a pidfd is readable once it has).
fn has_ended(pidfd: &Option<OwnedFd>) -> bool {
    let Some(pidfd) = pidfd else { return true };
    let mut set = [rustix::event::PollFd::new(
        pidfd,
        rustix::event::PollFlags::IN,
    )];
    let zero = rustix::event::Timespec::default();
    matches!(rustix::event::poll(&mut set, Some(&zero)), Ok(1))
}

fn a_daemon_does_not_delay_its_parents_exit() -> TestResult {
    let (mut ours, theirs) = pipe(true)?;
    let mut parent = Process::new(starts_a_daemon, theirs);
    parent.start()?;
    let daemon: Option<u32> = ours.recv()?;
    let daemon = pidfd(daemon.ok_or("the daemon has no pid")?)?;
    // From here the parent's function has returned or is about to: what remains is
    // its exit, which must not wait for the daemon.
    let t0 = Instant::now();
    let reason = parent.join()?;
    let took = t0.elapsed();
    check_eq!(reason, ExitReason::Normal);
    check!(took < PROMPT, "the parent took {took:?} to exit");
    // The parent reaps its children before it exits, so the daemon is gone by now.
    check!(has_ended(&daemon), "the daemon outlived its parent");
    Ok(())
}

fn a_daemon_terminated_at_exit_ends_by_sigterm() -> TestResult {
    let (mut ours, theirs) = pipe(true)?;
    let mut parent = Process::new(finishes_a_daemon, theirs);
    parent.start()?;
    let (took, reason, code): (Duration, Option<ExitReason>, Option<i32>) = ours.recv()?;
    check!(took < PROMPT, "terminating the daemon took {took:?}");
    check_eq!(reason, Some(ExitReason::Signaled(15)));
    check_eq!(code, Some(-15));
    check_eq!(parent.join()?, ExitReason::Normal);
    Ok(())
}

fn main() {
    common::run(vec![
        trial(
            "a_daemon_does_not_delay_its_parents_exit",
            a_daemon_does_not_delay_its_parents_exit,
        ),
        trial(
            "a_daemon_terminated_at_exit_ends_by_sigterm",
            a_daemon_terminated_at_exit_ends_by_sigterm,
        ),
    ]);
}
