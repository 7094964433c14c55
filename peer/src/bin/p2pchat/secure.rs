//! The client's side of secure links (`docs/security.md`): the registry keys it has pinned,
//! one per registry address, in `$XDG_CONFIG_HOME/p2pchat/known_registries` (like ssh's
//! known_hosts), and the secure stream of every connection: the registry's (its key checked)
//! and peer links, where each side proves its registry-signed identity ticket, and the name a
//! peer then claims in its hello (or welcome) must be its ticket's. The node below keeps
//! reading and writing plain frames. Also our long-term identity key file.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;
use log::{debug, info, warn};
use p2pchat_engine::ConnId;
use p2pchat_protocol::secure::{
    Credential, Expect, Fingerprint, Identity, PublicKey, Remote, SecureError, SecureStream,
};
use p2pchat_protocol::{FrameDecoder, Msg, Role};

/// `$XDG_CONFIG_HOME/p2pchat`, else `~/.config/p2pchat`.
fn config_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("p2pchat"))
}

/// The pin file: `known_registries` in the config directory.
fn pin_file() -> Option<PathBuf> {
    Some(config_dir()?.join("known_registries"))
}

/// Our long-term identity: `identity.key` in the config directory (PKCS#8, mode 0600),
/// created on first use. Without a config directory, a key for this run only.
pub(crate) fn load_identity() -> anyhow::Result<Identity> {
    let Some(path) = config_dir().map(|d| d.join("identity.key")) else {
        return Ok(Identity::generate_from_os()?);
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            Ok(Identity::from_pkcs8(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = Identity::generate_from_os()?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&path)?;
            f.write_all(id.pkcs8())?;
            f.sync_all()?;
            info!("created identity key {}", path.display());
            Ok(id)
        }
        Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
    }
}

/// Most bytes held from a peer that connected before our ticket came.
const HELD_MAX: usize = 4096;

/// The Unix time, for checking tickets.
fn unix_now() -> u64 {
    // The driver may read the clock (clippy.toml keeps the libraries from it).
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A peer link whose other side proved `name`: its first frame (hello or welcome) must claim
/// that name. `seen` holds the plaintext until the first frame is whole.
struct NameCheck {
    name: String,
    seen: Vec<u8>,
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
    /// Our identity, shown with our ticket on peer links.
    identity: Arc<Identity>,
    /// Peer links whose first frame is still to be checked against the ticket's name.
    name_checks: HashMap<ConnId, NameCheck>,
    /// Peer links refused for claiming another name than their ticket's.
    name_refused: HashSet<ConnId>,
    /// Peer links dialed before our ticket came: the node's frames so far, and whether the
    /// TCP connection is up.
    deferred: HashMap<ConnId, (BytesMut, bool)>,
    /// Peer links accepted before our ticket came: what they sent so far.
    held: HashMap<ConnId, BytesMut>,
    /// The last failure shown, so a reconnect loop against a changed key says it once.
    last_error: Option<String>,
}

impl RegistrySecurity {
    pub(crate) fn new(
        addr: SocketAddr,
        given: Option<Fingerprint>,
        identity: Arc<Identity>,
    ) -> RegistrySecurity {
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
            identity,
            name_checks: HashMap::new(),
            name_refused: HashSet::new(),
            deferred: HashMap::new(),
            held: HashMap::new(),
            last_error: None,
        }
    }

    /// Whether a connection to `addr` is a registry connection.
    pub(crate) fn is_registry(&self, addr: SocketAddr) -> bool {
        addr == self.addr
    }

    /// What we prove and require on a peer link: our ticket and theirs (both checked against
    /// the registry key that signed ours), or, without a ticket yet, nothing either way (the
    /// node refuses peers until logged in anyway).
    fn peer_terms(&self, ticket: Option<(&[u8], [u8; 32])>) -> (Credential, Expect) {
        match ticket {
            Some((ticket, registry)) => (
                Credential::Ticket {
                    identity: Arc::clone(&self.identity),
                    ticket: ticket.to_vec(),
                },
                Expect::Ticket {
                    registry: PublicKey(registry),
                    now: unix_now(),
                },
            ),
            None => (Credential::Anonymous, Expect::Anonymous),
        }
    }

    /// A connection to `addr` was opened: its handshake starts (message 1 goes out on
    /// `connected`). `ticket` is the node's, for peer links.
    ///
    /// A peer link dialed while logged in but before the ticket came (a room re-formed at
    /// login) waits for the ticket: started anonymous, every ticketed peer would refuse it.
    pub(crate) fn dialed(
        &mut self,
        conn: ConnId,
        addr: SocketAddr,
        ticket: Option<(&[u8], [u8; 32])>,
        logged_in: bool,
    ) {
        if !self.is_registry(addr) && ticket.is_none() && logged_in {
            debug!("peer link {conn:?} to {addr} waits for our ticket");
            self.deferred.insert(conn, (BytesMut::new(), false));
            return;
        }
        let started = if self.is_registry(addr) {
            self.registry_conns.insert(conn);
            let expect = Expect::Key(self.given.or(self.pinned));
            SecureStream::initiator(Role::Client, Credential::Anonymous, expect)
        } else {
            let (cred, expect) = self.peer_terms(ticket);
            SecureStream::initiator(Role::Peer, cred, expect)
        };
        match started {
            Ok(stream) => {
                self.streams.insert(conn, stream);
            }
            Err(e) => warn!("cannot start the secure link: {e}"),
        }
    }

    /// Another peer connected to us.
    ///
    /// While logged in but before our ticket came (just after login, when peers that share a
    /// room with us dial at once), what the peer sends is held until the ticket is here:
    /// answered anonymously, every ticketed peer would refuse the link.
    pub(crate) fn accepted(
        &mut self,
        conn: ConnId,
        ticket: Option<(&[u8], [u8; 32])>,
        logged_in: bool,
    ) {
        if ticket.is_none() && logged_in {
            debug!("peer link {conn:?} accepted: held until our ticket comes");
            self.held.insert(conn, BytesMut::new());
            return;
        }
        let (cred, expect) = self.peer_terms(ticket);
        let stream = SecureStream::responder(Role::Peer, cred, expect);
        self.streams.insert(conn, stream);
    }

    /// Checks the first frame of a ticket-proved peer link; false if it claims another name.
    fn check_name(&mut self, conn: ConnId, plaintext: &[u8]) -> bool {
        let Some(check) = self.name_checks.get_mut(&conn) else {
            return true;
        };
        check.seen.extend_from_slice(plaintext);
        let mut decoder = FrameDecoder::new(u32::MAX);
        decoder.push(&check.seen);
        let claimed = match decoder.next_frame() {
            Ok(None) => return true,
            Ok(Some(frame)) => match frame.msg {
                Msg::Hello { name, .. } | Msg::Welcome { name, .. } => Some(name),
                _ => None,
            },
            // The node reports what does not decode.
            Err(_) => None,
        };
        let proved = self.name_checks.remove(&conn).map(|c| c.name);
        match claimed {
            Some(name) if Some(&name) != proved.as_ref() => {
                info!("peer link refused: it proved {proved:?} but claims {name:?}");
                false
            }
            _ => true,
        }
    }

    pub(crate) fn is_secure(&self, conn: ConnId) -> bool {
        self.streams.contains_key(&conn)
            || self.deferred.contains_key(&conn)
            || self.held.contains_key(&conn)
    }

    /// Starts the peer links that waited for our ticket, now that it is here: what to write
    /// on each that is connected already (the others get theirs on `outgoing`).
    pub(crate) fn start_deferred(
        &mut self,
        ticket: Option<(&[u8], [u8; 32])>,
    ) -> Vec<(ConnId, Received)> {
        if (self.deferred.is_empty() && self.held.is_empty()) || ticket.is_none() {
            return Vec::new();
        }
        let (cred, expect) = self.peer_terms(ticket);
        let mut ready = Vec::new();
        let held: Vec<(ConnId, BytesMut)> = self.held.drain().collect();
        for (conn, bytes) in held {
            let stream = SecureStream::responder(Role::Peer, cred.clone(), expect.clone());
            self.streams.insert(conn, stream);
            ready.push((conn, self.received(conn, &bytes)));
        }
        for (conn, (plain, connected)) in self.deferred.drain() {
            let Ok(mut stream) = SecureStream::initiator(Role::Peer, cred.clone(), expect.clone())
            else {
                continue;
            };
            if stream.send(&plain).is_err() {
                continue;
            }
            if connected {
                let reply = stream.take_outgoing();
                ready.push((
                    conn,
                    Received {
                        plaintext: BytesMut::new(),
                        reply,
                        error: None,
                    },
                ));
            }
            self.streams.insert(conn, stream);
        }
        ready
    }

    /// What to write now on `conn` (message 1 once connected).
    pub(crate) fn outgoing(&mut self, conn: ConnId) -> BytesMut {
        if let Some((_, connected)) = self.deferred.get_mut(&conn) {
            *connected = true;
            return BytesMut::new();
        }
        self.streams
            .get_mut(&conn)
            .map(SecureStream::take_outgoing)
            .unwrap_or_default()
    }

    /// Seals the node's frames for `conn` (held until the handshake is done).
    pub(crate) fn seal(&mut self, conn: ConnId, plain: &[u8]) -> BytesMut {
        if let Some((held, _)) = self.deferred.get_mut(&conn) {
            held.extend_from_slice(plain);
            return BytesMut::new();
        }
        match self.streams.get_mut(&conn) {
            Some(stream) => match stream.send(plain) {
                Ok(()) => stream.take_outgoing(),
                Err(_) => BytesMut::new(),
            },
            None => BytesMut::new(),
        }
    }

    pub(crate) fn received(&mut self, conn: ConnId, bytes: &[u8]) -> Received {
        if let Some(held) = self.held.get_mut(&conn) {
            // A handshake's first message is under 100 bytes: more is not a peer waiting.
            if held.len() + bytes.len() > HELD_MAX {
                self.held.remove(&conn);
                self.name_refused.insert(conn);
            } else {
                held.extend_from_slice(bytes);
            }
            return Received {
                plaintext: BytesMut::new(),
                reply: BytesMut::new(),
                error: None,
            };
        }
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
        let mut result = result;
        if !was_open && result.is_ok() {
            if let Some(Remote::User(ticket)) = &remote {
                self.name_checks.insert(
                    conn,
                    NameCheck {
                        name: ticket.name.clone(),
                        seen: Vec::new(),
                    },
                );
            }
        }
        if result.is_ok() && !self.check_name(conn, &plaintext) {
            result = Err(SecureError::WrongIdentity(
                "claims a name its ticket does not give",
            ));
            self.name_refused.insert(conn);
        }
        let plaintext = if self.name_refused.contains(&conn) {
            BytesMut::new()
        } else {
            plaintext
        };
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

    /// Whether `conn`'s secure link failed, or its peer claimed a name its ticket does not
    /// give (the caller closes it).
    pub(crate) fn failed(&self, conn: ConnId) -> bool {
        self.name_refused.contains(&conn)
            || self.streams.get(&conn).is_some_and(|s| s.error().is_some())
    }

    pub(crate) fn closed(&mut self, conn: ConnId) {
        self.streams.remove(&conn);
        self.registry_conns.remove(&conn);
        self.name_checks.remove(&conn);
        self.name_refused.remove(&conn);
        self.deferred.remove(&conn);
        self.held.remove(&conn);
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
