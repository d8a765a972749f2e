//! Fuzzes both sides of the authkey handshake against a peer that sends arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = multiproc_transport::fuzz::handshake(data);
});
