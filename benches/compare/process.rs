//! Process scenarios: `spawn_join` (start + join, also with the forkserver),
//! `restart` (a supervised child killed until its replacement is ready),
//! `tree_1000` (a supervisor of 1000 children) and `idle_rss` (an idle child's memory),
//! against Python's `Process` and `ProcessPoolExecutor` and the raw posix_spawn floor.

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use multiproc::blocking::{self, Process};
use multiproc::{
    Backoff, RestartIntensity, StartMethod, Supervisor, SupervisorEvent, SupervisorFlags,
    function_child,
};

use crate::python::Python;
use crate::raw::RawChild;
use crate::{
    Better, PY_SPAWN_BATCH, ROLE_ENV, ROUNDS, Res, STOP_TIMEOUT, Samples, Scenario, detail, kill,
    median, ms, num, proc_field, proc_status, wanted,
};

/// Processes started and joined per round, per implementation.
const SPAWN_BATCH: usize = 20;
/// Idle children started for `idle_rss`.
const IDLE_CHILDREN: usize = 20;
/// Children of `tree_1000`, and how many of them are killed.
const TREE_CHILDREN: usize = 1000;
const TREE_KILLS: usize = 100;
/// Kills per round of `restart`.
const RESTART_BATCH: usize = 20;

pub(crate) fn noop() {}

fn idle() {
    multiproc::blocking::wait_for_stop();
}

multiproc::register!(noop, idle);

pub(crate) fn spawn_join(py: Option<&Python>) -> Res {
    let exe = std::env::current_exe()?;
    let raw_once = || -> Res<f64> {
        let t0 = Instant::now();
        let status = Command::new(&exe).env(ROLE_ENV, "raw-spawn").status()?;
        let dt = ms(t0);
        if !status.success() {
            return Err(format!("raw child failed: {status}").into());
        }
        Ok(dt)
    };
    let mp_once = || -> Res<(f64, f64)> {
        let t0 = Instant::now();
        let mut p = Process::new(noop, ());
        p.start()?;
        let started = ms(t0);
        let reason = p.join()?;
        let total = ms(t0);
        if reason.exit_code() != 0 {
            return Err(format!("multiproc child ended with {reason}").into());
        }
        Ok((total, started))
    };
    let raw_on = wanted("raw");
    let mut fork = py
        .filter(|_| wanted("python"))
        .map(|py| py.serve("spawn_join.py", &["fork"], &[("N", SPAWN_BATCH)]))
        .transpose()?;
    let mut spawn = py
        .filter(|_| wanted("python-spawn"))
        .map(|py| py.serve("spawn_join.py", &["spawn"], &[("N", PY_SPAWN_BATCH)]))
        .transpose()?;
    for _ in 0..3 {
        mp_once()?;
        if raw_on {
            raw_once()?;
        }
    }
    let (mut mp, mut mp_start, mut raw) =
        (Samples::default(), Samples::default(), Samples::default());
    let (mut py_fork, mut py_fork_start, mut py_spawn) =
        (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        batch_with_starts(&mut mp, &mut mp_start, &mp_once)?;
        if raw_on {
            raw.push((0..SPAWN_BATCH).map(|_| raw_once()).collect::<Res<_>>()?);
        }
        if let Some(s) = fork.as_mut() {
            let rep = s.rep()?;
            py_fork.push(rep.samples.clone());
            py_fork_start.push(rep.series("start")?);
        }
        if let Some(s) = spawn.as_mut() {
            py_spawn.push(s.rep()?.samples);
        }
    }
    for s in [fork, spawn].into_iter().flatten() {
        s.finish()?;
    }
    let sc = Scenario {
        name: "spawn_join",
        unit: "ms",
        better: Better::Lower,
    };
    detail("spawn_join multiproc start() alone", "ms", &mp_start);
    detail("spawn_join python start() alone", "ms", &py_fork_start);
    sc.report("python", &mp, &py_fork);
    sc.report("python-spawn", &mp, &py_spawn);
    sc.report("raw", &mp, &raw);
    Ok(())
}

/// One round of `SPAWN_BATCH` starts and joins: the whole times into `totals`, the
/// starts alone into `starts`.
fn batch_with_starts(
    totals: &mut Samples,
    starts: &mut Samples,
    once: &impl Fn() -> Res<(f64, f64)>,
) -> Res {
    let (t, s): (Vec<f64>, Vec<f64>) = (0..SPAWN_BATCH)
        .map(|_| once())
        .collect::<Res<Vec<_>>>()?
        .into_iter()
        .unzip();
    totals.push(t);
    starts.push(s);
    Ok(())
}

/// Start + join with the forkserver start method, against Python's.
pub(crate) fn spawn_join_forkserver(py: Option<&Python>) -> Res {
    // (start + join, start alone)
    let mp_once = || -> Res<(f64, f64)> {
        let t0 = Instant::now();
        let mut p = Process::new(noop, ()).start_method(StartMethod::Forkserver);
        p.start()?;
        let started = ms(t0);
        let reason = p.join()?;
        if reason.exit_code() != 0 {
            return Err(format!("multiproc child ended with {reason}").into());
        }
        Ok((ms(t0), started))
    };
    let mut server = py
        .filter(|_| wanted("python"))
        .map(|py| py.serve("spawn_join.py", &["forkserver"], &[("N", SPAWN_BATCH)]))
        .transpose()?;
    for _ in 0..3 {
        mp_once()?;
    }
    let (mut mp, mut mp_start, mut python) =
        (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        batch_with_starts(&mut mp, &mut mp_start, &mp_once)?;
        if let Some(s) = server.as_mut() {
            python.push(s.rep()?.samples);
        }
    }
    if let Some(s) = server {
        s.finish()?;
    }
    let sc = Scenario {
        name: "spawn_join_forkserver",
        unit: "ms",
        better: Better::Lower,
    };
    detail(
        "spawn_join_forkserver multiproc start() alone",
        "ms",
        &mp_start,
    );
    sc.report("python", &mp, &python);
    Ok(())
}

/// SIGKILL a supervised child, until its replacement is ready (`Restarted`).
pub(crate) fn restart(py: Option<&Python>, method: StartMethod) -> Res {
    let forkserver = method == StartMethod::Forkserver;
    let name = if forkserver {
        "restart_forkserver"
    } else {
        "restart"
    };
    let flags = SupervisorFlags {
        start_method: method,
        // Restart as often as the bench kills: this measures the restart, not intensity.
        intensity: RestartIntensity {
            max_restarts: u32::MAX,
            within: Duration::from_secs(1),
        },
        backoff: Backoff::NONE,
        ..SupervisorFlags::default()
    };
    let supervisor = Supervisor::new(flags).child(function_child("victim", idle, ())?);
    let mut events = blocking::Events::from(supervisor.events());
    let sup = blocking::SupervisorRef::start(supervisor)?;
    let mut pid = match events.next() {
        Some(SupervisorEvent::ChildStarted { pid, .. }) => pid,
        other => return Err(format!("expected the first start, got {other:?}").into()),
    };
    // (kill to replacement ready, kill to the exit seen by the supervisor)
    let mut mp_once = || -> Res<(f64, f64)> {
        let t0 = Instant::now();
        kill(pid)?;
        let mut seen = 0.0;
        for event in events.by_ref() {
            match event {
                SupervisorEvent::ChildExited { .. } => seen = ms(t0),
                SupervisorEvent::Restarted { pid: new, .. } => {
                    pid = new;
                    return Ok((ms(t0), seen));
                }
                _ => {}
            }
        }
        Err("the supervisor ended".into())
    };
    let raw_on = wanted("raw");
    let mut current = if raw_on { Some(ready_raw()?) } else { None };
    let mut raw_once = || -> Res<Option<f64>> {
        let Some(child) = current.as_mut() else {
            return Ok(None);
        };
        let t0 = Instant::now();
        child.child.kill()?;
        child.child.wait()?;
        *child = ready_raw()?;
        Ok(Some(ms(t0)))
    };
    let mut python = py
        .filter(|_| wanted("python"))
        .map(|py| py.serve("restart.py", &[], &[("N", RESTART_BATCH / 4)]))
        .transpose()?;
    for _ in 0..3 {
        mp_once()?;
        raw_once()?;
    }
    let (mut mp, mut mp_seen) = (Samples::default(), Samples::default());
    let (mut raw, mut py_s) = (Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        let (ready, seen): (Vec<f64>, Vec<f64>) = (0..RESTART_BATCH)
            .map(|_| mp_once())
            .collect::<Res<Vec<_>>>()?
            .into_iter()
            .unzip();
        mp.push(ready);
        mp_seen.push(seen);
        if raw_on {
            let samples: Vec<f64> = (0..RESTART_BATCH)
                .filter_map(|_| raw_once().transpose())
                .collect::<Res<_>>()?;
            raw.push(samples);
        }
        if let Some(s) = python.as_mut() {
            py_s.push(s.rep()?.samples);
        }
    }
    if let Some(s) = python {
        s.finish()?;
    }
    sup.shutdown();
    let sc = Scenario {
        name,
        unit: "ms",
        better: Better::Lower,
    };
    // Python's executor only reports the death; this is multiproc's report of it.
    detail(
        &format!("{name} multiproc kill to ChildExited"),
        "ms",
        &mp_seen,
    );
    sc.report("raw", &mp, &raw);
    sc.report("python", &mp, &py_s);
    Ok(())
}

/// A supervisor of 1000 idle children: start them all, kill 100 of them, wait until
/// all are back; wall times and memory.
pub(crate) fn tree_1000() -> Res {
    let flags = SupervisorFlags {
        intensity: RestartIntensity {
            max_restarts: u32::MAX,
            within: Duration::from_secs(1),
        },
        backoff: Backoff::NONE,
        ..SupervisorFlags::default()
    };
    let rss_before = proc_status("self", "VmRSS")?;
    let mut supervisor = Supervisor::new(flags);
    for i in 0..TREE_CHILDREN {
        supervisor = supervisor.child(function_child(format!("w{i}"), idle, ())?);
    }
    let mut events = blocking::Events::from(supervisor.events());
    let t0 = Instant::now();
    let sup = blocking::SupervisorRef::start(supervisor)?;
    let started = ms(t0);
    let rss_after = proc_status("self", "VmRSS")?;
    let children = sup.which_children()?;
    let pids: Vec<u32> = children.iter().filter_map(|c| c.pid).collect();
    if pids.len() != TREE_CHILDREN {
        return Err(format!("{} of {TREE_CHILDREN} children run", pids.len()).into());
    }
    let rss: Vec<f64> = pids
        .iter()
        .step_by(TREE_CHILDREN / 20)
        .map(|p| proc_status(&p.to_string(), "VmRSS"))
        .collect::<Res<_>>()?;
    let anon: Vec<f64> = pids
        .iter()
        .step_by(TREE_CHILDREN / 20)
        .map(|p| proc_status(&p.to_string(), "RssAnon"))
        .collect::<Res<_>>()?;
    // Shared pages (the binary, libc) count in each child's RSS; PSS divides them
    // among the processes that share them: the memory a child really adds.
    let pss: Vec<f64> = pids
        .iter()
        .step_by(TREE_CHILDREN / 20)
        .map(|p| proc_field(&p.to_string(), "smaps_rollup", "Pss"))
        .collect::<Res<_>>()?;
    // A fixed, spread-out choice of victims (every tenth child, shifted).
    let victims: Vec<u32> = pids
        .iter()
        .skip(3)
        .step_by(TREE_CHILDREN / TREE_KILLS)
        .copied()
        .collect();
    let t1 = Instant::now();
    for &pid in &victims {
        kill(pid)?;
    }
    let mut back = 0;
    for event in events.by_ref() {
        if matches!(event, SupervisorEvent::Restarted { .. }) {
            back += 1;
            if back == victims.len() {
                break;
            }
        }
    }
    let recovered = ms(t1);
    let active = sup.count_children()?.active;
    let t2 = Instant::now();
    sup.shutdown();
    let stopped = ms(t2);
    if active != TREE_CHILDREN {
        return Err(format!("{active} of {TREE_CHILDREN} children run after the restarts").into());
    }
    println!("tree_1000: multiproc={} ms", num(started + recovered));
    println!(
        "# tree_1000: start {TREE_CHILDREN}={} ms, kill {} and all back={} ms, shutdown={} ms",
        num(started),
        victims.len(),
        num(recovered),
        num(stopped)
    );
    println!(
        "# tree_1000: parent RSS {} KiB (+{} KiB per child); idle child RSS median {} KiB (RssAnon {} KiB, PSS {} KiB), target <= 4096 KiB",
        num(rss_after),
        num((rss_after - rss_before) / TREE_CHILDREN as f64),
        num(median(&rss)),
        num(median(&anon)),
        num(median(&pss))
    );
    Ok(())
}

/// A raw replacement worker that has said it is ready.
fn ready_raw() -> Res<RawChild> {
    let mut child = RawChild::start("raw-ready", &[])?;
    let mut byte = [0u8; 1];
    child.sock.read_exact(&mut byte)?;
    Ok(child)
}

pub(crate) fn idle_rss(py: Option<&Python>) -> Res {
    let mut warm = Process::new(idle, ()).daemon(true);
    warm.start()?;
    warm.stop(STOP_TIMEOUT)?;
    let before = proc_status("self", "VmRSS")?;
    let mut children = Vec::with_capacity(IDLE_CHILDREN);
    for _ in 0..IDLE_CHILDREN {
        let mut p = Process::new(idle, ()).daemon(true);
        p.start()?;
        children.push(p);
    }
    // Each child answered its handshake before `start` returned: it is set up and
    // about to wait, so there is nothing to let settle.
    let after = proc_status("self", "VmRSS")?;
    let mut rss = Vec::new();
    let mut anon = Vec::new();
    for p in &children {
        let pid = p.pid().ok_or("a started child has no pid")?.to_string();
        rss.push(proc_status(&pid, "VmRSS")?);
        anon.push(proc_status(&pid, "RssAnon")?);
    }
    for p in &children {
        p.stop(STOP_TIMEOUT)?;
    }
    let child = median(&rss);
    let per_child = (after - before) / IDLE_CHILDREN as f64;
    println!("# idle_rss: child={child:.0} KiB parent_per_child={per_child:.0} KiB");
    println!(
        "# idle_rss multiproc: child RssAnon={:.0} KiB n={IDLE_CHILDREN}",
        median(&anon)
    );
    let Some(py) = py.filter(|_| wanted("python")) else {
        return Ok(());
    };
    let fork = py.once("idle_rss.py", &["fork"], &[("N", IDLE_CHILDREN)])?;
    let spawn = py.once("idle_rss.py", &["spawn"], &[("N", PY_SPAWN_BATCH)])?;
    for (method, r) in [("fork", &fork), ("spawn", &spawn)] {
        println!(
            "# idle_rss python ({method}): child={:.0} KiB child RssAnon={:.0} KiB parent_per_child={:.0} KiB n={:.0}",
            r.sample()?,
            r.number("child_anon")?,
            r.number("parent_per_child")?,
            r.number("n")?
        );
    }
    let reference = fork.sample()?;
    println!(
        "idle_rss vs python: multiproc={child:.0} KiB reference={reference:.0} KiB ratio={:.2}",
        reference / child
    );
    Ok(())
}
