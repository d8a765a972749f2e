//! Launching a worker: its task (start, read its link, report the exit), and what it
//! reports to the actor.

use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::Arc;

use multiproc_core::scheduler::WorkerId;
use multiproc_core::{Exhausted, ExitReason};
use multiproc_transport::Connection;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::channel::{self, Chan};
use super::place::Place;
use super::reader::WorkerReader;
use super::report::{Event, Outbox, Reporter, Started};
use super::shared::Shared;
use super::worker::{Setup, worker_entry};
use crate::process::Process;
use crate::runtime;
use crate::runtime::ring::Rings;
use multiproc_core::StartMethod;

/// How workers are launched.
pub(crate) struct Launch {
    pub init: Option<(String, Vec<u8>)>,
    /// `max_rss_per_child`, in bytes.
    pub max_rss: Option<u64>,
    pub method: StartMethod,
    pub prefix: String,
    /// The pool link's frame limit, both ways.
    pub max_frame_len: usize,
    /// Where workers run, and how many in each place.
    pub places: Vec<Place>,
}

/// Starts worker `w` in the background and returns its name. Its task starts it,
/// reads its link and reports its exit, in that order, so a worker's last answers
/// always reach the actor before its death; a worker that cannot start is reported as
/// `Started` with an error. Its start and its answers are handed to the actor `core`
/// directly, under its lock (no switch to the actor's task on the way); its exit goes
/// through `events`, behind them.
pub(super) fn launch(
    w: WorkerId,
    launch: Arc<Launch>,
    events: mpsc::UnboundedSender<Event>,
    core: Reporter,
    shared: Arc<Shared>,
) -> String {
    let fail = |message: String, exhausted: Option<Exhausted>| {
        let reason = ExitReason::Failed { message };
        let _ = events.send(Event::Started(w, Err((reason, exhausted))));
        format!("worker {w}")
    };
    let (mine, theirs) = match multiproc_transport::pipe(true) {
        Ok(pair) => pair,
        Err(e) => {
            let exhausted = match &e {
                multiproc_transport::Error::Exhausted(x) => Some(x.clone()),
                _ => None,
            };
            return fail(format!("cannot make the worker's socket: {e}"), exhausted);
        }
    };
    let (rings, at) = match Rings::create_hosted(channel::CAPACITY) {
        Ok(rings) => rings,
        Err(e) => return fail(format!("cannot make the worker's rings: {e}"), None),
    };
    let setup = Setup {
        init: launch.init.clone(),
        max_rss: launch.max_rss,
        max_frame_len: launch.max_frame_len,
        rings: at,
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
        let (tx, rx) = rings.split();
        let chan = Chan::new(Arc::clone(&stream), Arc::clone(&process), tx);
        let flusher = runtime::handle().spawn(Arc::clone(&chan).flush_loop());
        let started = Started {
            process: Arc::clone(&process),
            pid,
            node: None,
            to_worker: Outbox::Local(Arc::clone(&chan)),
        };
        if core.deliver(Event::Started(w, Ok(started))).is_err() {
            let _ = process.kill();
        }
        let reader = WorkerReader::new(
            w,
            Arc::clone(&chan),
            Arc::clone(&process),
            core,
            rx,
            launch.max_frame_len,
        );
        shared.readers_add(&reader);
        let reason = reader.run(&stream).await;
        shared.readers_remove(&reader);
        drop(reader);
        // Let go of the worker's socket and process before the pool hears that it
        // exited: a `join` that returns then finds them closed, not closing. Nothing
        // more can be written to a worker that has exited.
        chan.close();
        let _ = flusher.await;
        drop(chan);
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
