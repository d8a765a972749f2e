//! Actors: calls and casts, routing along the tree, and every way a call can fail,
//! with real child processes.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use multiproc::__private::test_hooks;
use std::time::Duration;

use common::{TestResult, trial};
use multiproc::blocking::{ActorRef, Connection, Process, pipe};
use multiproc::{Actor, BoxError, CallError, ExitReason, RemoteError};
use serde::{Deserialize, Serialize};

struct Counter(i64);

#[derive(Debug, Serialize, Deserialize)]
enum CounterMsg {
    Add(i64),
    Get,
    Hang,
    Panic,
}

impl Actor for Counter {
    type Args = i64;
    type Msg = CounterMsg;
    type Reply = i64;

    async fn start(first: i64) -> Result<Self, BoxError> {
        if first < 0 {
            return Err(format!("a counter cannot start at {first}").into());
        }
        Ok(Counter(first))
    }

    async fn handle(&mut self, msg: CounterMsg) -> i64 {
        match msg {
            CounterMsg::Add(n) => self.0 += n,
            CounterMsg::Get => {}
            CounterMsg::Hang => std::future::pending::<()>().await,
            CounterMsg::Panic => panic!("counter asked to panic"),
        }
        self.0
    }
}

/// Another actor type, to forge a handle with the wrong message type.
struct Echo;

impl Actor for Echo {
    type Args = ();
    type Msg = String;
    type Reply = String;

    async fn start((): ()) -> Result<Self, BoxError> {
        Ok(Echo)
    }

    async fn handle(&mut self, msg: String) -> String {
        msg
    }
}

/// An actor whose handler uses the blocking API: it starts a process and joins it.
struct Starter;

impl Actor for Starter {
    type Args = ();
    type Msg = ();
    type Reply = Option<i32>;

    async fn start((): ()) -> Result<Self, BoxError> {
        Ok(Starter)
    }

    async fn handle(&mut self, (): ()) -> Option<i32> {
        let mut p = Process::new(waits_for_stop, ());
        p.start().ok()?;
        p.stop(Duration::from_secs(10)).ok().map(|r| r.exit_code())
    }
}

/// An actor started with a `Connection`: it sends each number it is given on it.
struct Teller(Connection);

impl Actor for Teller {
    type Args = Connection;
    type Msg = u64;
    type Reply = u64;

    async fn start(conn: Connection) -> Result<Self, BoxError> {
        Ok(Teller(conn))
    }

    async fn handle(&mut self, n: u64) -> u64 {
        self.0.send(&n).map_or(0, |()| n + 1)
    }
}

multiproc::register_actor!(Counter, Echo, Starter, Teller);

fn waits_for_stop() {
    multiproc::blocking::wait_for_stop();
}

/// Calls a sibling's counter (routed through the root) and reports the reply.
fn calls_sibling(
    (counter, mut up): (multiproc::ActorRef<Counter>, Connection),
) -> Result<(), Box<dyn std::error::Error>> {
    let reply = ActorRef::from(counter).call(CounterMsg::Add(1))?;
    up.send(&reply)?;
    Ok(())
}

/// Starts a counter of its own and hands its address up; lives until stopped.
fn hosts_grandchild(mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    let mut counter = Process::actor::<Counter>(100);
    counter.start()?;
    up.send(counter.actor_ref::<Counter>().as_async())?;
    multiproc::blocking::wait_for_stop();
    Ok(())
}

/// Starts a non-daemon actor, reports its pid, and returns: its exit must stop the
/// actor (an actor serves until stopped, so joining it would wait forever).
fn leaves_an_actor(mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    let mut counter = Process::actor::<Counter>(0);
    counter.start()?;
    up.send(&counter.pid())?;
    Ok(())
}

multiproc::register!(
    waits_for_stop,
    calls_sibling,
    hosts_grandchild,
    leaves_an_actor
);

/// A `Connection` in an actor's arguments reaches it with its descriptor, as a
/// function process's does.
fn an_actor_takes_a_connection_in_its_arguments() -> TestResult {
    let (mut here, there) = pipe(false)?;
    let mut p = Process::actor::<Teller>(there);
    p.start()?;
    let teller = p.actor_ref::<Teller>();
    for n in [7u64, 8, 9] {
        check_eq!(teller.call(n)?, n + 1);
        check_eq!(here.recv::<u64>()?, n);
    }
    check_eq!(p.stop(Duration::from_secs(5))?, ExitReason::Shutdown);
    Ok(())
}

fn counter(first: i64) -> Result<(Process, ActorRef<Counter>), multiproc::Error> {
    let mut p = Process::actor::<Counter>(first);
    p.start()?;
    let r = p.actor_ref::<Counter>();
    Ok((p, r))
}

fn calls_and_casts_arrive_in_order() -> TestResult {
    let (p, c) = counter(10)?;
    check_eq!(c.call(CounterMsg::Add(5))?, 15);
    c.cast(CounterMsg::Add(1))?;
    c.cast(CounterMsg::Add(1))?;
    check_eq!(c.call(CounterMsg::Get)?, 17);
    check_eq!(p.stop(Duration::from_secs(10))?, ExitReason::Shutdown);
    Ok(())
}

fn call_to_an_exited_process_fails_at_once() -> TestResult {
    let (p, c) = counter(0)?;
    p.stop(Duration::from_secs(10))?;
    let err = c.call(CounterMsg::Get).unwrap_err();
    check_eq!(
        err,
        CallError::Remote(RemoteError::NoProcess(p.identity().clone()))
    );
    check!(
        err.to_string()
            .contains("no running process has the identity"),
        "{err}"
    );
    Ok(())
}

fn call_to_a_process_without_an_actor_is_refused() -> TestResult {
    let mut p = Process::new(waits_for_stop, ());
    p.start()?;
    let c: ActorRef<Counter> = ActorRef::from(p.as_async().actor_ref::<Counter>());
    let err = c.call(CounterMsg::Get).unwrap_err();
    check_eq!(
        err,
        CallError::Remote(RemoteError::NoActor(p.identity().clone()))
    );
    p.stop(Duration::from_secs(10))?;
    Ok(())
}

fn call_in_flight_when_the_process_dies_fails() -> TestResult {
    let (p, c) = counter(0)?;
    let caller = {
        let c = c.clone();
        std::thread::spawn(move || c.call(CounterMsg::Hang))
    };
    // Mailboxes are FIFO: once a call sent after the hanging one times out, the
    // hanging one is being handled, so it is in flight when the process dies.
    while c.call_timeout(CounterMsg::Get, Duration::from_millis(50))
        != Err(CallError::Timeout(Duration::from_millis(50)))
    {}
    p.kill()?;
    p.join()?;
    let err = caller.join().map_err(|_| "caller panicked")?.unwrap_err();
    check_eq!(
        err,
        CallError::Remote(RemoteError::Exited(p.identity().clone()))
    );
    Ok(())
}

fn call_timeout_gives_up_without_disturbing_the_actor() -> TestResult {
    let (p, c) = counter(0)?;
    let err = c
        .call_timeout(CounterMsg::Hang, Duration::from_millis(100))
        .unwrap_err();
    check_eq!(err, CallError::Timeout(Duration::from_millis(100)));
    check!(p.is_alive(), "the actor is still there");
    p.kill()?;
    p.join()?;
    Ok(())
}

fn payload_of_the_wrong_type_fails_that_call_only() -> TestResult {
    let (p, c) = counter(1)?;
    // Handles are serde values; decode a counter's handle as an echo's.
    let bytes = multiproc::codec::encode(c.as_async())?;
    let forged: multiproc::ActorRef<Echo> = multiproc::codec::decode(&bytes)?;
    let err = ActorRef::from(forged)
        .call("not a counter message".into())
        .unwrap_err();
    check!(
        matches!(err, CallError::Remote(RemoteError::Decode(_))),
        "{err:?}"
    );
    check_eq!(c.call(CounterMsg::Add(1))?, 2);
    p.stop(Duration::from_secs(10))?;
    Ok(())
}

fn garbage_on_the_control_link_costs_nothing_else() -> TestResult {
    let (p, c) = counter(1)?;
    // Not msgpack at all, then a frame over the limit, then a valid call.
    test_hooks::send_raw_frame(p.as_async(), vec![0xc1, 0xff, 0x00, 0x13])?;
    test_hooks::send_raw_frame(p.as_async(), vec![0u8; multiproc::MAX_FRAME_LEN + 1])?;
    check_eq!(c.call(CounterMsg::Add(1))?, 2);
    check!(p.is_alive(), "the child survived");
    p.stop(Duration::from_secs(10))?;
    Ok(())
}

fn oversized_message_is_refused_before_sending() -> TestResult {
    let (p, c) = counter(1)?;
    let bytes = multiproc::codec::encode(c.as_async())?;
    let echo: multiproc::ActorRef<Echo> = multiproc::codec::decode(&bytes)?;
    let err = ActorRef::from(echo)
        .call("x".repeat(multiproc::MAX_FRAME_LEN))
        .unwrap_err();
    check!(matches!(err, CallError::TooLarge { .. }), "{err:?}");
    check_eq!(c.call(CounterMsg::Get)?, 1);
    p.stop(Duration::from_secs(10))?;
    Ok(())
}

fn panicking_handler_fails_the_call_and_ends_the_process() -> TestResult {
    let (p, c) = counter(1)?;
    let err = c.call(CounterMsg::Panic).unwrap_err();
    check_eq!(
        err,
        CallError::Remote(RemoteError::Panicked("counter asked to panic".into()))
    );
    match p.join()? {
        ExitReason::Panicked { message, .. } => check_eq!(message, "counter asked to panic"),
        other => return Err(format!("expected a panic, got {other}").into()),
    }
    Ok(())
}

fn actor_start_failure_fails_start() -> TestResult {
    // As OTP's start_link waits for init: a started actor child can take messages, and
    // one whose `start` fails is an error of `start()`.
    let mut p = Process::actor::<Counter>(-1);
    let err = p.start().unwrap_err();
    match &err {
        multiproc::Error::Bootstrap { source, .. } => {
            check!(
                source.to_string().contains("a counter cannot start at -1"),
                "{err}"
            )
        }
        other => return Err(format!("expected a bootstrap error, got {other:?}").into()),
    }
    Ok(())
}

fn handles_route_between_siblings() -> TestResult {
    let (p, c) = counter(10)?;
    let (mut ours, theirs) = pipe(true)?;
    let mut sibling = Process::new(calls_sibling, (c.as_async().clone(), theirs));
    sibling.start()?;
    let reply: i64 = ours.recv()?;
    check_eq!(reply, 11);
    check_eq!(sibling.join()?, ExitReason::Normal);
    check_eq!(c.call(CounterMsg::Get)?, 11);
    p.stop(Duration::from_secs(10))?;
    Ok(())
}

fn handles_route_down_to_grandchildren() -> TestResult {
    let (mut ours, theirs) = pipe(true)?;
    let mut host = Process::new(hosts_grandchild, theirs);
    host.start()?;
    let grandchild: multiproc::ActorRef<Counter> = ours.recv()?;
    check_eq!(grandchild.addr().path().len(), 2);
    check_eq!(ActorRef::from(grandchild).call(CounterMsg::Add(1))?, 101);
    check_eq!(host.stop(Duration::from_secs(10))?, ExitReason::Shutdown);
    Ok(())
}

/// An actor nobody registered.
struct Unregistered;

impl Actor for Unregistered {
    type Args = ();
    type Msg = ();
    type Reply = ();

    async fn start((): ()) -> Result<Self, BoxError> {
        Ok(Unregistered)
    }

    async fn handle(&mut self, (): ()) {}
}

fn unregistered_actor_names_the_macro() -> TestResult {
    let mut p = Process::actor::<Unregistered>(());
    let err = p.start().unwrap_err();
    check!(
        matches!(err, multiproc::Error::Unregistered { .. }),
        "{err:?}"
    );
    check!(
        err.to_string()
            .contains("multiproc::register_actor!(Unregistered)"),
        "{err}"
    );
    Ok(())
}

fn a_handler_can_use_the_blocking_api() -> TestResult {
    let mut p = Process::actor::<Starter>(());
    p.start()?;
    let starter = p.actor_ref::<Starter>();
    check_eq!(starter.call(())?, Some(0));
    p.stop(Duration::from_secs(10))?;
    Ok(())
}

fn actor_children_are_stopped_when_their_parent_exits() -> TestResult {
    let (mut ours, theirs) = pipe(true)?;
    let mut p = Process::new(leaves_an_actor, theirs);
    p.start()?;
    let actor_pid: Option<u32> = ours.recv()?;
    let actor_pid = actor_pid.ok_or("no pid")?;
    check_eq!(p.join()?, ExitReason::Normal);
    check!(
        common::wait_gone(actor_pid, Duration::from_secs(5)),
        "actor {actor_pid} outlived its parent"
    );
    Ok(())
}

fn an_actor_beats_between_messages_and_a_stuck_one_is_hung() -> TestResult {
    let mut p = Process::actor::<Counter>(0).heartbeat(Duration::from_millis(500));
    p.start()?;
    let c = p.actor_ref::<Counter>();
    // Idle for three intervals: the host's own beats keep it alive.
    check_eq!(p.join_timeout(Duration::from_millis(1500))?, None);
    check_eq!(c.call(CounterMsg::Add(1))?, 1);
    // A handler stuck on a message stops the beats: killed as hung, and the call in
    // flight fails instead of waiting forever.
    let err = c.call(CounterMsg::Hang).unwrap_err();
    check_eq!(
        err,
        CallError::Remote(RemoteError::Exited(p.identity().clone()))
    );
    check_eq!(p.join()?, ExitReason::Hung);
    Ok(())
}

fn main() {
    common::run(vec![
        trial(
            "calls_and_casts_arrive_in_order",
            calls_and_casts_arrive_in_order,
        ),
        trial(
            "call_to_an_exited_process_fails_at_once",
            call_to_an_exited_process_fails_at_once,
        ),
        trial(
            "call_to_a_process_without_an_actor_is_refused",
            call_to_a_process_without_an_actor_is_refused,
        ),
        trial(
            "call_in_flight_when_the_process_dies_fails",
            call_in_flight_when_the_process_dies_fails,
        ),
        trial(
            "call_timeout_gives_up_without_disturbing_the_actor",
            call_timeout_gives_up_without_disturbing_the_actor,
        ),
        trial(
            "payload_of_the_wrong_type_fails_that_call_only",
            payload_of_the_wrong_type_fails_that_call_only,
        ),
        trial(
            "garbage_on_the_control_link_costs_nothing_else",
            garbage_on_the_control_link_costs_nothing_else,
        ),
        trial(
            "oversized_message_is_refused_before_sending",
            oversized_message_is_refused_before_sending,
        ),
        trial(
            "panicking_handler_fails_the_call_and_ends_the_process",
            panicking_handler_fails_the_call_and_ends_the_process,
        ),
        trial(
            "actor_start_failure_fails_start",
            actor_start_failure_fails_start,
        ),
        trial(
            "handles_route_between_siblings",
            handles_route_between_siblings,
        ),
        trial(
            "handles_route_down_to_grandchildren",
            handles_route_down_to_grandchildren,
        ),
        trial(
            "unregistered_actor_names_the_macro",
            unregistered_actor_names_the_macro,
        ),
        trial(
            "an_actor_takes_a_connection_in_its_arguments",
            an_actor_takes_a_connection_in_its_arguments,
        ),
        trial(
            "a_handler_can_use_the_blocking_api",
            a_handler_can_use_the_blocking_api,
        ),
        trial(
            "actor_children_are_stopped_when_their_parent_exits",
            actor_children_are_stopped_when_their_parent_exits,
        ),
        trial(
            "an_actor_beats_between_messages_and_a_stuck_one_is_hung",
            an_actor_beats_between_messages_and_a_stuck_one_is_hung,
        ),
    ])
}
