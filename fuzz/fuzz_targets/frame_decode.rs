//! libFuzzer entry point; the body is `targets/frame_decode.rs`, shared with the corpus replay test.
#![no_main]

#[allow(dead_code)]
#[path = "../targets/mod.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::frame_decode::run(data));
