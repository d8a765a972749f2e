//! Fuzz entry points of the supervisor, shared by the cargo-fuzz targets and the property tests.
//!
//! A panic here is a bug for the fuzzer to report: arbitrary bytes must give a typed
//! error or a value.

use crate::manager::ManagerError;

/// Decodes `data` as a manager's server decodes a request and serves it on a fresh
/// server (holding one object of each built-in type, numbered 1 to 7: dict, list,
/// namespace, queue, lock, event, value) for a caller that has hung up.
///
/// # Errors
///
/// [`ManagerError::Decode`] for bytes that are not a request, else the fault the
/// server answered with.
pub fn manager_request(data: &[u8]) -> Result<(), ManagerError> {
    crate::manager::fuzz_request(data)
}

/// Reads `data` as the forkserver reads a request from its socket: `data[0] % 4 + 1`
/// header bytes arrive with the descriptors, then the rest of `data`.
///
/// # Errors
///
/// An I/O error of kind `InvalidData` carrying a `FrameError::TooLarge` (a length
/// over the limit) or a `CodecError` (a body that is not a request), or of kind
/// `UnexpectedEof`, carrying a `FrameError::Truncated` when the body is cut short.
pub fn forkserver_request(data: &[u8]) -> std::io::Result<()> {
    crate::runtime::forkserver::fuzz_request(data)
}
