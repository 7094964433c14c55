//! libFuzzer entry point; the body is `targets/heartbeat_datagram.rs`, shared with the corpus replay test.
#![no_main]

#[allow(dead_code)]
#[path = "../targets/mod.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::heartbeat_datagram::run(data));
