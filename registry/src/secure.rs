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

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use p2pchat_protocol::secure::{
    Credential, Expect, Fingerprint, Identity, OpenLink, Remote, SecureError, SecureStream,
};
use p2pchat_protocol::Role;
use ring::rand::SystemRandom;

pub use p2pchat_engine::ConnId;

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

/// A connection's secure state: the whole stream while the handshake runs (boxed: a few
/// hundred bytes for the few connections in it), then only what sealing and opening need.
enum Link {
    Handshake(Box<SecureStream>),
    Open(OpenLink),
}

/// One connection's entry: its id (the slot is reused by later connections) and its link.
struct Slot {
    conn: ConnId,
    link: Link,
}

/// The secure link of every open connection, in a table indexed by the engine's slab index:
/// the engine reuses the lowest free index, so the table is as long as the most connections
/// open at once, and it costs one ~120-byte slot per connection with no hash table around it
/// (a `HashMap<_, SecureStream>` cost ~650 bytes per connection at 10,000; docs/performance.md).
pub struct SecureConns {
    identity: Arc<Identity>,
    slots: Vec<Option<Slot>>,
    live: usize,
}

impl SecureConns {
    /// Connections will prove `identity`.
    pub fn new(identity: Arc<Identity>) -> SecureConns {
        SecureConns {
            identity,
            slots: Vec::new(),
            live: 0,
        }
    }

    /// The table entry of `conn`, if it holds `conn` itself and not an earlier or later
    /// connection that had the same slab index (the one check that keeps a late reply away
    /// from a reused slot). A function of the table alone, so callers can still count.
    fn entry(slots: &mut [Option<Slot>], conn: ConnId) -> Option<&mut Option<Slot>> {
        slots
            .get_mut(conn.index() as usize)
            .filter(|e| e.as_ref().is_some_and(|s| s.conn == conn))
    }

    /// A connection was accepted: it starts with the handshake.
    pub fn accepted(&mut self, conn: ConnId) {
        let stream = SecureStream::responder(
            Role::Client,
            Credential::Key(Arc::clone(&self.identity)),
            Expect::Anonymous,
        );
        let at = conn.index() as usize;
        if at >= self.slots.len() {
            // Doubling while small, then by an eighth (`dense::growth`): within 12.5 % of the
            // peak number of connections once the table is a mapping of its own.
            let more = (at + 1 - self.slots.len())
                .max(crate::dense::growth(self.slots.len(), Self::slot_size()))
                .max(64);
            self.slots.reserve_exact(more);
            self.slots.resize_with(at + 1, || None);
        }
        let old = self.slots[at].replace(Slot {
            conn,
            link: Link::Handshake(Box::new(stream)),
        });
        if old.is_none() {
            self.live += 1;
        }
    }

    /// Bytes read from `conn`: opened plaintext (plain frames for the core) is appended to
    /// `plain`, and bytes to write back at once (handshake messages, a clear refusal) to
    /// `reply`. An error means the link failed for good: write `reply`, then close the
    /// connection; later calls for it do nothing.
    pub fn received(
        &mut self,
        conn: ConnId,
        bytes: &[u8],
        plain: &mut BytesMut,
        reply: &mut BytesMut,
    ) -> Result<(), SecureError> {
        let Some(entry) = Self::entry(&mut self.slots, conn) else {
            return Ok(());
        };
        if let Some(Slot {
            link: Link::Open(link),
            ..
        }) = entry
        {
            let result = link.receive(bytes, plain);
            if result.is_err() {
                *entry = None;
                self.live -= 1;
            }
            return result;
        }
        // Still in the handshake: the entry is taken out, and put back as what it became.
        let Some(Slot {
            link: Link::Handshake(mut stream),
            ..
        }) = entry.take()
        else {
            unreachable!("an open link returned above")
        };
        let result = stream.receive(bytes);
        plain.extend_from_slice(&stream.take_plaintext());
        reply.extend_from_slice(&stream.take_outgoing());
        let link = match result {
            // Keep only what sealing and opening need; the handshake state goes.
            Ok(()) if stream.is_open() => stream.into_link().map(Link::Open),
            Ok(()) => Ok(Link::Handshake(stream)),
            Err(err) => Err(err),
        };
        match link {
            Ok(link) => {
                *entry = Some(Slot { conn, link });
                Ok(())
            }
            Err(err) => {
                self.live -= 1;
                Err(err)
            }
        }
    }

    /// Seals the core's output for `conn` and appends it to `out` (kept until the handshake
    /// is done); `false` when the connection is unknown or its link failed. Before the
    /// client's hello the core can only be refusing the connection (server full, no hello in
    /// time, shutting down), and that goes in the clear so the client can read why.
    pub fn seal(&mut self, conn: ConnId, plain: &[u8], out: &mut BytesMut) -> bool {
        let Some(Some(slot)) = Self::entry(&mut self.slots, conn) else {
            return false;
        };
        let sealed = match &mut slot.link {
            Link::Open(link) => link.seal(plain, out),
            Link::Handshake(stream) if stream.awaiting_hello() => {
                out.extend_from_slice(plain);
                Ok(())
            }
            Link::Handshake(stream) => stream.send(plain).map(|()| {
                out.extend_from_slice(&stream.take_outgoing());
            }),
        };
        if sealed.is_err() {
            self.remove(conn);
        }
        sealed.is_ok()
    }

    /// A connection closed.
    pub fn closed(&mut self, conn: ConnId) {
        self.remove(conn);
    }

    fn remove(&mut self, conn: ConnId) {
        if let Some(entry) = Self::entry(&mut self.slots, conn) {
            *entry = None;
            self.live -= 1;
        }
    }

    /// Connections with a link.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Entries the table has room for (its length grows to the most connections open at once).
    pub fn capacity(&self) -> usize {
        self.slots.capacity()
    }

    /// Bytes of one entry of the table (what each connection costs besides the handshake).
    pub fn slot_size() -> usize {
        std::mem::size_of::<Option<Slot>>()
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

    /// A client handshake with `conns` on `conn`, its first frame sent early; returns the
    /// open client stream and what the registry opened.
    fn handshake(conns: &mut SecureConns, conn: ConnId, fp: Fingerprint) -> SecureStream {
        let mut client =
            SecureStream::initiator(Role::Client, Credential::Anonymous, Expect::Key(Some(fp)))
                .unwrap();
        client.send(b"plain hello frame").unwrap();
        let (mut plain, mut reply) = (BytesMut::new(), BytesMut::new());
        conns
            .received(conn, &client.take_outgoing(), &mut plain, &mut reply)
            .unwrap();
        assert!(plain.is_empty());
        client.receive(&reply).unwrap();
        assert!(client.is_open());
        // The finish and the early frame, cut in two reads.
        let out = client.take_outgoing();
        let (mut plain, mut reply) = (BytesMut::new(), BytesMut::new());
        conns
            .received(conn, &out[..out.len() - 3], &mut plain, &mut reply)
            .unwrap();
        conns
            .received(conn, &out[out.len() - 3..], &mut plain, &mut reply)
            .unwrap();
        assert_eq!(&plain[..], b"plain hello frame");
        assert!(reply.is_empty());
        client
    }

    fn registry_key() -> (Arc<Identity>, Fingerprint) {
        let id = Arc::new(Identity::generate(&SystemRandom::new()).unwrap());
        let fp = id.public_key().fingerprint();
        (id, fp)
    }

    #[test]
    fn connections_carry_plain_frames_through_sealed_records() {
        let (id, fp) = registry_key();
        let mut conns = SecureConns::new(id);
        let conn = ConnId::from_parts(5, 1);
        conns.accepted(conn);
        let mut out = BytesMut::new();
        assert!(conns.seal(conn, b"server full", &mut out));
        assert_eq!(
            &out[..],
            b"server full",
            "a refusal before the hello is clear"
        );
        let mut client = handshake(&mut conns, conn, fp);
        let mut sealed = BytesMut::new();
        assert!(conns.seal(conn, b"welcome", &mut sealed));
        assert!(conns.seal(conn, b" back", &mut sealed));
        assert!(!sealed.windows(7).any(|w| w == b"welcome"));
        client.receive(&sealed).unwrap();
        assert_eq!(&client.take_plaintext()[..], b"welcome back");
        conns.closed(conn);
        assert!(conns.is_empty());
        assert!(!conns.seal(conn, b"late", &mut BytesMut::new()));
    }

    #[test]
    fn a_reused_slot_never_serves_the_connection_that_had_it_before() {
        let (id, fp) = registry_key();
        let mut conns = SecureConns::new(id);
        let old = ConnId::from_parts(3, 1);
        let new = ConnId::from_parts(3, 2);
        conns.accepted(old);
        let _ = handshake(&mut conns, old, fp);
        conns.closed(old);
        conns.accepted(new);
        // A late output or read for the old id must not advance the new link's counters.
        let mut out = BytesMut::new();
        assert!(!conns.seal(old, b"late reply", &mut out));
        assert!(out.is_empty());
        let (mut plain, mut reply) = (BytesMut::new(), BytesMut::new());
        conns
            .received(old, b"junk", &mut plain, &mut reply)
            .unwrap();
        assert!(plain.is_empty() && reply.is_empty());
        conns.closed(old);
        assert_eq!(conns.len(), 1);
        let mut client = handshake(&mut conns, new, fp);
        assert!(conns.seal(new, b"for the new one", &mut out));
        client.receive(&out).unwrap();
        assert_eq!(&client.take_plaintext()[..], b"for the new one");
    }

    #[test]
    fn a_failed_link_is_dropped_and_says_nothing_more() {
        let (id, fp) = registry_key();
        let mut conns = SecureConns::new(id);
        let conn = ConnId::from_parts(0, 1);
        conns.accepted(conn);
        let _client = handshake(&mut conns, conn, fp);
        let (mut plain, mut reply) = (BytesMut::new(), BytesMut::new());
        let bogus = [
            0, 0, 0, 20, 0x52, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
        ];
        assert_eq!(
            conns.received(conn, &bogus, &mut plain, &mut reply),
            Err(SecureError::Open)
        );
        assert!(plain.is_empty());
        assert!(conns.is_empty());
        assert!(!conns.seal(conn, b"after the failure", &mut BytesMut::new()));
        // A hello that is not one fails in the handshake, with a clear refusal to send.
        let conn = ConnId::from_parts(1, 1);
        conns.accepted(conn);
        let (mut plain, mut reply) = (BytesMut::new(), BytesMut::new());
        assert!(conns
            .received(conn, b"GET / HTTP/1.1\r\n\r\n", &mut plain, &mut reply)
            .is_err());
        assert!(!reply.is_empty() && plain.is_empty());
        assert!(conns.is_empty());
    }

    #[test]
    fn many_connections_keep_their_own_links() {
        let (id, fp) = registry_key();
        let mut conns = SecureConns::new(id);
        let ids: Vec<ConnId> = (0..200).map(|i| ConnId::from_parts(i, 7)).collect();
        let mut clients = Vec::new();
        for &c in &ids {
            conns.accepted(c);
            clients.push(handshake(&mut conns, c, fp));
        }
        assert_eq!(conns.len(), 200);
        for (i, (&c, client)) in ids.iter().zip(&mut clients).enumerate().rev() {
            let mut out = BytesMut::new();
            assert!(conns.seal(c, format!("to {i}").as_bytes(), &mut out));
            client.receive(&out).unwrap();
            assert_eq!(client.take_plaintext(), format!("to {i}").as_bytes());
        }
        for &c in &ids {
            conns.closed(c);
        }
        assert!(conns.is_empty());
        assert!(
            SecureConns::slot_size() <= 128,
            "{}",
            SecureConns::slot_size()
        );
    }
}
