//! `sibling_call_roundtrip`: blocking calls from one child of the root to an echo
//! actor in another, over the direct link the root brokers between them; against
//! the same calls from the root to its child (the parent↔child link) and between two
//! siblings the root does not link (`routed`: through the root, as before direct
//! links existed).

use std::time::Instant;

use multiproc::__private::test_hooks;
use multiproc::blocking::{Connection, Process, pipe};
use multiproc::{Actor, BoxError};

use crate::{Better, ROUNDS, Res, STOP_TIMEOUT, Samples, Scenario, us};

/// Round trips per round.
const BATCH: u64 = 5000;
/// Round trips before the first round.
const WARMUP: u64 = 1000;

/// Answers each number with itself.
struct SiblingEcho;

impl Actor for SiblingEcho {
    type Args = ();
    type Msg = u64;
    type Reply = u64;

    async fn start((): ()) -> Result<Self, BoxError> {
        Ok(SiblingEcho)
    }

    async fn handle(&mut self, n: u64) -> u64 {
        n
    }
}

multiproc::register_actor!(SiblingEcho);

/// A child that, for each count it is sent, calls its sibling's echo that many
/// times and answers with the mean round trip in µs (a count of 0 ends it).
fn sibling_caller(
    (echo, mut conn): (multiproc::ActorRef<SiblingEcho>, Connection),
) -> Result<(), Box<dyn std::error::Error>> {
    let echo = multiproc::blocking::ActorRef::from(echo);
    loop {
        let n: u64 = conn.recv()?;
        if n == 0 {
            return Ok(());
        }
        let t0 = Instant::now();
        for i in 0..n {
            let back = echo.call(i)?;
            if back != i {
                return Err(format!("echo answered {back} to {i}").into());
            }
        }
        conn.send(&(us(t0) / n as f64))?;
    }
}

multiproc::register!(sibling_caller);

/// A caller and its sibling echo.
struct Pair {
    caller: Process,
    echo: Process,
    conn: Connection,
}

impl Pair {
    fn start() -> Res<Pair> {
        // Daemons, so that an early error cannot leave them running.
        let mut echo = Process::actor::<SiblingEcho>(()).daemon(true);
        echo.start()?;
        let (conn, theirs) = pipe(true)?;
        let mut caller = Process::new(
            sibling_caller,
            (echo.actor_ref::<SiblingEcho>().as_async().clone(), theirs),
        )
        .daemon(true);
        caller.start()?;
        Ok(Pair { caller, echo, conn })
    }

    fn batch(&mut self, n: u64) -> Res<f64> {
        self.conn.send(&n)?;
        Ok(self.conn.recv()?)
    }

    fn finish(mut self) -> Res {
        self.conn.send(&0u64)?;
        self.caller.join()?;
        self.echo.stop(STOP_TIMEOUT)?;
        Ok(())
    }
}

pub(crate) fn sibling_call_roundtrip() -> Res {
    // The direct pair first, brokered at its first call.
    let mut direct = Pair::start()?;
    // Warmed up until linked: none of its calls goes through the root from then on.
    let mut linked = false;
    for _ in 0..10 {
        let before = test_hooks::routed_between_children();
        direct.batch(WARMUP)?;
        if test_hooks::routed_between_children() == before {
            linked = true;
            break;
        }
    }
    if !linked {
        return Err("the direct pair's calls still go through the root".into());
    }
    // Then a pair the root does not link.
    test_hooks::set_sibling_brokering(false);
    let routed = Pair::start().and_then(|mut routed| {
        routed.batch(WARMUP)?;
        Ok(routed)
    });
    let mut routed = match routed {
        Ok(r) => r,
        Err(e) => {
            test_hooks::set_sibling_brokering(true);
            return Err(e);
        }
    };
    let mut echo = Process::actor::<SiblingEcho>(()).daemon(true);
    echo.start()?;
    let child = echo.actor_ref::<SiblingEcho>();
    let pc_batch = |n: u64| -> Res<f64> {
        let t0 = Instant::now();
        for i in 0..n {
            let back = child.call(i)?;
            if back != i {
                return Err(format!("echo answered {back} to {i}").into());
            }
        }
        Ok(us(t0) / n as f64)
    };
    pc_batch(WARMUP)?;
    let (mut d, mut pc, mut r) = (Samples::default(), Samples::default(), Samples::default());
    let routed_before = test_hooks::routed_between_children();
    for _ in 0..ROUNDS {
        d.push(vec![direct.batch(BATCH)?]);
        pc.push(vec![pc_batch(BATCH)?]);
        r.push(vec![routed.batch(BATCH)?]);
    }
    let through_root = test_hooks::routed_between_children() - routed_before;
    test_hooks::set_sibling_brokering(true);
    // Only the routed pair's calls and answers went through the root.
    if through_root != 2 * BATCH * ROUNDS as u64 {
        return Err(format!(
            "{through_root} messages went through the root, not the routed pair's {}",
            2 * BATCH * ROUNDS as u64
        )
        .into());
    }
    direct.finish()?;
    routed.finish()?;
    echo.stop(STOP_TIMEOUT)?;
    let sc = Scenario {
        name: "sibling_call_roundtrip",
        unit: "us",
        better: Better::Lower,
    };
    sc.report("parent_child", &d, &pc);
    sc.report("routed", &d, &r);
    Ok(())
}
