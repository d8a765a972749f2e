//! The `soak` scenarios: long loops of processes, supervisor restarts, pools,
//! primitives and manager proxies, each in a fresh child of the bench placed in a pids
//! cgroup, with that child's fds, threads and RSS before and after.
//!
//! The bench starts itself again with `MULTIPROC_BENCH_ROLE=soak-<loop>` inside a
//! cgroup ([`crate::cgroup`]); the child runs the loop and prints one line per
//! measurement on stdout, `soak NAME KEY=V KEY=START,END ...` (words, no JSON); the
//! bench prints them as result lines. A fresh process per loop keeps the figures free
//! of what the bench itself (or an earlier loop) holds. This file is the bench's side;
//! the loops are in [`crate::soak_child`].

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::cgroup::{self, Cgroup};
use crate::{ROLE_ENV, Res, num};

/// Iterations of each loop (a tenth of them for pools); the figure by default.
const ITERATIONS_ENV: &str = "MULTIPROC_SOAK_ITERATIONS";
const DEFAULT_ITERATIONS: usize = 100_000;
/// Readings taken one iteration apart for each of "start" and "end"; the least of them
/// counts, so an fd or thread that one iteration holds for a moment (a restart under
/// way) is not taken for a leak. A leak shows in all of them.
pub(crate) const READINGS: usize = 8;
/// The soak child's cgroup limit: tasks, threads included. A loop needs a few dozen
/// (its own runtime, one child's or a pool's threads, the forkserver, the manager's
/// server); a loop that multiplied processes stops here instead of filling the pid
/// table.
const PIDS_MAX: u32 = 256;
/// How long a process of the cgroup may outlive the soak child before it counts as
/// left behind.
const GRACE: Duration = Duration::from_secs(10);
/// RSS growth over a whole loop that still meets the target.
const RSS_TARGET_KIB: f64 = 1024.0;

/// The soak scenarios: `soak_<loop>`, run by `MULTIPROC_BENCH_ROLE=soak-<loop>`.
pub(crate) const SCENARIOS: [&str; 5] = [
    "soak_process",
    "soak_restart",
    "soak_pool",
    "soak_primitives",
    "soak_manager",
];

/// Iterations of every loop but the pool's.
fn iterations() -> usize {
    std::env::var(ITERATIONS_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_ITERATIONS)
}

/// Iterations of `loop_name`, as the issue sets them: pools a tenth.
pub(crate) fn iterations_of(loop_name: &str) -> usize {
    let n = iterations();
    if loop_name == "pool" {
        (n / 10).max(1)
    } else {
        n
    }
}

/// Iterations before the first reading: the first ones allocate caches, start the
/// forkserver and grow the runtime's thread pool.
pub(crate) fn warmup(n: usize) -> usize {
    (n / 100).max(20)
}

/// The most one iteration should take, to bound a hung loop (far above the real cost).
fn budget_per_iteration(loop_name: &str) -> Duration {
    match loop_name {
        "process" | "restart" => Duration::from_millis(20),
        "pool" => Duration::from_millis(50),
        // Eleven kinds, each `n` iterations.
        "primitives" => Duration::from_millis(11),
        _ => Duration::from_millis(2),
    }
}

// ---------------------------------------------------------------------------------
// The bench's side: a cgroup, the child, its report.

/// Runs `soak_<loop>` in a child in a fresh pids cgroup and prints its figures; says
/// why and skips when no cgroup can be made.
pub(crate) fn run(scenario: &str) -> Res {
    let loop_name = scenario.trim_start_matches("soak_");
    let cg = match Cgroup::create(scenario, PIDS_MAX) {
        Ok(cg) => cg,
        Err(why) => {
            println!("# {scenario}: skipped, it runs only in a pids cgroup: {why}");
            return Ok(());
        }
    };
    let n = iterations_of(loop_name);
    let deadline = Duration::from_secs(60)
        + budget_per_iteration(loop_name) * u32::try_from(n + warmup(n)).unwrap_or(u32::MAX);
    let mut child = cg
        .command(&std::env::current_exe()?)
        .env(ROLE_ENV, format!("soak-{loop_name}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    // Read on a thread: a process left in the cgroup would hold the pipe open after
    // the child's exit, until the cgroup is emptied.
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let Some(left) = deadline.checked_sub(t0.elapsed()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{scenario} still ran after {deadline:?}").into());
        };
        match cgroup::pidfd(child.id() as i32) {
            Some(fd) => cgroup::wait_any(&[fd], left),
            // Gone between the two calls: try_wait sees it.
            None => continue,
        }
    };
    let left = cg.wait_empty(GRACE);
    let (peak, hit_limit) = (cg.peak(), cg.hit_limit());
    // Kills what is left, so that the reader sees the end of the pipe.
    drop(cg);
    let text = reader.join().map_err(|_| "the reader panicked")??;
    if !status.success() {
        return Err(format!("{scenario}: the soak child failed: {status}").into());
    }
    let mut reported = 0;
    for line in text.lines().filter(|l| l.starts_with("soak ")) {
        report(&Measurement::parse(line)?)?;
        reported += 1;
    }
    if reported == 0 {
        return Err(format!("{scenario}: the soak child reported nothing").into());
    }
    println!(
        "# {scenario} took {:.1} s; cgroup pids.max={PIDS_MAX} peak={}, forks at the limit {hit_limit}, \
         processes left {GRACE:?} after the child's exit {}",
        t0.elapsed().as_secs_f64(),
        peak.map_or("-".into(), |p| p.to_string()),
        left.len()
    );
    if hit_limit > 0 || !left.is_empty() {
        println!(
            "# {scenario}: TARGET MISSED: forks failed at the cgroup's limit, or processes \
             outlived the loop: {left:?}"
        );
    }
    Ok(())
}

/// One line of a soak child, `soak NAME KEY=V KEY=START,END ...`: its loop's name and
/// its figures, in their order.
struct Measurement {
    name: String,
    fields: Vec<(String, Vec<f64>)>,
}

impl Measurement {
    fn parse(line: &str) -> Res<Measurement> {
        let mut words = line.split_whitespace().skip(1);
        let name = words
            .next()
            .ok_or("a soak report without a name")?
            .to_string();
        let fields = words
            .map(|w| {
                let (key, values) = w
                    .split_once('=')
                    .ok_or_else(|| format!("a soak report's {w:?} is not KEY=V"))?;
                let values = values
                    .split(',')
                    .map(|v| {
                        v.parse()
                            .map_err(|_| format!("{key}: {v:?} is not a number"))
                    })
                    .collect::<Result<_, _>>()?;
                Ok((key.to_string(), values))
            })
            .collect::<Res<_>>()?;
        Ok(Measurement { name, fields })
    }

    fn numbers(&self, key: &str) -> Res<&[f64]> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
            .ok_or_else(|| format!("no {key:?} in a soak report").into())
    }

    fn number(&self, key: &str) -> Res<f64> {
        match self.numbers(key)? {
            &[v] => Ok(v),
            other => Err(format!("{key:?} is not one number: {other:?}").into()),
        }
    }
}

/// A pair `START,END` from the child's report.
fn pair(m: &Measurement, key: &str) -> Res<(f64, f64)> {
    match m.numbers(key)? {
        &[a, b] => Ok((a, b)),
        other => Err(format!("{key:?} is not a pair: {other:?}").into()),
    }
}

/// Whether `[start, end]` of `key` meets its target: no growth of a count (fds,
/// threads), RSS less than 1 MiB more, any other count (objects, primitives) back to
/// its start.
fn meets(key: &str, (a, b): (f64, f64)) -> bool {
    if key.ends_with("rss") {
        b - a < RSS_TARGET_KIB
    } else if key.ends_with("fds") || key.ends_with("threads") {
        b <= a
    } else {
        b == a
    }
}

fn show(key: &str, (a, b): (f64, f64)) -> String {
    let label = key.replace('_', " ");
    if key.ends_with("rss") {
        format!("{label} {a}->{b} KiB ({:+} KiB)", b - a)
    } else {
        format!("{label} {a}->{b}")
    }
}

/// Prints one measurement: a result line with the loop's own figures, and a `#` line
/// with the rest.
fn report(m: &Measurement) -> Res {
    let name = m.name.as_str();
    let (n, secs, warmup) = (m.number("n")?, m.number("secs")?, m.number("warmup")?);
    let own = ["fds", "threads", "rss"];
    let extra: Vec<&str> = m
        .fields
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !["n", "secs", "warmup", "missed_events"].contains(k))
        .filter(|k| !own.contains(k))
        .collect();
    // The loop's own targets decide the result line. Another process's figures (the
    // manager's server: allocator arenas, a map's high-water mark) get the same
    // targets but their own verdict on the `#` line.
    let (mut missed, mut missed_other) = (Vec::new(), Vec::new());
    let mut shown = |key: &str| -> Res<String> {
        let p = pair(m, key)?;
        if !meets(key, p) {
            let list = if key.starts_with("server_") {
                &mut missed_other
            } else {
                &mut missed
            };
            list.push(key.replace('_', " "));
        }
        Ok(show(key, p))
    };
    let own_shown = own.map(&mut shown);
    let extra_shown: Vec<String> = extra.iter().map(|k| shown(k)).collect::<Res<_>>()?;
    let [fds, threads, rss] = own_shown;
    let verdict = |missed: &[String]| {
        if missed.is_empty() {
            "targets met".to_string()
        } else {
            format!("TARGET MISSED: {}", missed.join(", "))
        }
    };
    println!(
        "{name}: multiproc={} iter/s n={n} {} {} {} {}",
        num(n / secs),
        fds?,
        threads?,
        rss?,
        verdict(&missed)
    );
    let mut details = extra_shown;
    if extra.iter().any(|k| k.starts_with("server_")) {
        details.push(format!("server {}", verdict(&missed_other)));
    }
    if let Ok(k) = m.number("missed_events") {
        details.push(format!("restarts not seen as events {k}"));
    }
    details.push(format!("{secs:.1} s after {warmup} warm-up iterations"));
    println!("#   {name}: {}", details.join(", "));
    Ok(())
}
