//! Fuzzes the forkserver's reading of a fork request from its socket.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = multiproc_supervisor::fuzz::forkserver_request(data);
});
