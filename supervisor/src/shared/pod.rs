//! [`Pod`]: the types that may live in memory that other processes write.

#![allow(unsafe_code)]

/// Plain old data: a `Copy` type without pointers, for which every byte pattern
/// of its size is a valid value, so that it can live in memory that other
/// processes write.
///
/// # Safety
///
/// Implement it only for a `#[repr(C)]` (or `#[repr(transparent)]`) type whose
/// fields are all `Pod`, with no padding, and no alignment over 64. `bool`, `char`,
/// references, `Box`, `String` and `Vec` are not plain old data.
///
/// ```compile_fail
/// // A `String` points into its process's heap: not plain old data.
/// let v = multiproc_supervisor::RawValue::new(String::from("no"));
/// ```
pub unsafe trait Pod: Copy + Send + Sync + 'static {}

macro_rules! pod {
    ($($t:ty),*) => { $(
        // SAFETY: a primitive number: any bytes are a value.
        unsafe impl Pod for $t {}
    )* };
}
pod!(
    u8, i8, u16, i16, u32, i32, u64, i64, u128, i128, usize, isize, f32, f64
);
// SAFETY: an array of plain old data, without padding between its elements.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}
