//! UDP sockets: best-effort `send_to`, and a receive loop that drains to `WouldBlock`, one
//! `recv_from` per datagram or (with `Config::udp_batch` > 1 on Linux) batches of `recvmmsg`.

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use log::{debug, trace, warn};
use mio::net::UdpSocket;
use mio::Interest;

use super::{Reactor, Resume, UdpEntry};
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
        if self.config.udp_batch > 1 {
            // Only the batched path reads control data; the counter is informational.
            if let Err(e) = super::mmsg::enable_rxq_overflow(&sock) {
                debug!("SO_RXQ_OVFL on {addr}: {e}");
            }
        }
        let id = UdpId::new(self.udp.vacant_key());
        self.poll
            .registry()
            .register(&mut sock, id.token(), Interest::READABLE)?;
        self.udp.insert(UdpEntry {
            sock,
            kernel_drops: 0,
        });
        debug!("UDP bound on {addr} as {id:?}");
        Ok(id)
    }

    /// The bound address (useful after binding port 0).
    pub fn udp_addr(&self, id: UdpId) -> Option<SocketAddr> {
        self.udp.get(id.slot())?.sock.local_addr().ok()
    }

    /// Sets the socket's kernel receive buffer (`SO_RCVBUF`), so a burst of datagrams waits in
    /// the kernel instead of being dropped while the loop is busy. Tries `SO_RCVBUFFORCE`
    /// first (allowed with `CAP_NET_ADMIN`), which may pass `net.core.rmem_max`; otherwise the
    /// kernel clamps the request to that limit. Returns the size in effect, as the kernel
    /// reports it (Linux doubles the request to account for its bookkeeping).
    pub fn set_udp_recv_buffer(&mut self, id: UdpId, bytes: usize) -> io::Result<usize> {
        let entry = self
            .udp
            .get(id.slot())
            .ok_or_else(|| io::Error::other("unknown UDP socket"))?;
        let sock = socket2::SockRef::from(&entry.sock);
        if !force_recv_buffer(&entry.sock, bytes) {
            sock.set_recv_buffer_size(bytes)?;
        }
        sock.recv_buffer_size()
    }

    /// The kernel's count of datagrams it dropped on this socket because the receive buffer was
    /// full, as last reported with a received datagram (`SO_RXQ_OVFL`; needs
    /// `Config::udp_batch` > 1 on Linux, otherwise 0).
    pub fn udp_kernel_drops(&self, id: UdpId) -> u64 {
        self.udp
            .get(id.slot())
            .map_or(0, |e| u64::from(e.kernel_drops))
    }

    /// Sends one datagram now. Best effort, like UDP itself: returns `false` (and counts it in
    /// `Stats::udp_dropped`) if the socket buffer is full, the send fails or the id is unknown.
    /// Nothing is queued.
    pub fn send_to(&mut self, sock: UdpId, to: SocketAddr, bytes: &[u8]) -> bool {
        let Some(socket) = self.udp.get(sock.slot()).map(|e| &e.sock) else {
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
        #[cfg(target_os = "linux")]
        if self.config.udp_batch > 1 {
            self.recv_batched(id);
            return;
        }
        for _ in 0..MAX_DATAGRAMS_PER_TURN {
            let Some(socket) = self.udp.get(id.slot()).map(|e| &e.sock) else {
                return;
            };
            self.stats.udp_recv_calls += 1;
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

#[cfg(target_os = "linux")]
impl Reactor {
    /// `recv_ready` with `recvmmsg`: batches of up to `Config::udp_batch`, the same per-turn
    /// cap on datagrams.
    fn recv_batched(&mut self, id: UdpId) {
        let mut buffers = match self.mmsg.take() {
            Some(b) => b,
            None => Box::new(super::mmsg::MmsgBuffers::new(
                self.config.udp_batch,
                self.config.udp_slot_len,
            )),
        };
        let mut batch = super::mmsg::Batch::default();
        let mut taken = 0;
        let mut drained = false;
        while taken < MAX_DATAGRAMS_PER_TURN {
            let Some(entry) = self.udp.get_mut(id.slot()) else {
                drained = true;
                break;
            };
            batch.datagrams.clear();
            batch.kernel_drops = None;
            self.stats.udp_recv_calls += 1;
            match buffers.recv_batch(&entry.sock, &mut batch) {
                Ok(()) => {
                    if let Some(d) = batch.kernel_drops {
                        entry.kernel_drops = d;
                    }
                    taken += batch.received;
                    self.stats.datagrams_in += batch.datagrams.len() as u64;
                    for (from, bytes) in batch.datagrams.drain(..) {
                        self.pending.push(NetEvent::Datagram {
                            sock: id,
                            from,
                            bytes,
                        });
                    }
                    self.stats.udp_truncated += std::mem::take(&mut batch.truncated);
                    if batch.received == 0 {
                        drained = true;
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
                    ) =>
                {
                    trace!("{id:?} recvmmsg: {e}");
                }
                Err(e) => {
                    warn!("{id:?} recvmmsg: {e}");
                    drained = true;
                    break;
                }
            }
        }
        self.mmsg = Some(buffers);
        if !drained {
            self.resume.push(Resume::Recv(id));
        }
    }
}

/// `SO_RCVBUFFORCE`: like `SO_RCVBUF` but not clamped to `rmem_max`; needs `CAP_NET_ADMIN`.
/// Returns whether it worked.
fn force_recv_buffer(sock: &UdpSocket, bytes: usize) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let Ok(value) = libc::c_int::try_from(bytes) else {
            return false;
        };
        // SAFETY: a plain setsockopt with a pointer to a live `c_int` and its size.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        rc == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (sock, bytes);
        false
    }
}
