//! What the children of the queue, lock and shared-memory scenarios report (a
//! [`Stamp`]: their first and last instants on `CLOCK_MONOTONIC`), and the rounds that
//! gather those reports against a Python server's repetitions.

use std::time::{Duration, Instant};

use multiproc::SyncError;
use multiproc::blocking::{Process, Queue};

use crate::python::{PyServer, Python};
use crate::{POOL_WAIT, ROUNDS, Res, Samples, Scenario, wanted};

/// Bounds every wait of the queue and lock scenarios for a child's report.
const SYNC_WAIT: Duration = Duration::from_secs(60);

/// What a queue or lock child reports when it is done: which child, its first and
/// last instants (`CLOCK_MONOTONIC`, shared by every process, in ns), and its count.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Stamp {
    pub(crate) who: Who,
    pub(crate) first_ns: u64,
    pub(crate) last_ns: u64,
    pub(crate) count: u64,
    /// For the consumer: whether every item came in the order it was put.
    pub(crate) in_order: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Who {
    /// The queue's consumer: first and last `get`.
    Consumer,
    /// The joinable queue's producer: when its `join` returned.
    ProducerJoined,
    /// A lock child: before its first and after its last pair.
    Locker,
    /// A `Value` child: before its first and after its last increment.
    Incrementer,
    /// A shared-memory writer: before and after its write.
    Writer,
}

/// `CLOCK_MONOTONIC` in ns: Python's `perf_counter`, comparable between processes.
pub(crate) fn mono_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// `script` serving `reference`, if that reference is measured.
pub(crate) fn serve_if(
    py: Option<&Python>,
    reference: &str,
    script: &str,
    args: &[&str],
    env: &[(&str, usize)],
) -> Res<Option<PyServer>> {
    py.filter(|_| wanted(reference))
        .map(|py| py.serve(script, args, env))
        .transpose()
}

/// The rounds of a queue or lock scenario: one `mp_once` (warm-up), then in each round
/// `mp_once` and one repetition of each reference's server; a line per reference.
pub(crate) fn sync_rounds(
    sc: &Scenario,
    mut mp_once: impl FnMut() -> Res<f64>,
    mut servers: Vec<(&str, Option<PyServer>)>,
) -> Res {
    mp_once()?;
    let mut mp = Samples::default();
    let mut refs: Vec<Samples> = servers.iter().map(|_| Samples::default()).collect();
    for _ in 0..ROUNDS {
        mp.push(vec![mp_once()?]);
        for ((_, server), samples) in servers.iter_mut().zip(&mut refs) {
            if let Some(s) = server.as_mut() {
                samples.push(s.rep()?.samples);
            }
        }
    }
    let names: Vec<&str> = servers.iter().map(|(r, _)| *r).collect();
    for (_, server) in servers.drain(..) {
        if let Some(s) = server {
            s.finish()?;
        }
    }
    for (reference, samples) in names.into_iter().zip(&refs) {
        sc.report(reference, &mp, samples);
    }
    Ok(())
}

/// Waits for `k` reports on `res`, at most [`SYNC_WAIT`]; fails at once when one of
/// `procs` has ended badly (a child that cannot report).
pub(crate) fn reports(res: &Queue<Stamp>, k: usize, procs: &[Process]) -> Res<Vec<Stamp>> {
    let t0 = Instant::now();
    let mut out = Vec::with_capacity(k);
    while out.len() < k {
        match res.get(true, Some(Duration::from_millis(200))) {
            Ok(stamp) => out.push(stamp),
            Err(SyncError::Empty) => {
                for p in procs {
                    if let Some(reason) = p.exit_reason().filter(|r| r.exit_code() != 0) {
                        return Err(format!("a child ended with {reason}").into());
                    }
                }
                if t0.elapsed() > SYNC_WAIT {
                    let alive = procs.iter().filter(|p| p.is_alive()).count();
                    return Err(format!(
                        "{} of {k} reports in {SYNC_WAIT:?} ({alive} of {} children alive)",
                        out.len(),
                        procs.len()
                    )
                    .into());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// Joins children that have reported, at most [`POOL_WAIT`] each; each must exit 0.
pub(crate) fn finish(procs: &[Process]) -> Res {
    for p in procs {
        match p.join_timeout(POOL_WAIT)? {
            Some(reason) if reason.exit_code() == 0 => {}
            Some(reason) => return Err(format!("a child ended with {reason}").into()),
            None => return Err(format!("a child still runs {POOL_WAIT:?} after its report").into()),
        }
    }
    Ok(())
}

/// Seconds between two [`mono_ns`] instants.
pub(crate) fn secs(from_ns: u64, to_ns: u64) -> f64 {
    to_ns.saturating_sub(from_ns) as f64 / 1e9
}
