//! Plain data in shared memory: Python's `Value`, `Array`, `RawValue`, `RawArray`
//! and `multiprocessing.shared_memory.SharedMemory`.
//!
//! Each lives in an anonymous memfd (see `shm`): no name in `/dev/shm`, nothing to
//! unlink, nothing left behind whatever kills whom; the memory goes with its last
//! mapping. A handle is a plain serde value: pass it to a child or inside a message,
//! and the first use there maps the memory (through `/proc/<creator>/fd`, while the
//! creator lives).

mod array;
mod block;
mod error;
pub(crate) mod pod;
mod shared_memory;
mod value;

pub use array::{Array, ArrayGuard, RawArray};
pub use error::SharedMemoryError;
pub use pod::Pod;
pub use shared_memory::{SharedMemory, SharedMemoryRef};
pub use value::{RawValue, Value, ValueGuard};
