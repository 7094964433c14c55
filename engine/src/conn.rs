//! One TCP connection: its socket, state, write queue and the syscall loops on it.
//!
//! Everything here works on a single connection and reports outcomes as values; the reactor
//! decides what they mean for the others (events, timers, removal from the slab).

use std::io::{self, Read, Write};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use mio::net::TcpStream;
use mio::{Interest, Registry};

use crate::event::{CloseReason, NetEvent};
use crate::token::ConnId;

/// A drained write buffer up to this size goes back to the reactor's spare pool for the next
/// connection that sends; a bigger one (a burst) is freed.
pub(crate) const KEEP_WRITE_CAPACITY: usize = 16 * 1024;

/// At most this much unread input is discarded before a graceful close (see
/// [`Conn::discard_input`]).
const MAX_DISCARD_ON_CLOSE: usize = 1024 * 1024;

/// Where a connection is in its life. Listed in lifecycle order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ConnState {
    /// An outgoing nonblocking connect is in progress; `send` queues without writing.
    ExpectConnect,
    /// Established: reading (unless paused by backpressure) and writing.
    Open,
    /// `close()` or `shutdown()` was called: never read again; flush the queue, then report
    /// `reason`. `connected` is false when the close came before the connect completed.
    Closing {
        reason: CloseReason,
        connected: bool,
    },
}

/// How a read loop ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ReadEnd {
    /// Drained: the next readiness edge will tell us about new data.
    WouldBlock,
    /// Stopped at the per-turn budget with data possibly left: resume next turn, no edge will
    /// come for data that is already there.
    Budget,
    /// Orderly end of stream from the remote end.
    Eof,
    /// The read failed.
    Failed(io::ErrorKind),
}

/// What one [`Conn::flush`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Flushed {
    /// Bytes the kernel took.
    pub(crate) written: usize,
    /// `write` calls made, including the one that returned `WouldBlock`.
    pub(crate) calls: u64,
    /// The error that stopped it; the connection is broken.
    pub(crate) failure: Option<io::ErrorKind>,
}

/// Result of checking a nonblocking connect after a readiness event.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ConnectCheck {
    /// Not finished: the event was spurious.
    Pending,
    Connected,
    Failed(io::ErrorKind),
}

pub(crate) struct Conn {
    pub(crate) id: ConnId,
    pub(crate) stream: TcpStream,
    pub(crate) state: ConnState,
    /// Output not yet accepted by the kernel: replies `send` appended during this loop
    /// iteration (flushed before the next poll), plus whatever a write left after `WouldBlock`
    /// (or queued before a connect completes).
    write_buf: BytesMut,
    /// The connection is on the reactor's list of connections to flush before the next poll.
    pub(crate) dirty: bool,
    /// Backpressure: reading stopped because `write_buf` passed the soft cap.
    pub(crate) read_paused: bool,
    /// The interest currently registered with mio, to skip no-op reregistrations.
    registered: Interest,
    /// This connection's entry in the reactor's `Timers`, if any.
    pub(crate) deadline: Option<Instant>,
    /// The turn that last read this connection, so a connection that is both resumed and
    /// readable is read once per turn, not twice.
    pub(crate) read_turn: u64,
}

impl Conn {
    pub(crate) fn new(
        id: ConnId,
        stream: TcpStream,
        state: ConnState,
        registered: Interest,
    ) -> Self {
        Self {
            id,
            stream,
            state,
            write_buf: BytesMut::new(),
            dirty: false,
            read_paused: false,
            registered,
            deadline: None,
            read_turn: 0,
        }
    }

    /// Bytes queued in user space, not yet written to the socket.
    pub(crate) fn queued(&self) -> usize {
        self.write_buf.len()
    }

    /// The caller may still send on it (it is not closing).
    pub(crate) fn is_open(&self) -> bool {
        matches!(self.state, ConnState::ExpectConnect | ConnState::Open)
    }

    /// The socket is connected, so writing is possible.
    pub(crate) fn is_established(&self) -> bool {
        matches!(
            self.state,
            ConnState::Open
                | ConnState::Closing {
                    connected: true,
                    ..
                }
        )
    }

    /// Reregisters with mio if the interest this state wants differs from what is registered.
    pub(crate) fn sync_interest(&mut self, registry: &Registry) -> io::Result<()> {
        let want = interest_for(self.state, self.read_paused, self.queued() > 0);
        if want == self.registered {
            return Ok(());
        }
        registry.reregister(&mut self.stream, self.id.token(), want)?;
        self.registered = want;
        Ok(())
    }

    /// mio's recipe for a nonblocking connect: `take_error`, then `peer_addr`; `NotConnected`
    /// (or `EINPROGRESS`) means the event was spurious and we keep waiting.
    pub(crate) fn check_connect(&self) -> ConnectCheck {
        match self.stream.take_error() {
            Ok(Some(e)) | Err(e) => return ConnectCheck::Failed(e.kind()),
            Ok(None) => {}
        }
        match self.stream.peer_addr() {
            Ok(_) => ConnectCheck::Connected,
            Err(e)
                if e.kind() == io::ErrorKind::NotConnected
                    || e.raw_os_error() == Some(libc::EINPROGRESS) =>
            {
                ConnectCheck::Pending
            }
            Err(e) => ConnectCheck::Failed(e.kind()),
        }
    }

    /// Reads until `WouldBlock`, end of stream, an error, or `budget` bytes, pushing one
    /// `Received` per successful read. Returns the bytes read and why it stopped.
    ///
    /// With `short_read_drains` a read that returns less than it asked for ends the loop as
    /// if it had hit `WouldBlock`, saving the extra `read` that would only say `EAGAIN` (one
    /// of the three system calls of a request-reply round trip). That is sound only for a
    /// readiness event from Linux epoll in edge-triggered mode (what mio uses): a short read
    /// leaves the receive queue empty, and any byte that arrives later raises a new edge. The
    /// caller passes `false` when the event also reported a hang-up or an error (the end of
    /// stream must then be read now: no further edge will announce it) and for resumed reads.
    pub(crate) fn read_ready(
        &mut self,
        scratch: &mut [u8],
        budget: usize,
        short_read_drains: bool,
        events: &mut Vec<NetEvent>,
    ) -> (usize, ReadEnd) {
        let mut total = 0;
        loop {
            let want = scratch.len().min(budget - total);
            if want == 0 {
                return (total, ReadEnd::Budget);
            }
            match self.stream.read(&mut scratch[..want]) {
                Ok(0) => return (total, ReadEnd::Eof),
                Ok(n) => {
                    total += n;
                    // One right-sized copy out of the shared scratch buffer: a small message
                    // does not pin a large allocation while the caller holds its `Bytes`.
                    events.push(NetEvent::Received {
                        conn: self.id,
                        bytes: Bytes::copy_from_slice(&scratch[..n]),
                    });
                    if short_read_drains && n < want {
                        return (total, ReadEnd::WouldBlock);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return (total, ReadEnd::WouldBlock)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return (total, ReadEnd::Failed(e.kind())),
            }
        }
    }

    /// Appends to the write queue (the caller has checked the hard cap). `spare` is an empty
    /// buffer to use if this connection holds none, so steady traffic reuses allocations.
    pub(crate) fn enqueue(&mut self, bytes: &[u8], spare: &mut Vec<BytesMut>) {
        if self.write_buf.capacity() == 0 {
            if let Some(buf) = spare.pop() {
                self.write_buf = buf;
            }
        }
        self.write_buf.extend_from_slice(bytes);
    }

    /// Hands back the write buffer once the queue is empty, so an idle connection holds no
    /// output memory; `None` while output is queued or when it holds nothing worth reusing.
    pub(crate) fn take_drained_buffer(&mut self) -> Option<BytesMut> {
        if !self.write_buf.is_empty() || self.write_buf.capacity() == 0 {
            return None;
        }
        let mut buf = std::mem::take(&mut self.write_buf);
        buf.clear();
        // After `advance` the free space may sit at the front; a unique buffer gets it back on
        // the next reserve, so `capacity()` here can understate what it will hold.
        (buf.capacity() <= KEEP_WRITE_CAPACITY).then_some(buf)
    }

    /// Writes queued output until the queue is empty or the socket would block. Returns what
    /// happened, including the number of `write` calls made (for `Stats::writes`).
    pub(crate) fn flush(&mut self) -> Flushed {
        let mut written = 0;
        let mut calls = 0;
        let mut failure = None;
        while !self.write_buf.is_empty() {
            calls += 1;
            match self.stream.write(&self.write_buf) {
                Ok(0) => {
                    failure = Some(io::ErrorKind::WriteZero);
                    break;
                }
                Ok(n) => {
                    written += n;
                    self.write_buf.advance(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    failure = Some(e.kind());
                    break;
                }
            }
        }
        Flushed {
            written,
            calls,
            failure,
        }
    }

    /// Drops the write queue; returns how many bytes it held.
    pub(crate) fn clear_queue(&mut self) -> usize {
        let dropped = self.write_buf.len();
        self.write_buf = BytesMut::new();
        dropped
    }

    /// Reads and throws away input that is already buffered, up to a bound. Closing a socket
    /// with unread input makes the kernel send RST instead of FIN, and an RST can make the
    /// remote end lose the tail of what we just flushed to it.
    pub(crate) fn discard_input(&mut self, scratch: &mut [u8]) {
        let mut discarded = 0;
        while discarded < MAX_DISCARD_ON_CLOSE {
            match self.stream.read(scratch) {
                Ok(0) => return,
                Ok(n) => discarded += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }
}

/// The interest a connection registers: WRITABLE only while output is queued (or a connect is
/// pending, which completes as a writable event), READABLE only while established, not
/// closing and not paused by backpressure.
pub(crate) fn interest_for(state: ConnState, read_paused: bool, has_output: bool) -> Interest {
    match state {
        // A pending connect reports completion as WRITABLE; a closing connection only writes.
        ConnState::ExpectConnect | ConnState::Closing { .. } => Interest::WRITABLE,
        ConnState::Open => match (read_paused, has_output) {
            (false, false) => Interest::READABLE,
            (false, true) => Interest::READABLE | Interest::WRITABLE,
            // Paused implies queued output; WRITABLE keeps the registration non-empty anyway.
            (true, _) => Interest::WRITABLE,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_entry_stays_small() {
        // Every open connection costs one entry in the reactor's slab (memory per online
        // peer, docs/performance.md): no address (the caller has it), no inline buffer.
        assert!(
            std::mem::size_of::<Conn>() <= 88,
            "{} bytes",
            std::mem::size_of::<Conn>()
        );
    }

    #[test]
    fn writable_only_while_output_is_queued() {
        assert_eq!(
            interest_for(ConnState::Open, false, false),
            Interest::READABLE
        );
        assert_eq!(
            interest_for(ConnState::Open, false, true),
            Interest::READABLE | Interest::WRITABLE
        );
    }

    #[test]
    fn backpressure_drops_readable() {
        assert_eq!(
            interest_for(ConnState::Open, true, true),
            Interest::WRITABLE
        );
    }

    #[test]
    fn connecting_and_closing_never_read() {
        assert_eq!(
            interest_for(ConnState::ExpectConnect, false, false),
            Interest::WRITABLE
        );
        let closing = ConnState::Closing {
            reason: CloseReason::Local,
            connected: true,
        };
        assert!(!interest_for(closing, false, true).is_readable());
    }
}
