//! A primitive whose state is in a segment of shared memory, as its handles carry
//! it: where the segment is and which host serves it, and the segment's header
//! that proves a handle genuine.

use std::fmt;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::SyncError;
use super::host::{self, State};
use super::refs::Addr;
use crate::runtime::shm::Segment;

/// Where a segment keeps its magic number and the secret of its handles.
const MAGIC_AT: usize = 0;
const SECRET_AT: usize = 8;
/// Bytes of the smallest segment (a lock's or an event's): its header and one word,
/// each on a cache line.
pub(super) const MIN_LEN: usize = 128;

/// Writes a new segment's header.
pub(crate) fn init(seg: &Segment, magic: u64, secret: u64) {
    seg.u64_at(SECRET_AT).store(secret, Ordering::Relaxed);
    seg.u64_at(MAGIC_AT).store(magic, Ordering::Release);
}

/// Whether `seg` is a segment of kind `magic` for handles with `secret`.
pub(crate) fn genuine(seg: &Segment, magic: u64, secret: u64) -> bool {
    seg.len() >= MIN_LEN
        && seg.u64_at(MAGIC_AT).load(Ordering::Acquire) == magic
        && seg.u64_at(SECRET_AT).load(Ordering::Relaxed) == secret
}

/// A primitive whose state is in a segment of shared memory: its address at its
/// host, where its memory is, and (once this process has mapped it) its word.
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub(super) struct Mapped<W> {
    pub(super) addr: Addr,
    pub(super) seg: crate::runtime::shm::SegmentRef,
    #[serde(skip)]
    pub(super) word: std::sync::OnceLock<W>,
}

impl<W> fmt::Debug for Mapped<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapped")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl<W> PartialEq for Mapped<W> {
    fn eq(&self, other: &Mapped<W>) -> bool {
        self.addr == other.addr && self.seg == other.seg
    }
}

impl<W> Eq for Mapped<W> {}

impl<W> Mapped<W> {
    /// A new segment of `len` bytes of kind `magic`, hosted here; `word` makes the
    /// word on it and `state` what the host keeps.
    pub(super) fn create(
        name: &str,
        len: usize,
        magic: u64,
        word: impl FnOnce(std::sync::Arc<crate::runtime::shm::Segment>) -> W,
        state: impl FnOnce(&W) -> State,
    ) -> Result<Mapped<W>, SyncError> {
        let seg = crate::runtime::shm::Segment::create(name, len)?;
        let seg = crate::runtime::shm::host(seg);
        let secret = host::secret();
        init(&seg, magic, secret);
        let at = seg.at();
        let word = word(seg);
        Ok(Mapped {
            addr: Addr::new_with(state(&word), secret, Some(at)),
            seg: at,
            word: std::sync::OnceLock::from(word),
        })
    }

    /// Maps the segment, which must be of kind `magic` and for this handle's
    /// secret, and makes its word (not kept: see `keep`).
    pub(super) fn open(
        &self,
        magic: u64,
        word: impl FnOnce(std::sync::Arc<crate::runtime::shm::Segment>) -> W,
    ) -> Result<W, SyncError> {
        let seg = self.addr.map(self.seg)?;
        if !genuine(&seg, magic, self.addr.secret) {
            return Err(SyncError::Forged);
        }
        Ok(word(seg))
    }

    /// Keeps the word mapped for this handle.
    pub(super) fn keep(&self, word: W) -> &W {
        self.word.get_or_init(|| word)
    }

    /// The word, mapped; the first time in a process, the host is told who uses it,
    /// so that it watches this process and clears what it holds if it dies.
    pub(super) async fn attached(
        &self,
        magic: u64,
        word: impl FnOnce(std::sync::Arc<crate::runtime::shm::Segment>) -> W,
    ) -> Result<&W, SyncError> {
        if let Some(w) = self.word.get() {
            return Ok(w);
        }
        let w = self.open(magic, word)?;
        self.addr.attach().await?;
        Ok(self.keep(w))
    }

    /// As `attached`, from a thread that may block.
    pub(super) fn attached_blocking(
        &self,
        magic: u64,
        word: impl FnOnce(std::sync::Arc<crate::runtime::shm::Segment>) -> W,
    ) -> Result<&W, SyncError> {
        match self.word.get() {
            Some(w) => Ok(w),
            None => crate::runtime::block_on(self.attached(magic, word)),
        }
    }
}
