//! Connecting to a unix stream socket on the filesystem with a deadline.
//! A blocking connect(2) to a listener whose backlog is full waits until the
//! listener accepts, with no limit: a stopped or stuck daemon would hang its
//! client forever. Non-blocking, the kernel answers EAGAIN instead, and the
//! attempt is repeated until the deadline.

use crate::error::{Error, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A blocking stream connected to `path`, or the connect error; EAGAIN once
/// `timeout` has passed with the listener's backlog still full.
pub fn connect(path: &Path, timeout: Duration) -> Result<UnixStream> {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= sa.sun_path.len() || bytes.contains(&0) {
        return Err(Error::os(format_args!("connect to {}", path.display()), libc::ENAMETOOLONG));
    }
    for (d, s) in sa.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = (std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    if fd < 0 {
        return Err(Error::last_os("open unix socket"));
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let end = Instant::now() + timeout;
    loop {
        // SAFETY: sa is a valid sockaddr_un of length len.
        if unsafe { libc::connect(fd.as_raw_fd(), (&sa as *const libc::sockaddr_un).cast(), len) } == 0 {
            break;
        }
        let e = Error::last_os(format_args!("connect to {}", path.display()));
        match e.errno {
            libc::EINTR => continue,
            libc::EAGAIN if Instant::now() < end => std::thread::sleep(Duration::from_millis(10)),
            _ => return Err(e),
        }
    }
    let s = UnixStream::from(fd);
    s.set_nonblocking(false)
        .map_err(|e| Error::os(format_args!("connect to {}", path.display()), e.raw_os_error().unwrap_or(0)))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_backlog_is_eagain_at_the_deadline() {
        let dir = std::env::temp_dir().join(format!("cnibox-unixpath-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        // never accepted: fill the backlog (its length varies, so keep going until refused)
        let mut held = Vec::new();
        let t = Instant::now();
        let err = loop {
            match connect(&path, Duration::from_millis(100)) {
                Ok(s) => held.push(s),
                Err(e) => break e,
            }
            assert!(held.len() < 10_000, "the backlog never filled");
        };
        assert!(err.is_errno(libc::EAGAIN), "{err}");
        assert!(t.elapsed() < Duration::from_secs(5));
        drop(l);
        let e = connect(&path, Duration::from_millis(100)).err().unwrap();
        assert!(e.is_errno(libc::ECONNREFUSED), "{e}");
        assert!(connect(&dir.join("none"), Duration::ZERO).err().unwrap().is_not_found());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
