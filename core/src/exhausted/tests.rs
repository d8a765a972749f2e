//! Tests of which limit the facts point at.

use super::*;

fn cgroup(dir: &str, max: Option<u64>, current: u64) -> PidsCgroup {
    PidsCgroup {
        dir: dir.into(),
        max,
        current,
    }
}

/// (facts, the limit they point at), as OTP tables its clauses.
#[test]
fn a_process_limit_is_the_first_one_reached() {
    let system = ProcessFacts {
        threads: Some(500),
        threads_max: Some(100_000),
        pid_max: Some(32_768),
        ..ProcessFacts::default()
    };
    let table = [
        (
            ProcessFacts {
                cgroups: vec![cgroup("/in", Some(16), 16), cgroup("/out", Some(8), 8)],
                ..system.clone()
            },
            ProcessLimit::Cgroup {
                dir: "/in".into(),
                max: 16,
                current: 16,
            },
        ),
        (
            ProcessFacts {
                cgroups: vec![cgroup("/in", None, 40), cgroup("/out", Some(40), 40)],
                ..system.clone()
            },
            ProcessLimit::Cgroup {
                dir: "/out".into(),
                max: 40,
                current: 40,
            },
        ),
        (
            ProcessFacts {
                threads: Some(100_000),
                ..system.clone()
            },
            ProcessLimit::ThreadsMax {
                max: 100_000,
                threads: 100_000,
            },
        ),
        (
            ProcessFacts {
                threads: Some(32_468),
                ..system.clone()
            },
            ProcessLimit::PidMax {
                max: 32_768,
                threads: 32_468,
            },
        ),
        (
            ProcessFacts {
                nproc: Some(100),
                ..system.clone()
            },
            ProcessLimit::Nproc {
                soft: 100,
                hard: None,
            },
        ),
        (
            ProcessFacts {
                nproc: Some(100),
                root: true,
                ..system.clone()
            },
            ProcessLimit::Unknown(Box::new(ProcessFacts {
                nproc: Some(100),
                root: true,
                ..system.clone()
            })),
        ),
        (
            ProcessFacts {
                cgroups: vec![cgroup("/in", Some(16), 15)],
                ..system.clone()
            },
            ProcessLimit::Unknown(Box::new(ProcessFacts {
                cgroups: vec![cgroup("/in", Some(16), 15)],
                ..system.clone()
            })),
        ),
    ];
    for (facts, limit) in table {
        assert_eq!(facts.clone().limit(), limit, "{facts:?}");
    }
}

#[test]
fn a_memory_limit_is_the_map_count_then_the_address_space() {
    let table = [
        (
            MemoryFacts {
                maps: Some(65_529),
                max_map_count: Some(65_530),
                address_space: Some(10),
                used: Some(100),
                ..MemoryFacts::default()
            },
            MemoryLimit::MapCount {
                max: 65_530,
                maps: 65_529,
            },
        ),
        (
            MemoryFacts {
                requested: Some(60),
                address_space: Some(100),
                used: Some(50),
                maps: Some(10),
                max_map_count: Some(65_530),
            },
            MemoryLimit::AddressSpace {
                limit: 100,
                used: Some(50),
            },
        ),
        (
            MemoryFacts {
                requested: Some(40),
                address_space: Some(100),
                used: Some(50),
                ..MemoryFacts::default()
            },
            MemoryLimit::System,
        ),
        (MemoryFacts::default(), MemoryLimit::System),
    ];
    for (facts, limit) in table {
        assert_eq!(facts.limit(), limit, "{facts:?}");
    }
}

#[test]
fn every_message_names_its_limit_and_what_to_do() {
    let all = [
        (
            Exhausted::OpenFiles {
                soft: Some(1024),
                hard: None,
                open: None,
            },
            [
                "RLIMIT_NOFILE allows 1024 (hard limit unlimited)",
                "ulimit -n",
            ],
        ),
        (
            Exhausted::SystemFiles { max: Some(9) },
            ["fs.file-max is 9", "sysctl fs.file-max"],
        ),
        (
            Exhausted::Memory {
                requested: Some(4096),
                limit: MemoryLimit::MapCount { max: 9, maps: 9 },
            },
            ["for 4096 bytes", "vm.max_map_count is 9"],
        ),
        (
            Exhausted::Memory {
                requested: None,
                limit: MemoryLimit::AddressSpace {
                    limit: 7,
                    used: None,
                },
            },
            ["RLIMIT_AS is 7 bytes", "ulimit -v"],
        ),
        (
            Exhausted::Memory {
                requested: None,
                limit: MemoryLimit::System,
            },
            ["out of memory", "memory.max"],
        ),
        (
            Exhausted::Processes {
                limit: ProcessLimit::Cgroup {
                    dir: "/sys/fs/cgroup/job".into(),
                    max: 8,
                    current: 8,
                },
            },
            ["/sys/fs/cgroup/job/pids.max is 8", "holds 8 tasks"],
        ),
        (
            Exhausted::Processes {
                limit: ProcessLimit::ThreadsMax { max: 5, threads: 5 },
            },
            ["kernel.threads-max is 5", "sysctl kernel.threads-max"],
        ),
        (
            Exhausted::Processes {
                limit: ProcessLimit::PidMax { max: 5, threads: 5 },
            },
            ["kernel.pid_max is 5", "sysctl kernel.pid_max"],
        ),
        (
            Exhausted::Processes {
                limit: ProcessLimit::Nproc {
                    soft: 3,
                    hard: Some(4),
                },
            },
            ["RLIMIT_NPROC allows this user 3", "ulimit -u"],
        ),
        (
            Exhausted::Processes {
                limit: ProcessLimit::Unknown(Box::new(ProcessFacts {
                    cgroups: vec![cgroup("/c", Some(8), 2)],
                    pid_max: Some(32_768),
                    ..ProcessFacts::default()
                })),
            },
            ["/c/pids.max is 8 with 2 tasks", "kernel.pid_max is 32768"],
        ),
    ];
    for (e, parts) in all {
        let s = e.to_string();
        for part in parts {
            assert!(s.contains(part), "{s:?} does not say {part:?}");
        }
        assert!(s.starts_with(|c: char| c.is_lowercase()), "{s}");
        assert!(!s.ends_with('.'), "{s}");
    }
}
