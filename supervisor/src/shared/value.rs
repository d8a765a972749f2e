//! `Value` and `RawValue`: one `T` in shared memory, with a lock or without.

#![allow(unsafe_code)]

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Serialize};

use super::block::{Block, VALUE, magic};
use super::{Pod, SharedMemoryError};
use crate::sync::{Guard, Lock};

/// Python's `RawValue`: one `T` in shared memory, without a lock. `get` and `set`
/// copy it whole; two processes that change it at once race, as in Python (use a
/// [`Value`], or a lock of your own).
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct RawValue<T: Pod> {
    block: Block,
    #[serde(skip)]
    _t: PhantomData<T>,
}

impl<T: Pod> Clone for RawValue<T> {
    fn clone(&self) -> Self {
        RawValue {
            block: self.block.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Pod> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawValue")
            .field("block", &self.block)
            .finish()
    }
}

impl<T: Pod> PartialEq for RawValue<T> {
    fn eq(&self, other: &Self) -> bool {
        self.block == other.block
    }
}

impl<T: Pod> RawValue<T> {
    /// A new value in shared memory, created by this process.
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::Exhausted`] when the system has no descriptor or memory
    /// left for it (the message names the limit); [`SharedMemoryError::Memory`] when
    /// it refuses otherwise.
    pub fn new(value: T) -> Result<RawValue<T>, SharedMemoryError> {
        let block = Block::create("multiproc-value", magic(VALUE), 1, std::mem::size_of::<T>())?;
        let v = RawValue {
            block,
            _t: PhantomData,
        };
        v.set(value)?;
        Ok(v)
    }

    /// Its value now.
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::Gone`] when this process maps it first after its creator
    /// exited; [`SharedMemoryError::Forged`].
    pub fn get(&self) -> Result<T, SharedMemoryError> {
        let p = self.block.at::<T>(magic(VALUE), 0)?;
        // SAFETY: `at` checked bounds and alignment; any bytes are a `T` (`Pod`).
        Ok(unsafe { p.read_volatile() })
    }

    /// Sets it.
    ///
    /// # Errors
    ///
    /// As [`get`](RawValue::get).
    pub fn set(&self, value: T) -> Result<(), SharedMemoryError> {
        let p = self.block.at::<T>(magic(VALUE), 0)?;
        // SAFETY: as in `get`.
        unsafe { p.write_volatile(value) };
        Ok(())
    }
}

/// Python's `Value`: a [`RawValue`] with a [`Lock`] (Python's `get_lock()`).
/// [`lock`](Value::lock) holds it and gives the value to change in place, so
/// `*v.lock()? += 1` is Python's `with v.get_lock(): v.value += 1`.
///
/// ```
/// multiproc_supervisor::init();
/// let v = multiproc_supervisor::Value::new(0u64)?;
/// *v.lock()? += 1;
/// assert_eq!(v.get()?, 1);
/// # Ok::<(), multiproc_supervisor::SharedMemoryError>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Value<T: Pod> {
    raw: RawValue<T>,
    lock: Lock,
}

impl<T: Pod> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value {
            raw: self.raw.clone(),
            lock: self.lock.clone(),
        }
    }
}

impl<T: Pod> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value").field("raw", &self.raw).finish()
    }
}

impl<T: Pod> Value<T> {
    /// A new value with a new lock.
    ///
    /// # Errors
    ///
    /// As [`RawValue::new`], for the value or its lock.
    pub fn new(value: T) -> Result<Value<T>, SharedMemoryError> {
        Value::with_lock(value, Lock::new()?)
    }

    /// A new value guarded by `lock` (Python's `Value(..., lock=lock)`).
    ///
    /// # Errors
    ///
    /// As [`RawValue::new`].
    pub fn with_lock(value: T, lock: Lock) -> Result<Value<T>, SharedMemoryError> {
        Ok(Value {
            raw: RawValue::new(value)?,
            lock,
        })
    }

    /// The lock (Python's `get_lock()`).
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// The value without its lock (Python's `get_obj()`).
    pub fn get_obj(&self) -> &RawValue<T> {
        &self.raw
    }

    /// Its value now, read under the lock.
    ///
    /// # Errors
    ///
    /// As [`RawValue::get`]; [`SharedMemoryError::Lock`].
    pub fn get(&self) -> Result<T, SharedMemoryError> {
        Ok(*self.lock()?)
    }

    /// Sets it under the lock.
    ///
    /// # Errors
    ///
    /// As [`get`](Value::get).
    pub fn set(&self, value: T) -> Result<(), SharedMemoryError> {
        *self.lock()? = value;
        Ok(())
    }

    /// Holds the lock and gives the value, to read or change in place. A previous
    /// holder that died holding the lock is [`ValueGuard::owner_died`].
    ///
    /// # Errors
    ///
    /// As [`get`](Value::get).
    pub fn lock(&self) -> Result<ValueGuard<'_, T>, SharedMemoryError> {
        let ptr = self.raw.block.at::<T>(magic(VALUE), 0)?;
        let guard = self.lock.guard_blocking()?;
        Ok(ValueGuard {
            ptr,
            guard,
            _t: PhantomData,
        })
    }
}

/// The value of a [`Value`], while its lock is held.
#[derive(Debug)]
pub struct ValueGuard<'a, T: Pod> {
    ptr: *mut T,
    guard: Guard<'a, Lock>,
    _t: PhantomData<&'a mut T>,
}

impl<T: Pod> ValueGuard<'_, T> {
    /// Whether the previous holder of the lock died holding it (the value may be
    /// half-updated).
    pub fn owner_died(&self) -> bool {
        self.guard.owner_died()
    }
}

impl<T: Pod> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: in the mapping (checked by `at`), which the `Value` keeps; every
        // process that honours the lock leaves it alone while it is held.
        unsafe { &*self.ptr }
    }
}

impl<T: Pod> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes it the only borrow here.
        unsafe { &mut *self.ptr }
    }
}
