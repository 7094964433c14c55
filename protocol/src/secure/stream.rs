//! [`SecureStream`]: the handshake and the sealed channel behind one sans-IO object that an I/O
//! shell puts between a socket and a core that speaks plain frames.
//!
//! ```text
//!  socket ──receive──▶ SecureStream ──take_plaintext──▶ core (FrameDecoder, plain frames)
//!  core ──send──▶ SecureStream ──take_outgoing──▶ socket
//! ```
//! After any error the stream is failed for good: every later call repeats the error, and the
//! caller flushes `take_outgoing` (a clear `error` frame when the responder refused a hello)
//! and closes the link with the error's text as the reason.

use bytes::BytesMut;
use ring::rand::SystemRandom;

use crate::msg::Role;
use crate::secure::channel::{Opener, Sealer};
use crate::secure::handshake::{self, InitiatorWait, Keys, ResponderStart, ResponderWait};
use crate::secure::{Credential, Expect, OpenLink, RecordReader, Remote, SecureError};

// The handshake states are boxed: a link spends its life `Open` (two raw keys and counters),
// and an unboxed handshake variant (keys, transcript) set the size of every open link's state,
// one per connection at the registry.
enum State {
    Initiating(Box<InitiatorWait>),
    AwaitHello(Box<ResponderStart>),
    AwaitFinish(Box<ResponderWait>),
    Open { sealer: Sealer, opener: Opener },
    Failed(SecureError),
}

/// One end of a secure link.
pub struct SecureStream {
    state: State,
    reader: RecordReader,
    outgoing: BytesMut,
    plaintext: BytesMut,
    /// What the caller sent before the keys existed; sealed as soon as they do.
    early: BytesMut,
    remote: Option<Remote>,
    session: Option<[u8; 32]>,
    rng: SystemRandom,
}

impl std::fmt::Debug for SecureStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Initiating(_) => "initiating",
            State::AwaitHello(_) => "awaiting hello",
            State::AwaitFinish(_) => "awaiting finish",
            State::Open { .. } => "open",
            State::Failed(_) => "failed",
        };
        f.debug_struct("SecureStream")
            .field("state", &state)
            .field("remote", &self.remote)
            .finish()
    }
}

impl SecureStream {
    fn with_state(state: State, rng: SystemRandom) -> SecureStream {
        SecureStream {
            state,
            reader: RecordReader::new(),
            outgoing: BytesMut::new(),
            plaintext: BytesMut::new(),
            early: BytesMut::new(),
            remote: None,
            session: None,
            rng,
        }
    }

    /// The side that connected: message 1 is queued in `take_outgoing` at once.
    pub fn initiator(
        role: Role,
        cred: Credential,
        expect: Expect,
    ) -> Result<SecureStream, SecureError> {
        let rng = SystemRandom::new();
        let (wait, msg1) = handshake::initiate(role, cred, expect, &rng)?;
        let mut s = SecureStream::with_state(State::Initiating(Box::new(wait)), rng);
        s.outgoing.extend_from_slice(&msg1);
        Ok(s)
    }

    /// The side that accepted; its hello must have role `role`.
    pub fn responder(role: Role, cred: Credential, expect: Expect) -> SecureStream {
        SecureStream::with_state(
            State::AwaitHello(Box::new(ResponderStart { role, cred, expect })),
            SystemRandom::new(),
        )
    }

    /// Feeds bytes read from the socket. Handshake replies and opened plaintext become
    /// available from `take_outgoing` and `take_plaintext`.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<(), SecureError> {
        if let State::Failed(err) = &self.state {
            return Err(err.clone());
        }
        self.reader.push(bytes);
        loop {
            let step = match self.reader.next_record() {
                Ok(Some(record)) => self.on_record(&record),
                Ok(None) => return Ok(()),
                Err(err) => {
                    if matches!(self.state, State::AwaitHello(_)) {
                        handshake::refuse_stream(&mut self.outgoing, &err);
                    }
                    Err(err)
                }
            };
            if let Err(err) = step {
                self.state = State::Failed(err.clone());
                self.early = BytesMut::new();
                return Err(err);
            }
        }
    }

    fn on_record(&mut self, record: &[u8]) -> Result<(), SecureError> {
        let state = std::mem::replace(
            &mut self.state,
            State::Failed(SecureError::Local("interrupted")),
        );
        match state {
            State::Initiating(wait) => {
                let (msg3, keys, remote) = wait.on_reply(record)?;
                self.outgoing.extend_from_slice(&msg3);
                self.open(keys, remote, true)
            }
            State::AwaitHello(start) => {
                let wait = start.on_hello(record, &mut self.outgoing, &self.rng)?;
                self.state = State::AwaitFinish(Box::new(wait));
                Ok(())
            }
            State::AwaitFinish(wait) => {
                let (keys, remote) = wait.on_finish(record)?;
                self.open(keys, remote, false)
            }
            State::Open { sealer, mut opener } => {
                let opened = opener.open_sealed_into(record, &mut self.plaintext);
                self.state = State::Open { sealer, opener };
                opened
            }
            State::Failed(err) => Err(err),
        }
    }

    fn open(&mut self, keys: Keys, remote: Remote, initiator: bool) -> Result<(), SecureError> {
        let (send, recv) = if initiator {
            (&keys.i2r, &keys.r2i)
        } else {
            (&keys.r2i, &keys.i2r)
        };
        let mut sealer = Sealer::new(send);
        let opener = Opener::new(recv);
        let early = std::mem::take(&mut self.early);
        sealer.seal(&early, &mut self.outgoing)?;
        self.state = State::Open { sealer, opener };
        self.remote = Some(remote);
        self.session = Some(keys.session);
        Ok(())
    }

    /// Seals plaintext for the other side (kept until the handshake is done if need be).
    pub fn send(&mut self, plain: &[u8]) -> Result<(), SecureError> {
        match &mut self.state {
            State::Open { sealer, .. } => sealer.seal(plain, &mut self.outgoing),
            State::Failed(err) => Err(err.clone()),
            _ => {
                self.early.extend_from_slice(plain);
                Ok(())
            }
        }
    }

    /// Bytes to write to the socket (empty if none).
    pub fn take_outgoing(&mut self) -> BytesMut {
        // The whole buffer, not `split()`: that would leave the allocation's unused capacity
        // here, kept for every idle link.
        std::mem::take(&mut self.outgoing)
    }

    /// Plaintext opened since the last call (empty if none): the plain frame stream.
    pub fn take_plaintext(&mut self) -> BytesMut {
        std::mem::take(&mut self.plaintext)
    }

    /// Whether this responder has not yet answered a hello: nothing was said on the link, so
    /// what its owner sends now (a refusal: server full, no hello in time) may go in the
    /// clear, where the other side can read it.
    pub fn awaiting_hello(&self) -> bool {
        matches!(self.state, State::AwaitHello(_))
    }

    /// Whether the handshake is done and the keys are in use.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open { .. })
    }

    /// The error that ended the stream, if one did.
    pub fn error(&self) -> Option<&SecureError> {
        match &self.state {
            State::Failed(err) => Some(err),
            _ => None,
        }
    }

    /// Who the other side proved to be, once the handshake is done.
    pub fn remote(&self) -> Option<&Remote> {
        self.remote.as_ref()
    }

    /// The final transcript hash: the same on both ends, unique to this link (for binding
    /// other proofs to the link).
    pub fn session_hash(&self) -> Option<[u8; 32]> {
        self.session
    }

    /// Whether part of a record is buffered (a started frame that has not completed).
    pub fn has_partial(&self) -> bool {
        self.reader.has_partial()
    }

    /// What an open stream keeps for the rest of the link's life (see [`OpenLink`]): its keys,
    /// counters and the start of a record not yet read whole. Plaintext and outgoing bytes not
    /// yet taken are lost (take them first); the remote's identity and the session hash are
    /// dropped (read them first if they are needed).
    pub fn into_link(self) -> Result<OpenLink, SecureError> {
        match self.state {
            State::Open { sealer, opener } => {
                Ok(OpenLink::new(sealer, opener, self.reader.into_buffered()))
            }
            State::Failed(err) => Err(err),
            _ => Err(SecureError::Unexpected(
                "link taken before the handshake".into(),
            )),
        }
    }

    /// The two directions of an open stream, for a writer and a reader on different threads.
    /// Plaintext not yet taken is lost; take it first.
    pub fn into_halves(self) -> Result<(Sealer, OpenHalf), SecureError> {
        match self.state {
            State::Open { sealer, opener } => Ok((
                sealer,
                OpenHalf {
                    reader: self.reader,
                    opener,
                },
            )),
            State::Failed(err) => Err(err),
            _ => Err(SecureError::Unexpected("split before the handshake".into())),
        }
    }
}

/// The receiving direction of an open stream (see [`SecureStream::into_halves`]).
#[derive(Debug)]
pub struct OpenHalf {
    reader: RecordReader,
    opener: Opener,
}

impl OpenHalf {
    /// Opens what `bytes` completes; the plaintext, possibly empty. Errors are final.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<BytesMut, SecureError> {
        self.reader.push(bytes);
        let mut plain = BytesMut::new();
        while let Some(record) = self.reader.next_record()? {
            self.opener.open_sealed_into(&record, &mut plain)?;
        }
        Ok(plain)
    }
}

#[cfg(test)]
mod tests;
