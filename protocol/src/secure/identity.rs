//! Long-term Ed25519 identities: a key pair (kept by its owner in a PKCS#8 file), its public key
//! and the fingerprint people compare and pin.

use std::fmt;
use std::str::FromStr;

use ring::digest;
use ring::rand::SecureRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair};

use crate::secure::SecureError;

/// Bytes of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Bytes of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// An Ed25519 key pair: the registry's, or a peer's.
pub struct Identity {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the private key, even in a debug print.
        write!(f, "Identity({})", self.public_key().fingerprint())
    }
}

impl Identity {
    /// A fresh key pair.
    pub fn generate(rng: &dyn SecureRandom) -> Result<Identity, SecureError> {
        let doc = Ed25519KeyPair::generate_pkcs8(rng)
            .map_err(|_| SecureError::Local("Ed25519 key generation"))?;
        Identity::from_pkcs8(doc.as_ref())
    }

    /// A fresh key pair from the operating system's random source.
    pub fn generate_from_os() -> Result<Identity, SecureError> {
        Identity::generate(&ring::rand::SystemRandom::new())
    }

    /// The key pair stored in `pkcs8` (as written by [`Identity::pkcs8`]).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Identity, SecureError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|_| SecureError::Local("not an Ed25519 PKCS#8 key"))?;
        Ok(Identity {
            pair,
            pkcs8: pkcs8.to_vec(),
        })
    }

    /// The PKCS#8 document to store (secret: the caller writes it with mode 0600).
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        let mut key = [0u8; PUBLIC_KEY_LEN];
        key.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(key)
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut sig = [0u8; SIGNATURE_LEN];
        sig.copy_from_slice(self.pair.sign(msg).as_ref());
        sig
    }
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; PUBLIC_KEY_LEN]);

impl PublicKey {
    /// Whether `sig` is this key's signature of `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ED25519, &self.0)
            .verify(msg, sig)
            .is_ok()
    }

    /// SHA-256 of the key: what people compare, pin and type.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut out = [0u8; 32];
        out.copy_from_slice(digest::digest(&digest::SHA256, &self.0).as_ref());
        Fingerprint(out)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

/// SHA-256 of a public key, written `sha256:` and 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The first 8 bytes: the key id a ticket names its signer by.
    pub fn key_id(&self) -> [u8; 8] {
        let mut id = [0u8; 8];
        id.copy_from_slice(&self.0[..8]);
        id
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Fingerprint {
    type Err = String;

    /// Accepts what `Display` writes; the `sha256:` prefix is optional, case is ignored.
    fn from_str(s: &str) -> Result<Fingerprint, String> {
        let hex = s.trim();
        let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
        let bad = || format!("not a key fingerprint (sha256: and 64 hex digits): {s:?}");
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Fingerprint(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    #[test]
    fn signatures_verify_only_with_the_signing_key_and_message() {
        let rng = SystemRandom::new();
        let a = Identity::generate(&rng).unwrap();
        let b = Identity::generate(&rng).unwrap();
        let sig = a.sign(b"hello");
        assert!(a.public_key().verify(b"hello", &sig));
        assert!(!a.public_key().verify(b"hellp", &sig));
        assert!(!b.public_key().verify(b"hello", &sig));
    }

    #[test]
    fn pkcs8_round_trips() {
        let rng = SystemRandom::new();
        let a = Identity::generate(&rng).unwrap();
        let back = Identity::from_pkcs8(a.pkcs8()).unwrap();
        assert_eq!(back.public_key(), a.public_key());
        assert!(Identity::from_pkcs8(b"garbage").is_err());
    }

    #[test]
    fn fingerprints_print_and_parse() {
        let rng = SystemRandom::new();
        let fp = Identity::generate(&rng).unwrap().public_key().fingerprint();
        let text = fp.to_string();
        assert!(text.starts_with("sha256:") && text.len() == 7 + 64);
        assert_eq!(text.parse::<Fingerprint>().unwrap(), fp);
        assert_eq!(text[7..].to_uppercase().parse::<Fingerprint>().unwrap(), fp);
        assert!("sha256:00".parse::<Fingerprint>().is_err());
        assert!("zz".repeat(32).parse::<Fingerprint>().is_err());
        assert!("é".repeat(32).parse::<Fingerprint>().is_err());
    }
}
