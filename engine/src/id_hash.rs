//! A `Hasher` for hash maps keyed by `u64`s that are hashes or random draws already (the
//! registry's session ids, a peer's keyed name hashes): the key's own bits are the hash, which
//! saves SipHash on every lookup. Only for keys the program draws itself: a key the network
//! chose could be made to collide.

use std::hash::Hasher;

/// Hashes a `u64` key as itself (use through `BuildHasherDefault<IdHasher>`).
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used for `u64` keys; this keeps any other use correct.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
