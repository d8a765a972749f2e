//! Supervision over real processes: OTP's restart table, strategies, intensity,
//! backoff, ordered shutdown and the admin API. Tests wait on supervisor events.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
use std::time::Duration;

use common::{TestResult, trial};
use multiproc::blocking::{Events, SupervisorRef};
use multiproc::{
    Actor, ActorRef, AdminError, AutoShutdown, Backoff, BoxError, ChildKind, ChildSpec, ChildState,
    Decider, Directive, ExitMatch, ExitReason, Restart, RestartIntensity, Shutdown, SpecError,
    Strategy, Supervisor, SupervisorEvent, SupervisorExit, SupervisorFlags, function_child,
};

fn waits() {
    multiproc::blocking::wait_for_stop();
}

fn returns() {}

fn ignores_stop() {
    // Never returns by itself and does not look at stop requests.
    loop {
        std::thread::park();
    }
}

/// A supervisor in a process of its own, hosted by an actor that reports its children.
struct SubSupervisor(multiproc::SupervisorRef);

impl Actor for SubSupervisor {
    type Args = ();
    type Msg = ();
    type Reply = Vec<(String, u32)>;

    async fn start((): ()) -> Result<Self, BoxError> {
        let sup = Supervisor::new(flags(Strategy::OneForOne))
            .child(worker("w1"))
            .child(worker("w2"));
        Ok(SubSupervisor(sup.start().await?))
    }

    async fn handle(&mut self, (): ()) -> Vec<(String, u32)> {
        let children = self.0.which_children().await.unwrap_or_default();
        children
            .into_iter()
            .map(|c| (c.name.unwrap_or_default(), c.pid.unwrap_or(0)))
            .collect()
    }

    async fn stopping(&mut self) {
        self.0.shutdown().await;
    }
}
/// An actor whose `start` fails while a file exists.
struct Blockable;

impl Actor for Blockable {
    type Args = String;
    type Msg = ();
    type Reply = ();

    async fn start(path: String) -> Result<Self, BoxError> {
        if std::path::Path::new(&path).exists() {
            return Err(format!("blocked by {path}").into());
        }
        Ok(Blockable)
    }

    async fn handle(&mut self, (): ()) {}
}

/// Counts the calls it got.
struct Tally(u32);

impl Actor for Tally {
    type Args = ();
    type Msg = ();
    type Reply = u32;

    async fn start((): ()) -> Result<Self, BoxError> {
        Ok(Tally(0))
    }

    async fn handle(&mut self, (): ()) -> u32 {
        self.0 += 1;
        self.0
    }
}

multiproc::register_actor!(SubSupervisor, Blockable, Tally);

/// A path no other test uses; removed when dropped.
struct Flag(std::path::PathBuf);

impl Flag {
    fn new(name: &str) -> Flag {
        Flag(std::env::temp_dir().join(format!("multiproc-test-{}-{name}", std::process::id())))
    }
    fn raise(&self) -> std::io::Result<()> {
        std::fs::write(&self.0, b"")
    }
    fn lower(&self) -> std::io::Result<()> {
        std::fs::remove_file(&self.0)
    }
}

impl Drop for Flag {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A supervisor in a process of its own that gives up at its first restart.
fn sub_that_gives_up() -> Result<(), Box<dyn std::error::Error>> {
    let strict = SupervisorFlags {
        intensity: RestartIntensity {
            max_restarts: 0,
            within: Duration::from_secs(60),
        },
        ..flags(Strategy::OneForOne)
    };
    Ok(multiproc::blocking::run_supervisor(
        Supervisor::new(strict).child(function_child("quitter", returns, ())?),
    )?)
}

/// A supervisor in its own process whose only child keeps ending, with a long
/// backoff: most of its life, that child is restarting.
fn sub_restarting() -> Result<(), Box<dyn std::error::Error>> {
    let slow = SupervisorFlags {
        backoff: Backoff {
            min: Duration::from_secs(30),
            max: Duration::from_secs(60),
            ..Backoff::default()
        },
        ..flags(Strategy::OneForOne)
    };
    Ok(multiproc::blocking::run_supervisor(
        Supervisor::new(slow).child(function_child("quick", returns, ())?),
    )?)
}

fn exits_with(code: i32) {
    std::process::exit(code);
}

multiproc::register!(
    waits,
    returns,
    ignores_stop,
    sub_that_gives_up,
    exits_with,
    sub_restarting
);

fn worker(id: &str) -> ChildSpec {
    function_child(id, waits, ()).unwrap()
}

fn flags(strategy: Strategy) -> SupervisorFlags {
    SupervisorFlags {
        strategy,
        intensity: RestartIntensity {
            max_restarts: 10,
            within: Duration::from_secs(60),
        },
        backoff: Backoff::NONE,
        ..SupervisorFlags::default()
    }
}

fn start(
    flags: SupervisorFlags,
    children: Vec<ChildSpec>,
) -> Result<(SupervisorRef, Events), AdminError> {
    let mut sup = Supervisor::new(flags);
    for c in children {
        sup = sup.child(c);
    }
    let events = Events::from(sup.events());
    Ok((SupervisorRef::start(sup)?, events))
}

/// Reads events until `stop` matches one; returns them all.
fn until(events: &mut Events, stop: impl Fn(&SupervisorEvent) -> bool) -> Vec<SupervisorEvent> {
    let mut seen = Vec::new();
    for e in events.by_ref() {
        let done = stop(&e);
        seen.push(e);
        if done {
            break;
        }
    }
    seen
}

fn pid_of(sup: &SupervisorRef, id: &str) -> u32 {
    sup.which_children()
        .unwrap()
        .into_iter()
        .find(|c| c.id == id)
        .and_then(|c| c.pid)
        .unwrap()
}

fn kill(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
}

fn restarted(id: &'static str) -> impl Fn(&SupervisorEvent) -> bool {
    move |e| matches!(e, SupervisorEvent::Restarted { id: i, .. } if i == id)
}

fn exits(seen: &[SupervisorEvent]) -> Vec<(String, ExitReason)> {
    seen.iter()
        .filter_map(|e| match e {
            SupervisorEvent::ChildExited { id, reason } => Some((id.clone(), reason.clone())),
            _ => None,
        })
        .collect()
}

fn one_for_one_restarts_only_the_child_that_died() -> TestResult {
    let (sup, mut events) = start(flags(Strategy::OneForOne), vec![worker("a"), worker("b")])?;
    let (a, b) = (pid_of(&sup, "a"), pid_of(&sup, "b"));
    kill(a);
    let seen = until(&mut events, restarted("a"));
    check_eq!(
        exits(&seen),
        vec![("a".to_string(), ExitReason::Signaled(9))]
    );
    check!(pid_of(&sup, "a") != a, "a has a new process");
    check_eq!(pid_of(&sup, "b"), b);
    check_eq!(sup.shutdown(), SupervisorExit::Shutdown);
    Ok(())
}

fn one_for_all_restarts_every_child() -> TestResult {
    let (sup, mut events) = start(
        flags(Strategy::OneForAll),
        vec![worker("a"), worker("b"), worker("c")],
    )?;
    let (a, c) = (pid_of(&sup, "a"), pid_of(&sup, "c"));
    kill(pid_of(&sup, "b"));
    let seen = until(&mut events, restarted("c"));
    let ex = exits(&seen);
    check_eq!(ex[0], ("b".to_string(), ExitReason::Signaled(9)));
    // The others stop in reverse start order, then all start again in start order.
    check_eq!(
        ex[1..]
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>(),
        vec!["c", "a"]
    );
    let restarts: Vec<&str> = seen
        .iter()
        .filter_map(|e| match e {
            SupervisorEvent::Restarted { id, .. } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    check_eq!(restarts, vec!["a", "b", "c"]);
    check!(
        pid_of(&sup, "a") != a && pid_of(&sup, "c") != c,
        "all were replaced"
    );
    sup.shutdown();
    Ok(())
}

fn rest_for_one_restarts_the_child_and_those_after_it() -> TestResult {
    let (sup, mut events) = start(
        flags(Strategy::RestForOne),
        vec![worker("a"), worker("b"), worker("c")],
    )?;
    let a = pid_of(&sup, "a");
    kill(pid_of(&sup, "b"));
    let seen = until(&mut events, restarted("c"));
    let ids: Vec<String> = exits(&seen).into_iter().map(|(id, _)| id).collect();
    check_eq!(ids, vec!["b", "c"]);
    check_eq!(pid_of(&sup, "a"), a);
    sup.shutdown();
    Ok(())
}

fn restart_types_follow_otp() -> TestResult {
    // (restart type, restarted after a normal exit?)
    for (restart, want_restart) in [
        (Restart::Transient, false),
        (Restart::Temporary, false),
        (Restart::Permanent, true),
    ] {
        let mut spec = function_child("x", returns, ())?;
        spec.restart = restart;
        let (sup, mut events) = start(flags(Strategy::OneForOne), vec![spec])?;
        let seen = until(&mut events, |e| {
            matches!(e, SupervisorEvent::ChildExited { .. })
        });
        check_eq!(exits(&seen), vec![("x".to_string(), ExitReason::Normal)]);
        if want_restart {
            let next = until(&mut events, |_| true);
            check!(
                matches!(next.first(), Some(SupervisorEvent::Restarting { .. })),
                "{restart:?}: {next:?}"
            );
        } else {
            // The supervisor handles its mailbox in order: this answer comes after it
            // decided about the exit.
            let children = sup.which_children()?;
            match restart {
                Restart::Temporary => {
                    check!(children.is_empty(), "temporary spec kept: {children:?}")
                }
                _ => check_eq!(children[0].state, ChildState::Stopped),
            }
        }
        sup.shutdown();
    }
    Ok(())
}

fn too_many_restarts_shut_the_supervisor_down() -> TestResult {
    let strict = SupervisorFlags {
        intensity: RestartIntensity {
            max_restarts: 1,
            within: Duration::from_secs(60),
        },
        ..flags(Strategy::OneForOne)
    };
    let (sup, mut events) = start(strict, vec![worker("a"), worker("b")])?;
    let b = pid_of(&sup, "b");
    kill(pid_of(&sup, "a"));
    until(&mut events, restarted("a"));
    kill(pid_of(&sup, "a"));
    let seen = until(&mut events, |e| {
        matches!(e, SupervisorEvent::ShutDown { .. })
    });
    // One restart was made (after a's first death); the second death asked for one
    // more, which OTP's intensity of 1 refuses.
    let exceeded: Vec<_> = seen
        .iter()
        .filter(|e| matches!(e, SupervisorEvent::IntensityExceeded { .. }))
        .cloned()
        .collect();
    check_eq!(
        exceeded,
        vec![SupervisorEvent::IntensityExceeded {
            restarts: 1,
            max: 1,
            within: Duration::from_secs(60),
        }]
    );
    // No restart after the refused one.
    check_eq!(
        seen.iter()
            .filter(|e| matches!(e, SupervisorEvent::Restarted { .. }))
            .count(),
        0
    );
    check_eq!(sup.join(), SupervisorExit::IntensityExceeded);
    check!(
        common::wait_gone(b, Duration::from_secs(5)),
        "b was stopped"
    );
    Ok(())
}

fn a_restart_loop_is_stopped_by_intensity() -> TestResult {
    // A permanent child that returns at once: restarted until intensity gives up.
    let loop_flags = SupervisorFlags {
        intensity: RestartIntensity {
            max_restarts: 3,
            within: Duration::from_secs(60),
        },
        ..flags(Strategy::OneForOne)
    };
    let (sup, mut events) = start(loop_flags, vec![function_child("looper", returns, ())?])?;
    let seen = until(&mut events, |e| {
        matches!(e, SupervisorEvent::ShutDown { .. })
    });
    let restarts = seen
        .iter()
        .filter(|e| matches!(e, SupervisorEvent::Restarted { .. }))
        .count();
    check_eq!(restarts, 3);
    check_eq!(sup.join(), SupervisorExit::IntensityExceeded);
    Ok(())
}

fn backoff_delays_restarts_visibly() -> TestResult {
    let slow = SupervisorFlags {
        backoff: Backoff {
            min: Duration::from_millis(50),
            jitter: 0.0,
            ..Backoff::default()
        },
        ..flags(Strategy::OneForOne)
    };
    let (sup, mut events) = start(slow, vec![worker("a")])?;
    kill(pid_of(&sup, "a"));
    until(&mut events, |e| {
        matches!(e, SupervisorEvent::Restarting { .. })
    });
    check_eq!(sup.which_children()?[0].state, ChildState::Restarting);
    until(&mut events, restarted("a"));
    check_eq!(sup.which_children()?[0].state, ChildState::Running);
    kill(pid_of(&sup, "a"));
    let seen = until(&mut events, |e| {
        matches!(e, SupervisorEvent::Restarting { .. })
    });
    check!(
        matches!(seen.last(), Some(SupervisorEvent::Restarting { delay, .. }) if *delay == Duration::from_millis(100)),
        "the second restart waits twice as long: {seen:?}"
    );
    sup.shutdown();
    Ok(())
}

fn shutdown_stops_children_in_reverse_order_by_their_policy() -> TestResult {
    let mut brutal = worker("brutal");
    brutal.shutdown = Shutdown::BrutalKill;
    let mut stubborn = function_child("stubborn", ignores_stop, ())?;
    stubborn.shutdown = Shutdown::Timeout(Duration::from_millis(200));
    let (sup, mut events) = start(
        flags(Strategy::OneForOne),
        vec![worker("polite"), stubborn, brutal],
    )?;
    check_eq!(sup.shutdown(), SupervisorExit::Shutdown);
    let seen = until(&mut events, |e| {
        matches!(e, SupervisorEvent::ShutDown { .. })
    });
    check_eq!(
        exits(&seen),
        vec![
            ("brutal".to_string(), ExitReason::Signaled(9)),
            ("stubborn".to_string(), ExitReason::Killed),
            ("polite".to_string(), ExitReason::Shutdown),
        ]
    );
    Ok(())
}

fn admin_api_follows_otp() -> TestResult {
    let (sup, _events) = start(flags(Strategy::OneForOne), vec![worker("a")])?;
    let counts = sup.count_children()?;
    check_eq!(
        (
            counts.specs,
            counts.active,
            counts.workers,
            counts.supervisors
        ),
        (1, 1, 1, 0)
    );
    check!(
        matches!(
            sup.start_child(worker("a")),
            Err(AdminError::AlreadyStarted(_))
        ),
        "duplicate start"
    );
    check!(
        matches!(sup.restart_child("a"), Err(AdminError::Running(_))),
        "restart while running"
    );
    check!(
        matches!(sup.delete_child("a"), Err(AdminError::Running(_))),
        "delete while running"
    );
    check!(
        matches!(sup.terminate_child("nope"), Err(AdminError::NotFound(_))),
        "unknown id"
    );
    sup.terminate_child("a")?;
    check_eq!(sup.which_children()?[0].state, ChildState::Stopped);
    check!(
        matches!(
            sup.start_child(worker("a")),
            Err(AdminError::AlreadyPresent(_))
        ),
        "present but stopped"
    );
    sup.restart_child("a")?;
    check_eq!(sup.which_children()?[0].state, ChildState::Running);
    sup.start_child(worker("b"))?;
    check_eq!(sup.count_children()?.active, 2);
    sup.terminate_child("b")?;
    sup.delete_child("b")?;
    check_eq!(sup.which_children()?.len(), 1);
    sup.shutdown();
    check!(
        matches!(sup.which_children(), Err(AdminError::Gone)),
        "admin after shutdown"
    );
    Ok(())
}

fn invalid_specs_name_the_bad_field() -> TestResult {
    let err = start(flags(Strategy::OneForOne), vec![worker("a"), worker("a")]).unwrap_err();
    check!(
        matches!(&err, AdminError::Invalid(SpecError::DuplicateId(id)) if id == "a"),
        "{err:?}"
    );
    let zero = SupervisorFlags {
        intensity: RestartIntensity {
            max_restarts: 1,
            within: Duration::ZERO,
        },
        ..flags(Strategy::OneForOne)
    };
    let err = start(zero, vec![worker("a")]).unwrap_err();
    check!(
        matches!(err, AdminError::Invalid(SpecError::ZeroPeriod(_))),
        "{err:?}"
    );
    let mut bad = worker("a");
    bad.shutdown = Shutdown::Timeout(Duration::ZERO);
    let err = start(flags(Strategy::OneForOne), vec![bad]).unwrap_err();
    check!(err.to_string().contains("invalid shutdown"), "{err}");
    Ok(())
}

fn sub_children(sup: &SupervisorRef) -> Result<Vec<(String, u32)>, Box<dyn std::error::Error>> {
    let sub = sup
        .which_children()?
        .into_iter()
        .find(|c| c.id == "sub")
        .ok_or("no sub")?;
    let addr = sub.identity.ok_or("sub has no identity")?;
    Ok(multiproc::blocking::ActorRef::from(ActorRef::<SubSupervisor>::at(addr)).call(())?)
}

fn killing_a_middle_supervisor_takes_its_subtree_and_it_is_restarted() -> TestResult {
    let mut sub = multiproc::actor_child::<SubSupervisor>("sub", ())?;
    sub.kind = ChildKind::Supervisor;
    sub.shutdown = Shutdown::Infinity;
    let (sup, mut events) = start(flags(Strategy::OneForOne), vec![sub])?;
    let sub_name = sup.which_children()?[0].name.clone().ok_or("no name")?;
    let before = sub_children(&sup)?;
    check_eq!(
        before
            .iter()
            .map(|(name, _)| name.clone())
            .collect::<Vec<_>>(),
        vec![format!("{sub_name}:1"), format!("{sub_name}:2")]
    );
    kill(pid_of(&sup, "sub"));
    for (_, pid) in &before {
        check!(
            common::wait_gone(*pid, Duration::from_secs(1)),
            "worker {pid} outlived its supervisor"
        );
    }
    let seen = until(&mut events, restarted("sub"));
    check_eq!(
        exits(&seen),
        vec![("sub".to_string(), ExitReason::Signaled(9))]
    );
    let after = sub_children(&sup)?;
    check_eq!(after.len(), 2);
    check!(
        after
            .iter()
            .all(|(_, pid)| before.iter().all(|(_, old)| old != pid)),
        "{before:?} {after:?}"
    );
    check_eq!(sup.shutdown(), SupervisorExit::Shutdown);
    Ok(())
}

fn a_supervisor_that_gives_up_escalates_to_its_parent() -> TestResult {
    let mut sub = function_child("sub", sub_that_gives_up, ())?;
    sub.kind = ChildKind::Supervisor;
    sub.shutdown = Shutdown::Infinity;
    let (sup, mut events) = start(flags(Strategy::OneForOne), vec![sub])?;
    let seen = until(&mut events, |e| {
        matches!(e, SupervisorEvent::ChildExited { .. })
    });
    match exits(&seen).pop() {
        Some((id, ExitReason::Failed { message })) => {
            check_eq!(id, "sub");
            check!(message.contains("gave up"), "{message}");
        }
        other => return Err(format!("expected the sub-supervisor to fail, got {other:?}").into()),
    }
    until(&mut events, restarted("sub"));
    sup.shutdown();
    Ok(())
}

fn a_decider_overrides_the_restart_type() -> TestResult {
    let mut config_error = function_child("config", exits_with, 3)?;
    config_error.decider = Decider::default().on(ExitMatch::Code(3), Directive::Stop);
    let mut fatal = worker("fatal");
    fatal.decider = Decider::default().on(ExitMatch::Signal(9), Directive::Escalate);
    let (sup, mut events) = start(flags(Strategy::OneForOne), vec![config_error, fatal])?;
    let seen = until(&mut events, |e| {
        matches!(e, SupervisorEvent::ChildExited { .. })
    });
    check_eq!(
        exits(&seen),
        vec![("config".to_string(), ExitReason::Exited(3))]
    );
    // Permanent, but its decider said stop: it stays stopped.
    check_eq!(sup.which_children()?[0].state, ChildState::Stopped);
    kill(pid_of(&sup, "fatal"));
    check_eq!(
        sup.join(),
        SupervisorExit::Escalated {
            id: "fatal".to_string(),
            reason: ExitReason::Signaled(9)
        }
    );
    Ok(())
}

fn a_dynamic_supervisor_starts_children_from_a_template() -> TestResult {
    let mut template = function_child("job", exits_with, 0)?;
    template.restart = Restart::Temporary;
    let dynamic = multiproc::blocking::DynamicSupervisor::start(
        flags(Strategy::OneForAll),
        template,
        Some(2),
    )?;
    let sup = dynamic.supervisor();
    let mut events = sup.events();
    // Arguments come per child: each exits with the code it was given.
    let first = dynamic.start_child(&7)?;
    let seen = until(&mut events, |e| {
        matches!(e, SupervisorEvent::ChildExited { .. })
    });
    check_eq!(exits(&seen), vec![(first.clone(), ExitReason::Exited(7))]);
    check_eq!(first, "job-1");

    let mut long = function_child("worker", waits, ())?;
    long.restart = Restart::Permanent;
    let pool =
        multiproc::blocking::DynamicSupervisor::start(flags(Strategy::OneForAll), long, Some(2))?;
    let a = pool.start_child(&())?;
    let b = pool.start_child(&())?;
    check!(
        matches!(pool.start_child(&()), Err(AdminError::MaxChildren(2))),
        "a third child"
    );
    // OneForOne whatever the flags said: killing one leaves the other alone.
    let inner = pool.supervisor();
    let mut events = inner.events();
    let b_pid = pid_of(&inner, &b);
    kill(pid_of(&inner, &a));
    until(
        &mut events,
        |e| matches!(e, SupervisorEvent::Restarted { id, .. } if *id == a),
    );
    check_eq!(pid_of(&inner, &b), b_pid);
    pool.terminate_child(&a)?;
    check_eq!(inner.count_children()?.specs, 1);
    pool.start_child(&())?;
    inner.shutdown();
    sup.shutdown();
    Ok(())
}

fn a_hung_child_is_killed_and_restarted() -> TestResult {
    let mut silent = worker("silent");
    silent.heartbeat = Some(Duration::from_millis(200));
    let (sup, mut events) = start(flags(Strategy::OneForOne), vec![silent])?;
    let seen = until(&mut events, restarted("silent"));
    check_eq!(exits(&seen), vec![("silent".to_string(), ExitReason::Hung)]);
    sup.shutdown();
    Ok(())
}

fn a_failed_restart_is_retried_without_blocking_the_supervisor() -> TestResult {
    let flag = Flag::new("retry");
    let path = flag.0.to_string_lossy().to_string();
    let retrying = SupervisorFlags {
        backoff: Backoff {
            min: Duration::from_millis(20),
            jitter: 0.0,
            ..Backoff::default()
        },
        ..flags(Strategy::OneForOne)
    };
    let (sup, mut events) = start(
        retrying,
        vec![multiproc::actor_child::<Blockable>("b", path)?],
    )?;
    flag.raise()?;
    kill(pid_of(&sup, "b"));
    let seen = until(&mut events, |e| {
        matches!(e, SupervisorEvent::RestartFailed { .. })
    });
    match seen.last() {
        Some(SupervisorEvent::RestartFailed { id, error }) => {
            check_eq!(id, "b");
            check!(error.contains("blocked by"), "{error}");
        }
        other => return Err(format!("expected a failed restart, got {other:?}").into()),
    }
    // Admin requests are answered while it retries.
    check_eq!(sup.which_children()?[0].state, ChildState::Restarting);
    check!(
        matches!(sup.restart_child("b"), Err(AdminError::Restarting(_))),
        "restart while restarting"
    );
    flag.lower()?;
    until(&mut events, restarted("b"));
    check_eq!(sup.which_children()?[0].state, ChildState::Running);

    // A restart that keeps failing does not keep the supervisor from shutting down.
    flag.raise()?;
    kill(pid_of(&sup, "b"));
    until(&mut events, |e| {
        matches!(e, SupervisorEvent::RestartFailed { .. })
    });
    check_eq!(sup.shutdown(), SupervisorExit::Shutdown);
    Ok(())
}

fn a_child_that_fails_to_start_is_an_admin_error() -> TestResult {
    let flag = Flag::new("start");
    flag.raise()?;
    let (sup, _events) = start(flags(Strategy::OneForOne), vec![])?;
    let spec = multiproc::actor_child::<Blockable>("b", flag.0.to_string_lossy().to_string())?;
    let err = sup.start_child(spec).unwrap_err();
    check!(
        matches!(&err, AdminError::Start { id, .. } if id == "b"),
        "{err:?}"
    );
    check!(err.to_string().contains("could not be started"), "{err}");
    check_eq!(sup.count_children()?.specs, 0);
    sup.shutdown();
    Ok(())
}

fn auto_shutdown_follows_significant_children() -> TestResult {
    let significant = |id: &str| -> Result<ChildSpec, multiproc::Error> {
        let mut spec = function_child(id, waits, ())?;
        spec.restart = Restart::Temporary;
        spec.significant = true;
        Ok(spec)
    };
    // Any significant child ending ends the supervisor.
    let any = SupervisorFlags {
        auto_shutdown: AutoShutdown::AnySignificant,
        ..flags(Strategy::OneForOne)
    };
    let (sup, _events) = start(any, vec![worker("plain"), significant("s1")?])?;
    let plain = pid_of(&sup, "plain");
    kill(pid_of(&sup, "s1"));
    check_eq!(sup.join(), SupervisorExit::AutoShutdown);
    check!(
        common::wait_gone(plain, Duration::from_secs(5)),
        "plain was stopped"
    );

    // Only the last one does, with AllSignificant.
    let all = SupervisorFlags {
        auto_shutdown: AutoShutdown::AllSignificant,
        ..flags(Strategy::OneForOne)
    };
    let (sup, mut events) = start(all, vec![significant("s1")?, significant("s2")?])?;
    let s2 = pid_of(&sup, "s2");
    kill(pid_of(&sup, "s1"));
    until(&mut events, |e| {
        matches!(e, SupervisorEvent::ChildExited { .. })
    });
    check_eq!(sup.count_children()?.active, 1);
    kill(s2);
    check_eq!(sup.join(), SupervisorExit::AutoShutdown);
    Ok(())
}

fn calls_wait_through_a_restart_or_fail_as_the_caller_chooses() -> TestResult {
    let slow = SupervisorFlags {
        backoff: Backoff {
            min: Duration::from_millis(500),
            jitter: 0.0,
            ..Backoff::default()
        },
        ..flags(Strategy::OneForOne)
    };
    let (sup, mut events) = start(slow, vec![multiproc::actor_child::<Tally>("tally", ())?])?;
    let tally = sup.child_ref::<Tally>("tally");
    check_eq!(tally.call(())?, 1);
    check_eq!(tally.call(())?, 2);
    kill(pid_of(&sup, "tally"));
    until(&mut events, |e| {
        matches!(e, SupervisorEvent::Restarting { .. })
    });
    check_eq!(
        tally.try_call(()),
        Err(multiproc::CallError::Restarting("tally".into()))
    );
    check_eq!(
        tally.call_timeout((), Duration::from_millis(50)),
        Err(multiproc::CallError::Timeout(Duration::from_millis(50)))
    );
    // Waits for the new incarnation (a fresh count), then goes through.
    check_eq!(tally.call(())?, 1);
    sup.terminate_child("tally")?;
    check!(
        matches!(tally.call(()), Err(multiproc::CallError::NotRunning(..))),
        "a stopped child is not waited for"
    );
    sup.shutdown();
    Ok(())
}

fn a_supervisor_killed_mid_restart_is_restarted_by_its_parent() -> TestResult {
    let mut sub = function_child("sub", sub_restarting, ())?;
    sub.kind = ChildKind::Supervisor;
    sub.shutdown = Shutdown::Infinity;
    let (sup, mut events) = start(flags(Strategy::OneForOne), vec![sub])?;
    let first = pid_of(&sup, "sub");
    kill(first);
    let seen = until(&mut events, restarted("sub"));
    check_eq!(
        exits(&seen),
        vec![("sub".to_string(), ExitReason::Signaled(9))]
    );
    check!(pid_of(&sup, "sub") != first, "a new sub-supervisor runs");
    // Its own pending restart (30 s away) does not hold up the shutdown.
    check_eq!(sup.shutdown(), SupervisorExit::Shutdown);
    Ok(())
}

/// How long a test waits for an event that must come (a child's start or exit).
const EVENT_WAIT: Duration = Duration::from_secs(30);

fn events_have_a_timeout_and_end_after_shutdown() -> TestResult {
    let (sup, mut events) = start(flags(Strategy::OneForOne), vec![worker("a")])?;
    // The start's events were sent before `start` returned: there without waiting.
    let first = events.try_recv();
    check!(
        matches!(&first, Ok(SupervisorEvent::ChildStarted { id, .. }) if id == "a"),
        "{first:?}"
    );
    // Nothing happens now: a read that would wait for ever returns.
    check_eq!(events.try_recv(), Err(TryRecvError::Empty));
    check_eq!(
        events.recv_timeout(Duration::from_millis(50)),
        Err(RecvTimeoutError::Timeout)
    );
    kill(pid_of(&sup, "a"));
    let exited = events.recv_timeout(EVENT_WAIT);
    check!(
        matches!(&exited, Ok(SupervisorEvent::ChildExited { id, .. }) if id == "a"),
        "{exited:?}"
    );
    sup.shutdown();
    let rest: Vec<_> = events.by_ref().collect();
    check!(
        matches!(
            rest.last(),
            Some(SupervisorEvent::ShutDown {
                reason: SupervisorExit::Shutdown
            })
        ),
        "the iterator ends after ShutDown, though `sup` is still held: {rest:?}"
    );
    // Ended: every read says so at once, none waits out its timeout.
    check_eq!(
        events.recv_timeout(EVENT_WAIT),
        Err(RecvTimeoutError::Disconnected)
    );
    check_eq!(events.try_recv(), Err(TryRecvError::Disconnected));
    check_eq!(events.recv(), None);
    drop(sup);
    Ok(())
}

fn a_running_supervisor_can_be_subscribed_from_its_start() -> TestResult {
    let sup = SupervisorRef::start(
        Supervisor::new(flags(Strategy::OneForOne))
            .child(worker("a"))
            .child(worker("b")),
    )?;
    // Subscribed after the start: its first events are still there.
    let mut from_start = sup.events_from_start();
    let mut live = sup.events();
    let started: Vec<String> = (0..2)
        .filter_map(|_| match from_start.try_recv() {
            Ok(SupervisorEvent::ChildStarted { id, .. }) => Some(id),
            _ => None,
        })
        .collect();
    check_eq!(started, vec!["a".to_string(), "b".to_string()]);
    check_eq!(live.try_recv(), Err(TryRecvError::Empty));
    // The async subscription is the same one: it sees what the blocking one sees.
    let mut async_live: multiproc::Events = sup.as_async().events();
    kill(pid_of(&sup, "b"));
    for events in [&mut from_start, &mut live] {
        let seen = events.recv_timeout(EVENT_WAIT);
        check!(
            matches!(&seen, Ok(SupervisorEvent::ChildExited { id, .. }) if id == "b"),
            "{seen:?}"
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let seen = runtime.block_on(async_live.recv_timeout(EVENT_WAIT));
    check!(
        matches!(&seen, Ok(SupervisorEvent::ChildExited { id, .. }) if id == "b"),
        "{seen:?}"
    );
    let mut back = Events::from(async_live);
    check!(
        matches!(
            back.recv_timeout(EVENT_WAIT),
            Ok(SupervisorEvent::Restarting { .. })
        ),
        "the converted subscription goes on where it was"
    );
    sup.shutdown();
    Ok(())
}

fn main() {
    // Restarts and respawns in loops: bounded, whatever a regression does.
    common::cgroup::confine("supervisor_restart");
    common::run(vec![
        trial(
            "one_for_one_restarts_only_the_child_that_died",
            one_for_one_restarts_only_the_child_that_died,
        ),
        trial(
            "one_for_all_restarts_every_child",
            one_for_all_restarts_every_child,
        ),
        trial(
            "rest_for_one_restarts_the_child_and_those_after_it",
            rest_for_one_restarts_the_child_and_those_after_it,
        ),
        trial("restart_types_follow_otp", restart_types_follow_otp),
        trial(
            "events_have_a_timeout_and_end_after_shutdown",
            events_have_a_timeout_and_end_after_shutdown,
        ),
        trial(
            "a_running_supervisor_can_be_subscribed_from_its_start",
            a_running_supervisor_can_be_subscribed_from_its_start,
        ),
        trial(
            "too_many_restarts_shut_the_supervisor_down",
            too_many_restarts_shut_the_supervisor_down,
        ),
        trial(
            "a_restart_loop_is_stopped_by_intensity",
            a_restart_loop_is_stopped_by_intensity,
        ),
        trial(
            "backoff_delays_restarts_visibly",
            backoff_delays_restarts_visibly,
        ),
        trial(
            "shutdown_stops_children_in_reverse_order_by_their_policy",
            shutdown_stops_children_in_reverse_order_by_their_policy,
        ),
        trial("admin_api_follows_otp", admin_api_follows_otp),
        trial(
            "invalid_specs_name_the_bad_field",
            invalid_specs_name_the_bad_field,
        ),
        trial(
            "killing_a_middle_supervisor_takes_its_subtree_and_it_is_restarted",
            killing_a_middle_supervisor_takes_its_subtree_and_it_is_restarted,
        ),
        trial(
            "a_supervisor_that_gives_up_escalates_to_its_parent",
            a_supervisor_that_gives_up_escalates_to_its_parent,
        ),
        trial(
            "a_decider_overrides_the_restart_type",
            a_decider_overrides_the_restart_type,
        ),
        trial(
            "a_dynamic_supervisor_starts_children_from_a_template",
            a_dynamic_supervisor_starts_children_from_a_template,
        ),
        trial(
            "a_hung_child_is_killed_and_restarted",
            a_hung_child_is_killed_and_restarted,
        ),
        trial(
            "a_failed_restart_is_retried_without_blocking_the_supervisor",
            a_failed_restart_is_retried_without_blocking_the_supervisor,
        ),
        trial(
            "a_child_that_fails_to_start_is_an_admin_error",
            a_child_that_fails_to_start_is_an_admin_error,
        ),
        trial(
            "auto_shutdown_follows_significant_children",
            auto_shutdown_follows_significant_children,
        ),
        trial(
            "calls_wait_through_a_restart_or_fail_as_the_caller_chooses",
            calls_wait_through_a_restart_or_fail_as_the_caller_chooses,
        ),
        trial(
            "a_supervisor_killed_mid_restart_is_restarted_by_its_parent",
            a_supervisor_killed_mid_restart_is_restarted_by_its_parent,
        ),
    ])
}
