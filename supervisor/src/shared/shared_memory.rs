//! `SharedMemory`: Python's `multiprocessing.shared_memory.SharedMemory`, a block
//! of bytes that one handle owns and others borrow.

#![allow(unsafe_code)]

use std::fmt;

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::SharedMemoryError;
use super::block::{DATA_AT, LEN_AT, MAGIC_AT, SECRET_AT, magic};
use crate::runtime::shm::{Segment, SegmentRef};

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
        seg.populate();
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
        seg.populate();
        Ok(SharedMemory {
            seg,
            secret: self.secret,
            owner: false,
        })
    }
}
