//! The rings of a control link in shared memory, broken on purpose with real child
//! processes and real signals: a child killed in the middle of a ring write, a child
//! that corrupts its ring, and a ring that fills up because nobody reads it.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::Duration;

use common::{TestResult, trial};
use multiproc::__private::test_hooks::{self, RingDamage};
use multiproc::blocking::Process;
use multiproc::{Actor, BoxError, CallError, ExitReason, RemoteError};
use rustix::process::{Pid, Signal, kill_process};
use serde::{Deserialize, Serialize};

const STOP: Duration = Duration::from_secs(10);

/// Bytes of a padding large enough to go on the socket, not in the ring (a ring of
/// 64 KiB takes messages up to 16 KiB).
const LARGE: usize = 20 << 10;

/// An actor that counts what it gets, checks that it comes in order, and breaks its
/// link when asked.
struct Breaker {
    next: u64,
    out_of_order: u64,
}

#[derive(Debug, Serialize, Deserialize)]
enum Msg {
    /// Message number `n`, with padding.
    Seq(u64, #[serde(with = "serde_bytes")] Vec<u8>),
    /// How many came in order; each one out of order adds a million.
    Count,
    DieMidWrite,
    Damage(RingDamage),
}

impl Actor for Breaker {
    type Args = ();
    type Msg = Msg;
    type Reply = u64;

    async fn start((): ()) -> Result<Self, BoxError> {
        Ok(Breaker {
            next: 0,
            out_of_order: 0,
        })
    }

    async fn handle(&mut self, msg: Msg) -> u64 {
        match msg {
            Msg::Seq(n, _) => {
                if n != self.next {
                    self.out_of_order += 1;
                }
                self.next = n + 1;
            }
            Msg::Count => {}
            Msg::DieMidWrite => test_hooks::die_mid_ring_write(),
            Msg::Damage(damage) => {
                assert!(test_hooks::damage_uplink(damage), "a child has an uplink");
                // The parent kills this child for it; the answer never goes out.
                std::future::pending::<()>().await;
            }
        }
        self.next + 1_000_000 * self.out_of_order
    }
}

multiproc::register_actor!(Breaker);

fn breaker() -> Result<(Process, multiproc::blocking::ActorRef<Breaker>), Box<dyn std::error::Error>>
{
    let mut p = Process::actor::<Breaker>(());
    p.start()?;
    let r = p.actor_ref::<Breaker>();
    Ok((p, r))
}

fn signal(p: &Process, sig: Signal) -> TestResult {
    let pid = Pid::from_raw(p.pid().ok_or("no pid")? as i32).ok_or("bad pid")?;
    kill_process(pid, sig).map_err(|e| format!("kill: {e}"))?;
    Ok(())
}

/// The parent is still fine: another child answers it.
fn parent_still_works() -> TestResult {
    let (p, r) = breaker()?;
    check_eq!(r.call(Msg::Seq(0, Vec::new()))?, 1);
    p.stop(STOP)?;
    Ok(())
}

fn a_child_killed_in_the_middle_of_a_ring_write_is_an_exit_not_a_hang() -> TestResult {
    let (p, r) = breaker()?;
    check_eq!(r.call(Msg::Seq(0, Vec::new()))?, 1);
    let err = r.call(Msg::DieMidWrite).unwrap_err();
    check!(
        matches!(err, CallError::Remote(RemoteError::Exited(_))),
        "{err:?}"
    );
    check_eq!(p.join()?, ExitReason::Signaled(9));
    parent_still_works()
}

fn a_corrupt_ring_ends_the_link_and_its_child_is_killed() -> TestResult {
    for damage in [
        RingDamage::TailBehindHead,
        RingDamage::TailPastRing,
        RingDamage::LengthPastRing,
    ] {
        let (p, r) = breaker()?;
        check_eq!(r.call(Msg::Seq(0, Vec::new()))?, 1);
        let err = r.call(Msg::Damage(damage)).unwrap_err();
        check!(
            matches!(err, CallError::Remote(RemoteError::Exited(_))),
            "{damage:?}: {err:?}"
        );
        // Killed by its parent, which could no longer read it.
        check_eq!(p.join()?, ExitReason::Signaled(9));
    }
    parent_still_works()
}

fn a_ring_nobody_reads_keeps_order_and_leaves_the_runtime_free() -> TestResult {
    let (p, r) = breaker()?;
    check_eq!(r.call(Msg::Count)?, 0);
    signal(&p, Signal::STOP)?;
    // Far more than the ring holds, with messages too large for it in between, so
    // some go on the socket behind markers; every cast returns at once.
    const N: u64 = 20_000;
    for n in 0..N {
        let pad = if n % 1000 == 500 {
            vec![7; LARGE]
        } else {
            Vec::new()
        };
        r.cast(Msg::Seq(n, pad))?;
    }
    // The parent's runtime is not held up by the full ring: another child answers.
    parent_still_works()?;
    signal(&p, Signal::CONT)?;
    // Everything arrives, in order, before this call.
    check_eq!(r.call(Msg::Count)?, N);
    p.stop(STOP)?;
    Ok(())
}

/// CPU time this process has used (user and system).
#[allow(unsafe_code, reason = "getrusage")]
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let t = |tv: libc::timeval| {
        Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64)
    };
    t(usage.ru_utime) + t(usage.ru_stime)
}

/// Frames waiting for a socket that a stopped child does not drain are flushed when it
/// drains, not by a loop that tries again and again meanwhile. Measured in a process
/// of its own (this one), where nothing else runs: the test binary runs its trials
/// side by side.
fn waiting_frames_cost_no_cpu() -> Result<(), Box<dyn std::error::Error>> {
    let (p, r) = breaker()?;
    if r.call(Msg::Count)? != 0 {
        return Err("a fresh actor counted messages".into());
    }
    signal(&p, Signal::STOP).map_err(|e| format!("{e:?}"))?;
    // Each too large for the ring: together, several times what the socket holds.
    const N: u64 = 64;
    for n in 0..N {
        r.cast(Msg::Seq(n, vec![7; LARGE]))?;
    }
    // A window of wall time in which this process has nothing to do: a flusher that
    // spins on the full socket would spend all of it on a CPU.
    const WINDOW: Duration = Duration::from_millis(300);
    let before = cpu_time();
    std::thread::sleep(WINDOW);
    let used = cpu_time() - before;
    signal(&p, Signal::CONT).map_err(|e| format!("{e:?}"))?;
    let count = r.call(Msg::Count)?;
    p.stop(STOP)?;
    if used >= WINDOW / 4 {
        return Err(format!("{used:?} of CPU in {WINDOW:?} of waiting").into());
    }
    if count != N {
        return Err(format!("{count} of {N} messages arrived in order").into());
    }
    Ok(())
}

multiproc::register!(waiting_frames_cost_no_cpu);

fn frames_waiting_for_a_full_socket_cost_no_cpu() -> TestResult {
    let mut p = Process::new(waiting_frames_cost_no_cpu, ());
    p.start()?;
    check_eq!(p.join()?, ExitReason::Normal);
    Ok(())
}

fn a_stopped_child_with_a_full_ring_can_still_be_killed() -> TestResult {
    let (p, r) = breaker()?;
    check_eq!(r.call(Msg::Count)?, 0);
    signal(&p, Signal::STOP)?;
    for n in 0..20_000 {
        r.cast(Msg::Seq(n, Vec::new()))?;
    }
    p.kill()?;
    check_eq!(p.join()?, ExitReason::Signaled(9));
    parent_still_works()
}

fn main() {
    common::run(vec![
        trial(
            "a_child_killed_in_the_middle_of_a_ring_write_is_an_exit_not_a_hang",
            a_child_killed_in_the_middle_of_a_ring_write_is_an_exit_not_a_hang,
        ),
        trial(
            "a_corrupt_ring_ends_the_link_and_its_child_is_killed",
            a_corrupt_ring_ends_the_link_and_its_child_is_killed,
        ),
        trial(
            "a_ring_nobody_reads_keeps_order_and_leaves_the_runtime_free",
            a_ring_nobody_reads_keeps_order_and_leaves_the_runtime_free,
        ),
        trial(
            "frames_waiting_for_a_full_socket_cost_no_cpu",
            frames_waiting_for_a_full_socket_cost_no_cpu,
        ),
        trial(
            "a_stopped_child_with_a_full_ring_can_still_be_killed",
            a_stopped_child_with_a_full_ring_can_still_be_killed,
        ),
    ]);
}
