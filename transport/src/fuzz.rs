//! Fuzz entry points of the transport, shared by the cargo-fuzz targets and the property tests.
//!
//! Each function takes bytes an adversary controls and returns what the library made of
//! them. They panic only where the library broke a promise (two ways of decoding the
//! same stream disagree, a decoder stopped making progress), so a panic here is a bug
//! for the fuzzer to report, never an expected outcome.

use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::{BlockingConnection, Error, FrameDecoder, FrameError, MAX_FRAME_LEN, auth};

/// Decodes `data` as a frame stream. The first byte picks the frame limit (0: the
/// default, else that many bytes, so the skipping of oversized frames is reached with
/// small inputs), the second how many bytes arrive at a time; the rest is the stream.
pub fn frame_decoder(data: &[u8]) -> Vec<Result<Vec<u8>, FrameError>> {
    let (limit, rest) = data.split_first().unwrap_or((&0, &[]));
    let (chunk, stream) = rest.split_first().unwrap_or((&0, &[]));
    let max = if *limit == 0 {
        MAX_FRAME_LEN
    } else {
        usize::from(*limit)
    };
    decode_frames(stream, max, usize::from(*chunk) + 1)
}

/// Decodes `stream` with a frame limit of `max`, `chunk` bytes arriving at a time, once
/// through [`FrameDecoder::push`] and once through [`FrameDecoder::read_buf`] and
/// [`FrameDecoder::commit`] as a connection does, and returns the frames and errors in
/// order (ending with what [`FrameDecoder::finish`] said, if it was an error).
///
/// # Panics
///
/// If the two ways disagree, or if the decoder yields more results than the stream
/// could hold (every frame and every refused header costs at least 4 bytes).
pub fn decode_frames(stream: &[u8], max: usize, chunk: usize) -> Vec<Result<Vec<u8>, FrameError>> {
    let chunk = chunk.max(1);
    let pushed = decode(stream, max, chunk, false);
    let read = decode(stream, max, chunk, true);
    let text = |v: &[Result<Vec<u8>, FrameError>]| -> Vec<Result<Vec<u8>, String>> {
        v.iter()
            .map(|r| match r {
                Ok(f) => Ok(f.clone()),
                Err(e) => Err(e.to_string()),
            })
            .collect()
    };
    assert_eq!(
        text(&pushed),
        text(&read),
        "push and read_buf decode the same stream differently"
    );
    pushed
}

/// Feeds `bytes` as a connection reads them: into the decoder's own buffer.
fn read_in_place(d: &mut FrameDecoder, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let room = d.read_buf();
        assert!(!room.is_empty(), "read_buf returned no room");
        let n = room.len().min(bytes.len());
        room[..n].copy_from_slice(&bytes[..n]);
        d.commit(n);
        bytes = &bytes[n..];
    }
}

fn decode(
    stream: &[u8],
    max: usize,
    chunk: usize,
    in_place: bool,
) -> Vec<Result<Vec<u8>, FrameError>> {
    let mut d = FrameDecoder::new(max);
    let mut out = Vec::new();
    // Every frame or refused header consumes at least 4 bytes; more results than this
    // means the decoder is looping without consuming anything.
    let bound = stream.len() / 4 + 2;
    for piece in stream.chunks(chunk) {
        if in_place {
            read_in_place(&mut d, piece);
        } else {
            d.push(piece);
        }
        loop {
            let has_next = d.has_next();
            let next = d.next_frame();
            assert_eq!(
                has_next,
                !matches!(next, Ok(None)),
                "has_next and next_frame disagree"
            );
            match next {
                Ok(Some(f)) => {
                    assert!(f.len() <= max, "a frame over the limit came out");
                    out.push(Ok(f.to_vec()));
                }
                Ok(None) => break,
                Err(e) => {
                    let fatal = matches!(e, FrameError::BadLength(_));
                    out.push(Err(e));
                    if fatal {
                        return out;
                    }
                }
            }
            assert!(out.len() <= bound, "the decoder is not making progress");
        }
    }
    if in_place {
        // A connection learns of the end of the stream by a read that returns nothing,
        // into a buffer it asked for, as here.
        let _ = d.read_buf();
    }
    if let Err(e) = d.finish() {
        out.push(Err(e));
    }
    out
}

/// Which side of the authkey handshake this process plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// [`auth::deliver_challenge`]: challenges the peer first (a listener).
    Deliver,
    /// [`auth::answer_challenge`]: answers the peer's challenge (a client).
    Answer,
}

/// The key both fuzzed handshakes use; the peer's bytes do not know it.
pub const FUZZ_AUTHKEY: &[u8] = b"multiproc fuzz key";

/// How long a fuzzed handshake may wait for a peer that stays silent.
pub const FUZZ_HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(200);

/// Runs one side of the authkey handshake against a peer that sends `data[1..]` and
/// hangs up; the low bit of `data[0]` picks the side.
pub fn handshake(data: &[u8]) -> Result<(), Error> {
    let (first, peer) = data.split_first().unwrap_or((&0, &[]));
    let role = if first & 1 == 0 {
        Role::Deliver
    } else {
        Role::Answer
    };
    handshake_with(role, peer, true, FUZZ_HANDSHAKE_TIMEOUT)
}

/// Runs the real handshake function for `role` over a socketpair whose other end
/// writes `peer` (then shuts down its writing side if `hang_up`) and reads whatever
/// it is sent, until this side is done.
///
/// # Errors
///
/// What the handshake returned, or the error making the socketpair.
pub fn handshake_with(
    role: Role,
    peer: &[u8],
    hang_up: bool,
    timeout: Duration,
) -> Result<(), Error> {
    let (ours, theirs) = UnixStream::pair()?;
    let mut conn = BlockingConnection::from_owned_fd(ours.into(), true, true)?;
    let peer = peer.to_vec();
    let peer_side = std::thread::spawn(move || {
        // MSG_NOSIGNAL: a fuzzer binary has no Rust runtime to ignore SIGPIPE for it.
        let mut rest = &peer[..];
        while !rest.is_empty() {
            match rustix::net::send(&theirs, rest, rustix::net::SendFlags::NOSIGNAL) {
                Ok(n) => rest = &rest[n..],
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => break,
            }
        }
        if hang_up {
            let _ = theirs.shutdown(std::net::Shutdown::Write);
        }
        // Drained so this side's sends never block; ends when this side closes.
        let _ = std::io::copy(&mut &theirs, &mut std::io::sink());
    });
    let out = match role {
        Role::Deliver => auth::deliver_challenge(&mut conn, FUZZ_AUTHKEY, timeout),
        Role::Answer => auth::answer_challenge(&mut conn, FUZZ_AUTHKEY, timeout),
    };
    drop(conn);
    peer_side
        .join()
        .map_err(|_| Error::Io(std::io::Error::other("the fuzz peer thread panicked")))?;
    out
}
