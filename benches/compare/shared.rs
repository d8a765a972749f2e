//! Shared-state scenarios: `value_locked_2proc` (a `Value` incremented under its lock
//! by two children), `shm_bandwidth` (a `SharedMemory` block written by a child, read
//! by the bench) and `manager_dict` (a manager's dict proxy), against Python's `Value`,
//! `SharedMemory` and `Manager().dict()`.

use std::error::Error;
use std::time::Instant;

use multiproc::Manager;
use multiproc::blocking::{Event, Process, Queue, SharedMemory, SharedMemoryRef, Value};

use crate::python::Python;
use crate::stamp::{Stamp, Who, finish, mono_ns, reports, secs, serve_if, sync_rounds};
use crate::{Better, ROUNDS, Res, Samples, Scenario};

/// Increments per round of `value_locked_2proc` (half in each child), as
/// `bench_value.py`'s.
const VALUE_INCS: u64 = 500_000;
/// Bytes written and read per round of `shm_bandwidth`.
const SHM_BYTES: usize = 1 << 20;
/// Operations per round of `manager_dict`, as `bench_lock.py`'s.
const MANAGER_OPS: u64 = 10_000;

/// After "go", `n` increments of `v` under its lock, timed; reports the span.
fn value_incs(v: Value<u64>, go: Event, n: u64, res: Queue<Stamp>) -> Result<(), Box<dyn Error>> {
    go.wait(None)?;
    let t0 = mono_ns();
    for _ in 0..n {
        *v.lock()? += 1;
    }
    let stamp = Stamp {
        who: Who::Incrementer,
        first_ns: t0,
        last_ns: mono_ns(),
        count: n,
        in_order: true,
    };
    Ok(res.put(&stamp, true, None)?)
}

/// Writes `size` bytes of 7 into the block, timed; reports the span.
fn shm_write(block: SharedMemoryRef, size: usize, res: Queue<Stamp>) -> Result<(), Box<dyn Error>> {
    let block = block.open()?;
    let data = vec![7u8; size];
    let t0 = mono_ns();
    block.write(0, &data)?;
    let stamp = Stamp {
        who: Who::Writer,
        first_ns: t0,
        last_ns: mono_ns(),
        count: size as u64,
        in_order: true,
    };
    Ok(res.put(&stamp, true, None)?)
}

multiproc::register!(value_incs, shm_write);

/// `value_locked_2proc`: two children, fresh each round, each [`VALUE_INCS`]` / 2`
/// increments of one `Value<u64>` under its lock; total / (last end - first start).
/// The value is checked.
pub(crate) fn value_locked_2proc(py: Option<&Python>) -> Res {
    let mp_once = || -> Res<f64> {
        let v = Value::new(0u64)?;
        let (go, res) = (Event::new()?, Queue::<Stamp>::new(0)?);
        let n = VALUE_INCS / 2;
        let mut procs: Vec<Process> = (0..2)
            .map(|_| Process::new(value_incs, (v.clone(), go.clone(), n, res.clone())).daemon(true))
            .collect();
        for p in &mut procs {
            p.start()?;
        }
        go.set()?;
        let stamps = reports(&res, 2, &procs)?;
        finish(&procs)?;
        if v.get()? != 2 * n {
            return Err(format!("the value is {}, not {}", v.get()?, 2 * n).into());
        }
        let start = stamps.iter().map(|s| s.first_ns).min().unwrap_or(0);
        let end = stamps.iter().map(|s| s.last_ns).max().unwrap_or(0);
        Ok((2 * n) as f64 / secs(start, end))
    };
    let servers = vec![(
        "python",
        serve_if(
            py,
            "python",
            "shared.py",
            &["value_locked", "fork"],
            &[("N", VALUE_INCS as usize)],
        )?,
    )];
    let sc = Scenario {
        name: "value_locked_2proc",
        unit: "incr/s",
        better: Better::Higher,
    };
    sync_rounds(&sc, mp_once, servers)
}

/// `shm_bandwidth`: a child, fresh each round, opens a [`SHM_BYTES`] block this
/// process created and writes it whole; this process then reads it whole; bytes
/// moved / (write time + read time). The block's pages are in place from its
/// creation and the child's open (`MADV_POPULATE_WRITE`, outside the timing, as Python's
/// open is), so neither copy takes page faults. `raw`: the same two copies between three warm
/// buffers of this process.
pub(crate) fn shm_bandwidth(py: Option<&Python>) -> Res {
    let block = SharedMemory::create(SHM_BYTES)?;
    let mut buf = vec![0u8; SHM_BYTES];
    let mut mp_once = || -> Res<f64> {
        let res = Queue::<Stamp>::new(0)?;
        let mut p = Process::new(shm_write, (block.handle(), SHM_BYTES, res.clone())).daemon(true);
        p.start()?;
        let procs = [p];
        let stamp = reports(&res, 1, &procs)?.remove(0);
        finish(&procs)?;
        let t0 = Instant::now();
        block.read(0, &mut buf)?;
        let read = t0.elapsed().as_secs_f64();
        if buf.iter().any(|&b| b != 7) {
            return Err("the block does not hold what the child wrote".into());
        }
        buf.fill(0);
        Ok(2.0 * SHM_BYTES as f64 / 1e9 / (secs(stamp.first_ns, stamp.last_ns) + read))
    };
    let (a, mut b, mut c) = (
        vec![7u8; SHM_BYTES],
        vec![1u8; SHM_BYTES],
        vec![1u8; SHM_BYTES],
    );
    let mut raw_once = || -> f64 {
        let t0 = Instant::now();
        b.copy_from_slice(std::hint::black_box(&a));
        c.copy_from_slice(std::hint::black_box(&b));
        let t = t0.elapsed().as_secs_f64();
        std::hint::black_box(&c);
        2.0 * SHM_BYTES as f64 / 1e9 / t
    };
    let mut server = serve_if(
        py,
        "python",
        "shared.py",
        &["shm_bandwidth", "fork"],
        &[("SIZE", SHM_BYTES)],
    )?;
    mp_once()?;
    let (mut mp, mut raw, mut pys) = (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        mp.push(vec![mp_once()?]);
        raw.push(vec![raw_once()]);
        if let Some(s) = server.as_mut() {
            pys.push(s.rep()?.samples);
        }
    }
    if let Some(s) = server {
        s.finish()?;
    }
    let sc = Scenario {
        name: "shm_bandwidth",
        unit: "GB/s",
        better: Better::Higher,
    };
    sc.report("python", &mp, &pys);
    sc.report("raw", &mp, &raw);
    Ok(())
}

/// `manager_dict`: [`MANAGER_OPS`] operations through a dict proxy from this
/// process, `d[k] = v` then `d[k]` alternating on 100 keys; one manager for the
/// scenario, warmed up with 500 operations. ops/s.
pub(crate) fn manager_dict(py: Option<&Python>) -> Res {
    let manager = Manager::start()?;
    let d = manager.dict::<u64, u64>()?;
    let ops = |n: u64| -> Res<f64> {
        let t0 = Instant::now();
        for i in 0..n / 2 {
            d.set(&(i % 100), &i)?;
            if d.get(&(i % 100))? != Some(i) {
                return Err("the dict lost a value".into());
            }
        }
        Ok((n / 2 * 2) as f64 / t0.elapsed().as_secs_f64())
    };
    ops(500)?;
    let servers = vec![(
        "python",
        serve_if(
            py,
            "python",
            "shared.py",
            &["manager_dict", "fork"],
            &[("N", MANAGER_OPS as usize)],
        )?,
    )];
    let sc = Scenario {
        name: "manager_dict",
        unit: "ops/s",
        better: Better::Higher,
    };
    sync_rounds(&sc, || ops(MANAGER_OPS), servers)?;
    manager.shutdown()?;
    Ok(())
}
