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
    multiproc::init();
    install_log_capture();
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
    install_log_capture();
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

static LOGS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// (process, message) of every event forwarded from a child so far.
pub fn child_logs() -> Vec<(String, String)> {
    LOGS.lock().unwrap().clone()
}

fn install_log_capture() {
    use tracing_subscriber::layer::SubscriberExt;
    struct Capture;
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if event.metadata().target() != "multiproc::child" {
                return;
            }
            #[derive(Default)]
            struct Fields(String, String);
            impl tracing::field::Visit for Fields {
                fn record_debug(
                    &mut self,
                    field: &tracing::field::Field,
                    value: &dyn std::fmt::Debug,
                ) {
                    match field.name() {
                        "process" => self.0 = format!("{value:?}"),
                        "message" => self.1 = format!("{value:?}"),
                        _ => {}
                    }
                }
            }
            let mut f = Fields::default();
            event.record(&mut f);
            LOGS.lock().unwrap().push((f.0, f.1));
        }
    }
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
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
