//! What the pool and its workers say to each other, on a socket of their own.
//!
//! Every frame is CPython's framing (a 4-byte big-endian length) around a header, a
//! rmp-serde tuple `(tag, task, entry, items)`, followed by the payload values one
//! after the other: the arguments of a `RUN`, or for a `DONE` the list of items that
//! failed and then the results of the others. Values are appended, not wrapped, so a
//! chunk of a million integers is encoded and decoded once, in place.

use std::io::Read;

use multiproc_core::codec;
use multiproc_transport::{MAX_FRAME_LEN, frame};
use serde::{Deserialize, Serialize};

/// Pool to worker: run a chunk.
pub(crate) const RUN: u8 = 0;
/// Pool to worker: exit once everything sent before has been answered.
pub(crate) const EXIT: u8 = 1;
/// Worker to pool: the initializer ran; send work.
pub(crate) const READY: u8 = 2;
/// Worker to pool: a chunk's results.
pub(crate) const DONE: u8 = 3;

/// A frame header.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Header {
    pub tag: u8,
    pub task: u64,
    pub entry: String,
    pub items: u32,
}

/// Why one item of a chunk has no result, as the worker reports it.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ItemFailure {
    Panicked {
        message: String,
        location: Option<String>,
    },
    Args {
        message: String,
    },
    Encode {
        message: String,
    },
    NotATask {
        name: String,
    },
}

/// A frame under construction: room for the length, then the header.
pub(crate) fn start(tag: u8, task: u64, entry: &str, items: u32) -> Vec<u8> {
    let mut frame = vec![0u8; 4];
    let header = (tag, task, entry, items);
    codec::encode_into(&header, &mut frame).expect("a header always encodes");
    frame
}

/// Fills in the length of a finished frame (the transport's framing: under the frame
/// limit, the length always takes the 4 bytes reserved for it); `Err(len)` if it is
/// too long to send.
pub(crate) fn finish(mut frame: Vec<u8>) -> Result<Vec<u8>, usize> {
    let len = frame.len() - 4;
    frame::check_len(len, MAX_FRAME_LEN).map_err(|_| len)?;
    let mut header = [0u8; 12];
    let n = frame::header(len, &mut header);
    debug_assert_eq!(n, 4, "a frame under the limit has a 4-byte length");
    frame[..4].copy_from_slice(&header[..4]);
    Ok(frame)
}

/// Splits a frame body into its header and the rest.
pub(crate) fn split(body: &[u8]) -> Result<(Header, &[u8]), String> {
    let mut rest = body;
    let header: Header =
        rmp_serde::from_read(&mut rest).map_err(|e| format!("bad frame header: {e}"))?;
    Ok((header, rest))
}

/// Reads one value off the front of `bytes`, advancing it.
pub(crate) fn take<T: serde::de::DeserializeOwned>(bytes: &mut &[u8]) -> Result<T, String> {
    let reader: &mut dyn Read = bytes;
    rmp_serde::from_read(reader).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_round_trips_its_header_and_payload() {
        let mut f = start(RUN, 7, "m::square", 2);
        codec::encode_into(&3u64, &mut f).unwrap();
        codec::encode_into(&4u64, &mut f).unwrap();
        let f = finish(f).unwrap();
        let len = u32::from_be_bytes(f[..4].try_into().unwrap()) as usize;
        assert_eq!(len, f.len() - 4);
        let (h, mut rest) = split(&f[4..]).unwrap();
        assert_eq!(
            (h.tag, h.task, h.entry.as_str(), h.items),
            (RUN, 7, "m::square", 2)
        );
        assert_eq!(take::<u64>(&mut rest).unwrap(), 3);
        assert_eq!(take::<u64>(&mut rest).unwrap(), 4);
        assert!(rest.is_empty());
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_with_its_length() {
        let mut f = start(RUN, 1, "x", 1);
        f.resize(MAX_FRAME_LEN + 100, 0);
        assert!(finish(f).is_err());
    }

    #[test]
    fn garbage_is_a_header_error_not_a_panic() {
        assert!(split(&[0xc1, 0xff]).is_err());
    }
}
