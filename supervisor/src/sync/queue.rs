//! `Queue`, `JoinableQueue` and `SimpleQueue`: the handle (the ring in shared
//! memory is `queue/memory.rs`).

mod memory;
mod slot_cache;

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use multiproc_core::{Identity, codec};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use memory::QUEUE_CAPACITY;
pub(crate) use memory::QueueMem;

use super::SyncError;
use super::far::{self, FarOp, Side};
use super::host::{self, State};
use super::refs::Addr;

/// Python's `Queue(maxsize)` of `T`, in shared memory.
///
/// Items are encoded by the producer (an item that does not encode fails its
/// `put`) and copied into a ring in a memfd that every process using the queue
/// maps; a consumer copies them out and decodes them. A put or a get that need not
/// wait is a few hundred nanoseconds and no message; a waiter spins briefly, then
/// sleeps on a futex. There is no feeder thread: when `put` returns the item is in
/// the queue, so a producer can exit at once.
///
/// The process that created the queue hosts it: it watches every process that
/// uses it, and when one dies, what that process had taken and not yet received
/// (or, for a joinable queue, not yet marked `task_done`) goes back to the front of
/// the queue. So an item is delivered once even when a consumer dies in the middle
/// of a `get`, and a joinable queue's `join` never waits for work that died with a
/// worker. A waiter that finds the host gone gets [`SyncError::OwnerGone`].
///
/// An unbounded queue (`maxsize` 0) holds up to 32 MiB of encoded items; a put
/// beyond that waits for room, as a bounded queue's does.
///
/// On another node (a process placed with [`Process::on`](crate::Process::on) that
/// got it among its arguments) every operation travels to the process that placed
/// it, which runs it here. An item taken by a far `get` counts as delivered once it
/// leaves for the node: a far consumer that dies after that loses it.
pub struct Queue<T> {
    side: Side<Local>,
    closed: bool,
    _item: PhantomData<fn(T) -> T>,
}

/// A queue's handle in a process that maps it.
#[derive(Serialize, Deserialize)]
struct Local {
    addr: Addr,
    seg: crate::runtime::shm::SegmentRef,
    /// The queue's memory, once this process has mapped it.
    #[serde(skip)]
    mem: std::sync::OnceLock<std::sync::Arc<QueueMem>>,
}

impl Clone for Local {
    fn clone(&self) -> Self {
        Local {
            addr: self.addr.clone(),
            seg: self.seg,
            mem: self.mem.clone(),
        }
    }
}

impl PartialEq for Local {
    fn eq(&self, other: &Local) -> bool {
        self.addr == other.addr
    }
}

impl Eq for Local {}

impl fmt::Debug for Local {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Local")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            side: self.side.clone(),
            closed: self.closed,
            _item: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("side", &self.side)
            .finish_non_exhaustive()
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        far::serialize(
            &self.side,
            || match &self.side {
                Side::Here(l) => (
                    far::FarKey::of(&l.addr),
                    far::Obj::Queue(Queue {
                        side: Side::Here(l.clone()),
                        closed: false,
                        _item: PhantomData,
                    }),
                ),
                Side::Far(_) => unreachable!("a far handle is not exported again"),
            },
            s,
        )
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Queue<T>, D::Error> {
        Ok(Queue {
            side: far::deserialize(d)?,
            closed: false,
            _item: PhantomData,
        })
    }
}

impl Local {
    /// The queue's memory, mapped; the first time in a process, the host is told
    /// who uses it (so that it can give back what this process took if it dies).
    async fn mem(&self) -> Result<&QueueMem, SyncError> {
        if let Some(m) = self.mem.get() {
            return Ok(m);
        }
        let seg = self.addr.map(self.seg)?;
        let mem = QueueMem::open(seg, self.addr.secret).ok_or(SyncError::Forged)?;
        self.addr.attach().await?;
        Ok(self.mem.get_or_init(|| mem))
    }

    /// As `mem`, from a thread that may block.
    fn mem_blocking(&self) -> Result<&QueueMem, SyncError> {
        match self.mem.get() {
            Some(m) => Ok(m),
            None => crate::runtime::block_on(self.mem()),
        }
    }

    fn owner(&self) -> &Identity {
        &self.addr.owner
    }
}

/// Encoded items, as the gateway moves them for a far handle.
impl<T> Queue<T> {
    /// Its address at its host; `None` for a far handle.
    pub(super) fn addr(&self) -> Option<&Addr> {
        match &self.side {
            Side::Here(l) => Some(&l.addr),
            Side::Far(_) => None,
        }
    }

    pub(super) async fn put_raw(
        &self,
        bytes: &[u8],
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<(), SyncError> {
        let Side::Here(l) = &self.side else {
            return Err(SyncError::Forged);
        };
        let mem = l.mem().await?;
        if mem.put(bytes, false, None, l.owner())? {
            return Ok(());
        }
        if block && mem.put_async(bytes, timeout, l.owner()).await? {
            return Ok(());
        }
        Err(SyncError::Full)
    }

    pub(super) async fn get_raw(
        &self,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, SyncError> {
        let Side::Here(l) = &self.side else {
            return Err(SyncError::Forged);
        };
        let mem = l.mem().await?;
        let mut bytes = Vec::new();
        if !mem.get(&mut bytes, false, None, l.owner())?
            && (!block || !mem.get_async(&mut bytes, timeout, l.owner()).await?)
        {
            return Err(SyncError::Empty);
        }
        // It leaves for the far consumer: delivered (a joinable queue's is until
        // its `task_done`).
        if !mem.joinable() {
            mem.delivered();
        }
        Ok(bytes)
    }

    pub(super) async fn size_raw(&self) -> Result<(usize, bool), SyncError> {
        match &self.side {
            Side::Here(l) => Ok(l.mem().await?.size()),
            Side::Far(far) => far.size().await,
        }
    }

    /// One item is done (`JoinableQueue.task_done`).
    ///
    /// # Errors
    ///
    /// [`SyncError::Queue`] when called more times than items were put;
    /// [`SyncError::OwnerGone`].
    pub async fn task_done(&self) -> Result<(), SyncError> {
        match &self.side {
            Side::Here(l) => l.mem().await?.task_done(l.owner()),
            Side::Far(far) => far.done(FarOp::TaskDone).await,
        }
    }

    /// `task_done` from a thread that may block.
    ///
    /// # Errors
    ///
    /// As [`task_done`](Queue::task_done).
    pub(crate) fn task_done_blocking(&self) -> Result<(), SyncError> {
        match &self.side {
            Side::Here(l) => l.mem_blocking()?.task_done(l.owner()),
            Side::Far(_) => crate::runtime::block_on(self.task_done()),
        }
    }

    /// Waits until every item put has been marked done (`JoinableQueue.join`).
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerGone`] (also while waiting).
    pub async fn join(&self) -> Result<(), SyncError> {
        let l = match &self.side {
            Side::Here(l) => l,
            Side::Far(far) => return far.done(FarOp::Join).await,
        };
        let mem = l.mem().await?;
        if mem.join(Some(Duration::ZERO), l.owner())? {
            return Ok(());
        }
        mem.join_async(None, l.owner()).await.map(|_| ())
    }

    /// `join` from a thread that may block.
    ///
    /// # Errors
    ///
    /// As [`join`](Queue::join).
    pub(crate) fn join_blocking(&self) -> Result<(), SyncError> {
        match &self.side {
            Side::Here(l) => l.mem_blocking()?.join(None, l.owner()).map(|_| ()),
            Side::Far(_) => crate::runtime::block_on(self.join()),
        }
    }
}

thread_local! {
    /// Encoding and copying buffers, reused by this thread's puts and gets.
    static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// A queue of at most `maxsize` items (0: unbounded), hosted by this process.
    ///
    /// # Errors
    ///
    /// [`SyncError::Exhausted`] when the system has no descriptor or memory left for
    /// its shared memory (the message names the limit); [`SyncError::Memory`] when it
    /// refuses otherwise.
    pub fn new(maxsize: usize) -> Result<Queue<T>, SyncError> {
        Queue::create(maxsize, false)
    }

    /// Python's `JoinableQueue(maxsize)`: a `get` is not final until its
    /// `task_done`, so an item whose consumer dies before `task_done` goes back to
    /// the queue, and `join` never waits for work that died with its worker.
    ///
    /// # Errors
    ///
    /// As [`new`](Queue::new).
    pub fn joinable(maxsize: usize) -> Result<Queue<T>, SyncError> {
        Queue::create(maxsize, true)
    }

    fn create(maxsize: usize, joinable: bool) -> Result<Queue<T>, SyncError> {
        let secret = host::secret();
        let mem = QueueMem::create(maxsize as u64, joinable, QUEUE_CAPACITY, secret)?;
        let addr = Addr::new_with(
            State::Watched(Box::new(std::sync::Arc::clone(&mem))),
            secret,
            Some(mem.at()),
        );
        Ok(Queue {
            side: Side::Here(Local {
                addr,
                seg: mem.at(),
                mem: std::sync::OnceLock::from(mem),
            }),
            closed: false,
            _item: PhantomData,
        })
    }

    /// Puts an item (Python's `put(obj, block, timeout)`).
    ///
    /// # Errors
    ///
    /// [`SyncError::Full`] when it would block and `block` is false, or `timeout`
    /// ran out; [`SyncError::Encode`]; [`SyncError::TooLarge`];
    /// [`SyncError::Closed`]; [`SyncError::OwnerGone`]; [`SyncError::Forged`].
    pub async fn put(
        &self,
        item: &T,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<(), SyncError> {
        let l = match &self.side {
            Side::Here(l) => l,
            Side::Far(far) => {
                if self.closed {
                    return Err(SyncError::Closed);
                }
                // For the root's tree, where any process may take it.
                let item =
                    super::far::way::to_root(|| codec::encode(item)).map_err(SyncError::Encode)?;
                return far
                    .done(FarOp::Put {
                        item,
                        block,
                        timeout,
                    })
                    .await;
            }
        };
        let mem = l.mem().await?;
        if self.put_with(l, mem, item, false, None)? {
            return Ok(());
        }
        if !block {
            return Err(SyncError::Full);
        }
        let bytes = codec::encode(item).map_err(SyncError::Encode)?;
        if mem.put_async(&bytes, timeout, l.owner()).await? {
            Ok(())
        } else {
            Err(SyncError::Full)
        }
    }

    /// Encodes `item` into this thread's buffer and puts it; whether it went in.
    fn put_with(
        &self,
        l: &Local,
        mem: &QueueMem,
        item: &T,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<bool, SyncError> {
        if self.closed {
            return Err(SyncError::Closed);
        }
        BUFFER.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.clear();
            codec::encode_into(item, &mut buf).map_err(SyncError::Encode)?;
            mem.put(&buf, block, timeout, l.owner())
        })
    }

    /// Puts an item from a thread that may block: as [`put`](Queue::put), with no
    /// runtime in between.
    ///
    /// # Errors
    ///
    /// As [`put`](Queue::put).
    pub(crate) fn put_blocking(
        &self,
        item: &T,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<(), SyncError> {
        let l = match &self.side {
            Side::Here(l) => l,
            Side::Far(_) => return crate::runtime::block_on(self.put(item, block, timeout)),
        };
        let mem = l.mem_blocking()?;
        if self.put_with(l, mem, item, block, timeout)? {
            Ok(())
        } else {
            Err(SyncError::Full)
        }
    }

    /// Nothing to wait for: a put returns once its item is in the queue. (Kept for
    /// code written against queues whose puts were sent ahead.)
    ///
    /// # Errors
    ///
    /// None today.
    pub async fn flush(&self) -> Result<(), SyncError> {
        Ok(())
    }

    /// `put(item, false, None)`.
    ///
    /// # Errors
    ///
    /// As [`put`](Queue::put).
    pub async fn put_nowait(&self, item: &T) -> Result<(), SyncError> {
        self.put(item, false, None).await
    }

    /// Gets an item (Python's `get(block, timeout)`).
    ///
    /// # Errors
    ///
    /// [`SyncError::Empty`] when it would block and `block` is false, or `timeout`
    /// ran out; [`SyncError::Decode`] (the item goes back to the front of the
    /// queue); [`SyncError::OwnerGone`]; [`SyncError::Forged`].
    pub async fn get(&self, block: bool, timeout: Option<Duration>) -> Result<T, SyncError> {
        let l = match &self.side {
            Side::Here(l) => l,
            Side::Far(far) => {
                let bytes = far.item(FarOp::Get { block, timeout }).await?;
                return super::far::way::from_root(|| codec::decode::<T>(&bytes))
                    .map_err(SyncError::Decode);
            }
        };
        let mem = l.mem().await?;
        let mut bytes = Vec::new();
        if !mem.get(&mut bytes, false, None, l.owner())? {
            if !block {
                return Err(SyncError::Empty);
            }
            if !mem.get_async(&mut bytes, timeout, l.owner()).await? {
                return Err(SyncError::Empty);
            }
        }
        // Decoded (and marked delivered) in the same poll as the take, on the same
        // thread, whose slot kept the item.
        self.decode(l, mem, &bytes)
    }

    /// Decodes an item just taken; one that does not decode goes back.
    fn decode(&self, l: &Local, mem: &QueueMem, bytes: &[u8]) -> Result<T, SyncError> {
        match codec::decode::<T>(bytes) {
            Ok(value) => {
                // From here on the item is the caller's (a joinable queue's is until
                // its `task_done`).
                if !mem.joinable() {
                    mem.delivered();
                }
                Ok(value)
            }
            Err(e) => {
                mem.give_back(bytes, l.owner())?;
                Err(SyncError::Decode(e))
            }
        }
    }

    /// Gets an item from a thread that may block: as [`get`](Queue::get), with no
    /// runtime in between.
    ///
    /// # Errors
    ///
    /// As [`get`](Queue::get).
    pub(crate) fn get_blocking(
        &self,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<T, SyncError> {
        let l = match &self.side {
            Side::Here(l) => l,
            Side::Far(_) => return crate::runtime::block_on(self.get(block, timeout)),
        };
        let mem = l.mem_blocking()?;
        BUFFER.with(|buf| {
            let mut buf = buf.borrow_mut();
            if !mem.get(&mut buf, block, timeout, l.owner())? {
                return Err(SyncError::Empty);
            }
            self.decode(l, mem, &buf)
        })
    }

    /// `get(false, None)`.
    ///
    /// # Errors
    ///
    /// As [`get`](Queue::get).
    pub async fn get_nowait(&self) -> Result<T, SyncError> {
        self.get(false, None).await
    }

    /// Items in the queue now.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerGone`], [`SyncError::Forged`] (mapping it).
    pub async fn qsize(&self) -> Result<usize, SyncError> {
        Ok(self.size_raw().await?.0)
    }

    /// Whether it is empty now.
    ///
    /// # Errors
    ///
    /// As [`qsize`](Queue::qsize).
    pub async fn empty(&self) -> Result<bool, SyncError> {
        Ok(self.size_raw().await?.0 == 0)
    }

    /// Whether it is full now.
    ///
    /// # Errors
    ///
    /// As [`qsize`](Queue::qsize).
    pub async fn full(&self) -> Result<bool, SyncError> {
        Ok(self.size_raw().await?.1)
    }

    /// This handle puts no more (Python's `close`); other handles are not affected.
    pub fn close(&mut self) {
        self.closed = true;
    }
}

/// Python's `JoinableQueue`: a [`Queue`] made with [`Queue::joinable`].
pub type JoinableQueue<T> = Queue<T>;

/// Python's `SimpleQueue`: an unbounded [`Queue`].
pub type SimpleQueue<T> = Queue<T>;
