//! `Probe`: how `register!` sorts a registered function into a process entry, a pool
//! task, or both, and a task into one of plain data or not, by autoref specialization.

use super::slab::{fail_args, run_slab};
use super::wire::ItemFailure;
use super::worker::{fail_all, run_task};
use crate::runtime::registry::{EntryOutcome, PodTask};
use crate::runtime::target::{Target, Task};
use crate::shared::Pod;

/// Sorts a registered function into what it can be: a process entry (`Target`), a pool
/// task (`Task`), or both. The macro calls `(&&Probe(f)).entry_run()`; method
/// resolution picks the impl on `&Probe` when the bound holds, else the one on `Probe`.
#[derive(Debug)]
pub struct Probe<F>(pub F);

/// `register!`'s choice when the function is a process entry.
pub trait ViaTarget<M> {
    /// Runs it as a process's entry point.
    fn entry_run(&self, args: Vec<u8>) -> EntryOutcome;
}

impl<F: Target<M> + Copy, M> ViaTarget<M> for &Probe<F> {
    fn entry_run(&self, args: Vec<u8>) -> EntryOutcome {
        crate::runtime::target::run_function(self.0, args)
    }
}

/// `register!`'s choice when the function is not a process entry.
pub trait NoTarget {
    /// Refuses to run it as a process's entry point.
    fn entry_run(&self, args: Vec<u8>) -> EntryOutcome;
}

impl<F> NoTarget for Probe<F> {
    fn entry_run(&self, _: Vec<u8>) -> EntryOutcome {
        EntryOutcome::Failed(format!(
            "`{}` returns a value, so it runs as a pool task, not as a process's entry point",
            std::any::type_name::<F>()
        ))
    }
}

/// `register!`'s choice when the function is a pool task.
pub trait ViaTask<M> {
    /// Runs a chunk of it.
    fn entry_task(
        &self,
        args: &[u8],
        items: u32,
        out: &mut Vec<u8>,
        failures: &mut Vec<(u32, ItemFailure)>,
    );
}

impl<F: Task<M> + Copy, M> ViaTask<M> for &Probe<F> {
    fn entry_task(
        &self,
        args: &[u8],
        items: u32,
        out: &mut Vec<u8>,
        failures: &mut Vec<(u32, ItemFailure)>,
    ) {
        run_task(self.0, args, items, out, failures)
    }
}

/// `register!`'s choice when the function is not a pool task.
pub trait NoTask {
    /// Fails every item.
    fn entry_task(
        &self,
        args: &[u8],
        items: u32,
        out: &mut Vec<u8>,
        failures: &mut Vec<(u32, ItemFailure)>,
    );
}

impl<F> NoTask for Probe<F> {
    fn entry_task(
        &self,
        args: &[u8],
        items: u32,
        out: &mut Vec<u8>,
        failures: &mut Vec<(u32, ItemFailure)>,
    ) {
        let _ = (args, out);
        fail_all(std::any::type_name::<F>(), items, failures);
    }
}

/// `register!`'s choice when the function is a task of plain data: its argument and
/// result are both [`Pod`], so its chunks can cross as slabs.
pub trait ViaPod<M> {
    /// The witness that it is.
    fn entry_pod(&self) -> Option<PodTask>;
    /// Runs a chunk of it sent as a slab.
    fn entry_slab(
        &self,
        args: &[u8],
        items: u32,
        out: &mut Vec<u8>,
        failures: &mut Vec<(u32, ItemFailure)>,
    );
}

impl<F: Task<M> + Copy, M> ViaPod<M> for &Probe<F>
where
    F::Args: Pod,
    F::Output: Pod,
{
    fn entry_pod(&self) -> Option<PodTask> {
        PodTask::of::<F::Args, F::Output>()
    }

    fn entry_slab(
        &self,
        args: &[u8],
        items: u32,
        out: &mut Vec<u8>,
        failures: &mut Vec<(u32, ItemFailure)>,
    ) {
        run_slab(self.0, args, items, out, failures)
    }
}

/// `register!`'s choice when the function is not a task of plain data.
pub trait NoPod {
    /// No witness.
    fn entry_pod(&self) -> Option<PodTask>;
    /// Fails every item: its arguments are not plain data.
    fn entry_slab(
        &self,
        args: &[u8],
        items: u32,
        out: &mut Vec<u8>,
        failures: &mut Vec<(u32, ItemFailure)>,
    );
}

impl<F> NoPod for Probe<F> {
    fn entry_pod(&self) -> Option<PodTask> {
        None
    }

    fn entry_slab(
        &self,
        args: &[u8],
        items: u32,
        out: &mut Vec<u8>,
        failures: &mut Vec<(u32, ItemFailure)>,
    ) {
        let _ = (args, out);
        not_plain(std::any::type_name::<F>(), items, failures);
    }
}

/// Fails every item of a slab sent to `name`, which does not take plain data.
fn not_plain(name: &str, items: u32, failures: &mut Vec<(u32, ItemFailure)>) {
    let message = format!("`{name}` does not take a slab of plain data");
    fail_args(&message, items, failures);
}
