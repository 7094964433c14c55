//! Batched UDP receive with `recvmmsg(2)` (Linux): up to `Config::udp_batch` datagrams per
//! system call, each into its own slot of `Config::udp_slot_len` bytes, with the socket's
//! kernel drop counter (`SO_RXQ_OVFL`) read from the control data.
//!
//! The datagrams of one call are copied into one shared allocation and handed out as slices of
//! it, so a batch costs one allocation, not one per datagram.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use bytes::{Bytes, BytesMut};
use mio::net::UdpSocket;

/// Control buffer per message: room for one `SO_RXQ_OVFL` (a `u32`) and then some, 8-aligned.
const CONTROL_WORDS: usize = 8;

/// One received datagram: where it came from and its place in the batch buffer.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    pub(super) from: SocketAddr,
    start: usize,
    len: usize,
}

/// What one `recv_batch` call got.
#[derive(Debug, Default)]
pub(super) struct Batch {
    /// Complete datagrams, in arrival order.
    pub(super) datagrams: Vec<(SocketAddr, Bytes)>,
    /// Datagrams longer than a slot: the kernel cut them, so they are dropped.
    pub(super) truncated: u64,
    /// The socket's cumulative kernel drop counter, if the kernel reported it.
    pub(super) kernel_drops: Option<u32>,
    /// Messages the call returned (complete or not); 0 means `WouldBlock`.
    pub(super) received: usize,
}

/// Reusable buffers for `recvmmsg`. The pointers inside the headers are rebuilt on every call,
/// so nothing here is self-referential between calls.
pub(super) struct MmsgBuffers {
    slot_len: usize,
    data: Box<[u8]>,
    addrs: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    control: Vec<[u64; CONTROL_WORDS]>,
    headers: Vec<libc::mmsghdr>,
    slots: Vec<Slot>,
}

impl MmsgBuffers {
    pub(super) fn new(batch: usize, slot_len: usize) -> Self {
        let batch = batch.max(1);
        let slot_len = slot_len.max(1);
        // SAFETY: all-zero is a valid value for these plain C structs (null pointers, zero
        // lengths); every field that matters is set before each call.
        let zero_addr: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let zero_iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        // SAFETY: as above.
        let zero_hdr: libc::mmsghdr = unsafe { mem::zeroed() };
        Self {
            slot_len,
            data: vec![0; batch * slot_len].into_boxed_slice(),
            addrs: vec![zero_addr; batch],
            iovecs: vec![zero_iov; batch],
            control: vec![[0; CONTROL_WORDS]; batch],
            headers: vec![zero_hdr; batch],
            slots: Vec::with_capacity(batch),
        }
    }

    /// One `recvmmsg` call on `socket` (nonblocking). `Err` is the call's error, `WouldBlock`
    /// included; a datagram from an address we cannot parse is skipped.
    pub(super) fn recv_batch(&mut self, socket: &UdpSocket, out: &mut Batch) -> io::Result<()> {
        let batch = self.headers.len();
        let base = self.data.as_mut_ptr();
        for i in 0..batch {
            self.iovecs[i] = libc::iovec {
                // SAFETY: `i * slot_len` is inside `data`, which holds `batch * slot_len` bytes.
                iov_base: unsafe { base.add(i * self.slot_len) }.cast(),
                iov_len: self.slot_len,
            };
            let h = &mut self.headers[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovecs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.control[i].as_mut_ptr().cast();
            h.msg_controllen = mem::size_of::<[u64; CONTROL_WORDS]>() as _;
            h.msg_flags = 0;
            self.headers[i].msg_len = 0;
        }
        // SAFETY: every header points at live buffers of the stated sizes owned by `self`,
        // which outlives the call; the kernel writes at most those sizes.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.headers.as_mut_ptr(),
                batch as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        out.received = n;
        self.slots.clear();
        let mut total = 0;
        for i in 0..n {
            let h = &self.headers[i].msg_hdr;
            if let Some(drops) = rxq_overflow(h) {
                out.kernel_drops = Some(drops);
            }
            if h.msg_flags & libc::MSG_TRUNC != 0 {
                out.truncated += 1;
                continue;
            }
            let Some(from) = socket_addr(&self.addrs[i], h.msg_namelen) else {
                continue;
            };
            let len = self.headers[i].msg_len as usize;
            self.slots.push(Slot {
                from,
                start: i * self.slot_len,
                len,
            });
            total += len;
        }
        // One allocation for the whole batch; each datagram is a slice of it.
        let mut all = BytesMut::with_capacity(total);
        for s in &self.slots {
            all.extend_from_slice(&self.data[s.start..s.start + s.len]);
        }
        let all = all.freeze();
        let mut at = 0;
        for s in &self.slots {
            out.datagrams.push((s.from, all.slice(at..at + s.len)));
            at += s.len;
        }
        Ok(())
    }
}

/// The IPv4 or IPv6 address the kernel wrote into `storage` (`len` bytes of it).
fn socket_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a `sockaddr_in`, and it is long enough;
            // `sockaddr_storage` is aligned for every address type.
            let a =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for `sockaddr_in6`.
            let a = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// The `SO_RXQ_OVFL` counter in a received message's control data, if present.
fn rxq_overflow(h: &libc::msghdr) -> Option<u32> {
    // SAFETY: `h` is a header the kernel just filled; the CMSG macros walk its control buffer
    // within `msg_controllen`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(h);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SO_RXQ_OVFL {
                let data = libc::CMSG_DATA(cmsg).cast::<u32>();
                return Some(data.read_unaligned());
            }
            cmsg = libc::CMSG_NXTHDR(h, cmsg);
        }
    }
    None
}

/// Asks the kernel to report the socket's drop counter with every datagram.
pub(super) fn enable_rxq_overflow(socket: &UdpSocket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a plain setsockopt with a pointer to a live `c_int` and its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RXQ_OVFL,
            (&on as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
