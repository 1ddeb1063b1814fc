//! Network namespaces by file descriptor: open one from a path (checking that
//! it really is a namespace), compare two, and enter one for a scope.
//!
//! cnibox is single-threaded, so `setns` moves the whole process. Sockets keep
//! the namespace they were created in; callers therefore enter a namespace
//! only to open a netlink socket there or to write its `/proc/sys/net` knobs,
//! and the guard returns them to where they were.

use super::{cvt, cvt_r, mount, os_err};
use crate::error::{Error, Result};
use std::ffi::{CStr, CString};
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
        // SAFETY: stat is plain old data; all-zero is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: c is a valid NUL-terminated path, st a properly sized out-parameter.
        if unsafe { libc::stat(c.as_ptr(), &mut st) } != 0 {
            return Err(Error::last_os(format_args!("failed to open netns \"{path}\"")));
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(not_netns(""));
        }
        // O_NONBLOCK: should the path have become a FIFO meanwhile, opening
        // it must not hang; the checks below refuse it.
        let fd = open_cloexec(&c, libc::O_NONBLOCK | libc::O_NOCTTY)
            .map_err(|e| os_err(format_args!("failed to open netns \"{path}\""), e))?;
        // SAFETY: statfs is plain old data; all-zero is a valid value.
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
        Netns::open(CURRENT)
    }

    /// The namespace this process is in now, to return to: opened without
    /// [`Netns::open`]'s checks, which a path the kernel itself provides
    /// does not need (`setns` with `CLONE_NEWNET` refuses anything else).
    fn here() -> Result<Netns> {
        let fd = open_cloexec(c"/proc/thread-self/ns/net", 0).map_err(|e| os_err(CURRENT, e))?;
        Ok(Netns { fd, path: CURRENT.to_string() })
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
        // SAFETY: stat is plain old data; all-zero is a valid value.
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

    /// Whether this is the namespace the process is in now (one `stat` of
    /// the current one's nsfs inode, nothing opened).
    pub fn is_current(&self) -> Result<bool> {
        // SAFETY: stat is plain old data; all-zero is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid NUL-terminated path and a properly sized out-parameter.
        if unsafe { libc::stat(c"/proc/thread-self/ns/net".as_ptr(), &mut st) } != 0 {
            return Err(Error::last_os(format_args!("stat {CURRENT}")));
        }
        Ok(self.ident()? == (st.st_dev as u64, st.st_ino as u64))
    }

    /// Enter this namespace until the guard drops.
    pub fn enter(&self) -> Result<NetnsGuard> {
        let back = Netns::here()?;
        set(self.fd(), &self.path)?;
        Ok(NetnsGuard { back })
    }

    /// Run `f` inside this namespace.
    pub fn run<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let _g = self.enter()?;
        f()
    }
}

const CURRENT: &str = "/proc/thread-self/ns/net";

/// `openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC | flags)`: musl's `open`
/// follows every `O_CLOEXEC` open with an `fcntl(F_SETFD)` for kernels that
/// ignored the flag (before 2.6.23); its `openat` does not.
fn open_cloexec(path: &CStr, flags: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: a valid NUL-terminated path; the flags open nothing for writing.
    let fd =
        cvt_r(|| unsafe { libc::openat(libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC | flags) })?;
    // SAFETY: fd was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setns(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: setns on a namespace descriptor the caller holds open.
    cvt(unsafe { libc::setns(fd, libc::CLONE_NEWNET) }).map(drop)
}

fn set(fd: RawFd, path: &str) -> Result<()> {
    setns(fd).map_err(|e| os_err(format_args!("enter netns \"{path}\""), e))
}

/// Return to `back`, or stop: carrying on in the wrong namespace could change
/// the wrong interfaces.
fn set_or_abort(back: &Netns) {
    if set(back.fd(), &back.path).is_err() {
        eprintln!("cnibox: cannot return to the original network namespace");
        std::process::abort();
    }
}

/// Create a fresh network namespace and pin it with a bind mount on `path`
/// (an existing empty file), without leaving the current one.
pub fn create_pinned(path: &CStr) -> Result<()> {
    let back = Netns::here()?;
    // SAFETY: a plain syscall; cnibox is single-threaded, so the whole process moves.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWNET) }).map_err(|e| os_err("create network namespace", e))?;
    let pinned = mount::bind(c"/proc/thread-self/ns/net", path, 0);
    set_or_abort(&back);
    pinned.map_err(|e| os_err(format_args!("pin namespace on \"{}\"", path.to_string_lossy()), e))
}

/// Everything a command needs to start inside a named namespace the way
/// `ip netns exec` starts it, prepared beforehand so that [`Exec::enter`]
/// only makes system calls (it runs between fork and exec).
pub struct Exec {
    ns: Netns,
    /// Files bound over others in the command's own mount namespace
    /// (`/etc/netns/NAME/x` over `/etc/x`).
    binds: Vec<(CString, CString)>,
}

impl Exec {
    pub fn new(ns: Netns, binds: Vec<(CString, CString)>) -> Exec {
        Exec { ns, binds }
    }

    /// Enter the namespace, then a private mount namespace with a sysfs that
    /// shows this network namespace's devices, and the binds in place.
    pub fn enter(&self) -> std::io::Result<()> {
        setns(self.ns.fd())?;
        // SAFETY: a plain syscall; it moves only this (single-threaded) process.
        cvt(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
        mount::propagation(c"/", libc::MS_SLAVE | libc::MS_REC)?;
        let mut flags = 0;
        if mount::detach(c"/sys").is_err() {
            // Could not take the old sysfs away: cover it; a read-only one
            // can only be covered read-only.
            if mount::is_read_only(c"/sys").unwrap_or(false) {
                flags = libc::MS_RDONLY;
            }
        }
        mount::mount(c"none", c"/sys", c"sysfs", flags)?;
        for (src, dst) in &self.binds {
            // As iproute2: a file missing under /etc is skipped, not fatal.
            let _ = mount::bind(src, dst, 0);
        }
        Ok(())
    }

    /// Start `argv` inside (in a child; this process stays where it is).
    /// `enter` makes only system calls on data prepared before, and cnibox
    /// is single-threaded, as `spawn_forked` requires.
    pub fn spawn(self, argv: &[CString]) -> std::io::Result<super::child::Child> {
        super::child::spawn_forked(argv, || self.enter())
    }
}

pub struct NetnsGuard {
    back: Netns,
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        set_or_abort(&self.back);
    }
}
