//! The `spawn` start method: re-execute this binary with a socketpair as stdin.
//!
//! No `pre_exec` and no uid/gid changes, so std stays on its `posix_spawn` path:
//! spawning from a parent with gigabytes of memory costs about a millisecond, where
//! the fork path costs 50–200 ms. Everything a child must do to itself (parent-death
//! signal, moving the socket off fd 0) it does in `init()` after exec.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use multiproc_core::{Hello, Packet, StartMethod, WaitStatus, codec};
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;

use crate::runtime::error::Error;
use crate::runtime::handoff::{self, executable, wait_status};
use crate::runtime::ring::{self, Rings};
use crate::runtime::shm::MapError;

/// Everything needed to start one child.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) name: String,
    pub(crate) hello: Hello,
    pub(crate) fds: Vec<OwnedFd>,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) capture: bool,
    pub(crate) handshake_timeout: Duration,
    pub(crate) daemon: bool,
    /// The protocol version and build id to claim (tests of the checks change them).
    pub(crate) versions: (u32, u64),
    /// Started by a supervisor.
    pub(crate) supervised: bool,
    /// How the child process is made.
    pub(crate) method: StartMethod,
}

/// A child that has been spawned and sent its Hello.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub(crate) waiter: Waiter,
    pub(crate) stream: crate::runtime::link::Socket,
    /// The parent's end of the link's rings.
    pub(crate) rings: Rings,
    pub(crate) pidfd: OwnedFd,
    pub(crate) pid: u32,
}

/// How the parent learns a child's exit status.
#[derive(Debug)]
pub(crate) enum Waiter {
    /// Its own child: waited for directly.
    Os(tokio::process::Child),
    /// A forkserver's child: its status is read through its pidfd once the kernel
    /// has reaped it, or relayed by a forkserver that reaps its children itself.
    Forked {
        /// The relayed status (dropped if the forkserver died first); `None` when
        /// the kernel reaps the child.
        exit: Option<tokio::sync::oneshot::Receiver<WaitStatus>>,
        /// To see the exit and read its status when nothing relays it.
        pidfd: OwnedFd,
    },
}

impl Waiter {
    /// Waits for the child to exit; `None` when it exited but its status was lost
    /// (a forkserver child whose forkserver died first).
    pub(crate) async fn wait(&mut self) -> std::io::Result<Option<WaitStatus>> {
        match self {
            Waiter::Os(child) => child.wait().await.map(|s| Some(wait_status(s))),
            Waiter::Forked { exit, pidfd } => {
                if let Some(exit) = exit
                    && let Ok(status) = exit.await
                {
                    return Ok(Some(status));
                }
                // Asked for by the task that saw the child's link end: the child closed
                // its files, and the rest of its exit takes microseconds. Looking for
                // that long costs less than a watch on the pidfd and the worker's sleep
                // and wake-up.
                let until = std::time::Instant::now() + EXIT_SPIN;
                loop {
                    if let Some(status) =
                        crate::runtime::forkserver::exit_status_by_pidfd(pidfd.as_fd())
                    {
                        return Ok(Some(status));
                    }
                    if std::time::Instant::now() >= until {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                wait_pidfd(pidfd).await?;
                Ok(status_after_reap(pidfd).await)
            }
        }
    }

    /// Sends SIGKILL (a child that never answered its handshake).
    pub(crate) fn start_kill(&mut self) {
        match self {
            Waiter::Os(child) => {
                let _ = child.start_kill();
            }
            Waiter::Forked { pidfd, .. } => {
                let _ = rustix::process::pidfd_send_signal(&*pidfd, rustix::process::Signal::KILL);
            }
        }
    }
}

/// How long a forked child's reaper looks for its status before it watches its pidfd.
const EXIT_SPIN: Duration = Duration::from_micros(50);

/// How long an orphaned forked child's new parent may take to reap it before its
/// status counts as lost: an init reaps at once, but some container inits take a
/// second or two.
const REAP_GRACE: Duration = Duration::from_secs(2);

/// The status of an ended child whose forkserver died, as the kernel keeps it once the
/// child's new parent (an init or a subreaper) has reaped it; `None` if that does not
/// happen within [`REAP_GRACE`] or the kernel cannot say.
async fn status_after_reap(pidfd: &OwnedFd) -> Option<WaitStatus> {
    let deadline = tokio::time::Instant::now() + REAP_GRACE;
    let mut pause = Duration::from_millis(1);
    // A child the kernel reaps has its status by the time its pidfd is readable on
    // the kernels measured; a few turns cover one that publishes it a moment later.
    for _ in 0..8 {
        if let Some(status) = crate::runtime::forkserver::exit_status_by_pidfd(pidfd.as_fd()) {
            return Some(status);
        }
        tokio::task::yield_now().await;
    }
    loop {
        if let Some(status) = crate::runtime::forkserver::exit_status_by_pidfd(pidfd.as_fd()) {
            return Some(status);
        }
        // The reap is another process's doing, with no event of ours to wait on.
        if tokio::time::Instant::now() + pause > deadline {
            return None;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Waits until a pidfd is readable (its process ended), in the runtime's epoll: the
/// exit wakes the worker that reaps the child, and no other thread.
#[allow(unsafe_code, reason = "an AsyncFd registers a raw descriptor")]
async fn wait_pidfd(pidfd: &OwnedFd) -> std::io::Result<()> {
    // SAFETY: the duplicate is owned by the AsyncFd, which keeps it open until it is
    // dropped, after deregistration; nothing else uses this descriptor.
    let watch = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(
            pidfd.try_clone()?,
            tokio::io::Interest::READABLE,
        )
    }?;
    let _ = watch.readable().await?;
    Ok(())
}

/// Whether the child may be started on the calling thread: a request to a forkserver
/// that serves already (the request, not the thread, makes the child, whose tie is to
/// its logical parent), which saves two thread wake-ups, the spawner's and ours, a
/// tenth of a forked start. Otherwise the spawner thread starts it: a spawned child's
/// parent-death signal follows the thread that spawns it, and so does a new
/// forkserver's.
pub(crate) fn may_spawn_here(req: &Request) -> bool {
    req.method == StartMethod::Forkserver && crate::runtime::forkserver::serves()
}

/// Spawns the child and writes its Hello. Runs on the spawner thread (or, for a
/// forkserver that serves, on any thread: see [`may_spawn_here`]), inside the process
/// runtime's context.
pub(crate) fn spawn(mut req: Request) -> Result<Spawned, Error> {
    let (parent_end, child_end) =
        StdUnixStream::pair().map_err(|e| Error::os("cannot create a socketpair", e))?;
    let (rings, rings_fd) = Rings::create(ring::CAPACITY).map_err(|e| {
        const WHAT: &str = "cannot make the shared memory of a child's link";
        match e {
            MapError::Exhausted(source) => Error::Exhausted { what: WHAT, source },
            MapError::Io(e) => Error::os(WHAT, e),
            MapError::Gone => Error::os(WHAT, std::io::Error::other("the memfd vanished")),
        }
    })?;
    req.hello.rings = Some(ring::CAPACITY as u32);
    req.fds.push(rings_fd);
    if req.method == StartMethod::Forkserver {
        return fork(req, parent_end, child_end, rings);
    }
    let exe = executable().map_err(|e| Error::os("cannot find this program's executable", e))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg0(crate::runtime::title::arg0(&req.name))
        .stdin(Stdio::from(OwnedFd::from(child_end)))
        .env(handoff::ENV_BOOTSTRAP, "1")
        .env(handoff::ENV_PARENT_PID, std::process::id().to_string());
    handoff::mark_early(&mut cmd);
    for (k, v) in &req.env {
        cmd.env(k, v);
    }
    if req.capture {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let mut cmd = tokio::process::Command::from(cmd);
    let os_child = cmd
        .spawn()
        .map_err(|e| Error::spawning("cannot spawn the child process", e))?;
    let pid = os_child
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32));
    let pidfd = pid
        .ok_or_else(|| std::io::Error::other("the child has no pid"))
        .and_then(|pid| {
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
                .map_err(std::io::Error::from)
        })
        .map_err(|e| Error::os("cannot open a pidfd for the child", e))?;

    let stream = hand_over(parent_end, &req)?;
    let pid = os_child.id().unwrap_or(0);
    Ok(Spawned {
        waiter: Waiter::Os(os_child),
        stream,
        rings,
        pidfd,
        pid,
    })
}

/// Sends the child its Hello (and descriptors) and makes our end of the link async.
fn hand_over(
    parent_end: StdUnixStream,
    req: &Request,
) -> Result<crate::runtime::link::Socket, Error> {
    // A child that died before reading gives EPIPE here; the handshake then reports
    // how it ended, which says more than the write error would.
    let _ = send_hello(&parent_end, &req.hello, req.versions, &req.fds);
    into_async(parent_end)
}

/// Our end of the link, made async.
fn into_async(parent_end: StdUnixStream) -> Result<crate::runtime::link::Socket, Error> {
    crate::runtime::link::Socket::new(parent_end)
        .map_err(|e| Error::os("cannot register the socket", e))
}

/// The forkserver path of [`spawn`].
fn fork(
    req: Request,
    parent_end: StdUnixStream,
    child_end: StdUnixStream,
    rings: Rings,
) -> Result<Spawned, Error> {
    if req.capture {
        return Err(Error::Unsupported(
            "capture_output with the forkserver start method",
        ));
    }
    let env = req
        .env
        .iter()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    // The Hello goes first, into the socket, so that the child reads it the moment it
    // is forked instead of waiting for the forkserver's reply to reach us and our
    // write to reach it: a wake-up of each process off the start. What the socket
    // cannot take before the child exists follows once it does.
    let frame = hello_frame(&req.hello, req.versions);
    let early = match &frame {
        Ok(frame) => {
            let borrowed: Vec<_> = req.fds.iter().map(|f| f.as_fd()).collect();
            multiproc_transport::try_send_with_fds(parent_end.as_fd(), frame, &borrowed)
                .unwrap_or(0)
        }
        Err(_) => 0,
    };
    let forked = crate::runtime::forkserver::fork(
        OwnedFd::from(child_end),
        env,
        req.handshake_timeout,
        crate::runtime::on_spawner_thread(),
    )?;
    let stream = match frame {
        Ok(frame) if early > 0 => {
            // As in `hand_over`: a child that died before reading is reported by the
            // handshake, which says more than this write's error would.
            let _ = (&parent_end).write_all(&frame[early..]);
            into_async(parent_end)?
        }
        _ => hand_over(parent_end, &req)?,
    };
    let waiter_pidfd = forked
        .pidfd
        .try_clone()
        .map_err(|e| Error::os("cannot duplicate the child's pidfd", e))?;
    Ok(Spawned {
        waiter: Waiter::Forked {
            exit: forked.exit,
            pidfd: waiter_pidfd,
        },
        stream,
        rings,
        pidfd: forked.pidfd,
        pid: forked.pid,
    })
}

/// The Hello as a whole frame, header included.
fn hello_frame(hello: &Hello, versions: (u32, u64)) -> std::io::Result<Vec<u8>> {
    let (protocol, build_id) = versions;
    let body = codec::encode(hello).map_err(std::io::Error::other)?;
    let packet = codec::encode(&Packet::Hello {
        protocol,
        build_id,
        body,
    })
    .map_err(std::io::Error::other)?;
    let mut header = [0u8; 12];
    let hl = multiproc_transport::frame::header(packet.len(), &mut header);
    let mut frame = Vec::with_capacity(hl + packet.len());
    frame.extend_from_slice(&header[..hl]);
    frame.extend_from_slice(&packet);
    Ok(frame)
}

fn send_hello(
    sock: &StdUnixStream,
    hello: &Hello,
    versions: (u32, u64),
    fds: &[OwnedFd],
) -> std::io::Result<()> {
    let frame = hello_frame(hello, versions)?;
    // The fds ride on the first bytes of the frame, so the child receives them with
    // the header and no byte can be read without them.
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    let first = multiproc_transport::send_with_fds(sock.as_fd(), &frame, &borrowed)?;
    (&*sock).write_all(&frame[first..])
}

/// Starts reading a capturing child's stdout and stderr to their ends.
pub(crate) fn capture(waiter: &mut Waiter) -> Option<JoinHandle<Output>> {
    let Waiter::Os(child) = waiter else {
        return None;
    };
    let mut stdout = child.stdout.take()?;
    let mut stderr = child.stderr.take()?;
    Some(tokio::spawn(async move {
        let mut out = Output::default();
        let (a, b) = tokio::join!(
            stdout.read_to_end(&mut out.stdout),
            stderr.read_to_end(&mut out.stderr)
        );
        if let Err(e) = a.and(b) {
            tracing::warn!(error = %e, "cannot read a child's output");
        }
        out
    }))
}

/// What a child wrote to its stdout and stderr, when the process was created with
/// [`Process::capture_output`](crate::Process::capture_output).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Everything the child wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything the child wrote to stderr.
    pub stderr: Vec<u8>,
}
