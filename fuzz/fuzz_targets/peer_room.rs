//! libFuzzer entry point; the body is `targets/peer_room.rs`, shared with the corpus replay test.
#![no_main]

#[allow(dead_code)]
#[path = "../targets/mod.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::peer_room::run(data));
