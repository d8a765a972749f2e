//! Shared fixtures for the multi-process tests: a test `main`, waiting on pids,
//! capturing the logs children forward, pids cgroups and usage measurements.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub mod cgroup;
pub mod node;
pub mod usage;

pub use libtest_mimic::Failed;
use libtest_mimic::{Arguments, Trial};

/// The result of one test.
pub type TestResult = Result<(), Failed>;

/// Fails the test with `msg` unless `cond` holds.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+).into());
        }
    };
}

/// Fails the test unless `left == right`.
#[macro_export]
macro_rules! check_eq {
    ($left:expr, $right:expr $(,)?) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            return Err(format!(
                "{} != {}: {:?} != {:?}",
                stringify!($left),
                stringify!($right),
                l,
                r
            )
            .into());
        }
    }};
}

/// Runs the trials after `multiproc::init()`; in a child, `init()` never returns, so
/// no test runs twice.
pub fn run(trials: Vec<Trial>) -> ! {
    run_with_filter(trials, "info")
}

/// As [`run`], with the root's subscriber filtered by `directives` (`RUST_LOG`'s
/// syntax) instead of `info`.
pub fn run_with_filter(trials: Vec<Trial>, directives: &str) -> ! {
    multiproc::init();
    install_log_capture(directives);
    let args = Arguments::from_args();
    let conclusion = libtest_mimic::run(&args, trials);
    // A failed test may have left children running; they would be joined at exit.
    multiproc::blocking::stop_children(std::time::Duration::from_secs(5));
    conclusion.exit()
}

/// As [`run`], one trial at a time: for tests that measure the whole process (its
/// fds, threads, memory), which other trials running beside them would disturb.
pub fn run_serial(trials: Vec<Trial>) -> ! {
    multiproc::init();
    install_log_capture("info");
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let conclusion = libtest_mimic::run(&args, trials);
    multiproc::blocking::stop_children(std::time::Duration::from_secs(5));
    conclusion.exit()
}

/// A trial from a test function.
pub fn trial(name: &'static str, f: fn() -> TestResult) -> Trial {
    Trial::test(name, f)
}

static LOGS: Mutex<Vec<ChildEvent>> = Mutex::new(Vec::new());
/// Notified at each event forwarded from a child.
static LOGGED: std::sync::Condvar = std::sync::Condvar::new();

/// An event a child forwarded, as the root's subscriber saw it.
#[derive(Debug, Clone)]
pub struct ChildEvent {
    pub target: String,
    pub level: tracing::Level,
    pub process: String,
    pub message: String,
    /// Every field but `message` and `process`, as `name=value` (`Debug`).
    pub fields: Vec<String>,
    /// The spans it was in, outermost first, as `name{a=1 b=2}`.
    pub spans: Vec<String>,
}

/// (process, message) of every event forwarded from a child so far.
pub fn child_logs() -> Vec<(String, String)> {
    child_events()
        .into_iter()
        .map(|e| (e.process, e.message))
        .collect()
}

/// Every event forwarded from a child so far.
pub fn child_events() -> Vec<ChildEvent> {
    LOGS.lock().unwrap().clone()
}

/// Waits until `count` events forwarded from children match `matches`, at most
/// `timeout`; returns those seen (fewer on a timeout).
pub fn wait_child_events(
    count: usize,
    timeout: Duration,
    matches: impl Fn(&ChildEvent) -> bool,
) -> Vec<ChildEvent> {
    let deadline = Instant::now() + timeout;
    let mut logs = LOGS.lock().unwrap();
    loop {
        let seen: Vec<ChildEvent> = logs.iter().filter(|e| matches(e)).cloned().collect();
        let left = deadline.saturating_duration_since(Instant::now());
        if seen.len() >= count || left.is_zero() {
            return seen;
        }
        logs = LOGGED.wait_timeout(logs, left).unwrap().0;
    }
}

/// Fields as `name=value`, `message` and `process` apart.
#[derive(Default)]
struct Fields {
    process: Option<String>,
    message: String,
    rest: Vec<String>,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "process" => self.process = Some(format!("{value:?}")),
            "message" => self.message = format!("{value:?}"),
            name => self.rest.push(format!("{name}={value:?}")),
        }
    }
}

fn install_log_capture(directives: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::registry::LookupSpan;
    struct Capture;
    /// A span's fields, formatted, kept in its extensions.
    struct SpanFields(String);
    impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Capture {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            id: &tracing::span::Id,
            ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let mut f = Fields::default();
            attrs.record(&mut f);
            let mut all = f.rest;
            if let Some(p) = f.process {
                all.insert(0, format!("process={p}"));
            }
            if let Some(span) = ctx.span(id) {
                span.extensions_mut().insert(SpanFields(all.join(" ")));
            }
        }

        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let mut f = Fields::default();
            event.record(&mut f);
            // A child's events are those the root emits with the `process` field.
            let Some(process) = f.process else { return };
            let spans = ctx
                .event_scope(event)
                .map(|scope| {
                    scope
                        .from_root()
                        .map(|span| {
                            let ext = span.extensions();
                            let fields = ext.get::<SpanFields>().map_or("", |f| f.0.as_str());
                            format!("{}{{{fields}}}", span.name())
                        })
                        .collect()
                })
                .unwrap_or_default();
            LOGS.lock().unwrap().push(ChildEvent {
                target: event.metadata().target().to_string(),
                level: *event.metadata().level(),
                process,
                message: f.message,
                fields: f.rest,
                spans,
            });
            LOGGED.notify_all();
        }
    }
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(directives))
        .with(Capture);
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Waits until the process `pid` has exited (is gone or a zombie), at most `timeout`.
/// Waits on a pidfd, so it returns as soon as the process ends.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(pid as i32) else {
        return true;
    };
    let pidfd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(_) => return true, // no such process
    };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ts = rustix::time::Timespec::try_from(left).unwrap();
        let mut fds = [rustix::event::PollFd::new(
            &pidfd,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(n) if n > 0 => return true,
            Ok(_) => return false,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}
