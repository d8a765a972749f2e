//! Launching a worker and the pool's end of its socket: the worker's task (start,
//! read, report the exit) and its writer task, and what they report to the actor.

use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use multiproc_core::scheduler::WorkerId;
use multiproc_core::{Exhausted, ExitReason};
use multiproc_transport::{Connection, FrameDecoder};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::worker::{Setup, worker_entry};
use crate::process::Process;
use crate::runtime;
use multiproc_core::StartMethod;

/// What the workers' tasks report.
pub(super) enum Event {
    /// A worker started, or did not: how it ended, and the limit that refused it
    /// when the system had no room for it.
    Started(WorkerId, Result<Started, (ExitReason, Option<Exhausted>)>),
    Frames(WorkerId, Vec<Vec<u8>>),
    Exited(WorkerId, ExitReason),
}

pub(super) struct Started {
    pub(super) process: Arc<Process>,
    pub(super) pid: u32,
    pub(super) to_worker: Outbox,
}

/// Frames for one worker. A task for an idle worker is written at once by whoever
/// dispatches it (often the caller's own thread: no task switch on the way); the rest
/// go to the worker's writer task, which writes many per system call.
pub(super) struct Outbox {
    stream: Arc<UnixStream>,
    queued: Arc<AtomicUsize>,
    tx: mpsc::UnboundedSender<Unsent>,
}

/// A frame for the writer task, and how much of it was written already.
type Unsent = (Arc<Vec<u8>>, usize);

impl Outbox {
    pub(super) fn send(&self, frame: Arc<Vec<u8>>, direct: bool) {
        let mut sent = 0;
        if direct && self.queued.load(Ordering::Acquire) == 0 {
            match self.stream.try_write(&frame) {
                Ok(n) if n == frame.len() => return,
                // The rest goes by its offset: a big chunk's frame is not copied.
                Ok(n) => sent = n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                // The worker is gone; its exit is on its way to the actor.
                Err(_) => return,
            }
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        let _ = self.tx.send((frame, sent));
    }
}

/// How workers are launched.
pub(crate) struct Launch {
    pub init: Option<(String, Vec<u8>)>,
    pub method: StartMethod,
    pub prefix: String,
    /// The pool link's frame limit, both ways.
    pub max_frame_len: usize,
}

/// Starts worker `w` in the background and returns its name. Its task starts it,
/// reads its socket and reports its exit, in that order, so a worker's last answers
/// always reach the actor before its death; a worker that cannot start is reported as
/// `Started` with an error.
pub(super) fn launch(
    w: WorkerId,
    launch: Arc<Launch>,
    events: mpsc::UnboundedSender<Event>,
) -> String {
    let pair = multiproc_transport::pipe(true);
    let (mine, theirs) = match pair {
        Ok(pair) => pair,
        Err(e) => {
            let exhausted = match &e {
                multiproc_transport::Error::Exhausted(x) => Some(x.clone()),
                _ => None,
            };
            let reason = ExitReason::Failed {
                message: format!("cannot make the worker's socket: {e}"),
            };
            let _ = events.send(Event::Started(w, Err((reason, exhausted))));
            return format!("worker {w}");
        }
    };
    let setup = Setup {
        init: launch.init.clone(),
        max_frame_len: launch.max_frame_len,
    };
    let process = Process::with_entry(worker_entry(), &(theirs, setup));
    let name = process.identity().default_name(&launch.prefix);
    let mut process = process
        .named(name.clone())
        .start_method(launch.method)
        .supervised();
    runtime::handle().spawn(async move {
        if let Err(e) = process.start().await {
            let exhausted = match &e {
                crate::runtime::error::Error::Exhausted { source, .. } => Some(source.clone()),
                _ => None,
            };
            let reason = ExitReason::Failed {
                message: e.to_string(),
            };
            let _ = events.send(Event::Started(w, Err((reason, exhausted))));
            return;
        }
        let process = Arc::new(process);
        let pid = process.pid().unwrap_or(0);
        let stream = match into_stream(mine) {
            Ok(stream) => Arc::new(stream),
            Err(e) => {
                tracing::error!(error = %e, "cannot use a pool worker's socket; killing it");
                let _ = process.kill();
                let reason = process.join().await.unwrap_or(ExitReason::Killed);
                let _ = events.send(Event::Started(w, Err((reason, None))));
                return;
            }
        };
        let (tx, frames) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let writer = runtime::handle().spawn(write_frames(
            Arc::clone(&stream),
            frames,
            Arc::clone(&queued),
        ));
        let started = Started {
            process: Arc::clone(&process),
            pid,
            to_worker: Outbox {
                stream: Arc::clone(&stream),
                queued,
                tx,
            },
        };
        if events.send(Event::Started(w, Ok(started))).is_err() {
            let _ = process.kill();
            return;
        }
        let reason = read_frames(w, &stream, &process, &events, launch.max_frame_len).await;
        // Let go of the worker's socket and process before the pool hears that it
        // exited: a `join` that returns then finds them closed, not closing. Nothing
        // more can be written to a worker that has exited.
        writer.abort();
        let _ = writer.await;
        drop(stream);
        drop(process);
        let _ = events.send(Event::Exited(w, reason));
    });
    name
}

fn into_stream(conn: Connection) -> std::io::Result<UnixStream> {
    let fd = conn.into_owned_fd().map_err(std::io::Error::other)?;
    let std = StdUnixStream::from(fd);
    std.set_nonblocking(true)?;
    let _enter = runtime::handle().enter();
    UnixStream::from_std(std)
}

/// Writes the frames queued for a worker, many per system call when they queue up.
async fn write_frames(
    stream: Arc<UnixStream>,
    mut frames: mpsc::UnboundedReceiver<Unsent>,
    queued: Arc<AtomicUsize>,
) {
    const BATCH: usize = 256 * 1024;
    let mut buf: Vec<u8> = Vec::new();
    while let Some((first, sent)) = frames.recv().await {
        let first = &first[sent..];
        if first.len() >= BATCH {
            // Big enough to fill the socket on its own: written from where it is, not
            // copied to be batched.
            if write_all(&stream, first).await.is_err() {
                return;
            }
            queued.fetch_sub(1, Ordering::AcqRel);
            continue;
        }
        let mut taken = 1;
        buf.extend_from_slice(first);
        while buf.len() < BATCH {
            match frames.try_recv() {
                Ok((frame, sent)) => {
                    buf.extend_from_slice(&frame[sent..]);
                    taken += 1;
                }
                Err(_) => break,
            }
        }
        if write_all(&stream, &buf).await.is_err() {
            return;
        }
        buf.clear();
        queued.fetch_sub(taken, Ordering::AcqRel);
    }
}

async fn write_all(stream: &UnixStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads a worker's frames until it exits; returns how it ended. Whatever it wrote
/// before it died is read and reported first.
async fn read_frames(
    w: WorkerId,
    rd: &UnixStream,
    process: &Process,
    events: &mpsc::UnboundedSender<Event>,
    max_frame_len: usize,
) -> ExitReason {
    let mut decoder = FrameDecoder::new(max_frame_len);
    let exit = process.join();
    tokio::pin!(exit);
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            readable = rd.readable(), if open => {
                if readable.is_err() {
                    open = false;
                    continue;
                }
                match rd.try_read(decoder.read_buf()) {
                    Ok(0) => open = false,
                    Ok(n) => {
                        decoder.commit(n);
                        if !forward(w, &mut decoder, events) {
                            let _ = process.kill();
                            open = false;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => open = false,
                }
            }
            reason = &mut exit => {
                // Drain what it wrote before it went.
                if open {
                    loop {
                        match rd.try_read(decoder.read_buf()) {
                            Ok(n) if n > 0 => {
                                decoder.commit(n);
                                if !forward(w, &mut decoder, events) {
                                    break;
                                }
                            }
                            _ => break,
                        }
                    }
                }
                return reason.unwrap_or(ExitReason::Killed);
            }
        }
    }
}

/// Sends the complete frames to the actor; false if the worker sent garbage.
fn forward(w: WorkerId, decoder: &mut FrameDecoder, events: &mpsc::UnboundedSender<Event>) -> bool {
    let mut frames = Vec::new();
    let ok = loop {
        match decoder.next_frame() {
            Ok(Some(frame)) => frames.push(frame.to_vec()),
            Ok(None) => break true,
            Err(e) => {
                tracing::error!(worker = w, error = %e, "bad frame from a pool worker");
                break false;
            }
        }
    };
    if !frames.is_empty() {
        let _ = events.send(Event::Frames(w, frames));
    }
    ok
}
