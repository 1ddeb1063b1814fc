//! What a long-running service needs from the kernel: a monotonic clock that
//! counts suspend, signals as a descriptor, poll(2), the identity of an open
//! file, and the listening socket systemd hands over (socket activation).

use crate::error::{Error, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Milliseconds of CLOCK_BOOTTIME: monotonic, and suspend counts (as it does for a DHCP server).
pub fn boottime_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid out-parameter; CLOCK_BOOTTIME exists on every supported kernel.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    // Both fields are non-negative for this clock, so they fit in u64 whatever their width.
    let (s, ns) = (ts.tv_sec as u64, ts.tv_nsec as u64);
    s.saturating_mul(1000).saturating_add(ns / 1_000_000)
}

/// Block `signals` and receive them as readable data on the returned descriptor instead.
pub fn signal_fd(signals: &[i32]) -> Result<OwnedFd> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid sigset_t; the signal numbers are the caller's constants.
    unsafe {
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
    }
    // SAFETY: set is initialised; the old mask is not wanted.
    if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) } != 0 {
        return Err(Error::last_os("block signals"));
    }
    // SAFETY: -1 asks for a new descriptor for `set`.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if fd < 0 {
        return Err(Error::last_os("signalfd"));
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One entry of a poll set: a descriptor (or -1, ignored) and the events asked for.
pub fn pollfd(fd: RawFd, events: i16) -> libc::pollfd {
    libc::pollfd { fd, events, revents: 0 }
}

/// poll(2) for at most `timeout_ms` (negative: no limit); how many entries
/// have events. An interrupted wait is 0 entries, not an error.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> Result<usize> {
    let n = libc::nfds_t::try_from(fds.len()).map_err(|_| Error::msg("poll set too large"))?;
    // SAFETY: fds is a valid, writable array of n pollfd.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), n, timeout_ms) };
    if r < 0 {
        let e = Error::last_os("poll");
        return if e.is_errno(libc::EINTR) { Ok(0) } else { Err(e) };
    }
    // r >= 0 here
    Ok(r as usize)
}

/// The (device, inode) of an open file: two descriptors with the same pair
/// name the same file (for nsfs, the same namespace).
pub fn fd_ident(fd: RawFd) -> Result<(u64, u64)> {
    // SAFETY: stat is plain data; all-zero is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat only writes `st`; an invalid descriptor is EBADF.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(Error::last_os("stat an open file"));
    }
    Ok((st.st_dev as u64, st.st_ino as u64))
}

/// An integer socket option of `fd` at level SOL_SOCKET.
fn sockopt(fd: RawFd, opt: i32) -> Option<i32> {
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: v and len are out-parameters of the declared size; an invalid descriptor is an error.
    let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, opt, (&mut v as *mut i32).cast(), &mut len) };
    (r == 0).then_some(v)
}

/// The listening socket systemd passed to this process (socket activation:
/// `LISTEN_PID` is our pid and `LISTEN_FDS` is 1, the socket is descriptor 3),
/// or None when there is none. The variables are removed, so that no child
/// takes them for its own. Descriptor 3 must be a listening unix stream
/// socket; it is made close-on-exec and non-blocking.
pub fn listen_fd_from_systemd() -> Result<Option<OwnedFd>> {
    const FD: RawFd = 3;
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(v);
    }
    if pid.as_deref().and_then(|p| p.trim().parse::<u32>().ok()) != Some(std::process::id()) {
        return Ok(None);
    }
    match fds.as_deref().map(str::trim) {
        None | Some("0") => return Ok(None),
        Some("1") => {}
        Some(n) => {
            return Err(Error::msg(format!(
                "socket activation passed LISTEN_FDS={n}; exactly one listening unix socket is expected"
            )))
        }
    }
    let bad = |what: &str| {
        Error::msg(format!("socket activation: descriptor 3 is {what}, not a listening unix stream socket"))
    };
    // SAFETY: F_GETFD only reads the descriptor's flags; EBADF when it is not open.
    if unsafe { libc::fcntl(FD, libc::F_GETFD) } < 0 {
        return Err(bad("not open"));
    }
    if sockopt(FD, libc::SO_DOMAIN) != Some(libc::AF_UNIX) {
        return Err(bad("another kind of file or socket"));
    }
    if sockopt(FD, libc::SO_TYPE) != Some(libc::SOCK_STREAM) || sockopt(FD, libc::SO_ACCEPTCONN) != Some(1) {
        return Err(bad("a unix socket that does not listen for streams"));
    }
    // SAFETY: descriptor 3 is open, was handed to this process to own, and nothing else here refers to it.
    let fd = unsafe { OwnedFd::from_raw_fd(FD) };
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    // SAFETY: as above.
    let ok = unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) == 0
            && flags >= 0
            && libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
    };
    if !ok {
        return Err(Error::last_os("set up the socket passed by systemd"));
    }
    Ok(Some(fd))
}

/// The filesystem path a unix socket is bound to, if it has one.
pub fn unix_socket_path(fd: RawFd) -> Option<String> {
    // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: sa and len are out-parameters of the declared size.
    if unsafe { libc::getsockname(fd, (&mut sa as *mut libc::sockaddr_un).cast(), &mut len) } != 0 {
        return None;
    }
    let off = std::mem::size_of::<libc::sa_family_t>();
    let n = (len as usize).checked_sub(off)?.min(sa.sun_path.len());
    let bytes: Vec<u8> = sa.sun_path[..n].iter().map(|&c| c as u8).take_while(|&c| c != 0).collect();
    // An abstract name starts with NUL: no path.
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_for_another_process_is_ignored_and_forgotten() {
        std::env::set_var("LISTEN_PID", "1");
        std::env::set_var("LISTEN_FDS", "1");
        assert!(listen_fd_from_systemd().unwrap().is_none());
        assert!(std::env::var_os("LISTEN_PID").is_none() && std::env::var_os("LISTEN_FDS").is_none());
        std::env::set_var("LISTEN_PID", std::process::id().to_string());
        std::env::set_var("LISTEN_FDS", "2");
        let e = listen_fd_from_systemd().err().unwrap();
        assert!(e.msg.contains("LISTEN_FDS=2; exactly one"), "{}", e.msg);
    }

    #[test]
    fn clock_and_identity() {
        let a = boottime_ms();
        assert!(boottime_ms() >= a);
        let f = std::fs::File::open("/proc/self/ns/net").unwrap();
        let (dev, ino) = fd_ident(f.as_raw_fd()).unwrap();
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata("/proc/self/ns/net").unwrap();
        assert_eq!((dev, ino), (m.dev(), m.ino()));
        assert!(fd_ident(-1).is_err());
    }
}
