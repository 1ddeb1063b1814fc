//! Unix stream sockets with abstract names, and handing a descriptor to
//! another process over one (SCM_RIGHTS). An abstract name belongs to the
//! network namespace the socket was made in and disappears with the socket's
//! last descriptor, so a crash leaves nothing on disk to clean up.

use crate::error::{Error, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The address of abstract `name` (a leading NUL, then the name, no terminator).
fn abstract_addr(name: &[u8]) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let n = name.len().min(sa.sun_path.len() - 1);
    for (d, s) in sa.sun_path[1..=n].iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + 1 + n;
    (sa, len as libc::socklen_t)
}

fn stream_socket(flags: i32) -> Result<OwnedFd> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | flags, 0) };
    if fd < 0 {
        return Err(Error::last_os("open unix socket"));
    }
    // SAFETY: fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A non-blocking listening socket bound to abstract `name` in the current
/// network namespace. EADDRINUSE when another socket holds the name.
pub fn listen_abstract(name: &[u8]) -> Result<OwnedFd> {
    let fd = stream_socket(libc::SOCK_NONBLOCK)?;
    let (sa, len) = abstract_addr(name);
    // SAFETY: sa is a valid sockaddr_un of length len.
    if unsafe { libc::bind(fd.as_raw_fd(), (&sa as *const libc::sockaddr_un).cast(), len) } != 0 {
        return Err(Error::last_os("bind unix socket"));
    }
    // SAFETY: valid, bound socket.
    if unsafe { libc::listen(fd.as_raw_fd(), 64) } != 0 {
        return Err(Error::last_os("listen on unix socket"));
    }
    Ok(fd)
}

/// A socket connected to abstract `name`; ECONNREFUSED when nobody listens.
pub fn connect_abstract(name: &[u8]) -> Result<OwnedFd> {
    let fd = stream_socket(0)?;
    let (sa, len) = abstract_addr(name);
    loop {
        // SAFETY: sa is a valid sockaddr_un of length len.
        if unsafe { libc::connect(fd.as_raw_fd(), (&sa as *const libc::sockaddr_un).cast(), len) } == 0 {
            return Ok(fd);
        }
        let e = Error::last_os("connect unix socket");
        if !e.is_errno(libc::EINTR) {
            return Err(e);
        }
    }
}

/// The next pending connection of a listening socket (a blocking socket).
pub fn accept(listener: &OwnedFd) -> Result<OwnedFd> {
    // SAFETY: valid listening socket; the peer address is not wanted.
    let fd = unsafe { libc::accept4(listener.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) };
    if fd < 0 {
        return Err(Error::last_os("accept unix connection"));
    }
    // SAFETY: fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The user id of the process at the other end, as it was when the
/// connection was made (the kernel records it; the peer cannot forge it).
pub fn peer_uid(conn: &OwnedFd) -> Result<libc::uid_t> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: valid fd; cred and len are out-parameters of the declared size.
    let r = unsafe { libc::getsockopt(conn.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED, (&mut cred as *mut libc::ucred).cast(), &mut len) };
    if r != 0 {
        return Err(Error::last_os("read unix peer credentials"));
    }
    Ok(cred.uid)
}

/// An integer socket option (SO_DOMAIN, SO_PROTOCOL, ...).
fn sockopt_int(fd: &OwnedFd, opt: i32) -> Result<i32> {
    let mut v: i32 = 0;
    let mut len = 4 as libc::socklen_t;
    // SAFETY: valid fd; v and len are out-parameters of the declared size.
    if unsafe { libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, opt, (&mut v as *mut i32).cast(), &mut len) } != 0 {
        return Err(Error::last_os("read socket option"));
    }
    Ok(v)
}

/// The (domain, protocol) of socket `fd`: (AF_NETLINK, NETLINK_NETFILTER), ...
pub fn socket_kind(fd: &OwnedFd) -> Result<(i32, i32)> {
    Ok((sockopt_int(fd, libc::SO_DOMAIN)?, sockopt_int(fd, libc::SO_PROTOCOL)?))
}

/// Give up on a blocking receive after `ms` milliseconds (EAGAIN).
pub fn set_recv_timeout(fd: &OwnedFd, ms: u32) {
    // SAFETY: timeval is plain data.
    let mut tv: libc::timeval = unsafe { std::mem::zeroed() };
    tv.tv_sec = (ms / 1000) as _;
    tv.tv_usec = ((ms % 1000) * 1000) as _;
    // SAFETY: valid fd, tv is a timeval. Failure leaves the receive unbounded.
    unsafe {
        libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, (&tv as *const libc::timeval).cast(), std::mem::size_of::<libc::timeval>() as u32);
    }
}

/// Room for the control message of one descriptor, aligned for cmsghdr.
#[repr(C)]
struct CmsgBuf {
    hdr: libc::cmsghdr,
    fds: [libc::c_int; 4],
}

/// Send one byte and a duplicate of `fd` to the peer.
pub fn send_fd(conn: &OwnedFd, fd: &OwnedFd) -> Result<()> {
    let mut byte = [1u8];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    // SAFETY: CmsgBuf is plain data; CMSG_LEN only computes a size.
    let mut c: CmsgBuf = unsafe { std::mem::zeroed() };
    c.hdr.cmsg_level = libc::SOL_SOCKET;
    c.hdr.cmsg_type = libc::SCM_RIGHTS;
    c.hdr.cmsg_len = unsafe { libc::CMSG_LEN(4) } as _;
    c.fds[0] = fd.as_raw_fd();
    // SAFETY: msghdr is plain data.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&mut c as *mut CmsgBuf).cast();
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(4) } as _;
    loop {
        // SAFETY: msg describes valid buffers. MSG_NOSIGNAL: a peer gone
        // meanwhile is an error here, not a SIGPIPE.
        if unsafe { libc::sendmsg(conn.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) } == 1 {
            return Ok(());
        }
        let e = Error::last_os("send descriptor");
        if !e.is_errno(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Receive what `send_fd` sent: the descriptor, or None when the peer
/// closed the connection without sending one. Any extra descriptors are
/// closed.
pub fn recv_fd(conn: &OwnedFd) -> Result<Option<OwnedFd>> {
    let mut byte = [0u8];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    // SAFETY: CmsgBuf and msghdr are plain data.
    let mut c: CmsgBuf = unsafe { std::mem::zeroed() };
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&mut c as *mut CmsgBuf).cast();
    msg.msg_controllen = std::mem::size_of::<CmsgBuf>() as _;
    let n = loop {
        // SAFETY: msg describes valid buffers; received descriptors are close-on-exec.
        let n = unsafe { libc::recvmsg(conn.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        let e = Error::last_os("receive descriptor");
        if !e.is_errno(libc::EINTR) {
            return Err(e);
        }
    };
    // Own every descriptor that arrived before looking at anything else, so
    // that none leaks whatever the message looks like.
    let mut got = Vec::new();
    // SAFETY: walking the control messages the kernel filled in, within msg_controllen.
    unsafe {
        let mut h = libc::CMSG_FIRSTHDR(&msg);
        while !h.is_null() {
            if (*h).cmsg_level == libc::SOL_SOCKET && (*h).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(h).cast::<libc::c_int>();
                let count = ((*h).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                for i in 0..count {
                    got.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            h = libc::CMSG_NXTHDR(&msg, h);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(Error::os("receive descriptor: more than one sent", libc::EPROTO));
    }
    if n == 0 || got.is_empty() {
        return Ok(None);
    }
    if got.len() > 1 {
        return Err(Error::os("receive descriptor: more than one sent", libc::EPROTO));
    }
    Ok(got.pop())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (OwnedFd, OwnedFd) {
        let mut sv = [-1; 2];
        // SAFETY: socketpair fills two descriptors, owned below.
        assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) }, 0);
        // SAFETY: fresh descriptors owned by nobody else.
        unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) }
    }

    fn inode(fd: &OwnedFd) -> u64 {
        // SAFETY: valid fd, st an out-parameter.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }, 0);
        st.st_ino as u64
    }

    #[test]
    fn a_descriptor_crosses_and_a_hangup_brings_none() {
        let (a, b) = pair();
        let (x, _y) = pair();
        send_fd(&a, &x).unwrap();
        let got = recv_fd(&b).unwrap().expect("a descriptor");
        assert_eq!(inode(&got), inode(&x), "the same socket, another descriptor");
        assert_ne!(got.as_raw_fd(), x.as_raw_fd());
        assert_eq!(socket_kind(&got).unwrap(), (libc::AF_UNIX, 0));
        // SAFETY: geteuid cannot fail.
        assert_eq!(peer_uid(&b).unwrap(), unsafe { libc::geteuid() });
        drop(a);
        assert!(recv_fd(&b).unwrap().is_none());
    }

    #[test]
    fn abstract_addresses_are_a_nul_and_the_name() {
        let (sa, len) = abstract_addr(b"cnibox/x");
        assert_eq!(len as usize, 2 + 1 + 8);
        assert_eq!(sa.sun_path[0], 0);
        assert_eq!(sa.sun_path[1..9].iter().map(|&c| c as u8).collect::<Vec<_>>(), b"cnibox/x");
    }
}
