//! `/proc/sys` access. Entries under `/proc/sys/net` belong to the network
//! namespace of the calling thread, so callers enter the namespace first.
//!
//! Each file is opened with a bare `openat` and read or written with plain
//! system calls: std's `fs::read_to_string` adds an `fstat` and musl's `open`
//! an `fcntl` per file, and a pod's ADD touches half a dozen of them.

use super::cvt_r;
use crate::error::{Error, Result};
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};

fn path(key: &str) -> String {
    format!("/proc/sys/{}", key.trim_start_matches('/'))
}

fn open(key: &str, flags: i32) -> std::io::Result<File> {
    let p = CString::new(path(key)).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a valid NUL-terminated path; the mode is used only with O_CREAT.
    let fd = cvt_r(|| unsafe { libc::openat(libc::AT_FDCWD, p.as_ptr(), flags | libc::O_CLOEXEC, 0o666) })?;
    // SAFETY: fd was just returned by openat and is owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn read_all(key: &str) -> std::io::Result<Vec<u8>> {
    let mut f = open(key, libc::O_RDONLY)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 128];
    loop {
        match f.read(&mut buf)? {
            0 => return Ok(out),
            n => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn write_all(key: &str, value: &str) -> std::io::Result<()> {
    // The flags of std's fs::write, so that errors read the same.
    open(key, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)?.write_all(value.as_bytes())
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
