//! A child's `tracing` events reach the root's subscriber as they happened: their
//! target, level, typed fields and spans, and the name of their process; the root's
//! filter judges them by their own target. An actor's handler and a pool task log
//! inside the span their caller called from, and a pool task inside a span of its
//! own. Real children, the test's real subscriber.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::Duration;

use common::{ChildEvent, TestResult, trial};
use multiproc::blocking::{Pool, Process};
use multiproc::{Actor, BoxError};

/// The longest a test waits for events that come up from children.
const PATIENCE: Duration = Duration::from_secs(30);

/// What the root's subscriber lets through: `app::quiet` is off.
const FILTER: &str = "info,app::quiet=off";

fn logs_in_spans(text: String) {
    let outer = tracing::info_span!("outer", job = "j1", n = 7u64);
    let _outer = outer.enter();
    let inner = tracing::info_span!(target: "app::inner", "inner", step = 2i64);
    let _inner = inner.enter();
    tracing::warn!(
        target: "app::work",
        answer = 42i64,
        ok = true,
        ratio = 0.5,
        who = "bob",
        list = ?vec![1, 2],
        "done {text}"
    );
}

fn logs_loud_and_quiet(text: String) {
    tracing::info!(target: "app::quiet", "quiet {text}");
    tracing::debug!(target: "app::loud", "debug {text}");
    tracing::info!(target: "app::loud", "loud {text}");
}

fn starts_a_logging_child(text: String) {
    let mut p = Process::new(logs_in_spans, text);
    p.start().unwrap();
    p.join().unwrap();
}

/// Logs the item it squares.
fn logs_a_square(x: u64) -> u64 {
    tracing::info!(target: "app::pool", x, "squaring");
    x * x
}

multiproc::register!(
    logs_in_spans,
    logs_loud_and_quiet,
    starts_a_logging_child,
    logs_a_square
);

/// Logs each message it handles.
struct Greeter;

impl Actor for Greeter {
    type Args = ();
    type Msg = String;
    type Reply = usize;

    async fn start((): ()) -> Result<Self, BoxError> {
        Ok(Greeter)
    }

    async fn handle(&mut self, who: String) -> usize {
        tracing::info!(target: "app::actor", "hello {who}");
        who.len()
    }
}

multiproc::register_actor!(Greeter);

/// The events forwarded so far whose message is `message`.
fn events(message: &str) -> Vec<ChildEvent> {
    common::child_events()
        .into_iter()
        .filter(|e| e.message == message)
        .collect()
}

fn an_event_keeps_its_target_level_fields_and_spans() -> TestResult {
    let text = format!("spans {}", std::process::id());
    let mut p = Process::new(logs_in_spans, text.clone());
    p.start()?;
    p.join()?;
    let seen = events(&format!("done {text}"));
    check!(seen.len() == 1, "one event expected: {seen:?}");
    let e = &seen[0];
    check_eq!(e.target, "app::work");
    check_eq!(e.level, tracing::Level::WARN);
    check_eq!(e.process, p.name());
    check_eq!(
        e.fields,
        vec![
            "answer=42",
            "ok=true",
            "ratio=0.5",
            "who=\"bob\"",
            "list=[1, 2]"
        ]
    );
    check_eq!(
        e.spans,
        vec![
            format!("process{{name={}}}", p.name()),
            "outer{job=\"j1\" n=7}".to_string(),
            "inner{step=2}".to_string(),
        ]
    );
    Ok(())
}

fn a_grandchilds_event_comes_up_unchanged() -> TestResult {
    let text = format!("grandchild {}", std::process::id());
    let mut p = Process::new(starts_a_logging_child, text.clone());
    p.start()?;
    p.join()?;
    let seen = events(&format!("done {text}"));
    check!(seen.len() == 1, "one event expected: {seen:?}");
    let e = &seen[0];
    check_eq!(e.target, "app::work");
    check!(
        e.process.starts_with(&format!("{}:", p.name())),
        "{} is not a child of {}",
        e.process,
        p.name()
    );
    check_eq!(e.spans.len(), 3);
    Ok(())
}

fn the_roots_filter_judges_a_childs_target() -> TestResult {
    let text = format!("filter {}", std::process::id());
    let mut p = Process::new(logs_loud_and_quiet, text.clone());
    p.start()?;
    p.join()?;
    check_eq!(events(&format!("loud {text}")).len(), 1);
    check_eq!(events(&format!("quiet {text}")).len(), 0);
    check_eq!(events(&format!("debug {text}")).len(), 0);
    Ok(())
}

fn an_actors_events_are_in_its_callers_span() -> TestResult {
    let job = format!("j{}", std::process::id());
    let mut p = Process::actor::<Greeter>(());
    p.start()?;
    let greeter = p.actor_ref::<Greeter>();
    let request = tracing::info_span!("request", job = %job);
    let answered = request.in_scope(|| greeter.call(format!("in {job}")))?;
    check_eq!(answered, format!("in {job}").len());
    // The call's events come up before its reply: there when it returns.
    let seen = events(&format!("hello in {job}"));
    check!(seen.len() == 1, "one event expected: {seen:?}");
    check_eq!(
        seen[0].spans,
        vec![
            format!("request{{job={job}}}"),
            format!("process{{name={}}}", p.name()),
        ]
    );
    // Outside the span, a call carries none.
    greeter.call(format!("out {job}"))?;
    let seen = events(&format!("hello out {job}"));
    check!(seen.len() == 1, "one event expected: {seen:?}");
    check_eq!(seen[0].spans, vec![format!("process{{name={}}}", p.name())]);
    p.terminate()?;
    p.join()?;
    Ok(())
}

fn a_pool_tasks_events_are_in_its_callers_span_and_its_own() -> TestResult {
    const ITEMS: u64 = 4;
    // Items no other test squares, so their events are this test's.
    let first = 1_000_000 + u64::from(std::process::id()) * 10;
    let pool = Pool::new(2)?;
    let batch = tracing::info_span!("batch", first);
    let squares = batch.in_scope(|| pool.map_chunked(logs_a_square, first..first + ITEMS, 1))?;
    check_eq!(squares.len(), ITEMS as usize);
    pool.close();
    pool.join()?;
    let mine = |e: &ChildEvent| {
        e.message == "squaring"
            && e.fields.iter().any(|f| {
                f.strip_prefix("x=")
                    .and_then(|x| x.parse::<u64>().ok())
                    .is_some_and(|x| (first..first + ITEMS).contains(&x))
            })
    };
    // A task's events come on its worker's link, its result on the pool's: they may
    // come after `map` returns.
    let seen = common::wait_child_events(ITEMS as usize, PATIENCE, mine);
    check!(
        seen.len() == ITEMS as usize,
        "{ITEMS} events expected: {seen:?}"
    );
    for e in &seen {
        check_eq!(e.spans.len(), 3);
        check_eq!(e.spans[0], format!("batch{{first={first}}}"));
        check_eq!(e.spans[1], format!("process{{name={}}}", e.process));
        check!(
            e.spans[2].starts_with("task{id=")
                && e.spans[2].ends_with(" entry=logs::logs_a_square items=1}"),
            "not a task's span: {}",
            e.spans[2]
        );
    }
    Ok(())
}

fn main() {
    common::run_with_filter(
        vec![
            trial(
                "an_event_keeps_its_target_level_fields_and_spans",
                an_event_keeps_its_target_level_fields_and_spans,
            ),
            trial(
                "a_grandchilds_event_comes_up_unchanged",
                a_grandchilds_event_comes_up_unchanged,
            ),
            trial(
                "the_roots_filter_judges_a_childs_target",
                the_roots_filter_judges_a_childs_target,
            ),
            trial(
                "an_actors_events_are_in_its_callers_span",
                an_actors_events_are_in_its_callers_span,
            ),
            trial(
                "a_pool_tasks_events_are_in_its_callers_span_and_its_own",
                a_pool_tasks_events_are_in_its_callers_span_and_its_own,
            ),
        ],
        FILTER,
    )
}
