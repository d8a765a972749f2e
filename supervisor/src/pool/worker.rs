//! The worker side of the pool: a child process that runs registered tasks, chunk by
//! chunk, in the order they arrive on its socket.
//!
//! The loop reads whatever has arrived (a busy pool sends many chunks per write) and
//! answers each chunk as soon as it has run.

use std::io::{IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};

use multiproc_core::{EntryKind, codec};
use multiproc_transport::{Connection, FrameDecoder};
use serde::de::Deserialize;
use serde::{Deserialize as De, Serialize};

use super::slab::fail_args;
use super::wire::{self, DONE, EXIT, ItemFailure, READY, RUN, SERDE, SLAB};
use crate::process::target::Task;
use crate::runtime;
use crate::runtime::panic::{panic_message, quiet_panics, take_panic};
use crate::runtime::registry::EntryOutcome;
use crate::runtime::registry::{self, Entry};
use crate::runtime::stop;

/// What a worker is started with.
#[derive(Debug, Serialize, De)]
pub(crate) struct Setup {
    /// The initializer: a registered function's name and its encoded arguments.
    pub init: Option<(String, Vec<u8>)>,
    /// The pool link's frame limit, both ways.
    pub max_frame_len: usize,
}

pub(crate) fn worker_entry() -> &'static Entry {
    registry::by_name(WORKER_ENTRY).expect("the pool worker is registered")
}

pub(crate) const WORKER_ENTRY: &str = "multiproc::pool::worker";

// linkme places the entry in a link section; that is all the unsafety there is.
#[allow(unsafe_code)]
#[linkme::distributed_slice(crate::runtime::registry::ENTRIES)]
static WORKER: Entry = Entry {
    name: WORKER_ENTRY,
    kind: EntryKind::Function,
    type_id: || std::any::TypeId::of::<Setup>(),
    run: |args| crate::process::target::run_function(worker_main, args),
    task: not_a_task,
    slab: not_a_task,
    pod: registry::no_pod,
};

/// The worker's life: initializer, `READY`, then chunks until `EXIT` or end of input.
fn worker_main(conn: Connection, setup: Setup) -> Result<(), String> {
    let fd = conn.into_owned_fd().map_err(|e| e.to_string())?;
    let mut sock = UnixStream::from(fd);
    sock.set_nonblocking(false).map_err(|e| e.to_string())?;
    // Asked to stop (the pool's process is exiting): end the input, so the loop ends
    // after the chunk it is running, as if the pool had said EXIT.
    if let Ok(reader) = sock.try_clone() {
        runtime::handle().spawn(async move {
            stop::wait_for_stop().await;
            let _ = reader.shutdown(Shutdown::Read);
        });
    }
    if let Some((name, args)) = setup.init {
        run_initializer(&name, args)?;
    }
    quiet_panics(true);
    let ready = wire::finish(wire::start(READY, 0, "", 0, SERDE), usize::MAX).expect("no limit");
    if let Err(e) = sock.write_all(&ready) {
        return pool_gone(e);
    }
    serve(&mut sock, setup.max_frame_len)
}

/// Runs the pool's initializer. A panic goes on up: the process ends as `Panicked`,
/// which the pool reports.
fn run_initializer(name: &str, args: Vec<u8>) -> Result<(), String> {
    let entry =
        registry::by_name(name).ok_or_else(|| format!("initializer `{name}` is not registered"))?;
    match (entry.run)(args) {
        EntryOutcome::Returned => Ok(()),
        EntryOutcome::Failed(message) => Err(format!("initializer failed: {message}")),
        EntryOutcome::Panicked { message, location } => {
            let at = location.map(|l| format!(" at {l}")).unwrap_or_default();
            Err(format!("initializer panicked{at}: {message}"))
        }
    }
}

/// Reads chunks and answers each as soon as it has run, until `EXIT` or the end of
/// input. Whatever has arrived is read at once: a busy pool sends many chunks per write.
fn serve(sock: &mut UnixStream, max: usize) -> Result<(), String> {
    let mut decoder = FrameDecoder::new(max);
    let mut results = Vec::new();
    let mut failures = Vec::new();
    loop {
        let n = match sock.read(decoder.read_buf()) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return pool_gone(e),
        };
        decoder.commit(n);
        while let Some(frame) = decoder
            .next_frame()
            .map_err(|e| format!("pool socket: {e}"))?
        {
            let (header, args) = wire::split(frame)?;
            match header.tag {
                RUN => {
                    results.clear();
                    failures.clear();
                    match (registry::by_name(&header.entry), header.codec) {
                        (None, _) => fail_all(&header.entry, header.items, &mut failures),
                        (Some(entry), SERDE) => {
                            (entry.task)(args, header.items, &mut results, &mut failures)
                        }
                        (Some(entry), SLAB) => {
                            (entry.slab)(args, header.items, &mut results, &mut failures)
                        }
                        (Some(_), other) => fail_args(
                            &format!("unknown codec {other}"),
                            header.items,
                            &mut failures,
                        ),
                    }
                    let (head, with_results) = done_frame(&header, &failures, &results, max)?;
                    let tail: &[u8] = if with_results { &results } else { &[] };
                    // At once, not batched with the next chunk's: a result must not
                    // wait behind a task that turns out to be long (or to hang, and
                    // have its worker killed with the finished result unsent).
                    if let Err(e) = write_both(sock, &head, tail) {
                        return pool_gone(e);
                    }
                }
                EXIT => return Ok(()),
                other => return Err(format!("pool socket: unknown tag {other}")),
            }
        }
    }
}

/// A chunk's `DONE` frame: its failures, then its results, in the chunk's codec. The
/// frame's head is returned, with whether `results` follow it: they are written from
/// where they are, not copied in. Results over the frame limit fail every item of the
/// chunk with an error that says so.
fn done_frame(
    header: &wire::Header,
    failures: &[(u32, ItemFailure)],
    results: &[u8],
    max: usize,
) -> Result<(Vec<u8>, bool), String> {
    let mut head = wire::start(DONE, header.task, "", header.items, header.codec);
    codec::encode_into(&failures, &mut head).map_err(|e| e.to_string())?;
    let len = match wire::finish_with(head, results.len(), max) {
        Ok(head) => return Ok((head, true)),
        Err(len) => len,
    };
    let why = ItemFailure::Encode {
        message: format!(
            "the chunk's results take {len} bytes, over the pool's max_frame_len of {max}; \
             use a smaller chunksize or a higher limit"
        ),
    };
    let all: Vec<_> = (0..header.items).map(|i| (i, why.clone())).collect();
    let mut frame = wire::start(DONE, header.task, "", header.items, header.codec);
    codec::encode_into(&all, &mut frame).map_err(|e| e.to_string())?;
    // Past any limit small enough to refuse it, the pool's own limit is a
    // misconfiguration: the worker ends with it.
    let frame =
        wire::finish(frame, max).map_err(|_| "a failure list over the frame limit".to_string())?;
    Ok((frame, false))
}

/// Writes `head` then `tail`, in as few system calls as the socket takes.
fn write_both(sock: &mut UnixStream, mut head: &[u8], mut tail: &[u8]) -> std::io::Result<()> {
    while !head.is_empty() {
        match sock.write_vectored(&[IoSlice::new(head), IoSlice::new(tail)]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) if n < head.len() => head = &head[n..],
            Ok(n) => {
                tail = &tail[n - head.len()..];
                head = &[];
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    sock.write_all(tail)
}

/// The pool's end of the socket failed: the pool is gone (its process is exiting, or
/// it terminated), which ends this worker normally; anything else is an error.
fn pool_gone(e: std::io::Error) -> Result<(), String> {
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset};
    match e.kind() {
        BrokenPipe | ConnectionReset => Ok(()),
        _ => Err(format!("pool socket: {e}")),
    }
}

/// Runs the items of one chunk with `f`: each item's result is appended to `out`, or
/// its failure recorded; a panic fails its item only.
pub fn run_task<F: Task<M>, M>(
    f: F,
    args: &[u8],
    items: u32,
    out: &mut Vec<u8>,
    failures: &mut Vec<(u32, ItemFailure)>,
) {
    let mut de = rmp_serde::Deserializer::from_read_ref(args);
    let mut ser = rmp_serde::Serializer::new(out).with_struct_map();
    for i in 0..items {
        let a = match F::Args::deserialize(&mut de) {
            Ok(a) => a,
            Err(e) => {
                let message = format!(
                    "arguments do not decode as `{}`: {e}",
                    std::any::type_name::<F::Args>()
                );
                failures.extend((i..items).map(|j| {
                    (
                        j,
                        ItemFailure::Args {
                            message: message.clone(),
                        },
                    )
                }));
                return;
            }
        };
        match catch_unwind(AssertUnwindSafe(|| f.call(a))) {
            Ok(r) => {
                let mark = ser.get_ref().len();
                if let Err(e) = r.serialize(&mut ser) {
                    // Whatever it wrote before it failed is not a value.
                    ser.get_mut().truncate(mark);
                    failures.push((
                        i,
                        ItemFailure::Encode {
                            message: format!("`{}`: {e}", std::any::type_name::<F::Output>()),
                        },
                    ));
                }
            }
            Err(payload) => {
                let (message, location) =
                    take_panic().unwrap_or_else(|| (panic_message(&*payload), None));
                failures.push((i, ItemFailure::Panicked { message, location }));
            }
        }
    }
}

/// The task function of an entry that is not a task (an actor, or a function whose
/// result is not a serde value).
pub fn not_a_task(_: &[u8], items: u32, _: &mut Vec<u8>, failures: &mut Vec<(u32, ItemFailure)>) {
    fail_all("this entry", items, failures);
}

/// Fails every item of a chunk: `name` is not a task.
pub(super) fn fail_all(name: &str, items: u32, failures: &mut Vec<(u32, ItemFailure)>) {
    failures.extend((0..items).map(|i| {
        (
            i,
            ItemFailure::NotATask {
                name: name.to_string(),
            },
        )
    }));
}
