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
mod tests {
    use super::*;

    /// Doorbells and small frames, read in pieces that split their headers, never
    /// move a buffer made with room for twice a read.
    #[test]
    fn a_buffer_made_up_front_never_grows_for_small_frames() {
        let mut d = FrameDecoder::with_capacity(MAX_FRAME_LEN, 2 * READ_CHUNK);
        let mut stream = Vec::new();
        for i in 0..10_000u32 {
            let payload = &i.to_be_bytes()[..(i % 5) as usize];
            stream.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            stream.extend_from_slice(payload);
        }
        let first = d.read_buf().as_ptr();
        let capacity = d.capacity();
        let mut frames = 0;
        for piece in stream.chunks(7) {
            let buf = d.read_buf();
            buf[..piece.len()].copy_from_slice(piece);
            d.commit(piece.len());
            while d.next_frame().unwrap().is_some() {
                frames += 1;
            }
            assert_eq!(d.capacity(), capacity, "the buffer grew");
        }
        assert_eq!(frames, 10_000);
        assert_eq!(d.read_buf().as_ptr(), first, "the buffer moved");
    }

    async fn frames_of(bytes: Vec<u8>, max: usize) -> Vec<Result<Vec<u8>, String>> {
        let mut r = FrameReader::new(&bytes[..], max);
        let mut out = Vec::new();
        let mut buf = Vec::new();
        loop {
            match r.read_frame(&mut buf).await {
                Ok(true) => out.push(Ok(buf.clone())),
                Ok(false) => break,
                Err(e) => {
                    let fatal = !matches!(e, FrameError::TooLarge { .. });
                    out.push(Err(e.to_string()));
                    if fatal {
                        break;
                    }
                }
            }
        }
        out
    }

    async fn encoded(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        for p in payloads {
            write_frame(&mut out, p, usize::MAX, &mut scratch)
                .await
                .unwrap();
        }
        out
    }

    #[tokio::test]
    async fn round_trip() {
        let big = vec![7u8; 100_000];
        let bytes = encoded(&[b"", b"abc", &big]).await;
        let got = frames_of(bytes, MAX_FRAME_LEN).await;
        assert_eq!(got, vec![Ok(vec![]), Ok(b"abc".to_vec()), Ok(big)]);
    }

    #[tokio::test]
    async fn oversized_frame_is_skipped_and_the_next_one_arrives() {
        let bytes = encoded(&[b"first", &[1u8; 100], b"after"]).await;
        let got = frames_of(bytes, 10).await;
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], Ok(b"first".to_vec()));
        assert_eq!(
            got[1],
            Err("frame of 100 bytes is over the limit of 10 bytes".into())
        );
        assert_eq!(got[2], Ok(b"after".to_vec()));
    }

    #[tokio::test]
    async fn absurd_length_prefix_allocates_nothing() {
        // -1 then 2^62: would be 4 EiB if believed.
        let mut bytes = (-1i32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&(1u64 << 62).to_be_bytes());
        let got = frames_of(bytes, MAX_FRAME_LEN).await;
        assert_eq!(got.len(), 2);
        assert!(got[0].as_ref().unwrap_err().contains("over the limit"));
        assert!(got[1].as_ref().unwrap_err().contains("ended in the middle"));
    }

    #[tokio::test]
    async fn truncated_frame_is_an_error() {
        let mut bytes = encoded(&[b"hello"]).await;
        bytes.truncate(6);
        let got = frames_of(bytes, MAX_FRAME_LEN).await;
        assert_eq!(
            got,
            vec![Err(
                "stream ended in the middle of a frame (2 of 5 bytes)".into()
            )]
        );
    }

    #[tokio::test]
    async fn negative_length_is_fatal() {
        let got = frames_of((-5i32).to_be_bytes().to_vec(), MAX_FRAME_LEN).await;
        assert_eq!(got, vec![Err("bad frame length prefix -5".into())]);
    }

    #[tokio::test]
    async fn outgoing_oversize_writes_nothing() {
        let mut out = Vec::new();
        let err = write_frame(&mut out, &[0u8; 11], 10, &mut Vec::new())
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { len: 11, max: 10 }));
        assert!(out.is_empty());
    }

    #[test]
    fn huge_lengths_use_the_long_header() {
        let mut h = [0u8; 12];
        assert_eq!(header(1 << 31, &mut h), 12);
        assert_eq!(&h[..4], &[0xff; 4]);
        assert_eq!(u64::from_be_bytes(h[4..12].try_into().unwrap()), 1 << 31);
    }

    /// Feeds `bytes` to a decoder in chunks of `chunk` and collects what comes out.
    fn decode_chunked(bytes: &[u8], chunk: usize, max: usize) -> Vec<Result<Vec<u8>, String>> {
        let mut d = FrameDecoder::new(max);
        let mut out = Vec::new();
        for piece in bytes.chunks(chunk.max(1)) {
            d.push(piece);
            loop {
                match d.next_frame() {
                    Ok(Some(f)) => out.push(Ok(f.to_vec())),
                    Ok(None) => break,
                    Err(e) => {
                        let fatal = matches!(e, FrameError::BadLength(_));
                        out.push(Err(e.to_string()));
                        if fatal {
                            return out;
                        }
                    }
                }
            }
        }
        if let Err(e) = d.finish() {
            out.push(Err(e.to_string()));
        }
        out
    }

    #[tokio::test]
    async fn decoder_gives_the_same_frames_for_any_chunking() {
        let bytes = encoded(&[b"one", &[9u8; 40], b"", b"three"]).await;
        let want = decode_chunked(&bytes, bytes.len(), 20);
        assert_eq!(want.len(), 4);
        assert_eq!(want[0], Ok(b"one".to_vec()));
        assert!(want[1].as_ref().unwrap_err().contains("over the limit"));
        assert_eq!(want[2], Ok(vec![]));
        assert_eq!(want[3], Ok(b"three".to_vec()));
        for chunk in 1..bytes.len() {
            assert_eq!(
                decode_chunked(&bytes, chunk, 20),
                want,
                "chunk size {chunk}"
            );
        }
    }

    #[tokio::test]
    async fn decoder_reading_in_place_skips_without_growing() {
        let big = vec![1u8; 10 * READ_CHUNK];
        let bytes = encoded(&[&big, b"next"]).await;
        let mut d = FrameDecoder::new(100);
        let mut fed = 0;
        let mut out = Vec::new();
        while fed < bytes.len() {
            let room = d.read_buf();
            let n = room.len().min(bytes.len() - fed).min(1000);
            room[..n].copy_from_slice(&bytes[fed..fed + n]);
            d.commit(n);
            fed += n;
            while d.has_next() {
                out.push(
                    d.next_frame()
                        .map(|f| f.map(<[u8]>::to_vec))
                        .map_err(|e| e.to_string()),
                );
            }
            assert!(d.buf.len() <= 2 * READ_CHUNK, "skipped bytes were stored");
        }
        assert_eq!(out.len(), 2);
        assert!(out[0].as_ref().unwrap_err().contains("over the limit"));
        assert_eq!(out[1], Ok(Some(b"next".to_vec())));
    }

    #[test]
    fn read_buf_has_room_for_the_rest_of_a_known_frame() {
        let mut d = FrameDecoder::new(MAX_FRAME_LEN);
        d.push(&(100_000i32).to_be_bytes());
        d.push(&[0u8; 10]);
        assert!(d.read_buf().len() >= 100_000 - 10);
    }

    #[test]
    fn an_announced_length_is_not_allocated_before_its_bytes_arrive() {
        // (header, announced length): the largest 4-byte length and the long form's 2^62,
        // both within the default limit, so the decoder waits for them.
        let mut long = (-1i32).to_be_bytes().to_vec();
        long.extend_from_slice(&(1u64 << 62).to_be_bytes());
        let cases: [(Vec<u8>, u64); 2] = [
            (0x7fff_fffei32.to_be_bytes().to_vec(), 0x7fff_fffe),
            (long, 1 << 62),
        ];
        for (header, len) in cases {
            let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
            d.push(&header);
            let mut fed = 0usize;
            // Feed 8 MiB in read-sized pieces, as a socket would.
            while fed < 8 << 20 {
                let room = d.read_buf();
                let n = room.len().min(64 << 10);
                room[..n].fill(0xAB);
                d.commit(n);
                fed += n;
                assert!(matches!(d.next_frame(), Ok(None)));
                assert!(
                    d.capacity() <= 4 * fed + 4 * GROW_MIN,
                    "{len}: {} bytes held for {fed} received",
                    d.capacity()
                );
            }
            assert!(matches!(
                d.finish(),
                Err(FrameError::Truncated { expected, got }) if expected == len && got == fed as u64
            ));
        }
    }

    #[test]
    fn a_frame_bigger_than_the_grow_steps_arrives_whole() {
        let len = 5 * GROW_MIN + 123;
        let mut bytes = (len as i32).to_be_bytes().to_vec();
        bytes.extend((0..len).map(|i| (i % 251) as u8));
        let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
        let mut fed = 0;
        let mut reads = 0;
        while fed < bytes.len() {
            let room = d.read_buf();
            let n = room.len().min(bytes.len() - fed);
            room[..n].copy_from_slice(&bytes[fed..fed + n]);
            d.commit(n);
            fed += n;
            reads += 1;
        }
        assert!(reads < 10, "the buffer grows geometrically: {reads} reads");
        assert_eq!(d.next_frame().unwrap(), Some(&bytes[4..]));
    }

    #[test]
    fn has_next_matches_next_frame() {
        let mut d = FrameDecoder::new(8);
        assert!(!d.has_next());
        d.push(&[0, 0, 0, 2, 7]);
        assert!(!d.has_next());
        d.push(&[8]);
        assert!(d.has_next());
        assert_eq!(d.next_frame().unwrap(), Some(&[7u8, 8][..]));
        d.push(&[0, 0, 0, 9]);
        assert!(
            d.has_next(),
            "an oversized header is reported without its bytes"
        );
        assert!(d.next_frame().is_err());
        assert!(!d.has_next(), "while skipping there is nothing to report");
    }

    #[test]
    fn bad_length_poisons_the_decoder() {
        let mut d = FrameDecoder::new(8);
        d.push(&(-7i32).to_be_bytes());
        assert!(matches!(d.next_frame(), Err(FrameError::BadLength(-7))));
        d.push(&[0, 0, 0, 1, 1]);
        assert!(matches!(d.next_frame(), Err(FrameError::BadLength(-7))));
        assert!(d.has_next());
    }

    #[test]
    fn finish_reports_where_the_stream_ended() {
        // (bytes pushed, max, expected finish message or None)
        let long_header = [0xff, 0xff, 0xff, 0xff, 0, 0];
        let cases: &[(&[u8], usize, Option<&str>)] = &[
            (&[], 8, None),
            (&[0, 0], 8, Some("(2 of 4 bytes)")),
            (&long_header, 8, Some("(2 of 8 bytes)")),
            (&[0, 0, 0, 3, 1], 8, Some("(1 of 3 bytes)")),
            (&[0, 0, 0, 30, 1, 2], 8, Some("(2 of 30 bytes)")),
        ];
        for (bytes, max, want) in cases {
            let mut d = FrameDecoder::new(*max);
            d.push(bytes);
            while let Ok(Some(_)) = d.next_frame() {}
            let got = d.finish().err().map(|e| e.to_string());
            match want {
                None => assert_eq!(got, None, "{bytes:?}"),
                Some(w) => assert!(
                    got.as_deref().unwrap_or("").contains(w),
                    "{bytes:?}: {got:?}"
                ),
            }
            assert!(d.finish().is_ok(), "finish resets");
        }
    }

    #[test]
    fn a_big_frame_does_not_pin_its_buffer() {
        let mut d = FrameDecoder::new(MAX_FRAME_LEN);
        let len = 2 * KEEP_CAPACITY;
        d.push(&(len as i32).to_be_bytes());
        d.push(&vec![5u8; len]);
        assert_eq!(d.next_frame().unwrap().map(<[u8]>::len), Some(len));
        d.push(&[0, 0, 0, 0]);
        assert!(d.buf.len() <= KEEP_CAPACITY);
        assert_eq!(d.next_frame().unwrap(), Some(&[][..]));
    }

    #[test]
    fn debug_does_not_dump_payload() {
        let mut d = FrameDecoder::new(8);
        d.push(&[0, 0, 0, 3, 0xAB, 0xCD]);
        let s = format!("{d:?}");
        assert!(s.contains("buffered: 6"), "{s}");
        assert!(!s.contains("171"), "{s}");
    }

    proptest::proptest! {
        #[test]
        fn any_frames_round_trip(payloads in proptest::collection::vec(proptest::collection::vec(0u8.., 0..300), 0..20)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let refs: Vec<&[u8]> = payloads.iter().map(|p| &p[..]).collect();
            let got = rt.block_on(async { frames_of(encoded(&refs).await, MAX_FRAME_LEN).await });
            let want: Vec<Result<Vec<u8>, String>> = payloads.into_iter().map(Ok).collect();
            proptest::prop_assert_eq!(got, want);
        }

        #[test]
        fn decoder_round_trips_any_frames_in_any_chunks(
            payloads in proptest::collection::vec(proptest::collection::vec(0u8.., 0..300), 0..20),
            chunk in 1usize..64,
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let refs: Vec<&[u8]> = payloads.iter().map(|p| &p[..]).collect();
            let bytes = rt.block_on(encoded(&refs));
            let want: Vec<Result<Vec<u8>, String>> = payloads.into_iter().map(Ok).collect();
            proptest::prop_assert_eq!(decode_chunked(&bytes, chunk, MAX_FRAME_LEN), want);
        }
    }
}
