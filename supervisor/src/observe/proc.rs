//! What the kernel says of a process, from `/proc`: its figures (resident memory, CPU
//! time, age), its children and the name its command line gives.

use std::time::Duration;

/// A process's figures, read from `/proc/PID/stat` and `/proc/PID/statm`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Figures {
    pub(super) rss_bytes: Option<u64>,
    pub(super) cpu_time: Option<Duration>,
    pub(super) uptime: Option<Duration>,
}

/// The figures of `pid`, or `None` once it is gone.
pub(super) fn figures(pid: u32) -> Option<Figures> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses; field 3
    // follows the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    let from_ticks = |t: u64| Duration::from_secs_f64(t as f64 / ticks as f64);
    // Fields 14 and 15: user and system time; 22: start time after boot.
    let cpu_time = field(14)
        .zip(field(15))
        .map(|(user, system)| from_ticks(user + system));
    let uptime = field(22).and_then(|start| {
        let now = std::fs::read_to_string("/proc/uptime").ok()?;
        let now: f64 = now.split_whitespace().next()?.parse().ok()?;
        Some(Duration::from_secs_f64(
            (now - start as f64 / ticks as f64).max(0.0),
        ))
    });
    let rss_bytes = std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|m| m.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * rustix::param::page_size() as u64);
    Some(Figures {
        rss_bytes,
        cpu_time,
        uptime,
    })
}

/// The children of `pid`, of all its threads (a child is the child of the thread that
/// started it: here, the spawner thread).
pub(super) fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out: Vec<u32> = tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The name of a process as its command line gives it: what follows `prog: ` in a
/// multiproc process's title, else its first argument; its `comm` if it has none.
pub(super) fn name(pid: u32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let first = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    let first = String::from_utf8_lossy(first).into_owned();
    let title = format!("{}: ", crate::runtime::title::program());
    if let Some(name) = first.strip_prefix(&title) {
        return Some(name.to_owned());
    }
    if !first.is_empty() {
        return Some(first);
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end().to_owned())
}
