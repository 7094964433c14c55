//! Listening sockets and the accept loop, including what to do when descriptors run out.
//!
//! `EMFILE`/`ENFILE` leave the pending connection in the backlog, so the listener stays
//! readable: retrying at once spins, and giving up leaves clients hanging with no new edge to
//! retry on. We keep one descriptor in reserve (`/dev/null`); when accept runs out, we close the
//! reserve, accept the connection, close it at once (the client sees the connection closed, not
//! a silent hang), and reopen the reserve. If even that fails, accepting backs off for
//! `ACCEPT_BACKOFF` (an internal deadline that `turn` waits for), never a busy loop.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};
use mio::Interest;
use socket2::{Domain, Protocol, Socket, Type};

use super::{Reactor, Resume};
use crate::conn::{Conn, ConnState};
use crate::event::NetEvent;
use crate::token::{ConnId, ListenerId, MAX_CONN_INDEX, MAX_LISTENERS};

/// Accepts per listener per turn before other sources get a go; the rest continue next turn.
const MAX_ACCEPTS_PER_TURN: usize = 1024;

/// How long to stop accepting after an error that retrying at once would not fix.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

impl Reactor {
    /// Binds a TCP listener (`SO_REUSEADDR`, nonblocking, backlog `Config::backlog`) and
    /// starts accepting. Each new connection is reported as [`NetEvent::Accepted`].
    pub fn listen(&mut self, addr: SocketAddr) -> io::Result<ListenerId> {
        if self.listeners.len() >= MAX_LISTENERS {
            return Err(io::Error::other("too many listeners"));
        }
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        // Lets a restarted registry bind its port while old connections sit in TIME_WAIT.
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(self.config.backlog)?;
        let mut listener = TcpListener::from_std(socket.into());
        let id = ListenerId::new(self.listeners.vacant_key());
        self.poll
            .registry()
            .register(&mut listener, id.token(), Interest::READABLE)?;
        self.listeners.insert(listener);
        debug!("listening on {addr} as {id:?}");
        Ok(id)
    }

    /// The bound address (useful after binding port 0). `None` once closed.
    pub fn listener_addr(&self, id: ListenerId) -> Option<SocketAddr> {
        self.listeners.get(id.slot())?.local_addr().ok()
    }

    /// Stops accepting: closes every listener. Connections already accepted are untouched.
    pub fn close_listeners(&mut self) {
        for mut listener in self.listeners.drain() {
            if let Err(e) = self.poll.registry().deregister(&mut listener) {
                debug!("deregister listener: {e}");
            }
        }
        self.accept_retry_at = None;
    }

    /// Accepts until `WouldBlock` (edge-triggered), up to `MAX_ACCEPTS_PER_TURN`.
    pub(super) fn accept_ready(&mut self, id: ListenerId, now: Instant) {
        for _ in 0..MAX_ACCEPTS_PER_TURN {
            let Some(listener) = self.listeners.get(id.slot()) else {
                return;
            };
            match listener.accept() {
                Ok((stream, remote)) => {
                    self.fd_exhausted = false;
                    self.adopt(id, stream, remote);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_per_connection(&e) => {
                    // The failed connection is gone from the queue; the next one may be fine.
                    self.stats.accept_errors += 1;
                    debug!("accept on {id:?}: {e}");
                }
                Err(e) if is_out_of_descriptors(&e) => {
                    self.stats.accept_errors += 1;
                    if !self.fd_exhausted {
                        warn!("accept on {id:?}: {e}; shedding new connections");
                        self.fd_exhausted = true;
                    }
                    match self.shed_one(id) {
                        Shed::One => {}
                        Shed::Drained => return,
                        Shed::Failed => {
                            self.accept_retry_at = Some(now + ACCEPT_BACKOFF);
                            return;
                        }
                    }
                }
                Err(e) => {
                    self.stats.accept_errors += 1;
                    warn!("accept on {id:?}: {e}; retrying in {ACCEPT_BACKOFF:?}");
                    self.accept_retry_at = Some(now + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
        self.resume.push(Resume::Accept(id));
    }

    /// The accept back-off has ended: reopen the reserve if it was lost and try every listener.
    pub(super) fn retry_accept(&mut self, now: Instant) {
        self.accept_retry_at = None;
        if self.reserve_fd.is_none() {
            self.reserve_fd = open_reserve();
        }
        let ids: Vec<ListenerId> = self
            .listeners
            .iter()
            .map(|(slot, _)| ListenerId::new(slot))
            .collect();
        for id in ids {
            self.accept_ready(id, now);
        }
    }

    /// Spends the reserve descriptor to accept one pending connection and close it.
    fn shed_one(&mut self, id: ListenerId) -> Shed {
        let Some(reserve) = self.reserve_fd.take() else {
            return Shed::Failed;
        };
        drop(reserve);
        let shed = match self.listeners.get(id.slot()).map(TcpListener::accept) {
            Some(Ok((stream, remote))) => {
                drop(stream);
                self.stats.accept_dropped += 1;
                debug!("shed connection from {remote}: out of descriptors");
                Shed::One
            }
            // Linux allocates the descriptor before looking at the queue, so EMFILE does not
            // mean a connection is waiting; WouldBlock now says none is.
            Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => Shed::Drained,
            Some(Err(e)) => {
                debug!("accept with the reserve descriptor freed: {e}");
                Shed::Failed
            }
            None => Shed::Drained,
        };
        self.reserve_fd = open_reserve();
        if self.reserve_fd.is_none() {
            return Shed::Failed;
        }
        shed
    }

    fn adopt(&mut self, listener: ListenerId, mut stream: TcpStream, remote: SocketAddr) {
        let slot = self.conns.vacant_key();
        if slot > MAX_CONN_INDEX {
            warn!("connection table full; dropping connection from {remote}");
            self.stats.accept_dropped += 1;
            return;
        }
        if let Err(e) = stream.set_nodelay(true) {
            debug!("TCP_NODELAY for {remote}: {e}");
        }
        let conn = ConnId::new(slot, self.bump_generation());
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, conn.token(), Interest::READABLE)
        {
            warn!("register connection from {remote}: {e}");
            self.stats.accept_errors += 1;
            self.stats.accept_dropped += 1;
            return;
        }
        self.conns
            .insert(Conn::new(conn, stream, ConnState::Open, Interest::READABLE));
        self.stats.accepted += 1;
        debug!("{conn} accepted from {remote}");
        self.pending.push(NetEvent::Accepted {
            listener,
            conn,
            remote,
        });
    }
}

/// What spending the reserve descriptor achieved.
enum Shed {
    /// One pending connection was accepted and closed; there may be more.
    One,
    /// Nothing was pending: wait for the next readiness edge.
    Drained,
    /// No reserve, or accept failed even with it: back off.
    Failed,
}

/// The descriptor kept in reserve for `EMFILE`. `None` if it cannot be opened; accept then
/// falls back to backing off.
pub(super) fn open_reserve() -> Option<File> {
    match File::open("/dev/null") {
        Ok(file) => Some(file),
        Err(e) => {
            debug!("cannot open the reserve descriptor: {e}");
            None
        }
    }
}

fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Errors that concern only the connection being accepted (accept(2): Linux passes pending
/// network errors of the new socket to `accept`; they should be treated like `EAGAIN`).
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    ) || matches!(
        e.raw_os_error(),
        Some(
            libc::EPROTO
                | libc::EPERM
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    )
}
