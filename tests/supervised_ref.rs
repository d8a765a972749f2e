//! A `SupervisedRef` given to other processes of the tree: a child's calls and casts
//! follow the supervised actor across a SIGKILL and its restart, and each way of not
//! finding it is a typed error (stopped, restarting, its supervisor or its
//! supervisor's process gone). Real processes, real signals; waits on the
//! supervisor's events.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::Duration;

use common::{TestResult, trial};
use multiproc::blocking::{Connection, Events, Process, SupervisorRef, pipe};
use multiproc::{
    Actor, Backoff, BoxError, CallError, ExitReason, RestartIntensity, Strategy, SupervisedRef,
    Supervisor, SupervisorEvent, SupervisorFlags, actor_child,
};
use serde::{Deserialize, Serialize};

/// How long a test waits for something that should come at once.
const WAIT: Duration = Duration::from_secs(20);

/// The supervised actor: a counter that also says which process it runs in.
struct Counter(i64);

#[derive(Debug, Clone, Serialize, Deserialize)]
enum CounterMsg {
    Add(i64),
    Get,
    Pid,
}

impl Actor for Counter {
    type Args = i64;
    type Msg = CounterMsg;
    type Reply = i64;

    async fn start(first: i64) -> Result<Self, BoxError> {
        Ok(Counter(first))
    }

    async fn handle(&mut self, msg: CounterMsg) -> i64 {
        match msg {
            CounterMsg::Add(n) => self.0 += n,
            CounterMsg::Get => {}
            CounterMsg::Pid => return i64::from(std::process::id()),
        }
        self.0
    }
}

/// An actor in a process of its own that supervises a `Counter` and hands out the
/// handle of it: a supervisor hosted away from the root.
struct Host(multiproc::SupervisorRef);

impl Actor for Host {
    type Args = ();
    type Msg = ();
    type Reply = SupervisedRef<Counter>;

    async fn start((): ()) -> Result<Self, BoxError> {
        let sup = Supervisor::new(flags(Backoff::NONE)).child(actor_child::<Counter>("c", 40)?);
        Ok(Host(sup.start().await?))
    }

    async fn handle(&mut self, (): ()) -> SupervisedRef<Counter> {
        self.0.child_ref::<Counter>("c")
    }

    async fn stopping(&mut self) {
        self.0.shutdown().await;
    }
}

/// What the test asks the calling child to do.
#[derive(Debug, Serialize, Deserialize)]
enum Ask {
    Call(CounterMsg),
    TryCall(CounterMsg),
    CallTimeout(CounterMsg, Duration),
    Cast(CounterMsg),
    Quit,
}

/// What the calling child reports of one request.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
enum Outcome {
    Reply(i64),
    Cast,
    NotRunning(String),
    Restarting,
    Timeout,
    Other(String),
}

fn outcome(r: Result<i64, CallError>) -> Outcome {
    match r {
        Ok(n) => Outcome::Reply(n),
        Err(CallError::NotRunning(_, why)) => Outcome::NotRunning(why),
        Err(CallError::Restarting(_)) => Outcome::Restarting,
        Err(CallError::Timeout(_)) => Outcome::Timeout,
        Err(e) => Outcome::Other(format!("{e:?}")),
    }
}

/// A child with the handle: does what it is asked, reports each outcome.
fn caller(counter: SupervisedRef<Counter>, mut conn: Connection) -> Result<(), BoxError> {
    let counter = multiproc::blocking::SupervisedRef::from(counter);
    loop {
        let out = match conn.recv::<Ask>()? {
            Ask::Call(m) => outcome(counter.call(m)),
            Ask::TryCall(m) => outcome(counter.try_call(m)),
            Ask::CallTimeout(m, t) => outcome(counter.call_timeout(m, t)),
            Ask::Cast(m) => match counter.cast(m) {
                Ok(()) => Outcome::Cast,
                Err(e) => outcome(Err(e)),
            },
            Ask::Quit => return Ok(()),
        };
        conn.send(&out)?;
    }
}

multiproc::register!(caller);
multiproc::register_actor!(Counter);
multiproc::register_actor!(Host);

fn flags(backoff: Backoff) -> SupervisorFlags {
    SupervisorFlags {
        strategy: Strategy::OneForOne,
        intensity: RestartIntensity {
            max_restarts: 10,
            within: Duration::from_secs(60),
        },
        backoff,
        ..SupervisorFlags::default()
    }
}

/// A calling child, and the test's end of its pipe.
struct Caller {
    process: Process,
    conn: Connection,
}

impl Caller {
    fn start(counter: SupervisedRef<Counter>) -> Result<Caller, BoxError> {
        let (conn, theirs) = pipe(true)?;
        let mut process = Process::new(caller, (counter, theirs));
        process.start()?;
        Ok(Caller { process, conn })
    }

    /// Asks the child, and waits at most [`WAIT`] for its report.
    fn ask(&mut self, ask: Ask) -> Result<Outcome, BoxError> {
        self.conn.send(&ask)?;
        if !self.conn.poll(Some(WAIT))? {
            return Err(format!("no report within {WAIT:?}").into());
        }
        Ok(self.conn.recv()?)
    }

    fn quit(mut self) -> Result<ExitReason, BoxError> {
        self.conn.send(&Ask::Quit)?;
        Ok(self
            .process
            .join_timeout(WAIT)?
            .ok_or("the caller did not end")?)
    }
}

/// Reads events until one matches, waiting at most [`WAIT`] for each.
fn until(events: &mut Events, stop: impl Fn(&SupervisorEvent) -> bool) -> TestResult {
    loop {
        let e = events
            .recv_timeout(WAIT)
            .map_err(|e| format!("no matching event: {e:?}"))?;
        if stop(&e) {
            return Ok(());
        }
    }
}

fn pid_of(sup: &SupervisorRef, id: &str) -> Result<u32, BoxError> {
    sup.which_children()?
        .into_iter()
        .find(|c| c.id == id)
        .and_then(|c| c.pid)
        .ok_or_else(|| format!("no running child {id}").into())
}

fn kill(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
}

// ---- tests ----

fn a_childs_calls_follow_the_actor_across_a_sigkill_and_restart() -> TestResult {
    let sup = Supervisor::new(flags(Backoff::NONE)).child(actor_child::<Counter>("c", 0)?);
    let mut events = Events::from(sup.events());
    let sup = SupervisorRef::start(sup)?;
    let counter = sup.child_ref::<Counter>("c");
    let mut child = Caller::start(counter.as_async().clone())?;
    let first = pid_of(&sup, "c")?;
    check_eq!(
        child.ask(Ask::Call(CounterMsg::Pid))?,
        Outcome::Reply(first.into())
    );
    check_eq!(child.ask(Ask::Call(CounterMsg::Add(5)))?, Outcome::Reply(5));
    kill(first);
    until(&mut events, |e| {
        matches!(e, SupervisorEvent::Restarted { .. })
    })?;
    let second = pid_of(&sup, "c")?;
    check!(second != first, "the same pid {first} after a restart");
    // The child's handle had the old address: its call finds the new incarnation,
    // which starts from its arguments again.
    check_eq!(
        child.ask(Ask::Call(CounterMsg::Pid))?,
        Outcome::Reply(second.into())
    );
    check_eq!(child.ask(Ask::Call(CounterMsg::Get))?, Outcome::Reply(0));
    check_eq!(child.ask(Ask::Cast(CounterMsg::Add(3)))?, Outcome::Cast);
    check_eq!(
        child.ask(Ask::CallTimeout(CounterMsg::Get, WAIT))?,
        Outcome::Reply(3)
    );
    // A cast after a restart reaches the new incarnation too.
    kill(second);
    until(&mut events, |e| {
        matches!(e, SupervisorEvent::Restarted { .. })
    })?;
    check_eq!(child.ask(Ask::Cast(CounterMsg::Add(7)))?, Outcome::Cast);
    check_eq!(child.ask(Ask::TryCall(CounterMsg::Get))?, Outcome::Reply(7));
    // The root's own handle sees the same actor.
    check_eq!(counter.call(CounterMsg::Get)?, 7);
    check_eq!(child.quit()?, ExitReason::Normal);
    sup.shutdown();
    Ok(())
}

fn a_stopped_child_and_an_ended_supervisor_are_typed_errors() -> TestResult {
    let sup = Supervisor::new(flags(Backoff::NONE)).child(actor_child::<Counter>("c", 1)?);
    let sup = SupervisorRef::start(sup)?;
    let mut child = Caller::start(sup.child_ref::<Counter>("c").into_async())?;
    check_eq!(child.ask(Ask::Call(CounterMsg::Get))?, Outcome::Reply(1));
    sup.terminate_child("c")?;
    let stopped = Outcome::NotRunning("it is stopped".into());
    check_eq!(child.ask(Ask::Call(CounterMsg::Get))?, stopped);
    check_eq!(child.ask(Ask::Cast(CounterMsg::Get))?, stopped);
    sup.restart_child("c")?;
    check_eq!(child.ask(Ask::Call(CounterMsg::Get))?, Outcome::Reply(1));
    // A handle to an id the supervisor does not have.
    let mut stranger = Caller::start(sup.child_ref::<Counter>("nobody").into_async())?;
    check_eq!(
        stranger.ask(Ask::Call(CounterMsg::Get))?,
        Outcome::NotRunning("no child has this id".into())
    );
    check_eq!(stranger.quit()?, ExitReason::Normal);
    sup.shutdown();
    check_eq!(
        child.ask(Ask::Call(CounterMsg::Get))?,
        Outcome::NotRunning("its supervisor ended".into())
    );
    check_eq!(child.quit()?, ExitReason::Normal);
    Ok(())
}

fn a_call_between_restarts_waits_bounded_or_says_restarting() -> TestResult {
    // A restart an hour away: the child stays `Restarting` while the test looks.
    let hour = Duration::from_secs(3600);
    let slow = Backoff {
        min: hour,
        max: hour,
        factor: 1,
        jitter: 0.0,
        reset_after: hour,
    };
    let sup = Supervisor::new(flags(slow)).child(actor_child::<Counter>("c", 2)?);
    let mut events = Events::from(sup.events());
    let sup = SupervisorRef::start(sup)?;
    let mut child = Caller::start(sup.child_ref::<Counter>("c").into_async())?;
    check_eq!(child.ask(Ask::Call(CounterMsg::Get))?, Outcome::Reply(2));
    kill(pid_of(&sup, "c")?);
    until(&mut events, |e| {
        matches!(e, SupervisorEvent::Restarting { .. })
    })?;
    check_eq!(
        child.ask(Ask::TryCall(CounterMsg::Get))?,
        Outcome::Restarting
    );
    check_eq!(
        child.ask(Ask::CallTimeout(
            CounterMsg::Get,
            Duration::from_millis(100)
        ))?,
        Outcome::Timeout
    );
    // A call that waits for the restart learns it will not come when the supervisor
    // ends.
    child.conn.send(&Ask::Call(CounterMsg::Get))?;
    sup.shutdown();
    check!(child.conn.poll(Some(WAIT))?, "no report within {WAIT:?}");
    check_eq!(
        child.conn.recv::<Outcome>()?,
        Outcome::NotRunning("its supervisor ended".into())
    );
    check_eq!(child.quit()?, ExitReason::Normal);
    Ok(())
}

fn a_handle_from_a_supervisor_in_another_process_works_until_that_process_dies() -> TestResult {
    let mut host = Process::actor::<Host>(());
    host.start()?;
    // Made in the host's process, sent here in a reply: its supervisor is there.
    let counter = host.actor_ref::<Host>().call(())?;
    let counter = multiproc::blocking::SupervisedRef::from(counter);
    check_eq!(counter.call(CounterMsg::Add(2))?, 42);
    let mut child = Caller::start(counter.as_async().clone())?;
    check_eq!(child.ask(Ask::Call(CounterMsg::Get))?, Outcome::Reply(42));
    host.kill()?;
    check_eq!(host.join_timeout(WAIT)?, Some(ExitReason::Signaled(9)));
    let gone = format!("its supervisor's process {} has exited", host.identity());
    check_eq!(
        child.ask(Ask::Call(CounterMsg::Get))?,
        Outcome::NotRunning(gone.clone())
    );
    check_eq!(
        outcome(counter.call(CounterMsg::Get)),
        Outcome::NotRunning(gone)
    );
    check_eq!(child.quit()?, ExitReason::Normal);
    Ok(())
}

fn main() {
    // Restarts in a loop if a regression makes them: bounded by the cgroup.
    common::cgroup::confine("supervised_ref");
    common::run(vec![
        trial(
            "a_childs_calls_follow_the_actor_across_a_sigkill_and_restart",
            a_childs_calls_follow_the_actor_across_a_sigkill_and_restart,
        ),
        trial(
            "a_stopped_child_and_an_ended_supervisor_are_typed_errors",
            a_stopped_child_and_an_ended_supervisor_are_typed_errors,
        ),
        trial(
            "a_call_between_restarts_waits_bounded_or_says_restarting",
            a_call_between_restarts_waits_bounded_or_says_restarting,
        ),
        trial(
            "a_handle_from_a_supervisor_in_another_process_works_until_that_process_dies",
            a_handle_from_a_supervisor_in_another_process_works_until_that_process_dies,
        ),
    ]);
}
