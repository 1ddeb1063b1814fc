//! `/proc/sys` access. Entries under `/proc/sys/net` belong to the network
//! namespace of the calling thread, so callers enter the namespace first.
//!
//! Each file is opened with a bare `openat` and read or written with plain
//! system calls: std's `fs::read_to_string` adds an `fstat` and musl's `open`
//! an `fcntl` per file, and a pod's ADD touches half a dozen of them.

use super::cvt_r;
use crate::error::{Error, Result};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

fn path(key: &str) -> String {
    format!("/proc/sys/{}", key.trim_start_matches('/'))
}

fn open(key: &str, flags: i32) -> std::io::Result<OwnedFd> {
    let p = CString::new(path(key)).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a valid NUL-terminated path; the mode is used only with O_CREAT.
    let fd = cvt_r(|| unsafe { libc::openat(libc::AT_FDCWD, p.as_ptr(), flags | libc::O_CLOEXEC, 0o666) })?;
    // SAFETY: fd was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn read_all(key: &str) -> std::io::Result<Vec<u8>> {
    let fd = open(key, libc::O_RDONLY)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 128];
    loop {
        // SAFETY: fd is open and buf is writable for its length.
        let n = cvt_r(|| unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n.unsigned_abs()]);
    }
}

fn write_all(key: &str, value: &str) -> std::io::Result<()> {
    // The flags of std's fs::write, so that errors read the same.
    let fd = open(key, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)?;
    let mut rest = value.as_bytes();
    while !rest.is_empty() {
        // SAFETY: fd is open and rest is readable for its length.
        let n = cvt_r(|| unsafe { libc::write(fd.as_raw_fd(), rest.as_ptr().cast(), rest.len()) })?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::WriteZero));
        }
        rest = &rest[n.unsigned_abs()..];
    }
    Ok(())
}

pub fn read(key: &str) -> Result<String> {
    let bytes =
        read_all(key).map_err(|e| Error::os(format_args!("read sysctl {key}"), e.raw_os_error().unwrap_or(0)))?;
    let s = String::from_utf8(bytes).map_err(|_| Error::os(format_args!("read sysctl {key}"), libc::EILSEQ))?;
    Ok(s.trim_end().to_string())
}

pub fn write(key: &str, value: &str) -> Result<()> {
    write_all(key, value)
        .map_err(|e| Error::os(format_args!("set sysctl {key}={value}"), e.raw_os_error().unwrap_or(0)))
}

/// Write only when the value differs: avoids needless writes to global knobs
/// such as `ip_forward`, which also generate netlink notifications.
pub fn ensure(key: &str, value: &str) -> Result<()> {
    match read(key) {
        Ok(cur) if cur == value => Ok(()),
        _ => write(key, value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_to_the_end_and_names_a_missing_key() {
        assert_eq!(read("kernel/ostype").unwrap(), "Linux");
        // longer than one read of 128 bytes on most machines, and read whole
        let cc = read("net/ipv4/tcp_available_congestion_control").unwrap_or_default();
        assert!(!cc.contains('\n'), "{cc}");
        let e = read("net/no/such/knob").unwrap_err();
        assert_eq!(e.errno, libc::ENOENT);
        assert!(e.msg.contains("read sysctl net/no/such/knob"), "{}", e.msg);
    }
}
