//! `Array` and `RawArray`: `T`s in shared memory, with a lock or without.

#![allow(unsafe_code)]

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Serialize};

use super::block::{ARRAY, Block, magic};
use super::{Pod, SharedMemoryError};
use crate::sync::{Guard, Lock};

/// Python's `RawArray`: `len` `T`s in shared memory, without a lock.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct RawArray<T: Pod> {
    block: Block,
    #[serde(skip)]
    _t: PhantomData<T>,
}

impl<T: Pod> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        RawArray {
            block: self.block.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Pod> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawArray")
            .field("block", &self.block)
            .finish()
    }
}

impl<T: Pod> RawArray<T> {
    /// A new array holding a copy of `items`.
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::Size`] for an empty one; as [`RawValue::new`](super::RawValue::new).
    pub fn from_slice(items: &[T]) -> Result<RawArray<T>, SharedMemoryError> {
        let a = RawArray::<T>::zeroed_uninit(items.len())?;
        a.write(0, items)?;
        Ok(a)
    }

    /// A new array of `len` zeroed `T`s (Python's `RawArray(type, size)`).
    ///
    /// # Errors
    ///
    /// As [`from_slice`](RawArray::from_slice).
    pub fn zeroed(len: usize) -> Result<RawArray<T>, SharedMemoryError> {
        RawArray::zeroed_uninit(len)
    }

    fn zeroed_uninit(len: usize) -> Result<RawArray<T>, SharedMemoryError> {
        if len == 0 {
            return Err(SharedMemoryError::Size("an array of 0 elements".into()));
        }
        Ok(RawArray {
            block: Block::create(
                "multiproc-array",
                magic(ARRAY),
                len,
                std::mem::size_of::<T>(),
            )?,
            _t: PhantomData,
        })
    }

    /// Its length.
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::Gone`], [`SharedMemoryError::Forged`].
    pub fn len(&self) -> Result<usize, SharedMemoryError> {
        self.block.len(magic(ARRAY), std::mem::size_of::<T>())
    }

    /// Whether it is empty (never: an array has at least one element).
    ///
    /// # Errors
    ///
    /// As [`len`](RawArray::len).
    pub fn is_empty(&self) -> Result<bool, SharedMemoryError> {
        Ok(self.len()? == 0)
    }

    /// Element `i`.
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::OutOfBounds`]; as [`len`](RawArray::len).
    pub fn get(&self, i: usize) -> Result<T, SharedMemoryError> {
        let p = self.block.at::<T>(magic(ARRAY), i)?;
        // SAFETY: in bounds and aligned (`at`); any bytes are a `T`.
        Ok(unsafe { p.read_volatile() })
    }

    /// Sets element `i`.
    ///
    /// # Errors
    ///
    /// As [`get`](RawArray::get).
    pub fn set(&self, i: usize, value: T) -> Result<(), SharedMemoryError> {
        let p = self.block.at::<T>(magic(ARRAY), i)?;
        // SAFETY: as in `get`.
        unsafe { p.write_volatile(value) };
        Ok(())
    }

    /// Copies `items` in, from element `start`.
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::OutOfBounds`] when they do not fit (nothing is written).
    pub fn write(&self, start: usize, items: &[T]) -> Result<(), SharedMemoryError> {
        let (p, n) = self.range(start, items.len())?;
        // SAFETY: `range` checked the whole range; shared memory never overlaps a
        // Rust slice of this process.
        unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), p, n) };
        Ok(())
    }

    /// A copy of every element.
    ///
    /// # Errors
    ///
    /// As [`len`](RawArray::len).
    pub fn to_vec(&self) -> Result<Vec<T>, SharedMemoryError> {
        let len = self.len()?;
        let (p, n) = self.range(0, len)?;
        let mut out = Vec::with_capacity(n);
        // SAFETY: `range` checked it; `out` has room for `n`, all of them written.
        unsafe {
            std::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), n);
            out.set_len(n);
        }
        Ok(out)
    }

    fn range(&self, start: usize, n: usize) -> Result<(*mut T, usize), SharedMemoryError> {
        let len = self.len()?;
        let end =
            start
                .checked_add(n)
                .filter(|&e| e <= len)
                .ok_or(SharedMemoryError::OutOfBounds {
                    index: start.saturating_add(n),
                    len,
                })?;
        if n == 0 {
            return Ok((std::ptr::NonNull::dangling().as_ptr(), 0));
        }
        let _ = end;
        Ok((self.block.at::<T>(magic(ARRAY), start)?, n))
    }
}

/// Python's `Array`: a [`RawArray`] with a [`Lock`]; [`lock`](Array::lock) holds it
/// and gives the elements as a slice.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Array<T: Pod> {
    raw: RawArray<T>,
    lock: Lock,
}

impl<T: Pod> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            raw: self.raw.clone(),
            lock: self.lock.clone(),
        }
    }
}

impl<T: Pod> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array").field("raw", &self.raw).finish()
    }
}

impl<T: Pod> Array<T> {
    /// A new array holding a copy of `items`, with a new lock.
    ///
    /// # Errors
    ///
    /// As [`RawArray::from_slice`].
    pub fn from_slice(items: &[T]) -> Result<Array<T>, SharedMemoryError> {
        Ok(Array {
            raw: RawArray::from_slice(items)?,
            lock: Lock::new()?,
        })
    }

    /// A new array of `len` zeroed `T`s, with a new lock.
    ///
    /// # Errors
    ///
    /// As [`RawArray::zeroed`].
    pub fn zeroed(len: usize) -> Result<Array<T>, SharedMemoryError> {
        Ok(Array {
            raw: RawArray::zeroed(len)?,
            lock: Lock::new()?,
        })
    }

    /// The lock (Python's `get_lock()`).
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// The array without its lock (Python's `get_obj()`).
    pub fn get_obj(&self) -> &RawArray<T> {
        &self.raw
    }

    /// Its length.
    ///
    /// # Errors
    ///
    /// As [`RawArray::len`].
    pub fn len(&self) -> Result<usize, SharedMemoryError> {
        self.raw.len()
    }

    /// Whether it is empty (never).
    ///
    /// # Errors
    ///
    /// As [`RawArray::len`].
    pub fn is_empty(&self) -> Result<bool, SharedMemoryError> {
        self.raw.is_empty()
    }

    /// Element `i`, read under the lock.
    ///
    /// # Errors
    ///
    /// As [`RawArray::get`]; [`SharedMemoryError::Lock`].
    pub fn get(&self, i: usize) -> Result<T, SharedMemoryError> {
        let g = self.lock()?;
        g.get(i).copied().ok_or(SharedMemoryError::OutOfBounds {
            index: i,
            len: g.len(),
        })
    }

    /// Sets element `i` under the lock.
    ///
    /// # Errors
    ///
    /// As [`get`](Array::get).
    pub fn set(&self, i: usize, value: T) -> Result<(), SharedMemoryError> {
        let mut g = self.lock()?;
        let len = g.len();
        *g.get_mut(i)
            .ok_or(SharedMemoryError::OutOfBounds { index: i, len })? = value;
        Ok(())
    }

    /// A copy of every element, under the lock.
    ///
    /// # Errors
    ///
    /// As [`get`](Array::get).
    pub fn to_vec(&self) -> Result<Vec<T>, SharedMemoryError> {
        Ok(self.lock()?.to_vec())
    }

    /// Holds the lock and gives the elements, to read or change in place.
    ///
    /// # Errors
    ///
    /// As [`RawArray::len`]; [`SharedMemoryError::Lock`].
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>, SharedMemoryError> {
        let len = self.raw.len()?;
        let ptr = self.raw.block.at::<T>(magic(ARRAY), 0)?;
        let guard = self.lock.guard_blocking()?;
        Ok(ArrayGuard {
            ptr,
            len,
            guard,
            _t: PhantomData,
        })
    }
}

/// The elements of an [`Array`], while its lock is held.
#[derive(Debug)]
pub struct ArrayGuard<'a, T: Pod> {
    ptr: *mut T,
    len: usize,
    guard: Guard<'a, Lock>,
    _t: PhantomData<&'a mut [T]>,
}

impl<T: Pod> ArrayGuard<'_, T> {
    /// Whether the previous holder of the lock died holding it.
    pub fn owner_died(&self) -> bool {
        self.guard.owner_died()
    }
}

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `len` elements in the mapping (checked when locked); every process
        // that honours the lock leaves them alone while it is held.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes it the only borrow here.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}
