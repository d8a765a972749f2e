//! Writing an endpoint: frames staged in its output buffer, or a big one written
//! straight from the caller's, without blocking, each send leaving whole frames
//! behind even when it is cancelled.

use std::future::poll_fn;
use std::io::IoSlice;
use std::os::fd::BorrowedFd;
use std::task::{Context, Poll};

use rustix::event::PollFlags;
use rustix::io::Errno;
use rustix::net::{SendAncillaryBuffer, SendFlags};
use serde::Serialize;

use super::{Endpoint, Kind};
use crate::frame::{self, COALESCE_LIMIT};
use crate::{Error, Result};

/// An empty output buffer keeps at most this much capacity.
const KEEP_WRITE_CAPACITY: usize = 1 << 20;

impl Endpoint {
    /// Appends a frame holding the encoding of `value`; returns where it starts.
    fn stage<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<usize> {
        let start = self.wbuf.len();
        self.wbuf.extend_from_slice(&[0; 4]);
        if let Err(e) = multiproc_core::codec::encode_into(value, &mut self.wbuf) {
            self.wbuf.truncate(start);
            return Err(Error::Encode(e));
        }
        let len = self.wbuf.len() - start - 4;
        if let Err(e) = frame::check_len(len, self.max_frame_len()) {
            self.wbuf.truncate(start);
            return Err(e.into());
        }
        let mut h = [0; 12];
        match frame::header(len, &mut h) {
            4 => self.wbuf[start..start + 4].copy_from_slice(&h[..4]),
            n => drop(self.wbuf.splice(start..start + 4, h[..n].iter().copied())),
        }
        Ok(start)
    }

    /// Appends a frame holding `payload`; returns where it starts.
    fn stage_bytes(&mut self, payload: &[u8]) -> Result<usize> {
        frame::check_len(payload.len(), self.max_frame_len())?;
        let start = self.wbuf.len();
        let mut h = [0; 12];
        let n = frame::header(payload.len(), &mut h);
        self.wbuf.extend_from_slice(&h[..n]);
        self.wbuf.extend_from_slice(payload);
        Ok(start)
    }

    /// Writes pending output without blocking; returns whether all of it is written.
    fn flush_once(&mut self) -> Result<bool> {
        while self.wpos < self.wbuf.len() {
            let fd = self.fd.borrow()?;
            match write_to(fd, self.kind, &self.wbuf[self.wpos..]) {
                Ok(n) => self.wpos += n,
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return Ok(false),
                Err(e) => {
                    self.wbuf.clear();
                    self.wpos = 0;
                    return Err(write_error(e));
                }
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        if self.wbuf.capacity() > KEEP_WRITE_CAPACITY {
            // One big message should not pin its buffer for the link's lifetime.
            self.wbuf = Vec::new();
        }
        Ok(true)
    }

    /// Writes a big frame from the caller's buffer, without copying it; returns whether
    /// all of it is written.
    fn write_vectored(&mut self, w: &mut Vectored<'_>) -> Result<bool> {
        while !w.is_done() {
            let fd = self.fd.borrow()?;
            let (head, body) = w.rest();
            let written = if head.is_empty() {
                write_to(fd, self.kind, body)
            } else {
                writev_to(fd, self.kind, &[IoSlice::new(head), IoSlice::new(body)])
            };
            match written {
                Ok(n) => w.written += n,
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return Ok(false),
                Err(e) => {
                    w.written = w.total();
                    return Err(write_error(e));
                }
            }
        }
        Ok(true)
    }

    pub(crate) fn send_blocking<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.check_write()?;
        self.stage(value)?;
        self.block_on_fd(PollFlags::OUT, None, Self::flush_once)
            .map(drop)
    }

    pub(crate) fn send_bytes_blocking(&mut self, payload: &[u8]) -> Result<()> {
        self.check_write()?;
        if payload.len() <= COALESCE_LIMIT {
            self.stage_bytes(payload)?;
            return self
                .block_on_fd(PollFlags::OUT, None, Self::flush_once)
                .map(drop);
        }
        frame::check_len(payload.len(), self.max_frame_len())?;
        self.block_on_fd(PollFlags::OUT, None, Self::flush_once)?;
        let mut w = Vectored::new(payload);
        self.block_on_fd(PollFlags::OUT, None, |ep| ep.write_vectored(&mut w))
            .map(drop)
    }

    pub(crate) async fn send_async<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.check_write()?;
        let start = self.stage(value)?;
        let staged = Unstage { ep: self, start };
        poll_fn(|cx| staged.ep.poll_write(cx, Self::flush_once)).await
    }

    pub(crate) async fn send_bytes_async(&mut self, payload: &[u8]) -> Result<()> {
        self.check_write()?;
        if payload.len() <= COALESCE_LIMIT {
            let start = self.stage_bytes(payload)?;
            let staged = Unstage { ep: self, start };
            return poll_fn(|cx| staged.ep.poll_write(cx, Self::flush_once)).await;
        }
        frame::check_len(payload.len(), self.max_frame_len())?;
        poll_fn(|cx| self.poll_write(cx, Self::flush_once)).await?;
        let mut rest = SaveRest {
            ep: self,
            w: Vectored::new(payload),
        };
        poll_fn(|cx| {
            let SaveRest { ep, w } = &mut rest;
            ep.poll_write(cx, |ep| ep.write_vectored(w))
        })
        .await
    }

    /// Runs the write `attempt` until it is done, waiting for writability between tries.
    fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        mut attempt: impl FnMut(&mut Self) -> Result<bool>,
    ) -> Poll<Result<()>> {
        loop {
            if attempt(self)? {
                return Poll::Ready(Ok(()));
            }
            match self.registered()?.poll_write_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(mut guard)) => guard.clear_ready(),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
            }
        }
    }
}

/// A frame written straight from the caller's buffer: header, then payload.
struct Vectored<'a> {
    header: [u8; 12],
    header_len: usize,
    payload: &'a [u8],
    written: usize,
}

impl<'a> Vectored<'a> {
    fn new(payload: &'a [u8]) -> Self {
        let mut header = [0; 12];
        let header_len = frame::header(payload.len(), &mut header);
        Vectored {
            header,
            header_len,
            payload,
            written: 0,
        }
    }

    fn total(&self) -> usize {
        self.header_len + self.payload.len()
    }

    fn is_done(&self) -> bool {
        self.written >= self.total()
    }

    /// The unwritten part of the header and of the payload.
    fn rest(&self) -> (&[u8], &'a [u8]) {
        let head = &self.header[self.written.min(self.header_len)..self.header_len];
        let body = &self.payload[self.written.saturating_sub(self.header_len)..];
        (head, body)
    }
}

/// Drops a staged frame if its async send is cancelled before any byte of it was
/// written, so a cancelled send either sends nothing or (via pending output) all.
struct Unstage<'e> {
    ep: &'e mut Endpoint,
    start: usize,
}

impl Drop for Unstage<'_> {
    fn drop(&mut self) {
        if self.ep.wpos <= self.start && self.start < self.ep.wbuf.len() {
            self.ep.wbuf.truncate(self.start);
        }
    }
}

/// Keeps the unwritten rest of a cancelled vectored send as pending output, so the
/// peer never sees half a frame followed by the next one.
struct SaveRest<'e, 'p> {
    ep: &'e mut Endpoint,
    w: Vectored<'p>,
}

impl Drop for SaveRest<'_, '_> {
    fn drop(&mut self) {
        if self.w.written > 0 && !self.w.is_done() {
            let (head, body) = self.w.rest();
            self.ep.wbuf.extend_from_slice(head);
            self.ep.wbuf.extend_from_slice(body);
        }
    }
}

fn write_to(fd: BorrowedFd<'_>, kind: Kind, buf: &[u8]) -> rustix::io::Result<usize> {
    match kind {
        // MSG_NOSIGNAL: a closed peer is EPIPE, not a SIGPIPE that kills the process.
        Kind::Socket => rustix::net::send(fd, buf, SendFlags::NOSIGNAL),
        Kind::Pipe => rustix::io::write(fd, buf),
    }
}

fn writev_to(fd: BorrowedFd<'_>, kind: Kind, bufs: &[IoSlice<'_>]) -> rustix::io::Result<usize> {
    match kind {
        Kind::Socket => rustix::net::sendmsg(
            fd,
            bufs,
            &mut SendAncillaryBuffer::default(),
            SendFlags::NOSIGNAL,
        ),
        Kind::Pipe => rustix::io::writev(fd, bufs),
    }
}

fn write_error(e: Errno) -> Error {
    match e {
        Errno::PIPE | Errno::CONNRESET => Error::Eof,
        e => e.into(),
    }
}
