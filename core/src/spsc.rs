//! A single-producer, single-consumer ring of byte records, as pure code over
//! positions: where a writer puts its next record, and what a reader may believe of
//! what it finds.
//!
//! The ring's memory is shared with another process, which may die half-way through
//! a write or scribble over anything, so the reader never trusts a position or a
//! length it did not check. Positions only grow (a place in the buffer is the
//! position modulo the capacity); the writer owns `tail` and the reader `head`, each
//! keeps its own copy and only *reads* the other's. Every record starts on an
//! [`ALIGN`]-byte boundary with a [`HEADER`]: its payload length (`u32`, little
//! endian), its [`Kind`] and three bytes of padding. A record never wraps around the
//! end: a [`Kind::Padding`] record fills the rest of the buffer and the next one
//! starts at its beginning. That also lets the writer go back to the start when it
//! finds the ring empty past its first page ([`RESET_AT`]), so a link that carries one
//! message at a time keeps to one page of its buffer.
//!
//! ```
//! use multiproc_core::spsc::{Kind, Plan, Seen, plan, seen};
//!
//! let cap = 64;
//! // Empty ring at position 0: a 5-byte message takes 8 + 8 bytes.
//! let Plan { pad, at, end } = plan(cap, 0, 0, 5).unwrap();
//! assert_eq!((pad, at, end), (None, 0, 16));
//! // The reader finds it (its header says 5 bytes, kind Message).
//! let header = [5, 0, 0, 0, Kind::Message as u8, 0, 0, 0];
//! assert_eq!(seen(cap, 0, 16, header), Ok(Seen::Message { at: 8, len: 5, next: 16 }));
//! ```

/// Records start on multiples of this many bytes.
pub const ALIGN: usize = 8;
/// Bytes of a record's header: length (`u32` LE), kind, three bytes of padding.
pub const HEADER: usize = 8;
/// A writer that finds the ring empty this far into its buffer (or half-way, in a
/// smaller ring) goes back to its start.
pub const RESET_AT: usize = 4096;

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A message: its payload follows the header.
    Message = 1,
    /// Nothing: the reader skips to the start of the buffer.
    Padding = 2,
    /// The next message is on the socket beside the ring (too large for the ring).
    OnSocket = 3,
}

/// The bytes a record with `payload` bytes takes in the ring.
pub fn record_len(payload: usize) -> usize {
    (HEADER + payload).div_ceil(ALIGN) * ALIGN
}

/// The largest payload a ring of `cap` bytes takes: a quarter of it, so that a few
/// large messages still leave room for small ones behind them.
pub fn max_payload(cap: usize) -> usize {
    cap / 4 - HEADER
}

/// Whether `cap` is a usable capacity: a power of two of at least 4 KiB that a `u32`
/// can measure.
pub fn valid_capacity(cap: usize) -> bool {
    cap.is_power_of_two() && (4096..=1 << 30).contains(&cap)
}

/// A record's header.
pub fn header(len: u32, kind: Kind) -> [u8; HEADER] {
    let l = len.to_le_bytes();
    [l[0], l[1], l[2], l[3], kind as u8, 0, 0, 0]
}

/// Where the writer puts its next record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// First a padding record at this position (to the end of the buffer).
    pub pad: Option<u64>,
    /// Then the record, at this position.
    pub at: u64,
    /// The tail to publish once it is written.
    pub end: u64,
}

/// Why a record cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Not enough room now: the reader has not caught up.
    #[error("the ring is full")]
    Full,
    /// Larger than [`max_payload`]: it never goes in the ring.
    #[error("a payload of {len} bytes is over the ring's limit of {max}")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The ring's limit.
        max: usize,
    },
    /// The reader's position makes no sense: the shared memory is corrupt.
    #[error(transparent)]
    Corrupt(#[from] Corruption),
}

/// What a ring's positions or a record's header say that cannot be true.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    /// The tail is behind the head.
    #[error("ring tail {tail} is behind its head {head}")]
    TailBehindHead {
        /// The reader's position.
        head: u64,
        /// The writer's position.
        tail: u64,
    },
    /// The tail is more than a whole ring ahead of the head.
    #[error("ring tail {tail} is more than the ring's {cap} bytes past its head {head}")]
    TailPastRing {
        /// The reader's position.
        head: u64,
        /// The writer's position.
        tail: u64,
        /// The ring's capacity.
        cap: usize,
    },
    /// A position is not on a record boundary.
    #[error("ring position {0} is not on a record boundary")]
    Misaligned(u64),
    /// A record's length runs past the end of the buffer or past the tail.
    #[error("a ring record of {len} bytes at {at} runs past the ring or its tail")]
    LengthPastEnd {
        /// Where the record starts.
        at: u64,
        /// Its payload length, as its header says.
        len: u32,
    },
    /// A record of no known kind.
    #[error("a ring record at {at} has the unknown kind {kind}")]
    UnknownKind {
        /// Where the record starts.
        at: u64,
        /// The kind byte.
        kind: u8,
    },
}

/// Checks the two positions against each other: `tail - head` bytes are in use.
///
/// # Errors
///
/// The [`Corruption`] they show.
pub fn check(cap: usize, head: u64, tail: u64) -> Result<usize, Corruption> {
    if tail < head {
        return Err(Corruption::TailBehindHead { head, tail });
    }
    if tail - head > cap as u64 {
        return Err(Corruption::TailPastRing { head, tail, cap });
    }
    for p in [head, tail] {
        if !p.is_multiple_of(ALIGN as u64) {
            return Err(Corruption::Misaligned(p));
        }
    }
    Ok((tail - head) as usize)
}

/// Where a record with `payload` bytes goes in a ring of `cap` bytes whose reader is
/// at `head` and writer at `tail`.
///
/// # Errors
///
/// [`WriteError::TooLarge`] over [`max_payload`], [`WriteError::Full`] when the
/// reader must catch up first, [`WriteError::Corrupt`] when `head` cannot be true.
pub fn plan(cap: usize, head: u64, tail: u64, payload: usize) -> Result<Plan, WriteError> {
    let max = max_payload(cap);
    if payload > max {
        return Err(WriteError::TooLarge { len: payload, max });
    }
    let used = check(cap, head, tail)?;
    let need = record_len(payload);
    let offset = (tail % cap as u64) as usize;
    let to_end = cap - offset;
    // Empty past the first page: back to the start, where the last records were, so
    // a link with one message at a time keeps to a page of cache lines that both ends
    // have (measured: a manager's dict operation took twice as long when its messages
    // walked through the whole ring). The padding counts as used until the reader
    // skips it, so a page (or half a small ring) stays free.
    if used == 0 && offset >= RESET_AT.min(cap / 2) && need <= offset {
        return Ok(Plan {
            pad: Some(tail),
            at: tail + to_end as u64,
            end: tail + (to_end + need) as u64,
        });
    }
    if need <= to_end {
        if used + need > cap {
            return Err(WriteError::Full);
        }
        return Ok(Plan {
            pad: None,
            at: tail,
            end: tail + need as u64,
        });
    }
    if used + to_end + need > cap {
        return Err(WriteError::Full);
    }
    Ok(Plan {
        pad: Some(tail),
        at: tail + to_end as u64,
        end: tail + (to_end + need) as u64,
    })
}

/// What the reader finds at its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// A message of `len` bytes at position `at`; the next record is at `next`.
    Message {
        /// Where the payload starts (a position, not an offset).
        at: u64,
        /// Its length.
        len: usize,
        /// The head once it is taken.
        next: u64,
    },
    /// A padding record: the next record is at `next`, the start of the buffer.
    Padding {
        /// The head once it is skipped.
        next: u64,
    },
    /// The next message is on the socket.
    OnSocket {
        /// The head once the marker is taken.
        next: u64,
    },
}

/// Checks the record whose `header` the reader read at `head`, with the writer at
/// `tail` (and `head < tail`).
///
/// # Errors
///
/// The [`Corruption`] it shows: then nothing more can be read from the ring.
pub fn seen(cap: usize, head: u64, tail: u64, header: [u8; HEADER]) -> Result<Seen, Corruption> {
    check(cap, head, tail)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let offset = (head % cap as u64) as usize;
    let fits = |bytes: usize| offset + bytes <= cap && head + bytes as u64 <= tail;
    match header[4] {
        k if k == Kind::Message as u8 => {
            let len = len as usize;
            if len > max_payload(cap) || !fits(record_len(len)) {
                return Err(Corruption::LengthPastEnd {
                    at: head,
                    len: len as u32,
                });
            }
            Ok(Seen::Message {
                at: head + HEADER as u64,
                len,
                next: head + record_len(len) as u64,
            })
        }
        k if k == Kind::Padding as u8 => {
            let rest = cap - offset;
            if !fits(rest) {
                return Err(Corruption::LengthPastEnd { at: head, len });
            }
            Ok(Seen::Padding {
                next: head + rest as u64,
            })
        }
        k if k == Kind::OnSocket as u8 => {
            if !fits(HEADER) {
                return Err(Corruption::LengthPastEnd { at: head, len });
            }
            Ok(Seen::OnSocket {
                next: head + HEADER as u64,
            })
        }
        kind => Err(Corruption::UnknownKind { at: head, kind }),
    }
}

/// Where the parts of a link's shared memory are: one page of counters (the rings'
/// words, and the opener's figures of its actor), then the two
/// rings' buffers. Each ring has a line the writer writes (`tail`, `want_room`) and
/// one the reader writes (`head`, `asleep`, `seq`), 128 bytes apart so that neither
/// end's stores invalidate the line the other end writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    cap: usize,
}

/// The offsets of one ring's words and buffer in a [`Layout`]'s memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingAt {
    /// `u64`: the writer's position.
    pub tail: usize,
    /// `u32`: non-zero while the writer waits for room.
    pub want_room: usize,
    /// `u64`: the reader's position.
    pub head: usize,
    /// `u32`: non-zero while the reader sleeps and wants to be woken.
    pub asleep: usize,
    /// `u32`: a futex word the writer bumps when it wakes a sleeping reader.
    pub seq: usize,
    /// The buffer.
    pub data: usize,
}

/// Which of a layout's two rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The one the creator of the memory writes.
    Creator,
    /// The one the other end writes.
    Opener,
}

impl Layout {
    /// Bytes before the buffers: the magic word and the counters.
    pub const CONTROL: usize = 4096;
    /// The first word of the memory, checked by the end that maps it.
    pub const MAGIC: u64 = u64::from_le_bytes(*b"mprings1");
    /// `u64`: how many messages wait in the mailbox of the actor the opener's process
    /// hosts. The opener writes it and the creator reads it, in a line of its own,
    /// away from the rings' words.
    pub const MAILBOX_DEPTH: usize = 1024;
    /// `u64`: how many messages that actor has handled, next to
    /// [`MAILBOX_DEPTH`](Self::MAILBOX_DEPTH).
    pub const HANDLED: usize = 1032;

    /// A layout of two rings of `cap` bytes each, if `cap` is [valid](valid_capacity).
    pub fn new(cap: usize) -> Option<Layout> {
        valid_capacity(cap).then_some(Layout { cap })
    }

    /// Each ring's capacity.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The memory's length.
    pub fn len(&self) -> usize {
        Self::CONTROL + 2 * self.cap
    }

    /// Whether the memory is empty (never: it always has its counters).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Where the ring written by `side` is.
    pub fn ring(&self, side: Side) -> RingAt {
        let (base, data) = match side {
            Side::Creator => (128, Self::CONTROL),
            Side::Opener => (512, Self::CONTROL + self.cap),
        };
        RingAt {
            tail: base,
            want_room: base + 8,
            head: base + 128,
            asleep: base + 136,
            seq: base + 140,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    const CAP: usize = 4096;

    #[test]
    fn plans() {
        let q = (CAP / 4) as u64;
        // (head, tail, payload) -> plan or error
        type Row = ((u64, u64, usize), Result<Plan, WriteError>);
        let table: [Row; 9] = [
            // Empty at 0: in place.
            (
                (0, 0, 0),
                Ok(Plan {
                    pad: None,
                    at: 0,
                    end: 8,
                }),
            ),
            // Empty past the middle: back to the start.
            (
                (2048, 2048, 5),
                Ok(Plan {
                    pad: Some(2048),
                    at: CAP as u64,
                    end: CAP as u64 + 16,
                }),
            ),
            // Empty before the middle: in place.
            (
                (64, 64, 5),
                Ok(Plan {
                    pad: None,
                    at: 64,
                    end: 80,
                }),
            ),
            // Not empty, fits before the end.
            (
                (0, 64, 5),
                Ok(Plan {
                    pad: None,
                    at: 64,
                    end: 80,
                }),
            ),
            // Not empty, does not fit before the end: padding, then the start.
            (
                (3 * q, 4 * q - 8, 8),
                Ok(Plan {
                    pad: Some(4 * q - 8),
                    at: 4 * q,
                    end: 4 * q + 16,
                }),
            ),
            // The same, but the start is still in use.
            ((8, 4 * q - 8, 8), Err(WriteError::Full)),
            // Full up to the last byte.
            ((0, 4 * q, 0), Err(WriteError::Full)),
            (
                (0, 0, CAP / 4),
                Err(WriteError::TooLarge {
                    len: CAP / 4,
                    max: CAP / 4 - 8,
                }),
            ),
            (
                (16, 8, 0),
                Err(WriteError::Corrupt(Corruption::TailBehindHead {
                    head: 16,
                    tail: 8,
                })),
            ),
        ];
        for ((head, tail, len), want) in table {
            assert_eq!(plan(CAP, head, tail, len), want, "{head} {tail} {len}");
        }
    }

    #[test]
    fn corrupt_headers_and_positions_are_named() {
        let msg = |len: u32| header(len, Kind::Message);
        type Row = ((u64, u64, [u8; 8]), Result<Seen, Corruption>);
        let table: [Row; 7] = [
            (
                (0, 16, msg(5)),
                Ok(Seen::Message {
                    at: 8,
                    len: 5,
                    next: 16,
                }),
            ),
            // Length past the tail.
            (
                (0, 16, msg(9)),
                Err(Corruption::LengthPastEnd { at: 0, len: 9 }),
            ),
            // Length past the ring.
            (
                (0, CAP as u64, msg(u32::MAX)),
                Err(Corruption::LengthPastEnd {
                    at: 0,
                    len: u32::MAX,
                }),
            ),
            (
                (16, 8, msg(0)),
                Err(Corruption::TailBehindHead { head: 16, tail: 8 }),
            ),
            (
                (0, CAP as u64 + 8, msg(0)),
                Err(Corruption::TailPastRing {
                    head: 0,
                    tail: CAP as u64 + 8,
                    cap: CAP,
                }),
            ),
            ((0, 12, msg(0)), Err(Corruption::Misaligned(12))),
            (
                (0, 8, [0, 0, 0, 0, 9, 0, 0, 0]),
                Err(Corruption::UnknownKind { at: 0, kind: 9 }),
            ),
        ];
        for ((head, tail, h), want) in table {
            assert_eq!(seen(CAP, head, tail, h), want, "{head} {tail} {h:?}");
        }
        // A padding record must reach the end of the buffer, inside the tail.
        let pad = header(0, Kind::Padding);
        assert_eq!(
            seen(CAP, 4000, CAP as u64 + 8, pad),
            Ok(Seen::Padding { next: CAP as u64 })
        );
        assert!(seen(CAP, 4000, 4008, pad).is_err());
    }

    #[test]
    fn layouts_keep_the_two_ends_apart() {
        assert!(Layout::new(1000).is_none());
        let l = Layout::new(CAP).unwrap();
        assert_eq!(l.len(), Layout::CONTROL + 2 * CAP);
        let (a, b) = (l.ring(Side::Creator), l.ring(Side::Opener));
        for r in [a, b] {
            assert!(r.head - r.tail >= 128, "the two ends' lines are apart");
            assert!(r.seq + 4 <= r.head + 128);
        }
        assert!(a.seq < b.tail && b.seq + 4 <= Layout::CONTROL);
        assert_eq!(b.data, a.data + CAP);
    }

    /// A writer and a reader, in memory, for the property below.
    struct Model {
        buf: Vec<u8>,
        head: u64,
        tail: u64,
    }

    impl Model {
        fn write(&mut self, msg: &[u8]) -> Result<(), WriteError> {
            let cap = self.buf.len();
            let p = plan(cap, self.head, self.tail, msg.len())?;
            if let Some(pad) = p.pad {
                let o = (pad % cap as u64) as usize;
                self.buf[o..o + 8].copy_from_slice(&header(0, Kind::Padding));
            }
            let o = (p.at % cap as u64) as usize;
            self.buf[o..o + 8].copy_from_slice(&header(msg.len() as u32, Kind::Message));
            self.buf[o + 8..o + 8 + msg.len()].copy_from_slice(msg);
            self.tail = p.end;
            Ok(())
        }

        fn read(&mut self) -> Option<Vec<u8>> {
            let cap = self.buf.len();
            loop {
                if self.head == self.tail {
                    return None;
                }
                let o = (self.head % cap as u64) as usize;
                let h: [u8; 8] = self.buf[o..o + 8].try_into().unwrap();
                match seen(cap, self.head, self.tail, h).unwrap() {
                    Seen::Message { at, len, next } => {
                        let o = (at % cap as u64) as usize;
                        let out = self.buf[o..o + len].to_vec();
                        self.head = next;
                        return Some(out);
                    }
                    Seen::Padding { next } | Seen::OnSocket { next } => self.head = next,
                }
            }
        }
    }

    proptest! {
        /// Written and read in any interleaving, the ring is a bounded FIFO that
        /// refuses only when the reader has to catch up.
        #[test]
        fn behaves_as_a_bounded_fifo(ops in proptest::collection::vec(
            prop_oneof![
                3 => proptest::collection::vec(any::<u8>(), 0..1016).prop_map(Some),
                2 => Just(None),
            ],
            0..400,
        )) {
            let mut m = Model { buf: vec![0; CAP], head: 0, tail: 0 };
            let mut model: VecDeque<Vec<u8>> = VecDeque::new();
            for op in ops {
                match op {
                    Some(msg) => match m.write(&msg) {
                        Ok(()) => model.push_back(msg),
                        Err(WriteError::Full) => {
                            // Full means the records in it, and at most half a ring
                            // of padding, leave no room for this one (twice: it may
                            // not fit before the end).
                            let used: usize = model.iter().map(|r| record_len(r.len())).sum();
                            prop_assert!(used + 2 * record_len(msg.len()) > CAP / 2, "refused at {used}");
                        }
                        Err(e) => prop_assert!(false, "{e}"),
                    },
                    None => prop_assert_eq!(m.read(), model.pop_front()),
                }
            }
            while let Some(want) = model.pop_front() {
                prop_assert_eq!(m.read(), Some(want));
            }
            prop_assert_eq!(m.read(), None);
        }
    }
}
