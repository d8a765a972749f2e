//! The live observer: a supervised tree with a crash-prone child, and a pool at work,
//! shown in a browser as it runs.
//!
//! ```text
//! cargo run --example observe --features observer          # then open the URL it prints
//! cargo run --example observe --features observer -- 9000  # another port (0: any free one)
//! ```
//!
//! A supervisor runs `api` (which starts a child of its own), `cache`, and
//! `crash_prone`, which dies after a moment by a panic, an abort or `exit(3)` and is
//! restarted; a pool of three workers maps batches of work, and retires each worker
//! after 40 tasks. The page at the printed URL shows the tree, each process's state,
//! restarts, last exit, memory and CPU over the last minutes, and the log of exits and
//! restarts as they happen. Ctrl-C stops it all.
//!
//! The port comes from the first argument, else `MULTIPROC_OBSERVE_PORT`, else 7878;
//! `MULTIPROC_OBSERVE_TOKEN` requires a token. With `MULTIPROC_OBSERVE_EXIT_AFTER=N`
//! it stops by itself after `crash_prone`'s Nth restart, once it has read its own
//! `/api/snapshot` and printed what it says.

use std::error::Error;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use multiproc::blocking::observe::{self, Observer};
use multiproc::blocking::{Pool, Process, SupervisorRef};
use multiproc::{Backoff, RestartIntensity, Supervisor, SupervisorEvent, SupervisorFlags};

const DEFAULT_PORT: u16 = 7878;
/// Items in one batch of the pool's work, and the pause between batches.
const BATCH: u64 = 12;
const PAUSE: Duration = Duration::from_millis(400);

fn steady() {
    multiproc::blocking::wait_for_stop();
}

/// Starts a child of its own, so that the tree has some depth.
fn api() -> Result<(), multiproc::Error> {
    let mut backend = Process::new(steady, ()).named("api-backend");
    backend.start()?;
    multiproc::blocking::wait_for_stop();
    Ok(())
}

fn crash_prone() {
    // Different in each incarnation: the pid picks the moment and the way to die.
    let dice = std::process::id().wrapping_mul(2_654_435_761) >> 16;
    std::thread::sleep(Duration::from_millis(500 + u64::from(dice % 2000)));
    match dice % 3 {
        0 => panic!("crash_prone lost its upstream"),
        1 => std::process::abort(),
        _ => std::process::exit(3),
    }
}

/// Some CPU and some memory: the longest Collatz chain below `n`'s range.
fn work(n: u64) -> u64 {
    let scratch: Vec<u64> = (0..20_000 + n * 1_000).collect();
    let mut best = 0;
    for start in 1..150_000 + n * 5_000 {
        let (mut x, mut steps) = (start, 0u64);
        while x != 1 {
            x = if x % 2 == 0 { x / 2 } else { 3 * x + 1 };
            steps += 1;
        }
        best = best.max(steps);
    }
    best + scratch[scratch.len() - 1] % 2
}
multiproc::register!(steady, api, crash_prone, work);

/// Reads `path` from the observer at `addr`, as a browser would.
fn fetch(
    addr: std::net::SocketAddr,
    path: &str,
    token: Option<&str>,
) -> Result<String, Box<dyn Error>> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, body) = answer.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(format!("{path}: {}", head.lines().next().unwrap_or_default()).into());
    }
    Ok(body.to_string())
}

#[multiproc::main]
fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt::init();
    let port: u16 = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => std::env::var("MULTIPROC_OBSERVE_PORT").map_or(Ok(DEFAULT_PORT), |p| p.parse())?,
    };
    let exit_after: Option<u32> = std::env::var("MULTIPROC_OBSERVE_EXIT_AFTER")
        .ok()
        .map(|n| n.parse())
        .transpose()?;
    let token = std::env::var("MULTIPROC_OBSERVE_TOKEN").ok();

    let flags = SupervisorFlags {
        intensity: RestartIntensity {
            max_restarts: 100,
            within: Duration::from_secs(60),
        },
        backoff: Backoff {
            min: Duration::from_millis(200),
            ..Backoff::default()
        },
        ..SupervisorFlags::default()
    };
    let sup = SupervisorRef::start(
        Supervisor::new(flags)
            .child(multiproc::function_child("api", api, ())?)
            .child(multiproc::function_child("cache", steady, ())?)
            .child(multiproc::function_child("crash_prone", crash_prone, ())?),
    )?;
    let mut events = sup.events();

    // ANCHOR: serve
    let mut builder = Observer::builder().bind(([127, 0, 0, 1], port).into());
    if let Some(token) = &token {
        builder = builder.token(token.clone());
    }
    let observer = observe::serve(builder)?;
    println!("observer: {}", observer.url());
    // ANCHOR_END: serve

    let pool = Pool::builder()
        .processes(3)
        .max_tasks_per_child(40)
        .start()?;
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (pool, stop) = (pool.clone(), Arc::clone(&stop));
        std::thread::spawn(move || -> Result<(), multiproc::PoolError> {
            while !stop.load(Ordering::Relaxed) {
                pool.map(work, 0..BATCH)?;
                // Pace the batches, so that the CPU figures rise and fall.
                std::thread::sleep(PAUSE);
            }
            Ok(())
        })
    };

    match exit_after {
        None => {
            println!("Ctrl-C to stop");
            multiproc::blocking::wait_for_stop();
        }
        Some(n) => {
            let mut restarts = 0;
            while restarts < n {
                match events.recv() {
                    Some(SupervisorEvent::ChildExited { id, reason }) if id == "crash_prone" => {
                        println!("crash_prone exited: {reason}");
                    }
                    Some(SupervisorEvent::Restarted { id, name, .. }) if id == "crash_prone" => {
                        restarts += 1;
                        println!("crash_prone restarted as {name} (restart {restarts})");
                    }
                    Some(_) => {}
                    None => return Err("the supervisor ended".into()),
                }
            }
            let body = fetch(observer.local_addr(), "/api/snapshot", token.as_deref())?;
            let snap: serde_json::Value = serde_json::from_str(&body)?;
            let list = snap["processes"].as_array().ok_or("no processes")?;
            let crash = list.iter().find(|p| p["supervised_as"] == "crash_prone");
            let workers = list.iter().filter(|p| p["kind"] == "pool_worker").count();
            println!(
                "served /api/snapshot: {} processes, {workers} pool workers, crash_prone restarts={}",
                list.len(),
                crash.map_or(serde_json::Value::Null, |p| p["restarts"].clone()),
            );
        }
    }

    stop.store(true, Ordering::Relaxed);
    // A pool stopped by Ctrl-C fails its batch: that is the end asked for.
    let _ = worker.join();
    pool.close();
    pool.join()?;
    sup.shutdown();
    observe::shutdown(observer);
    println!("stopped");
    Ok(())
}
