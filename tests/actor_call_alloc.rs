//! The path of an actor call, from `ActorRef::call` to the handler and back, allocates
//! nothing once warm: counted in the caller and in the actor's process, with a
//! counting global allocator in this binary (which is also the child's).

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;
#[path = "support/count_alloc.rs"]
mod count_alloc;

use common::{TestResult, trial};
use count_alloc::{CountAlloc, allocations, first_seen, watch};
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
    /// The allocations made so far in the actor's process; from now on, its first
    /// allocation is described.
    Watch,
    /// The allocations made so far in the actor's process, and the description of
    /// the first one since `Watch`.
    Seen,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Answer {
    Echo(u64),
    Seen(u64, Option<String>),
}

impl Actor for Echo {
    type Args = ();
    type Msg = Msg;
    type Reply = Answer;

    async fn start((): ()) -> Result<Self, BoxError> {
        Ok(Echo)
    }

    async fn handle(&mut self, msg: Msg) -> Answer {
        match msg {
            Msg::Echo(n) => Answer::Echo(n),
            Msg::Watch => {
                let count = allocations();
                watch();
                Answer::Seen(count, None)
            }
            Msg::Seen => Answer::Seen(allocations(), first_seen()),
        }
    }
}

multiproc::register_actor!(Echo);

/// Runs `CALLS` calls through `calls` once warm, and checks that neither this
/// process nor the actor's allocated meanwhile; a failure describes the first
/// allocation on each side.
fn check_none(calls: &mut dyn FnMut(Msg) -> Result<Answer, multiproc::CallError>) -> TestResult {
    for i in 0..WARMUP {
        check_eq!(calls(Msg::Echo(i))?, Answer::Echo(i));
    }
    let Answer::Seen(child_before, _) = calls(Msg::Watch)? else {
        return Err("Watch was not answered with Seen".into());
    };
    let before = allocations();
    watch();
    for i in 0..CALLS {
        check_eq!(calls(Msg::Echo(i))?, Answer::Echo(i));
    }
    let here = allocations() - before;
    let here_first = first_seen();
    let Answer::Seen(child_after, child_first) = calls(Msg::Seen)? else {
        return Err("Seen was not answered with Seen".into());
    };
    let child = child_after - child_before;
    check!(
        here == 0 && child == 0,
        "{CALLS} calls allocated {here} times here and {child} times in the actor's process; \
         the first here: {}; the first there: {}",
        here_first.as_deref().unwrap_or("none"),
        child_first.as_deref().unwrap_or("none")
    );
    Ok(())
}

fn blocking_calls_allocate_nothing_once_warm() -> TestResult {
    let mut p = Process::actor::<Echo>(());
    p.start()?;
    let echo = p.actor_ref::<Echo>();
    let checked = check_none(&mut |m| echo.call(m));
    p.stop(std::time::Duration::from_secs(10))?;
    checked
}

fn async_calls_allocate_nothing_once_warm() -> TestResult {
    let mut p = Process::actor::<Echo>(());
    p.start()?;
    let echo = p.actor_ref::<Echo>().into_async();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let checked = check_none(&mut |m| rt.block_on(echo.call(m)));
    p.stop(std::time::Duration::from_secs(10))?;
    checked
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
