//! The bulk path: a chunk of plain data ([`Pod`]) crosses to its worker as one slab of
//! bytes, the items side by side, and its results come back the same way, instead of
//! one rmp-serde value per item each way.
//!
//! Rust has no specialization, so a generic `map` cannot ask whether its argument type
//! is `Pod`. `register!` can, for the concrete function it registers (autoref
//! specialization, `probe.rs`): it records a [`PodTask`] (the registry's type, made
//! here), a witness that the task's argument and result types are `Pod`, with their
//! `TypeId`s and the functions that cast a `Vec` of them to bytes and back. The
//! caller's `map` takes the bulk path only when the witness names its own types; a
//! `Vec` of them then crosses the generic boundary as `dyn Any`, downcast by the
//! witness, so nothing here is `unsafe`.

use std::any::{Any, TypeId};
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::wire::ItemFailure;
use crate::runtime::panic::{panic_message, take_panic};
use crate::runtime::registry::PodTask;
use crate::runtime::target::Task;
use crate::shared::Pod;

impl PodTask {
    /// The witness for tasks from `A` to `R`; none when either is zero-sized (a slab
    /// of them would not say how many there are, and rmp-serde spends a byte on each).
    pub fn of<A: Pod, R: Pod>() -> Option<PodTask> {
        if size_of::<A>() == 0 || size_of::<R>() == 0 {
            return None;
        }
        Some(PodTask {
            args: TypeId::of::<A>(),
            output: TypeId::of::<R>(),
            args_size: size_of::<A>(),
            output_size: size_of::<R>(),
            encode: encode::<A>,
            decode: decode::<R>,
        })
    }

    /// This witness if it is for arguments `A` and results `R`: the caller's own types,
    /// which a witness recorded for another function's could not cast.
    pub(super) fn check<A: 'static, R: 'static>(self) -> Option<PodTask> {
        (self.args == TypeId::of::<A>()
            && self.output == TypeId::of::<R>()
            && self.args_size == size_of::<A>()
            && self.output_size == size_of::<R>())
        .then_some(self)
    }

    /// What a chunker needs to cast arguments `A` to slabs: this witness, checked
    /// for `A` by the caller.
    pub(super) fn plain<A: 'static>(self) -> Plain<A> {
        Plain {
            size: self.args_size,
            witness: self,
            encode: |w, items, slab| (w.encode)(items, slab),
        }
    }

    /// Appends the results in `slab`, which holds `count` of them, to `out`. A slab of
    /// another length is an error, and `out` is left as it was.
    #[allow(
        clippy::ptr_arg,
        reason = "the witness downcasts a `Vec`, which it grows: a slice is neither"
    )]
    pub(super) fn decode<R: 'static>(
        &self,
        slab: &[u8],
        count: usize,
        out: &mut Vec<R>,
    ) -> Result<(), String> {
        check_len(slab.len(), self.output_size, count, "results")?;
        (self.decode)(slab, out)
    }
}

/// A [`PodTask`] checked for arguments `A`, which casts a `Vec` of them to a slab.
///
/// It holds the cast as a function made where `A: 'static` is known, so that code
/// generic over arguments that may borrow (`apply_by_name`'s) can hold it too.
pub(super) struct Plain<A> {
    /// The bytes an argument takes in a slab.
    pub(super) size: usize,
    witness: PodTask,
    encode: CastFn<A>,
}

/// Appends the bytes of a `Vec<A>` to a slab, as the witness says.
type CastFn<A> = fn(&PodTask, &Vec<A>, &mut Vec<u8>) -> Result<(), String>;

impl<A> Plain<A> {
    /// Appends `items` to `slab`.
    #[allow(
        clippy::ptr_arg,
        reason = "the witness downcasts a `Vec`: a slice is not `Any`"
    )]
    pub(super) fn encode(&self, items: &Vec<A>, slab: &mut Vec<u8>) -> Result<(), String> {
        (self.encode)(&self.witness, items, slab)
    }
}

/// `Ok` if a slab of `len` bytes holds exactly `count` values of `size` bytes.
pub(super) fn check_len(len: usize, size: usize, count: usize, what: &str) -> Result<(), String> {
    if size == 0 || !len.is_multiple_of(size) {
        return Err(format!(
            "a slab of {what} takes {len} bytes, not a multiple of their size, {size}"
        ));
    }
    if len / size != count {
        return Err(format!(
            "a slab of {what} holds {} of them where {count} were expected",
            len / size
        ));
    }
    Ok(())
}

fn encode<A: Pod>(items: &dyn Any, slab: &mut Vec<u8>) -> Result<(), String> {
    let items = items
        .downcast_ref::<Vec<A>>()
        .ok_or_else(|| format!("not a `Vec<{}>`", std::any::type_name::<A>()))?;
    slab.extend_from_slice(bytemuck::cast_slice(items));
    Ok(())
}

fn decode<R: Pod>(slab: &[u8], out: &mut dyn Any) -> Result<(), String> {
    let out = out
        .downcast_mut::<Vec<R>>()
        .ok_or_else(|| format!("not a `Vec<{}>`", std::any::type_name::<R>()))?;
    // The slab sits at any offset of its frame, so it is copied, not cast in place.
    let start = out.len();
    out.resize(start + slab.len() / size_of::<R>(), R::zeroed());
    bytemuck::cast_slice_mut::<R, u8>(&mut out[start..]).copy_from_slice(slab);
    Ok(())
}

/// Runs a chunk sent as a slab with `f`: each result's bytes are appended to `out`, or
/// its failure recorded; a panic fails its item only. A slab that does not hold
/// `items` arguments fails every item with [`ItemFailure::Args`].
pub fn run_slab<F: Task<M> + Copy, M>(
    f: F,
    args: &[u8],
    items: u32,
    out: &mut Vec<u8>,
    failures: &mut Vec<(u32, ItemFailure)>,
) where
    F::Args: Pod,
    F::Output: Pod,
{
    let size = size_of::<F::Args>();
    if let Err(message) = check_len(args.len(), size, items as usize, "arguments") {
        fail_args(&message, items, failures);
        return;
    }
    out.reserve(items as usize * size_of::<F::Output>());
    for (i, bytes) in (0..items).zip(args.chunks_exact(size)) {
        let a: F::Args = bytemuck::pod_read_unaligned(bytes);
        match catch_unwind(AssertUnwindSafe(|| f.call(a))) {
            Ok(r) => out.extend_from_slice(bytemuck::bytes_of(&r)),
            Err(payload) => {
                let (message, location) =
                    take_panic().unwrap_or_else(|| (panic_message(&*payload), None));
                failures.push((i, ItemFailure::Panicked { message, location }));
            }
        }
    }
}

/// Fails every item of a chunk whose arguments cannot be read.
pub(super) fn fail_args(message: &str, items: u32, failures: &mut Vec<(u32, ItemFailure)>) {
    failures.extend((0..items).map(|i| {
        (
            i,
            ItemFailure::Args {
                message: message.to_string(),
            },
        )
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_witness_is_for_its_own_types_only() {
        let w = PodTask::of::<u64, f64>().unwrap();
        assert!(w.check::<u64, f64>().is_some());
        assert!(w.check::<u64, u64>().is_none());
        assert!(w.check::<i64, f64>().is_none());
        assert!(PodTask::of::<(), u64>().is_none());
        assert!(PodTask::of::<u64, ()>().is_none());
    }

    #[test]
    fn a_vec_round_trips_through_a_slab() {
        let w = PodTask::of::<u32, u32>().unwrap();
        let mut slab = vec![0xAA]; // a slab need not start aligned in its frame
        w.plain::<u32>()
            .encode(&vec![1u32, 2, 3], &mut slab)
            .unwrap();
        assert!(w.plain::<u64>().encode(&vec![1u64], &mut slab).is_err());
        let mut out = vec![9u32];
        w.decode(&slab[1..], 3, &mut out).unwrap();
        assert_eq!(out, [9, 1, 2, 3]);
    }

    #[test]
    fn a_slab_of_the_wrong_length_is_an_error_not_a_panic() {
        let w = PodTask::of::<u64, u64>().unwrap();
        let mut out = Vec::<u64>::new();
        let short = w.decode(&[0; 7], 1, &mut out).unwrap_err();
        assert!(short.contains("not a multiple"), "{short}");
        let few = w.decode(&[0; 16], 3, &mut out).unwrap_err();
        assert!(few.contains("holds 2 of them where 3"), "{few}");
        assert!(out.is_empty());
        assert!(w.decode(&[0; 8], 1, &mut Vec::<u32>::new()).is_err());
        assert!(check_len(0, 0, 0, "x").is_err());
    }
}
