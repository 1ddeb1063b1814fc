//! AF_PACKET datagram sockets with a classic BPF filter: the kernel adds and
//! strips the link-layer header, the caller sends and receives network-layer
//! packets on one interface, before that interface has any address.

use crate::error::{Error, Result};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// Packets this host sent itself show up with this type; they are skipped.
const PACKET_OUTGOING: u8 = 4;
const LL_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;

/// A non-blocking AF_PACKET SOCK_DGRAM socket bound to one interface and one
/// ethertype, with a filter attached before the first packet can be queued.
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
    ethertype: u16,
}

fn ll_addr(ifindex: i32, ethertype: u16, mac: &[u8; 6]) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as libc::c_ushort;
    sa.sll_protocol = ethertype.to_be();
    sa.sll_ifindex = ifindex;
    sa.sll_halen = 6;
    sa.sll_addr[..6].copy_from_slice(mac);
    sa
}

impl PacketSocket {
    /// Open in the current network namespace (the socket stays bound to it),
    /// on interface `ifindex`, for `ethertype` (host order), keeping only what `filter` accepts.
    pub fn open(ifindex: i32, ethertype: u16, filter: &[BpfInsn]) -> Result<PacketSocket> {
        let len = u16::try_from(filter.len()).map_err(|_| Error::msg("packet filter is too long"))?;
        // Protocol 0: nothing is queued until the filter is on and the bind below names the ethertype.
        // SAFETY: plain socket(2) call.
        let fd =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(Error::last_os("open packet socket"));
        }
        // SAFETY: a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut prog: Vec<libc::sock_filter> =
            filter.iter().map(|i| libc::sock_filter { code: i.code, jt: i.jt, jf: i.jf, k: i.k }).collect();
        let fprog = libc::sock_fprog { len, filter: prog.as_mut_ptr() };
        let sl = std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t;
        // SAFETY: fprog points at `prog` (len entries), alive for the call; the kernel copies it.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&fprog as *const libc::sock_fprog).cast(),
                sl,
            )
        };
        if r != 0 {
            return Err(Error::last_os("attach packet filter"));
        }
        let sa = ll_addr(ifindex, ethertype, &[0; 6]);
        // SAFETY: sa is a valid sockaddr_ll of LL_LEN bytes.
        if unsafe { libc::bind(fd.as_raw_fd(), (&sa as *const libc::sockaddr_ll).cast(), LL_LEN) } != 0 {
            return Err(Error::last_os("bind packet socket"));
        }
        Ok(PacketSocket { fd, ifindex, ethertype })
    }

    /// Send one packet to link-layer address `dst`.
    pub fn send(&self, packet: &[u8], dst: [u8; 6]) -> Result<()> {
        let sa = ll_addr(self.ifindex, self.ethertype, &dst);
        // SAFETY: packet is a valid buffer of its length, sa a valid sockaddr_ll of LL_LEN bytes.
        super::cvt_r(|| unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&sa as *const libc::sockaddr_ll).cast(),
                LL_LEN,
            )
        })
        .map(|_| ())
        .map_err(|e| super::os_err("send packet", e))
    }

    /// One packet that arrived (its length in `buf`, its link-layer source),
    /// None when no more are queued. What this host sent itself is skipped.
    pub fn recv(&self, buf: &mut [u8]) -> Result<Option<(usize, [u8; 6])>> {
        loop {
            // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
            let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = LL_LEN;
            // SAFETY: buf and sa are valid out-parameters of the sizes given.
            let n = super::cvt_r(|| unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut sa as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            });
            let n = match n {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(super::os_err("receive packet", e)),
            };
            if sa.sll_pkttype == PACKET_OUTGOING {
                continue;
            }
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&sa.sll_addr[..6]);
            // n >= 0 here, and at most buf.len()
            return Ok(Some((n as usize, mac)));
        }
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
