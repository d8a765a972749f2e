//! A queue of byte strings in a fixed buffer: the layout a shared-memory queue keeps
//! its items in, as pure code over a byte slice and a few counters.
//!
//! Each item is a record: its length (4 bytes, little-endian) and its bytes, written
//! around the end of the buffer when it has to. `head` and `tail` only grow (a
//! position in the buffer is the counter modulo its size), so the bytes in use are
//! `tail - head`. The counters are in [`Cursor`], plain integers that the
//! shared-memory code keeps beside the buffer and changes under the queue's lock;
//! every operation writes the bytes first and the counters last, so a process that
//! dies in the middle of one leaves the queue as it was before it.
//!
//! ```
//! use multiproc_core::ring::{Cursor, Ring};
//!
//! let mut cur = Cursor::default();
//! let mut buf = [0u8; 64];
//! let mut ring = Ring::new(&mut cur, &mut buf);
//! ring.push(b"hello").unwrap();
//! ring.push(b"world").unwrap();
//! let mut out = Vec::new();
//! assert!(ring.pop(&mut out));
//! assert_eq!(out, b"hello");
//! ring.push_front(b"again").unwrap();
//! assert!(ring.pop(&mut out));
//! assert_eq!(out, b"again");
//! ```

/// Bytes of a record's length prefix.
pub const PREFIX: usize = 4;

/// A ring's counters.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Where the oldest record starts (bytes since the ring was made).
    pub head: u64,
    /// Where the next record goes.
    pub tail: u64,
    /// Records in the ring.
    pub count: u64,
}

/// Why a record could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// Not enough room now.
    #[error("not enough room in the ring now")]
    Full,
    /// Larger than the whole ring: it will never fit.
    #[error("a record of {len} bytes is larger than the ring ({capacity} bytes)")]
    TooLarge {
        /// The record's length, prefix included.
        len: usize,
        /// The ring's size.
        capacity: usize,
    },
}

/// A ring over a buffer and its counters.
#[derive(Debug)]
pub struct Ring<'a> {
    cur: &'a mut Cursor,
    data: &'a mut [u8],
}

impl<'a> Ring<'a> {
    /// The ring kept in `data` with counters `cur`.
    pub fn new(cur: &'a mut Cursor, data: &'a mut [u8]) -> Ring<'a> {
        Ring { cur, data }
    }

    /// Its size in bytes.
    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Records in it.
    pub fn count(&self) -> u64 {
        self.cur.count
    }

    /// Bytes in use.
    pub fn used(&self) -> usize {
        (self.cur.tail - self.cur.head) as usize
    }

    /// Whether a record of `len` bytes would fit now.
    pub fn fits(&self, len: usize) -> Result<(), RingError> {
        let need = PREFIX + len;
        if need > self.capacity() {
            return Err(RingError::TooLarge {
                len: need,
                capacity: self.capacity(),
            });
        }
        if need > self.capacity() - self.used() {
            return Err(RingError::Full);
        }
        Ok(())
    }

    /// Appends a record.
    ///
    /// # Errors
    ///
    /// [`RingError::Full`], [`RingError::TooLarge`]; the ring is unchanged.
    pub fn push(&mut self, item: &[u8]) -> Result<(), RingError> {
        self.fits(item.len())?;
        let at = self.cur.tail;
        self.write(at, &(item.len() as u32).to_le_bytes());
        self.write(at + PREFIX as u64, item);
        self.cur.tail = at + (PREFIX + item.len()) as u64;
        self.cur.count += 1;
        Ok(())
    }

    /// Puts a record back in front of the others (an item given back).
    ///
    /// # Errors
    ///
    /// As [`push`](Ring::push).
    pub fn push_front(&mut self, item: &[u8]) -> Result<(), RingError> {
        self.fits(item.len())?;
        let size = (PREFIX + item.len()) as u64;
        // Positions only grow; a ring that starts at 0 gives room below its head by
        // moving both ends up by a whole turn (the same places in the buffer).
        if self.cur.head < size {
            let turn = self.capacity() as u64;
            self.cur.head += turn;
            self.cur.tail += turn;
        }
        let at = self.cur.head - size;
        self.write(at, &(item.len() as u32).to_le_bytes());
        self.write(at + PREFIX as u64, item);
        self.cur.head = at;
        self.cur.count += 1;
        Ok(())
    }

    /// The length of the oldest record.
    pub fn front_len(&self) -> Option<usize> {
        if self.cur.count == 0 {
            return None;
        }
        let mut prefix = [0u8; PREFIX];
        self.read(self.cur.head, &mut prefix);
        Some(u32::from_le_bytes(prefix) as usize)
    }

    /// Takes the oldest record into `out` (replacing what it held); `false` when
    /// there is none.
    pub fn pop(&mut self, out: &mut Vec<u8>) -> bool {
        let Some(len) = self.front_len() else {
            return false;
        };
        out.clear();
        out.resize(len, 0);
        self.read(self.cur.head + PREFIX as u64, out);
        self.cur.head += (PREFIX + len) as u64;
        self.cur.count -= 1;
        if self.cur.count == 0 {
            // Empty: start over at the buffer's start, so records seldom wrap.
            self.cur.head = 0;
            self.cur.tail = 0;
        }
        true
    }

    /// Forgets every record.
    pub fn clear(&mut self) {
        *self.cur = Cursor::default();
    }

    fn write(&mut self, at: u64, bytes: &[u8]) {
        copy_in(self.data, at, bytes);
    }

    fn read(&self, at: u64, out: &mut [u8]) {
        copy_out(self.data, at, out);
    }
}

/// Copies `bytes` into the circular buffer `data` from position `at` (modulo its
/// length), around its end when they do not fit before it.
pub fn copy_in(data: &mut [u8], at: u64, bytes: &[u8]) {
    let cap = data.len();
    let start = (at % cap as u64) as usize;
    let first = bytes.len().min(cap - start);
    data[start..start + first].copy_from_slice(&bytes[..first]);
    data[..bytes.len() - first].copy_from_slice(&bytes[first..]);
}

/// Copies `out.len()` bytes out of the circular buffer `data` from position `at`.
pub fn copy_out(data: &[u8], at: u64, out: &mut [u8]) {
    let cap = data.len();
    let start = (at % cap as u64) as usize;
    let first = out.len().min(cap - start);
    out[..first].copy_from_slice(&data[start..start + first]);
    let rest = out.len() - first;
    out[first..].copy_from_slice(&data[..rest]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    #[test]
    fn records_wrap_around_the_end() {
        let mut cur = Cursor::default();
        let mut buf = [0u8; 16];
        let mut ring = Ring::new(&mut cur, &mut buf);
        let mut out = Vec::new();
        ring.push(b"abcdef").unwrap(); // 10 bytes
        ring.push(b"x").unwrap(); // 5 bytes
        assert!(ring.pop(&mut out));
        assert_eq!(out, b"abcdef");
        // 15..: this record's prefix and bytes cross the end.
        ring.push(b"ghijklm").unwrap();
        assert!(ring.pop(&mut out));
        assert_eq!(out, b"x");
        assert!(ring.pop(&mut out));
        assert_eq!(out, b"ghijklm");
        assert!(!ring.pop(&mut out));
    }

    #[test]
    fn full_and_too_large_change_nothing() {
        let mut cur = Cursor::default();
        let mut buf = [0u8; 16];
        let mut ring = Ring::new(&mut cur, &mut buf);
        assert_eq!(
            ring.push(&[0; 13]),
            Err(RingError::TooLarge {
                len: 17,
                capacity: 16
            })
        );
        ring.push(&[1; 8]).unwrap();
        let before = *ring.cur;
        assert_eq!(ring.push(&[2; 8]), Err(RingError::Full));
        assert_eq!(*ring.cur, before);
        // An empty record fits where nothing else does.
        ring.push(&[]).unwrap();
        assert_eq!(ring.count(), 2);
    }

    #[test]
    fn a_record_given_back_comes_first() {
        let mut cur = Cursor::default();
        let mut buf = [0u8; 32];
        let mut ring = Ring::new(&mut cur, &mut buf);
        let mut out = Vec::new();
        ring.push(b"1").unwrap();
        ring.push(b"2").unwrap();
        assert!(ring.pop(&mut out));
        ring.push_front(b"1").unwrap();
        ring.push_front(b"0").unwrap();
        for want in [b"0", b"1", b"2"] {
            assert!(ring.pop(&mut out));
            assert_eq!(out, want);
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(Vec<u8>),
        PushFront(Vec<u8>),
        Pop,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Op::Push),
            1 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Op::PushFront),
            3 => Just(Op::Pop),
        ]
    }

    proptest! {
        /// The ring behaves as a deque of byte strings with a byte budget.
        #[test]
        fn behaves_as_a_bounded_deque(cap in 8usize..128, ops in proptest::collection::vec(op(), 0..200)) {
            let mut cur = Cursor::default();
            let mut buf = vec![0u8; cap];
            let mut ring = Ring::new(&mut cur, &mut buf);
            let mut model: VecDeque<Vec<u8>> = VecDeque::new();
            let used = |m: &VecDeque<Vec<u8>>| m.iter().map(|r| PREFIX + r.len()).sum::<usize>();
            let mut out = Vec::new();
            for op in ops {
                match op {
                    Op::Push(r) | Op::PushFront(r) if PREFIX + r.len() > cap => {
                        let too_large = matches!(ring.push(&r), Err(RingError::TooLarge { .. }));
                        prop_assert!(too_large);
                    }
                    Op::Push(r) => {
                        let fits = used(&model) + PREFIX + r.len() <= cap;
                        prop_assert_eq!(ring.push(&r).is_ok(), fits);
                        if fits { model.push_back(r); }
                    }
                    Op::PushFront(r) => {
                        let fits = used(&model) + PREFIX + r.len() <= cap;
                        prop_assert_eq!(ring.push_front(&r).is_ok(), fits);
                        if fits { model.push_front(r); }
                    }
                    Op::Pop => {
                        let want = model.pop_front();
                        prop_assert_eq!(ring.pop(&mut out), want.is_some());
                        if let Some(want) = want { prop_assert_eq!(&out, &want); }
                    }
                }
                prop_assert_eq!(ring.count(), model.len() as u64);
                prop_assert_eq!(ring.used(), used(&model));
            }
        }
    }
}
