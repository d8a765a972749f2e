//! The bench binary's own `raw` children: this same binary started with
//! `MULTIPROC_BENCH_ROLE=raw-<role>` and a socketpair on its stdin, playing the role
//! without multiproc (plain blocking `read`/`write`): the syscall floor of the
//! scenarios.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};

use crate::{ROLE_ENV, Res};

/// A child of this binary in a raw role, with a socketpair on its stdin.
pub(crate) struct RawChild {
    pub(crate) child: Child,
    pub(crate) sock: UnixStream,
}

impl RawChild {
    pub(crate) fn start(role: &str, env: &[(&str, usize)]) -> Res<RawChild> {
        let (sock, theirs) = UnixStream::pair()?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.env(ROLE_ENV, role)
            .stdin(Stdio::from(OwnedFd::from(theirs)));
        for (k, v) in env {
            cmd.env(k, v.to_string());
        }
        Ok(RawChild {
            child: cmd.spawn()?,
            sock,
        })
    }

    /// Closes the socket (the child ends at EOF) and checks how the child ended.
    pub(crate) fn finish(mut self) -> Res {
        self.sock.shutdown(std::net::Shutdown::Both)?;
        let status = self.child.wait()?;
        if !status.success() {
            return Err(format!("raw child failed: {status}").into());
        }
        Ok(())
    }
}

impl Drop for RawChild {
    fn drop(&mut self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        let _ = self.child.wait();
    }
}

/// `read_exact` that, on a non-blocking socket, spins until all of `buf` came, for
/// at most [`SPIN`] at a time: a spinning end between rounds would take the CPU
/// from the other scenarios' processes, so it then sleeps in a blocking `read`.
pub(crate) fn read_full(conn: &mut std::net::TcpStream, buf: &mut [u8]) -> std::io::Result<()> {
    let mut got = 0;
    let mut since = None;
    while got < buf.len() {
        match conn.read(&mut buf[got..]) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                got += n;
                since = None;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let t0 = *since.get_or_insert_with(std::time::Instant::now);
                if t0.elapsed() < SPIN {
                    std::hint::spin_loop();
                    continue;
                }
                conn.set_nonblocking(false)?;
                let n = conn.read(&mut buf[got..]);
                conn.set_nonblocking(true)?;
                match n? {
                    0 => return Err(ErrorKind::UnexpectedEof.into()),
                    n => got += n,
                }
                since = None;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// How long a spinning reader polls before it sleeps: far above a round trip.
const SPIN: std::time::Duration = std::time::Duration::from_millis(1);

pub(crate) fn raw_role(role: &str) -> Res {
    match role {
        // What every multiproc child costs at least: exec, a tokio runtime, one task.
        "raw-spawn" => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(rt.spawn(async {}))?;
            Ok(())
        }
        // A replacement worker: exec, a tokio runtime, then "ready" on the socket.
        "raw-ready" => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(rt.spawn(async {}))?;
            let mut sock = stdin_socket()?;
            sock.write_all(b"r")?;
            let mut rest = Vec::new();
            sock.read_to_end(&mut rest)?;
            Ok(())
        }
        // Messages of BENCH_SIZE bytes (8 by default), each written back as it is.
        "raw-echo" => {
            let size: usize = std::env::var("BENCH_SIZE").map_or(Ok(8), |s| s.parse())?;
            let mut sock = stdin_socket()?;
            let mut buf = vec![0u8; size];
            loop {
                match sock.read_exact(&mut buf) {
                    Ok(()) => sock.write_all(&buf)?,
                    Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        // An echo actor behind a `ractor_cluster` node server: the engine's floor.
        "raw-engine-echo" => crate::engine::serve(stdin_socket()?),
        // The same echo over loopback TCP: the floor of a call to a node on this
        // host. It listens on a free port, says which on its socket, and serves one
        // connection; `-spin` polls its non-blocking socket instead of sleeping in
        // `read`, the floor of a call whose both ends spin.
        "raw-tcp-echo" | "raw-tcp-spin-echo" => {
            let spin = role == "raw-tcp-spin-echo";
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            let mut sock = stdin_socket()?;
            sock.write_all(&listener.local_addr()?.port().to_be_bytes())?;
            let (mut conn, _) = listener.accept()?;
            conn.set_nodelay(true)?;
            conn.set_nonblocking(spin)?;
            let mut buf = [0u8; 8];
            loop {
                match read_full(&mut conn, &mut buf) {
                    Ok(()) => conn.write_all(&buf)?,
                    Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        // 8-byte messages, counted; one with its top bit set is answered with the count.
        "raw-sink" => {
            let mut sock = stdin_socket()?;
            let mut buf = [0u8; 8];
            let mut count = 0u64;
            loop {
                match sock.read_exact(&mut buf) {
                    Ok(()) => {
                        count += 1;
                        if u64::from_le_bytes(buf) >> 63 == 1 {
                            sock.write_all(&count.to_le_bytes())?;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        "raw-stream" => {
            let size: usize = std::env::var("BENCH_SIZE")?.parse()?;
            let count: usize = std::env::var("BENCH_COUNT")?.parse()?;
            let mut sock = stdin_socket()?;
            let mut frame = (size as u32).to_be_bytes().to_vec();
            frame.resize(4 + size, 0xA5);
            let mut byte = [0u8; 1];
            sock.write_all(b"r")?;
            sock.read_exact(&mut byte)?;
            for _ in 0..count {
                sock.write_all(&frame)?;
            }
            sock.read_exact(&mut byte)?;
            Ok(())
        }
        other => Err(format!("unknown {ROLE_ENV}={other}").into()),
    }
}

fn stdin_socket() -> Res<UnixStream> {
    Ok(UnixStream::from(
        std::io::stdin().as_fd().try_clone_to_owned()?,
    ))
}
