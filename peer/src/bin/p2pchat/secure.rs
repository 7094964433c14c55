//! The client's side of secure links (`docs/security.md`): the registry keys it has pinned,
//! one per registry address, in `$XDG_CONFIG_HOME/p2pchat/known_registries` (like ssh's
//! known_hosts), and the secure stream of every connection: the registry's (its key checked)
//! and peer links (encrypted, not yet authenticated: peers have no identities until tickets
//! exist, so they prove nothing). The node below keeps reading and writing plain frames.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use log::{info, warn};
use p2pchat_engine::ConnId;
use p2pchat_protocol::secure::{
    Credential, Expect, Fingerprint, Remote, SecureError, SecureStream,
};
use p2pchat_protocol::Role;

/// The pin file: `$XDG_CONFIG_HOME/p2pchat/known_registries`, else
/// `~/.config/p2pchat/known_registries`.
fn pin_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("p2pchat").join("known_registries"))
}

/// The pinned key of `addr` in the pin file's text (`ADDR FINGERPRINT` per line, `#` comments).
fn find_pin(text: &str, addr: SocketAddr) -> Option<Fingerprint> {
    let want = addr.to_string();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .find(|(a, _)| *a == want)
        .and_then(|(_, fp)| fp.parse().ok())
}

/// The pin file's text with `addr` pinned to `fp` (its old line replaced).
fn with_pin(text: &str, addr: SocketAddr, fp: Fingerprint) -> String {
    let want = addr.to_string();
    let mut out: String = text
        .lines()
        .filter(|l| l.split_once(' ').is_none_or(|(a, _)| a != want))
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(&format!("{want} {fp}\n"));
    out
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// What a read from a registry connection produced.
pub(crate) struct Received {
    /// Plain frames for the node.
    pub(crate) plaintext: BytesMut,
    /// Bytes to write back (handshake).
    pub(crate) reply: BytesMut,
    /// The link failed: this text is for the user; close the connection.
    pub(crate) error: Option<String>,
}

/// The registry's address, its expected key, and the secure stream of each registry
/// connection.
pub(crate) struct RegistrySecurity {
    addr: SocketAddr,
    file: Option<PathBuf>,
    /// `--registry-key`: wins over the pin file (and replaces its line once proved).
    given: Option<Fingerprint>,
    pinned: Option<Fingerprint>,
    streams: HashMap<ConnId, SecureStream>,
    /// Which of `streams` are registry connections.
    registry_conns: HashSet<ConnId>,
    /// The last failure shown, so a reconnect loop against a changed key says it once.
    last_error: Option<String>,
}

impl RegistrySecurity {
    pub(crate) fn new(addr: SocketAddr, given: Option<Fingerprint>) -> RegistrySecurity {
        let file = pin_file();
        let pinned = file
            .as_deref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|text| find_pin(&text, addr));
        RegistrySecurity {
            addr,
            file,
            given,
            pinned,
            streams: HashMap::new(),
            registry_conns: HashSet::new(),
            last_error: None,
        }
    }

    /// Whether a connection to `addr` is a registry connection.
    pub(crate) fn is_registry(&self, addr: SocketAddr) -> bool {
        addr == self.addr
    }

    /// A connection to `addr` was opened: its handshake starts (message 1 goes out on
    /// `connected`).
    pub(crate) fn dialed(&mut self, conn: ConnId, addr: SocketAddr) {
        let started = if self.is_registry(addr) {
            self.registry_conns.insert(conn);
            let expect = Expect::Key(self.given.or(self.pinned));
            SecureStream::initiator(Role::Client, Credential::Anonymous, expect)
        } else {
            SecureStream::initiator(Role::Peer, Credential::Anonymous, Expect::Anonymous)
        };
        match started {
            Ok(stream) => {
                self.streams.insert(conn, stream);
            }
            Err(e) => warn!("cannot start the secure link: {e}"),
        }
    }

    /// Another peer connected to us.
    pub(crate) fn accepted(&mut self, conn: ConnId) {
        let stream = SecureStream::responder(Role::Peer, Credential::Anonymous, Expect::Anonymous);
        self.streams.insert(conn, stream);
    }

    pub(crate) fn is_secure(&self, conn: ConnId) -> bool {
        self.streams.contains_key(&conn)
    }

    /// What to write now on `conn` (message 1 once connected).
    pub(crate) fn outgoing(&mut self, conn: ConnId) -> BytesMut {
        self.streams
            .get_mut(&conn)
            .map(SecureStream::take_outgoing)
            .unwrap_or_default()
    }

    /// Seals the node's frames for `conn` (held until the handshake is done).
    pub(crate) fn seal(&mut self, conn: ConnId, plain: &[u8]) -> BytesMut {
        match self.streams.get_mut(&conn) {
            Some(stream) => match stream.send(plain) {
                Ok(()) => stream.take_outgoing(),
                Err(_) => BytesMut::new(),
            },
            None => BytesMut::new(),
        }
    }

    pub(crate) fn received(&mut self, conn: ConnId, bytes: &[u8]) -> Received {
        let Some(stream) = self.streams.get_mut(&conn) else {
            return Received {
                plaintext: BytesMut::new(),
                reply: BytesMut::new(),
                error: None,
            };
        };
        let was_open = stream.is_open();
        let result = stream.receive(bytes);
        let plaintext = stream.take_plaintext();
        let reply = stream.take_outgoing();
        let remote = stream.remote().cloned();
        let error = match result {
            Err(e) if self.registry_conns.contains(&conn) => self.explain(&e),
            Err(e) => {
                // A stranger's garbage or a peer of another version: logged, not shown.
                info!("peer link closed: {e}");
                None
            }
            Ok(()) => {
                if !was_open {
                    if let Some(Remote::Key(key)) = remote {
                        self.proved(key.fingerprint());
                    }
                }
                None
            }
        };
        Received {
            plaintext,
            reply,
            error,
        }
    }

    /// The registry proved `fp` (which matched any pin): pin it if it is new.
    fn proved(&mut self, fp: Fingerprint) {
        self.last_error = None;
        if self.pinned == Some(fp) {
            return;
        }
        self.pinned = Some(fp);
        let Some(file) = &self.file else { return };
        let old = std::fs::read_to_string(file).unwrap_or_default();
        match write_atomically(file, &with_pin(&old, self.addr, fp)) {
            Ok(()) => info!(
                "registry {} key {fp} pinned in {}",
                self.addr,
                file.display()
            ),
            Err(e) => warn!("cannot pin the registry key in {}: {e}", file.display()),
        }
    }

    /// The user's text for a failed link (`None` if the same text was shown last time).
    fn explain(&mut self, err: &SecureError) -> Option<String> {
        let text = match err {
            SecureError::KeyMismatch { expected, got } => {
                let source = match (&self.given, &self.file) {
                    (Some(_), _) => "given with --registry-key".to_string(),
                    (None, Some(f)) => format!("pinned in {}", f.display()),
                    (None, None) => "pinned".to_string(),
                };
                format!(
                    "registry {} refused: it proved key {got}, but the key {source} is \
                     {expected}. Someone may be intercepting the connection. If the registry's \
                     key was changed on purpose (its operator sees the fingerprint it prints \
                     at start), accept the new one with --registry-key {got}",
                    self.addr
                )
            }
            other => format!("secure link to the registry {} failed: {other}", self.addr),
        };
        if self.last_error.as_deref() == Some(text.as_str()) {
            return None;
        }
        self.last_error = Some(text.clone());
        Some(text)
    }

    /// Whether `conn`'s secure link failed (the caller closes it).
    pub(crate) fn failed(&self, conn: ConnId) -> bool {
        self.streams.get(&conn).is_some_and(|s| s.error().is_some())
    }

    pub(crate) fn closed(&mut self, conn: ConnId) {
        self.streams.remove(&conn);
        self.registry_conns.remove(&conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_found_and_replaced_per_address() {
        let a: SocketAddr = "127.0.0.1:15600".parse().unwrap();
        let b: SocketAddr = "10.0.0.1:15600".parse().unwrap();
        let fp1: Fingerprint = format!("sha256:{}", "11".repeat(32)).parse().unwrap();
        let fp2: Fingerprint = format!("sha256:{}", "22".repeat(32)).parse().unwrap();
        let text = with_pin("# pinned registry keys\n", a, fp1);
        let text = with_pin(&text, b, fp2);
        assert_eq!(find_pin(&text, a), Some(fp1));
        assert_eq!(find_pin(&text, b), Some(fp2));
        let text = with_pin(&text, a, fp2);
        assert_eq!(find_pin(&text, a), Some(fp2));
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.starts_with("# pinned"));
        assert_eq!(find_pin("garbage\n127.0.0.1:15600 nonsense\n", a), None);
    }
}
