//! UDP sockets: best-effort `send_to`, and a receive loop that drains to `WouldBlock`.

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use log::{debug, trace, warn};
use mio::net::UdpSocket;
use mio::Interest;

use super::{Reactor, Resume};
use crate::event::NetEvent;
use crate::token::{UdpId, MAX_UDP};

/// Datagrams read from one socket per turn before other sources get a go.
const MAX_DATAGRAMS_PER_TURN: usize = 256;

impl Reactor {
    /// Binds a UDP socket; each datagram that arrives is reported as [`NetEvent::Datagram`].
    pub fn bind_udp(&mut self, addr: SocketAddr) -> io::Result<UdpId> {
        if self.udp.len() >= MAX_UDP {
            return Err(io::Error::other("too many UDP sockets"));
        }
        let mut sock = UdpSocket::bind(addr)?;
        let id = UdpId::new(self.udp.vacant_key());
        self.poll
            .registry()
            .register(&mut sock, id.token(), Interest::READABLE)?;
        self.udp.insert(sock);
        debug!("UDP bound on {addr} as {id:?}");
        Ok(id)
    }

    /// The bound address (useful after binding port 0).
    pub fn udp_addr(&self, id: UdpId) -> Option<SocketAddr> {
        self.udp.get(id.slot())?.local_addr().ok()
    }

    /// Sends one datagram now. Best effort, like UDP itself: returns `false` (and counts it in
    /// `Stats::udp_dropped`) if the socket buffer is full, the send fails or the id is unknown.
    /// Nothing is queued.
    pub fn send_to(&mut self, sock: UdpId, to: SocketAddr, bytes: &[u8]) -> bool {
        let Some(socket) = self.udp.get(sock.slot()) else {
            self.stats.udp_dropped += 1;
            return false;
        };
        loop {
            match socket.send_to(bytes, to) {
                Ok(n) if n == bytes.len() => {
                    self.stats.datagrams_out += 1;
                    return true;
                }
                Ok(n) => trace!("{sock:?} short datagram to {to}: {n} of {}", bytes.len()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => trace!("{sock:?} send_to {to}: {e}"),
            }
            self.stats.udp_dropped += 1;
            return false;
        }
    }

    /// Receives until `WouldBlock`, up to `MAX_DATAGRAMS_PER_TURN`.
    pub(super) fn recv_ready(&mut self, id: UdpId) {
        for _ in 0..MAX_DATAGRAMS_PER_TURN {
            let Some(socket) = self.udp.get(id.slot()) else {
                return;
            };
            match socket.recv_from(&mut self.scratch) {
                Ok((n, from)) => {
                    self.stats.datagrams_in += 1;
                    self.pending.push(NetEvent::Datagram {
                        sock: id,
                        from,
                        bytes: Bytes::copy_from_slice(&self.scratch[..n]),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // An ICMP error for an earlier send_to, reported on the socket: not fatal.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
                    ) =>
                {
                    trace!("{id:?} recv_from: {e}");
                }
                Err(e) => {
                    warn!("{id:?} recv_from: {e}");
                    return;
                }
            }
        }
        self.resume.push(Resume::Recv(id));
    }
}
