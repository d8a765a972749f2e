//! Length-prefixed frames, in the format of CPython's `multiprocessing.connection`.
//!
//! A frame is a 4-byte big-endian signed length followed by that many bytes. A length
//! of −1 means an 8-byte big-endian unsigned length follows (CPython uses it for
//! messages over 2 GiB − 1). Every link has a maximum frame length; multiproc never
//! writes a frame over it and never buffers an incoming one over it.
//!
//! # Errors that do not break the stream
//!
//! An incoming frame whose length prefix is over the limit is reported as
//! [`FrameError::TooLarge`] and its bytes are then *skipped* as they arrive, without
//! being stored, so the frames after it still arrive. A header whose length is negative
//! (other than −1) is [`FrameError::BadLength`]; nothing can be known about where the
//! next frame starts, so that one ends the stream.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The default maximum frame length: 16 MiB.
pub const MAX_FRAME_LEN: usize = 16 << 20;

/// Frames up to this size are written with their header in one buffer, one syscall.
const COALESCE_LIMIT: usize = 16 << 10;

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
    if len > max { Err(FrameError::TooLarge { len: len as u64, max }) } else { Ok(()) }
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

/// Reads frames from a byte stream, enforcing the maximum frame length.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    max: usize,
    /// Bytes of a refused oversized frame still to be discarded.
    skip: u64,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps a stream; frames over `max` bytes are refused.
    pub fn new(inner: R, max: usize) -> Self {
        FrameReader { inner, max, skip: 0 }
    }

    /// The wrapped stream.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Reads the next frame into `buf` (cleared first). Returns `Ok(false)` on a clean
    /// end of stream (no byte of a new frame had arrived).
    ///
    /// # Errors
    ///
    /// [`FrameError::TooLarge`] after skipping the frame (the next call reads the next
    /// frame), [`FrameError::BadLength`], [`FrameError::Truncated`] or an I/O error.
    pub async fn read_frame(&mut self, buf: &mut Vec<u8>) -> Result<bool, FrameError> {
        buf.clear();
        if self.skip > 0 {
            self.skip_pending().await?;
        }
        let mut h = [0u8; 4];
        let got = read_full(&mut self.inner, &mut h).await?;
        if got == 0 {
            return Ok(false);
        }
        if got < 4 {
            return Err(FrameError::Truncated { expected: 4, got: got as u64 });
        }
        let len = match i32::from_be_bytes(h) {
            -1 => {
                let mut l = [0u8; 8];
                let got = read_full(&mut self.inner, &mut l).await?;
                if got < 8 {
                    return Err(FrameError::Truncated { expected: 8, got: got as u64 });
                }
                u64::from_be_bytes(l)
            }
            n if n < 0 => return Err(FrameError::BadLength(n)),
            n => n as u64,
        };
        if len > self.max as u64 {
            // Reported now, discarded lazily: the caller hears at once, and a peer that
            // declared 4 EiB cannot make us wait for them.
            self.skip = len;
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        buf.resize(len as usize, 0);
        let got = read_full(&mut self.inner, buf).await?;
        if (got as u64) < len {
            buf.truncate(got);
            return Err(FrameError::Truncated { expected: len, got: got as u64 });
        }
        Ok(true)
    }

    async fn skip_pending(&mut self) -> Result<(), FrameError> {
        let total = self.skip;
        let mut sink = [0u8; 8192];
        while self.skip > 0 {
            let want = self.skip.min(sink.len() as u64) as usize;
            let n = self.inner.read(&mut sink[..want]).await?;
            if n == 0 {
                let got = total - self.skip;
                self.skip = 0;
                return Err(FrameError::Truncated { expected: total, got });
            }
            self.skip -= n as u64;
        }
        Ok(())
    }
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
async fn read_full<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = r.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            write_frame(&mut out, p, usize::MAX, &mut scratch).await.unwrap();
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
        assert_eq!(got[1], Err("frame of 100 bytes is over the limit of 10 bytes".into()));
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
        assert_eq!(got, vec![Err("stream ended in the middle of a frame (2 of 5 bytes)".into())]);
    }

    #[tokio::test]
    async fn negative_length_is_fatal() {
        let got = frames_of((-5i32).to_be_bytes().to_vec(), MAX_FRAME_LEN).await;
        assert_eq!(got, vec![Err("bad frame length prefix -5".into())]);
    }

    #[tokio::test]
    async fn outgoing_oversize_writes_nothing() {
        let mut out = Vec::new();
        let err = write_frame(&mut out, &[0u8; 11], 10, &mut Vec::new()).await.unwrap_err();
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

    proptest::proptest! {
        #[test]
        fn any_frames_round_trip(payloads in proptest::collection::vec(proptest::collection::vec(0u8.., 0..300), 0..20)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let refs: Vec<&[u8]> = payloads.iter().map(|p| &p[..]).collect();
            let got = rt.block_on(async { frames_of(encoded(&refs).await, MAX_FRAME_LEN).await });
            let want: Vec<Result<Vec<u8>, String>> = payloads.into_iter().map(Ok).collect();
            proptest::prop_assert_eq!(got, want);
        }
    }
}
