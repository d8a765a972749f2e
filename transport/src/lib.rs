//! How bytes move between multiproc processes.
//!
//! - [`frame`]: length-prefixed frames in CPython's `multiprocessing.connection` format,
//!   with an explicit maximum length ([`MAX_FRAME_LEN`]).
#![doc(test(attr(deny(warnings))))]

pub mod frame;

pub use frame::{FrameError, FrameReader, MAX_FRAME_LEN};
