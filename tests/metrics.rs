//! The tree's metrics reach a real recorder (metrics-util's `DebuggingRecorder`) in
//! the root, over real processes: restarts and intensity shutdowns of a supervisor,
//! exits by reason, call and task latencies, an actor's mailbox depth, and a child's
//! own metrics, labelled with its process. Needs the `metrics` feature:
//!
//! ```console
//! cargo test --features metrics --test metrics
//! ```

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{TestResult, trial};
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use multiproc::blocking::{Event, Pool, Process, SupervisorRef};
use multiproc::metrics::{
    CALL_DURATION, EXITS, INTENSITY_SHUTDOWNS, LIVE_PROCESSES, MAILBOX_DEPTH, PROCESS_LABEL,
    RESTARTS, STARTS, TASK_DURATION, TASK_QUEUE_WAIT,
};
use multiproc::{
    Actor, Backoff, BoxError, RestartIntensity, Strategy, Supervisor, SupervisorExit,
    SupervisorFlags, function_child,
};

/// The longest a test waits for a metric to reach a value.
const PATIENCE: Duration = Duration::from_secs(30);

// --- the recorder ----------------------------------------------------------------

/// The debugging recorder, whose every change wakes the tests waiting for one.
struct Notifying(DebuggingRecorder);

/// A handle of the debugging recorder that says when it changed.
struct Told<H>(H);

/// Bumped at each change.
static CHANGES: (Mutex<u64>, Condvar) = (Mutex::new(0), Condvar::new());

fn changed() {
    *CHANGES.0.lock().unwrap() += 1;
    CHANGES.1.notify_all();
}

impl CounterFn for Told<Counter> {
    fn increment(&self, value: u64) {
        self.0.increment(value);
        changed();
    }
    fn absolute(&self, value: u64) {
        self.0.absolute(value);
        changed();
    }
}

impl GaugeFn for Told<Gauge> {
    fn increment(&self, value: f64) {
        self.0.increment(value);
        changed();
    }
    fn decrement(&self, value: f64) {
        self.0.decrement(value);
        changed();
    }
    fn set(&self, value: f64) {
        self.0.set(value);
        changed();
    }
}

impl HistogramFn for Told<Histogram> {
    fn record(&self, value: f64) {
        self.0.record(value);
        changed();
    }
}

impl Recorder for Notifying {
    fn describe_counter(&self, k: KeyName, u: Option<Unit>, d: SharedString) {
        self.0.describe_counter(k, u, d);
    }
    fn describe_gauge(&self, k: KeyName, u: Option<Unit>, d: SharedString) {
        self.0.describe_gauge(k, u, d);
    }
    fn describe_histogram(&self, k: KeyName, u: Option<Unit>, d: SharedString) {
        self.0.describe_histogram(k, u, d);
    }
    fn register_counter(&self, key: &Key, m: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(Told(self.0.register_counter(key, m))))
    }
    fn register_gauge(&self, key: &Key, m: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::new(Told(self.0.register_gauge(key, m))))
    }
    fn register_histogram(&self, key: &Key, m: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Arc::new(Told(self.0.register_histogram(key, m))))
    }
}

/// A metric: its kind, name and labels (sorted).
type Id = (MetricKind, String, Vec<(String, String)>);

/// Everything recorded so far. A snapshot of the debugging recorder drains its
/// histograms, so their samples are kept here for every test to see.
#[derive(Default)]
struct Seen {
    counters: HashMap<Id, u64>,
    gauges: HashMap<Id, f64>,
    samples: HashMap<Id, usize>,
}

static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
static SEEN: Mutex<Option<Seen>> = Mutex::new(None);

fn install_recorder() {
    let recorder = DebuggingRecorder::new();
    let _ = SNAPSHOTTER.set(recorder.snapshotter());
    metrics::set_global_recorder(Notifying(recorder)).unwrap();
}

/// Reads the recorder and applies `f` to all it recorded so far.
fn seen<T>(f: impl FnOnce(&Seen) -> T) -> T {
    let mut seen = SEEN.lock().unwrap();
    let seen = seen.get_or_insert_with(Seen::default);
    for (key, _, _, value) in SNAPSHOTTER.get().unwrap().snapshot().into_vec() {
        let mut labels: Vec<(String, String)> = key
            .key()
            .labels()
            .map(|l| (l.key().to_string(), l.value().to_string()))
            .collect();
        labels.sort();
        let id = (key.kind(), key.key().name().to_string(), labels);
        match value {
            DebugValue::Counter(n) => {
                seen.counters.insert(id, n);
            }
            DebugValue::Gauge(v) => {
                seen.gauges.insert(id, v.0);
            }
            DebugValue::Histogram(v) => *seen.samples.entry(id).or_default() += v.len(),
        }
    }
    f(seen)
}

fn id(kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> Id {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    (kind, name.to_string(), labels)
}

fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    let id = id(MetricKind::Counter, name, labels);
    seen(|s| s.counters.get(&id).copied().unwrap_or(0))
}

fn gauge(name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let id = id(MetricKind::Gauge, name, labels);
    seen(|s| s.gauges.get(&id).copied())
}

fn samples(name: &str) -> usize {
    let id = id(MetricKind::Histogram, name, &[]);
    seen(|s| s.samples.get(&id).copied().unwrap_or(0))
}

/// Waits until `ok` holds of what was recorded, woken by each change; fails after
/// [`PATIENCE`], saying `what` it waited for.
fn wait_until(what: &str, ok: impl Fn() -> bool) -> TestResult {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let before = *CHANGES.0.lock().unwrap();
        if ok() {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        check!(!left.is_zero(), "gave up waiting for {what}");
        let changes = CHANGES.0.lock().unwrap();
        let _ = CHANGES
            .1
            .wait_timeout_while(changes, left, |n| *n == before);
    }
}

// --- what the children run ---------------------------------------------------------

fn crashes() {
    std::process::exit(3);
}

fn panics() {
    panic!("on purpose");
}

fn returns() {}

/// Records metrics of its own, in a child.
fn counts_jobs(jobs: u64) {
    metrics::counter!("app_jobs_total").increment(jobs);
    metrics::gauge!("app_queue_len").set(7.0);
}

fn square(x: u64) -> u64 {
    x * x
}

multiproc::register!(crashes, panics, returns, counts_jobs, square);

/// An actor that answers `Hold` once its event is set: messages sent meanwhile wait
/// in its mailbox.
struct Gate(multiproc::Event);

#[derive(serde::Serialize, serde::Deserialize)]
enum GateMsg {
    Hold,
    Ping,
}

impl Actor for Gate {
    type Args = multiproc::Event;
    type Msg = GateMsg;
    type Reply = bool;

    async fn start(open: multiproc::Event) -> Result<Self, BoxError> {
        Ok(Gate(open))
    }

    async fn handle(&mut self, msg: GateMsg) -> bool {
        match msg {
            GateMsg::Hold => self.0.wait(Some(PATIENCE)).await.unwrap_or(false),
            GateMsg::Ping => true,
        }
    }
}

multiproc::register_actor!(Gate);

// --- the tests -----------------------------------------------------------------------

fn restarts_and_an_intensity_shutdown_are_counted() -> TestResult {
    const SUPERVISOR: &str = "metrics-restarts";
    let flags = SupervisorFlags {
        strategy: Strategy::OneForOne,
        intensity: RestartIntensity {
            max_restarts: 2,
            within: Duration::from_secs(60),
        },
        backoff: Backoff::NONE,
        ..SupervisorFlags::default()
    };
    let exited_before = counter(EXITS, &[("reason", "exited")]);
    let sup = Supervisor::new(flags)
        .name(SUPERVISOR)
        .child(function_child("crasher", crashes, ())?);
    let sup = SupervisorRef::start(sup)?;
    check_eq!(sup.join(), SupervisorExit::IntensityExceeded);
    let labels = [("supervisor", SUPERVISOR), ("child", "crasher")];
    // The supervisor recorded all of it before it ended.
    check_eq!(counter(STARTS, &labels), 3);
    check_eq!(counter(RESTARTS, &labels), 2);
    check_eq!(
        counter(INTENSITY_SHUTDOWNS, &[("supervisor", SUPERVISOR)]),
        1
    );
    check!(
        counter(EXITS, &[("reason", "exited")]) >= exited_before + 3,
        "three exits with a status expected"
    );
    Ok(())
}

fn an_exit_is_counted_by_its_reason() -> TestResult {
    let panicked = counter(EXITS, &[("reason", "panic")]);
    let normal = counter(EXITS, &[("reason", "normal")]);
    let mut p = Process::new(panics, ());
    p.start()?;
    p.join()?;
    let mut q = Process::new(returns, ());
    q.start()?;
    q.join()?;
    // Counted before a joiner learns of the exit.
    check!(
        counter(EXITS, &[("reason", "panic")]) > panicked,
        "the panic was not counted"
    );
    check!(
        counter(EXITS, &[("reason", "normal")]) > normal,
        "the normal exit was not counted"
    );
    check!(
        gauge(LIVE_PROCESSES, &[]).is_some(),
        "no gauge of live processes"
    );
    Ok(())
}

fn call_and_task_latencies_are_recorded() -> TestResult {
    const CALLS: usize = 5;
    const ITEMS: usize = 8;
    let calls = samples(CALL_DURATION);
    let (tasks, waits) = (samples(TASK_DURATION), samples(TASK_QUEUE_WAIT));
    let open = Event::new()?;
    let mut p = Process::actor::<Gate>(open.into_async());
    p.start()?;
    let gate = p.actor_ref::<Gate>();
    for _ in 0..CALLS {
        check!(gate.call(GateMsg::Ping)?, "the gate did not answer");
    }
    p.terminate()?;
    p.join()?;
    check!(
        samples(CALL_DURATION) >= calls + CALLS,
        "fewer call latencies than calls"
    );

    let pool = Pool::new(2)?;
    // One item a task.
    let squares = pool.map_chunked(square, 0..ITEMS as u64, 1)?;
    check_eq!(squares.len(), ITEMS);
    pool.close();
    pool.join()?;
    check!(
        samples(TASK_DURATION) >= tasks + ITEMS,
        "fewer task latencies than tasks"
    );
    check!(
        samples(TASK_QUEUE_WAIT) >= waits + ITEMS,
        "fewer queue waits than tasks"
    );
    Ok(())
}

fn the_mailbox_depth_gauge_moves() -> TestResult {
    const WAITING: usize = 5;
    let open = Event::new()?;
    let mut p = Process::actor::<Gate>(open.clone().into_async());
    p.start()?;
    let name = p.name().to_string();
    let gate = p.actor_ref::<Gate>();
    // In order: the actor holds on the first; the rest wait in its mailbox.
    gate.cast(GateMsg::Hold)?;
    for _ in 0..WAITING {
        gate.cast(GateMsg::Ping)?;
    }
    let labels = [(PROCESS_LABEL, name.as_str())];
    wait_until("the mailbox to fill", || {
        gauge(MAILBOX_DEPTH, &labels).is_some_and(|d| d >= WAITING as f64)
    })?;
    open.set()?;
    check!(gate.call(GateMsg::Ping)?, "the gate did not answer");
    wait_until("the mailbox to empty", || {
        gauge(MAILBOX_DEPTH, &labels) == Some(0.0)
    })?;
    p.terminate()?;
    p.join()?;
    Ok(())
}

fn a_childs_own_metrics_reach_the_root_with_its_process() -> TestResult {
    let mut p = Process::new(counts_jobs, 3u64);
    p.start()?;
    p.join()?;
    // Sent before its exit report: there by the time it is joined.
    let labels = [(PROCESS_LABEL, p.name())];
    check_eq!(counter("app_jobs_total", &labels), 3);
    check_eq!(gauge("app_queue_len", &labels), Some(7.0));
    Ok(())
}

fn main() {
    multiproc::init();
    install_recorder();
    common::run(vec![
        trial(
            "restarts_and_an_intensity_shutdown_are_counted",
            restarts_and_an_intensity_shutdown_are_counted,
        ),
        trial(
            "an_exit_is_counted_by_its_reason",
            an_exit_is_counted_by_its_reason,
        ),
        trial(
            "call_and_task_latencies_are_recorded",
            call_and_task_latencies_are_recorded,
        ),
        trial(
            "the_mailbox_depth_gauge_moves",
            the_mailbox_depth_gauge_moves,
        ),
        trial(
            "a_childs_own_metrics_reach_the_root_with_its_process",
            a_childs_own_metrics_reach_the_root_with_its_process,
        ),
    ])
}
