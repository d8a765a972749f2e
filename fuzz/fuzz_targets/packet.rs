//! Fuzzes the control-link packet and envelope decoder.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = multiproc_core::fuzz::packet(data);
});
