//! The path of an actor call, from `ActorRef::call` to the handler and back, allocates
//! nothing once warm: counted in the caller and in the actor's process, with a
//! counting global allocator in this binary (which is also the child's).

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;
#[path = "support/count_alloc.rs"]
mod count_alloc;

use common::{TestResult, trial};
use count_alloc::{CountAlloc, allocations};
use multiproc::blocking::Process;
use multiproc::{Actor, BoxError};
use serde::{Deserialize, Serialize};

#[global_allocator]
static ALLOC: CountAlloc = CountAlloc;

/// Calls before counting: every buffer, pool and table reaches its size.
const WARMUP: u64 = 2000;
/// Calls counted.
const CALLS: u64 = 10_000;

struct Echo;

#[derive(Debug, Serialize, Deserialize)]
enum Msg {
    Echo(u64),
    /// The allocations made so far in the actor's process.
    Allocations,
}

impl Actor for Echo {
    type Args = ();
    type Msg = Msg;
    type Reply = u64;

    async fn start((): ()) -> Result<Self, BoxError> {
        Ok(Echo)
    }

    async fn handle(&mut self, msg: Msg) -> u64 {
        match msg {
            Msg::Echo(n) => n,
            Msg::Allocations => allocations(),
        }
    }
}

multiproc::register_actor!(Echo);

/// Runs `calls` through `call`, and returns the allocations made meanwhile here and
/// in the actor's process.
fn count(
    calls: &mut dyn FnMut(u64) -> Result<u64, multiproc::CallError>,
) -> Result<(u64, u64), common::Failed> {
    for i in 0..WARMUP {
        check_eq!(calls(i)?, i);
    }
    let child_before = calls(u64::MAX)?;
    let before = allocations();
    for i in 0..CALLS {
        check_eq!(calls(i)?, i);
    }
    let here = allocations() - before;
    let child = calls(u64::MAX)? - child_before;
    Ok((here, child))
}

fn msg(i: u64) -> Msg {
    if i == u64::MAX {
        Msg::Allocations
    } else {
        Msg::Echo(i)
    }
}

fn blocking_calls_allocate_nothing_once_warm() -> TestResult {
    let mut p = Process::actor::<Echo>(());
    p.start()?;
    let echo = p.actor_ref::<Echo>();
    let (here, child) = count(&mut |i| echo.call(msg(i)))?;
    p.stop(std::time::Duration::from_secs(10))?;
    check!(
        here == 0 && child == 0,
        "{CALLS} calls allocated {here} times here and {child} times in the actor's process"
    );
    Ok(())
}

fn async_calls_allocate_nothing_once_warm() -> TestResult {
    let mut p = Process::actor::<Echo>(());
    p.start()?;
    let echo = p.actor_ref::<Echo>().into_async();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (here, child) = count(&mut |i| rt.block_on(echo.call(msg(i))))?;
    p.stop(std::time::Duration::from_secs(10))?;
    check!(
        here == 0 && child == 0,
        "{CALLS} calls allocated {here} times here and {child} times in the actor's process"
    );
    Ok(())
}

fn main() {
    common::run_serial(vec![
        trial(
            "blocking_calls_allocate_nothing_once_warm",
            blocking_calls_allocate_nothing_once_warm,
        ),
        trial(
            "async_calls_allocate_nothing_once_warm",
            async_calls_allocate_nothing_once_warm,
        ),
    ]);
}
