//! Descriptors on a link's socket: sent with the first byte of a frame, received
//! with whatever read takes that byte. A link's reader reads its socket with
//! `recvmsg` for this: a plain read would let the kernel close the descriptors.

use std::collections::VecDeque;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// The most descriptors one read takes: a sibling link's frame carries two, and the
/// kernel never joins the descriptors of two sends in one read.
const MAX_FDS: usize = 4;

/// Sends `bytes` without waiting, with `fds` attached to the first one.
pub(super) fn send(
    sock: &super::Socket,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> std::io::Result<usize> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(std::io::Error::other("too many descriptors for one frame"));
    }
    rustix::net::sendmsg(
        sock,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
    )
    .map_err(std::io::Error::from)
}

/// Reads into `buf` without waiting, keeping the descriptors that came in `fds`.
/// A read whose descriptors did not all fit is an error: the frame they came for
/// could not be used, and the stream's framing would be lost with them.
pub(super) fn recv(
    sock: &super::Socket,
    buf: &mut [u8],
    fds: &mut VecDeque<OwnedFd>,
) -> std::io::Result<usize> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = sock.try_read(|| {
        rustix::net::recvmsg(
            sock,
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
        )
        .map_err(std::io::Error::from)
    })?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) {
        return Err(std::io::Error::other(
            "more descriptors came on a control link than a frame carries",
        ));
    }
    Ok(msg.bytes)
}
