//! Unix stream sockets with abstract names: a rendezvous that belongs to the
//! network namespace it was made in and disappears with the socket's last
//! descriptor, so a crash leaves nothing on disk to clean up.

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

/// A non-blocking unix stream socket.
fn stream_socket() -> Result<OwnedFd> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    if fd < 0 {
        return Err(Error::last_os("open unix socket"));
    }
    // SAFETY: fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A non-blocking socket listening on abstract `name` in the current
/// network namespace, with room for `backlog` connections not yet
/// accepted. EADDRINUSE when another socket holds the name. Whoever calls
/// this is who connecting peers see (SO_PEERCRED).
pub fn listen_abstract(name: &[u8], backlog: i32) -> Result<OwnedFd> {
    let fd = stream_socket()?;
    let (sa, len) = abstract_addr(name);
    // SAFETY: sa is a valid sockaddr_un of length len.
    if unsafe { libc::bind(fd.as_raw_fd(), (&sa as *const libc::sockaddr_un).cast(), len) } != 0 {
        return Err(Error::last_os("bind unix socket"));
    }
    // SAFETY: valid, bound socket.
    if unsafe { libc::listen(fd.as_raw_fd(), backlog) } != 0 {
        return Err(Error::last_os("listen on unix socket"));
    }
    Ok(fd)
}

/// A non-blocking socket connected to abstract `name`: ECONNREFUSED when
/// nobody listens there, EAGAIN when the listener's backlog is full (a
/// unix stream connection is established at once, or not at all).
pub fn connect_abstract(name: &[u8]) -> Result<OwnedFd> {
    let fd = stream_socket()?;
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

/// The next pending connection of a non-blocking listener; EAGAIN when none.
pub fn accept(listener: &OwnedFd) -> Result<OwnedFd> {
    // SAFETY: valid listening socket; the peer address is not wanted.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(Error::last_os("accept unix connection"));
    }
    // SAFETY: fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The process at the other end, as the kernel recorded it (the peer
/// cannot forge it): (pid, uid). For a connecting socket that is the process
/// that called listen(); the pid is 0 when it is outside our pid namespace.
pub fn peer(conn: &OwnedFd) -> Result<(libc::pid_t, libc::uid_t)> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: valid fd; cred and len are out-parameters of the declared size.
    let r = unsafe {
        libc::getsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(Error::last_os("read unix peer credentials"));
    }
    Ok((cred.pid, cred.uid))
}

/// Whether the other end of a connection is gone: for a connection still
/// waiting in a listener's backlog, whether the listener has been closed.
pub fn hung_up(conn: &OwnedFd) -> bool {
    let mut p = libc::pollfd { fd: conn.as_raw_fd(), events: libc::POLLRDHUP, revents: 0 };
    // SAFETY: one valid pollfd, no waiting.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n != 0 && (n < 0 || p.revents & (libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR) != 0)
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

/// The abstract name socket `fd` is bound to (without the leading NUL);
/// None when it has no abstract name (unbound, a path, not unix).
pub fn abstract_name(fd: &OwnedFd) -> Result<Option<Vec<u8>>> {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: out-parameters of the sizes given.
    if unsafe { libc::getsockname(fd.as_raw_fd(), (&mut sa as *mut libc::sockaddr_un).cast(), &mut len) } != 0 {
        return Err(Error::last_os("read the name of a unix socket"));
    }
    let path_len = (len as usize).saturating_sub(std::mem::size_of::<libc::sa_family_t>()).min(sa.sun_path.len());
    if sa.sun_family != libc::AF_UNIX as libc::sa_family_t || path_len < 1 || sa.sun_path[0] != 0 {
        return Ok(None);
    }
    Ok(Some(sa.sun_path[1..path_len].iter().map(|&c| c as u8).collect()))
}

/// The most descriptors one message carries here.
const MAX_FDS: usize = 4;

/// Send one byte with `fds` attached (SCM_RIGHTS), without waiting: EAGAIN
/// when the peer's queue is full. No SIGPIPE when the peer is gone (EPIPE).
pub fn send_fds(conn: &OwnedFd, fds: &[std::os::fd::BorrowedFd<'_>]) -> Result<()> {
    if fds.len() > MAX_FDS {
        return Err(Error::os("send descriptors", libc::EINVAL));
    }
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let data_len = std::mem::size_of_val(raw.as_slice());
    // u64 words keep the control buffer aligned for cmsghdr.
    let mut ctl = [0u64; 8];
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    // SAFETY: msghdr is plain data; all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(data_len as u32) } as usize;
    debug_assert!(space <= std::mem::size_of_val(&ctl));
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points at `space` zeroed, aligned bytes of `ctl`,
    // room for one header and `data_len` bytes of descriptors (MAX_FDS at most).
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(data_len as u32) as _;
        std::ptr::copy_nonoverlapping(raw.as_ptr(), libc::CMSG_DATA(c).cast::<i32>(), raw.len());
    }
    loop {
        // SAFETY: msg describes valid buffers that outlive the call.
        let n = unsafe { libc::sendmsg(conn.as_raw_fd(), &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if n == 1 {
            return Ok(());
        }
        let e = Error::last_os("send descriptors over a unix socket");
        if n >= 0 || !e.is_errno(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Receive one message without waiting and the descriptors it carries
/// (close-on-exec), at most MAX_FDS; EAGAIN when nothing is queued. Anything
/// else in the message is dropped.
pub fn recv_fds(conn: &OwnedFd) -> Result<Vec<OwnedFd>> {
    let mut ctl = [0u64; 8];
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    // SAFETY: msghdr is plain data; all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&ctl) as _;
    let n = loop {
        // SAFETY: msg describes valid buffers that outlive the call.
        let n = unsafe { libc::recvmsg(conn.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        let e = Error::last_os("receive descriptors over a unix socket");
        if !e.is_errno(libc::EINTR) {
            return Err(e);
        }
    };
    let mut out = Vec::new();
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of
    // well-formed control messages; the CMSG_* macros walk within them, and
    // every SCM_RIGHTS descriptor is new to this process and owned by no one
    // but the OwnedFd made for it here (each is taken exactly once).
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c);
                let len = ((*c).cmsg_len as usize).saturating_sub(data.offset_from(c.cast::<u8>()) as usize);
                for i in 0..len / std::mem::size_of::<i32>() {
                    let fd = std::ptr::read_unaligned(data.cast::<i32>().add(i));
                    out.push(OwnedFd::from_raw_fd(fd));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if n == 0 && out.is_empty() {
        return Err(Error::os("receive descriptors over a unix socket", libc::ECONNRESET));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abstract_addresses_are_a_nul_and_the_name() {
        let (sa, len) = abstract_addr(b"cnibox/x");
        assert_eq!(len as usize, 2 + 1 + 8);
        assert_eq!(sa.sun_path[0], 0);
        assert_eq!(sa.sun_path[1..9].iter().map(|&c| c as u8).collect::<Vec<_>>(), b"cnibox/x");
    }

    #[test]
    fn peer_and_hangup_of_a_socket_pair() {
        let mut sv = [-1; 2];
        // SAFETY: socketpair fills two descriptors, owned below.
        assert_eq!(
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) },
            0
        );
        // SAFETY: fresh descriptors owned by nobody else.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) };
        // SAFETY: getpid and geteuid cannot fail.
        assert_eq!(peer(&b).unwrap(), unsafe { (libc::getpid(), libc::geteuid()) });
        assert_eq!(socket_kind(&b).unwrap(), (libc::AF_UNIX, 0));
        assert!(!hung_up(&b));
        drop(a);
        assert!(hung_up(&b));
    }

    #[test]
    fn descriptors_cross_a_connection_and_names_read_back() {
        let name = format!("cnibox-test/{}", std::process::id()).into_bytes();
        let l = listen_abstract(&name, 4).unwrap();
        assert_eq!(abstract_name(&l).unwrap(), Some(name.clone()));
        let c = connect_abstract(&name).unwrap();
        let nl = crate::sys::netlink::open(libc::NETLINK_ROUTE, 0).unwrap();
        use std::os::fd::AsFd;
        send_fds(&c, &[nl.as_fd(), l.as_fd()]).unwrap();
        let a = accept(&l).unwrap();
        let got = recv_fds(&a).unwrap();
        assert_eq!(got.len(), 2);
        let id = crate::sys::trust::file_id;
        assert_eq!(id(&got[0]).unwrap(), id(&nl).unwrap());
        assert_eq!(id(&got[1]).unwrap(), id(&l).unwrap());
        assert!(recv_fds(&a).unwrap_err().is_errno(libc::EAGAIN));
        assert_eq!(abstract_name(&nl).unwrap(), None);
    }
}
