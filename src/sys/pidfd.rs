//! Process descriptors: a handle on one process that can never come to name
//! another (a pid number can be reused once its process is gone), and
//! copying a descriptor out of that process (pidfd_getfd, Linux 5.6),
//! which the kernel allows where it would allow ptrace.

use crate::error::{Error, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub struct Pidfd(OwnedFd);

impl Pidfd {
    /// A handle on process `pid` (of our pid namespace).
    pub fn open(pid: libc::pid_t) -> Result<Pidfd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(Error::last_os(format_args!("open a handle on process {pid}")));
        }
        // SAFETY: fresh descriptor owned by nobody else (close-on-exec by default).
        Ok(Pidfd(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
    }

    /// A descriptor of ours for the file the process has open as `fd`
    /// (close-on-exec). EPERM when we may not ptrace it; EBADF when it has no `fd`.
    pub fn take(&self, fd: RawFd) -> Result<OwnedFd> {
        // SAFETY: pidfd_getfd takes a pidfd, a descriptor number and flags (0).
        let got = unsafe { libc::syscall(libc::SYS_pidfd_getfd, self.0.as_raw_fd(), fd, 0) };
        if got < 0 {
            return Err(Error::last_os(format_args!("take descriptor {fd} of another process")));
        }
        // SAFETY: fresh descriptor owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(got as RawFd) })
    }

    /// The process's user namespace, as a descriptor of its nsfs file
    /// (PIDFD_GET_USER_NAMESPACE, Linux 6.11; ENOTTY before).
    pub fn user_ns(&self) -> Result<OwnedFd> {
        // SAFETY: the ioctl returns a new descriptor; its argument must be 0 (EINVAL otherwise).
        let fd = unsafe { libc::ioctl(self.0.as_raw_fd(), libc::PIDFD_GET_USER_NAMESPACE as _, 0) };
        if fd < 0 {
            return Err(Error::last_os("find the user namespace of a process"));
        }
        // SAFETY: fresh descriptor owned by nobody else (the kernel opens it close-on-exec).
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Send `sig` to the process (and to no other, even if its pid was reused).
    pub fn signal(&self, sig: i32) -> Result<()> {
        // SAFETY: pidfd_send_signal with no siginfo and no flags.
        if unsafe {
            libc::syscall(libc::SYS_pidfd_send_signal, self.0.as_raw_fd(), sig, std::ptr::null::<libc::siginfo_t>(), 0)
        } != 0
        {
            return Err(Error::last_os("signal a process"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_hands_its_own_descriptor_to_itself() {
        let mut p = [-1; 2];
        // SAFETY: pipe2 fills two descriptors, owned below.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: fresh descriptors owned by nobody else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
        // SAFETY: getpid cannot fail.
        let me = Pidfd::open(unsafe { libc::getpid() }).unwrap();
        let w2 = me.take(w.as_raw_fd()).unwrap();
        assert_ne!(w2.as_raw_fd(), w.as_raw_fd());
        drop(w);
        // SAFETY: one byte from a valid buffer into the pipe, read back.
        unsafe {
            assert_eq!(libc::write(w2.as_raw_fd(), b"k".as_ptr().cast(), 1), 1);
            let mut b = 0u8;
            assert_eq!(libc::read(r.as_raw_fd(), (&mut b as *mut u8).cast(), 1), 1);
            assert_eq!(b, b'k');
        }
        assert!(me.take(9999).unwrap_err().is_errno(libc::EBADF));
    }
}
