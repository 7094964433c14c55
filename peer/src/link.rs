//! Peer links: one TCP connection per pair of peers, carrying any peer-to-peer message kind
//! (private chat now, room overlay traffic later).
//!
//! A link is named by a [`LinkId`]. Its lifecycle, in order:
//!
//! ```text
//!  dialed:   Connecting ──Connected/send Hello──▶ ExpectWelcome ──Welcome──▶ Ready { peer }
//!  accepted:                                      ExpectHello ──Hello/send Welcome──▶ Ready { peer }
//! ```
//!
//! [`Links`] keeps at most one ready link per peer name. When both peers dial each other at once,
//! the link dialed by the peer whose name sorts first wins and the other is closed; both sides
//! apply the same rule, so they agree without another message.
//!
//! Deadlines, all per link: the handshake must complete within `handshake_timeout` of the dial or
//! accept; a started frame must complete within `frame_timeout`; a ready link nothing uses is
//! closed after `idle_timeout`.

use std::collections::VecDeque;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use log::{debug, info};
use p2pchat_protocol::{
    names, status, Frame, FrameDecoder, Msg, Role, OLDEST_PEER_VERSION, PEER_VERSION,
};

use crate::io::{CloseReason, Config, LinkId, Output};

/// Splits a link's byte stream into frames and remembers since when a frame is incomplete.
#[derive(Debug)]
pub(crate) struct FrameReader {
    decoder: FrameDecoder,
    partial_since: Option<Instant>,
}

impl FrameReader {
    pub(crate) fn new(max_frame: u32) -> FrameReader {
        FrameReader {
            decoder: FrameDecoder::new(max_frame),
            partial_since: None,
        }
    }

    /// Feeds bytes and returns the whole frames, or the decode error that poisons the stream.
    pub(crate) fn push(
        &mut self,
        now: Instant,
        bytes: &[u8],
    ) -> Result<Vec<Frame>, p2pchat_protocol::DecodeError> {
        let mut frames = Vec::new();
        self.decoder.push_frames(bytes, &mut frames)?;
        // The deadline runs from when the *current* partial frame started: trickling bytes into
        // one frame does not extend it, but a frame that completed in this push means the
        // partial one left over started now (a peer streaming steadily is not a slow client).
        if !self.decoder.has_partial() {
            self.partial_since = None;
        } else if !frames.is_empty() || self.partial_since.is_none() {
            self.partial_since = Some(now);
        }
        Ok(frames)
    }

    /// When the started frame must have completed, if one is started.
    pub(crate) fn deadline(&self, config: &Config) -> Option<Instant> {
        self.partial_since.map(|t| t + config.frame_timeout)
    }
}

/// Encodes one frame for [`Output::Send`].
pub(crate) fn send(out: &mut VecDeque<Output>, link: LinkId, frame: Frame) {
    out.push_back(Output::Send {
        link,
        bytes: frame.to_bytes(),
    });
}

/// What a link waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LinkState {
    /// Dialed; waiting for the TCP connect.
    Connecting { expect: String },
    /// Dialed and said hello; waiting for the welcome of `expect`.
    ExpectWelcome { expect: String },
    /// Accepted; waiting for the stranger's hello.
    ExpectHello,
    /// Handshake done: the link to `peer`.
    Ready { peer: String },
}

#[derive(Debug)]
struct Link {
    state: LinkState,
    reader: FrameReader,
    handshake_deadline: Option<Instant>,
    idle_deadline: Option<Instant>,
    remote: Option<SocketAddr>,
    /// Dialed: the version our hello offers. Ready: the version the link runs at, the lower of
    /// the two peers' (docs/protocol.md §9).
    version: u16,
}

/// Peers remembered as refusing our newest hello version (dialed again with version 1).
const MAX_LEGACY: usize = 4096;

/// What happened to links, for the node to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkEvent {
    /// `name` has a ready link now (new, or replacing another).
    Ready { name: String },
    /// A frame from `name` on its ready link.
    Frame { name: String, msg: Msg },
    /// The ready link to `name` is gone.
    Down { name: String },
    /// A dial to `name` failed before its handshake completed.
    DialFailed {
        name: String,
        message: Option<String>,
    },
    /// `name` refused our hello's version (an older peer): dial `addr` again, the hello now
    /// offering version 1.
    Redial { name: String, addr: SocketAddr },
}

/// Every peer link of a node, and which one is each peer's.
#[derive(Debug)]
pub(crate) struct Links {
    links: HashMap<LinkId, Link>,
    by_name: HashMap<String, LinkId>,
    /// Peers that refused a hello of version [`PEER_VERSION`]: they are offered version 1.
    legacy: HashSet<String>,
}

impl Links {
    pub(crate) fn new() -> Links {
        Links {
            links: HashMap::new(),
            by_name: HashMap::new(),
            legacy: HashSet::new(),
        }
    }

    /// Opens a link to `name` at `addr`.
    pub(crate) fn dial(
        &mut self,
        now: Instant,
        link: LinkId,
        addr: SocketAddr,
        name: &str,
        config: &Config,
        out: &mut VecDeque<Output>,
    ) {
        let version = if self.legacy.contains(name) {
            OLDEST_PEER_VERSION
        } else {
            PEER_VERSION
        };
        self.links.insert(
            link,
            Link {
                state: LinkState::Connecting {
                    expect: name.to_string(),
                },
                reader: FrameReader::new(config.max_frame),
                handshake_deadline: Some(now + config.handshake_timeout),
                idle_deadline: None,
                remote: Some(addr),
                version,
            },
        );
        out.push_back(Output::Connect { link, addr });
    }

    /// A stranger connected to our listener.
    pub(crate) fn handle_accepted(
        &mut self,
        now: Instant,
        link: LinkId,
        remote: SocketAddr,
        config: &Config,
    ) {
        debug!("peer link {link:?} accepted from {remote}");
        self.links.insert(
            link,
            Link {
                state: LinkState::ExpectHello,
                reader: FrameReader::new(config.max_frame),
                handshake_deadline: Some(now + config.handshake_timeout),
                idle_deadline: None,
                remote: Some(remote),
                version: OLDEST_PEER_VERSION,
            },
        );
    }

    /// A dial completed: say hello as `me`.
    pub(crate) fn handle_connected(
        &mut self,
        link: LinkId,
        me: Option<&str>,
        out: &mut VecDeque<Output>,
    ) -> Option<LinkEvent> {
        let l = self.links.get_mut(&link)?;
        let LinkState::Connecting { expect } = &l.state else {
            return None;
        };
        let expect = expect.clone();
        let Some(me) = me else {
            return self.close(link, CloseReason::Misbehaved("logged out"), out);
        };
        send(
            out,
            link,
            Frame::event(Msg::Hello {
                version: l.version,
                role: Role::Peer,
                name: me.to_string(),
                ticket: Vec::new(),
            }),
        );
        l.state = LinkState::ExpectWelcome { expect };
        None
    }

    /// Bytes from a link; `me` is our username (`None` while logged out).
    pub(crate) fn handle_received(
        &mut self,
        now: Instant,
        link: LinkId,
        bytes: &[u8],
        me: Option<&str>,
        out: &mut VecDeque<Output>,
    ) -> Vec<LinkEvent> {
        let mut events = Vec::new();
        let Some(l) = self.links.get_mut(&link) else {
            return events;
        };
        let frames = match l.reader.push(now, bytes) {
            Ok(frames) => frames,
            Err(err) => {
                events.extend(self.close(link, CloseReason::Decode(err), out));
                return events;
            }
        };
        for frame in frames {
            let Some(l) = self.links.get(&link) else {
                break;
            };
            match l.state.clone() {
                LinkState::Ready { peer } => events.push(LinkEvent::Frame {
                    name: peer,
                    msg: frame.msg,
                }),
                LinkState::ExpectHello => events.extend(self.handle_hello(link, frame, me, out)),
                LinkState::ExpectWelcome { expect } => {
                    events.extend(self.handle_welcome(link, frame, &expect, me, out))
                }
                LinkState::Connecting { .. } => {}
            }
        }
        events
    }

    fn handle_hello(
        &mut self,
        link: LinkId,
        frame: Frame,
        me: Option<&str>,
        out: &mut VecDeque<Output>,
    ) -> Option<LinkEvent> {
        let Msg::Hello {
            version,
            role: Role::Peer,
            name,
            ..
        } = frame.msg
        else {
            let got = frame.msg.kind_name();
            return self.close(
                link,
                CloseReason::Unexpected {
                    expected: "peer hello",
                    got,
                },
                out,
            );
        };
        let refuse = |code: u16| {
            Frame::event(Msg::Error {
                code,
                message: status::message(code).to_string(),
            })
        };
        if version < OLDEST_PEER_VERSION {
            send(out, link, refuse(status::BAD_VERSION));
            return self.close(link, CloseReason::Misbehaved("protocol version"), out);
        }
        if !names::is_valid_name(&name) {
            send(out, link, refuse(status::INVALID_NAME));
            return self.close(link, CloseReason::Misbehaved("invalid name"), out);
        }
        let Some(me) = me else {
            send(out, link, refuse(status::USER_OFFLINE));
            return self.close(link, CloseReason::Misbehaved("we are logged out"), out);
        };
        if name == me {
            return self.close(
                link,
                CloseReason::Misbehaved("hello with our own name"),
                out,
            );
        }
        // Both dialed at once: keep the link dialed by the name that sorts first.
        if me < name.as_str() && self.dials_or_has_dialed(&name) {
            return self.close(link, CloseReason::Duplicate, out);
        }
        // A newer dialer is answered with our version, an older one with its own: the link runs
        // at the lower of the two.
        let version = version.min(PEER_VERSION);
        if let Some(l) = self.links.get_mut(&link) {
            l.version = version;
        }
        send(
            out,
            link,
            Frame::event(Msg::Welcome {
                version,
                name: me.to_string(),
            }),
        );
        self.make_ready(link, name, out)
    }

    fn handle_welcome(
        &mut self,
        link: LinkId,
        frame: Frame,
        expect: &str,
        me: Option<&str>,
        out: &mut VecDeque<Output>,
    ) -> Option<LinkEvent> {
        match frame.msg {
            Msg::Welcome { name, version } if name == expect => {
                let accepted_wins = me.is_some_and(|me| name.as_str() < me);
                if accepted_wins && self.by_name.contains_key(&name) {
                    return self.close(link, CloseReason::Duplicate, out);
                }
                if let Some(l) = self.links.get_mut(&link) {
                    l.version = l.version.min(version).max(OLDEST_PEER_VERSION);
                }
                self.make_ready(link, name, out)
            }
            Msg::Error { code, .. }
                if code == status::BAD_VERSION
                    && self
                        .links
                        .get(&link)
                        .is_some_and(|l| l.version > OLDEST_PEER_VERSION) =>
            {
                // An older peer: it only speaks version 1. Dial again offering that.
                info!("{expect} refused peer version {PEER_VERSION}; dialing again with {OLDEST_PEER_VERSION}");
                if self.legacy.len() >= MAX_LEGACY {
                    self.legacy.clear();
                }
                self.legacy.insert(expect.to_string());
                let addr = self.links.get(&link).and_then(|l| l.remote);
                let _ = self.close(link, CloseReason::Misbehaved("refused version"), out);
                addr.map(|addr| LinkEvent::Redial {
                    name: expect.to_string(),
                    addr,
                })
            }
            Msg::Welcome { name, .. } => {
                info!("dialed {expect} but {name} answered");
                self.close(link, CloseReason::Misbehaved("wrong peer"), out)
            }
            Msg::Error { message, .. } => {
                let event = self.close(link, CloseReason::Misbehaved("refused"), out);
                event.map(|e| match e {
                    LinkEvent::DialFailed { name, .. } => LinkEvent::DialFailed {
                        name,
                        message: Some(message),
                    },
                    other => other,
                })
            }
            other => {
                let got = other.kind_name();
                self.close(
                    link,
                    CloseReason::Unexpected {
                        expected: "welcome",
                        got,
                    },
                    out,
                )
            }
        }
    }

    /// Whether a link we dialed to `name` exists (connecting, handshaking or ready).
    fn dials_or_has_dialed(&self, name: &str) -> bool {
        self.links.iter().any(|(id, l)| {
            matches!(id, LinkId::Dialed(_))
                && match &l.state {
                    LinkState::Connecting { expect } | LinkState::ExpectWelcome { expect } => {
                        expect == name
                    }
                    LinkState::Ready { peer } => peer == name,
                    LinkState::ExpectHello => false,
                }
        })
    }

    /// `link` becomes the link to `name`; any other link to `name` (ready or dialing) closes.
    fn make_ready(
        &mut self,
        link: LinkId,
        name: String,
        out: &mut VecDeque<Output>,
    ) -> Option<LinkEvent> {
        let others: Vec<LinkId> =
            self.links
                .iter()
                .filter(|(id, l)| {
                    **id != link
                        && match &l.state {
                            LinkState::Connecting { expect }
                            | LinkState::ExpectWelcome { expect } => *expect == name,
                            LinkState::Ready { peer } => *peer == name,
                            LinkState::ExpectHello => false,
                        }
                })
                .map(|(id, _)| *id)
                .collect();
        for other in others {
            self.by_name.remove(&name);
            // A replaced link raises no event: the peer stays reachable through `link`.
            let _ = self.close(other, CloseReason::Duplicate, out);
        }
        let l = self.links.get_mut(&link)?;
        info!("peer link {link:?} to {name} ready");
        l.state = LinkState::Ready { peer: name.clone() };
        l.handshake_deadline = None;
        self.by_name.insert(name.clone(), link);
        Some(LinkEvent::Ready { name })
    }

    /// The peer behind the ready link to `old` now goes by `new` (it told us so): the link is
    /// filed under the new name. False when there is no such link or `new` already has one.
    pub(crate) fn rename(&mut self, old: &str, new: &str) -> bool {
        if self.by_name.contains_key(new) {
            return false;
        }
        let Some(id) = self.by_name.remove(old) else {
            return false;
        };
        if let Some(l) = self.links.get_mut(&id) {
            l.state = LinkState::Ready {
                peer: new.to_string(),
            };
        }
        self.by_name.insert(new.to_string(), id);
        true
    }

    /// Sends a frame on the ready link to `name`; false when there is none.
    pub(crate) fn send_to(&self, name: &str, msg: Msg, out: &mut VecDeque<Output>) -> bool {
        self.send_bytes_to(name, &Frame::event(msg).to_bytes(), out)
    }

    /// Queues an already encoded frame on the ready link to `name`: flooding encodes a message
    /// once and hands every neighbour the same (reference-counted) bytes.
    pub(crate) fn send_bytes_to(
        &self,
        name: &str,
        bytes: &Bytes,
        out: &mut VecDeque<Output>,
    ) -> bool {
        match self.by_name.get(name) {
            Some(link) => {
                out.push_back(Output::Send {
                    link: *link,
                    bytes: bytes.clone(),
                });
                true
            }
            None => false,
        }
    }

    /// The version the ready link to `name` runs at (0 when there is none).
    pub(crate) fn version(&self, name: &str) -> u16 {
        self.by_name
            .get(name)
            .and_then(|id| self.links.get(id))
            .map_or(0, |l| l.version)
    }

    /// Whether `name` has a ready link.
    pub(crate) fn is_ready(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Whether a dial to `name` is in progress.
    pub(crate) fn is_dialing(&self, name: &str) -> bool {
        self.links.values().any(|l| {
            matches!(&l.state, LinkState::Connecting { expect } | LinkState::ExpectWelcome { expect }
                if expect == name)
        })
    }

    /// Arms (`Some`) or disarms (`None`) the idle deadline of the link to `name`.
    pub(crate) fn set_idle(&mut self, name: &str, deadline: Option<Instant>) {
        if let Some(l) = self.by_name.get(name).and_then(|id| self.links.get_mut(id)) {
            l.idle_deadline = deadline;
        }
    }

    /// Closes the ready link to `name` (nothing is reported).
    pub(crate) fn close_peer(
        &mut self,
        name: &str,
        reason: CloseReason,
        out: &mut VecDeque<Output>,
    ) {
        if let Some(link) = self.by_name.remove(name) {
            let _ = self.close(link, reason, out);
        }
    }

    /// Closes every link.
    pub(crate) fn close_all(&mut self, reason: CloseReason, out: &mut VecDeque<Output>) {
        let mut ids: Vec<LinkId> = self.links.keys().copied().collect();
        ids.sort();
        self.by_name.clear();
        for id in ids {
            let _ = self.close(id, reason.clone(), out);
        }
    }

    /// Closes `link` with `reason` and says what that means for its peer.
    pub(crate) fn close(
        &mut self,
        link: LinkId,
        reason: CloseReason,
        out: &mut VecDeque<Output>,
    ) -> Option<LinkEvent> {
        if !self.links.contains_key(&link) {
            return None;
        }
        info!("closing peer link {link:?}: {reason}");
        let duplicate = reason == CloseReason::Duplicate;
        out.push_back(Output::Close { link, reason });
        let event = self.forget(link);
        if duplicate {
            return None;
        }
        event
    }

    /// The driver reports `link` gone.
    pub(crate) fn handle_closed(&mut self, link: LinkId) -> Option<LinkEvent> {
        if self.links.contains_key(&link) {
            debug!("peer link {link:?} closed");
        }
        self.forget(link)
    }

    fn forget(&mut self, link: LinkId) -> Option<LinkEvent> {
        let l = self.links.remove(&link)?;
        match l.state {
            LinkState::Ready { peer } => {
                if self.by_name.get(&peer) == Some(&link) {
                    self.by_name.remove(&peer);
                    return Some(LinkEvent::Down { name: peer });
                }
                None
            }
            LinkState::Connecting { expect } | LinkState::ExpectWelcome { expect } => {
                Some(LinkEvent::DialFailed {
                    name: expect,
                    message: None,
                })
            }
            LinkState::ExpectHello => None,
        }
    }

    /// Closes the links whose deadline passed.
    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        config: &Config,
        out: &mut VecDeque<Output>,
    ) -> Vec<LinkEvent> {
        let mut due: Vec<(LinkId, CloseReason)> = Vec::new();
        for (id, l) in &self.links {
            if l.handshake_deadline.is_some_and(|t| t <= now) {
                due.push((*id, CloseReason::HandshakeTimeout));
            } else if l.reader.deadline(config).is_some_and(|t| t <= now) {
                due.push((*id, CloseReason::FrameTimeout));
            } else if l.idle_deadline.is_some_and(|t| t <= now) {
                due.push((*id, CloseReason::Idle));
            }
        }
        due.sort_by_key(|(id, _)| *id);
        due.into_iter()
            .filter_map(|(id, reason)| self.close(id, reason, out))
            .collect()
    }

    /// The earliest link deadline.
    pub(crate) fn poll_timeout(&self, config: &Config) -> Option<Instant> {
        self.links
            .values()
            .flat_map(|l| {
                [
                    l.handshake_deadline,
                    l.reader.deadline(config),
                    l.idle_deadline,
                ]
            })
            .flatten()
            .min()
    }

    /// Whether `link` is one of ours.
    pub(crate) fn contains(&self, link: LinkId) -> bool {
        self.links.contains_key(&link)
    }

    /// Number of links, in any state.
    pub(crate) fn len(&self) -> usize {
        self.links.len()
    }

    /// The remote address of the ready link to `name` (for rooms' neighbour bookkeeping).
    #[allow(dead_code)]
    pub(crate) fn remote(&self, name: &str) -> Option<SocketAddr> {
        self.by_name
            .get(name)
            .and_then(|id| self.links.get(id))
            .and_then(|l| l.remote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config() -> Config {
        Config::new(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        )
    }

    fn frames_sent(out: &mut VecDeque<Output>) -> Vec<Msg> {
        out.drain(..)
            .filter_map(|o| match o {
                Output::Send { bytes, .. } => Some(Frame::decode(&bytes[4..]).unwrap().msg),
                _ => None,
            })
            .collect()
    }

    fn hello(version: u16, name: &str) -> Bytes {
        Frame::event(Msg::Hello {
            version,
            role: Role::Peer,
            name: name.into(),
            ticket: Vec::new(),
        })
        .to_bytes()
    }

    /// An acceptor answers with the lower of the two versions and the link runs at it; a hello
    /// older than version 1 is refused.
    #[test]
    fn an_accepted_link_runs_at_the_lower_version() {
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let remote: SocketAddr = "10.0.0.2:9".parse().unwrap();
        for (offered, runs) in [(1, 1), (2, 2), (9, PEER_VERSION)] {
            let mut links = Links::new();
            let mut out = VecDeque::new();
            let id = LinkId::Accepted(1);
            links.handle_accepted(now, id, remote, &config());
            let events =
                links.handle_received(now, id, &hello(offered, "bob"), Some("ann"), &mut out);
            assert_eq!(events, [LinkEvent::Ready { name: "bob".into() }]);
            assert_eq!(
                frames_sent(&mut out),
                [Msg::Welcome {
                    version: runs,
                    name: "ann".into()
                }]
            );
            assert_eq!(links.version("bob"), runs, "offered {offered}");
        }
        let mut links = Links::new();
        let mut out = VecDeque::new();
        links.handle_accepted(now, LinkId::Accepted(1), remote, &config());
        links.handle_received(
            now,
            LinkId::Accepted(1),
            &hello(0, "bob"),
            Some("ann"),
            &mut out,
        );
        assert!(matches!(
            frames_sent(&mut out)[..],
            [Msg::Error {
                code: status::BAD_VERSION,
                ..
            }]
        ));
        assert_eq!(links.version("bob"), 0);
    }

    /// A dialer offers the newest version; an older acceptor refuses it (402), and the dialer
    /// dials again offering version 1, which then the link runs at.
    #[test]
    fn a_dialer_falls_back_to_version_1_for_an_older_peer() {
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let addr: SocketAddr = "10.0.0.3:7".parse().unwrap();
        let mut links = Links::new();
        let mut out = VecDeque::new();
        links.dial(now, LinkId::Dialed(1), addr, "old", &config(), &mut out);
        out.clear();
        links.handle_connected(LinkId::Dialed(1), Some("ann"), &mut out);
        assert!(matches!(
            frames_sent(&mut out)[..],
            [Msg::Hello {
                version: PEER_VERSION,
                ..
            }]
        ));
        let refusal = Frame::event(Msg::Error {
            code: status::BAD_VERSION,
            message: "unsupported protocol version 2; this peer speaks 1".into(),
        })
        .to_bytes();
        let events = links.handle_received(now, LinkId::Dialed(1), &refusal, Some("ann"), &mut out);
        assert_eq!(
            events,
            [LinkEvent::Redial {
                name: "old".into(),
                addr
            }]
        );
        out.clear();
        links.dial(now, LinkId::Dialed(2), addr, "old", &config(), &mut out);
        out.clear();
        links.handle_connected(LinkId::Dialed(2), Some("ann"), &mut out);
        assert!(matches!(
            frames_sent(&mut out)[..],
            [Msg::Hello { version: 1, .. }]
        ));
        let welcome = Frame::event(Msg::Welcome {
            version: 1,
            name: "old".into(),
        })
        .to_bytes();
        let events = links.handle_received(now, LinkId::Dialed(2), &welcome, Some("ann"), &mut out);
        assert_eq!(events, [LinkEvent::Ready { name: "old".into() }]);
        assert_eq!(links.version("old"), 1);
        // A second refusal, at version 1, is a plain failure: no endless redials.
        links.dial(now, LinkId::Dialed(3), addr, "old2", &config(), &mut out);
        links.handle_connected(LinkId::Dialed(3), Some("ann"), &mut out);
        links.legacy.insert("old2".into());
        if let Some(l) = links.links.get_mut(&LinkId::Dialed(3)) {
            l.version = OLDEST_PEER_VERSION;
        }
        let events = links.handle_received(now, LinkId::Dialed(3), &refusal, Some("ann"), &mut out);
        assert!(
            matches!(&events[..], [LinkEvent::DialFailed { .. }]),
            "{events:?}"
        );
    }

    #[test]
    fn the_frame_deadline_runs_from_the_start_of_the_current_frame() {
        // Virtual clock anchored at one real instant.
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let config = Config::new(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        );
        let frame = Frame::event(Msg::ChatMessage {
            text: "x".repeat(50),
        })
        .to_bytes();
        let mut r = FrameReader::new(1 << 16);
        // A partial frame at t0, trickled at t0 + 5 s: the deadline stays t0 + timeout.
        assert!(r.push(t0, &frame[..10]).unwrap().is_empty());
        assert!(r
            .push(t0 + Duration::from_secs(5), &frame[10..20])
            .unwrap()
            .is_empty());
        assert_eq!(r.deadline(&config), Some(t0 + config.frame_timeout));
        // At t0 + 9 s the frame completes and the next one starts: its deadline is fresh.
        let t9 = t0 + Duration::from_secs(9);
        let mut chunk = frame[20..].to_vec();
        chunk.extend_from_slice(&frame[..10]);
        assert_eq!(r.push(t9, &chunk).unwrap().len(), 1);
        assert_eq!(r.deadline(&config), Some(t9 + config.frame_timeout));
        // The rest arrives: nothing is pending, no deadline.
        assert_eq!(r.push(t9, &frame[10..]).unwrap().len(), 1);
        assert_eq!(r.deadline(&config), None);
    }
}
