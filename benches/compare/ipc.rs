//! Message scenarios: `call_roundtrip` (an actor call to an echo actor in a child,
//! blocking and async), `call_roundtrip_1k` (the same with 1 KiB payloads),
//! `call_throughput` (pipelined casts, then a call) and `stream_1k` / `stream_1m`
//! (one-way `send_bytes` from a child), against Python's `Pipe` and a raw socketpair.

use std::io::{Read, Write};
use std::time::Instant;

use multiproc::blocking::{Connection, Process, pipe};
use multiproc::{Actor, BoxError};

use crate::python::Python;
use crate::raw::RawChild;
use crate::{Better, ROUNDS, Res, STOP_TIMEOUT, Samples, Scenario, median, us, wanted};

/// Round trips per round.
const CALL_BATCH: usize = 5000;
/// Round trips before the first round.
const CALL_WARMUP: usize = 1000;
/// Round trips per round of `call_roundtrip_1k`.
const CALL_1K_BATCH: usize = 2000;
/// Payload bytes of `call_roundtrip_1k`.
const CALL_1K_SIZE: usize = 1024;
/// Messages per round of `call_throughput`: casts, then one call.
const PIPELINE: usize = 10_000;

/// Sends `count` messages of `size` bytes after "go", then waits for "done".
fn stream_source(
    (mut conn, size, count): (Connection, usize, usize),
) -> Result<(), multiproc::connection::Error> {
    let payload = vec![0xA5u8; size];
    conn.recv::<u8>()?;
    for _ in 0..count {
        conn.send_bytes(&payload)?;
    }
    conn.recv::<u8>()?;
    Ok(())
}

/// Answers each number with itself.
struct Echo;

impl Actor for Echo {
    type Args = ();
    type Msg = u64;
    type Reply = u64;

    async fn start((): ()) -> Result<Self, BoxError> {
        Ok(Echo)
    }

    async fn handle(&mut self, n: u64) -> u64 {
        n
    }
}

multiproc::register_actor!(Echo);

/// Bytes, encoded as a msgpack `bin` (one length and the bytes), not a list of numbers.
#[derive(serde::Serialize, serde::Deserialize)]
struct Bytes(#[serde(with = "serde_bytes")] Vec<u8>);

/// Answers each payload with itself.
struct EchoBytes;

impl Actor for EchoBytes {
    type Args = ();
    type Msg = Bytes;
    type Reply = Bytes;

    async fn start((): ()) -> Result<Self, BoxError> {
        Ok(EchoBytes)
    }

    async fn handle(&mut self, b: Bytes) -> Bytes {
        b
    }
}

multiproc::register_actor!(EchoBytes);

/// Counts the messages it gets, casts and calls alike, and answers with the count.
struct Sink(u64);

impl Actor for Sink {
    type Args = ();
    type Msg = u64;
    type Reply = u64;

    async fn start((): ()) -> Result<Self, BoxError> {
        Ok(Sink(0))
    }

    async fn handle(&mut self, _: u64) -> u64 {
        self.0 += 1;
        self.0
    }
}

multiproc::register_actor!(Sink);

multiproc::register!(stream_source);

/// Returns the median blocking round trip (µs), when it was measured.
pub(crate) fn call_roundtrip(
    py: Option<&Python>,
    blocking: bool,
    asynchronous: bool,
) -> Res<Option<f64>> {
    // A daemon, so that an early error cannot leave it running: at exit, daemon
    // children are stopped while the others are joined (they never end by themselves).
    let mut p = Process::actor::<Echo>(()).daemon(true);
    p.start()?;
    let echo = p.actor_ref::<Echo>();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mp_batch = |n: usize| -> Res<f64> {
        let t0 = Instant::now();
        for i in 0..n as u64 {
            check_echo(i, echo.call(i)?)?;
        }
        Ok(us(t0) / n as f64)
    };
    let async_batch = |n: usize| -> Res<f64> {
        rt.block_on(async {
            let t0 = Instant::now();
            for i in 0..n as u64 {
                check_echo(i, echo.as_async().call(i).await?)?;
            }
            Ok(us(t0) / n as f64)
        })
    };
    let mut raw = if wanted("raw") {
        Some(RawChild::start("raw-echo", &[])?)
    } else {
        None
    };
    let mut raw_batch = |n: usize| -> Res<Option<f64>> {
        let Some(raw) = raw.as_mut() else {
            return Ok(None);
        };
        let mut buf = [0u8; 8];
        let t0 = Instant::now();
        for i in 0..n as u64 {
            raw.sock.write_all(&i.to_le_bytes())?;
            raw.sock.read_exact(&mut buf)?;
            check_echo(i, u64::from_le_bytes(buf))?;
        }
        Ok(Some(us(t0) / n as f64))
    };
    let mut server = py
        .filter(|_| wanted("python"))
        .map(|py| py.serve("pipe_roundtrip.py", &["fork"], &[("ITERS", CALL_BATCH)]))
        .transpose()?;
    if blocking {
        mp_batch(CALL_WARMUP)?;
    }
    if asynchronous {
        async_batch(CALL_WARMUP)?;
    }
    raw_batch(CALL_WARMUP)?;
    let (mut mp, mut mp_async) = (Samples::default(), Samples::default());
    let (mut raw_s, mut python) = (Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        if blocking {
            mp.push(vec![mp_batch(CALL_BATCH)?]);
        }
        if asynchronous {
            mp_async.push(vec![async_batch(CALL_BATCH)?]);
        }
        if let Some(v) = raw_batch(CALL_BATCH)? {
            raw_s.push(vec![v]);
        }
        if let Some(s) = server.as_mut() {
            python.push(s.rep()?.samples);
        }
    }
    if let Some(raw) = raw {
        raw.finish()?;
    }
    if let Some(s) = server {
        s.finish()?;
    }
    p.stop(STOP_TIMEOUT)?;
    for (on, name, samples) in [
        (blocking, "call_roundtrip", &mp),
        (asynchronous, "call_roundtrip_async", &mp_async),
    ] {
        if on {
            let sc = Scenario {
                name,
                unit: "us",
                better: Better::Lower,
            };
            sc.report("python", samples, &python);
            sc.report("raw", samples, &raw_s);
        }
    }
    Ok(blocking.then(|| median(&mp.all())))
}

/// `call_roundtrip_1k`: blocking calls with 1 KiB payloads, echoed.
pub(crate) fn call_roundtrip_1k(py: Option<&Python>) -> Res {
    let mut p = Process::actor::<EchoBytes>(()).daemon(true);
    p.start()?;
    let echo = p.actor_ref::<EchoBytes>();
    let payload = vec![0xA5u8; CALL_1K_SIZE];
    let mp_batch = |n: usize| -> Res<f64> {
        let t0 = Instant::now();
        for _ in 0..n {
            let back = echo.call(Bytes(payload.clone()))?;
            check_len(back.0.len(), CALL_1K_SIZE)?;
        }
        Ok(us(t0) / n as f64)
    };
    let mut raw = if wanted("raw") {
        Some(RawChild::start(
            "raw-echo",
            &[("BENCH_SIZE", CALL_1K_SIZE)],
        )?)
    } else {
        None
    };
    let mut raw_batch = |n: usize| -> Res<Option<f64>> {
        let Some(raw) = raw.as_mut() else {
            return Ok(None);
        };
        let mut buf = vec![0u8; CALL_1K_SIZE];
        let t0 = Instant::now();
        for _ in 0..n {
            raw.sock.write_all(&payload)?;
            raw.sock.read_exact(&mut buf)?;
        }
        Ok(Some(us(t0) / n as f64))
    };
    let mut server = py
        .filter(|_| wanted("python"))
        .map(|py| {
            py.serve(
                "pipe_roundtrip.py",
                &["fork"],
                &[("ITERS", CALL_1K_BATCH), ("SIZE", CALL_1K_SIZE)],
            )
        })
        .transpose()?;
    mp_batch(CALL_WARMUP)?;
    raw_batch(CALL_WARMUP)?;
    let (mut mp, mut raw_s, mut python) =
        (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        mp.push(vec![mp_batch(CALL_1K_BATCH)?]);
        if let Some(v) = raw_batch(CALL_1K_BATCH)? {
            raw_s.push(vec![v]);
        }
        if let Some(s) = server.as_mut() {
            python.push(s.rep()?.samples);
        }
    }
    if let Some(raw) = raw {
        raw.finish()?;
    }
    if let Some(s) = server {
        s.finish()?;
    }
    p.stop(STOP_TIMEOUT)?;
    let sc = Scenario {
        name: "call_roundtrip_1k",
        unit: "us",
        better: Better::Lower,
    };
    sc.report("python", &mp, &python);
    sc.report("raw", &mp, &raw_s);
    Ok(())
}

/// `call_throughput`: [`PIPELINE`] messages per round to a counting actor, all casts
/// but the last, a call whose answer (the count) ends the round; messages per second.
pub(crate) fn call_throughput(py: Option<&Python>) -> Res {
    let mut p = Process::actor::<Sink>(()).daemon(true);
    p.start()?;
    let sink = p.actor_ref::<Sink>();
    let mut total = 0u64;
    let mut mp_batch = || -> Res<f64> {
        let t0 = Instant::now();
        for i in 0..PIPELINE as u64 - 1 {
            sink.cast(i)?;
        }
        let got = sink.call(0)?;
        let dt = t0.elapsed().as_secs_f64();
        total += PIPELINE as u64;
        check_echo(total, got)?;
        Ok(PIPELINE as f64 / dt)
    };
    let mut raw = if wanted("raw") {
        Some(RawChild::start("raw-sink", &[])?)
    } else {
        None
    };
    let mut raw_total = 0u64;
    let mut raw_batch = || -> Res<Option<f64>> {
        let Some(raw) = raw.as_mut() else {
            return Ok(None);
        };
        let mut buf = [0u8; 8];
        let t0 = Instant::now();
        for i in 0..PIPELINE as u64 - 1 {
            raw.sock.write_all(&i.to_le_bytes())?;
        }
        raw.sock.write_all(&(1u64 << 63).to_le_bytes())?;
        raw.sock.read_exact(&mut buf)?;
        let dt = t0.elapsed().as_secs_f64();
        raw_total += PIPELINE as u64;
        check_echo(raw_total, u64::from_le_bytes(buf))?;
        Ok(Some(PIPELINE as f64 / dt))
    };
    let mut server = py
        .filter(|_| wanted("python"))
        .map(|py| py.serve("pipe_throughput.py", &["fork"], &[("COUNT", PIPELINE)]))
        .transpose()?;
    mp_batch()?;
    raw_batch()?;
    let (mut mp, mut raw_s, mut python) =
        (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        mp.push(vec![mp_batch()?]);
        if let Some(v) = raw_batch()? {
            raw_s.push(vec![v]);
        }
        if let Some(s) = server.as_mut() {
            python.push(s.rep()?.samples);
        }
    }
    if let Some(raw) = raw {
        raw.finish()?;
    }
    if let Some(s) = server {
        s.finish()?;
    }
    p.stop(STOP_TIMEOUT)?;
    let sc = Scenario {
        name: "call_throughput",
        unit: "msg/s",
        better: Better::Higher,
    };
    sc.report("python", &mp, &python);
    sc.report("raw", &mp, &raw_s);
    Ok(())
}

fn check_echo(sent: u64, got: u64) -> Res {
    if sent != got {
        return Err(format!("echo answered {got} to {sent}").into());
    }
    Ok(())
}

pub(crate) fn stream(name: &'static str, size: usize, count: usize, py: Option<&Python>) -> Res {
    let mp_once = || -> Res<f64> {
        let (mut conn, theirs) = pipe(true)?;
        let mut p = Process::new(stream_source, (theirs, size, count));
        p.start()?;
        let mut buf = Vec::with_capacity(size);
        let t0 = Instant::now();
        conn.send(&1u8)?;
        for _ in 0..count {
            conn.recv_bytes_into(&mut buf)?;
            check_len(buf.len(), size)?;
        }
        let dt = t0.elapsed().as_secs_f64();
        conn.send(&2u8)?;
        let reason = p.join()?;
        if reason.exit_code() != 0 {
            return Err(format!("multiproc stream child ended with {reason}").into());
        }
        Ok((size * count) as f64 / dt / 1e6)
    };
    let raw_once = || -> Res<f64> {
        let mut c = RawChild::start(
            "raw-stream",
            &[("BENCH_SIZE", size), ("BENCH_COUNT", count)],
        )?;
        let mut byte = [0u8; 1];
        c.sock.read_exact(&mut byte)?; // the child is running
        let mut buf = vec![0u8; size];
        let mut header = [0u8; 4];
        let t0 = Instant::now();
        c.sock.write_all(b"g")?;
        for _ in 0..count {
            c.sock.read_exact(&mut header)?;
            let len = u32::from_be_bytes(header) as usize;
            if len > buf.len() {
                buf.resize(len, 0);
            }
            c.sock.read_exact(&mut buf[..len])?;
            check_len(len, size)?;
        }
        let dt = t0.elapsed().as_secs_f64();
        c.sock.write_all(b"d")?;
        c.finish()?;
        Ok((size * count) as f64 / dt / 1e6)
    };
    let raw_on = wanted("raw");
    let mut server = py
        .filter(|_| wanted("python"))
        .map(|py| {
            py.serve(
                "stream.py",
                &[&size.to_string(), &count.to_string(), "fork"],
                &[],
            )
        })
        .transpose()?;
    mp_once()?;
    if raw_on {
        raw_once()?;
    }
    let (mut mp, mut raw, mut python) =
        (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        mp.push(vec![mp_once()?]);
        if raw_on {
            raw.push(vec![raw_once()?]);
        }
        if let Some(s) = server.as_mut() {
            python.push(s.rep()?.samples);
        }
    }
    if let Some(s) = server {
        s.finish()?;
    }
    let sc = Scenario {
        name,
        unit: "MB/s",
        better: Better::Higher,
    };
    sc.report("python", &mp, &python);
    sc.report("raw", &mp, &raw);
    Ok(())
}

fn check_len(got: usize, want: usize) -> Res {
    if got != want {
        return Err(format!("received {got} bytes, expected {want}").into());
    }
    Ok(())
}
