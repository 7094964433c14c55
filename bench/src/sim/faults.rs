//! Faults between peers and the wire counters: frame loss, partitions, crashes with restarts,
//! and per-kind counts of every frame one peer sends another.
//!
//! Peer links are TCP, and TCP does not lose bytes; what a lossy or cut network costs a room is
//! the room traffic that never makes it (a frame in the buffer of a relay that crashes, a link
//! that is silently dead until its keep-alive notices). The simulator models that at frame
//! granularity: a chunk whose frames are all room data (kinds `0x42..=0x4f`: room messages and
//! the tree's announcements, grafts and prunes) is dropped with probability
//! [`NetConfig::frame_loss`](super::NetConfig::frame_loss), or always while its two ends are on
//! different sides of a partition. Link control (hello, welcome, room-link, room-unlink) and
//! everything to or from the registry is never dropped, so links form and the room is known;
//! connects across a partition are refused.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use p2pchat_peer::Node;
use p2pchat_protocol::Msg;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{chunk_frames, derive, Host, NodeId, World, WALL0_MS};

/// The first and last kind byte the simulator treats as room data (droppable).
pub const ROOM_DATA_KINDS: std::ops::RangeInclusive<u8> = 0x42..=0x4f;

/// Frames of one kind sent from a peer to a peer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KindCount {
    /// Frames sent (dropped ones included: they were transmitted).
    pub frames: u64,
    /// Bytes of those frames on the wire (length prefix included).
    pub bytes: u64,
    /// Frames dropped by loss or a partition.
    pub dropped: u64,
}

/// Peer-to-peer frames by kind byte.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WireStats {
    /// Counts by kind byte.
    pub by_kind: BTreeMap<u8, KindCount>,
    /// Chunks that did not parse as whole frames (counted, never dropped).
    pub unparsed_chunks: u64,
}

impl WireStats {
    /// The count of one kind (zero when never seen).
    pub fn kind(&self, kind: u8) -> KindCount {
        self.by_kind.get(&kind).copied().unwrap_or_default()
    }

    /// `self - before`, kind by kind.
    pub fn since(&self, before: &WireStats) -> WireStats {
        let mut out = WireStats {
            unparsed_chunks: self.unparsed_chunks - before.unparsed_chunks,
            ..WireStats::default()
        };
        for (k, c) in &self.by_kind {
            let b = before.kind(*k);
            out.by_kind.insert(
                *k,
                KindCount {
                    frames: c.frames - b.frames,
                    bytes: c.bytes - b.bytes,
                    dropped: c.dropped - b.dropped,
                },
            );
        }
        out
    }
}

/// The kind byte and wire length of each frame in `bytes`, or `None` when the chunk is not a
/// whole number of frames.
fn frame_kinds(bytes: &[u8]) -> Option<Vec<(u8, usize)>> {
    let mut out = Vec::new();
    let mut off = 0;
    while off < bytes.len() {
        let len_bytes: [u8; 4] = bytes.get(off..off + 4)?.try_into().ok()?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let kind = *bytes.get(off + 4)?;
        let end = off.checked_add(4 + len)?;
        if end > bytes.len() || len == 0 {
            return None;
        }
        out.push((kind, 4 + len));
        off = end;
    }
    Some(out)
}

impl World {
    /// Sets the probability that a chunk of room data between two peers is lost.
    pub fn set_frame_loss(&mut self, p: f64) {
        self.net.config.frame_loss = p;
    }

    /// Cuts the network between `side` and every other node (the registry stays reachable
    /// from both sides), until [`World::heal`].
    pub fn partition(&mut self, side: impl IntoIterator<Item = NodeId>) {
        let side: BTreeSet<NodeId> = side.into_iter().collect();
        let elapsed = self.elapsed();
        self.trace.record(
            elapsed,
            Host::Registry,
            "partition",
            side.len() as u64,
            String::new,
        );
        self.partition = Some(side);
    }

    /// Ends a partition.
    pub fn heal(&mut self) {
        let elapsed = self.elapsed();
        self.trace
            .record(elapsed, Host::Registry, "heal", 0, String::new);
        self.partition = None;
    }

    /// Whether a partition separates `a` from `b` now.
    pub fn cut(&self, a: Host, b: Host) -> bool {
        match (&self.partition, a, b) {
            (Some(side), Host::Node(a), Host::Node(b)) => side.contains(&a) != side.contains(&b),
            _ => false,
        }
    }

    /// Peer-to-peer frames sent so far, by kind.
    pub fn wire(&self) -> &WireStats {
        &self.wire
    }

    /// Times the node was restarted.
    pub fn incarnation(&self, id: NodeId) -> u32 {
        self.nodes[id.0].incarnation
    }

    /// Indices into the node's kept events where each restart began (see [`World::events`]).
    pub fn restarts_at(&self, id: NodeId) -> &[usize] {
        &self.nodes[id.0].restarts
    }

    /// Starts a node again after [`World::kill`] (or kills it first): a fresh state machine
    /// with the same configuration and address, as when a user starts the client again. It
    /// dials the registry at once; log it in with a command. Its kept events stay (a restart
    /// is marked, [`World::restarts_at`]).
    pub fn restart(&mut self, id: NodeId) {
        if self.nodes[id.0].alive {
            self.kill(id);
        }
        let elapsed = self.elapsed();
        self.trace
            .record(elapsed, Host::Node(id), "restart", 0, String::new);
        let wall = WALL0_MS + elapsed.as_millis() as u64;
        let n = &mut self.nodes[id.0];
        n.incarnation += 1;
        let stream = (id.0 as u64) | (u64::from(n.incarnation) << 40);
        let rng = StdRng::seed_from_u64(derive(self.seed, stream));
        n.node = Node::new(n.config.clone(), self.now, wall, rng);
        n.alive = true;
        n.wake = None;
        n.links.clear();
        n.restarts.push(n.events.len());
        let listen = n.listen;
        self.listeners.insert(listen, Host::Node(id));
        self.feed_node(id, p2pchat_peer::Input::Timeout);
    }

    /// Counts a chunk one peer sends another and decides whether the network drops it.
    pub(super) fn peer_chunk_dropped(&mut self, from: Host, to: Host, bytes: &Bytes) -> bool {
        let Some(frames) = frame_kinds(bytes) else {
            self.wire.unparsed_chunks += 1;
            return false;
        };
        let data = frames.iter().all(|(k, _)| ROOM_DATA_KINDS.contains(k));
        let loss = self.net.config.frame_loss;
        let drop = data
            && (self.cut(from, to) || (loss > 0.0 && self.fault_rng.random_bool(loss.min(1.0))));
        let mut messages = false;
        for (kind, len) in frames {
            messages |= kind == p2pchat_protocol::kind::ROOM_MESSAGE;
            let c = self.wire.by_kind.entry(kind).or_default();
            c.frames += 1;
            c.bytes += len as u64;
            if drop {
                c.dropped += 1;
            }
        }
        if messages {
            self.count_message_frames(bytes);
        }
        drop
    }

    /// Counts the full messages of the tracked room in a chunk by text (see
    /// [`World::frames_of`]).
    fn count_message_frames(&mut self, bytes: &Bytes) {
        let Some(h) = &mut self.hops else {
            return;
        };
        for f in chunk_frames(bytes) {
            if let Msg::RoomMessage { room, text, .. } = f.msg {
                if room == h.room {
                    *h.frames.entry(text).or_default() += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pchat_protocol::Frame;

    #[test]
    fn chunks_split_into_frames_or_not_at_all() {
        let a = Frame::event(Msg::Ping).to_bytes();
        let b = Frame::event(Msg::RoomUnlink { room: "r".into() }).to_bytes();
        let mut both = a.to_vec();
        both.extend_from_slice(&b);
        let kinds = frame_kinds(&both).unwrap();
        assert_eq!(kinds.len(), 2);
        assert_eq!(kinds[0], (Msg::Ping.kind(), a.len()));
        assert_eq!(kinds[1].1, b.len());
        assert!(frame_kinds(&both[..both.len() - 1]).is_none());
        assert!(frame_kinds(&[0, 0, 0, 0]).is_none());
        assert_eq!(frame_kinds(&[]), Some(Vec::new()));
    }
}
