//! Network namespaces by file descriptor: open one from a path (checking that
//! it really is a namespace), compare two, and enter one for a scope.
//!
//! cnibox is single-threaded, so `setns` moves the whole process. Sockets keep
//! the namespace they were created in; callers therefore enter a namespace
//! only to open a netlink socket there or to write its `/proc/sys/net` knobs,
//! and the guard returns them to where they were.

use crate::error::{Error, Result};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const NSFS_MAGIC: i64 = 0x6e73_6673;
/// `NS_GET_NSTYPE` (linux/nsfs.h, `_IO(0xb7, 0x3)`): the kind of a namespace file.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

pub struct Netns {
    fd: OwnedFd,
    pub path: String,
}

impl Netns {
    /// Open the network namespace at `path` (`/run/netns/x`, `/proc/<pid>/ns/net`).
    /// Anything else (a regular file, a directory, another kind of namespace)
    /// is refused before it can be used, with code 8 and errno ENOENT: there is
    /// no network namespace at that path, which DEL treats as one already gone
    /// (a runtime's bind mount that was unmounted leaves an empty file behind).
    pub fn open(path: &str) -> Result<Netns> {
        let c = CString::new(path).map_err(|_| {
            Error::new(
                crate::error::code::INVALID_ENV,
                format!("invalid netns path \"{}\": it contains a NUL byte", path.replace('\0', "\\0")),
            )
        })?;
        let not_netns = |what: &str| {
            let mut e = Error::new(
                crate::error::code::INVALID_NETNS,
                format!("\"{path}\" is not a valid network namespace path{what}"),
            );
            e.errno = libc::ENOENT;
            e
        };
        // A namespace file is a regular file of nsfs. Anything else is refused
        // before it is opened: opening a device or a FIFO can have effects.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: c is a valid NUL-terminated path, st a properly sized out-parameter.
        if unsafe { libc::stat(c.as_ptr(), &mut st) } != 0 {
            return Err(Error::last_os(format_args!("failed to open netns \"{path}\"")));
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(not_netns(""));
        }
        // SAFETY: as above. O_NONBLOCK: should the path have become a FIFO
        // meanwhile, opening it must not hang; the checks below refuse it.
        let fd =
            unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY) };
        if fd < 0 {
            return Err(Error::last_os(format_args!("failed to open netns \"{path}\"")));
        }
        // SAFETY: fd was just returned by open and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut sf: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: fd is valid and sf is a properly sized out-parameter.
        if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut sf) } != 0 {
            return Err(Error::last_os(format_args!("statfs netns \"{path}\"")));
        }
        if sf.f_type as i64 != NSFS_MAGIC {
            return Err(not_netns(""));
        }
        // SAFETY: an ioctl without argument on our descriptor. Kernels before
        // 4.11 answer ENOTTY; the nsfs check above is all they allow.
        let ty = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
        if ty >= 0 && ty != libc::CLONE_NEWNET {
            return Err(not_netns(" (it is another kind of namespace)"));
        }
        Ok(Netns { fd, path: path.to_string() })
    }

    /// The namespace this process is in now.
    pub fn current() -> Result<Netns> {
        Netns::open("/proc/thread-self/ns/net")
    }

    /// The namespace socket `sock` belongs to (SIOCGSKNS; needs CAP_NET_ADMIN there).
    pub fn of_socket(sock: RawFd) -> Result<Netns> {
        const SIOCGSKNS: libc::c_ulong = 0x894c;
        // SAFETY: the ioctl takes no argument and returns a new descriptor.
        let fd = unsafe { libc::ioctl(sock, SIOCGSKNS as _) };
        if fd < 0 {
            return Err(Error::last_os("find the namespace of a socket"));
        }
        // SAFETY: fresh descriptor owned by nobody else; the kernel opens it close-on-exec.
        Ok(Netns { fd: unsafe { OwnedFd::from_raw_fd(fd) }, path: "the namespace of a socket".into() })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn ident(&self) -> Result<(u64, u64)> {
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd and out-parameter.
        if unsafe { libc::fstat(self.fd.as_raw_fd(), &mut st) } != 0 {
            return Err(Error::last_os(format_args!("stat netns \"{}\"", self.path)));
        }
        Ok((st.st_dev as u64, st.st_ino as u64))
    }

    /// Whether both handles name the same namespace (same nsfs inode).
    pub fn same_as(&self, other: &Netns) -> Result<bool> {
        Ok(self.ident()? == other.ident()?)
    }

    /// Enter this namespace until the guard drops.
    pub fn enter(&self) -> Result<NetnsGuard> {
        let back = Netns::current()?;
        set(self.fd(), &self.path)?;
        Ok(NetnsGuard { back })
    }

    /// Run `f` inside this namespace.
    pub fn run<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let _g = self.enter()?;
        f()
    }
}

fn set(fd: RawFd, path: &str) -> Result<()> {
    // SAFETY: setns on a namespace fd we own.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
        return Err(Error::last_os(format_args!("enter netns \"{path}\"")));
    }
    Ok(())
}

pub struct NetnsGuard {
    back: Netns,
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if set(self.back.fd(), &self.back.path).is_err() {
            // Carrying on in the wrong namespace could change the wrong
            // interfaces; stopping is the only safe answer.
            eprintln!("cnibox: cannot return to the original network namespace");
            std::process::abort();
        }
    }
}
