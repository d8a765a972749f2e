//! The soak child's side (see [`crate::soak`]): the bench started again with
//! `MULTIPROC_BENCH_ROLE=soak-<loop>` inside a pids cgroup runs one loop, reads its own
//! fds, threads and RSS before and after, and prints one line per measurement,
//! `soak NAME n=N warmup=W secs=S fds=START,END threads=START,END rss=START,END ...`.

use std::time::{Duration, Instant};

use multiproc::blocking::{
    self, Barrier, BoundedSemaphore, Condition, Event, Lock, Pool, Process, Queue, RLock, Semaphore,
};
use multiproc::{
    Array, Backoff, Manager, RestartIntensity, Supervisor, SupervisorEvent, SupervisorFlags, Value,
    function_child,
};

use crate::cgroup;
use crate::pool::sq;
use crate::process::noop;
use crate::soak::{READINGS, iterations_of, warmup};
use crate::{Res, proc_status};

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
    let mut events = blocking::Events::from(supervisor.events());
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
