//! What a process holds, as the soak tests measure it: open fds, threads, resident
//! memory; how many iterations a soak runs; and busy CPUs to run it beside.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// How many times each soak loop runs: enough to show a leak of one fd per iteration
/// a thousand times over, small enough for CI. `MULTIPROC_SOAK_ITERATIONS` sets it.
pub fn iterations() -> usize {
    std::env::var("MULTIPROC_SOAK_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000)
}

/// A process's open fds, threads and resident memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub fds: usize,
    pub threads: usize,
    pub rss_kib: u64,
}

impl Usage {
    /// This process's, now.
    pub fn now() -> Usage {
        let count = |dir: &str| {
            std::fs::read_dir(dir)
                .unwrap_or_else(|e| panic!("cannot read {dir}: {e}"))
                .count()
        };
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/self/status");
        Usage {
            fds: count("/proc/self/fd"),
            threads: count("/proc/self/task"),
            rss_kib,
        }
    }
}

/// `fds=N threads=N rss_kib=N`, which [`FromStr`] reads back: how a program under test
/// reports its usage to the test.
impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fds={} threads={} rss_kib={}",
            self.fds, self.threads, self.rss_kib
        )
    }
}

impl FromStr for Usage {
    type Err = String;

    fn from_str(s: &str) -> Result<Usage, String> {
        let field = |name: &str| {
            s.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("no {name} in {s:?}"))
        };
        Ok(Usage {
            fds: field("fds")? as usize,
            threads: field("threads")? as usize,
            rss_kib: field("rss_kib")?,
        })
    }
}

/// Threads that keep all CPUs but one busy, as other programs on a loaded machine do,
/// until dropped: some leaks show only when the process is preempted at the wrong
/// moment (a supervisor once kept the fds of a child that exited as it was started).
pub struct BusyCpus {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl BusyCpus {
    pub fn start() -> BusyCpus {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..cpus.saturating_sub(1).max(1))
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        BusyCpus { stop, threads }
    }
}

impl Drop for BusyCpus {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
