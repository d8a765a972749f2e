//! The `forkserver` start method: a single-threaded zygote forks children on request.
//!
//! The forkserver is this same binary, started once (lazily) by the `spawn` path with
//! a role marker; `init()` sends it here before anything else runs, so it has no
//! runtime and no threads, and `fork()` is safe in it. It keeps one child forked ahead,
//! its spare, waiting for a request; each request goes to the spare (or, without one,
//! to a child forked there and then), which goes on into the ordinary child bootstrap
//! with the socket the parent sent, and the forkserver hands back the child's pid and
//! a pidfd and forks the next spare. Where the kernel keeps a reaped child's status for
//! its pidfd, the forkserver ignores `SIGCHLD`, the kernel reaps its children, and each
//! parent reads its child's status through the pidfd (see `autoreap`); elsewhere the
//! forkserver, the child's real parent and so the only one that can reap it, relays the
//! status when the child ends.
//!
//! # Failure
//!
//! The forkserver's parent-death signal is tied to its parent's spawner thread, like
//! any child's. Its own children are *not* tied to it: they watch their logical
//! parent (the process that asked for them) through their control link and a pidfd,
//! so if the forkserver dies, they keep running and the next request starts a new
//! forkserver. A relayed exit status is then lost: once such a child ends and
//! whoever inherited it has reaped it, the kernel tells it through the child's pidfd
//! (`PIDFD_GET_INFO`, Linux 6.15 and later); where it cannot, the child's own report
//! says how it ended, and without one the reason is `ExitReason::ForkserverLost`
//! (Python reports `exitcode` 255 for such a child, and so does its exit code). A
//! spare that has no request yet ends when the forkserver's end of its socket closes,
//! so it never outlives the forkserver.
#![allow(unsafe_code)]

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;

use multiproc_core::{WaitStatus, codec};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::runtime::exit::{EXIT_BOOTSTRAP_FAILED, EXIT_PARENT_GONE};
use crate::runtime::handoff::{self, ENV_FORKSERVER, ENV_PARENT_PID};

mod autoreap;
mod client;
mod spare;

pub(crate) use client::{
    autoreaps, die_after_next_reply, fork, kill_forkserver, pid, relay_exits, serves,
};
use spare::prefork;

/// The forkserver's name in `ps` and `top`.
const FORKSERVER_NAME: &str = "forkserver";

/// The forkserver's first byte to its parent: it serves, and relays its children's
/// exits on the events socket.
const READY_RELAYING: u8 = b'r';
/// It serves, and the kernel reaps its children: their parents read their exits
/// through their pidfds (see `autoreap`).
const READY_AUTOREAPING: u8 = b'a';
/// The parent's first byte (with the events socket): the forkserver may let the
/// kernel reap its children if the kernel keeps their statuses for their pidfds.
const MAY_AUTOREAP: u8 = b'e';
/// The parent's first byte: the forkserver relays every exit (a test of that path).
const MUST_RELAY: u8 = b'E';

/// Parent → forkserver, with the child's end of its control socket attached.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Fork {
    /// The process that will be the child's parent in the tree.
    logical_parent: u32,
    /// Environment variables to set in the child.
    env: Vec<(String, String)>,
}

/// Forkserver → parent, on the request socket.
#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    /// Forked; the child's pidfd is attached.
    Forked { pid: u32 },
    /// `fork` (or the pidfd of its child) failed with this errno.
    Failed { errno: i32 },
}

/// Forkserver → parent, on the events socket: a child ended.
#[derive(Debug, Serialize, Deserialize)]
struct Exited {
    pid: u32,
    code: Option<i32>,
    signal: Option<i32>,
}

// ---- the forkserver process ---------------------------------------------------------

/// The life of the forkserver; never returns.
///
/// A forked child runs `child_main` with its logical parent's pid: the bootstrap,
/// handed in so that this module, below it, does not name it.
pub(crate) fn serve(child_main: fn(u32) -> !) -> ! {
    let expected_parent: Option<u32> = std::env::var(ENV_PARENT_PID)
        .ok()
        .and_then(|p| p.parse().ok());
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let parent = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32);
    if expected_parent != Some(parent) {
        std::process::exit(EXIT_PARENT_GONE);
    }
    // SAFETY: the forkserver runs no other thread, ever.
    unsafe {
        std::env::remove_var(ENV_FORKSERVER);
        std::env::remove_var(ENV_PARENT_PID);
        // ^C belongs to the root; the forked children install their own handling.
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
    crate::runtime::title::set(FORKSERVER_NAME);
    let code = match run(child_main) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("multiproc forkserver: {e}");
            EXIT_BOOTSTRAP_FAILED
        }
    };
    std::process::exit(code)
}

fn run(child_main: fn(u32) -> !) -> std::io::Result<()> {
    let requests = StdUnixStream::from(handoff::take_control_socket()?);
    // The first message carries the socket on which exits are reported.
    let mut byte = [0u8; 1];
    let (_, mut fds) = multiproc_transport::recv_with_fds(requests.as_fd(), &mut byte, 1)?;
    let events = StdUnixStream::from(
        fds.pop()
            .ok_or_else(|| std::io::Error::other("no events socket"))?,
    );
    // Before the first fork: the probe's child must be the only one.
    let autoreaping = byte[0] == MAY_AUTOREAP && autoreap::probe();
    // The handshake: this byte tells the parent that `init()` brought us here, and not
    // a `main` that forgot it and runs as a new root, and who reads the exits.
    let ready = if autoreaping {
        READY_AUTOREAPING
    } else {
        READY_RELAYING
    };
    (&requests).write_all(&[ready])?;
    crate::runtime::registry::warm();
    // Every child flushes `stdout` as it ends (`exit_child`); made here once, its
    // buffer and lock are the children's copies, not an allocation (and its page
    // faults) in each of them.
    {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
    }
    // The children whose exits this forkserver relays: none when the kernel reaps them.
    let mut children: Vec<(u32, OwnedFd)> = Vec::new();
    let mut spare = prefork(&requests, &events, &children, child_main);
    loop {
        let ready = {
            use rustix::event::{PollFd, PollFlags, poll};
            let mut set = vec![PollFd::new(&requests, PollFlags::IN)];
            if let Some(s) = &spare {
                set.push(PollFd::new(s.pidfd(), PollFlags::IN));
            }
            set.extend(
                children
                    .iter()
                    .map(|(_, fd)| PollFd::new(fd, PollFlags::IN)),
            );
            match poll(&mut set, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            set.iter()
                .map(|p| !p.revents().is_empty())
                .collect::<Vec<bool>>()
        };
        let first_child = 1 + usize::from(spare.is_some());
        if spare.is_some() && ready[1] {
            // A spare that died unasked (killed from outside): nobody waits for it.
            if let Some(dead) = spare.take() {
                dead.reap();
            }
        }
        // Children that ended, by their position in the poll set; removed last first,
        // so the other positions stay valid.
        let ended: Vec<usize> = (0..children.len())
            .filter(|&i| ready[i + first_child])
            .collect();
        for &i in ended.iter().rev() {
            let (pid, pidfd) = children.remove(i);
            let status = rustix::process::waitid(
                rustix::process::WaitId::PidFd(pidfd.as_fd()),
                rustix::process::WaitIdOptions::EXITED,
            )?;
            let (code, signal) =
                status.map_or((None, None), |s| (s.exit_status(), s.terminating_signal()));
            write_frame(&events, &Exited { pid, code, signal }, &[])?;
        }
        if ready[0] {
            let Some((fork, mut fds)) = read_request(&requests)? else {
                return Ok(()); // the parent is gone
            };
            let Some(socket) = fds.pop() else { continue };
            if let Some(s) = spare.take() {
                match s.assign(&fork, &socket) {
                    Ok((pid, pidfd)) => {
                        drop(socket);
                        write_frame(&requests, &Reply::Forked { pid }, &[pidfd.as_fd()])?;
                        if !autoreaping {
                            children.push((pid, pidfd));
                        }
                        spare = prefork(&requests, &events, &children, child_main);
                        continue;
                    }
                    // It died in the meantime: fork this child as if it never was.
                    Err(dead) => dead.reap(),
                }
            }
            // SAFETY: this process has one thread (this one), so the child gets a
            // consistent copy of every lock and allocator state.
            match unsafe { libc::fork() } {
                0 => {
                    drop(requests);
                    drop(events);
                    drop(children);
                    drop(spare);
                    become_child(fork, socket, child_main);
                }
                -1 => {
                    // The parent reads the limit behind it: the errno is all that travels.
                    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                    write_frame(&requests, &Reply::Failed { errno }, &[])?;
                }
                pid => {
                    let pid = pid as u32;
                    drop(socket);
                    let pidfd = rustix::process::Pid::from_raw(pid as i32)
                        .ok_or(rustix::io::Errno::SRCH)
                        .and_then(|p| {
                            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())
                        });
                    match pidfd {
                        Ok(pidfd) => {
                            write_frame(&requests, &Reply::Forked { pid }, &[pidfd.as_fd()])?;
                            if !autoreaping {
                                children.push((pid, pidfd));
                            }
                            spare = prefork(&requests, &events, &children, child_main);
                        }
                        Err(e) => {
                            // Out of descriptors: a child nobody can watch is not kept,
                            // and the forkserver serves on.
                            if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                                let _ =
                                    rustix::process::kill_process(p, rustix::process::Signal::KILL);
                                let _ = rustix::process::waitpid(
                                    Some(p),
                                    rustix::process::WaitOptions::empty(),
                                );
                            }
                            let errno = e.raw_os_error();
                            write_frame(&requests, &Reply::Failed { errno }, &[])?;
                        }
                    }
                }
            }
        }
    }
}

/// In the forked child: take the socket as fd 0 and run the ordinary bootstrap.
fn become_child(fork: Fork, socket: OwnedFd, child_main: fn(u32) -> !) -> ! {
    autoreap::restore_sigchld();
    if rustix::stdio::dup2_stdin(&socket).is_err() {
        std::process::exit(EXIT_BOOTSTRAP_FAILED);
    }
    drop(socket);
    // SAFETY: the child is single-threaded (a fork of the single-threaded forkserver).
    unsafe {
        for (k, v) in &fork.env {
            std::env::set_var(k, v);
        }
    }
    child_main(fork.logical_parent)
}

fn read_request(sock: &StdUnixStream) -> std::io::Result<Option<(Fork, Vec<OwnedFd>)>> {
    let mut header = [0u8; 4];
    let (n, fds) = match multiproc_transport::recv_with_fds(sock.as_fd(), &mut header, 4) {
        Ok(got) => got,
        Err(multiproc_transport::Error::Eof) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if n == 0 {
        return Ok(None);
    }
    let fork = read_body(&header[..n], &mut &*sock)?;
    Ok(Some((fork, fds)))
}

/// The longest request or reply body: a child's environment fits in it many times.
const MAX_MESSAGE_LEN: usize = multiproc_transport::MAX_FRAME_LEN;

/// Reads the rest of a frame whose first `got` header bytes (1 to 4) have arrived,
/// with the descriptors, and decodes its body. The body is read into a buffer that
/// grows as bytes arrive, so a header that claims more than is sent costs nothing.
///
/// # Errors
///
/// [`InvalidData`](std::io::ErrorKind::InvalidData) carrying a
/// [`FrameError::TooLarge`](multiproc_transport::FrameError::TooLarge) for a length
/// over [`MAX_MESSAGE_LEN`], or a [`CodecError`](multiproc_core::CodecError) for a
/// body that does not decode; [`UnexpectedEof`](std::io::ErrorKind::UnexpectedEof),
/// with a [`FrameError::Truncated`](multiproc_transport::FrameError::Truncated) when
/// the body is cut short; or the reader's error.
fn read_body<T: DeserializeOwned>(got: &[u8], r: &mut impl Read) -> std::io::Result<T> {
    use multiproc_transport::FrameError;
    use std::io::{Error, ErrorKind};
    let mut header = [0u8; 4];
    let got = &got[..got.len().min(4)];
    header[..got.len()].copy_from_slice(got);
    r.read_exact(&mut header[got.len()..])?;
    let len = u64::from(u32::from_be_bytes(header));
    if len > MAX_MESSAGE_LEN as u64 {
        return Err(Error::new(
            ErrorKind::InvalidData,
            FrameError::TooLarge {
                len,
                max: MAX_MESSAGE_LEN,
            },
        ));
    }
    let mut body = Vec::new();
    r.take(len).read_to_end(&mut body)?;
    if (body.len() as u64) < len {
        return Err(Error::new(
            ErrorKind::UnexpectedEof,
            FrameError::Truncated {
                expected: len,
                got: body.len() as u64,
            },
        ));
    }
    codec::decode(&body).map_err(|e| Error::new(ErrorKind::InvalidData, e))
}

/// The forkserver fuzz target's body: what [`read_request`] makes of a request socket
/// on which `data[0] % 4 + 1` header bytes arrive with the descriptors and then the
/// rest of `data`.
///
/// # Errors
///
/// As [`read_body`].
///
/// # Panics
///
/// If a request decodes but does not survive a round trip.
pub(crate) fn fuzz_request(data: &[u8]) -> std::io::Result<()> {
    let (first, rest) = data.split_first().unwrap_or((&0, &[]));
    let (got, mut rest) = rest.split_at(usize::from(first % 4 + 1).min(rest.len()));
    if got.is_empty() {
        // What `read_request` sees as the parent hanging up.
        return Ok(());
    }
    let fork: Fork = read_body(got, &mut rest)?;
    let again: Fork = codec::decode(&codec::encode(&fork).map_err(std::io::Error::other)?)
        .map_err(std::io::Error::other)?;
    assert_eq!(fork, again, "a request changed in a round trip");
    Ok(())
}

fn write_frame<T: Serialize>(
    sock: &StdUnixStream,
    value: &T,
    fds: &[BorrowedFd<'_>],
) -> std::io::Result<()> {
    let body = codec::encode(value).map_err(std::io::Error::other)?;
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    if fds.is_empty() {
        (&*sock).write_all(&frame)
    } else {
        let sent = multiproc_transport::send_with_fds(sock.as_fd(), &frame, fds)?;
        (&*sock).write_all(&frame[sent..])
    }
}

fn read_frame<T: for<'de> Deserialize<'de>>(
    sock: &StdUnixStream,
    max_fds: usize,
) -> std::io::Result<(T, Vec<OwnedFd>)> {
    let mut header = [0u8; 4];
    let (n, fds) = multiproc_transport::recv_with_fds(sock.as_fd(), &mut header, max_fds)?;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok((read_body(&header[..n], &mut &*sock)?, fds))
}

/// How a child that is not ours ended, read through its pidfd (`PIDFD_GET_INFO` with
/// `PIDFD_INFO_EXIT`, Linux 6.15 and later): known once whoever inherited it reaped
/// it. `None` before that, or on an older kernel.
pub(crate) fn exit_status_by_pidfd(pidfd: BorrowedFd<'_>) -> Option<WaitStatus> {
    use std::os::fd::AsRawFd;
    /// `struct pidfd_info` up to `exit_code` (`PIDFD_INFO_SIZE_VER0`, 64 bytes); the
    /// kernel copies what fits the size the request names.
    #[repr(C)]
    #[derive(Default)]
    struct PidfdInfo {
        mask: u64,
        cgroupid: u64,
        ids: [u32; 11],
        exit_code: i32,
    }
    const PIDFD_INFO_EXIT: u64 = 1 << 3;
    // _IOWR(PIDFS_IOCTL_MAGIC = 0xFF, 11, struct pidfd_info)
    const PIDFD_GET_INFO: u64 =
        (3 << 30) | ((std::mem::size_of::<PidfdInfo>() as u64) << 16) | (0xFF << 8) | 11;
    let mut info = PidfdInfo {
        mask: PIDFD_INFO_EXIT,
        ..PidfdInfo::default()
    };
    // SAFETY: `info` is a live, writable `pidfd_info` prefix whose size the request
    // encodes; the kernel writes at most that many bytes into it.
    let rc = unsafe {
        libc::ioctl(
            pidfd.as_raw_fd(),
            PIDFD_GET_INFO as _,
            &mut info as *mut PidfdInfo,
        )
    };
    if rc != 0 || info.mask & PIDFD_INFO_EXIT == 0 {
        return None;
    }
    let status = info.exit_code;
    if libc::WIFEXITED(status) {
        Some(WaitStatus::Exited(libc::WEXITSTATUS(status)))
    } else if libc::WIFSIGNALED(status) {
        Some(WaitStatus::Signaled(libc::WTERMSIG(status)))
    } else {
        None
    }
}
