//! Length-prefixed frames, in the format of CPython's `multiprocessing.connection`.
//!
//! A frame is a 4-byte big-endian signed length followed by that many bytes. A length
//! of −1 means an 8-byte big-endian unsigned length follows (CPython uses it for
//! messages over 2 GiB − 1). Every link has a maximum frame length; multiproc never
//! writes a frame over it and never buffers an incoming one over it.
//!
//! # Memory follows the bytes, not the header
//!
//! A length prefix is a claim, not a fact: the decoder grows its buffer with the bytes
//! that have arrived (at most doubling what the frame has so far), never to the length
//! announced. A peer that announces 4 EiB and sends nothing costs a few KiB, which is
//! what lets user connections default to [`DEFAULT_MAX_FRAME_LEN`], no limit but memory.
//!
//! # Errors that do not break the stream
//!
//! An incoming frame whose length prefix is over the limit is reported as
//! [`FrameError::TooLarge`] and its bytes are then *skipped* as they arrive, without
//! being stored, so the frames after it still arrive. A header whose length is negative
//! (other than −1) is [`FrameError::BadLength`]; nothing can be known about where the
//! next frame starts, so that one ends the stream.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The maximum frame length of multiproc's own control links (a child's link to its
/// parent, actor calls, manager requests): 16 MiB. Their peers are multiproc processes
/// exchanging small control messages, so a frame over this is a bug worth reporting.
pub const MAX_FRAME_LEN: usize = 16 << 20;

/// The default maximum frame length of a [`Connection`](crate::Connection) (from
/// [`pipe`](crate::pipe), [`Listener`](crate::Listener), [`client`](crate::client) or
/// an fd): `isize::MAX`, the largest buffer Rust can allocate, so no limit but memory.
///
/// This is CPython's behaviour: its `Connection.send_bytes` has no maximum (frames over
/// 2 GiB − 1 use the −1 escape and an 8-byte length) and `recv_bytes()` without
/// `maxlength` takes any length. Set a lower limit with
/// [`Connection::set_max_frame_len`](crate::Connection::set_max_frame_len) or
/// [`Listener::set_max_frame_len`](crate::Listener::set_max_frame_len) for peers you do
/// not trust with your memory; an announced length costs nothing until its bytes come.
pub const DEFAULT_MAX_FRAME_LEN: usize = isize::MAX as usize;

/// Frames up to this size are written with their header in one buffer, one syscall.
pub(crate) const COALESCE_LIMIT: usize = 16 << 10;

/// A frame could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame is longer than the link's limit. For an incoming frame, its bytes are
    /// skipped and the stream carries on; for an outgoing one, nothing was written.
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    TooLarge {
        /// The frame's length.
        len: u64,
        /// The link's limit.
        max: usize,
    },
    /// The length prefix is negative and not −1.
    #[error("bad frame length prefix {0}")]
    BadLength(i32),
    /// The stream ended in the middle of a frame.
    #[error("stream ended in the middle of a frame ({got} of {expected} bytes)")]
    Truncated {
        /// The frame's declared length (or header length).
        expected: u64,
        /// How many bytes arrived.
        got: u64,
    },
    /// The operating system reported an error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Writes the header for a frame of `len` bytes into `out`; returns the header length.
///
/// ```
/// let mut h = [0u8; 12];
/// assert_eq!(multiproc_transport::frame::header(5, &mut h), 4);
/// assert_eq!(&h[..4], &[0, 0, 0, 5]);
/// ```
pub fn header(len: usize, out: &mut [u8; 12]) -> usize {
    match i32::try_from(len) {
        Ok(n) if n != i32::MAX => {
            out[..4].copy_from_slice(&n.to_be_bytes());
            4
        }
        _ => {
            out[..4].copy_from_slice(&(-1i32).to_be_bytes());
            out[4..12].copy_from_slice(&(len as u64).to_be_bytes());
            12
        }
    }
}

/// Checks `len` against `max` before anything is written.
///
/// # Errors
///
/// [`FrameError::TooLarge`] when `len > max`.
pub fn check_len(len: usize, max: usize) -> Result<(), FrameError> {
    if len > max {
        Err(FrameError::TooLarge {
            len: len as u64,
            max,
        })
    } else {
        Ok(())
    }
}

/// Writes one frame.
///
/// # Errors
///
/// [`FrameError::TooLarge`] (nothing written) or an I/O error.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    payload: &[u8],
    max: usize,
    scratch: &mut Vec<u8>,
) -> Result<(), FrameError> {
    check_len(payload.len(), max)?;
    let mut h = [0u8; 12];
    let hl = header(payload.len(), &mut h);
    if payload.len() <= COALESCE_LIMIT {
        scratch.clear();
        scratch.extend_from_slice(&h[..hl]);
        scratch.extend_from_slice(payload);
        w.write_all(scratch).await?;
    } else {
        w.write_all(&h[..hl]).await?;
        w.write_all(payload).await?;
    }
    w.flush().await?;
    Ok(())
}

/// Bytes to make room for when reading with no frame length known yet.
const READ_CHUNK: usize = 16 << 10;

/// The least a buffer grows by for a frame whose length is known: bigger steps than
/// [`READ_CHUNK`] cut the number of reads for a big frame, and still cost nothing much
/// when the announced length is a lie.
const GROW_MIN: usize = 256 << 10;

/// An empty decoder keeps at most this much buffer; bigger ones (left by a big frame)
/// are shrunk so one large message does not pin its memory for the link's lifetime.
const KEEP_CAPACITY: usize = 1 << 20;

/// A frame header, as far as the buffered bytes tell.
enum Head {
    /// Fewer bytes than a header.
    Incomplete,
    /// A negative length other than −1.
    Bad(i32),
    /// A header of `header_len` bytes announcing `len` payload bytes.
    Frame { header_len: usize, len: u64 },
}

/// Turns a byte stream into frames, with no I/O: push bytes in, pop frames out.
///
/// Bytes come in with [`push`](Self::push), or without a copy by reading straight into
/// [`read_buf`](Self::read_buf) and calling [`commit`](Self::commit). Frames come out
/// of [`next_frame`](Self::next_frame); when the stream ends, [`finish`](Self::finish)
/// says whether it ended between frames.
///
/// # Invariants
///
/// - Buffered bytes are `buf[start..end]`; `buf` is fully initialised, so reading into
///   its spare part needs no zeroing per read.
/// - While an oversized frame is being skipped (`skip > 0`) nothing is buffered: its
///   bytes are dropped as they arrive, and bytes after it are kept.
/// - After [`FrameError::BadLength`] the decoder is poisoned and reports it again.
///
/// # Examples
///
/// ```
/// use multiproc_transport::{FrameDecoder, FrameError};
///
/// let mut d = FrameDecoder::new(4);
/// d.push(&[0, 0, 0, 2, b'h']);
/// assert_eq!(d.next_frame().unwrap(), None); // half a frame so far
/// d.push(&[b'i', 0, 0, 0, 9, 1, 2]);
/// assert_eq!(d.next_frame().unwrap(), Some(&b"hi"[..]));
/// // 9 bytes is over the limit of 4: reported at once, then skipped as it arrives.
/// assert!(matches!(d.next_frame(), Err(FrameError::TooLarge { len: 9, max: 4 })));
/// d.push(&[3, 4, 5, 6, 7, 8, 9, 0, 0, 0, 1, b'!']);
/// assert_eq!(d.next_frame().unwrap(), Some(&b"!"[..]));
/// assert!(d.finish().is_ok());
/// ```
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max: usize,
    /// Bytes of a refused oversized frame still to be dropped.
    skip: u64,
    /// The full length of the frame being skipped, for [`FrameError::Truncated`].
    skip_total: u64,
    /// Set by a bad length prefix: the stream cannot be resynchronised.
    bad: Option<i32>,
}

impl FrameDecoder {
    /// Creates a decoder that refuses frames over `max` bytes. It allocates nothing
    /// until bytes arrive.
    pub fn new(max: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            end: 0,
            max,
            skip: 0,
            skip_total: 0,
            bad: None,
        }
    }

    /// Creates a decoder that refuses frames over `max` bytes, with room for
    /// `capacity` bytes made now: a reader whose first read may come at any time later
    /// (in a loop that must not allocate) makes its buffer up front. A read asks for
    /// 16 KiB of room past what is buffered: with twice that, small frames never make
    /// the buffer grow.
    pub fn with_capacity(max: usize, capacity: usize) -> Self {
        FrameDecoder {
            buf: Vec::with_capacity(capacity),
            ..FrameDecoder::new(max)
        }
    }

    /// The maximum frame length.
    pub fn max_frame_len(&self) -> usize {
        self.max
    }

    /// Changes the maximum frame length; it applies from the next frame header.
    pub fn set_max_frame_len(&mut self, max: usize) {
        self.max = max;
    }

    /// How many bytes are buffered (part of a frame, or frames not yet popped).
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Appends bytes read from the stream. Bytes of a frame being skipped are dropped
    /// without being stored.
    pub fn push(&mut self, mut bytes: &[u8]) {
        if self.skip > 0 {
            let n = usize::try_from(self.skip)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            self.skip -= n as u64;
            bytes = &bytes[n..];
        }
        if bytes.is_empty() {
            return;
        }
        let spare = self.read_buf_sized(bytes.len().max(READ_CHUNK));
        spare[..bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }

    /// A writable buffer to read the stream into directly; call [`commit`](Self::commit)
    /// with the number of bytes read. It is never empty. For a frame whose length is
    /// known it grows geometrically with the bytes received (up to the rest of the
    /// frame), never straight to the announced length: the buffer stays within about
    /// twice what has arrived, however large the header says the frame is.
    pub fn read_buf(&mut self) -> &mut [u8] {
        let want = match self.head() {
            Head::Frame { header_len, len } if self.skip == 0 && len <= self.max as u64 => {
                let rest = (header_len as u64 + len).saturating_sub(self.buffered() as u64);
                let step = self.buffered().max(GROW_MIN) as u64;
                // `rest.min(step)` fits in a usize: `step` came from one.
                (rest.min(step) as usize).max(READ_CHUNK)
            }
            _ => READ_CHUNK,
        };
        self.read_buf_sized(want)
    }

    /// The decoder's buffer size in bytes, initialised or not: what it holds in memory
    /// now, for checking that an announced length was not taken on trust.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Records that `n` bytes were written at the start of [`read_buf`](Self::read_buf).
    ///
    /// # Panics
    ///
    /// If `n` is larger than the buffer last returned by `read_buf`.
    pub fn commit(&mut self, n: usize) {
        assert!(
            self.end + n <= self.buf.len(),
            "commit({n}) is past the read buffer"
        );
        self.end += n;
        if self.skip > 0 {
            // Skipping implies nothing else was buffered: drop the skipped prefix.
            let dropped = usize::try_from(self.skip).unwrap_or(usize::MAX).min(n);
            self.start += dropped;
            self.skip -= dropped as u64;
        }
    }

    /// Pops the next complete frame, or `Ok(None)` if more bytes are needed.
    ///
    /// # Errors
    ///
    /// [`FrameError::TooLarge`] as soon as an oversized frame's header is seen (its bytes
    /// are then skipped and later frames still come out), [`FrameError::BadLength`]
    /// for a negative length other than −1 (fatal: it is returned again on every call).
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        Ok(self.pop()?.map(|r| &self.buf[r]))
    }

    /// Whether the next frame is complete and empty (a doorbell, to a link that uses
    /// them), so that a reader can drop it and keep the frame after it where it is.
    pub fn next_is_empty(&self) -> bool {
        self.bad.is_none() && self.skip == 0 && matches!(self.head(), Head::Frame { len: 0, .. })
    }

    /// Whether [`next_frame`](Self::next_frame) would return a frame or an error now.
    pub fn has_next(&self) -> bool {
        if self.bad.is_some() {
            return true;
        }
        if self.skip > 0 {
            return false;
        }
        match self.head() {
            Head::Incomplete => false,
            Head::Bad(_) => true,
            Head::Frame { header_len, len } => {
                len > self.max as u64 || (self.buffered() - header_len) as u64 >= len
            }
        }
    }

    /// Reports how the stream ended. Call it once [`next_frame`](Self::next_frame) has
    /// returned `Ok(None)` and the stream has no more bytes; it resets the decoder, so
    /// the next call returns `Ok(())`.
    ///
    /// # Errors
    ///
    /// [`FrameError::Truncated`] when the stream ended inside a frame (or inside a frame
    /// being skipped).
    pub fn finish(&mut self) -> Result<(), FrameError> {
        if self.bad.is_some() {
            return Ok(());
        }
        if self.skip > 0 {
            let got = self.skip_total - self.skip;
            self.skip = 0;
            return Err(FrameError::Truncated {
                expected: self.skip_total,
                got,
            });
        }
        let n = self.buffered();
        let head = self.head();
        self.start = 0;
        self.end = 0;
        match head {
            _ if n == 0 => Ok(()),
            Head::Incomplete if n < 4 => Err(FrameError::Truncated {
                expected: 4,
                got: n as u64,
            }),
            Head::Incomplete => Err(FrameError::Truncated {
                expected: 8,
                got: n as u64 - 4,
            }),
            Head::Bad(len) => Err(FrameError::BadLength(len)),
            Head::Frame { header_len, len } => Err(FrameError::Truncated {
                expected: len,
                got: (n - header_len) as u64,
            }),
        }
    }

    /// Pops the next frame as a range of the buffer, valid until the next mutation.
    pub(crate) fn pop(&mut self) -> Result<Option<std::ops::Range<usize>>, FrameError> {
        if let Some(len) = self.bad {
            return Err(FrameError::BadLength(len));
        }
        if self.skip > 0 {
            return Ok(None);
        }
        match self.head() {
            Head::Incomplete => Ok(None),
            Head::Bad(len) => {
                self.bad = Some(len);
                self.start = 0;
                self.end = 0;
                Err(FrameError::BadLength(len))
            }
            Head::Frame { header_len, len } if len > self.max as u64 => {
                // Reported now, discarded lazily: the caller hears at once, and a peer that
                // declared 4 EiB cannot make us wait for (or store) them.
                self.start += header_len;
                let dropped = usize::try_from(len)
                    .unwrap_or(usize::MAX)
                    .min(self.buffered());
                self.start += dropped;
                self.skip = len - dropped as u64;
                self.skip_total = len;
                Err(FrameError::TooLarge { len, max: self.max })
            }
            Head::Frame { header_len, len } => {
                if ((self.buffered() - header_len) as u64) < len {
                    return Ok(None);
                }
                let from = self.start + header_len;
                let to = from + len as usize;
                self.start = to;
                Ok(Some(from..to))
            }
        }
    }

    /// A frame popped by [`pop`](Self::pop).
    pub(crate) fn frame(&self, range: std::ops::Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    fn head(&self) -> Head {
        let b = &self.buf[self.start..self.end];
        let Some(prefix) = b.first_chunk::<4>() else {
            return Head::Incomplete;
        };
        match i32::from_be_bytes(*prefix) {
            -1 => match b[4..].first_chunk::<8>() {
                Some(long) => Head::Frame {
                    header_len: 12,
                    len: u64::from_be_bytes(*long),
                },
                None => Head::Incomplete,
            },
            n if n < 0 => Head::Bad(n),
            n => Head::Frame {
                header_len: 4,
                len: n as u64,
            },
        }
    }

    /// Makes at least `want` bytes of room after the buffered ones and returns it.
    fn read_buf_sized(&mut self, want: usize) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > KEEP_CAPACITY && want <= KEEP_CAPACITY {
                self.buf = Vec::new();
            }
        }
        if self.buf.len() - self.end < want {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < want {
                self.buf.resize(self.end + want, 0);
            }
        }
        &mut self.buf[self.end..]
    }
}

impl std::fmt::Debug for FrameDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameDecoder")
            .field("buffered", &self.buffered())
            .field("max", &self.max)
            .field("skip", &self.skip)
            .field("bad", &self.bad)
            .finish()
    }
}

/// Reads frames from an async byte stream, enforcing the maximum frame length.
///
/// It reads ahead: bytes after the current frame stay buffered in the reader.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    decoder: FrameDecoder,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps a stream; frames over `max` bytes are refused.
    pub fn new(inner: R, max: usize) -> Self {
        FrameReader {
            inner,
            decoder: FrameDecoder::new(max),
        }
    }

    /// The wrapped stream. Reading from it directly skips bytes the reader has buffered.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Reads the next frame into `buf` (cleared first). Returns `Ok(false)` on a clean
    /// end of stream (no byte of a new frame had arrived).
    ///
    /// # Errors
    ///
    /// [`FrameError::TooLarge`] as soon as the header is read (the next call skips the
    /// frame and reads the next one), [`FrameError::BadLength`],
    /// [`FrameError::Truncated`] or an I/O error.
    pub async fn read_frame(&mut self, buf: &mut Vec<u8>) -> Result<bool, FrameError> {
        buf.clear();
        loop {
            if let Some(range) = self.decoder.pop()? {
                buf.extend_from_slice(self.decoder.frame(range));
                return Ok(true);
            }
            let n = self.inner.read(self.decoder.read_buf()).await?;
            if n == 0 {
                self.decoder.finish()?;
                return Ok(false);
            }
            self.decoder.commit(n);
        }
    }
}

#[cfg(test)]
mod tests;
