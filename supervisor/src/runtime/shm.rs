//! Shared memory: anonymous memfds, mapped by every process that uses them.
//!
//! A segment is created by one process (its host) and named, in a handle, by the
//! host's pid, the fd number there and the file's inode. Another process maps it by
//! opening `/proc/<pid>/fd/<fd>` (the same file, not a copy) and checks the inode, so
//! a handle whose host has exited, or whose fd number now names something else,
//! maps nothing. A memfd has no name in any file system: nothing is left behind in
//! `/dev/shm` whatever kills whom; the memory goes when its last mapping does.
//!
//! Futexes on words of a segment are shared between processes (no
//! `FUTEX_PRIVATE_FLAG`).

#![allow(unsafe_code)]

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use multiproc_core::Exhausted;
use multiproc_transport::Resource;
use rustix::fs::{MemfdFlags, Mode, OFlags};
use rustix::mm::{MapFlags, ProtFlags};
use rustix::thread::futex;
use serde::{Deserialize, Serialize};

/// A mapped segment.
pub(crate) struct Segment {
    ptr: NonNull<u8>,
    len: usize,
    /// Kept open by the host only: it is what other processes open through `/proc`.
    _fd: Option<OwnedFd>,
    at: SegmentRef,
}

// SAFETY: the mapping is shared memory that every user accesses through atomics or
// under a lock kept in the segment; the pointer is valid for the segment's life.
unsafe impl Send for Segment {}
// SAFETY: as for `Send`.
unsafe impl Sync for Segment {}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("at", &self.at)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Where a segment is: enough for another process to map it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct SegmentRef {
    pub(crate) pid: u32,
    pub(crate) fd: i32,
    pub(crate) ino: u64,
    pub(crate) len: u64,
}

/// Why a segment could not be made or mapped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MapError {
    /// Its host is gone, or its fd there names another file now.
    #[error("the shared memory segment no longer exists")]
    Gone,
    /// The system has no room for it: no descriptor, no memory, no mapping left.
    #[error(transparent)]
    Exhausted(Exhausted),
    /// The system refused it otherwise.
    #[error("shared memory: {0}")]
    Io(io::Error),
}

impl MapError {
    /// The error of a call that makes a descriptor or memory (`creating`).
    fn refused(e: impl Into<io::Error>, creating: Resource) -> MapError {
        let e = e.into();
        match multiproc_transport::exhausted(&e, creating) {
            Some(x) => MapError::Exhausted(x),
            None => MapError::Io(e),
        }
    }
}

/// This process's pid, read once (glibc does not cache `getpid`).
pub(crate) fn my_pid() -> u32 {
    static PID: OnceLock<u32> = OnceLock::new();
    *PID.get_or_init(std::process::id)
}

impl Segment {
    /// A new zeroed segment of `len` bytes, hosted by this process. Its pages are
    /// only allocated when first touched (or by [`populate`](Segment::populate)).
    pub(crate) fn create(name: &str, len: usize) -> Result<Segment, MapError> {
        let bytes = Resource::Memory { bytes: len as u64 };
        let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC)
            .map_err(|e| MapError::refused(e, Resource::Fd))?;
        rustix::fs::ftruncate(&fd, len as u64).map_err(|e| MapError::refused(e, bytes))?;
        let ino = rustix::fs::fstat(&fd)
            .map_err(|e| MapError::Io(e.into()))?
            .st_ino;
        let at = SegmentRef {
            pid: my_pid(),
            fd: fd.as_raw_fd(),
            ino,
            len: len as u64,
        };
        let ptr = map(&fd, len)?;
        Ok(Segment {
            ptr,
            len,
            _fd: Some(fd),
            at,
        })
    }

    /// A new zeroed segment of `len` bytes for one peer, which is handed the returned
    /// fd (with `SCM_RIGHTS`): nothing opens it through `/proc`, so this process keeps
    /// no descriptor of it, only its mapping.
    pub(crate) fn create_for_peer(name: &str, len: usize) -> Result<(Segment, OwnedFd), MapError> {
        let bytes = Resource::Memory { bytes: len as u64 };
        let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC)
            .map_err(|e| MapError::refused(e, Resource::Fd))?;
        rustix::fs::ftruncate(&fd, len as u64).map_err(|e| MapError::refused(e, bytes))?;
        let seg = Segment::adopt(&fd, len)?;
        Ok((seg, fd))
    }

    /// Maps the segment a peer handed over as `fd`, which must be `len` bytes long.
    pub(crate) fn adopt(fd: &OwnedFd, len: usize) -> Result<Segment, MapError> {
        let stat = rustix::fs::fstat(fd).map_err(|e| MapError::Io(e.into()))?;
        if stat.st_size as u64 != len as u64 {
            return Err(MapError::Gone);
        }
        let ptr = map(fd, len)?;
        Ok(Segment {
            ptr,
            len,
            _fd: None,
            at: SegmentRef {
                pid: my_pid(),
                fd: -1,
                ino: stat.st_ino,
                len: len as u64,
            },
        })
    }

    /// Maps the segment `at` names.
    pub(crate) fn open(at: SegmentRef) -> Result<Segment, MapError> {
        let path = format!("/proc/{}/fd/{}", at.pid, at.fd);
        let fd =
            rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()).map_err(|e| {
                match e {
                    rustix::io::Errno::NOENT | rustix::io::Errno::SRCH => MapError::Gone,
                    e => MapError::refused(e, Resource::Fd),
                }
            })?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| MapError::Io(e.into()))?;
        if stat.st_ino != at.ino || (stat.st_size as u64) < at.len {
            return Err(MapError::Gone);
        }
        let len = usize::try_from(at.len).map_err(|_| MapError::Gone)?;
        let ptr = map(&fd, len)?;
        // The mapping keeps the memory; the fd is not needed any more.
        Ok(Segment {
            ptr,
            len,
            _fd: None,
            at,
        })
    }

    /// Puts the pages of a segment up to [`POPULATE_MAX`] in place in this mapping,
    /// allocating the memory if no process has yet: the first write to a fresh data
    /// block then runs at memory speed instead of taking a page fault every 4 KiB
    /// (`shm_bandwidth`: about 2x). Bigger segments stay lazy, so a block larger than
    /// what is used of it costs only what is touched. The primitives' and links'
    /// segments are not populated: most of a queue's slots are never used.
    pub(crate) fn populate(&self) {
        if self.len > POPULATE_MAX {
            return;
        }
        // SAFETY: the range is this segment's own mapping; populating changes no
        // byte of it. A kernel without MADV_POPULATE_WRITE (before 5.14) refuses,
        // and the pages are then faulted in on first touch, as before.
        let _ = unsafe {
            rustix::mm::madvise(
                self.ptr.as_ptr().cast(),
                self.len,
                rustix::mm::Advice::LinuxPopulateWrite,
            )
        };
    }

    /// Where it is.
    pub(crate) fn at(&self) -> SegmentRef {
        self.at
    }

    /// Its size.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The 32-bit word at `offset` (aligned, in the segment).
    pub(crate) fn u32_at(&self, offset: usize) -> &AtomicU32 {
        assert!(
            offset.is_multiple_of(4) && offset + 4 <= self.len,
            "word in the segment"
        );
        // SAFETY: aligned, in the mapping, which lives as long as `self`; shared
        // memory is only ever accessed atomically at this offset.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    /// The 64-bit word at `offset` (aligned, in the segment).
    pub(crate) fn u64_at(&self, offset: usize) -> &AtomicU64 {
        assert!(
            offset.is_multiple_of(8) && offset + 8 <= self.len,
            "word in the segment"
        );
        // SAFETY: as for `u32_at`.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    /// The bytes `range`, to change under a lock the segment keeps.
    ///
    /// # Safety
    ///
    /// The caller holds the lock that guards these bytes in every process, and no
    /// other reference to them lives meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn bytes_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        assert!(offset + len <= self.len, "bytes in the segment");
        // SAFETY: in the mapping; exclusive by the caller's lock.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(offset), len) }
    }

    /// A `T` at `offset`, to change under a lock the segment keeps.
    ///
    /// # Safety
    ///
    /// As [`bytes_mut`](Segment::bytes_mut); `T` is plain old data (any bytes are a
    /// valid `T`).
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn pod_mut<T: Copy>(&self, offset: usize) -> &mut T {
        assert!(
            offset.is_multiple_of(std::mem::align_of::<T>())
                && offset + std::mem::size_of::<T>() <= self.len,
            "value in the segment"
        );
        // SAFETY: aligned, in the mapping; exclusive by the caller's lock.
        unsafe { &mut *self.ptr.as_ptr().add(offset).cast::<T>() }
    }

    /// The mapping's first byte.
    pub(crate) fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: mapped by `map` with this length; nothing borrows from it any more.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

fn map(fd: &OwnedFd, len: usize) -> Result<NonNull<u8>, MapError> {
    // SAFETY: a new shared mapping of a file we opened; no existing memory is affected.
    let ptr = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len.max(1),
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            fd,
            0,
        )
    }
    .map_err(|e| MapError::refused(e, Resource::Memory { bytes: len as u64 }))?;
    NonNull::new(ptr.cast()).ok_or(MapError::Io(io::Error::other("mmap returned null")))
}

/// Data blocks up to this size have their pages put in place when they are made or
/// mapped (see [`Segment::populate`]).
pub(crate) const POPULATE_MAX: usize = 64 << 20;

/// The segments this process has mapped or hosts: every handle to one shares one
/// mapping, and a hosted one (with its fd, which others open) lives as long as the
/// process.
fn segments() -> std::sync::MutexGuard<'static, HashMap<SegmentRef, Arc<Segment>>> {
    static SEGMENTS: OnceLock<Mutex<HashMap<SegmentRef, Arc<Segment>>>> = OnceLock::new();
    SEGMENTS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// The segment `at` names, mapped here.
pub(crate) fn mapped(at: SegmentRef) -> Result<Arc<Segment>, MapError> {
    let mut map = segments();
    if let Some(seg) = map.get(&at) {
        return Ok(Arc::clone(seg));
    }
    let seg = Arc::new(Segment::open(at)?);
    map.insert(at, Arc::clone(&seg));
    Ok(seg)
}

/// Keeps a segment this process hosts for as long as the process lives.
/// Forgets this process's mapping of `at` (and, in its host, the segment's fd):
/// freed once the last user in this process lets go of it.
pub(crate) fn forget(at: SegmentRef) {
    let seg = segments().remove(&at);
    // Unmapped outside the table's lock.
    drop(seg);
}

pub(crate) fn host(seg: Segment) -> Arc<Segment> {
    let seg = Arc::new(seg);
    segments().insert(seg.at(), Arc::clone(&seg));
    seg
}

/// Sleeps while `word` is `expected`, at most `timeout`; spurious wake-ups happen.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|t| futex::Timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    // EAGAIN (the word changed), EINTR and ETIMEDOUT all send the caller back to look.
    let _ = futex::wait(word, futex::Flags::empty(), expected, ts.as_ref());
}

/// Wakes up to `n` sleepers on `word`.
pub(crate) fn wake(word: &AtomicU32, n: u32) {
    let _ = futex::wake(word, futex::Flags::empty(), n);
}

/// Whether process `pid` runs (a zombie does not: it is dead, just not reaped).
pub(crate) fn alive(pid: u32) -> bool {
    let exists = rustix::process::Pid::from_raw(pid as i32)
        .is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok());
    exists
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            // "pid (comm) S ...": the state follows the last ')'.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
                != Some('Z')
        })
}

#[cfg(test)]
mod tests {
    use super::{POPULATE_MAX, Segment};

    fn page_size() -> usize {
        // SAFETY: sysconf has no preconditions.
        usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap()
    }

    /// How many of the segment's pages are in memory.
    fn resident_pages(seg: &Segment) -> usize {
        let page = page_size();
        let pages = seg.len.div_ceil(page);
        let mut vec = vec![0u8; pages];
        // SAFETY: the range is the segment's own mapping, page-aligned by mmap, and
        // `vec` has one byte per page of it.
        let r = unsafe { libc::mincore(seg.ptr.as_ptr().cast(), seg.len, vec.as_mut_ptr()) };
        assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
        vec.iter().filter(|&&b| b & 1 == 1).count()
    }

    #[test]
    fn data_blocks_up_to_the_limit_get_their_pages_in_place() {
        let small = Segment::create("populated", 1 << 20).unwrap();
        assert_eq!(
            resident_pages(&small),
            0,
            "a segment is lazy until populated"
        );
        small.populate();
        assert_eq!(resident_pages(&small), (1 << 20) / page_size());
        let opened = Segment::open(small.at()).unwrap();
        opened.populate();
        assert_eq!(resident_pages(&opened), (1 << 20) / page_size());

        let big = Segment::create("lazy", POPULATE_MAX + (1 << 20)).unwrap();
        big.populate();
        assert_eq!(resident_pages(&big), 0, "a block past the limit stays lazy");
    }
}
