//! Nodes on loopback: real node processes (this test program started in node mode,
//! as children of the test, so they die with it), real TCP sessions through
//! `ractor_cluster`, real signals.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::{Duration, Instant};

use common::node::{COOKIE, EnvNode, TestNode};
use common::{TestResult, trial};
use multiproc::blocking::node::{self, NodeError, Refusal};
use multiproc::blocking::{Connection, Process, pipe};
use multiproc::blocking::{DynamicSupervisor, Events, SupervisorRef};
use multiproc::{
    Actor, BoxError, CallError, ChildSpec, ExitReason, RemoteError, RestartIntensity,
    RestartPlacement, Strategy, Supervisor, SupervisorEvent, SupervisorExit, SupervisorFlags,
    function_child,
};
use serde::{Deserialize, Serialize};

// ---- entry points ----

fn exits_with(code: i32) {
    std::process::exit(code);
}

fn returns() {}

/// Exits with the number in the environment variable `name` (255 if it is missing).
fn exits_with_env(name: String) {
    let code = std::env::var(name).ok().and_then(|v| v.parse().ok());
    std::process::exit(code.unwrap_or(255));
}

/// Exits with its soft limit on open files (255 if it cannot be read or is larger).
fn exits_with_open_files_limit() {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    std::process::exit(
        soft.and_then(|n| i32::try_from(n).ok())
            .filter(|n| *n < 255)
            .unwrap_or(255),
    );
}

fn waits_for_stop() {
    multiproc::blocking::wait_for_stop();
}

fn takes_connection(_conn: Connection) {}

fn takes_value(_v: multiproc::Value<u64>) {}

/// A root of its own: connects to the node at `addr`, starts a process there that
/// runs until stopped, sends its pid up, and waits to be killed.
fn root_main(addr: String, mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    let node = node::connect(&addr, COOKIE)?;
    let mut p = Process::new(waits_for_stop, ()).on(&node);
    p.start()?;
    up.send(&p.pid())?;
    loop {
        std::thread::park();
    }
}

/// Runs until the connection it makes to `addr` is closed.
fn reads_until_closed(addr: String) {
    use std::io::Read;
    if let Ok(mut s) = std::net::TcpStream::connect(addr) {
        let _ = s.read(&mut [0u8; 1]);
    }
}

/// A root of its own: places a daemon and a process it must join on the node at
/// `addr`, sends up their pids, and returns, so that its exit finishes them.
fn root_places_and_returns(
    addr: String,
    listen: String,
    mut up: Connection,
) -> Result<(), Box<dyn std::error::Error>> {
    let node = node::connect(&addr, COOKIE)?;
    let mut daemon = Process::new(waits_for_stop, ()).daemon(true).on(&node);
    daemon.start()?;
    let mut joined = Process::new(reads_until_closed, listen).on(&node);
    joined.start()?;
    up.send(&(daemon.pid(), joined.pid()))?;
    Ok(())
}

/// An actor placed on nodes.
struct Counter(i64);

#[derive(Debug, Serialize, Deserialize)]
enum CounterMsg {
    Add(i64),
    Get,
    /// Connects to this address (so the test knows the call arrived), then never
    /// answers.
    HangAfterConnecting(String),
    Panic,
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
            CounterMsg::HangAfterConnecting(addr) => {
                let _conn = std::net::TcpStream::connect(addr);
                std::future::pending::<()>().await
            }
            CounterMsg::Panic => panic!("counter asked to panic"),
        }
        self.0
    }
}

multiproc::register_actor!(Counter);
multiproc::register!(exits_with, exits_with_env, exits_with_open_files_limit);
multiproc::register!(returns);
multiproc::register!(waits_for_stop);
multiproc::register!(takes_connection);
multiproc::register!(takes_value);
multiproc::register!(root_main);
multiproc::register!(root_places_and_returns, reads_until_closed);

// ---- tests ----

fn remote_spawn_and_join() -> TestResult {
    let (mut n, node) = TestNode::connected("alpha")?;
    check_eq!(node.name(), "alpha");
    check!(node.is_up(), "a node just connected is up");
    let again = node::connect(&n.addr, COOKIE)?;
    check_eq!(again.name(), "alpha");
    n.event("root ")?;

    let mut p = Process::new(exits_with, 7).on(&node);
    let name = p.name().to_string();
    check!(
        name.starts_with("Process-") && !name.contains(':'),
        "the name is this tree's: {name}"
    );
    check_eq!(
        p.node().map(|n| n.name().to_string()),
        Some("alpha".to_string())
    );
    p.start()?;
    check!(p.pid().is_some(), "a remote process has its node's pid");
    check_eq!(p.join()?, ExitReason::Exited(7));
    check_eq!(p.exit_code(), Some(7));

    let mut q = Process::new(returns, ()).on(&node);
    q.start()?;
    check_eq!(q.join()?, ExitReason::Normal);

    // terminate reaches the process on its node.
    let mut r = Process::new(waits_for_stop, ()).on(&node);
    r.start()?;
    check!(r.is_alive(), "a started remote process is alive");
    r.terminate()?;
    let reason = r.join()?;
    check!(
        matches!(reason, ExitReason::Shutdown | ExitReason::Signaled(15)),
        "terminate ended it: {reason:?}"
    );
    Ok(())
}

fn wrong_cookie_is_refused_on_both_sides() -> TestResult {
    let mut n = TestNode::start("beta", "the-right-cookie", None, Duration::from_secs(5));
    match node::connect(&n.addr, "a-wrong-cookie") {
        Err(NodeError::Refused {
            reason: Refusal::Cookie,
            ..
        }) => {}
        other => return Err(format!("expected a cookie refusal, got {other:?}").into()),
    }
    let seen = n.event("refused ")?;
    check!(seen.contains("cookies differ"), "the node says why: {seen}");
    Ok(())
}

fn different_build_is_refused_on_both_sides() -> TestResult {
    let mut n = TestNode::start("gamma", COOKIE, Some(42), Duration::from_secs(5));
    match node::connect(&n.addr, COOKIE) {
        Err(NodeError::Refused {
            reason: Refusal::Build { node, root },
            ..
        }) => {
            check_eq!(node, 42);
            check!(root != 42, "the root presented its own build");
        }
        other => return Err(format!("expected a build refusal, got {other:?}").into()),
    }
    let seen = n.event("refused ")?;
    check!(
        seen.contains("different builds"),
        "the node says why: {seen}"
    );
    Ok(())
}

fn unreachable_address_is_a_typed_error() -> TestResult {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    match node::connect(&format!("127.0.0.1:{port}"), COOKIE) {
        Err(NodeError::Unreachable { .. }) => {}
        other => return Err(format!("expected Unreachable, got {other:?}").into()),
    }
    match node::connect("not an address", COOKIE) {
        Err(NodeError::BadAddress { .. }) => {}
        other => return Err(format!("expected BadAddress, got {other:?}").into()),
    }
    Ok(())
}

fn a_connection_argument_cannot_cross() -> TestResult {
    let (_n, node) = TestNode::connected("delta")?;
    let (_ours, theirs) = pipe(true)?;
    let mut p = Process::new(takes_connection, theirs).on(&node);
    match p.start() {
        Err(multiproc::Error::Node(NodeError::NotAcrossNodes { .. })) => {}
        other => return Err(format!("expected NotAcrossNodes, got {other:?}").into()),
    }
    // A one-machine object: refused, typed, before anything is sent.
    let value = multiproc::Value::new(7u64)?;
    let mut q = Process::new(takes_value, value.clone()).on(&node);
    match q.start() {
        Err(multiproc::Error::Node(NodeError::NotAcrossNodes { what, .. })) => {
            check!(what.contains("Value"), "{what}");
        }
        other => return Err(format!("expected NotAcrossNodes, got {other:?}").into()),
    }
    // The same object in a message to an actor on the node.
    let mut a = Process::actor::<Carrier>(()).on(&node);
    a.start()?;
    match a.actor_ref::<Carrier>().call(value.clone()) {
        Err(CallError::Node(NodeError::NotAcrossNodes { .. })) => {}
        other => return Err(format!("expected NotAcrossNodes, got {other:?}").into()),
    }
    Ok(())
}

/// An actor whose messages carry a `Value`.
struct Carrier;

impl Actor for Carrier {
    type Args = ();
    type Msg = multiproc::Value<u64>;
    type Reply = ();

    async fn start((): ()) -> Result<Self, BoxError> {
        Ok(Carrier)
    }

    async fn handle(&mut self, _: multiproc::Value<u64>) {}
}

multiproc::register_actor!(Carrier);

fn a_killed_node_is_node_down() -> TestResult {
    let (n, node) = TestNode::connected("epsilon")?;
    let mut p = Process::new(waits_for_stop, ()).on(&node);
    p.start()?;
    let killed = Instant::now();
    n.process.kill()?;
    let reason = p.join()?;
    let seen = killed.elapsed();
    check_eq!(
        reason,
        ExitReason::NodeDown {
            node: "epsilon".to_string()
        }
    );
    check!(!node.is_up(), "the node is known to be down");
    // Not a benchmark (`node_down_detect` is): a bound that only a missed detection
    // (no session loss, no heartbeat) would pass.
    check!(seen < Duration::from_secs(5), "NodeDown took {seen:?}");
    // A process placed on a down node fails to start, typed.
    let mut q = Process::new(returns, ()).on(&node);
    match q.start() {
        Err(multiproc::Error::Node(NodeError::NodeDown { .. })) => {}
        other => return Err(format!("expected NodeDown, got {other:?}").into()),
    }
    Ok(())
}

fn a_lost_roots_processes_are_stopped_after_grace() -> TestResult {
    let mut n = TestNode::start("zeta", COOKIE, None, Duration::from_millis(300));
    let (mut ours, theirs) = pipe(true)?;
    let mut root = Process::new(root_main, (n.addr.clone(), theirs));
    root.start()?;
    check!(
        ours.poll(Some(Duration::from_secs(10)))?,
        "the root reports its process"
    );
    let pid: Option<u32> = ours.recv()?;
    let pid = pid.ok_or("the remote process has a pid")?;
    check!(
        !common::wait_gone(pid, Duration::ZERO),
        "the remote process runs while its root lives"
    );
    root.kill()?;
    root.join()?;
    let lost = n.event("lost root ")?;
    check!(lost.contains("(1 running)"), "{lost}");
    let released = n.event("released root ")?;
    check!(released.contains("(1 stopped)"), "{released}");
    check!(
        common::wait_gone(pid, Duration::from_secs(10)),
        "the remote process of a dead root is gone"
    );
    Ok(())
}

/// A root's exit does to what it placed what it does to its local children:
/// daemons are stopped, the others joined; not left to the node's grace period.
fn a_roots_exit_finishes_what_it_placed() -> TestResult {
    // A grace far longer than the test's waits: only the root's exit can end them.
    let n = TestNode::start("rho", COOKIE, None, Duration::from_secs(600));
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let listen = listener.local_addr()?.to_string();
    let (mut ours, theirs) = pipe(true)?;
    let mut root = Process::new(root_places_and_returns, (n.addr.clone(), listen, theirs));
    root.start()?;
    check!(
        ours.poll(Some(Duration::from_secs(10)))?,
        "the root reports its processes"
    );
    let (daemon, joined): (Option<u32>, Option<u32>) = ours.recv()?;
    let (daemon, joined) = (daemon.ok_or("a pid")?, joined.ok_or("a pid")?);
    let (conn, _) = listener.accept()?;
    check!(
        common::wait_gone(daemon, Duration::from_secs(10)),
        "the root's exit stopped its placed daemon"
    );
    check!(
        root.is_alive(),
        "the root's exit waits for the placed process it must join"
    );
    drop(conn);
    check_eq!(
        root.join_timeout(Duration::from_secs(30))?,
        Some(ExitReason::Normal)
    );
    check!(
        common::wait_gone(joined, Duration::from_secs(10)),
        "the joined process has exited"
    );
    Ok(())
}

fn remote_actor_call() -> TestResult {
    let (_n, node) = TestNode::connected("eta")?;
    let mut p = Process::actor::<Counter>(10).on(&node);
    p.start()?;
    let counter = p.actor_ref::<Counter>();
    check_eq!(counter.as_async().node(), Some("eta"));
    check_eq!(counter.call(CounterMsg::Add(5))?, 15);
    counter.cast(CounterMsg::Add(1))?;
    check_eq!(counter.call(CounterMsg::Get)?, 16);
    check_eq!(
        counter.call_timeout(CounterMsg::Add(4), Duration::from_secs(10))?,
        20
    );
    // A handler that panics fails its call, typed, as it does on one host.
    match counter.call(CounterMsg::Panic) {
        Err(CallError::Remote(_)) => {}
        other => return Err(format!("expected a remote error, got {other:?}").into()),
    }
    let reason = p.join()?;
    check!(
        matches!(reason, ExitReason::Panicked { .. }),
        "the actor's process ended with its panic: {reason:?}"
    );
    // The process is gone: a call says so.
    match counter.call(CounterMsg::Get) {
        Err(CallError::Remote(RemoteError::NoProcess(_))) => {}
        other => return Err(format!("expected NoProcess, got {other:?}").into()),
    }
    Ok(())
}

fn a_call_in_flight_fails_when_its_node_dies() -> TestResult {
    let (n, node) = TestNode::connected("theta")?;
    let mut p = Process::actor::<Counter>(0).on(&node);
    p.start()?;
    let counter = p.actor_ref::<Counter>();
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?.to_string();
    let (ended, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = counter.call(CounterMsg::HangAfterConnecting(addr.clone()));
        let _ = ended.send(r);
        // Wakes the `accept` below if the call ended before its handler connected.
        let _ = std::net::TcpStream::connect(addr);
    });
    let _arrived = listener.accept()?;
    if let Ok(early) = result.try_recv() {
        return Err(format!("the call ended before it reached its handler: {early:?}").into());
    }
    // The handler connected: the call is in flight, and will never be answered.
    n.process.kill()?;
    match result.recv_timeout(Duration::from_secs(30)) {
        Ok(Err(CallError::Node(NodeError::NodeDown { node, .. }))) => check_eq!(node, "theta"),
        Ok(other) => return Err(format!("expected NodeDown, got {other:?}").into()),
        Err(_) => return Err("the call was still waiting 30 s after its node was killed".into()),
    }
    check_eq!(
        p.join_timeout(Duration::from_secs(30))?,
        Some(ExitReason::NodeDown {
            node: "theta".to_string()
        })
    );
    Ok(())
}

fn supervisor(
    children: Vec<ChildSpec>,
) -> Result<(SupervisorRef, Events), Box<dyn std::error::Error>> {
    let flags = SupervisorFlags {
        strategy: Strategy::OneForOne,
        intensity: RestartIntensity {
            max_restarts: 5,
            within: Duration::from_secs(60),
        },
        backoff: multiproc::Backoff::NONE,
        ..SupervisorFlags::default()
    };
    let mut sup = Supervisor::new(flags);
    for c in children {
        sup = sup.child(c);
    }
    let events = Events::from(sup.events());
    Ok((SupervisorRef::start(sup)?, events))
}

/// (node, pid) of child `id`.
fn placed(sup: &SupervisorRef, id: &str) -> Result<(Option<String>, Option<u32>), String> {
    let children = sup.which_children().map_err(|e| e.to_string())?;
    let c = children
        .into_iter()
        .find(|c| c.id == id)
        .ok_or(format!("no child {id}"))?;
    Ok((c.node, c.pid))
}

fn a_supervisor_restarts_the_children_of_a_dead_node_elsewhere() -> TestResult {
    let a = TestNode::start("iota", COOKIE, None, Duration::from_secs(5));
    let b = TestNode::start("kappa", COOKIE, None, Duration::from_secs(5));
    let (node_a, node_b) = (
        node::connect(&a.addr, COOKIE)?,
        node::connect(&b.addr, COOKIE)?,
    );
    let (sup, mut events) = supervisor(vec![
        function_child("on_a", waits_for_stop, ())?
            .on(&node_a)
            .restart_on(RestartPlacement::AnyLiveNode),
        function_child("on_b", waits_for_stop, ())?.on("kappa"),
    ])?;
    check_eq!(placed(&sup, "on_a")?.0, Some("iota".to_string()));
    let (where_b, pid_b) = placed(&sup, "on_b")?;
    check_eq!(where_b, Some("kappa".to_string()));
    a.process.kill()?;
    let mut exits = Vec::new();
    let mut restarted_on = None;
    let mut started = Vec::new();
    for e in events.by_ref() {
        match e {
            SupervisorEvent::ChildStarted { id, node, .. } => started.push((id, node)),
            SupervisorEvent::ChildExited { id, reason } => exits.push((id, reason)),
            SupervisorEvent::Restarted { id, node, .. } if id == "on_a" => {
                restarted_on = Some(node);
                break;
            }
            _ => {}
        }
    }
    // The events say where each child runs.
    check_eq!(
        started,
        vec![
            ("on_a".to_string(), Some("iota".to_string())),
            ("on_b".to_string(), Some("kappa".to_string())),
        ]
    );
    check_eq!(restarted_on, Some(Some("kappa".to_string())));
    check_eq!(
        exits,
        vec![(
            "on_a".to_string(),
            ExitReason::NodeDown {
                node: "iota".to_string()
            }
        )]
    );
    // Restarted on the live node; its sibling, one for one, untouched.
    let (where_a, pid_a) = placed(&sup, "on_a")?;
    check_eq!(where_a, Some("kappa".to_string()));
    check!(pid_a.is_some(), "on_a runs again");
    check_eq!(placed(&sup, "on_b")?, (Some("kappa".to_string()), pid_b));
    drop(node_b);
    check_eq!(sup.shutdown(), SupervisorExit::Shutdown);
    Ok(())
}

fn a_same_node_restart_fails_while_its_node_is_down() -> TestResult {
    let (a, node_a) = TestNode::connected("lambda")?;
    let (sup, mut events) = supervisor(vec![
        function_child("pinned", waits_for_stop, ())?.on(&node_a),
    ])?;
    a.process.kill()?;
    let mut seen = Vec::new();
    for e in events.by_ref() {
        let end = matches!(e, SupervisorEvent::RestartFailed { .. });
        seen.push(e);
        if end {
            break;
        }
    }
    check!(
        seen.iter().any(|e| matches!(
            e,
            SupervisorEvent::ChildExited {
                reason: ExitReason::NodeDown { .. },
                ..
            }
        )),
        "the child exited NodeDown: {seen:?}"
    );
    check!(
        matches!(seen.last(), Some(SupervisorEvent::RestartFailed { .. })),
        "its restart on the down node failed: {seen:?}"
    );
    let _ = sup.shutdown();
    Ok(())
}

fn signal(pid: u32, signal: rustix::process::Signal) -> TestResult {
    let pid = rustix::process::Pid::from_raw(pid as i32).ok_or("a pid")?;
    rustix::process::kill_process(pid, signal)?;
    Ok(())
}

/// A partition, made by freezing the node (SIGSTOP): its TCP session stays open, so
/// only the heartbeat can tell. Then the partition heals (SIGCONT): the node finds the
/// root's session closed, releases what it ran after the grace period, and the root
/// connects again.
fn a_silent_node_is_node_down_by_heartbeat_and_heals() -> TestResult {
    let mut n = TestNode::start("mu", COOKIE, None, Duration::from_millis(300));
    let node = node::connect(&n.addr, COOKIE)?;
    n.event("root ")?;
    let mut p = Process::new(waits_for_stop, ()).on(&node);
    p.start()?;
    let remote_pid = p.pid().ok_or("a placed process has a pid")?;
    let node_pid = n.process.pid().ok_or("the node runs")?;
    signal(node_pid, rustix::process::Signal::STOP)?;
    let frozen = Instant::now();
    let reason = p.join();
    let seen = frozen.elapsed();
    signal(node_pid, rustix::process::Signal::CONT)?;
    check_eq!(
        reason?,
        ExitReason::NodeDown {
            node: "mu".to_string()
        }
    );
    match node::wait_down(&node) {
        NodeError::NodeDown { why, .. } => check!(why.contains("heartbeat"), "{why}"),
        other => return Err(format!("expected NodeDown, got {other:?}").into()),
    }
    // Default heartbeat: a ping every 200 ms, down after 800 ms without an answer.
    check!(seen < Duration::from_secs(5), "NodeDown took {seen:?}");
    // Healed: the node lets go of what it ran for the lost session...
    let lost = n.event("lost root ")?;
    check!(lost.contains("(1 running)"), "{lost}");
    let released = n.event("released root ")?;
    check!(released.contains("(1 stopped)"), "{released}");
    check!(
        common::wait_gone(remote_pid, Duration::from_secs(10)),
        "the process of the lost session is gone"
    );
    // ...and the root connects again and places a process.
    let again = node::connect(&n.addr, COOKIE)?;
    check!(again.is_up(), "a new connection is up");
    let mut q = Process::new(exits_with, 3).on(&again);
    q.start()?;
    check_eq!(q.join()?, ExitReason::Exited(3));
    Ok(())
}

fn takes_value_and_waits(_v: multiproc::Value<u64>) {
    multiproc::blocking::wait_for_stop();
}

multiproc::register!(takes_value_and_waits);

fn takes_queue_and_waits(_q: multiproc::blocking::Queue<u64>) {
    multiproc::blocking::wait_for_stop();
}

multiproc::register!(takes_queue_and_waits);

/// A dynamic supervisor whose template is placed on a node: its children run there,
/// the node's death is their exit, and this host's objects may not go there.
fn a_dynamic_supervisor_places_its_children_on_a_node() -> TestResult {
    let (a, node_a) = TestNode::connected("nu")?;
    let flags = SupervisorFlags {
        intensity: RestartIntensity {
            max_restarts: 5,
            within: Duration::from_secs(60),
        },
        backoff: multiproc::Backoff::NONE,
        ..SupervisorFlags::default()
    };
    let mut template = function_child("job", waits_for_stop, ())?.on(&node_a);
    template.restart = multiproc::Restart::Temporary;
    let dynamic = DynamicSupervisor::start(flags, template, None)?;
    let sup = dynamic.supervisor();
    let mut events = sup.events();
    let first = dynamic.start_child(&())?;
    check_eq!(placed(&sup, &first)?.0, Some("nu".to_string()));
    a.process.kill()?;
    let mut exits = Vec::new();
    for e in events.by_ref() {
        if let SupervisorEvent::ChildExited { id, reason } = e {
            exits.push((id, reason));
            break;
        }
    }
    check_eq!(
        exits,
        vec![(
            first.clone(),
            ExitReason::NodeDown {
                node: "nu".to_string()
            }
        )]
    );
    // A one-machine object may not go to the template's node.
    let value = multiproc::Value::new(1u64)?;
    let placed_value = DynamicSupervisor::start(
        SupervisorFlags::default(),
        function_child("holder", takes_value_and_waits, value.clone())?.on(&node_a),
        None,
    )?;
    match placed_value.start_child(&value) {
        Err(multiproc::AdminError::Start {
            source: multiproc::Error::Node(NodeError::NotAcrossNodes { .. }),
            ..
        }) => {}
        other => return Err(format!("expected NotAcrossNodes, got {other:?}").into()),
    }
    let _ = placed_value.supervisor().shutdown();
    check_eq!(sup.shutdown(), SupervisorExit::Shutdown);
    Ok(())
}

/// A static child spec that holds a handle to a one-machine object is refused on a
/// node, naming the type and the child (queues and actor handles go there far, see
/// `cluster_farspec`); the same spec's queue starts here.
fn a_child_spec_holding_handles_is_refused_on_a_node() -> TestResult {
    let (_a, node_a) = TestNode::connected("xi")?;
    let sup = SupervisorRef::start(Supervisor::new(SupervisorFlags::default()))?;
    let value = multiproc::Value::new(1u64)?;
    let queue = multiproc::blocking::Queue::<u64>::new(0)?;
    let spec = function_child("value-holder", takes_value_and_waits, value.clone())?;
    match sup.start_child(spec.on(&node_a)) {
        Err(multiproc::AdminError::Start {
            id: refused,
            source: multiproc::Error::Node(NodeError::NotAcrossNodes { what, node }),
        }) => {
            check_eq!(refused, "value-holder");
            check!(what.contains("Value"), "{what}");
            check_eq!(node, "xi");
        }
        other => return Err(format!("expected NotAcrossNodes, got {other:?}").into()),
    }
    // Nothing was left behind on the node.
    check_eq!(sup.which_children()?.len(), 0);
    sup.start_child(function_child(
        "queue-here",
        takes_queue_and_waits,
        queue.clone(),
    )?)?;
    check_eq!(placed(&sup, "queue-here")?.0, None);
    check_eq!(sup.shutdown(), SupervisorExit::Shutdown);
    Ok(())
}

/// A placed process gets the settings made at the root (environment, limits, start
/// method), applied by its node; captured output, which would stay on the node, is
/// refused.
fn a_placed_process_gets_its_settings() -> TestResult {
    let (_n, node) = TestNode::connected("omicron")?;
    let mut p = Process::new(exits_with_env, "MULTIPROC_TEST_PLACED".to_string())
        .env("MULTIPROC_TEST_PLACED", "42")
        .on(&node);
    p.start()?;
    check_eq!(p.join()?, ExitReason::Exited(42));
    for method in [
        multiproc::StartMethod::Spawn,
        multiproc::StartMethod::Forkserver,
    ] {
        let mut q = Process::new(exits_with_open_files_limit, ())
            .limits(multiproc::Limits {
                open_files: Some(37),
                ..multiproc::Limits::default()
            })
            .start_method(method)
            .on(&node);
        q.start()?;
        check_eq!(q.join()?, ExitReason::Exited(37));
    }
    let mut r = Process::new(returns, ()).capture_output().on(&node);
    match r.start() {
        Err(multiproc::Error::Node(NodeError::NotAcrossNodes { what, node })) => {
            check!(what.contains("captured output"), "{what}");
            check_eq!(node, "omicron");
        }
        other => return Err(format!("expected NotAcrossNodes, got {other:?}").into()),
    }
    Ok(())
}

fn node_mode_by_the_environment() -> TestResult {
    let mut n = EnvNode::start(&[
        ("MULTIPROC_NODE_LISTEN", "127.0.0.1:0"),
        ("MULTIPROC_NODE_NAME", "xi"),
        ("MULTIPROC_NODE_COOKIE", COOKIE),
    ])?;
    let line = n.first_line()?;
    let addr = line
        .trim()
        .strip_prefix("multiproc node xi listening on ")
        .ok_or(format!("unexpected first line: {line:?}"))?
        .to_string();
    let node = node::connect(&addr, COOKIE)?;
    check_eq!(node.name(), "xi");
    let mut p = Process::new(exits_with, 5).on(&node);
    p.start()?;
    check_eq!(p.join()?, ExitReason::Exited(5));
    // SIGTERM stops it, with status 0.
    signal(n.0.id(), rustix::process::Signal::TERM)?;
    let status = n.0.wait()?;
    check_eq!(status.code(), Some(0));
    Ok(())
}

fn node_mode_with_bad_settings_says_why() -> TestResult {
    for (env, says) in [
        (
            vec![
                ("MULTIPROC_NODE_LISTEN", "not-an-address"),
                ("MULTIPROC_NODE_COOKIE", COOKIE),
            ],
            "not a node address",
        ),
        (
            vec![("MULTIPROC_NODE_LISTEN", "127.0.0.1:0")],
            "MULTIPROC_NODE_COOKIE must be set",
        ),
    ] {
        let n = EnvNode::start(&env)?;
        let out = n.wait_with_output_taken()?;
        check_eq!(out.0, Some(2));
        check!(out.1.contains(says), "stderr says {says:?}: {:?}", out.1);
    }
    Ok(())
}

impl EnvNode {
    /// Waits for it to exit: its status code and its stderr.
    fn wait_with_output_taken(mut self) -> std::io::Result<(Option<i32>, String)> {
        use std::io::Read;
        let mut err = String::new();
        if let Some(mut e) = self.0.stderr.take() {
            e.read_to_string(&mut err)?;
        }
        let status = self.0.wait()?;
        Ok((status.code(), err))
    }
}

fn main() {
    // Supervisors restart processes: bounded, whatever a regression does.
    common::cgroup::confine("cluster");
    // One at a time: a process's connections to nodes are shared (a restart "on any
    // live node" picks among all of them), so a test must not see another's nodes.
    common::run_serial(vec![
        trial(
            "a_supervisor_restarts_the_children_of_a_dead_node_elsewhere",
            a_supervisor_restarts_the_children_of_a_dead_node_elsewhere,
        ),
        trial(
            "a_same_node_restart_fails_while_its_node_is_down",
            a_same_node_restart_fails_while_its_node_is_down,
        ),
        trial("remote_actor_call", remote_actor_call),
        trial(
            "a_roots_exit_finishes_what_it_placed",
            a_roots_exit_finishes_what_it_placed,
        ),
        trial("node_mode_by_the_environment", node_mode_by_the_environment),
        trial(
            "node_mode_with_bad_settings_says_why",
            node_mode_with_bad_settings_says_why,
        ),
        trial(
            "a_dynamic_supervisor_places_its_children_on_a_node",
            a_dynamic_supervisor_places_its_children_on_a_node,
        ),
        trial(
            "a_silent_node_is_node_down_by_heartbeat_and_heals",
            a_silent_node_is_node_down_by_heartbeat_and_heals,
        ),
        trial(
            "a_call_in_flight_fails_when_its_node_dies",
            a_call_in_flight_fails_when_its_node_dies,
        ),
        trial("remote_spawn_and_join", remote_spawn_and_join),
        trial(
            "wrong_cookie_is_refused_on_both_sides",
            wrong_cookie_is_refused_on_both_sides,
        ),
        trial(
            "different_build_is_refused_on_both_sides",
            different_build_is_refused_on_both_sides,
        ),
        trial(
            "unreachable_address_is_a_typed_error",
            unreachable_address_is_a_typed_error,
        ),
        trial(
            "a_connection_argument_cannot_cross",
            a_connection_argument_cannot_cross,
        ),
        trial("a_killed_node_is_node_down", a_killed_node_is_node_down),
        trial(
            "a_lost_roots_processes_are_stopped_after_grace",
            a_lost_roots_processes_are_stopped_after_grace,
        ),
        trial(
            "a_placed_process_gets_its_settings",
            a_placed_process_gets_its_settings,
        ),
        trial(
            "a_child_spec_holding_handles_is_refused_on_a_node",
            a_child_spec_holding_handles_is_refused_on_a_node,
        ),
    ]);
}
