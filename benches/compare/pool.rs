//! Pool scenarios: `Pool(2)` with `sq`, Python's `f(x) = x*x`: `pool_map_1e6`,
//! `pool_map_chunk1`, `imap_unordered_chunk1` (throughput), `apply_async_latency`,
//! `pool_start*` (a pool up to its first answer) and `pool_worker_killed` (a worker
//! killed under a task until the task fails), against Python's `Pool` and
//! `ProcessPoolExecutor`.

use std::time::{Duration, Instant};

use multiproc::blocking::{Pool, Queue};
use multiproc::{PoolError, StartMethod, TaskError};

use crate::python::Python;
use crate::{
    Better, POOL_CHUNK1_ITEMS, POOL_WAIT, PY_SPAWN_BATCH, ROUNDS, Res, Samples, Scenario, detail,
    kill, median, ms, num, us, wanted,
};

/// `apply_async(..).get()` calls per round of `apply_async_latency`.
const APPLY_BATCH: usize = 2000;
/// Pools started per round of `pool_start` (`python-spawn`: [`PY_SPAWN_BATCH`]).
const POOL_START_BATCH: usize = 10;
/// Workers killed per round of `pool_worker_killed`.
const POOL_KILL_BATCH: usize = 5;
/// How long the killed task would sleep; it is killed long before.
const SLEEPER_SECS: u64 = 30;

/// The pool scenarios' task, Python's `f(x) = x*x`.
pub(crate) fn sq(x: u64) -> u64 {
    x * x
}

/// Puts its task number and its worker's pid on `running`, then sleeps;
/// `pool_worker_killed` waits for both tasks' reports and kills a worker.
fn pid_then_sleep(running: Queue<(usize, u32)>, task: usize) -> u32 {
    let pid = std::process::id();
    let _ = running.put(&(task, pid), true, None);
    // The workload: a task that is still running when its worker is killed.
    std::thread::sleep(Duration::from_secs(SLEEPER_SECS));
    pid
}

multiproc::register!(sq, pid_then_sleep);

/// `Pool(2).map` over `0..items`, in Python's default chunks or in `chunksize`; one
/// pool for the whole scenario, as the Python script keeps one.
pub(crate) fn pool_map(
    name: &'static str,
    items: u64,
    chunksize: Option<usize>,
    py: Option<&Python>,
) -> Res {
    let pool = Pool::new(2)?;
    pool.map(sq, 0..1000u64)?;
    let mp_once = || -> Res<f64> {
        let t0 = Instant::now();
        let out = match chunksize {
            Some(c) => pool.map_chunked(sq, 0..items, c)?,
            None => pool.map(sq, 0..items)?,
        };
        let dt = t0.elapsed().as_secs_f64();
        if out.len() as u64 != items || out.iter().zip(0..).any(|(&v, x)| v != x * x) {
            return Err(format!("{name}: wrong results ({} of {items})", out.len()).into());
        }
        Ok(items as f64 / dt)
    };
    let env = [("N", items as usize), ("CHUNKSIZE", chunksize.unwrap_or(0))];
    pool_rounds(name, &pool, py, "map", &env, &mp_once)
}

/// The rounds of a pool throughput scenario: `mp_once` against `pool.py MODE fork`,
/// then the pool is closed and joined.
fn pool_rounds(
    name: &'static str,
    pool: &Pool,
    py: Option<&Python>,
    mode: &str,
    env: &[(&str, usize)],
    mp_once: &dyn Fn() -> Res<f64>,
) -> Res {
    let mut server = py
        .filter(|_| wanted("python"))
        .map(|py| py.serve("pool.py", &[mode, "fork"], env))
        .transpose()?;
    mp_once()?;
    let (mut mp, mut python) = (Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        mp.push(vec![mp_once()?]);
        if let Some(s) = server.as_mut() {
            python.push(s.rep()?.samples);
        }
    }
    if let Some(s) = server {
        s.finish()?;
    }
    pool.close();
    pool.join()?;
    let sc = Scenario {
        name,
        unit: "tasks/s",
        better: Better::Higher,
    };
    sc.report("python", &mp, &python);
    Ok(())
}

/// `imap_unordered` over `0..1e5` in chunks of 1, every result consumed (summed).
pub(crate) fn imap_unordered_chunk1(py: Option<&Python>) -> Res {
    let n = POOL_CHUNK1_ITEMS;
    let pool = Pool::new(2)?;
    pool.map(sq, 0..1000u64)?;
    let mp_once = || -> Res<f64> {
        let t0 = Instant::now();
        let sum = pool
            .imap_unordered(sq, 0..n, 1)
            .sum::<Result<u64, PoolError>>()?;
        let dt = t0.elapsed().as_secs_f64();
        let want = (n - 1) * n * (2 * n - 1) / 6;
        if sum != want {
            return Err(format!("imap_unordered summed to {sum}, not {want}").into());
        }
        Ok(n as f64 / dt)
    };
    let env = [("N", n as usize), ("CHUNKSIZE", 1)];
    pool_rounds(
        "imap_unordered_chunk1",
        &pool,
        py,
        "imap_unordered",
        &env,
        &mp_once,
    )
}

/// `apply_async(sq, i).get()` one at a time; `roundtrip_us` is this run's
/// `call_roundtrip`, if it ran.
pub(crate) fn apply_async_latency(py: Option<&Python>, roundtrip_us: Option<f64>) -> Res {
    let pool = Pool::new(2)?;
    pool.map(sq, 0..1000u64)?;
    let batch = |n: usize| -> Res<f64> {
        let t0 = Instant::now();
        for i in 0..n as u64 {
            check_square(i, pool.apply_async(sq, i).get(None)?)?;
        }
        Ok(us(t0) / n as f64)
    };
    let mut server = py
        .filter(|_| wanted("python"))
        .map(|py| {
            py.serve(
                "pool.py",
                &["apply_async", "fork"],
                &[("ITERS", APPLY_BATCH)],
            )
        })
        .transpose()?;
    batch(APPLY_BATCH)?;
    let (mut mp, mut python) = (Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        mp.push(vec![batch(APPLY_BATCH)?]);
        if let Some(s) = server.as_mut() {
            python.push(s.rep()?.samples);
        }
    }
    if let Some(s) = server {
        s.finish()?;
    }
    pool.close();
    pool.join()?;
    let sc = Scenario {
        name: "apply_async_latency",
        unit: "us",
        better: Better::Lower,
    };
    sc.report("python", &mp, &python);
    if let Some(rt) = roundtrip_us {
        let apply = median(&mp.all());
        println!(
            "# apply_async_latency vs call_roundtrip (this run): {} us / {} us = {:.2}x, target <= 2x",
            num(apply),
            num(rt),
            apply / rt
        );
    }
    Ok(())
}

fn check_square(x: u64, got: u64) -> Res {
    if got != x * x {
        return Err(format!("sq({x}) answered {got}").into());
    }
    Ok(())
}

/// `Pool(2)` built and its first `apply` answered; then `terminate` + `join`, timed
/// apart.
/// `pool_start` uses the pool's default start method (the forkserver) against Python's
/// default (fork) and spawn; `pool_start_spawn` the spawn method against Python's fork;
/// `pool_start_forkserver` the forkserver against Python's forkserver.
pub(crate) fn pool_start(
    py: Option<&Python>,
    name: &'static str,
    method: Option<StartMethod>,
) -> Res {
    let forkserver = name == "pool_start_forkserver";
    // (start to first result, terminate + join)
    let mp_once = || -> Res<(f64, f64)> {
        let t0 = Instant::now();
        let builder = Pool::builder().processes(2);
        let builder = match method {
            Some(method) => builder.start_method(method),
            None => builder,
        };
        let pool = builder.start()?;
        let got = pool.apply(sq, 3)?;
        let started = ms(t0);
        check_square(3, got)?;
        let t1 = Instant::now();
        pool.terminate();
        pool.join()?;
        Ok((started, ms(t1)))
    };
    // `python` is Python's own start method for each: fork, or forkserver.
    let mut python = py
        .filter(|_| wanted("python"))
        .map(|py| {
            let method = if forkserver { "forkserver" } else { "fork" };
            py.serve("pool.py", &["start", method], &[("N", POOL_START_BATCH)])
        })
        .transpose()?;
    let mut spawn = py
        .filter(|_| wanted("python-spawn") && name == "pool_start")
        .map(|py| py.serve("pool.py", &["start", "spawn"], &[("N", PY_SPAWN_BATCH)]))
        .transpose()?;
    for _ in 0..3 {
        mp_once()?;
    }
    let (mut mp, mut mp_stop) = (Samples::default(), Samples::default());
    let (mut py_s, mut py_stop, mut py_spawn) =
        (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        let (starts, stops): (Vec<f64>, Vec<f64>) = (0..POOL_START_BATCH)
            .map(|_| mp_once())
            .collect::<Res<Vec<_>>>()?
            .into_iter()
            .unzip();
        mp.push(starts);
        mp_stop.push(stops);
        if let Some(s) = python.as_mut() {
            let rep = s.rep()?;
            py_s.push(rep.samples.clone());
            py_stop.push(rep.series("shutdown")?);
        }
        if let Some(s) = spawn.as_mut() {
            py_spawn.push(s.rep()?.samples);
        }
    }
    for s in [python, spawn].into_iter().flatten() {
        s.finish()?;
    }
    let sc = Scenario {
        name,
        unit: "ms",
        better: Better::Lower,
    };
    detail(
        &format!("{name} multiproc terminate()+join()"),
        "ms",
        &mp_stop,
    );
    detail(&format!("{name} python terminate()+join()"), "ms", &py_stop);
    sc.report("python", &mp, &py_s);
    sc.report("python-spawn", &mp, &py_spawn);
    Ok(())
}

/// SIGKILL a pool worker running a task, until that task's result is `WorkerDied`;
/// the pool then still serves.
pub(crate) fn pool_worker_killed(py: Option<&Python>) -> Res {
    // Each running task puts (its number, its worker's pid) here.
    let running = Queue::<(usize, u32)>::new(0)?;
    // (kill to WorkerDied, kill to the replacement's first result)
    let mp_once = || -> Res<(f64, f64)> {
        // A fresh pool each time, as Python's executor: its window is one task per
        // worker until a task has finished, so each sleeper gets a worker of its own.
        let pool = Pool::new(2)?;
        let mut tasks: Vec<_> = (0..2)
            .map(|i| pool.apply_async(pid_then_sleep, (running.clone(), i)))
            .collect();
        // Both workers are inside their task.
        let mut pids = [0u32; 2];
        for _ in 0..2 {
            let (task, pid) = running.get(true, Some(POOL_WAIT))?;
            pids[task] = pid;
        }
        let victim = pids[0];
        let t0 = Instant::now();
        kill(victim)?;
        let got = tasks[0].get(Some(POOL_WAIT));
        let died = ms(t0);
        match got {
            Err(PoolError::Task {
                error: TaskError::WorkerDied { pid, .. },
                ..
            }) if pid == victim => {}
            other => {
                pool.terminate();
                return Err(format!("the killed task ended with {other:?}").into());
            }
        }
        // Outside the timed part: the pool still serves, on the replacement (the other
        // worker is still asleep).
        check_square(7, pool.apply(sq, 7)?)?;
        let serves = ms(t0);
        pool.terminate();
        match tasks[1].get(Some(POOL_WAIT)) {
            Err(PoolError::Terminated) => {}
            other => return Err(format!("the other sleeper ended with {other:?}").into()),
        }
        pool.join()?;
        Ok((died, serves))
    };
    let mut python = py
        .filter(|_| wanted("python"))
        .map(|py| {
            py.serve(
                "pool.py",
                &["worker_killed", "fork"],
                &[("N", POOL_KILL_BATCH)],
            )
        })
        .transpose()?;
    mp_once()?;
    let (mut mp, mut mp_serves, mut py_s) =
        (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        let (died, serves): (Vec<f64>, Vec<f64>) = (0..POOL_KILL_BATCH)
            .map(|_| mp_once())
            .collect::<Res<Vec<_>>>()?
            .into_iter()
            .unzip();
        mp.push(died);
        mp_serves.push(serves);
        if let Some(s) = python.as_mut() {
            py_s.push(s.rep()?.samples);
        }
    }
    if let Some(s) = python {
        s.finish()?;
    }
    let sc = Scenario {
        name: "pool_worker_killed",
        unit: "ms",
        better: Better::Lower,
    };
    // Python's executor is broken for good; this is the pool going on.
    detail(
        "pool_worker_killed multiproc kill to apply(sq, 7) answered by the replacement",
        "ms",
        &mp_serves,
    );
    sc.report("python", &mp, &py_s);
    Ok(())
}
