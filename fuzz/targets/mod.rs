//! The fuzz target bodies, one `pub fn run(data: &[u8])` per target.
//!
//! Each body is compiled twice: into its libFuzzer binary (`fuzz/fuzz_targets/NAME.rs`, built by
//! `cargo fuzz`) and into the workspace test `bench/tests/fuzz_corpus.rs`, which replays every
//! committed corpus and regression file through it on stable. So the bodies use only the
//! workspace crates, `arbitrary` and `bytes`, and signal a finding by panicking.

pub mod frame_decode;
pub mod framing_chunks;
pub mod heartbeat_datagram;
pub mod ops;
pub mod peer_command;
pub mod peer_room;
pub mod registry_session;

/// A target body.
pub type Body = fn(&[u8]);

/// Every target: its name (the corpus directory) and its body.
pub const ALL: &[(&str, Body)] = &[
    ("frame_decode", frame_decode::run),
    ("framing_chunks", framing_chunks::run),
    ("heartbeat_datagram", heartbeat_datagram::run),
    ("registry_session", registry_session::run),
    ("peer_room", peer_room::run),
    ("peer_command", peer_command::run),
];

/// The generated seeds of `target`: what `fuzz/corpus/<target>/seed-*` holds.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "frame_decode" => frame_decode::seeds(),
        "framing_chunks" => framing_chunks::seeds(),
        "heartbeat_datagram" => heartbeat_datagram::seeds(),
        "registry_session" => registry_session::seeds(),
        "peer_room" => peer_room::seeds(),
        "peer_command" => peer_command::seeds(),
        _ => Vec::new(),
    }
}
