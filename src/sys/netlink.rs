//! Raw netlink sockets: open and bind one, learn its port id, send to the
//! kernel, receive with or without waiting. Framing, sequence numbers and
//! errors from the kernel are `netlink::Socket`'s business, not this file's.

use crate::error::{Error, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

const SOL_NETLINK: i32 = 270;
const NETLINK_CAP_ACK: i32 = 10;
const NETLINK_EXT_ACK: i32 = 11;

fn sockaddr_nl(groups: u32) -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain data; all zeroes is a valid value.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    sa.nl_groups = groups;
    sa
}

const SOCKADDR_NL_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;

/// An int socket option; failure is returned, the caller decides whether it matters.
fn set_int(fd: &OwnedFd, level: i32, opt: i32, v: i32) -> std::result::Result<(), i32> {
    // SAFETY: valid descriptor; the value points at an i32 of the length given.
    let r = unsafe {
        libc::setsockopt(fd.as_raw_fd(), level, opt, (&v as *const i32).cast(), std::mem::size_of::<i32>() as _)
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

/// A netlink socket of `proto` in the current network namespace, bound
/// (the kernel picks its port id), subscribed to multicast `groups`, asking
/// for capped ACKs and extended ACK text (kernels without them just give less
/// detail), close-on-exec.
pub fn open(proto: i32, groups: u32) -> Result<OwnedFd> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(Error::last_os("open netlink socket"));
    }
    // SAFETY: fresh descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    for opt in [NETLINK_CAP_ACK, NETLINK_EXT_ACK] {
        let _ = set_int(&fd, SOL_NETLINK, opt, 1);
    }
    let sa = sockaddr_nl(groups);
    // SAFETY: sa is a valid sockaddr_nl of the length given.
    if unsafe { libc::bind(fd.as_raw_fd(), (&sa as *const libc::sockaddr_nl).cast(), SOCKADDR_NL_LEN) } != 0 {
        return Err(Error::last_os("bind netlink socket"));
    }
    Ok(fd)
}

/// The port id of a netlink socket: 0 when it is not bound (or not netlink).
pub fn port_id(fd: &OwnedFd) -> Result<u32> {
    let mut sa = sockaddr_nl(0);
    let mut len = SOCKADDR_NL_LEN;
    // SAFETY: out-parameters of the sizes given.
    if unsafe { libc::getsockname(fd.as_raw_fd(), (&mut sa as *mut libc::sockaddr_nl).cast(), &mut len) } != 0 {
        return Err(Error::last_os("read the address of a netlink socket"));
    }
    if sa.nl_family != libc::AF_NETLINK as libc::sa_family_t {
        return Ok(0);
    }
    Ok(sa.nl_pid)
}

/// Make a blocking receive give up (EAGAIN) after `d`.
// The conversions are fallible on targets with 32-bit timeval fields.
#[allow(clippy::unnecessary_fallible_conversions)]
pub fn set_recv_timeout(fd: &OwnedFd, d: Duration) -> Result<()> {
    let tv = libc::timeval {
        // Both fields are 32 or 64 bits by target; the values fit either.
        tv_sec: d.as_secs().try_into().unwrap_or_else(|_| i32::MAX.into()),
        tv_usec: d.subsec_micros().try_into().unwrap_or(0),
    };
    // SAFETY: valid descriptor; tv is a timeval of the length given.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(Error::last_os("set the receive deadline of a netlink socket"));
    }
    Ok(())
}

/// Room in the send buffer for one datagram of `bytes`: SO_SNDBUFFORCE
/// passes the system limit, which needs CAP_NET_ADMIN; SO_SNDBUF is the
/// fallback. Best effort: a send that does not fit says so itself (EMSGSIZE).
pub fn reserve_send(fd: &OwnedFd, bytes: usize) {
    let n = i32::try_from(bytes).unwrap_or(i32::MAX / 2).min(i32::MAX / 2);
    for opt in [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF] {
        if set_int(fd, libc::SOL_SOCKET, opt, n).is_ok() {
            return;
        }
    }
}

/// Send one datagram to the kernel (port id 0).
pub fn send(fd: &OwnedFd, bytes: &[u8]) -> std::result::Result<(), i32> {
    let sa = sockaddr_nl(0);
    loop {
        // SAFETY: bytes is a valid buffer of its length; sa a valid address of the length given.
        let n = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                SOCKADDR_NL_LEN,
            )
        };
        if n >= 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

/// Receive one datagram into `buf`: its full length (more than `buf.len()`
/// when it did not fit, MSG_TRUNC), or the errno. `wait` false: EAGAIN at
/// once when nothing is queued; true: EAGAIN when the receive deadline
/// passed (see `set_recv_timeout`). EINTR is retried.
pub fn recv(fd: &OwnedFd, buf: &mut [u8], wait: bool) -> std::result::Result<usize, i32> {
    let flags = libc::MSG_TRUNC | if wait { 0 } else { libc::MSG_DONTWAIT };
    loop {
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
        if let Ok(n) = usize::try_from(n) {
            return Ok(n);
        }
        let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

/// Wait up to `timeout_ms` for something to read; false on timeout.
pub fn wait_readable(fd: &OwnedFd, timeout_ms: i32) -> Result<bool> {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    loop {
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if n >= 0 {
            return Ok(n > 0);
        }
        let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if e != libc::EINTR {
            return Err(Error::os("poll netlink socket", e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_socket_has_a_port_and_times_out_when_nothing_comes() {
        let fd = open(libc::NETLINK_ROUTE, 0).unwrap();
        assert_ne!(port_id(&fd).unwrap(), 0);
        set_recv_timeout(&fd, Duration::from_millis(20)).unwrap();
        let mut buf = [0u8; 64];
        let t = std::time::Instant::now();
        assert_eq!(recv(&fd, &mut buf, true), Err(libc::EAGAIN));
        assert!(t.elapsed() >= Duration::from_millis(15));
        assert_eq!(recv(&fd, &mut buf, false), Err(libc::EAGAIN));
        assert!(!wait_readable(&fd, 0).unwrap());
    }
}
