//! Names where operators look: every child's `/proc/PID/comm` (what `top` shows) is its
//! name, and its command line (what `ps` and `pgrep -f` show) is `prog: name`, for
//! spawned and forked children, pool workers, managers and the forkserver; and the
//! rewrite leaves the environment whole.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::process::Command;

use common::{TestResult, trial};
use multiproc::blocking::{Connection, Pool, Process, pipe};
use multiproc::{Manager, StartMethod};

const PROBE_KEY: &str = "MULTIPROC_TITLE_PROBE";
const PROBE_VALUE: &str = "probe value = with spaces";
const COMM_LEN: usize = 15;

/// Reports what it reads of its own environment and arguments, then holds until its
/// parent has looked at it.
fn holds(mut conn: Connection) -> Result<(), multiproc::connection::Error> {
    let probe = std::env::var(PROBE_KEY).ok();
    let args: Vec<String> = std::env::args().collect();
    conn.send(&(probe, args))?;
    let _: String = conn.recv()?;
    Ok(())
}

fn returns() {}

multiproc::register!(holds, returns);

/// The program's name, as the children's titles start with it.
fn program() -> String {
    std::env::current_exe()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap()
        .trim_end_matches('\n')
        .to_owned()
}

/// The NUL-separated fields of `/proc/PID/<file>`.
fn fields(pid: u32, file: &str) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/{file}")).unwrap();
    raw.split(|&b| b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

/// Checks the command line of `pid` reads `prog: name`: the title and nothing after
/// it but empty arguments, as `ps` shows it.
fn check_title(pid: u32, name: &str) -> TestResult {
    let want = format!("{}: {name}", program());
    let cmdline = fields(pid, "cmdline");
    check!(
        cmdline.first() == Some(&want),
        "cmdline of {pid} is {cmdline:?}, not {want:?}"
    );
    check!(
        cmdline[1..].iter().all(String::is_empty),
        "cmdline of {pid} goes on after its title: {cmdline:?}"
    );
    let ps = Command::new("ps")
        .args(["-o", "args=", "-p", &pid.to_string()])
        .output()?;
    let shown = String::from_utf8_lossy(&ps.stdout);
    check!(shown.trim_end() == want, "ps shows {shown:?}, not {want:?}");
    let pgrep = Command::new("pgrep").args(["-f", "-x", &want]).output()?;
    let found = String::from_utf8_lossy(&pgrep.stdout);
    check!(
        found.split_whitespace().any(|p| p == pid.to_string()),
        "pgrep -f -x {want:?} found {found:?}, not {pid}"
    );
    Ok(())
}

/// Checks that the environment block of `pid` is still one of `KEY=VALUE` entries,
/// none of them a piece of a title.
fn check_environ(pid: u32) -> TestResult {
    let env = fields(pid, "environ");
    let program = program();
    for var in env.iter().filter(|v| !v.is_empty()) {
        check!(var.contains('='), "environ of {pid} holds {var:?}");
        check!(
            !var.contains(&format!("{program}: ")),
            "environ of {pid} holds a title: {var:?}"
        );
    }
    Ok(())
}

fn child_is_named(method: StartMethod, name: Option<&str>) -> TestResult {
    let (mut ours, theirs) = pipe(true)?;
    let mut p = Process::new(holds, theirs)
        .start_method(method)
        .env(PROBE_KEY, PROBE_VALUE);
    if let Some(name) = name {
        p = p.named(name);
    }
    p.start()?;
    let (probe, args): (Option<String>, Vec<String>) = ours.recv()?;
    let pid = p.pid().unwrap();
    let name = p.name().to_owned();
    let result = (|| {
        check_eq!(probe.as_deref(), Some(PROBE_VALUE));
        let cut: String = {
            let mut cut = String::new();
            for c in name.chars() {
                if cut.len() + c.len_utf8() > COMM_LEN {
                    break;
                }
                cut.push(c);
            }
            cut
        };
        check_eq!(comm(pid), cut);
        check_title(pid, &name)?;
        check_eq!(args.first(), Some(&format!("{}: {name}", program())));
        check_environ(pid)
    })();
    ours.send(&"done".to_string())?;
    check_eq!(p.join()?, multiproc::ExitReason::Normal);
    result
}

fn spawned_child_shows_its_name() -> TestResult {
    child_is_named(StartMethod::Spawn, None)
}

fn forked_child_shows_its_name() -> TestResult {
    child_is_named(StartMethod::Forkserver, None)
}

fn long_names_are_cut_in_comm_only() -> TestResult {
    let long = "a-process-with-a-rather-long-name-é";
    child_is_named(StartMethod::Spawn, Some(long))?;
    child_is_named(StartMethod::Forkserver, Some(long))
}

/// This process's forkserver: a child of ours named `forkserver`.
fn forkserver_shows_its_name() -> TestResult {
    // A forked child makes sure the forkserver runs.
    let mut p = Process::new(returns, ()).start_method(StartMethod::Forkserver);
    p.start()?;
    p.join()?;
    let me = std::process::id();
    let server = children_of(me)
        .into_iter()
        .find(|&pid| comm(pid) == "forkserver");
    let Some(server) = server else {
        return Err(format!("no child of {me} is named forkserver").into());
    };
    check_title(server, "forkserver")?;
    check_environ(server)
}

fn pool_workers_show_their_names() -> TestResult {
    for method in [StartMethod::Spawn, StartMethod::Forkserver] {
        let pool = Pool::builder().processes(2).start_method(method).start()?;
        pool.wait_ready(None)?;
        let workers = pool.workers();
        check_eq!(workers.len(), 2);
        for w in &workers {
            check!(w.name.starts_with("PoolWorker-"), "{}", w.name);
            check_eq!(comm(w.pid), w.name);
            check_title(w.pid, &w.name)?;
        }
        pool.close();
        pool.join()?;
    }
    Ok(())
}

fn manager_shows_its_name() -> TestResult {
    let manager = Manager::start()?;
    let process = manager.process().unwrap();
    let (pid, name) = (process.pid().unwrap(), process.name().to_owned());
    check!(name.starts_with("Manager-"), "{name}");
    check_eq!(comm(pid), name);
    check_title(pid, &name)?;
    drop(manager);
    Ok(())
}

fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

fn main() {
    common::run(vec![
        trial("spawned_child_shows_its_name", spawned_child_shows_its_name),
        trial("forked_child_shows_its_name", forked_child_shows_its_name),
        trial(
            "long_names_are_cut_in_comm_only",
            long_names_are_cut_in_comm_only,
        ),
        trial("forkserver_shows_its_name", forkserver_shows_its_name),
        trial(
            "pool_workers_show_their_names",
            pool_workers_show_their_names,
        ),
        trial("manager_shows_its_name", manager_shows_its_name),
    ]);
}
