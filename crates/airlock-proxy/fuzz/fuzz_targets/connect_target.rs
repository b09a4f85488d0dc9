//! Arbitrary CONNECT targets: parsed, judged and refused or answered cleanly.
#![no_main]
mod common;
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut req = b"CONNECT ".to_vec();
    req.extend_from_slice(data);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
    common::run(&req);
});
