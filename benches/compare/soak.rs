//! The `soak` scenarios: long loops of processes, supervisor restarts, pools,
//! primitives and manager proxies, each in a fresh child of the bench placed in a pids
//! cgroup, with that child's fds, threads and RSS before and after.
//!
//! The bench starts itself again with `MULTIPROC_BENCH_ROLE=soak-<loop>` inside a
//! cgroup ([`crate::cgroup`]); the child runs the loop and prints one line per
//! measurement on stdout, `soak NAME KEY=V KEY=START,END ...` (words, no JSON); the
//! bench prints them as result lines. A fresh process per
//! loop keeps the figures free of what the bench itself (or an earlier loop) holds.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use multiproc::blocking::{
    self, Barrier, BoundedSemaphore, Condition, Event, Lock, Pool, Process, Queue, RLock, Semaphore,
};
use multiproc::{
    Array, Backoff, Manager, RestartIntensity, Supervisor, SupervisorEvent, SupervisorFlags, Value,
    function_child,
};

use crate::cgroup::{self, Cgroup};
use crate::{ROLE_ENV, Res, noop, num, proc_status, sq};

/// Iterations of each loop (a tenth of them for pools); the figure by default.
const ITERATIONS_ENV: &str = "MULTIPROC_SOAK_ITERATIONS";
const DEFAULT_ITERATIONS: usize = 100_000;
/// Readings taken one iteration apart for each of "start" and "end"; the least of them
/// counts, so an fd or thread that one iteration holds for a moment (a restart under
/// way) is not taken for a leak. A leak shows in all of them.
const READINGS: usize = 8;
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
fn iterations_of(loop_name: &str) -> usize {
    let n = iterations();
    if loop_name == "pool" {
        (n / 10).max(1)
    } else {
        n
    }
}

/// Iterations before the first reading: the first ones allocate caches, start the
/// forkserver and grow the runtime's thread pool.
fn warmup(n: usize) -> usize {
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

// ---------------------------------------------------------------------------------
// The soak child's side: the loops.

/// A soak child: runs `loop_name` and prints its figures. Refuses to run outside a
/// cgroup the bench made.
pub(crate) fn child(loop_name: &str) -> Res {
    if !cgroup::inside() {
        return Err(format!(
            "soak-{loop_name} runs only inside a pids cgroup the bench makes: it could \
             multiply processes if multiproc regresses"
        )
        .into());
    }
    let n = iterations_of(loop_name);
    match loop_name {
        "process" => process_loop(n),
        "restart" => restart_loop(n),
        "pool" => pool_loop(n),
        "primitives" => primitive_loops(n),
        "manager" => manager_loop(n),
        other => Err(format!("no soak loop {other:?}").into()),
    }
}

/// This process's fds, threads and RSS (KiB).
#[derive(Debug, Clone, Copy)]
struct Usage {
    fds: f64,
    threads: f64,
    rss: f64,
}

impl Usage {
    fn now() -> Res<Usage> {
        Ok(Usage {
            fds: std::fs::read_dir("/proc/self/fd")?.count() as f64,
            threads: std::fs::read_dir("/proc/self/task")?.count() as f64,
            rss: proc_status("self", "VmRSS")?,
        })
    }

    fn min(self, o: Usage) -> Usage {
        Usage {
            fds: self.fds.min(o.fds),
            threads: self.threads.min(o.threads),
            rss: self.rss.min(o.rss),
        }
    }
}

/// Extra figures a loop reads at its start and end (a manager's object count).
type Probe<'a> = Box<dyn FnMut() -> Res<Vec<(&'static str, f64)>> + 'a>;

/// What a loop does besides its iterations.
struct Hooks<'a> {
    /// Extra figures, read after the start's readings and after the end's.
    probe: Probe<'a>,
    /// Brings the loop to rest before a reading (`true`) and back to work after it
    /// (`false`): a supervisor restarts its child all the time, so a reading in the
    /// middle would count the fds of a restart under way.
    rest: Box<dyn FnMut(bool) -> Res + 'a>,
}

impl Default for Hooks<'_> {
    fn default() -> Self {
        Hooks {
            probe: Box::new(|| Ok(Vec::new())),
            rest: Box::new(|_| Ok(())),
        }
    }
}

/// One loop's figures, printed as one line: `soak NAME KEY=V KEY=START,END ...`.
struct Figures {
    name: String,
    n: usize,
    warmup: usize,
    secs: f64,
    start: Usage,
    end: Usage,
    extra: Vec<(&'static str, f64, f64)>,
}

impl Figures {
    fn print(&self, more: &[(&str, f64)]) {
        let (start, end) = (self.start, self.end);
        let mut fields = vec![
            format!("n={}", self.n),
            format!("warmup={}", self.warmup),
            format!("secs={}", self.secs),
            format!("fds={},{}", start.fds, end.fds),
            format!("threads={},{}", start.threads, end.threads),
            format!("rss={},{}", start.rss, end.rss),
        ];
        fields.extend(self.extra.iter().map(|(k, a, b)| format!("{k}={a},{b}")));
        fields.extend(more.iter().map(|(k, v)| format!("{k}={v}")));
        println!("soak {} {}", self.name, fields.join(" "));
    }
}

/// Runs `body` for a warm-up, [`READINGS`] iterations with a reading after each, `n`
/// timed iterations, and [`READINGS`] more with readings.
fn soak(name: &str, n: usize, mut body: impl FnMut(u64) -> Res, hooks: Hooks<'_>) -> Res<Figures> {
    let Hooks {
        mut probe,
        mut rest,
    } = hooks;
    let mut i = 0u64;
    let warmup = warmup(n);
    for _ in 0..warmup {
        body(i)?;
        i += 1;
    }
    let start = readings(&mut body, &mut rest, &mut i)?;
    let before = probe()?;
    let t0 = Instant::now();
    for _ in 0..n {
        body(i)?;
        i += 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    let end = readings(&mut body, &mut rest, &mut i)?;
    let after = probe()?;
    let extra = before
        .into_iter()
        .zip(after)
        .map(|((k, a), (_, b))| (k, a, b))
        .collect();
    Ok(Figures {
        name: name.to_string(),
        n,
        warmup,
        secs,
        start,
        end,
        extra,
    })
}

/// The least of a reading now and one after each of [`READINGS`] more iterations,
/// each at rest.
fn readings(
    body: &mut impl FnMut(u64) -> Res,
    rest: &mut dyn FnMut(bool) -> Res,
    i: &mut u64,
) -> Res<Usage> {
    let mut reading = || -> Res<Usage> {
        rest(true)?;
        let usage = Usage::now()?;
        rest(false)?;
        Ok(usage)
    };
    let mut least = reading()?;
    for _ in 0..READINGS {
        body(*i)?;
        *i += 1;
        least = least.min(reading()?);
    }
    Ok(least)
}

/// `Process::new(noop, ())`, `start`, `join`, `close`.
fn process_loop(n: usize) -> Res {
    let figures = soak(
        "soak_process",
        n,
        |_| {
            let mut p = Process::new(noop, ());
            p.start()?;
            let reason = p.join()?;
            if reason.exit_code() != 0 {
                return Err(format!("the child ended with {reason}").into());
            }
            p.close()?;
            Ok(())
        },
        Hooks::default(),
    )?;
    figures.print(&[]);
    Ok(())
}

/// The restart loop's child.
const FLAPPER: &str = "flapper";

/// A `OneForOne` supervisor whose one child exits at once, restarted without backoff
/// and without ever giving up; an iteration is one `Restarted` event.
fn restart_loop(n: usize) -> Res {
    let flags = SupervisorFlags {
        intensity: RestartIntensity {
            max_restarts: u32::MAX,
            within: Duration::from_secs(1),
        },
        backoff: Backoff::NONE,
        ..SupervisorFlags::default()
    };
    let supervisor = Supervisor::new(flags).child(function_child(FLAPPER, noop, ())?);
    let mut events = blocking::Events(supervisor.events());
    let sup = blocking::SupervisorRef::start(supervisor)?;
    // Each start names the child `Process-N`, N counting every process object made
    // here: the starts seen as events are checked against it, since a reader more than
    // 1024 events behind would skip some.
    let (mut first, mut last, mut seen) = (None, 0, 0u64);
    let mut note = |name: &str| {
        if let Some(k) = name.rsplit('-').next().and_then(|k| k.parse::<u64>().ok()) {
            first.get_or_insert(k);
            last = k;
        }
        seen += 1;
    };
    let figures = soak(
        "soak_restart",
        n,
        |_| {
            for event in events.by_ref() {
                match event {
                    SupervisorEvent::ChildStarted { name, .. } => note(&name),
                    SupervisorEvent::Restarted { name, .. } => {
                        note(&name);
                        return Ok(());
                    }
                    SupervisorEvent::IntensityExceeded { .. }
                    | SupervisorEvent::ShutDown { .. } => {
                        return Err(format!("the supervisor gave up: {event:?}").into());
                    }
                    _ => {}
                }
            }
            Err("the supervisor ended".into())
        },
        Hooks {
            // Stopped through the admin API between two messages of the supervisor,
            // which then holds nothing for a restart under way.
            rest: Box::new(|resting| {
                if resting {
                    sup.terminate_child(FLAPPER)?;
                } else {
                    sup.restart_child(FLAPPER)?;
                }
                Ok(())
            }),
            ..Hooks::default()
        },
    )?;
    sup.shutdown();
    let missed = first.map_or(0, |f| (last + 1 - f).saturating_sub(seen));
    figures.print(&[("missed_events", missed as f64)]);
    Ok(())
}

/// `Pool::new(2)`, one `apply`, `terminate`, `join`.
fn pool_loop(n: usize) -> Res {
    let figures = soak(
        "soak_pool",
        n,
        |i| {
            let pool = Pool::new(2)?;
            let got = pool.apply(sq, i)?;
            if got != i * i {
                return Err(format!("apply(sq, {i}) gave {got}").into());
            }
            pool.terminate();
            pool.join()?;
            Ok(())
        },
        Hooks::default(),
    )?;
    figures.print(&[]);
    Ok(())
}

/// Primitives hosted by this process and handles alive in it.
fn primitive_counts() -> Res<Vec<(&'static str, f64)>> {
    let (hosted, handles) = multiproc::__private::test_hooks::primitive_counts();
    Ok(vec![("hosted", hosted as f64), ("handles", handles as f64)])
}

/// Each kind of primitive in its own loop: created, used, dropped.
fn primitive_loops(n: usize) -> Res {
    type Body = fn(u64) -> Res;
    let kinds: [(&str, Body); 11] = [
        ("Lock", |_| {
            let l = Lock::new()?;
            check(l.acquire(true, None)?, "lock not acquired")?;
            Ok(l.release()?)
        }),
        ("RLock", |_| {
            let r = RLock::new()?;
            check(r.acquire(true, None)?, "rlock not acquired")?;
            check(r.acquire(true, None)?, "rlock not acquired again")?;
            r.release()?;
            Ok(r.release()?)
        }),
        ("Semaphore", |_| {
            let s = Semaphore::new(1)?;
            check(s.acquire(true, None)?, "semaphore not acquired")?;
            Ok(s.release()?)
        }),
        ("BoundedSemaphore", |_| {
            let b = BoundedSemaphore::new(1)?;
            check(b.acquire(false, None)?, "bounded semaphore not acquired")?;
            Ok(b.release()?)
        }),
        ("Event", |_| {
            let e = Event::new()?;
            e.set()?;
            check(e.wait(None)?, "event not set")
        }),
        ("Condition", |_| {
            let c = Condition::new()?;
            check(c.acquire(true, None)?, "condition not acquired")?;
            c.notify(1)?;
            Ok(c.release()?)
        }),
        ("Barrier", |_| {
            let b = Barrier::new(1)?;
            b.wait(None)?;
            Ok(())
        }),
        ("Queue", |i| {
            let q = Queue::<u64>::new(0)?;
            q.put(&i, true, None)?;
            check(q.get(true, None)? == i, "queue gave another item")
        }),
        ("JoinableQueue", |i| {
            let q = Queue::<u64>::joinable(0)?;
            q.put(&i, true, None)?;
            check(q.get(true, None)? == i, "queue gave another item")?;
            q.task_done()?;
            Ok(q.join()?)
        }),
        ("Value", |i| {
            let v = Value::new(i)?;
            *v.lock()? += 1;
            check(v.get()? == i + 1, "value lost an increment")
        }),
        ("Array", |i| {
            let a = Array::from_slice(&[i, 2, 3])?;
            a.set(1, i)?;
            check(a.get(1)? == i, "array lost a write")
        }),
    ];
    for (kind, body) in kinds {
        let figures = soak(
            &format!("soak_primitives/{kind}"),
            n,
            body,
            Hooks {
                probe: Box::new(primitive_counts),
                ..Hooks::default()
            },
        )?;
        figures.print(&[]);
    }
    Ok(())
}

fn check(cond: bool, what: &str) -> Res {
    if cond { Ok(()) } else { Err(what.into()) }
}

/// One manager for the loop; each iteration creates a proxy (a dict and a list in
/// turn), uses it once and drops it.
fn manager_loop(n: usize) -> Res {
    let manager = Manager::start()?;
    let server = manager
        .process()
        .and_then(|p| p.pid())
        .ok_or("the manager's server has no pid")?
        .to_string();
    let probe = || -> Res<Vec<(&'static str, f64)>> {
        let count = |dir: &str| -> Res<f64> {
            Ok(std::fs::read_dir(format!("/proc/{server}/{dir}"))?.count() as f64)
        };
        Ok(vec![
            ("objects", manager.object_count()? as f64),
            ("server_fds", count("fd")?),
            ("server_threads", count("task")?),
            ("server_rss", proc_status(&server, "VmRSS")?),
        ])
    };
    let figures = soak(
        "soak_manager",
        n,
        |i| {
            if i % 2 == 0 {
                let d = manager.dict::<u64, u64>()?;
                d.set(&i, &i)?;
            } else {
                let l = manager.list(&[i])?;
                check(l.len()? == 1, "the list lost its item")?;
            }
            Ok(())
        },
        Hooks {
            probe: Box::new(probe),
            ..Hooks::default()
        },
    )?;
    figures.print(&[]);
    manager.shutdown()?;
    Ok(())
}
