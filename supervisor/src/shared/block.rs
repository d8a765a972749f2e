//! A block of shared memory as the handles of `Value`, `Array` and their raw kinds
//! carry it: its segment, and the header that proves a handle genuine.

#![allow(unsafe_code)]

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use super::{Pod, SharedMemoryError, pod};
use crate::runtime::shm::{self, Segment, SegmentRef};

/// Where a block's data starts: after its header, a cache line.
pub(super) const DATA_AT: usize = 64;
pub(super) const MAGIC_AT: usize = 0;
pub(super) const SECRET_AT: usize = 8;
pub(super) const LEN_AT: usize = 16;
/// The element's size, so that a handle decoded as another type maps nothing.
pub(super) const ELEM_AT: usize = 24;

pub(super) fn magic(kind: &[u8; 8]) -> u64 {
    u64::from_le_bytes(*kind)
}

/// What a block holds; a handle of one kind maps no block of another.
pub(super) const VALUE: &[u8; 8] = b"mp-value";
pub(super) const ARRAY: &[u8; 8] = b"mp-array";

/// A block's memory and what its handles carry.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct Block {
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
    pub(super) fn create(
        name: &str,
        kind: u64,
        len: usize,
        elem: usize,
    ) -> Result<Block, SharedMemoryError> {
        let bytes = len
            .checked_mul(elem)
            .and_then(|b| b.checked_add(DATA_AT))
            .ok_or_else(|| SharedMemoryError::Size(format!("{len} elements of {elem} bytes")))?;
        let seg = Segment::create(name, bytes)?;
        seg.populate();
        let seg = shm::host(seg);
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
    pub(super) fn segment(
        &self,
        kind: u64,
        elem: usize,
    ) -> Result<&Arc<Segment>, SharedMemoryError> {
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
        seg.populate();
        Ok(self.mapped.get_or_init(|| seg))
    }

    pub(super) fn len(&self, kind: u64, elem: usize) -> Result<usize, SharedMemoryError> {
        let seg = self.segment(kind, elem)?;
        Ok(seg.u64_at(LEN_AT).load(Ordering::Relaxed) as usize)
    }

    /// A pointer to element `i` of `T`s.
    pub(super) fn at<T: Pod>(&self, kind: u64, i: usize) -> Result<*mut T, SharedMemoryError> {
        const { pod::check_align::<T>() };
        let elem = std::mem::size_of::<T>();
        let len = self.len(kind, elem)?;
        if i >= len {
            return Err(SharedMemoryError::OutOfBounds { index: i, len });
        }
        let seg = self.segment(kind, elem)?;
        // SAFETY: in bounds (checked against the block's length, which the mapping
        // covers); aligned, since the data starts on a 64-byte boundary and the
        // `const` above refused any `T` aligned to more.
        Ok(unsafe { seg.as_mut_ptr().add(DATA_AT).cast::<T>().add(i) })
    }
}
