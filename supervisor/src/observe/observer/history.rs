//! Each process's figures over the last minutes: a ring of samples per process, a
//! bounded number of processes, and the CPU share worked out between two samples.
//!
//! # Invariants
//!
//! - A ring holds at most `len` samples, oldest first.
//! - At most `max_processes` rings are kept: a process not seen for a whole window is
//!   forgotten, and past the bound the one seen longest ago goes first.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// One sample of one process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Sample {
    /// Wall-clock time, in milliseconds since the Unix epoch (for the page's axis).
    pub(super) t_ms: u64,
    /// Resident memory, bytes.
    pub(super) rss: Option<u64>,
    /// CPU use since the previous sample, in percent of one core.
    pub(super) cpu: Option<f32>,
    /// Messages waiting in its mailbox.
    pub(super) mailbox: Option<usize>,
}

/// What a process measured at one round.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reading {
    /// Its pid: a new pid under the same key (a restart) starts its CPU count anew.
    pub(super) pid: Option<u32>,
    pub(super) rss: Option<u64>,
    /// Its CPU time so far.
    pub(super) cpu_time: Option<Duration>,
    pub(super) mailbox: Option<usize>,
}

#[derive(Debug)]
struct Ring {
    samples: VecDeque<Sample>,
    /// The pid, CPU time and monotonic time of the previous reading with a CPU time.
    last_cpu: Option<(Option<u32>, Duration, Duration)>,
    /// The round it was last seen at.
    seen: u64,
}

/// The figures of every process seen, over the last `len` rounds.
#[derive(Debug)]
pub(super) struct History {
    len: usize,
    max_processes: usize,
    round: u64,
    rings: HashMap<String, Ring>,
}

impl History {
    /// Keeps `len` samples of at most `max_processes` processes.
    pub(super) fn new(len: usize, max_processes: usize) -> History {
        History {
            len: len.max(1),
            max_processes: max_processes.max(1),
            round: 0,
            rings: HashMap::new(),
        }
    }

    /// Records `key`'s reading taken at `now` (monotonic, for the CPU share) and
    /// `t_ms` (wall clock); returns its CPU share since its previous reading.
    pub(super) fn record(
        &mut self,
        key: &str,
        now: Duration,
        t_ms: u64,
        r: Reading,
    ) -> Option<f32> {
        let round = self.round;
        let ring = self.rings.entry(key.to_owned()).or_insert_with(|| Ring {
            samples: VecDeque::new(),
            last_cpu: None,
            seen: round,
        });
        ring.seen = round;
        let cpu = match (ring.last_cpu, r.cpu_time) {
            (Some((pid, before, then)), Some(cpu)) if pid == r.pid && now > then => {
                let used = cpu.saturating_sub(before).as_secs_f64();
                // To a tenth of a percent: `/proc` counts CPU time in ticks, and no
                // more digits than that mean anything.
                let share = used / (now - then).as_secs_f64() * 100.0;
                Some(((share * 10.0).round() / 10.0) as f32)
            }
            _ => None,
        };
        if let Some(cpu) = r.cpu_time {
            ring.last_cpu = Some((r.pid, cpu, now));
        }
        if ring.samples.len() == self.len {
            ring.samples.pop_front();
        }
        ring.samples.push_back(Sample {
            t_ms,
            rss: r.rss,
            cpu,
            mailbox: r.mailbox,
        });
        cpu
    }

    /// Ends a round: forgets the processes not seen for a whole window, then, past
    /// the bound, those seen longest ago.
    pub(super) fn end_round(&mut self) {
        let (round, len) = (self.round, self.len as u64);
        self.rings.retain(|_, ring| round - ring.seen < len);
        if self.rings.len() > self.max_processes {
            let mut by_age: Vec<(u64, String)> = self
                .rings
                .iter()
                .map(|(key, ring)| (ring.seen, key.clone()))
                .collect();
            by_age.sort();
            let excess = self.rings.len() - self.max_processes;
            for (_, key) in by_age.into_iter().take(excess) {
                self.rings.remove(&key);
            }
        }
        self.round += 1;
    }

    /// The samples of `key`, oldest first.
    pub(super) fn get(&self, key: &str) -> Option<&VecDeque<Sample>> {
        self.rings.get(key).map(|r| &r.samples)
    }

    /// Every process's samples.
    pub(super) fn all(&self) -> impl Iterator<Item = (&str, &VecDeque<Sample>)> {
        self.rings.iter().map(|(k, r)| (k.as_str(), &r.samples))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(pid: u32, cpu_ms: u64) -> Reading {
        Reading {
            pid: Some(pid),
            rss: Some(4096),
            cpu_time: Some(Duration::from_millis(cpu_ms)),
            mailbox: None,
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn cpu_share_is_worked_out_between_two_readings_of_one_pid() {
        let mut h = History::new(10, 10);
        assert_eq!(h.record("a", secs(1), 1000, reading(7, 100)), None);
        h.end_round();
        // 500 ms of CPU over 1 s: half a core.
        assert_eq!(h.record("a", secs(2), 2000, reading(7, 600)), Some(50.0));
        h.end_round();
        // A restart under the same key: a new pid, no share until its next reading.
        assert_eq!(h.record("a", secs(3), 3000, reading(8, 10)), None);
        h.end_round();
        assert_eq!(h.record("a", secs(4), 4000, reading(8, 260)), Some(25.0));
        let cpus: Vec<_> = h.get("a").unwrap().iter().map(|s| s.cpu).collect();
        assert_eq!(cpus, [None, Some(50.0), None, Some(25.0)]);
    }

    #[test]
    fn a_ring_keeps_its_last_len_samples() {
        let mut h = History::new(3, 10);
        for i in 0..5u64 {
            h.record("a", secs(i), i, reading(1, i));
            h.end_round();
        }
        let ts: Vec<u64> = h.get("a").unwrap().iter().map(|s| s.t_ms).collect();
        assert_eq!(ts, [2, 3, 4]);
    }

    #[test]
    fn a_process_unseen_for_a_window_is_forgotten() {
        let mut h = History::new(2, 10);
        h.record("gone", secs(0), 0, reading(1, 0));
        h.end_round();
        h.record("stays", secs(1), 1, reading(2, 0));
        h.end_round();
        assert!(h.get("gone").is_some());
        h.record("stays", secs(2), 2, reading(2, 0));
        h.end_round();
        assert!(h.get("gone").is_none());
        assert!(h.get("stays").is_some());
    }

    #[test]
    fn past_the_bound_the_one_seen_longest_ago_goes() {
        let mut h = History::new(100, 2);
        h.record("old", secs(0), 0, reading(1, 0));
        h.end_round();
        h.record("mid", secs(1), 1, reading(2, 0));
        h.end_round();
        h.record("new", secs(2), 2, reading(3, 0));
        h.end_round();
        let mut keys: Vec<&str> = h.all().map(|(k, _)| k).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["mid", "new"]);
    }
}
