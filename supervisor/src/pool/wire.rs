//! What the pool and its workers say to each other, on a link of their own (its rings,
//! or its socket for what they cannot take: `channel.rs`).
//!
//! Every frame is CPython's framing (a 4-byte big-endian length) around a header, a
//! rmp-serde tuple `(tag, task, entry, items, codec, span, stamped)`, followed by the
//! payload: the
//! arguments of a `RUN`, or for a `DONE` the list of items that failed and then the
//! results of the others. The codec says how the arguments and results are encoded:
//! [`SERDE`], one rmp-serde value after the other (appended, not wrapped, so a chunk of
//! a million strings is encoded and decoded once, in place), or [`SLAB`], the items'
//! bytes side by side, for plain data (`slab.rs`).
//!
//! # Sizes
//!
//! The link takes frames up to the pool's `max_frame_len`, by default no limit but
//! memory, as CPython's pool. The pool cuts argument chunks at [`CHUNK_BYTES`] (or at
//! the limit, if lower) as well as at the chunksize; a worker answers a chunk with one
//! frame, whatever its results take, unless that passes the limit.

use std::io::Read;

use multiproc_core::codec;
use multiproc_transport::frame;
use serde::{Deserialize, Serialize};

/// A chunk takes no more items once its arguments' encoding reaches this: big items
/// travel a few to a frame, so the workers share them out and the first starts while
/// the rest are encoded, and a dead worker takes few of them with it.
pub(crate) const CHUNK_BYTES: usize = 4 << 20;

/// Pool to worker: run a chunk.
pub(crate) const RUN: u8 = 0;
/// Pool to worker: exit once everything sent before has been answered.
pub(crate) const EXIT: u8 = 1;
/// Worker to pool: the initializer ran; send work.
pub(crate) const READY: u8 = 2;
/// Worker to pool: a chunk's results.
pub(crate) const DONE: u8 = 3;
/// Worker to pool, just before a chunk's `DONE`: my resident memory passed the
/// pool's `max_rss_per_child`; retire me.
pub(crate) const HEAVY: u8 = 4;

/// Codec: each item is one rmp-serde value, appended after the one before.
pub(crate) const SERDE: u8 = 0;
/// Codec: the items are plain data, their bytes side by side in one slab.
pub(crate) const SLAB: u8 = 1;

/// A frame header.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Header {
    pub tag: u8,
    pub task: u64,
    pub entry: String,
    pub items: u32,
    /// [`SERDE`] or [`SLAB`]: how the payload's values are encoded.
    pub codec: u8,
    /// A `RUN`'s caller's span, as the root numbers it (see `runtime/logging/carry`);
    /// 0 for none.
    pub span: u64,
    /// A `DONE`'s count of the log records the worker stamped with that span while
    /// it ran the chunk: the root keeps the span until it has replayed them.
    pub stamped: u64,
}

pub use multiproc_core::ItemFailure;

/// A frame under construction: room for the length, then the header.
pub(crate) fn start(tag: u8, task: u64, entry: &str, items: u32, codec: u8) -> Vec<u8> {
    let mut frame = Vec::new();
    start_full(&mut frame, (tag, task, entry, items, codec, 0, 0));
    frame
}

/// As [`start`], for a `RUN` made in its caller's span `span` (0: none).
pub(crate) fn start_run(task: u64, entry: &str, items: u32, codec: u8, span: u64) -> Vec<u8> {
    let mut frame = Vec::new();
    start_full(&mut frame, (RUN, task, entry, items, codec, span, 0));
    frame
}

/// The header's fields, in order.
type Fields<'a> = (u8, u64, &'a str, u32, u8, u64, u64);

fn start_full(frame: &mut Vec<u8>, header: Fields<'_>) {
    frame.clear();
    frame.extend_from_slice(&[0; 4]);
    codec::encode_into(&header, frame).expect("a header always encodes");
}

/// As [`start`], into `frame`, whose allocation is reused.
pub(crate) fn start_in(
    frame: &mut Vec<u8>,
    tag: u8,
    task: u64,
    entry: &str,
    items: u32,
    codec: u8,
) {
    start_full(frame, (tag, task, entry, items, codec, 0, 0));
}

/// As [`start_in`], for a `DONE` whose worker stamped `stamped` log records with its
/// task's caller's span.
pub(crate) fn start_done_in(frame: &mut Vec<u8>, task: u64, items: u32, codec: u8, stamped: u64) {
    start_full(frame, (DONE, task, "", items, codec, 0, stamped));
}

/// As [`finish_with`], in place.
pub(crate) fn finish_in(frame: &mut Vec<u8>, tail: usize, max: usize) -> Result<(), usize> {
    let len = frame.len() - 4 + tail;
    frame::check_len(len, max).map_err(|_| len)?;
    let mut header = [0u8; 12];
    match frame::header(len, &mut header) {
        4 => frame[..4].copy_from_slice(&header[..4]),
        n => drop(frame.splice(..4, header[..n].iter().copied())),
    }
    Ok(())
}

/// Fills in the length of a finished frame (the transport's framing); `Err(len)` if it
/// is over `max`. A frame of 2 GiB or more needs CPython's 12-byte long header, which
/// costs one move of the frame: rare enough not to reserve 12 bytes in every frame.
pub(crate) fn finish(frame: Vec<u8>, max: usize) -> Result<Vec<u8>, usize> {
    finish_with(frame, 0, max)
}

/// As [`finish`], for a frame whose last `tail` bytes are written after `frame` from
/// where they are (a worker's results), instead of being copied into it.
pub(crate) fn finish_with(mut frame: Vec<u8>, tail: usize, max: usize) -> Result<Vec<u8>, usize> {
    finish_in(&mut frame, tail, max)?;
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
        let mut f = start(RUN, 7, "m::square", 2, SERDE);
        codec::encode_into(&3u64, &mut f).unwrap();
        codec::encode_into(&4u64, &mut f).unwrap();
        let f = finish(f, usize::MAX).unwrap();
        let len = u32::from_be_bytes(f[..4].try_into().unwrap()) as usize;
        assert_eq!(len, f.len() - 4);
        let (h, mut rest) = split(&f[4..]).unwrap();
        assert_eq!(
            (h.tag, h.task, h.entry.as_str(), h.items, h.codec, h.span),
            (RUN, 7, "m::square", 2, SERDE, 0)
        );
        assert_eq!(take::<u64>(&mut rest).unwrap(), 3);
        assert_eq!(take::<u64>(&mut rest).unwrap(), 4);
        assert!(rest.is_empty());
    }

    #[test]
    fn a_run_carries_its_span_and_a_done_its_stamped_records() {
        let f = finish(start_run(3, "m::f", 1, SERDE, 42), usize::MAX).unwrap();
        let (h, _) = split(&f[4..]).unwrap();
        assert_eq!((h.tag, h.task, h.span, h.stamped), (RUN, 3, 42, 0));
        let mut d = Vec::new();
        start_done_in(&mut d, 3, 1, SERDE, 5);
        let d = finish(d, usize::MAX).unwrap();
        let (h, _) = split(&d[4..]).unwrap();
        assert_eq!((h.tag, h.task, h.span, h.stamped), (DONE, 3, 0, 5));
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_with_its_length() {
        let mut f = start(RUN, 1, "x", 1, SLAB);
        f.resize(1000, 0);
        assert_eq!(finish(f, 900), Err(996));
    }

    #[test]
    fn a_frame_written_in_two_parts_counts_both_in_its_length() {
        let head = start(DONE, 3, "", 2, SLAB);
        let head_len = head.len();
        let f = finish_with(head, 16, usize::MAX).unwrap();
        let len = u32::from_be_bytes(f[..4].try_into().unwrap()) as usize;
        assert_eq!(len, head_len - 4 + 16);
        assert_eq!(
            finish_with(start(DONE, 3, "", 2, SLAB), 900, 900),
            Err(head_len - 4 + 900)
        );
    }

    #[test]
    fn garbage_is_a_header_error_not_a_panic() {
        assert!(split(&[0xc1, 0xff]).is_err());
    }
}
