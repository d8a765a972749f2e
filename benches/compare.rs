//! `cargo bench --bench compare`: multiproc side by side with CPython's `multiprocessing`
//! and with bare syscalls (`raw`), in one run, one line per scenario and reference.
//!
//! ```text
//! cargo bench --bench compare                                   # every scenario
//! cargo bench --bench compare -- spawn_join call_roundtrip      # filters (substrings)
//! cargo bench --bench compare -- pool apply_async imap          # the Pool scenarios
//! cargo bench --bench compare -- queue lock                     # Queue and Lock
//! cargo bench --bench compare -- soak                           # the soak loops
//! ```
//!
//! Each round takes one sample of every implementation in turn, so multiproc and its
//! references share the same noise; figures are medians over the rounds, after a
//! warm-up. What each scenario measures and how to read the lines: benches/README.md.

use std::cell::Cell;
use std::error::Error;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use multiproc::StartMethod;

// Cargo would take a `benches/<name>.rs` for a bench target of its own: the scenario
// families live in benches/compare/ and are pulled in by path.
// The tests' pids cgroups, shared: a bench cannot import the tests' module.
#[path = "../tests/common/cgroup.rs"]
#[allow(dead_code, unreachable_pub)]
mod cgroup;
#[path = "compare/engine.rs"]
mod engine;
#[path = "compare/far.rs"]
mod far;
#[path = "compare/ipc.rs"]
mod ipc;
#[path = "compare/node.rs"]
mod node;
#[path = "compare/pool.rs"]
mod pool;
#[path = "compare/process.rs"]
mod process;
#[path = "compare/python.rs"]
mod python;
#[path = "compare/queue_lock.rs"]
mod queue_lock;
#[path = "compare/raw.rs"]
mod raw;
#[path = "compare/shared.rs"]
mod shared;
#[path = "compare/sibling.rs"]
mod sibling;
#[path = "compare/soak.rs"]
mod soak;
#[path = "compare/soak_child.rs"]
mod soak_child;
#[path = "compare/stamp.rs"]
mod stamp;

use far::{remote_lock_roundtrip, remote_rlock_roundtrip};
use ipc::{call_roundtrip, call_roundtrip_1k, call_throughput, stream};
use node::{node_down_detect, pool_map_2nodes, remote_call_roundtrip};
use pool::{apply_async_latency, imap_unordered_chunk1, pool_map, pool_start, pool_worker_killed};
use process::{idle_rss, restart, spawn_join, spawn_join_forkserver, tree_1000};
use python::Python;
use queue_lock::{lock_contended_2, lock_cross_process, queue_1to1};
use raw::raw_role;
use shared::{manager_dict, shm_bandwidth, value_locked_2proc};
use sibling::sibling_call_roundtrip;

type Res<T = ()> = Result<T, Box<dyn Error>>;

/// Set on the bench binary's own `raw` children: which role `main` plays.
const ROLE_ENV: &str = "MULTIPROC_BENCH_ROLE";
/// Restricts the references measured: a comma-separated list (`raw,python`); all by default.
const REFS_ENV: &str = "MULTIPROC_BENCH_REFS";
/// Rounds per scenario (each round samples every implementation once).
const ROUNDS: usize = 9;
/// Python `spawn` processes per round (about 60 ms each).
const PY_SPAWN_BATCH: usize = 3;
/// Messages per round of `stream_1k` (100 MB).
const STREAM_1K_COUNT: usize = 100_000;
/// Messages per round of `stream_1m` (1 GB).
const STREAM_1M_COUNT: usize = 1000;
/// How long a child gets to stop before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Items of `pool_map_1e6` (Python's default chunksize).
const POOL_MAP_ITEMS: u64 = 1_000_000;
/// Items of `pool_map_chunk1` and `imap_unordered_chunk1` (chunksize 1).
const POOL_CHUNK1_ITEMS: u64 = 100_000;
/// Bounds every wait of the pool scenarios on something that should come at once.
const POOL_WAIT: Duration = Duration::from_secs(10);
/// The references that a Python script measures.
const PY_REFS: [&str; 4] = ["python", "python-spawn", "python-manager", "python-mplock"];

const SCENARIOS: &[&str] = &[
    "spawn_join",
    "spawn_join_forkserver",
    "restart",
    "restart_forkserver",
    "tree_1000",
    "call_roundtrip",
    "call_roundtrip_async",
    "call_roundtrip_1k",
    "call_throughput",
    "sibling_call_roundtrip",
    "stream_1k",
    "stream_1m",
    "idle_rss",
    "pool_map_1e6",
    "pool_map_chunk1",
    "imap_unordered_chunk1",
    "apply_async_latency",
    "pool_start",
    "pool_start_spawn",
    "pool_start_forkserver",
    "pool_worker_killed",
    "queue_1to1",
    "joinable_queue_1to1",
    "lock_cross_process",
    "lock_contended_2",
    "value_locked_2proc",
    "shm_bandwidth",
    "manager_dict",
    "remote_call_roundtrip",
    "node_down_detect",
    "pool_map_2nodes",
    "remote_lock_roundtrip",
    "remote_rlock_roundtrip",
];

// ---------------------------------------------------------------------------------
// Entry.

fn main() -> Res {
    multiproc::init();
    if let Ok(role) = std::env::var(ROLE_ENV) {
        if let Some(loop_name) = role.strip_prefix("soak-") {
            return soak_child::child(loop_name);
        }
        return raw_role(&role);
    }
    // `cargo bench` passes `--bench`; `cargo test --all-targets` and nextest's listing
    // run this binary without it, and must not start a ten-minute benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let started = Instant::now();
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    // A soak scenario takes minutes: only a filter that names `soak` selects one, so
    // that `pool` or `restart` still selects the quick scenarios alone.
    let matches =
        |s: &str, f: &str| s.contains(f) && (!s.starts_with("soak") || f.contains("soak"));
    let selected: Vec<&str> = SCENARIOS
        .iter()
        .chain(&soak::SCENARIOS)
        .copied()
        .filter(|s| filters.is_empty() || filters.iter().any(|f| matches(s, f)))
        .collect();
    if selected.is_empty() {
        return Err(format!(
            "no scenario matches {filters:?}; scenarios: {} {}",
            SCENARIOS.join(" "),
            soak::SCENARIOS.join(" ")
        )
        .into());
    }
    let any_py = PY_REFS.iter().any(|r| wanted(r));
    let py = if any_py { Python::detect() } else { None };
    println!(
        "# compare: {} CPUs, rounds={ROUNDS}, references={}, python: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::var(REFS_ENV).unwrap_or_else(|_| "all".into()),
        py.as_ref().map_or("-", |p| p.version.as_str())
    );
    if py.is_none() && any_py {
        println!("# python3 not found: skipping python references");
    }
    let py = py.as_ref();
    let has = |s: &str| selected.contains(&s);
    let timed = |name: &str, run: &dyn Fn() -> Res| -> Res {
        let t0 = Instant::now();
        run()?;
        println!("# {name} took {:.1} s", t0.elapsed().as_secs_f64());
        Ok(())
    };
    if has("spawn_join") {
        timed("spawn_join", &|| spawn_join(py))?;
    }
    if has("spawn_join_forkserver") {
        timed("spawn_join_forkserver", &|| spawn_join_forkserver(py))?;
    }
    if has("restart") {
        timed("restart", &|| restart(py, StartMethod::Spawn))?;
    }
    if has("restart_forkserver") {
        timed("restart_forkserver", &|| {
            restart(py, StartMethod::Forkserver)
        })?;
    }
    if has("tree_1000") {
        timed("tree_1000", &tree_1000)?;
    }
    // The blocking round trip's median, which `apply_async_latency` is set against.
    let roundtrip_us = Cell::new(None);
    if has("call_roundtrip") || has("call_roundtrip_async") {
        timed("call_roundtrip", &|| {
            roundtrip_us.set(call_roundtrip(
                py,
                has("call_roundtrip"),
                has("call_roundtrip_async"),
            )?);
            Ok(())
        })?;
    }
    if has("call_roundtrip_1k") {
        timed("call_roundtrip_1k", &|| call_roundtrip_1k(py))?;
    }
    if has("call_throughput") {
        timed("call_throughput", &|| call_throughput(py))?;
    }
    if has("sibling_call_roundtrip") {
        timed("sibling_call_roundtrip", &sibling_call_roundtrip)?;
    }
    if has("stream_1k") {
        timed("stream_1k", &|| {
            stream("stream_1k", 1024, STREAM_1K_COUNT, py)
        })?;
    }
    if has("stream_1m") {
        timed("stream_1m", &|| {
            stream("stream_1m", 1 << 20, STREAM_1M_COUNT, py)
        })?;
    }
    if has("idle_rss") {
        timed("idle_rss", &|| idle_rss(py))?;
    }
    if has("pool_map_1e6") {
        timed("pool_map_1e6", &|| {
            pool_map("pool_map_1e6", POOL_MAP_ITEMS, None, py)
        })?;
    }
    if has("pool_map_chunk1") {
        timed("pool_map_chunk1", &|| {
            pool_map("pool_map_chunk1", POOL_CHUNK1_ITEMS, Some(1), py)
        })?;
    }
    if has("imap_unordered_chunk1") {
        timed("imap_unordered_chunk1", &|| imap_unordered_chunk1(py))?;
    }
    if has("apply_async_latency") {
        timed("apply_async_latency", &|| {
            apply_async_latency(py, roundtrip_us.get())
        })?;
    }
    if has("pool_start") {
        timed("pool_start", &|| pool_start(py, "pool_start", None))?;
    }
    if has("pool_start_spawn") {
        timed("pool_start_spawn", &|| {
            pool_start(py, "pool_start_spawn", Some(StartMethod::Spawn))
        })?;
    }
    if has("pool_start_forkserver") {
        timed("pool_start_forkserver", &|| {
            pool_start(py, "pool_start_forkserver", Some(StartMethod::Forkserver))
        })?;
    }
    if has("pool_worker_killed") {
        timed("pool_worker_killed", &|| pool_worker_killed(py))?;
    }
    if has("queue_1to1") {
        timed("queue_1to1", &|| queue_1to1(py, false))?;
    }
    if has("joinable_queue_1to1") {
        timed("joinable_queue_1to1", &|| queue_1to1(py, true))?;
    }
    if has("lock_cross_process") {
        timed("lock_cross_process", &|| lock_cross_process(py))?;
    }
    if has("lock_contended_2") {
        timed("lock_contended_2", &|| lock_contended_2(py))?;
    }
    if has("value_locked_2proc") {
        timed("value_locked_2proc", &|| value_locked_2proc(py))?;
    }
    if has("shm_bandwidth") {
        timed("shm_bandwidth", &|| shm_bandwidth(py))?;
    }
    if has("manager_dict") {
        timed("manager_dict", &|| manager_dict(py))?;
    }
    if has("remote_call_roundtrip") {
        timed("remote_call_roundtrip", &|| remote_call_roundtrip(py))?;
    }
    if has("node_down_detect") {
        timed("node_down_detect", &node_down_detect)?;
    }
    if has("pool_map_2nodes") {
        timed("pool_map_2nodes", &pool_map_2nodes)?;
    }
    if has("remote_lock_roundtrip") {
        timed("remote_lock_roundtrip", &remote_lock_roundtrip)?;
    }
    if has("remote_rlock_roundtrip") {
        timed("remote_rlock_roundtrip", &remote_rlock_roundtrip)?;
    }
    for scenario in soak::SCENARIOS.into_iter().filter(|s| has(s)) {
        soak::run(scenario)?;
    }
    println!("# total time: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Whether `reference` is measured: all are, unless [`REFS_ENV`] lists some.
fn wanted(reference: &str) -> bool {
    static REFS: OnceLock<Option<Vec<String>>> = OnceLock::new();
    REFS.get_or_init(|| {
        std::env::var(REFS_ENV)
            .ok()
            .map(|v| v.split(',').map(|r| r.trim().to_string()).collect())
    })
    .as_ref()
    .is_none_or(|refs| refs.iter().any(|r| r == reference))
}

// ---------------------------------------------------------------------------------
// Helpers of several families.

/// SIGKILL to `pid`.
fn kill(pid: u32) -> Res {
    let pid = rustix::process::Pid::from_raw(pid as i32).ok_or("bad pid")?;
    rustix::process::kill_process(pid, rustix::process::Signal::KILL)?;
    Ok(())
}

/// A `Field: <n> kB` line of `/proc/<pid>/status`, in KiB.
fn proc_status(pid: &str, field: &str) -> Res<f64> {
    proc_field(pid, "status", field)
}

/// A `Field: <n> kB` line of `/proc/<pid>/<file>`, in KiB.
fn proc_field(pid: &str, file: &str, field: &str) -> Res<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/{file}"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'));
    let kib = line
        .and_then(|l| l.split_whitespace().nth(1))
        .ok_or_else(|| format!("no {field} in /proc/{pid}/{file}"))?;
    Ok(kib.parse()?)
}

// ---------------------------------------------------------------------------------
// Statistics and output.

/// Samples of one implementation, grouped by round.
#[derive(Debug, Default)]
struct Samples(Vec<Vec<f64>>);

impl Samples {
    fn push(&mut self, round: Vec<f64>) {
        self.0.push(round);
    }

    fn all(&self) -> Vec<f64> {
        self.0.concat()
    }

    fn round_medians(&self) -> Vec<f64> {
        self.0.iter().map(|r| median(r)).collect()
    }
}

#[derive(Debug, Clone, Copy)]
enum Better {
    Lower,
    Higher,
}

struct Scenario {
    name: &'static str,
    unit: &'static str,
    better: Better,
}

impl Scenario {
    fn ratio(&self, mp: f64, reference: f64) -> f64 {
        match self.better {
            Better::Lower => reference / mp,
            Better::Higher => mp / reference,
        }
    }

    /// Prints the scenario's line for `reference`, unless it was not measured; with
    /// no reference at all (`MULTIPROC_BENCH_REFS=none`), multiproc's own line, once.
    fn report(&self, reference: &str, mp: &Samples, rf: &Samples) {
        if rf.0.is_empty() {
            if std::env::var(REFS_ENV).is_ok_and(|r| r == "none") && reference == "python" {
                let mut rounds = mp.round_medians();
                rounds.sort_by(f64::total_cmp);
                println!(
                    "{}: multiproc={} {} {}; rounds {:?}",
                    self.name,
                    num(median(&mp.all())),
                    self.unit,
                    spread(&mp.all()),
                    rounds.iter().map(|&v| num(v)).collect::<Vec<_>>()
                );
            }
            return;
        }
        let (name, unit) = (self.name, self.unit);
        let (m, r) = (median(&mp.all()), median(&rf.all()));
        println!(
            "{name} vs {reference}: multiproc={} {unit} reference={} {unit} ratio={}",
            num(m),
            num(r),
            ratio(self.ratio(m, r))
        );
        let mut per_round: Vec<f64> = mp
            .round_medians()
            .iter()
            .zip(rf.round_medians())
            .map(|(&m, r)| self.ratio(m, r))
            .collect();
        per_round.sort_by(f64::total_cmp);
        println!(
            "#   multiproc {}; {reference} {}; ratio per round {}..{}",
            spread(&mp.all()),
            spread(&rf.all()),
            per_round.first().map_or("-".into(), |&v| ratio(v)),
            per_round.last().map_or("-".into(), |&v| ratio(v)),
        );
    }
}

fn detail(label: &str, unit: &str, s: &Samples) {
    let all = s.all();
    if !all.is_empty() {
        println!(
            "# {label}: median={} {unit} {}",
            num(median(&all)),
            spread(&all)
        );
    }
}

fn spread(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("min={} max={} n={}", num(min), num(max), v.len())
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// A ratio: two decimals, or two significant digits below 0.1 (0.0011, not 0.00).
fn ratio(v: f64) -> String {
    if v.abs() >= 0.1 || v == 0.0 || !v.is_finite() {
        return format!("{v:.2}");
    }
    let decimals = (1.0 - v.abs().log10().floor()) as usize;
    format!("{v:.decimals$}")
}

/// Three significant digits or so, without exponents.
fn num(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        a if a >= 1.0 => format!("{v:.2}"),
        _ => format!("{v:.3}"),
    }
}

fn ms(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1e3
}

fn us(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1e6
}
