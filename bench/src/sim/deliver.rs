//! The network half of the event loop: carrying out one delivery (a connect reaching a
//! listener, bytes, a close, a datagram, a store commit) on the host it is for.

use bytes::Bytes;
use p2pchat_peer::{Input, LinkId};
use p2pchat_protocol::Msg;
use p2pchat_registry::ConnId;

use super::net::{Delivery, Handle, ACCEPTOR, DIALER};
use super::registry_host::Tapped;
use super::{chunk_frames, Host, NodeId, World};

impl World {
    pub(super) fn deliver(&mut self, d: Delivery) {
        let now = self.now;
        let at = self.elapsed();
        match d {
            Delivery::Syn { conn, addr } => {
                let Some((dialer_open, source, dialer)) = self
                    .net
                    .conn(conn)
                    .map(|c| (c.ends[DIALER].open, c.source, c.ends[DIALER].host))
                else {
                    return;
                };
                if !dialer_open {
                    // The dialer died or gave up before its connect arrived.
                    self.net.close(now, conn, ACCEPTOR, &mut self.rng);
                    return;
                }
                match self.listeners.get(&addr).copied() {
                    Some(Host::Registry) => {
                        let cid = self.reg.next_conn();
                        self.reg.conns.insert(cid, conn);
                        self.trace.record(at, Host::Registry, "accept", cid.0, || {
                            format!("{cid} from {dialer:?}")
                        });
                        self.net.accept(
                            now,
                            conn,
                            Host::Registry,
                            Handle::Conn(cid),
                            &mut self.rng,
                        );
                        self.feed_registry(p2pchat_registry::Input::Connected {
                            conn: cid,
                            remote: source,
                        });
                    }
                    Some(Host::Node(id))
                        if self.nodes[id.0].alive && !self.cut(dialer, Host::Node(id)) =>
                    {
                        let n = &mut self.nodes[id.0];
                        n.next_accept += 1;
                        let link = LinkId::Accepted(n.next_accept);
                        n.links.insert(link, (conn, ACCEPTOR));
                        self.trace.record(at, Host::Node(id), "accept", 0, || {
                            format!("{link:?} from {dialer:?}")
                        });
                        self.net.accept(
                            now,
                            conn,
                            Host::Node(id),
                            Handle::Link(link),
                            &mut self.rng,
                        );
                        self.feed_node(
                            id,
                            Input::Accepted {
                                link,
                                remote: source,
                            },
                        );
                    }
                    _ => {
                        self.trace
                            .record(at, dialer, "refused", 0, || addr.to_string());
                        self.net.refuse(now, conn, &mut self.rng);
                    }
                }
            }
            Delivery::SynAck { conn } => {
                let Some(end) = self.net.conn(conn).map(|c| c.ends[DIALER]) else {
                    return;
                };
                if let (true, Host::Node(id), Some(Handle::Link(link))) =
                    (end.open, end.host, end.handle)
                {
                    self.trace
                        .record(at, end.host, "connected", 0, || format!("{link:?}"));
                    self.feed_node(id, Input::Connected { link });
                }
            }
            Delivery::Bytes { conn, to, bytes } => {
                let Some(end) = self.net.arrive(conn, to, false) else {
                    return;
                };
                self.net.stats.chunks += 1;
                self.net.stats.bytes += bytes.len() as u64;
                self.trace
                    .record(at, end.host, "bytes", bytes.len() as u64, String::new);
                match (end.host, end.handle) {
                    (Host::Node(id), Some(Handle::Link(link))) => {
                        self.node_received(id, link, bytes)
                    }
                    (Host::Registry, Some(Handle::Conn(cid))) => {
                        self.feed_registry(p2pchat_registry::Input::Received {
                            conn: cid,
                            bytes: &bytes,
                        });
                    }
                    _ => {}
                }
            }
            Delivery::Fin { conn, to } => {
                let Some(end) = self.net.arrive(conn, to, true) else {
                    return;
                };
                self.trace
                    .record(at, end.host, "closed", 0, || format!("{:?}", end.handle));
                match (end.host, end.handle) {
                    (Host::Node(id), Some(Handle::Link(link))) => {
                        self.nodes[id.0].links.remove(&link);
                        self.feed_node(id, Input::Closed { link });
                    }
                    (Host::Registry, Some(Handle::Conn(cid))) => {
                        self.reg.conns.remove(&cid);
                        self.feed_registry(p2pchat_registry::Input::Closed { conn: cid });
                    }
                    _ => {}
                }
            }
            Delivery::Datagram { to, from, bytes } => {
                self.net.stats.datagrams += 1;
                self.trace
                    .record(at, to, "datagram", bytes.len() as u64, || from.to_string());
                if to == Host::Registry {
                    self.feed_registry(p2pchat_registry::Input::Datagram {
                        from,
                        bytes: &bytes,
                    });
                }
            }
            Delivery::LocalClosed { conn } => {
                self.feed_registry(p2pchat_registry::Input::Closed { conn: ConnId(conn) });
            }
            Delivery::StoreCommit => {
                let jobs = self.reg.queued.len() as u64;
                self.trace
                    .record(at, Host::Registry, "commit", jobs, String::new);
                self.reg.commit(now);
                self.drain_registry();
            }
        }
    }

    /// Bytes for a node; with hop tracking on, a chunk that delivered a new message of the
    /// tracked room is decoded to read how far that copy travelled.
    fn node_received(&mut self, id: NodeId, link: LinkId, bytes: Bytes) {
        let delivered = |w: &World| {
            w.hops
                .as_ref()
                .and_then(|h| w.nodes[id.0].node.room_stats(&h.room).map(|s| s.delivered))
        };
        let before = delivered(self);
        let copy = before.is_some().then(|| bytes.clone());
        self.feed_node(id, Input::Received { link, bytes });
        let (Some(before), Some(after), Some(copy)) = (before, delivered(self), copy) else {
            return;
        };
        if after == before {
            return;
        }
        for f in chunk_frames(&copy) {
            if let Msg::RoomMessage { hops, .. } = f.msg {
                let travelled = usize::from(p2pchat_peer::room::HOP_LIMIT - hops) + 1;
                if let Some(h) = &mut self.hops {
                    if h.hist.len() <= travelled {
                        h.hist.resize(travelled + 1, 0);
                    }
                    h.hist[travelled] += 1;
                }
            }
        }
    }

    pub(super) fn tap(&mut self, conn: u64, bytes: &Bytes) {
        let Some(Host::Node(to)) = self.net.conn(conn).map(|c| c.ends[DIALER].host) else {
            return;
        };
        let at = self.elapsed();
        for f in chunk_frames(bytes) {
            if let Some(tap) = &mut self.reg.tap {
                tap.push(Tapped { at, to, msg: f.msg });
            }
        }
    }
}
