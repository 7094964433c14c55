//! The handshake: three messages, a transcript hash over everything said, keys from HKDF over
//! the ephemeral X25519 secret and that hash, and identities proved by Ed25519 signatures over
//! the transcript hash (TLS 1.3 CertificateVerify style).
//!
//! Transcript (SHA-256, in order): [`PROTOCOL_NAME`]; message 1 as sent (length prefix
//! included); the responder's ephemeral key; the responder's auth block in the clear; the
//! initiator's auth block in the clear. An auth block is an identity (`00` none, `01` bare
//! key `[32]`, `02` ticket `bytes`) and, unless none, a signature `[64]` over
//! `64 × 0x20 | context | 00 | transcript hash after the identity`.
//!
//! Keys: `prk = HKDF-Extract(salt = SHA-256(PROTOCOL_NAME), X25519(e_I, e_R))`; handshake keys
//! `HKDF-Expand(prk, label | H1)` with `H1` the hash after `e_R`; traffic keys
//! `HKDF-Expand(prk, label | H3)` with `H3` the final hash. Every label and signing context
//! names its purpose and direction, so no key or signature can be reused for another.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use ring::digest;
use ring::hkdf;
use ring::rand::SecureRandom;

use crate::error::DecodeErrorKind;
use crate::frame::Frame;
use crate::msg::{kind, kind_name, Msg, Role};
use crate::secure::channel::{Opener, Sealer, KEY_LEN};
use crate::secure::identity::{Fingerprint, Identity, PublicKey, PUBLIC_KEY_LEN, SIGNATURE_LEN};
use crate::secure::record::RECORD_HEADER;
use crate::secure::ticket::Ticket;
use crate::secure::{record_kind, SecureError, VERSION};
use crate::status;
use crate::wire::{put_bytes, Reader};
use crate::DecodeError;

/// The cipher suite byte that starts the hello's ticket field: X25519, Ed25519,
/// ChaCha20-Poly1305, SHA-256.
pub const HELLO_SUITE: u8 = 1;

/// The first input of the transcript and, hashed, the HKDF salt.
const PROTOCOL_NAME: &[u8] = b"p2pchat-secure-v2_X25519_Ed25519_ChaChaPoly_SHA256";
const LABEL_HS_I2R: &[u8] = b"p2pchat v2 handshake key initiator to responder";
const LABEL_HS_R2I: &[u8] = b"p2pchat v2 handshake key responder to initiator";
const LABEL_APP_I2R: &[u8] = b"p2pchat v2 traffic key initiator to responder";
const LABEL_APP_R2I: &[u8] = b"p2pchat v2 traffic key responder to initiator";
const CONTEXT_RESPONDER: &[u8] = b"p2pchat v2 handshake, responder signature";
const CONTEXT_INITIATOR: &[u8] = b"p2pchat v2 handshake, initiator signature";

const X25519_LEN: usize = 32;

/// What this side proves about itself.
#[derive(Debug, Clone)]
pub enum Credential {
    /// Nothing (a client before login).
    Anonymous,
    /// A bare long-term key (the registry).
    Key(Arc<Identity>),
    /// A registry-signed ticket for the identity's key (a logged-in peer).
    Ticket {
        /// The key the ticket names.
        identity: Arc<Identity>,
        /// The signed ticket bytes as the registry issued them.
        ticket: Vec<u8>,
    },
}

impl Credential {
    fn identity(&self) -> Option<&Identity> {
        match self {
            Credential::Anonymous => None,
            Credential::Key(id) | Credential::Ticket { identity: id, .. } => Some(id),
        }
    }
}

/// What this side requires the other side to prove.
#[derive(Debug, Clone)]
pub enum Expect {
    /// Nothing: the other side must stay anonymous (the registry accepting clients).
    Anonymous,
    /// A bare key; if given, exactly the one with this fingerprint (a pinned registry),
    /// checked before this side says or sends anything more. Without a pin, the caller pins
    /// [`Remote::Key`] after the handshake (trust on first use).
    Key(Option<Fingerprint>),
    /// A ticket signed by `registry`, valid at `now` (Unix seconds).
    Ticket {
        /// The registry key tickets must be signed by.
        registry: PublicKey,
        /// The checker's clock, Unix seconds.
        now: u64,
    },
}

/// Who the other side proved to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// Nobody in particular.
    Anonymous,
    /// The holder of this key.
    Key(PublicKey),
    /// The user this checked ticket names (and the holder of its key).
    User(Ticket),
}

/// Keys both sides derive.
pub(crate) struct Keys {
    pub(crate) i2r: [u8; KEY_LEN],
    pub(crate) r2i: [u8; KEY_LEN],
    pub(crate) session: [u8; 32],
}

struct Transcript(digest::Context);

impl Transcript {
    fn new() -> Transcript {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(PROTOCOL_NAME);
        Transcript(ctx)
    }

    fn add(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn hash(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.clone().finish().as_ref());
        out
    }
}

struct KeyLen;

impl hkdf::KeyType for KeyLen {
    fn len(&self) -> usize {
        KEY_LEN
    }
}

fn extract(shared: &[u8]) -> hkdf::Prk {
    let salt = digest::digest(&digest::SHA256, PROTOCOL_NAME);
    hkdf::Salt::new(hkdf::HKDF_SHA256, salt.as_ref()).extract(shared)
}

fn expand(prk: &hkdf::Prk, label: &[u8], hash: &[u8; 32]) -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    // 32 bytes is far below HKDF-SHA256's 255 × 32 limit, so neither call can fail.
    prk.expand(&[label, hash], KeyLen)
        .expect("HKDF length")
        .fill(&mut key)
        .expect("HKDF fill");
    key
}

fn agree(secret: EphemeralPrivateKey, theirs: &[u8]) -> Result<hkdf::Prk, SecureError> {
    agreement::agree_ephemeral(secret, &UnparsedPublicKey::new(&X25519, theirs), extract)
        .map_err(|_| SecureError::KeyAgreement)
}

fn signed_content(context: &[u8], hash: &[u8; 32]) -> Vec<u8> {
    let mut msg = vec![0x20; 64];
    msg.extend_from_slice(context);
    msg.push(0);
    msg.extend_from_slice(hash);
    msg
}

/// Builds this side's auth block and adds it to the transcript.
fn auth_block(cred: &Credential, transcript: &mut Transcript, context: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match cred {
        Credential::Anonymous => out.push(0),
        Credential::Key(id) => {
            out.push(1);
            out.extend_from_slice(&id.public_key().0);
        }
        Credential::Ticket { ticket, .. } => {
            out.push(2);
            put_bytes(&mut out, ticket);
        }
    }
    transcript.add(&out);
    if let Some(id) = cred.identity() {
        let sig = id.sign(&signed_content(context, &transcript.hash()));
        transcript.add(&sig);
        out.extend_from_slice(&sig);
    }
    out
}

/// Parses the other side's auth block, checks its signature over the transcript and what it
/// proves against `expect`, and adds it to the transcript.
fn check_auth(
    block: &[u8],
    expect: &Expect,
    transcript: &mut Transcript,
    context: &[u8],
) -> Result<Remote, SecureError> {
    let mut r = Reader::new(block);
    let at = r.offset();
    let (key, ticket) = match r.u8()? {
        0 => (None, None),
        1 => (Some(PublicKey(r.array::<PUBLIC_KEY_LEN>()?)), None),
        2 => {
            let bytes = r.bytes()?;
            let (ticket, _) = Ticket::decode(&bytes)?;
            (Some(ticket.key), Some(bytes))
        }
        _ => {
            return Err(DecodeError::new(at, DecodeErrorKind::InvalidValue("identity kind")).into())
        }
    };
    transcript.add(&block[..r.offset()]);
    if let Some(key) = key {
        let sig = r.take(SIGNATURE_LEN)?;
        r.finish()?;
        if !key.verify(&signed_content(context, &transcript.hash()), sig) {
            return Err(SecureError::BadSignature);
        }
        transcript.add(sig);
    } else {
        r.finish()?;
    }
    match (expect, key, ticket) {
        (Expect::Anonymous, None, _) => Ok(Remote::Anonymous),
        (Expect::Anonymous, Some(_), _) => Err(SecureError::WrongIdentity(
            "proved an identity where none is expected",
        )),
        (Expect::Key(pin), Some(key), None) => match pin {
            Some(pin) if *pin != key.fingerprint() => Err(SecureError::KeyMismatch {
                expected: pin.to_string(),
                got: key.fingerprint().to_string(),
            }),
            _ => Ok(Remote::Key(key)),
        },
        (Expect::Key(_), _, _) => Err(SecureError::WrongIdentity("proved no registry key")),
        (Expect::Ticket { registry, now }, Some(_), Some(bytes)) => {
            Ok(Remote::User(Ticket::verify(&bytes, registry, *now)?))
        }
        (Expect::Ticket { .. }, _, _) => Err(SecureError::WrongIdentity(
            "has no identity ticket (not logged in to this registry?)",
        )),
    }
}

fn traffic_keys(prk: &hkdf::Prk, transcript: &Transcript) -> Keys {
    let h3 = transcript.hash();
    Keys {
        i2r: expand(prk, LABEL_APP_I2R, &h3),
        r2i: expand(prk, LABEL_APP_R2I, &h3),
        session: h3,
    }
}

/// The initiator after sending message 1.
pub(crate) struct InitiatorWait {
    secret: EphemeralPrivateKey,
    transcript: Transcript,
    cred: Credential,
    expect: Expect,
}

/// The clear `error` frame a responder sends for a stream that fails before its hello was
/// handled (a length no record may have).
pub(crate) fn refuse_stream(out: &mut BytesMut, err: &SecureError) {
    if let SecureError::BadLength { len, max } = err {
        refuse(
            out,
            status::TOO_LARGE,
            format!("frame length {len} exceeds the maximum {max}"),
        );
    }
}

/// Starts a handshake: message 1 and the state that waits for message 2.
pub(crate) fn initiate(
    role: Role,
    cred: Credential,
    expect: Expect,
    rng: &dyn SecureRandom,
) -> Result<(InitiatorWait, Bytes), SecureError> {
    let secret = EphemeralPrivateKey::generate(&X25519, rng)
        .map_err(|_| SecureError::Local("X25519 key generation"))?;
    let public = secret
        .compute_public_key()
        .map_err(|_| SecureError::Local("X25519 public key"))?;
    let mut ticket = Vec::with_capacity(1 + X25519_LEN);
    ticket.push(HELLO_SUITE);
    ticket.extend_from_slice(public.as_ref());
    let msg1 = Frame::event(Msg::Hello {
        version: VERSION,
        role,
        // Who we are travels encrypted in message 3, not in the clear here.
        name: String::new(),
        ticket,
    })
    .to_bytes();
    let mut transcript = Transcript::new();
    transcript.add(&msg1);
    Ok((
        InitiatorWait {
            secret,
            transcript,
            cred,
            expect,
        },
        msg1,
    ))
}

impl InitiatorWait {
    /// Handles message 2 (or a clear refusal); returns message 3, the keys and the responder.
    pub(crate) fn on_reply(self, record: &[u8]) -> Result<(BytesMut, Keys, Remote), SecureError> {
        let InitiatorWait {
            secret,
            mut transcript,
            cred,
            expect,
        } = self;
        match record[4] {
            record_kind::HANDSHAKE_REPLY => {}
            kind::ERROR => {
                return Err(match Frame::decode(&record[4..])?.msg {
                    Msg::Error { code, message } => SecureError::Refused { code, message },
                    _ => SecureError::Unexpected("error frame".into()),
                })
            }
            other => return Err(SecureError::Unexpected(describe_kind(other))),
        }
        let head = RECORD_HEADER + X25519_LEN;
        if record.len() < head {
            return Err(DecodeError::new(record.len() - 4, DecodeErrorKind::Truncated).into());
        }
        let e_r = &record[RECORD_HEADER..head];
        let prk = agree(secret, e_r)?;
        transcript.add(e_r);
        let h1 = transcript.hash();
        let block = Opener::new(&expand(&prk, LABEL_HS_R2I, &h1))
            .open_as(record, head)
            .map_err(|_| SecureError::HandshakeOpen)?;
        let remote = check_auth(&block, &expect, &mut transcript, CONTEXT_RESPONDER)?;
        let mine = auth_block(&cred, &mut transcript, CONTEXT_INITIATOR);
        let mut msg3 = BytesMut::new();
        Sealer::new(&expand(&prk, LABEL_HS_I2R, &h1)).seal_as(
            record_kind::HANDSHAKE_FINISH,
            &[],
            &mine,
            &mut msg3,
        )?;
        Ok((msg3, traffic_keys(&prk, &transcript), remote))
    }
}

fn describe_kind(k: u8) -> String {
    match k {
        record_kind::HANDSHAKE_REPLY => "handshake reply".into(),
        record_kind::HANDSHAKE_FINISH => "handshake finish".into(),
        record_kind::SEALED => "sealed record".into(),
        _ => format!("{} (0x{k:02x})", kind_name(k)),
    }
}

/// The responder before message 1.
pub(crate) struct ResponderStart {
    pub(crate) role: Role,
    pub(crate) cred: Credential,
    pub(crate) expect: Expect,
}

/// The responder after sending message 2.
pub(crate) struct ResponderWait {
    prk: hkdf::Prk,
    hs_i2r: [u8; KEY_LEN],
    transcript: Transcript,
    expect: Expect,
}

fn refuse(out: &mut BytesMut, code: u16, message: String) {
    Frame::event(Msg::Error { code, message }).encode(out);
}

impl ResponderStart {
    /// Handles message 1. On success message 2 is appended to `out`; on a refusal a clear
    /// `error` frame is, for the caller to flush before closing.
    pub(crate) fn on_hello(
        self,
        record: &[u8],
        out: &mut BytesMut,
        rng: &dyn SecureRandom,
    ) -> Result<ResponderWait, SecureError> {
        if record[4] != kind::HELLO {
            let what = describe_kind(record[4]);
            refuse(
                out,
                status::UNEXPECTED,
                format!("expected hello, got {what}"),
            );
            return Err(SecureError::Unexpected(what));
        }
        let hello = match Frame::decode(&record[4..]) {
            Ok(frame) => frame.msg,
            Err(e) => {
                refuse(out, status::MALFORMED, format!("malformed hello: {e}"));
                return Err(e.into());
            }
        };
        let Msg::Hello {
            version,
            ticket,
            role,
            ..
        } = hello
        else {
            unreachable!("kind checked above");
        };
        if version != VERSION {
            refuse(
                out,
                status::BAD_VERSION,
                format!(
                    "unsupported protocol version {version}; this side speaks {VERSION} \
                     (encrypted links): upgrade the older side"
                ),
            );
            return Err(SecureError::BadVersion {
                theirs: version,
                ours: VERSION,
            });
        }
        if role != self.role {
            let what = |r: Role| match r {
                Role::Client => "client",
                Role::Peer => "peer",
            };
            let text = format!(
                "expected a {} hello, got a {} hello",
                what(self.role),
                what(role)
            );
            refuse(out, status::UNEXPECTED, text.clone());
            return Err(SecureError::Unexpected(text));
        }
        if ticket.len() != 1 + X25519_LEN || ticket[0] != HELLO_SUITE {
            refuse(
                out,
                status::MALFORMED,
                "hello without a supported key share".into(),
            );
            return Err(SecureError::Unexpected("hello without a key share".into()));
        }
        let secret = EphemeralPrivateKey::generate(&X25519, rng)
            .map_err(|_| SecureError::Local("X25519 key generation"))?;
        let public = secret
            .compute_public_key()
            .map_err(|_| SecureError::Local("X25519 public key"))?;
        let prk = agree(secret, &ticket[1..])?;
        let mut transcript = Transcript::new();
        transcript.add(record);
        transcript.add(public.as_ref());
        let h1 = transcript.hash();
        let block = auth_block(&self.cred, &mut transcript, CONTEXT_RESPONDER);
        Sealer::new(&expand(&prk, LABEL_HS_R2I, &h1)).seal_as(
            record_kind::HANDSHAKE_REPLY,
            public.as_ref(),
            &block,
            out,
        )?;
        Ok(ResponderWait {
            hs_i2r: expand(&prk, LABEL_HS_I2R, &h1),
            prk,
            transcript,
            expect: self.expect,
        })
    }
}

impl ResponderWait {
    /// Handles message 3: the keys and the initiator.
    pub(crate) fn on_finish(self, record: &[u8]) -> Result<(Keys, Remote), SecureError> {
        let ResponderWait {
            prk,
            hs_i2r,
            mut transcript,
            expect,
        } = self;
        if record[4] != record_kind::HANDSHAKE_FINISH {
            return Err(SecureError::Unexpected(describe_kind(record[4])));
        }
        let block = Opener::new(&hs_i2r)
            .open_as(record, RECORD_HEADER)
            .map_err(|_| SecureError::HandshakeOpen)?;
        let remote = check_auth(&block, &expect, &mut transcript, CONTEXT_INITIATOR)?;
        Ok((traffic_keys(&prk, &transcript), remote))
    }
}
