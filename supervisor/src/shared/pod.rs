//! [`Pod`]: plain old data, which may live in memory that other processes write and
//! which a pool moves as slabs of bytes.

/// Plain old data: a `Copy` type without pointers, for which every byte pattern of its
/// size is a valid value, so that it can live in memory that other processes write
/// ([`Value`](crate::Value), [`Array`](crate::Array)) and cross to a pool's workers as
/// raw bytes instead of one serde value per item.
///
/// It is [`bytemuck::Pod`] that can cross threads: numbers, arrays of them, and any
/// `#[repr(C)]` struct that derives bytemuck's `Pod`, whose derive checks at compile
/// time that the struct has no padding and only `Pod` fields. There is nothing to
/// implement by hand, and nothing `unsafe` to write:
///
/// ```
/// #[derive(Clone, Copy, Debug, PartialEq, multiproc_supervisor::bytemuck::Pod,
///          multiproc_supervisor::bytemuck::Zeroable)]
/// #[bytemuck(crate = "multiproc_supervisor::bytemuck")]
/// #[repr(C)]
/// struct Point {
///     x: f64,
///     y: f64,
/// }
///
/// fn is_pod<T: multiproc_supervisor::Pod>() {}
/// is_pod::<Point>();
/// is_pod::<[u32; 100]>();
/// ```
///
/// A struct with padding is refused by the derive:
///
/// ```compile_fail
/// #[derive(Clone, Copy, multiproc_supervisor::bytemuck::Pod,
///          multiproc_supervisor::bytemuck::Zeroable)]
/// #[bytemuck(crate = "multiproc_supervisor::bytemuck")]
/// #[repr(C)]
/// struct Padded {
///     a: u8,
///     b: u64, // seven bytes of padding before it
/// }
/// ```
///
/// `bool`, `char`, references, `Box`, `String` and `Vec` are not plain old data:
///
/// ```compile_fail
/// // A `String` points into its process's heap: not plain old data.
/// let v = multiproc_supervisor::RawValue::new(String::from("no"));
/// ```
///
/// Shared memory aligns its data to 64 bytes, so a `Value` or `Array` of a type
/// aligned to more does not build (a pool takes it, since it copies slabs):
///
/// ```compile_fail
/// #[derive(Clone, Copy, multiproc_supervisor::bytemuck::Pod,
///          multiproc_supervisor::bytemuck::Zeroable)]
/// #[bytemuck(crate = "multiproc_supervisor::bytemuck")]
/// #[repr(C, align(128))]
/// struct Wide([u8; 128]);
///
/// let v = multiproc_supervisor::RawValue::new(Wide([0; 128]));
/// ```
pub trait Pod: bytemuck::Pod + Send + Sync {}

impl<T: bytemuck::Pod + Send + Sync> Pod for T {}

/// The largest alignment a [`Pod`] type may have to live in shared memory, whose data
/// starts on a boundary of this many bytes.
pub(crate) const MAX_ALIGN: usize = 64;

/// Fails the build of a shared-memory type of `T` aligned to more than [`MAX_ALIGN`]:
/// its elements could not all sit on their alignment.
pub(crate) const fn check_align<T>() {
    assert!(
        std::mem::align_of::<T>() <= MAX_ALIGN,
        "shared memory aligns its data to 64 bytes: a type aligned to more cannot live there"
    );
}
