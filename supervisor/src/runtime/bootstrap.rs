//! `init()`: the first line of every `main`, and the whole life of a child process.
//!
//! In the root, `init()` returns at once. In a process started by multiproc (seen by
//! an environment marker), it takes the process over and never returns into user
//! code: it sets the parent-death signal, takes the control socket off fd 0, reads the
//! Hello, checks the protocol version and build id, answers Ready, runs the entry
//! point, joins or stops its own children, reports how the entry ended and exits.
#![allow(unsafe_code)]

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use multiproc_core::{
    BootstrapError, EntryKind, ExitReport, Hello, PROTOCOL_VERSION, Packet, codec, wire,
};
use multiproc_transport::MAX_FRAME_LEN;
use tokio::sync::oneshot;

use crate::runtime;
use crate::runtime::children;
use crate::runtime::current::{self, Me, ParentProcess};
use crate::runtime::error::Error;
use crate::runtime::exit::{
    EXIT_BOOTSTRAP_FAILED, EXIT_INIT_NOT_CALLED, EXIT_PARENT_GONE, exit_child, exit_now,
};
use crate::runtime::handoff::{ENV_BOOTSTRAP, ENV_PARENT_PID, take_control_socket};
use crate::runtime::link::Outgoing;
use crate::runtime::panic::{install_panic_hook, panic_message, take_panic};
use crate::runtime::registry::EntryOutcome;
use crate::runtime::ring::Rings;
use crate::runtime::router;
use crate::runtime::title;
use crate::runtime::{heartbeat, logging, registry, signals, uplink};

/// Most file descriptors a Hello may carry.
const MAX_HELLO_FDS: usize = 65;

static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// What a service runs in `init()` of a program started fresh (not a child), before
/// `main` goes on; a hook may take the process over and never return.
#[linkme::distributed_slice]
pub(crate) static FRESH_START: [fn()];

/// Makes this program able to start multiproc child processes; call it first in `main`.
///
/// Every multiproc child is this same program, started again. In the root process
/// `init()` returns at once; in a child it runs the child's entry point and exits,
/// never returning into `main`. Code before `init()` therefore runs again in every
/// child, which is why it must come first (it is Python's
/// `if __name__ == '__main__':` guard).
///
/// With `#[tokio::main]`, the runtime starts before the body of `main` runs; call
/// `init()` from a plain `fn main` and build the runtime after it instead, so a child
/// starts with one thread and none of the parent's runtime.
pub fn init() {
    if INITIALIZED.swap(true, Ordering::SeqCst) {
        return;
    }
    raise_open_files_limit();
    if std::env::var_os(crate::runtime::handoff::ENV_FORKSERVER).is_some() {
        crate::runtime::forkserver::serve(forked_child_main);
    }
    if std::env::var_os(ENV_BOOTSTRAP).is_none() {
        // A program started fresh: a service may take it over (node mode, when the
        // environment asks for it), registered without the runtime naming it.
        for hook in FRESH_START {
            hook();
        }
        return;
    }
    current::IS_CHILD.store(true, Ordering::Relaxed);
    let code = child_main(Origin::Spawned);
    exit_child(code);
}

/// How a child came to be.
enum Origin {
    /// Executed by its parent: its OS parent is its parent in the tree.
    Spawned,
    /// Forked by a forkserver for `logical_parent`, which it must watch instead: the
    /// forkserver may die without its children.
    Forked { logical_parent: u32 },
}

/// The life of a child forked by the forkserver (fd 0 is already its socket).
pub(crate) fn forked_child_main(logical_parent: u32) -> ! {
    INITIALIZED.store(true, Ordering::SeqCst);
    current::IS_CHILD.store(true, Ordering::Relaxed);
    let code = child_main(Origin::Forked { logical_parent });
    exit_child(code)
}

/// Raises the soft limit on open files to the hard one, as Go's runtime does: every
/// child costs its parent a few descriptors (socket, pidfd), and the common soft limit
/// of 1024 would stop a supervisor at a few hundred children.
fn raise_open_files_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        );
    }
}

/// Ends this process when it was started by multiproc (a child or the forkserver) and
/// reached a call that starts processes without `init()`: going on would run the
/// program again as a new root in every generation, a fork bomb. The parent sees the
/// distinctive status and reports [`Error::InitNotCalled`].
pub(crate) fn check_init() {
    if INITIALIZED.load(Ordering::SeqCst) || !started_by_multiproc() {
        return;
    }
    eprintln!("multiproc: {}", Error::InitNotCalled);
    exit_now(EXIT_INIT_NOT_CALLED);
}

/// Whether this process was started by multiproc, whatever its `main` has done since.
fn started_by_multiproc() -> bool {
    // Named here, so that the linker keeps the object holding the `.init_array` entry
    // in every program that can start processes.
    let _ = std::hint::black_box(&TIE_TO_PARENT);
    STARTED_BY_MULTIPROC.load(Ordering::Relaxed)
        || std::env::var_os(ENV_BOOTSTRAP).is_some()
        || std::env::var_os(crate::runtime::handoff::ENV_FORKSERVER).is_some()
}

/// Set before `main` in a process started by multiproc.
static STARTED_BY_MULTIPROC: AtomicBool = AtomicBool::new(false);

/// Runs before `main` (and so before any user code) in every process of a program that
/// links multiproc: a child or forkserver is tied to its parent's life here, whether or
/// not `main` ever calls `init()`. A `main` that forgets `init()` then cannot outlive
/// its parent, whatever it does before it reaches a library call that ends it.
#[used]
#[unsafe(link_section = ".init_array")]
static TIE_TO_PARENT: extern "C" fn() = tie_to_parent;

extern "C" fn tie_to_parent() {
    // Only libc here: the Rust runtime has not started yet. The names are those of
    // ENV_BOOTSTRAP, ENV_FORKSERVER and ENV_PARENT_PID.
    // SAFETY: getenv, prctl, getppid and _exit are safe to call before `main`; the
    // environment is not written concurrently, as no other thread exists yet.
    unsafe {
        let marked = !libc::getenv(c"MULTIPROC_BOOTSTRAP".as_ptr()).is_null()
            || !libc::getenv(c"MULTIPROC_FORKSERVER".as_ptr()).is_null();
        if !marked {
            return;
        }
        STARTED_BY_MULTIPROC.store(true, Ordering::Relaxed);
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        let expected = libc::getenv(c"MULTIPROC_PARENT_PID".as_ptr());
        let expected = if expected.is_null() {
            None
        } else {
            std::ffi::CStr::from_ptr(expected)
                .to_str()
                .ok()
                .and_then(|p| p.parse::<libc::pid_t>().ok())
        };
        // The parent died between starting us and our prctl: nobody would kill us.
        if expected != Some(libc::getppid()) {
            libc::_exit(EXIT_PARENT_GONE);
        }
        if !libc::getenv(c"MULTIPROC_EARLY".as_ptr()).is_null() {
            become_child_before_main();
        }
    }
}

/// The child's whole life, run from `.init_array` where `main` is a test harness's
/// (`#[multiproc::test]`). The Rust runtime's own constructor (arguments, environment)
/// has run by now: it sorts before ours. What its start would still have done before
/// `main` is done here: SIGPIPE ignored, so a write to a closed socket is an error, not
/// a death.
fn become_child_before_main() -> ! {
    // SAFETY: no other thread exists yet.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    crate::runtime::handoff::start_children_early();
    // In a marked process `init()` never returns; a panic must not unwind into the C
    // start code.
    let _ = catch_unwind(init);
    exit_now(EXIT_BOOTSTRAP_FAILED)
}

/// Makes this process's children become themselves before `main`, then `init()`:
/// what `#[multiproc::test]` does first in every test, whose `main` is the harness's.
pub fn init_for_tests() {
    crate::runtime::handoff::start_children_early();
    init();
}

/// The life of a child process; returns its exit status: tied to its parent, the
/// handshake, becoming the process the Hello names, the link to the parent, the entry,
/// and the report of how it ended.
fn child_main(origin: Origin) -> i32 {
    let parent_pid = match parent_of(origin) {
        Ok(pid) => pid,
        Err(code) => return code,
    };
    let (sock, rings, hello, fds, entry) = match handshake() {
        Ok(h) => h,
        Err(code) => return code,
    };
    become_child(&hello, entry, parent_pid);
    let function = entry.kind == EntryKind::Function;
    // A function child builds its runtime only when its work needs one (see
    // `uplink`); an actor's host runs on it from the start. So does a child limited in
    // memory or descriptors: built now, under its limits, a runtime that does not fit
    // is a refusal of the Hello, not a panic in the first call that needs it.
    let limited = hello.limits.memory.is_some() || hello.limits.open_files.is_some();
    let eager = if function && !limited {
        uplink::defer(sock, rings).err()
    } else {
        Some((sock, rings))
    };
    if let Some((mut sock, rings)) = eager {
        if let Err(code) = build_runtime(&mut sock) {
            return code;
        }
        let link = match uplink::start(sock, rings) {
            Ok(link) => link,
            Err(e) => {
                eprintln!("multiproc: cannot serve the control socket: {e}");
                return EXIT_BOOTSTRAP_FAILED;
            }
        };
        // A function's Ready is written before it runs: a function that calls
        // `std::process::exit` at once must still have completed the handshake (it is
        // in the ring when `send` returns). An actor's Ready waits for its `start` (see
        // `actor::serve`), so that a started actor child is one that can take
        // messages, and a failing `start` fails the parent's `start()`, as OTP's
        // `start_link` waits for `init`.
        if function {
            let _ = link.send(Outgoing::Packet(Packet::Ready {
                pid: std::process::id(),
            }));
        }
    }
    // A parent that closed the link gave up on this child (it was stopped, or its
    // pool terminated, while it started): nothing to run for.
    if function && uplink::parent_hung_up() {
        return EXIT_PARENT_GONE;
    }
    logging::install_forwarder(hello.log_level);
    #[cfg(feature = "metrics")]
    runtime::metrics::install_forwarder();
    signals::ignore_sigint();

    let outcome = run_entry(entry, hello.args, fds);
    report_exit(outcome)
}

/// Builds the runtime, under the limits just set: a child that cannot have its
/// threads or descriptors says why (`Rejected`), rather than starting and dying at
/// its first message. `Err` is the status to exit with.
fn build_runtime(sock: &mut StdUnixStream) -> Result<(), i32> {
    match runtime::ensure() {
        Ok(_) => Ok(()),
        Err(Error::Exhausted { source, .. }) => {
            let _ = reject(sock, BootstrapError::Exhausted(source));
            Err(EXIT_BOOTSTRAP_FAILED)
        }
        Err(e) => {
            eprintln!("multiproc: {e}");
            Err(EXIT_BOOTSTRAP_FAILED)
        }
    }
}

/// Ties this child to its parent's life and returns the parent's pid, or the status
/// to exit with when the parent is already gone.
fn parent_of(origin: Origin) -> Result<u32, i32> {
    match origin {
        Origin::Spawned => {
            let expected_parent: Option<u32> = std::env::var(ENV_PARENT_PID)
                .ok()
                .and_then(|p| p.parse().ok());
            let _ = rustix::process::set_parent_process_death_signal(Some(
                rustix::process::Signal::KILL,
            ));
            let parent_pid =
                rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32);
            if expected_parent != Some(parent_pid) {
                // The parent died between spawning us and our prctl: nobody would kill us.
                return Err(EXIT_PARENT_GONE);
            }
            Ok(parent_pid)
        }
        // No parent-death signal: that would tie this child to the forkserver. The pidfd
        // watch below and the control link tie it to its logical parent instead.
        Origin::Forked { logical_parent } => Ok(logical_parent),
    }
}

/// The child's side of the handshake, up to (not including) its Ready: takes the
/// control socket off fd 0, reads and checks the Hello, maps the link's rings, sets
/// the limits and finds the entry. A failure is
/// answered `Rejected` where the parent can still hear it, and is the status to exit
/// with.
fn handshake() -> Result<Handshake, i32> {
    // SAFETY: `init()` is the first line of `main`, so no other thread exists yet that
    // could read the environment concurrently. The markers must not leak into programs
    // this child runs.
    unsafe {
        std::env::remove_var(ENV_BOOTSTRAP);
        std::env::remove_var(ENV_PARENT_PID);
    }
    let ctl = match take_control_socket() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("multiproc: cannot take the control socket: {e}");
            return Err(EXIT_BOOTSTRAP_FAILED);
        }
    };
    let mut sock = StdUnixStream::from(ctl);
    let refuse = |sock: &mut StdUnixStream, e| {
        let _ = reject(sock, e);
        Err(EXIT_BOOTSTRAP_FAILED)
    };
    let (hello, mut fds) = match read_hello(&mut sock) {
        Ok(h) => h,
        Err(e) => return refuse(&mut sock, e),
    };
    let rings = match (hello.rings, fds.pop()) {
        (Some(cap), Some(fd)) => match Rings::adopt(&fd, cap as usize) {
            Ok(rings) => {
                crate::runtime::mailbox::show_figures(rings.actor_figures());
                rings
            }
            Err(e) => return refuse(&mut sock, BootstrapError::BadHello(e.to_string())),
        },
        _ => {
            let why = "the Hello came without the link's shared memory".into();
            return refuse(&mut sock, BootstrapError::BadHello(why));
        }
    };
    if let Err(e) = apply_limits(&hello.limits) {
        return refuse(&mut sock, BootstrapError::Limits(e.to_string()));
    }
    let Some(entry) = registry::by_name(&hello.entry).filter(|e| e.kind == hello.kind) else {
        let unknown = BootstrapError::UnknownEntry {
            kind: hello.kind,
            name: hello.entry.clone(),
        };
        return refuse(&mut sock, unknown);
    };
    Ok((sock, rings, hello, fds, entry))
}

/// What a completed handshake hands on: the socket, the rings, the Hello, the
/// descriptors for the entry, and the entry.
type Handshake = (
    StdUnixStream,
    Rings,
    Hello,
    Vec<OwnedFd>,
    &'static registry::Entry,
);

/// Becomes the process the Hello names: who it is, its panic hook and heartbeat.
fn become_child(hello: &Hello, entry: &registry::Entry, parent_pid: u32) {
    // Before the runtime's threads, which take the thread name they are started with.
    title::set(&hello.name);
    current::set_me(Me {
        identity: hello.identity.clone(),
        name: hello.name.clone(),
        daemon: hello.daemon,
        parent: Some(ParentProcess {
            name: hello.parent_name.clone(),
            identity: hello.parent_identity.clone(),
            pid: parent_pid,
        }),
    });
    install_panic_hook();
    if let Some(interval) = hello.heartbeat {
        heartbeat::set_interval(interval);
    }
    if entry.kind == EntryKind::Actor {
        router::expect_local();
    }
}

/// Runs the entry with its arguments, catching a panic as its outcome.
fn run_entry(entry: &registry::Entry, args: Vec<u8>, fds: Vec<OwnedFd>) -> EntryOutcome {
    let run = entry.run;
    match catch_unwind(AssertUnwindSafe(|| {
        multiproc_transport::provide_fds(fds, || run(args))
    })) {
        Ok(outcome) => outcome,
        Err(payload) => {
            let (message, location) =
                take_panic().unwrap_or_else(|| (panic_message(&*payload), None));
            EntryOutcome::Panicked { message, location }
        }
    }
}

/// Reports how its entry ended to the parent, after finishing this child's own
/// children, and returns the status to exit with.
fn report_exit(outcome: EntryOutcome) -> i32 {
    let (report, code) = match outcome {
        EntryOutcome::Returned => (ExitReport::Normal, 0),
        EntryOutcome::Failed(message) => {
            tracing::error!(%message, "process failed");
            eprintln!("Process {}: {message}", current::me().name);
            (ExitReport::Failed { message }, 1)
        }
        EntryOutcome::Panicked { message, location } => {
            (ExitReport::Panicked { message, location }, 1)
        }
    };
    let report = Packet::Exiting(report);
    // What it recorded goes up before its end, so it is counted by the time its
    // parent sees it exit.
    #[cfg(feature = "metrics")]
    runtime::metrics::flush();
    // Without a runtime this child started no children: nothing to finish.
    if uplink::report_early(&report) {
        return code;
    }
    runtime::block_on(children::finish_children());
    let Some(link) = router::parent() else {
        return code;
    };
    let _ = link.send(Outgoing::Packet(report));
    let (flushed_tx, flushed_rx) = oneshot::channel();
    let _ = link.send(Outgoing::Flush(flushed_tx));
    runtime::block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(5), flushed_rx).await;
    });
    code
}

/// Sets the child's resource limits on itself. The CPU limit's hard value is one second
/// above its soft one, so the kernel sends SIGXCPU (which names the cause) before it
/// sends SIGKILL.
fn apply_limits(limits: &multiproc_core::Limits) -> std::io::Result<()> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    if let Some(bytes) = limits.memory {
        setrlimit(
            Resource::As,
            Rlimit {
                current: Some(bytes),
                maximum: Some(bytes),
            },
        )?;
    }
    if let Some(cpu) = limits.cpu {
        let secs = cpu.as_secs() + u64::from(cpu.subsec_nanos() > 0);
        setrlimit(
            Resource::Cpu,
            Rlimit {
                current: Some(secs),
                maximum: Some(secs + 1),
            },
        )?;
    }
    if let Some(n) = limits.open_files {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(n),
                maximum: Some(n),
            },
        )?;
    }
    Ok(())
}

/// Reads and checks the Hello frame and the descriptors that ride on it.
fn read_hello(sock: &mut StdUnixStream) -> Result<(Hello, Vec<OwnedFd>), BootstrapError> {
    let bad = |e: &dyn std::fmt::Display| BootstrapError::BadHello(e.to_string());
    let mut header = [0u8; 4];
    let (n, fds) = multiproc_transport::recv_with_fds(sock.as_fd(), &mut header, MAX_HELLO_FDS)
        .map_err(|e| bad(&e))?;
    if n == 0 {
        return Err(BootstrapError::BadHello(
            "the parent closed the link before the Hello".into(),
        ));
    }
    sock.read_exact(&mut header[n..]).map_err(|e| bad(&e))?;
    let len = i32::from_be_bytes(header);
    let len = usize::try_from(len).map_err(|_| bad(&format!("bad frame length {len}")))?;
    if len > MAX_FRAME_LEN {
        return Err(bad(&format!(
            "Hello frame of {len} bytes is over the limit"
        )));
    }
    let mut body = vec![0u8; len];
    sock.read_exact(&mut body).map_err(|e| bad(&e))?;
    let Packet::Hello {
        protocol,
        build_id,
        body,
    } = codec::decode::<Packet>(&body).map_err(|e| bad(&e))?
    else {
        return Err(bad(&"the first frame is not a Hello"));
    };
    if protocol != PROTOCOL_VERSION {
        return Err(BootstrapError::ProtocolMismatch {
            parent: protocol,
            child: PROTOCOL_VERSION,
        });
    }
    let ours = registry::build_id();
    if build_id != ours {
        return Err(BootstrapError::BuildMismatch {
            parent: build_id,
            child: ours,
        });
    }
    let hello: Hello = codec::decode(&body).map_err(|e| bad(&e))?;
    let expected = hello.fds as usize + usize::from(hello.rings.is_some());
    if expected != fds.len() {
        return Err(bad(&format!(
            "expected {expected} descriptors, received {}",
            fds.len()
        )));
    }
    Ok((hello, fds))
}

fn reject(sock: &mut StdUnixStream, why: BootstrapError) -> std::io::Result<()> {
    write_packet(sock, &Packet::Rejected(why))
}

/// Writes a packet straight on the socket, before the link's rings are in use: a
/// message marked as written without a marker in the ring.
fn write_packet(sock: &mut StdUnixStream, packet: &Packet) -> std::io::Result<()> {
    let mut msg = vec![wire::PACKET | wire::DIRECT];
    codec::encode_into(packet, &mut msg).map_err(std::io::Error::other)?;
    let mut frame = (msg.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&msg);
    sock.write_all(&frame)
}
