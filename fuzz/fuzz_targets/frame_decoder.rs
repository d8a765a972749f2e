//! Fuzzes the frame decoder: any byte stream, any limit and chunking; push and read-in-place must agree.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = multiproc_transport::fuzz::frame_decoder(data);
});
