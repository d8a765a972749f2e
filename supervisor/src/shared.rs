//! Plain data in shared memory: Python's `Value`, `Array`, `RawValue`, `RawArray`
//! and `multiprocessing.shared_memory.SharedMemory`.
//!
//! Each lives in an anonymous memfd (see `shm`): no name in `/dev/shm`, nothing to
//! unlink, nothing left behind whatever kills whom; the memory goes with its last
//! mapping. A handle is a plain serde value: pass it to a child or inside a message,
//! and the first use there maps the memory (through `/proc/<creator>/fd`, while the
//! creator lives).

#![allow(unsafe_code)]

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use multiproc_core::Exhausted;
use serde::{Deserialize, Serialize};

use crate::runtime::shm::{self, MapError, Segment, SegmentRef};
use crate::sync::{Guard, Lock, SyncError};

/// Plain old data: a `Copy` type without pointers, for which every byte pattern
/// of its size is a valid value, so that it can live in memory that other
/// processes write.
///
/// # Safety
///
/// Implement it only for a `#[repr(C)]` (or `#[repr(transparent)]`) type whose
/// fields are all `Pod`, with no padding, and no alignment over 64. `bool`, `char`,
/// references, `Box`, `String` and `Vec` are not plain old data.
///
/// ```compile_fail
/// // A `String` points into its process's heap: not plain old data.
/// let v = multiproc_supervisor::RawValue::new(String::from("no"));
/// ```
pub unsafe trait Pod: Copy + Send + Sync + 'static {}

macro_rules! pod {
    ($($t:ty),*) => { $(
        // SAFETY: a primitive number: any bytes are a value.
        unsafe impl Pod for $t {}
    )* };
}
pod!(
    u8, i8, u16, i16, u32, i32, u64, i64, u128, i128, usize, isize, f32, f64
);
// SAFETY: an array of plain old data, without padding between its elements.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

/// What can go wrong with shared memory.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SharedMemoryError {
    /// The block no longer exists: its owner dropped it or exited before this
    /// process mapped it (Python: `FileNotFoundError`).
    #[error("the shared memory block no longer exists")]
    Gone,
    /// The handle does not name a block of this kind and size (forged, corrupted, or
    /// of another element type).
    #[error("this handle does not name a shared memory block of this kind")]
    Forged,
    /// An index or range past the end.
    #[error("index {index} is out of bounds for a length of {len}")]
    OutOfBounds {
        /// The first index past the end that was asked for.
        index: usize,
        /// The length.
        len: usize,
    },
    /// A size of 0 (Python: `ValueError`), or one that does not fit in memory.
    #[error("invalid size: {0}")]
    Size(String),
    /// The system has no room for the block (or its lock): no descriptor, no
    /// memory, no mapping left. The message names the limit, its value, and how to
    /// raise it.
    #[error(transparent)]
    Exhausted(Exhausted),
    /// The system refused the memory otherwise.
    #[error("shared memory: {0}")]
    Memory(String),
    /// The lock failed (its host is gone).
    #[error(transparent)]
    Lock(SyncError),
}

impl From<MapError> for SharedMemoryError {
    fn from(e: MapError) -> SharedMemoryError {
        match e {
            MapError::Gone => SharedMemoryError::Gone,
            MapError::Exhausted(x) => SharedMemoryError::Exhausted(x),
            MapError::Io(e) => SharedMemoryError::Memory(e.to_string()),
        }
    }
}

impl From<SyncError> for SharedMemoryError {
    fn from(e: SyncError) -> SharedMemoryError {
        match e {
            // A lock that could not be made, for want of the same room as the block.
            SyncError::Exhausted(x) => SharedMemoryError::Exhausted(x),
            e => SharedMemoryError::Lock(e),
        }
    }
}

/// Where a block's data starts: after its header, a cache line.
const DATA_AT: usize = 64;
const MAGIC_AT: usize = 0;
const SECRET_AT: usize = 8;
const LEN_AT: usize = 16;
/// The element's size, so that a handle decoded as another type maps nothing.
const ELEM_AT: usize = 24;

fn magic(kind: &[u8; 8]) -> u64 {
    u64::from_le_bytes(*kind)
}

/// What a block holds; a handle of one kind maps no block of another.
const VALUE: &[u8; 8] = b"mp-value";
const ARRAY: &[u8; 8] = b"mp-array";

/// A block's memory and what its handles carry.
#[derive(Clone, Serialize, Deserialize)]
struct Block {
    seg: SegmentRef,
    secret: u64,
    /// Counts this handle, so that the block is freed with the last one in the tree.
    addr: crate::sync::Addr,
    #[serde(skip)]
    mapped: OnceLock<Arc<Segment>>,
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Block")
            .field("seg", &self.seg)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Block {
    fn eq(&self, other: &Block) -> bool {
        self.seg == other.seg && self.secret == other.secret
    }
}

impl Block {
    /// A new zeroed block of `len` elements of `elem` bytes, hosted by this process
    /// until the last handle in the tree is gone.
    fn create(name: &str, kind: u64, len: usize, elem: usize) -> Result<Block, SharedMemoryError> {
        let bytes = len
            .checked_mul(elem)
            .and_then(|b| b.checked_add(DATA_AT))
            .ok_or_else(|| SharedMemoryError::Size(format!("{len} elements of {elem} bytes")))?;
        let seg = shm::host(Segment::create(name, bytes)?);
        let secret = crate::sync::secret();
        seg.u64_at(SECRET_AT).store(secret, Ordering::Relaxed);
        seg.u64_at(LEN_AT).store(len as u64, Ordering::Relaxed);
        seg.u64_at(ELEM_AT).store(elem as u64, Ordering::Relaxed);
        seg.u64_at(MAGIC_AT).store(kind, Ordering::Release);
        Ok(Block {
            seg: seg.at(),
            secret,
            addr: crate::sync::Addr::new_with(crate::sync::State::Mapped, secret, Some(seg.at())),
            mapped: OnceLock::from(seg),
        })
    }

    /// The mapped segment, checked to be this block, of `kind` (the handle's type
    /// says which), with `elem`-byte elements.
    fn segment(&self, kind: u64, elem: usize) -> Result<&Arc<Segment>, SharedMemoryError> {
        if let Some(seg) = self.mapped.get() {
            return Ok(seg);
        }
        self.addr.mapped_here(self.seg);
        let seg = shm::mapped(self.seg)?;
        let genuine = seg.len() >= DATA_AT
            && seg.u64_at(MAGIC_AT).load(Ordering::Acquire) == kind
            && seg.u64_at(SECRET_AT).load(Ordering::Relaxed) == self.secret
            && seg.u64_at(ELEM_AT).load(Ordering::Relaxed) == elem as u64
            && usize::try_from(seg.u64_at(LEN_AT).load(Ordering::Relaxed))
                .ok()
                .and_then(|n| n.checked_mul(elem))
                .and_then(|b| b.checked_add(DATA_AT))
                .is_some_and(|b| b <= seg.len());
        if !genuine {
            return Err(SharedMemoryError::Forged);
        }
        Ok(self.mapped.get_or_init(|| seg))
    }

    fn len(&self, kind: u64, elem: usize) -> Result<usize, SharedMemoryError> {
        let seg = self.segment(kind, elem)?;
        Ok(seg.u64_at(LEN_AT).load(Ordering::Relaxed) as usize)
    }

    /// A pointer to element `i` of `T`s.
    fn at<T: Pod>(&self, kind: u64, i: usize) -> Result<*mut T, SharedMemoryError> {
        let elem = std::mem::size_of::<T>();
        let len = self.len(kind, elem)?;
        if i >= len {
            return Err(SharedMemoryError::OutOfBounds { index: i, len });
        }
        let seg = self.segment(kind, elem)?;
        // SAFETY: in bounds (checked against the block's length, which the mapping
        // covers); aligned, since the data starts on a 64-byte boundary and `Pod`
        // types are aligned to at most 64.
        Ok(unsafe { seg.as_mut_ptr().add(DATA_AT).cast::<T>().add(i) })
    }
}

/// Python's `RawValue`: one `T` in shared memory, without a lock. `get` and `set`
/// copy it whole; two processes that change it at once race, as in Python (use a
/// [`Value`], or a lock of your own).
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct RawValue<T: Pod> {
    block: Block,
    #[serde(skip)]
    _t: PhantomData<T>,
}

impl<T: Pod> Clone for RawValue<T> {
    fn clone(&self) -> Self {
        RawValue {
            block: self.block.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Pod> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawValue")
            .field("block", &self.block)
            .finish()
    }
}

impl<T: Pod> PartialEq for RawValue<T> {
    fn eq(&self, other: &Self) -> bool {
        self.block == other.block
    }
}

impl<T: Pod> RawValue<T> {
    /// A new value in shared memory, created by this process.
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::Exhausted`] when the system has no descriptor or memory
    /// left for it (the message names the limit); [`SharedMemoryError::Memory`] when
    /// it refuses otherwise.
    pub fn new(value: T) -> Result<RawValue<T>, SharedMemoryError> {
        let block = Block::create("multiproc-value", magic(VALUE), 1, std::mem::size_of::<T>())?;
        let v = RawValue {
            block,
            _t: PhantomData,
        };
        v.set(value)?;
        Ok(v)
    }

    /// Its value now.
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::Gone`] when this process maps it first after its creator
    /// exited; [`SharedMemoryError::Forged`].
    pub fn get(&self) -> Result<T, SharedMemoryError> {
        let p = self.block.at::<T>(magic(VALUE), 0)?;
        // SAFETY: `at` checked bounds and alignment; any bytes are a `T` (`Pod`).
        Ok(unsafe { p.read_volatile() })
    }

    /// Sets it.
    ///
    /// # Errors
    ///
    /// As [`get`](RawValue::get).
    pub fn set(&self, value: T) -> Result<(), SharedMemoryError> {
        let p = self.block.at::<T>(magic(VALUE), 0)?;
        // SAFETY: as in `get`.
        unsafe { p.write_volatile(value) };
        Ok(())
    }
}

/// Python's `Value`: a [`RawValue`] with a [`Lock`] (Python's `get_lock()`).
/// [`lock`](Value::lock) holds it and gives the value to change in place, so
/// `*v.lock()? += 1` is Python's `with v.get_lock(): v.value += 1`.
///
/// ```
/// multiproc_supervisor::init();
/// let v = multiproc_supervisor::Value::new(0u64)?;
/// *v.lock()? += 1;
/// assert_eq!(v.get()?, 1);
/// # Ok::<(), multiproc_supervisor::SharedMemoryError>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Value<T: Pod> {
    raw: RawValue<T>,
    lock: Lock,
}

impl<T: Pod> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value {
            raw: self.raw.clone(),
            lock: self.lock.clone(),
        }
    }
}

impl<T: Pod> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value").field("raw", &self.raw).finish()
    }
}

impl<T: Pod> Value<T> {
    /// A new value with a new lock.
    ///
    /// # Errors
    ///
    /// As [`RawValue::new`], for the value or its lock.
    pub fn new(value: T) -> Result<Value<T>, SharedMemoryError> {
        Value::with_lock(value, Lock::new()?)
    }

    /// A new value guarded by `lock` (Python's `Value(..., lock=lock)`).
    ///
    /// # Errors
    ///
    /// As [`RawValue::new`].
    pub fn with_lock(value: T, lock: Lock) -> Result<Value<T>, SharedMemoryError> {
        Ok(Value {
            raw: RawValue::new(value)?,
            lock,
        })
    }

    /// The lock (Python's `get_lock()`).
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// The value without its lock (Python's `get_obj()`).
    pub fn get_obj(&self) -> &RawValue<T> {
        &self.raw
    }

    /// Its value now, read under the lock.
    ///
    /// # Errors
    ///
    /// As [`RawValue::get`]; [`SharedMemoryError::Lock`].
    pub fn get(&self) -> Result<T, SharedMemoryError> {
        Ok(*self.lock()?)
    }

    /// Sets it under the lock.
    ///
    /// # Errors
    ///
    /// As [`get`](Value::get).
    pub fn set(&self, value: T) -> Result<(), SharedMemoryError> {
        *self.lock()? = value;
        Ok(())
    }

    /// Holds the lock and gives the value, to read or change in place. A previous
    /// holder that died holding the lock is [`ValueGuard::owner_died`].
    ///
    /// # Errors
    ///
    /// As [`get`](Value::get).
    pub fn lock(&self) -> Result<ValueGuard<'_, T>, SharedMemoryError> {
        let ptr = self.raw.block.at::<T>(magic(VALUE), 0)?;
        let guard = self.lock.guard_blocking()?;
        Ok(ValueGuard {
            ptr,
            guard,
            _t: PhantomData,
        })
    }
}

/// The value of a [`Value`], while its lock is held.
#[derive(Debug)]
pub struct ValueGuard<'a, T: Pod> {
    ptr: *mut T,
    guard: Guard<'a, Lock>,
    _t: PhantomData<&'a mut T>,
}

impl<T: Pod> ValueGuard<'_, T> {
    /// Whether the previous holder of the lock died holding it (the value may be
    /// half-updated).
    pub fn owner_died(&self) -> bool {
        self.guard.owner_died()
    }
}

impl<T: Pod> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: in the mapping (checked by `at`), which the `Value` keeps; every
        // process that honours the lock leaves it alone while it is held.
        unsafe { &*self.ptr }
    }
}

impl<T: Pod> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes it the only borrow here.
        unsafe { &mut *self.ptr }
    }
}

/// Python's `RawArray`: `len` `T`s in shared memory, without a lock.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct RawArray<T: Pod> {
    block: Block,
    #[serde(skip)]
    _t: PhantomData<T>,
}

impl<T: Pod> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        RawArray {
            block: self.block.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Pod> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawArray")
            .field("block", &self.block)
            .finish()
    }
}

impl<T: Pod> RawArray<T> {
    /// A new array holding a copy of `items`.
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::Size`] for an empty one; as [`RawValue::new`].
    pub fn from_slice(items: &[T]) -> Result<RawArray<T>, SharedMemoryError> {
        let a = RawArray::<T>::zeroed_uninit(items.len())?;
        a.write(0, items)?;
        Ok(a)
    }

    /// A new array of `len` zeroed `T`s (Python's `RawArray(type, size)`).
    ///
    /// # Errors
    ///
    /// As [`from_slice`](RawArray::from_slice).
    pub fn zeroed(len: usize) -> Result<RawArray<T>, SharedMemoryError> {
        RawArray::zeroed_uninit(len)
    }

    fn zeroed_uninit(len: usize) -> Result<RawArray<T>, SharedMemoryError> {
        if len == 0 {
            return Err(SharedMemoryError::Size("an array of 0 elements".into()));
        }
        Ok(RawArray {
            block: Block::create(
                "multiproc-array",
                magic(ARRAY),
                len,
                std::mem::size_of::<T>(),
            )?,
            _t: PhantomData,
        })
    }

    /// Its length.
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::Gone`], [`SharedMemoryError::Forged`].
    pub fn len(&self) -> Result<usize, SharedMemoryError> {
        self.block.len(magic(ARRAY), std::mem::size_of::<T>())
    }

    /// Whether it is empty (never: an array has at least one element).
    ///
    /// # Errors
    ///
    /// As [`len`](RawArray::len).
    pub fn is_empty(&self) -> Result<bool, SharedMemoryError> {
        Ok(self.len()? == 0)
    }

    /// Element `i`.
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::OutOfBounds`]; as [`len`](RawArray::len).
    pub fn get(&self, i: usize) -> Result<T, SharedMemoryError> {
        let p = self.block.at::<T>(magic(ARRAY), i)?;
        // SAFETY: in bounds and aligned (`at`); any bytes are a `T`.
        Ok(unsafe { p.read_volatile() })
    }

    /// Sets element `i`.
    ///
    /// # Errors
    ///
    /// As [`get`](RawArray::get).
    pub fn set(&self, i: usize, value: T) -> Result<(), SharedMemoryError> {
        let p = self.block.at::<T>(magic(ARRAY), i)?;
        // SAFETY: as in `get`.
        unsafe { p.write_volatile(value) };
        Ok(())
    }

    /// Copies `items` in, from element `start`.
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::OutOfBounds`] when they do not fit (nothing is written).
    pub fn write(&self, start: usize, items: &[T]) -> Result<(), SharedMemoryError> {
        let (p, n) = self.range(start, items.len())?;
        // SAFETY: `range` checked the whole range; shared memory never overlaps a
        // Rust slice of this process.
        unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), p, n) };
        Ok(())
    }

    /// A copy of every element.
    ///
    /// # Errors
    ///
    /// As [`len`](RawArray::len).
    pub fn to_vec(&self) -> Result<Vec<T>, SharedMemoryError> {
        let len = self.len()?;
        let (p, n) = self.range(0, len)?;
        let mut out = Vec::with_capacity(n);
        // SAFETY: `range` checked it; `out` has room for `n`, all of them written.
        unsafe {
            std::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), n);
            out.set_len(n);
        }
        Ok(out)
    }

    fn range(&self, start: usize, n: usize) -> Result<(*mut T, usize), SharedMemoryError> {
        let len = self.len()?;
        let end =
            start
                .checked_add(n)
                .filter(|&e| e <= len)
                .ok_or(SharedMemoryError::OutOfBounds {
                    index: start.saturating_add(n),
                    len,
                })?;
        if n == 0 {
            return Ok((std::ptr::NonNull::dangling().as_ptr(), 0));
        }
        let _ = end;
        Ok((self.block.at::<T>(magic(ARRAY), start)?, n))
    }
}

/// Python's `Array`: a [`RawArray`] with a [`Lock`]; [`lock`](Array::lock) holds it
/// and gives the elements as a slice.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Array<T: Pod> {
    raw: RawArray<T>,
    lock: Lock,
}

impl<T: Pod> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            raw: self.raw.clone(),
            lock: self.lock.clone(),
        }
    }
}

impl<T: Pod> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array").field("raw", &self.raw).finish()
    }
}

impl<T: Pod> Array<T> {
    /// A new array holding a copy of `items`, with a new lock.
    ///
    /// # Errors
    ///
    /// As [`RawArray::from_slice`].
    pub fn from_slice(items: &[T]) -> Result<Array<T>, SharedMemoryError> {
        Ok(Array {
            raw: RawArray::from_slice(items)?,
            lock: Lock::new()?,
        })
    }

    /// A new array of `len` zeroed `T`s, with a new lock.
    ///
    /// # Errors
    ///
    /// As [`RawArray::zeroed`].
    pub fn zeroed(len: usize) -> Result<Array<T>, SharedMemoryError> {
        Ok(Array {
            raw: RawArray::zeroed(len)?,
            lock: Lock::new()?,
        })
    }

    /// The lock (Python's `get_lock()`).
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// The array without its lock (Python's `get_obj()`).
    pub fn get_obj(&self) -> &RawArray<T> {
        &self.raw
    }

    /// Its length.
    ///
    /// # Errors
    ///
    /// As [`RawArray::len`].
    pub fn len(&self) -> Result<usize, SharedMemoryError> {
        self.raw.len()
    }

    /// Whether it is empty (never).
    ///
    /// # Errors
    ///
    /// As [`RawArray::len`].
    pub fn is_empty(&self) -> Result<bool, SharedMemoryError> {
        self.raw.is_empty()
    }

    /// Element `i`, read under the lock.
    ///
    /// # Errors
    ///
    /// As [`RawArray::get`]; [`SharedMemoryError::Lock`].
    pub fn get(&self, i: usize) -> Result<T, SharedMemoryError> {
        let g = self.lock()?;
        g.get(i).copied().ok_or(SharedMemoryError::OutOfBounds {
            index: i,
            len: g.len(),
        })
    }

    /// Sets element `i` under the lock.
    ///
    /// # Errors
    ///
    /// As [`get`](Array::get).
    pub fn set(&self, i: usize, value: T) -> Result<(), SharedMemoryError> {
        let mut g = self.lock()?;
        let len = g.len();
        *g.get_mut(i)
            .ok_or(SharedMemoryError::OutOfBounds { index: i, len })? = value;
        Ok(())
    }

    /// A copy of every element, under the lock.
    ///
    /// # Errors
    ///
    /// As [`get`](Array::get).
    pub fn to_vec(&self) -> Result<Vec<T>, SharedMemoryError> {
        Ok(self.lock()?.to_vec())
    }

    /// Holds the lock and gives the elements, to read or change in place.
    ///
    /// # Errors
    ///
    /// As [`RawArray::len`]; [`SharedMemoryError::Lock`].
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>, SharedMemoryError> {
        let len = self.raw.len()?;
        let ptr = self.raw.block.at::<T>(magic(ARRAY), 0)?;
        let guard = self.lock.guard_blocking()?;
        Ok(ArrayGuard {
            ptr,
            len,
            guard,
            _t: PhantomData,
        })
    }
}

/// The elements of an [`Array`], while its lock is held.
#[derive(Debug)]
pub struct ArrayGuard<'a, T: Pod> {
    ptr: *mut T,
    len: usize,
    guard: Guard<'a, Lock>,
    _t: PhantomData<&'a mut [T]>,
}

impl<T: Pod> ArrayGuard<'_, T> {
    /// Whether the previous holder of the lock died holding it.
    pub fn owner_died(&self) -> bool {
        self.guard.owner_died()
    }
}

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `len` elements in the mapping (checked when locked); every process
        // that honours the lock leaves them alone while it is held.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes it the only borrow here.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// Python's `multiprocessing.shared_memory.SharedMemory`: a block of bytes. The
/// handle made by [`create`](SharedMemory::create) *owns* the block: when it is
/// dropped (Python's `unlink`), no process can open the block any more, and the
/// memory goes with the last mapping. [`open`](SharedMemoryRef::open) makes a
/// borrowing handle, which only unmaps when dropped (Python's `close`).
pub struct SharedMemory {
    seg: Segment,
    secret: u64,
    owner: bool,
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("size", &self.size())
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// What names a [`SharedMemory`] block across processes (Python's `name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedMemoryRef {
    seg: SegmentRef,
    secret: u64,
}

const SHM_MAGIC: &[u8; 8] = b"mp-shmem";

impl SharedMemory {
    /// A new zeroed block of `size` bytes, owned by this handle.
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::Size`] for 0 bytes (Python's `ValueError`);
    /// [`SharedMemoryError::Exhausted`] when the system has no descriptor or memory
    /// left for the block (the message names the limit and the size asked);
    /// [`SharedMemoryError::Memory`] when it refuses otherwise.
    pub fn create(size: usize) -> Result<SharedMemory, SharedMemoryError> {
        if size == 0 {
            return Err(SharedMemoryError::Size(
                "a shared memory block needs at least one byte".into(),
            ));
        }
        let bytes = size
            .checked_add(DATA_AT)
            .ok_or_else(|| SharedMemoryError::Size(format!("{size} bytes")))?;
        let seg = Segment::create("multiproc-shm", bytes)?;
        let secret = crate::sync::secret();
        seg.u64_at(SECRET_AT).store(secret, Ordering::Relaxed);
        seg.u64_at(LEN_AT).store(size as u64, Ordering::Relaxed);
        seg.u64_at(MAGIC_AT)
            .store(magic(SHM_MAGIC), Ordering::Release);
        Ok(SharedMemory {
            seg,
            secret,
            owner: true,
        })
    }

    /// Its handle, for other processes.
    pub fn handle(&self) -> SharedMemoryRef {
        SharedMemoryRef {
            seg: self.seg.at(),
            secret: self.secret,
        }
    }

    /// Whether this handle owns the block.
    pub fn is_owner(&self) -> bool {
        self.owner
    }

    /// Its size in bytes.
    pub fn size(&self) -> usize {
        self.seg.u64_at(LEN_AT).load(Ordering::Relaxed) as usize
    }

    fn check(&self, offset: usize, n: usize) -> Result<*mut u8, SharedMemoryError> {
        let size = self.size();
        match offset.checked_add(n) {
            Some(end) if end <= size => {
                // SAFETY: within the block's data, which the mapping covers.
                Ok(unsafe { self.seg.as_mut_ptr().add(DATA_AT + offset) })
            }
            _ => Err(SharedMemoryError::OutOfBounds {
                index: offset.saturating_add(n),
                len: size,
            }),
        }
    }

    /// Copies `data` in at `offset`.
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::OutOfBounds`] (nothing written).
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<(), SharedMemoryError> {
        let p = self.check(offset, data.len())?;
        // SAFETY: `check` bounded it; shared memory overlaps no Rust slice here.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
        Ok(())
    }

    /// Copies bytes out from `offset` into `buf`.
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::OutOfBounds`] (nothing read).
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), SharedMemoryError> {
        let p = self.check(offset, buf.len())?;
        // SAFETY: as in `write`.
        unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// The block's first byte, for code that shares more than copies (Python's
    /// `buf`). Other processes may change the bytes at any time.
    pub fn as_ptr(&self) -> *mut u8 {
        // SAFETY: the data starts inside the mapping.
        unsafe { self.seg.as_mut_ptr().add(DATA_AT) }
    }
}

impl SharedMemoryRef {
    /// Maps the block (Python's `SharedMemory(name)`): a borrowing handle.
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::Gone`] when its owner dropped it or exited;
    /// [`SharedMemoryError::Forged`].
    pub fn open(&self) -> Result<SharedMemory, SharedMemoryError> {
        let seg = Segment::open(self.seg)?;
        let genuine = seg.len() >= DATA_AT
            && seg.u64_at(MAGIC_AT).load(Ordering::Acquire) == magic(SHM_MAGIC)
            && seg.u64_at(SECRET_AT).load(Ordering::Relaxed) == self.secret
            && usize::try_from(seg.u64_at(LEN_AT).load(Ordering::Relaxed))
                .ok()
                .and_then(|n| n.checked_add(DATA_AT))
                .is_some_and(|b| b <= seg.len());
        if !genuine {
            return Err(SharedMemoryError::Forged);
        }
        Ok(SharedMemory {
            seg,
            secret: self.secret,
            owner: false,
        })
    }
}
