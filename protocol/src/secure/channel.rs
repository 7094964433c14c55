//! The sealed channel: one ChaCha20-Poly1305 key per direction and a 64-bit counter as nonce.
//!
//! A record is `len u32 | 0x52 | ciphertext | tag`; the 5 header bytes are the associated data,
//! so the length and kind are authenticated too. The nonce is 4 zero bytes and the counter
//! (big-endian), and each side counts the records it sealed and opened: a replayed, reordered
//! or dropped record is opened with the wrong nonce and fails by construction, with no window
//! or state beyond the counter.

use bytes::{BufMut, BytesMut};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};

use crate::secure::record::{MAX_RECORD_PLAINTEXT, RECORD_HEADER, TAG_LEN};
use crate::secure::{record_kind, SecureError};

/// Bytes of a ChaCha20-Poly1305 key.
pub(crate) const KEY_LEN: usize = 32;

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn aead_key(key: &[u8; KEY_LEN]) -> LessSafeKey {
    // A 32-byte key is always accepted by ChaCha20-Poly1305.
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).expect("32-byte key"))
}

/// The sending half: seals plaintext into records.
///
/// Both halves keep the raw 32-byte key and build ring's key for each record: ring's
/// `LessSafeKey` is 544 bytes whatever the algorithm (its largest variant, AES-GCM's key
/// schedule, sets the size), so two of them made a link cost ~1.1 KiB per connection, most of
/// an online peer's memory at the registry; building a ChaCha20 key is a 32-byte copy.
pub struct Sealer {
    key: [u8; KEY_LEN],
    counter: u64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer {{ counter: {} }}", self.counter)
    }
}

impl Sealer {
    pub(crate) fn new(key: &[u8; KEY_LEN]) -> Sealer {
        Sealer {
            key: *key,
            counter: 0,
        }
    }

    /// Seals `plain` into one record of kind `kind` appended to `out` (handshake messages use
    /// their own kinds and a fresh key with counter 0). `plain` must fit one record.
    pub(crate) fn seal_as(
        &mut self,
        kind: u8,
        prefix: &[u8],
        plain: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), SecureError> {
        let counter = self.counter;
        self.counter = counter
            .checked_add(1)
            .ok_or(SecureError::CounterExhausted)?;
        let start = out.len();
        let len = 1 + prefix.len() + plain.len() + TAG_LEN;
        out.reserve(4 + len);
        out.put_u32(len as u32);
        out.put_u8(kind);
        out.put_slice(prefix);
        let aad_end = out.len();
        out.put_slice(plain);
        let (head, body) = out[start..].split_at_mut(aad_end - start);
        let tag = aead_key(&self.key)
            .seal_in_place_separate_tag(nonce(counter), Aad::from(&*head), body)
            .map_err(|_| SecureError::Local("seal"))?;
        out.put_slice(tag.as_ref());
        Ok(())
    }

    /// Seals `plain` (any length) into as many records as it takes, appended to `out`.
    pub fn seal(&mut self, plain: &[u8], out: &mut BytesMut) -> Result<(), SecureError> {
        for chunk in plain.chunks(MAX_RECORD_PLAINTEXT) {
            self.seal_as(record_kind::SEALED, &[], chunk, out)?;
        }
        Ok(())
    }

    /// Records sealed so far.
    pub fn count(&self) -> u64 {
        self.counter
    }
}

/// The receiving half: opens records in order (keeps the raw key, as [`Sealer`] does).
pub struct Opener {
    key: [u8; KEY_LEN],
    counter: u64,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Opener {{ counter: {} }}", self.counter)
    }
}

impl Opener {
    pub(crate) fn new(key: &[u8; KEY_LEN]) -> Opener {
        Opener {
            key: *key,
            counter: 0,
        }
    }

    /// Opens one whole record (as `RecordReader` yields it) whose authenticated header is its
    /// first `aad_len` bytes; returns the plaintext. Any failure is final for the link.
    pub(crate) fn open_as(
        &mut self,
        record: &[u8],
        aad_len: usize,
    ) -> Result<Vec<u8>, SecureError> {
        let mut out = BytesMut::new();
        self.open_into(record, aad_len, &mut out)?;
        Ok(out.to_vec())
    }

    /// As [`open_as`](Self::open_as), but the plaintext is appended to `out`: the ciphertext
    /// is copied there once and opened in place, with no buffer of its own per record. On
    /// failure `out` is left as it was.
    pub(crate) fn open_into(
        &mut self,
        record: &[u8],
        aad_len: usize,
        out: &mut BytesMut,
    ) -> Result<(), SecureError> {
        if record.len() < aad_len + TAG_LEN {
            return Err(SecureError::Open);
        }
        let counter = self.counter;
        self.counter = counter
            .checked_add(1)
            .ok_or(SecureError::CounterExhausted)?;
        let (head, sealed) = record.split_at(aad_len);
        let start = out.len();
        out.extend_from_slice(sealed);
        match aead_key(&self.key).open_in_place(nonce(counter), Aad::from(head), &mut out[start..])
        {
            Ok(plain) => {
                let end = start + plain.len();
                out.truncate(end);
                Ok(())
            }
            Err(_) => {
                out.truncate(start);
                Err(SecureError::Open)
            }
        }
    }

    /// Opens one sealed data record (kind `0x52`).
    pub fn open(&mut self, record: &[u8]) -> Result<Vec<u8>, SecureError> {
        let mut out = BytesMut::new();
        self.open_sealed_into(record, &mut out)?;
        Ok(out.to_vec())
    }

    /// Opens one sealed data record (kind `0x52`), appending its plaintext to `out`.
    pub fn open_sealed_into(
        &mut self,
        record: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), SecureError> {
        match record.get(4) {
            Some(&record_kind::SEALED) => self.open_into(record, RECORD_HEADER, out),
            Some(&other) => Err(SecureError::Unexpected(format!(
                "record kind 0x{other:02x} after the handshake"
            ))),
            None => Err(SecureError::Open),
        }
    }

    /// Records opened so far.
    pub fn count(&self) -> u64 {
        self.counter
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secure::RecordReader;

    fn pair() -> (Sealer, Opener) {
        let key = [7u8; KEY_LEN];
        (Sealer::new(&key), Opener::new(&key))
    }

    fn records(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut r = RecordReader::new();
        r.push(bytes);
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push(rec.to_vec());
        }
        out
    }

    #[test]
    fn long_plaintext_is_cut_into_records_and_comes_back_whole() {
        let (mut s, mut o) = pair();
        let plain: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        let mut out = BytesMut::new();
        s.seal(&plain, &mut out).unwrap();
        let recs = records(&out);
        assert_eq!(recs.len(), 3);
        let back: Vec<u8> = recs.iter().flat_map(|r| o.open(r).unwrap()).collect();
        assert_eq!(back, plain);
    }

    #[test]
    fn a_record_fails_to_open_with_the_wrong_key() {
        let (mut s, _) = pair();
        let mut other = Opener::new(&[8u8; KEY_LEN]);
        let mut out = BytesMut::new();
        s.seal(b"hi", &mut out).unwrap();
        assert_eq!(other.open(&out), Err(SecureError::Open));
    }

    #[test]
    fn replayed_and_reordered_records_fail() {
        let (mut s, mut o) = pair();
        let mut out = BytesMut::new();
        for m in [&b"one"[..], b"two", b"three"] {
            s.seal(m, &mut out).unwrap();
        }
        let recs = records(&out);
        assert_eq!(o.open(&recs[0]).unwrap(), b"one");
        // Replaying the first record fails.
        assert_eq!(
            o.clone_fresh_counter(1).open(&recs[0]),
            Err(SecureError::Open)
        );
        // Skipping the second (reorder or drop) fails.
        assert_eq!(
            o.clone_fresh_counter(1).open(&recs[2]),
            Err(SecureError::Open)
        );
        assert_eq!(o.open(&recs[1]).unwrap(), b"two");
        assert_eq!(o.open(&recs[2]).unwrap(), b"three");
    }

    impl Opener {
        /// A copy of the opener's state, for trying several next records.
        fn clone_fresh_counter(&self, counter: u64) -> Opener {
            Opener {
                key: [7u8; KEY_LEN],
                counter,
            }
        }
    }
}
