//! What goes into and comes out of the [`Registry`](crate::Registry) state machine.

use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;

use crate::hasher::{HashDone, HashJob};
use crate::store::{StoreDone, StoreJob};

/// A TCP connection as the driver names it. The driver guarantees a closed connection's id is
/// never reused (the engine puts a generation in it), so late replies cannot reach a stranger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{:x}", self.0)
    }
}

/// One input to the registry.
#[derive(Debug)]
pub enum Input<'a> {
    /// A client connected.
    Connected {
        /// Its id.
        conn: ConnId,
        /// Its address.
        remote: SocketAddr,
    },
    /// Bytes arrived on a connection.
    Received {
        /// From which connection.
        conn: ConnId,
        /// The bytes, in stream order.
        bytes: &'a [u8],
    },
    /// A connection closed (for any reason, including our own `Close`).
    Closed {
        /// Which.
        conn: ConnId,
    },
    /// A UDP datagram arrived on the heartbeat socket.
    Datagram {
        /// Sender.
        from: SocketAddr,
        /// Payload.
        bytes: &'a [u8],
    },
    /// A store write finished (committed or failed).
    StoreDone(StoreDone),
    /// A password hash finished.
    HashDone(HashDone),
    /// A deadline from `poll_timeout` may have passed, or input left over from an earlier
    /// turn waits to be served (then `poll_timeout` is already due). Harmless when early.
    Timeout,
    /// The driver's output queue for a connection passed its soft cap (`blocked`), or drained
    /// back below it. While blocked, the registry decodes none of that connection's input, so
    /// a burst of pipelined requests cannot push the queue to its hard cap.
    Backpressure {
        /// Which connection.
        conn: ConnId,
        /// Over the soft cap (true) or drained (false).
        blocked: bool,
    },
    /// Begin a graceful shutdown: tell every client, close every connection.
    Shutdown,
}

/// One thing the driver must do.
#[derive(Debug)]
pub enum Output {
    /// Queue bytes on a connection.
    Send {
        /// Where.
        conn: ConnId,
        /// One or more whole frames.
        bytes: Bytes,
    },
    /// Flush what is queued on the connection, then close it.
    Close {
        /// Which.
        conn: ConnId,
        /// Why (for logs).
        reason: CloseReason,
    },
    /// Run a store write on the store thread; answer with `Input::StoreDone`.
    Store(StoreJob),
    /// Run a password hash on the hashing workers; answer with `Input::HashDone`.
    Hash(HashJob),
    /// Something worth logging or counting.
    Event(Event),
}

/// Why the registry closed a connection. Data, not an error: one client's misbehaviour ends
/// only that client's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// Bytes that do not decode.
    Malformed(String),
    /// A frame that is not allowed in the connection's state.
    Unexpected(&'static str),
    /// Wrong protocol version.
    BadVersion(u16),
    /// No hello within the handshake deadline.
    HandshakeTimeout,
    /// A started frame did not complete in time.
    FrameTimeout,
    /// Not logged in within the pre-login deadline.
    Idle,
    /// Closed while not logged in, to make room for a new connection.
    Evicted,
    /// Too much unprocessed input queued (requests sent far faster than served).
    Backlog,
    /// The session's heartbeats stopped.
    Expired,
    /// Too many connections.
    ServerFull,
    /// The session was taken over by a resume from another connection.
    Replaced,
    /// The registry is shutting down.
    Shutdown,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Malformed(why) => write!(f, "malformed frame: {why}"),
            CloseReason::Unexpected(what) => write!(f, "unexpected {what} frame"),
            CloseReason::BadVersion(v) => write!(f, "unsupported protocol version {v}"),
            CloseReason::HandshakeTimeout => f.write_str("no hello in time"),
            CloseReason::FrameTimeout => f.write_str("frame not completed in time"),
            CloseReason::Idle => f.write_str("not logged in in time"),
            CloseReason::Evicted => f.write_str("evicted before login to make room"),
            CloseReason::Backlog => f.write_str("too many requests queued"),
            CloseReason::Expired => f.write_str("heartbeats stopped"),
            CloseReason::ServerFull => f.write_str("server full"),
            CloseReason::Replaced => f.write_str("session resumed elsewhere"),
            CloseReason::Shutdown => f.write_str("shutting down"),
        }
    }
}

/// Notable things, for logs and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An account was created.
    Registered {
        /// Username.
        name: String,
    },
    /// A user came online.
    Online {
        /// Username.
        name: String,
        /// Advertised peer address.
        addr: SocketAddr,
    },
    /// A user went offline.
    Offline {
        /// Username.
        name: String,
        /// Why.
        why: OfflineReason,
    },
    /// A password login failed.
    LoginFailed {
        /// Username tried.
        name: String,
        /// From where.
        source: SocketAddr,
    },
    /// A store write failed: the binary logs it (and may decide to exit).
    StoreFailed(String),
}

/// Why a user went offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfflineReason {
    /// Explicit logout.
    Logout,
    /// TCP connection closed.
    Disconnected,
    /// Heartbeats stopped.
    Expired,
    /// Replaced by a resume.
    Replaced,
}

/// Hashes a [`ConnId`] with one multiply instead of SipHash. The ids are the driver's (the
/// engine's slab index and generation), never chosen by the network, so flooding attacks on
/// the hash do not apply, and a request looks its connection up several times (a `ping` about
/// eight times): SipHash was ~13 % of the registry's user-space instructions per request
/// (performance.md, "Against Redis over TLS").
#[derive(Default)]
pub(crate) struct ConnHasher(p2pchat_engine::IdHasher);

impl std::hash::Hasher for ConnHasher {
    fn finish(&self) -> u64 {
        // Fold the high half (the engine's slab index) onto the low one before mixing, then
        // fold the product's well-mixed high bits back down: hashbrown takes the bucket from
        // the low bits and the tag from the top seven.
        let id = self.0.finish();
        let x = (id ^ (id >> 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^ (x >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    fn write_u64(&mut self, n: u64) {
        self.0.write_u64(n);
    }
}

/// Builds [`ConnHasher`]s; also for maps keyed by [`crate::store::AccountId`] (SQLite row ids:
/// handed out by the store in sequence, never chosen by the network), which a room's join
/// reply and every push look up once per member.
pub(crate) type IdKeyed = std::hash::BuildHasherDefault<ConnHasher>;

/// A map keyed by connection, hashed with [`ConnHasher`], its entries dense (`dense.rs`).
pub(crate) type ConnTable<V> =
    crate::dense::DenseMap<ConnId, V, std::hash::BuildHasherDefault<ConnHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::{BuildHasher, BuildHasherDefault};

    #[test]
    fn connection_ids_spread_over_buckets_and_tags() {
        // Ids as the binary makes them: dense slab indices in the high half, a generation in
        // the low half.
        let hash = |id: ConnId| BuildHasherDefault::<ConnHasher>::default().hash_one(id);
        let ids: Vec<ConnId> = (0..4096u64).map(|i| ConnId((i << 32) | 1)).collect();
        let buckets: HashSet<u64> = ids.iter().map(|&id| hash(id) & 4095).collect();
        let tags: HashSet<u64> = ids.iter().map(|&id| hash(id) >> 57).collect();
        // Random hashes would fill ~63 % of 4,096 buckets and all 128 tags.
        assert!(buckets.len() > 2_300, "{} buckets", buckets.len());
        assert!(tags.len() > 120, "{} tags", tags.len());
        // A reused slot with a new generation is another key.
        assert_ne!(hash(ConnId((5 << 32) | 1)), hash(ConnId((5 << 32) | 2)));
    }
}
