//! The registry's side of secure links (`docs/security.md`): its long-term key file, and the
//! per-connection [`SecureStream`]s the binary puts between the engine and the sans-IO
//! [`Registry`](crate::Registry), which keeps reading and writing plain frames (so tests, fuzz
//! targets and the simulator still drive it with plain frames).
//!
//! ```text
//!  engine bytes ──SecureConns::received──▶ plaintext ──Input::Received──▶ Registry
//!  Registry ──Output::Send──▶ SecureConns::seal ──▶ engine
//! ```
//! Also a blocking client handshake over any `Read + Write`, for tests and tools that talk to
//! the registry with a plain socket.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use p2pchat_protocol::secure::{
    Credential, Expect, Fingerprint, Identity, Remote, SecureError, SecureStream,
};
use p2pchat_protocol::Role;
use ring::rand::SystemRandom;

use crate::io::ConnId;

/// Where the key lives by default: beside the database, same name, extension `.key`.
pub fn key_path_for(db: &Path) -> PathBuf {
    let path = db.with_extension("key");
    if path == db {
        let mut name = db.as_os_str().to_owned();
        name.push(".key");
        return PathBuf::from(name);
    }
    path
}

/// Reads the registry's key from `path`, or creates it there (mode 0600, never overwriting a
/// file that appeared meanwhile). Returns the key and whether it was created. A key file that
/// others can read is refused, as ssh refuses one: the key is what makes the registry itself.
pub fn load_or_create_key(path: &Path) -> io::Result<(Identity, bool)> {
    match fs::read(path) {
        Ok(bytes) => {
            check_private(path)?;
            let id = Identity::from_pkcs8(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?;
            Ok((id, false))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let id = Identity::generate(&SystemRandom::new())
                .map_err(|e| io::Error::other(e.to_string()))?;
            write_private(path, id.pkcs8())?;
            Ok((id, true))
        }
        Err(e) => Err(e),
    }
}

#[cfg(unix)]
fn check_private(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "key file {} is accessible by others (mode {:o}): chmod 600 it",
                path.display(),
                mode & 0o777
            ),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> io::Result<()> {
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// What one read from a connection produced.
#[derive(Debug, Default)]
pub struct Received {
    /// Opened plaintext for the core (plain frames).
    pub plaintext: BytesMut,
    /// Bytes to write back at once (handshake messages, or a clear refusal).
    pub reply: BytesMut,
    /// Set when the link failed: write `reply`, then close the connection.
    pub error: Option<SecureError>,
}

/// The secure stream of every open connection.
pub struct SecureConns {
    identity: Arc<Identity>,
    streams: HashMap<ConnId, SecureStream>,
}

impl SecureConns {
    /// Connections will prove `identity`.
    pub fn new(identity: Arc<Identity>) -> SecureConns {
        SecureConns {
            identity,
            streams: HashMap::new(),
        }
    }

    /// A connection was accepted: it starts with the handshake.
    pub fn accepted(&mut self, conn: ConnId) {
        let stream = SecureStream::responder(
            Role::Client,
            Credential::Key(Arc::clone(&self.identity)),
            Expect::Anonymous,
        );
        self.streams.insert(conn, stream);
    }

    /// Bytes read from `conn`.
    pub fn received(&mut self, conn: ConnId, bytes: &[u8]) -> Received {
        let Some(stream) = self.streams.get_mut(&conn) else {
            return Received::default();
        };
        let error = stream.receive(bytes).err();
        Received {
            plaintext: stream.take_plaintext(),
            reply: stream.take_outgoing(),
            error,
        }
    }

    /// Seals the core's output for `conn` (kept until the handshake is done); empty when the
    /// connection is unknown or failed. Before the client's hello the core can only be
    /// refusing the connection (server full, no hello in time, shutting down), and that goes
    /// in the clear so the client can read why.
    pub fn seal(&mut self, conn: ConnId, plain: &[u8]) -> BytesMut {
        let Some(stream) = self.streams.get_mut(&conn) else {
            return BytesMut::new();
        };
        if stream.awaiting_hello() {
            return BytesMut::from(plain);
        }
        match stream.send(plain) {
            Ok(()) => stream.take_outgoing(),
            Err(_) => BytesMut::new(),
        }
    }

    /// A connection closed.
    pub fn closed(&mut self, conn: ConnId) {
        self.streams.remove(&conn);
    }

    /// Connections with a stream.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

/// Runs the client side of the handshake on a blocking socket (for tests and tools): sends
/// message 1 and `early` (sealed as soon as possible), reads until the link is open or fails.
/// Each read waits at most `timeout` (the library reads no clock, so this is per read).
pub fn client_handshake(
    sock: &mut (impl Read + Write + ReadTimeout),
    pin: Option<Fingerprint>,
    early: &[u8],
    timeout: Duration,
) -> Result<SecureStream, SecureError> {
    let mut stream =
        SecureStream::initiator(Role::Client, Credential::Anonymous, Expect::Key(pin))?;
    stream.send(early)?;
    let mut buf = [0u8; 4096];
    loop {
        let out = stream.take_outgoing();
        if !out.is_empty() && sock.write_all(&out).is_err() {
            return Err(SecureError::Unexpected("connection closed".into()));
        }
        if stream.is_open() {
            return Ok(stream);
        }
        sock.set_timeout(timeout);
        match sock.read(&mut buf) {
            Ok(0) => return Err(SecureError::Unexpected("connection closed".into())),
            Ok(n) => stream.receive(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(SecureError::Unexpected(format!("no handshake reply: {e}"))),
        }
    }
}

/// A socket whose read timeout can be set (what [`client_handshake`] needs besides I/O).
pub trait ReadTimeout {
    /// Sets the read timeout.
    fn set_timeout(&mut self, timeout: Duration);
}

impl ReadTimeout for std::net::TcpStream {
    fn set_timeout(&mut self, timeout: Duration) {
        let _ = self.set_read_timeout(Some(timeout));
    }
}

/// The key a remote proved, if it was a bare key.
pub fn remote_key_fingerprint(stream: &SecureStream) -> Option<Fingerprint> {
    match stream.remote() {
        Some(Remote::Key(key)) => Some(key.fingerprint()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_path_for(&dir.path().join("reg.db"));
        assert_eq!(path, dir.path().join("reg.key"));
        let (a, created) = load_or_create_key(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (b, created) = load_or_create_key(&path).unwrap();
        assert!(!created);
        assert_eq!(a.public_key(), b.public_key());
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reg.key");
        load_or_create_key(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create_key(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn a_db_named_key_gets_its_own_key_file() {
        assert_eq!(
            key_path_for(Path::new("/x/reg.key")),
            PathBuf::from("/x/reg.key.key")
        );
    }

    #[test]
    fn connections_carry_plain_frames_through_sealed_records() {
        let id = Arc::new(Identity::generate(&SystemRandom::new()).unwrap());
        let fp = id.public_key().fingerprint();
        let mut conns = SecureConns::new(id);
        let conn = ConnId(7);
        conns.accepted(conn);
        assert_eq!(&conns.seal(conn, b"server full")[..], b"server full");
        let mut client =
            SecureStream::initiator(Role::Client, Credential::Anonymous, Expect::Key(Some(fp)))
                .unwrap();
        client.send(b"plain hello frame").unwrap();
        let r = conns.received(conn, &client.take_outgoing());
        assert!(r.error.is_none() && r.plaintext.is_empty());
        client.receive(&r.reply).unwrap();
        assert!(client.is_open());
        let r = conns.received(conn, &client.take_outgoing());
        assert_eq!(&r.plaintext[..], b"plain hello frame");
        let sealed = conns.seal(conn, b"welcome");
        assert!(!sealed.windows(7).any(|w| w == b"welcome"));
        client.receive(&sealed).unwrap();
        assert_eq!(&client.take_plaintext()[..], b"welcome");
        conns.closed(conn);
        assert!(conns.is_empty());
        assert!(conns.seal(conn, b"late").is_empty());
    }
}
