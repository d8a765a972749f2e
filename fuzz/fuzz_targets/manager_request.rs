//! Fuzzes the manager's request decoder and the server that serves what it decodes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = multiproc_supervisor::fuzz::manager_request(data);
});
