//! What the reactor reports: [`NetEvent`], and the data inside it.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;

use crate::token::{ConnId, ListenerId, UdpId};

/// One thing that happened during [`Reactor::turn`](crate::Reactor::turn).
///
/// Per connection the order is: `Accepted` or `Connected` (not for a failed connect), then any
/// number of `Received` in stream order, then exactly one `Closed`. A `ConnId` returned by
/// `connect()` that fails to connect gets only `Closed`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum NetEvent {
    /// A listener accepted a new connection; it is open and being read.
    Accepted {
        /// The listener that accepted it.
        listener: ListenerId,
        /// The new connection.
        conn: ConnId,
        /// The remote address of the new connection.
        remote: SocketAddr,
    },
    /// An outgoing [`connect`](crate::Reactor::connect) completed; bytes queued before now are
    /// being written.
    Connected {
        /// The connection returned by `connect`.
        conn: ConnId,
    },
    /// A chunk of the byte stream, in order. Chunk boundaries mean nothing (no framing).
    Received {
        /// The connection the bytes came from.
        conn: ConnId,
        /// The bytes.
        bytes: Bytes,
    },
    /// The connection is gone. Emitted exactly once per `ConnId`, whatever the cause; after it
    /// the id is never recognised again.
    Closed {
        /// The connection that closed.
        conn: ConnId,
        /// Why it closed.
        reason: CloseReason,
    },
    /// A UDP datagram arrived.
    Datagram {
        /// The socket it arrived on.
        sock: UdpId,
        /// The sender.
        from: SocketAddr,
        /// The whole datagram.
        bytes: Bytes,
    },
    /// The [`Waker`](mio::Waker) was woken (at least once) since the last turn.
    Woken,
    /// A signal arrived (after [`enable_signals`](crate::Reactor::enable_signals)).
    Signal(Signal),
}

/// The process signals the reactor reports.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Signal {
    /// `SIGINT` (Ctrl-C).
    Interrupt,
    /// `SIGTERM`.
    Terminate,
    /// `SIGHUP`.
    Hangup,
}

impl Signal {
    pub(crate) fn from_raw(signal: libc::c_int) -> Option<Self> {
        match signal {
            libc::SIGINT => Some(Signal::Interrupt),
            libc::SIGTERM => Some(Signal::Terminate),
            libc::SIGHUP => Some(Signal::Hangup),
            _ => None,
        }
    }
}

/// Why a connection closed. Carried by [`NetEvent::Closed`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum CloseReason {
    /// The remote end closed its side in order (read returned end of stream). Output still
    /// queued for it is dropped: the engine does not support half-closed connections.
    Remote,
    /// A read or write failed with this error (for example `ConnectionReset`).
    Io(io::ErrorKind),
    /// An outgoing connect did not complete within `Config::connect_timeout`.
    ConnectTimeout,
    /// An outgoing connect failed (for example `ConnectionRefused`).
    ConnectFailed(io::ErrorKind),
    /// A `send` would have grown the write queue past `Config::write_hard_cap`: the remote end
    /// does not read fast enough. Queued output is dropped.
    SlowConsumer,
    /// [`close`](crate::Reactor::close) or [`abort`](crate::Reactor::abort) was called.
    Local,
    /// [`shutdown`](crate::Reactor::shutdown) was called.
    Shutdown,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Remote => f.write_str("closed by the remote end"),
            CloseReason::Io(kind) => write!(f, "I/O error: {kind}"),
            CloseReason::ConnectTimeout => f.write_str("connect timed out"),
            CloseReason::ConnectFailed(kind) => write!(f, "connect failed: {kind}"),
            CloseReason::SlowConsumer => f.write_str("slow consumer: write queue over its cap"),
            CloseReason::Local => f.write_str("closed locally"),
            CloseReason::Shutdown => f.write_str("shut down"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_map_from_raw_numbers() {
        assert_eq!(Signal::from_raw(libc::SIGINT), Some(Signal::Interrupt));
        assert_eq!(Signal::from_raw(libc::SIGTERM), Some(Signal::Terminate));
        assert_eq!(Signal::from_raw(libc::SIGHUP), Some(Signal::Hangup));
        assert_eq!(Signal::from_raw(libc::SIGUSR1), None);
    }

    #[test]
    fn close_reasons_display() {
        assert_eq!(
            CloseReason::ConnectFailed(io::ErrorKind::ConnectionRefused).to_string(),
            "connect failed: connection refused"
        );
        assert_eq!(CloseReason::Remote.to_string(), "closed by the remote end");
    }
}
