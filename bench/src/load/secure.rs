//! The load generators' side of secure links: every connection to the registry is a
//! [`SecureStream`] (anonymous client, whatever key the registry proves: the generator starts
//! the registry itself), and so is every peer link of the synthetic peers (encrypted,
//! anonymous, as `p2pchat` does until peers have identities), so load runs measure what users
//! run.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::BytesMut;
use p2pchat_engine::ConnId;
use p2pchat_protocol::secure::{Credential, Expect, OpenHalf, Sealer, SecureStream};
use p2pchat_protocol::{Frame, FrameDecoder, Role};

/// A client secure stream, trusting whichever key the registry proves.
pub fn client_stream() -> anyhow::Result<SecureStream> {
    SecureStream::initiator(Role::Client, Credential::Anonymous, Expect::Key(None))
        .context("starting a secure link")
}

/// The secure streams of the registry connections among many on one reactor.
#[derive(Default)]
pub struct SecureLinks {
    streams: HashMap<ConnId, SecureStream>,
}

impl SecureLinks {
    /// `conn` was dialed to the registry: it gets a stream; message 1 is returned for sending.
    pub fn dial(&mut self, conn: ConnId) -> anyhow::Result<BytesMut> {
        let mut stream = client_stream()?;
        let hello = stream.take_outgoing();
        self.streams.insert(conn, stream);
        Ok(hello)
    }

    /// `conn` was dialed to another peer: message 1 is returned for sending.
    pub fn dial_peer(&mut self, conn: ConnId) -> anyhow::Result<BytesMut> {
        let mut stream =
            SecureStream::initiator(Role::Peer, Credential::Anonymous, Expect::Anonymous)
                .context("starting a secure link")?;
        let hello = stream.take_outgoing();
        self.streams.insert(conn, stream);
        Ok(hello)
    }

    /// Another peer connected.
    pub fn accept(&mut self, conn: ConnId) {
        let stream = SecureStream::responder(Role::Peer, Credential::Anonymous, Expect::Anonymous);
        self.streams.insert(conn, stream);
    }

    /// Whether `conn` runs over a secure link.
    pub fn is_secure(&self, conn: ConnId) -> bool {
        self.streams.contains_key(&conn)
    }

    /// Seals frames for `conn` (held until the handshake is done); empty if nothing to send.
    pub fn seal(&mut self, conn: ConnId, plain: &[u8]) -> anyhow::Result<BytesMut> {
        let Some(s) = self.streams.get_mut(&conn) else {
            return Ok(BytesMut::new());
        };
        s.send(plain).context("secure link to the registry")?;
        Ok(s.take_outgoing())
    }

    /// Bytes read from `conn`: what to write back, and the opened plain frames.
    pub fn received(&mut self, conn: ConnId, bytes: &[u8]) -> anyhow::Result<(BytesMut, BytesMut)> {
        let Some(s) = self.streams.get_mut(&conn) else {
            return Ok((BytesMut::new(), BytesMut::from(bytes)));
        };
        let result = s.receive(bytes);
        let reply = s.take_outgoing();
        result.context("secure link to the registry")?;
        Ok((reply, s.take_plaintext()))
    }

    /// `conn` closed.
    pub fn closed(&mut self, conn: ConnId) {
        self.streams.remove(&conn);
    }
}

/// One blocking registry connection over a secure link, one frame at a time.
pub struct BlockingLink {
    sock: TcpStream,
    stream: SecureStream,
    decoder: FrameDecoder,
    buf: Vec<u8>,
}

impl BlockingLink {
    /// Opens the secure link on `sock`, sending `first` (plain frames) as soon as it can.
    pub fn open(mut sock: TcpStream, first: &[u8]) -> anyhow::Result<BlockingLink> {
        let stream = p2pchat_registry::secure::client_handshake(
            &mut sock,
            None,
            first,
            Duration::from_secs(10),
        )
        .context("secure handshake with the registry")?;
        Ok(BlockingLink {
            sock,
            stream,
            decoder: FrameDecoder::new(1 << 20),
            buf: vec![0; 16 * 1024],
        })
    }

    /// Sends one frame.
    pub fn send(&mut self, f: &Frame) -> anyhow::Result<()> {
        self.stream.send(&f.to_bytes())?;
        self.sock.write_all(&self.stream.take_outgoing())?;
        Ok(())
    }

    /// Splits into a writer and a reader (for a writer thread and a reader thread).
    pub fn split(self) -> anyhow::Result<(LinkWriter, LinkReader)> {
        let reader_sock = self.sock.try_clone()?;
        let (sealer, open) = self.stream.into_halves()?;
        Ok((
            LinkWriter {
                sock: self.sock,
                sealer,
            },
            LinkReader {
                sock: reader_sock,
                open,
                decoder: self.decoder,
                buf: self.buf,
            },
        ))
    }

    /// The next frame (blocking, under the socket's read timeout).
    pub fn recv(&mut self) -> anyhow::Result<Frame> {
        let stream = &mut self.stream;
        recv_frame(
            &mut self.sock,
            &mut self.buf,
            &mut self.decoder,
            |sealed, decoder| {
                stream.receive(sealed)?;
                decoder.push(&stream.take_plaintext());
                Ok(())
            },
        )
    }
}

/// The writing half of a [`BlockingLink`].
pub struct LinkWriter {
    sock: TcpStream,
    sealer: Sealer,
}

impl LinkWriter {
    /// Sends one frame.
    pub fn send(&mut self, f: &Frame) -> anyhow::Result<()> {
        let mut out = BytesMut::new();
        self.sealer.seal(&f.to_bytes(), &mut out)?;
        self.sock.write_all(&out)?;
        Ok(())
    }
}

/// The reading half of a [`BlockingLink`].
pub struct LinkReader {
    sock: TcpStream,
    open: OpenHalf,
    decoder: FrameDecoder,
    buf: Vec<u8>,
}

impl LinkReader {
    /// The next frame (blocking).
    pub fn recv(&mut self) -> anyhow::Result<Frame> {
        let open = &mut self.open;
        recv_frame(
            &mut self.sock,
            &mut self.buf,
            &mut self.decoder,
            |sealed, decoder| {
                decoder.push(&open.receive(sealed)?);
                Ok(())
            },
        )
    }
}

/// The next frame from a blocking socket: reads until `decoder` has a whole frame, passing
/// what arrives through `open` (which unseals it into the decoder).
fn recv_frame(
    sock: &mut TcpStream,
    buf: &mut [u8],
    decoder: &mut FrameDecoder,
    mut open: impl FnMut(&[u8], &mut FrameDecoder) -> anyhow::Result<()>,
) -> anyhow::Result<Frame> {
    loop {
        if let Some(f) = decoder.next_frame()? {
            return Ok(f);
        }
        // The handshake helper left a read timeout on the socket; blocking readers want none.
        sock.set_read_timeout(None)?;
        let n = sock.read(buf)?;
        if n == 0 {
            bail!("the registry closed the connection");
        }
        open(&buf[..n], decoder)?;
    }
}
