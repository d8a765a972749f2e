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
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use multiproc_core::{Hello, Packet, WaitStatus, codec};
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use tokio::task::JoinHandle;

use crate::process::Output;
use crate::{Error, bootstrap};

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
}

/// A child that has been spawned and sent its Hello.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub(crate) os_child: tokio::process::Child,
    pub(crate) stream: UnixStream,
    pub(crate) pidfd: OwnedFd,
}

/// Spawns the child and writes its Hello. Runs on the spawner thread, inside the
/// process runtime's context.
pub(crate) fn spawn(req: Request) -> Result<Spawned, Error> {
    let (parent_end, child_end) =
        StdUnixStream::pair().map_err(|e| Error::os("cannot create a socketpair", e))?;
    let exe = if std::path::Path::new("/proc/self/exe").exists() {
        std::path::PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe()
            .map_err(|e| Error::os("cannot find this program's executable", e))?
    };
    let argv0 = std::env::args_os()
        .next()
        .unwrap_or_else(|| OsString::from("multiproc"));
    let mut arg0 = argv0;
    arg0.push(format!(" [{}]", req.name));

    let mut cmd = std::process::Command::new(exe);
    cmd.arg0(arg0)
        .stdin(Stdio::from(OwnedFd::from(child_end)))
        .env(bootstrap::ENV_BOOTSTRAP, "1")
        .env(bootstrap::ENV_PARENT_PID, std::process::id().to_string());
    for (k, v) in &req.env {
        cmd.env(k, v);
    }
    if req.capture {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let mut cmd = tokio::process::Command::from(cmd);
    let os_child = cmd
        .spawn()
        .map_err(|e| Error::os("cannot spawn the child process", e))?;
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

    // A child that died before reading gives EPIPE here; the handshake then reports
    // how it ended, which says more than the write error would.
    let _ = send_hello(&parent_end, &req.hello, req.versions, &req.fds);
    drop(req.fds);

    parent_end
        .set_nonblocking(true)
        .map_err(|e| Error::os("cannot configure the socket", e))?;
    let stream =
        UnixStream::from_std(parent_end).map_err(|e| Error::os("cannot register the socket", e))?;
    Ok(Spawned {
        os_child,
        stream,
        pidfd,
    })
}

fn send_hello(
    sock: &StdUnixStream,
    hello: &Hello,
    versions: (u32, u64),
    fds: &[OwnedFd],
) -> std::io::Result<()> {
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
    // The fds ride on the first bytes of the frame, so the child receives them with
    // the header and no byte can be read without them.
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    let first = multiproc_transport::send_with_fds(sock.as_fd(), &frame, &borrowed)?;
    (&*sock).write_all(&frame[first..])
}

/// Decodes a child's exit status.
pub(crate) fn wait_status(status: ExitStatus) -> WaitStatus {
    match (status.code(), status.signal()) {
        (Some(code), _) => WaitStatus::Exited(code),
        (None, Some(sig)) => WaitStatus::Signaled(sig),
        (None, None) => WaitStatus::Exited(-1),
    }
}

/// Starts reading a capturing child's stdout and stderr to their ends.
pub(crate) fn capture(child: &mut tokio::process::Child) -> Option<JoinHandle<Output>> {
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
