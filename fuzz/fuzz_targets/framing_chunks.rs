//! libFuzzer entry point; the body is `targets/framing_chunks.rs`, shared with the corpus replay test.
#![no_main]

#[allow(dead_code)]
#[path = "../targets/mod.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::framing_chunks::run(data));
