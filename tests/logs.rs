//! A child's `tracing` events reach the root's subscriber as they happened: their
//! target, level, typed fields and spans, and the name of their process; the root's
//! filter judges them by their own target. Real children, the test's real subscriber.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::{ChildEvent, TestResult, trial};
use multiproc::blocking::Process;

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

multiproc::register!(logs_in_spans, logs_loud_and_quiet, starts_a_logging_child);

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
        ],
        FILTER,
    )
}
