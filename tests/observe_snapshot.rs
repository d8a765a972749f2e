//! The snapshot of the tree: every kind of process shows with its pid, parent, state
//! and figures; a supervisor's restarts and last exits show in the snapshot and in
//! `which_children`; pool workers count the tasks they answered.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::Duration;

use common::{TestResult, trial};
use multiproc::blocking::{Connection, Pool, Process, SupervisorRef, pipe};
use multiproc::observe::{ProcessKind, ProcessState, Snapshot};
use multiproc::{
    Backoff, ExitReason, Manager, RestartIntensity, StartMethod, Supervisor, SupervisorEvent,
    SupervisorFlags, function_child,
};

fn leaf() {
    multiproc::blocking::wait_for_stop();
}

/// Starts a child of its own, says so, then waits to be stopped.
fn parent_of_one(mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    let mut child = Process::new(leaf, ());
    child.start()?;
    up.send(&child.pid())?;
    multiproc::blocking::wait_for_stop();
    Ok(())
}

fn exits_3() {
    std::process::exit(3);
}

fn double(x: u32) -> u32 {
    x * 2
}

multiproc::register!(leaf, parent_of_one, exits_3, double);

/// An actor that handles nothing more, once told to hold, until its gate opens.
struct Gated;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum GateMsg {
    Ping,
    /// Connects to the gate (a Unix socket at this path) and waits for its byte.
    Hold(std::path::PathBuf),
}

impl multiproc::Actor for Gated {
    type Args = ();
    type Msg = GateMsg;
    type Reply = ();

    async fn start((): ()) -> Result<Self, multiproc::BoxError> {
        Ok(Gated)
    }

    async fn handle(&mut self, msg: GateMsg) {
        use tokio::io::AsyncReadExt;
        if let GateMsg::Hold(path) = msg
            && let Ok(mut gate) = tokio::net::UnixStream::connect(path).await
        {
            let _ = gate.read_u8().await;
        }
    }
}

multiproc::register_actor!(Gated);

fn one(snap: &Snapshot, kind: ProcessKind) -> Result<&multiproc::observe::ProcessInfo, String> {
    let found: Vec<_> = snap.processes.iter().filter(|p| p.kind == kind).collect();
    match found.as_slice() {
        [p] => Ok(p),
        _ => Err(format!(
            "{} processes of kind {kind:?} in\n{snap}",
            found.len()
        )),
    }
}

fn the_root_comes_first_with_its_figures() -> TestResult {
    let snap = multiproc::blocking::snapshot();
    let root = &snap.processes[0];
    check_eq!(root.kind, ProcessKind::Root);
    check_eq!(root.pid, Some(std::process::id()));
    check_eq!(root.name, "MainProcess");
    check!(root.rss_bytes.is_some_and(|b| b > 0), "no RSS: {root:?}");
    check!(root.cpu_time.is_some(), "no CPU time: {root:?}");
    check!(root.uptime.is_some(), "no uptime: {root:?}");
    Ok(())
}

fn children_grandchildren_pools_and_managers_show() -> TestResult {
    let (mut ours, theirs) = pipe(true)?;
    let mut p = Process::new(parent_of_one, theirs);
    p.start()?;
    let grandchild: Option<u32> = ours.recv()?;
    let grandchild = grandchild.unwrap();
    let pool = Pool::builder()
        .processes(2)
        .start_method(StartMethod::Forkserver)
        .start()?;
    let doubled = pool.map(double, 0..40u32)?;
    check_eq!(doubled[39], 78);
    let manager = Manager::start()?;
    let manager_pid = manager.process().unwrap().pid().unwrap();

    let snap = multiproc::blocking::snapshot();
    let me = std::process::id();
    let child = snap
        .get(p.name())
        .ok_or(format!("no {} in\n{snap}", p.name()))?;
    check_eq!(child.kind, ProcessKind::Function);
    check_eq!(child.pid, p.pid());
    check_eq!(child.parent_pid, Some(me));
    check_eq!(child.state, ProcessState::Running);
    let gc = snap
        .by_pid(grandchild)
        .ok_or(format!("no grandchild in\n{snap}"))?;
    check_eq!(gc.kind, ProcessKind::Descendant);
    check_eq!(gc.parent_pid, p.pid());
    check_eq!(gc.name, format!("{}:1", p.name()));
    let server = one(&snap, ProcessKind::Manager)?;
    check_eq!(server.pid, Some(manager_pid));
    let fs = one(&snap, ProcessKind::Forkserver)?;
    check_eq!(fs.parent_pid, Some(me));
    let workers = pool.workers();
    let done: u64 = workers.iter().map(|w| w.tasks_done).sum();
    check!(done > 0, "no tasks done: {workers:?}");
    for w in &workers {
        let seen = snap
            .by_pid(w.pid)
            .ok_or(format!("no {} in\n{snap}", w.name))?;
        check_eq!(seen.kind, ProcessKind::PoolWorker);
        // Forked by the forkserver, but the pool's process is their parent in the tree.
        check_eq!(seen.parent_pid, Some(me));
        check_eq!(seen.calls_served, Some(w.tasks_done));
    }
    // Tree order: each process after its parent.
    for (i, q) in snap.processes.iter().enumerate().skip(1) {
        let parent = snap
            .processes
            .iter()
            .position(|r| r.pid.is_some() && r.pid == q.parent_pid);
        check!(
            parent.is_some_and(|at| at < i),
            "{} before its parent in\n{snap}",
            q.name
        );
    }
    p.terminate()?;
    p.join()?;
    pool.close();
    pool.join()?;
    drop(manager);
    Ok(())
}

fn restarts_and_last_exits_show() -> TestResult {
    let flags = SupervisorFlags {
        intensity: RestartIntensity {
            max_restarts: 100,
            within: Duration::from_secs(60),
        },
        backoff: Backoff {
            min: Duration::from_millis(1),
            max: Duration::from_millis(1),
            ..Backoff::default()
        },
        ..SupervisorFlags::default()
    };
    let sup = SupervisorRef::start(
        Supervisor::new(flags)
            .child(function_child("steady", leaf, ())?)
            .child(function_child("flaky", exits_3, ())?),
    )?;
    let mut restarts = 0;
    for event in sup.events_from_start().by_ref() {
        if matches!(event, SupervisorEvent::Restarted { ref id, .. } if id == "flaky") {
            restarts += 1;
            if restarts == 2 {
                break;
            }
        }
    }
    let status = sup.which_children()?;
    let flaky = status.iter().find(|s| s.id == "flaky").unwrap();
    check!(flaky.restarts >= 2, "{flaky:?}");
    check_eq!(flaky.last_exit, Some(ExitReason::Exited(3)));
    let steady = status.iter().find(|s| s.id == "steady").unwrap();
    check_eq!(steady.restarts, 0);
    check_eq!(steady.last_exit, None);

    let snap = multiproc::blocking::snapshot();
    let flaky = snap
        .processes
        .iter()
        .find(|p| p.supervised_as.as_deref() == Some("flaky"))
        .ok_or(format!("no flaky in\n{snap}"))?;
    check!(flaky.restarts >= 2, "{flaky:?}");
    check_eq!(flaky.last_exit, Some(ExitReason::Exited(3)));
    let steady = snap
        .processes
        .iter()
        .find(|p| p.supervised_as.as_deref() == Some("steady"))
        .ok_or(format!("no steady in\n{snap}"))?;
    check_eq!(steady.state, ProcessState::Running);
    check!(steady.pid.is_some(), "{steady:?}");
    sup.shutdown();
    // An ended supervisor is no longer asked.
    let after = multiproc::blocking::snapshot();
    check!(
        after.processes.iter().all(|p| p.supervised_as.is_none()),
        "supervised children after the shutdown:\n{after}"
    );
    Ok(())
}

/// An actor child shows the messages waiting in its mailbox and those it handled,
/// as they change: read from its link's shared memory, no message to it.
fn an_actor_shows_its_mailbox_and_what_it_handled() -> TestResult {
    let gate_path =
        std::env::temp_dir().join(format!("multiproc-gate-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&gate_path);
    let gate = std::os::unix::net::UnixListener::bind(&gate_path)?;
    let mut p = Process::actor::<Gated>(());
    p.start()?;
    let actor = p.actor_ref::<Gated>();
    for _ in 0..10 {
        actor.call(GateMsg::Ping)?;
    }
    let figures = |snap: &Snapshot| {
        snap.processes
            .iter()
            .find(|q| q.pid == p.pid())
            .map(|q| (q.kind, q.mailbox_depth, q.calls_served))
    };
    let snap = multiproc::blocking::snapshot();
    check!(
        figures(&snap) == Some((ProcessKind::Actor, Some(0), Some(10))),
        "after ten calls: {:?}
{snap}",
        figures(&snap)
    );
    // Held on the eleventh message, with five more behind it.
    actor.cast(GateMsg::Hold(gate_path.clone()))?;
    for _ in 0..5 {
        actor.cast(GateMsg::Ping)?;
    }
    // Nothing signals the child's reader taking the casts in: look until they show,
    // within a bound.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut snap = multiproc::blocking::snapshot();
    while figures(&snap) != Some((ProcessKind::Actor, Some(5), Some(10)))
        && std::time::Instant::now() < deadline
    {
        std::thread::yield_now();
        snap = multiproc::blocking::snapshot();
    }
    check!(
        figures(&snap) == Some((ProcessKind::Actor, Some(5), Some(10))),
        "five waiting behind the held message: {:?}
{snap}",
        figures(&snap)
    );
    check!(
        snap.to_string().contains("mailbox=5"),
        "not in the text:\n{snap}"
    );
    let (mut held, _) = gate.accept()?;
    std::io::Write::write_all(&mut held, &[1])?;
    actor.call(GateMsg::Ping)?;
    let snap = multiproc::blocking::snapshot();
    check!(
        figures(&snap) == Some((ProcessKind::Actor, Some(0), Some(17))),
        "after the gate opened and one more call: {:?}
{snap}",
        figures(&snap)
    );
    p.stop(Duration::from_secs(10))?;
    let _ = std::fs::remove_file(&gate_path);
    Ok(())
}

fn main() {
    common::run(vec![
        trial(
            "an_actor_shows_its_mailbox_and_what_it_handled",
            an_actor_shows_its_mailbox_and_what_it_handled,
        ),
        trial(
            "the_root_comes_first_with_its_figures",
            the_root_comes_first_with_its_figures,
        ),
        trial(
            "children_grandchildren_pools_and_managers_show",
            children_grandchildren_pools_and_managers_show,
        ),
        trial("restarts_and_last_exits_show", restarts_and_last_exits_show),
    ]);
}
