//! Arbitrary bytes as a client's request stream: the proxy must answer or
//! close, never panic or hang.
#![no_main]
mod common;
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::run(data);
});
