//! The worker side of the pool: a child process that runs registered tasks, chunk by
//! chunk, in the order they arrive on its link (`port.rs`), and answers each chunk as
//! soon as it has run.

use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use multiproc_core::{EntryKind, codec};
use multiproc_transport::Connection;
use serde::de::Deserialize;
use serde::{Deserialize as De, Serialize};

use super::channel;
use super::port::{Got, Port};
use super::slab::fail_args;
use super::wire::{self, DONE, EXIT, HEAVY, ItemFailure, READY, RUN, SERDE, SLAB};
use crate::runtime;
use crate::runtime::logging::carry;
use crate::runtime::panic::{panic_message, quiet_panics, take_panic};
use crate::runtime::registry::EntryOutcome;
use crate::runtime::registry::{self, Entry};
use crate::runtime::ring::Rings;
use crate::runtime::shm::SegmentRef;
use crate::runtime::stop;
use crate::runtime::target::Task;

/// What a worker is started with.
#[derive(Debug, Serialize, De)]
pub(crate) struct Setup {
    /// The initializer: a registered function's name and its encoded arguments.
    pub init: Option<(String, Vec<u8>)>,
    /// `max_rss_per_child`, in bytes.
    pub max_rss: Option<u64>,
    /// The pool link's frame limit, both ways.
    pub max_frame_len: usize,
    /// The link's rings, hosted by the pool's process.
    pub rings: SegmentRef,
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
    run: |args| crate::runtime::target::run_function(worker_main, args),
    task: not_a_task,
    slab: not_a_task,
    pod: registry::no_pod,
};

/// The worker's life: initializer, `READY`, then chunks until `EXIT` or end of input.
fn worker_main(conn: Connection, setup: Setup) -> Result<(), String> {
    let fd = conn.into_owned_fd().map_err(|e| e.to_string())?;
    let sock = UnixStream::from(fd);
    sock.set_nonblocking(false).map_err(|e| e.to_string())?;
    let rings = Rings::open_hosted(setup.rings, channel::CAPACITY)
        .map_err(|e| format!("cannot map the pool's rings: {e}"))?;
    let (tx, rx) = rings.split();
    // Asked to stop (the pool's process is exiting): end the input, so the loop ends
    // after the chunk it is running, as if the pool had said EXIT.
    let stopping = Arc::new(AtomicBool::new(false));
    if let Ok(reader) = sock.try_clone() {
        let stopping = Arc::clone(&stopping);
        runtime::handle().spawn(async move {
            stop::wait_for_stop().await;
            stopping.store(true, Ordering::Release);
            let _ = reader.shutdown(Shutdown::Read);
        });
    }
    if let Some((name, args)) = setup.init {
        run_initializer(&name, args)?;
    }
    quiet_panics(true);
    let mut port = Port::new(sock, tx, rx, setup.max_frame_len, stopping);
    let mut head = Vec::new();
    wire::start_in(&mut head, READY, 0, "", 0, SERDE);
    let head = wire::finish(head, usize::MAX).expect("no limit");
    if let Err(e) = port.send(&head, &[]) {
        return pool_gone(e);
    }
    serve(&mut port, setup.max_frame_len, setup.max_rss)
}

/// Runs the pool's initializer. A panic goes on up: the process ends as `Panicked`,
/// which the pool reports.
pub(super) fn run_initializer(name: &str, args: Vec<u8>) -> Result<(), String> {
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

/// Takes chunks and answers each as soon as it has run, until `EXIT` or the end of
/// input. Every buffer is reused: a chunk's answer is laid out in the ring from the
/// worker's head and results buffers.
fn serve(port: &mut Port, max: usize, max_rss: Option<u64>) -> Result<(), String> {
    let mut frame = Vec::new();
    let mut head = Vec::new();
    let heavy = max_rss.map(|_| {
        let mut h = Vec::new();
        wire::start_in(&mut h, HEAVY, 0, "", 0, SERDE);
        wire::finish(h, usize::MAX).expect("no limit")
    });
    let mut said_heavy = false;
    let mut results = Vec::new();
    let mut failures = Vec::new();
    loop {
        let body: &[u8] = match port.recv(&mut frame)? {
            Got::End => return Ok(()),
            Got::Ring => &frame,
            Got::Socket => port.take_frame()?,
        };
        let (header, args) = wire::split(body)?;
        match header.tag {
            RUN => {
                let span = (header.span != 0).then_some(header.span);
                let stamped = run_chunk(&header, args, span, &mut results, &mut failures);
                // Before the result: the pool then retires this worker before its
                // caller can send the next task, which goes to another.
                if let (Some(limit), Some(heavy)) = (max_rss, &heavy)
                    && !said_heavy
                    && resident_bytes().is_some_and(|rss| rss > limit)
                {
                    said_heavy = true;
                    if let Err(e) = port.send(heavy, &[]) {
                        return pool_gone(e);
                    }
                }
                let with_results =
                    done_head(&mut head, &header, &failures, &results, max, stamped)?;
                let tail: &[u8] = if with_results { &results } else { &[] };
                // At once, not batched with the next chunk's: a result must not
                // wait behind a task that turns out to be long (or to hang, and
                // have its worker killed with the finished result unsent).
                if let Err(e) = port.send(&head, tail) {
                    return pool_gone(e);
                }
            }
            EXIT => return Ok(()),
            other => return Err(format!("pool link: unknown tag {other}")),
        }
    }
}

/// This process's resident memory, from `/proc/self/statm` (its second field, in
/// pages).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as u64)
}

/// Runs one chunk's items by its header's entry and codec, into `results` and
/// `failures` (cleared first), inside a span `task{id, entry, items}` and as the
/// handling of a task made in its caller's span `span`, if any; returns how many log
/// records it stamped with that span.
pub(super) fn run_chunk(
    header: &wire::Header,
    args: &[u8],
    span: Option<u64>,
    results: &mut Vec<u8>,
    failures: &mut Vec<(u32, ItemFailure)>,
) -> u64 {
    let before = carry::stamped();
    carry::within(span, || {
        let task = tracing::info_span!(
            target: "multiproc::pool",
            "task",
            id = header.task,
            entry = %header.entry,
            items = header.items
        );
        let _in = task.enter();
        run_items(header, args, results, failures);
    });
    carry::stamped() - before
}

fn run_items(
    header: &wire::Header,
    args: &[u8],
    results: &mut Vec<u8>,
    failures: &mut Vec<(u32, ItemFailure)>,
) {
    results.clear();
    failures.clear();
    match (registry::by_name(&header.entry), header.codec) {
        (None, _) => fail_all(&header.entry, header.items, failures),
        (Some(entry), SERDE) => (entry.task)(args, header.items, results, failures),
        (Some(entry), SLAB) => (entry.slab)(args, header.items, results, failures),
        (Some(_), other) => fail_args(&format!("unknown codec {other}"), header.items, failures),
    }
}

/// Lays out a chunk's `DONE` head in `head`: its failures, to be followed by its
/// results in the chunk's codec; returns whether `results` follow (they are sent from
/// where they are, not copied in). Results over the frame limit fail every item of
/// the chunk with an error that says so.
pub(super) fn done_head(
    head: &mut Vec<u8>,
    header: &wire::Header,
    failures: &[(u32, ItemFailure)],
    results: &[u8],
    max: usize,
    stamped: u64,
) -> Result<bool, String> {
    wire::start_done_in(head, header.task, header.items, header.codec, stamped);
    codec::encode_into(&failures, head).map_err(|e| e.to_string())?;
    let len = match wire::finish_in(head, results.len(), max) {
        Ok(()) => return Ok(true),
        Err(len) => len,
    };
    let why = ItemFailure::Encode {
        message: format!(
            "the chunk's results take {len} bytes, over the pool's max_frame_len of {max}; \
             use a smaller chunksize or a higher limit"
        ),
    };
    let all: Vec<_> = (0..header.items).map(|i| (i, why.clone())).collect();
    wire::start_in(head, DONE, header.task, "", header.items, header.codec);
    codec::encode_into(&all, head).map_err(|e| e.to_string())?;
    // Past any limit small enough to refuse it, the pool's own limit is a
    // misconfiguration: the worker ends with it.
    wire::finish_in(head, 0, max).map_err(|_| "a failure list over the frame limit".to_string())?;
    Ok(false)
}

/// The pool's end of the link failed: the pool is gone (its process is exiting, or
/// it terminated), which ends this worker normally; anything else is an error.
fn pool_gone(e: std::io::Error) -> Result<(), String> {
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset};
    match e.kind() {
        BrokenPipe | ConnectionReset => Ok(()),
        _ => Err(format!("pool link: {e}")),
    }
}

/// Runs the items of one chunk with `f`: each item's result is appended to `out`, or
/// its failure recorded; a panic fails its item only.
pub fn run_task<F: Task<M> + Copy, M>(
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
