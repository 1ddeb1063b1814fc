//! The facts cnibox checks before it trusts another process or a descriptor
//! it was handed: whose it is, what it may do, which namespace it is in.
//! Each answer is about one instant; callers arrange that it cannot change
//! under them (a pidfd held across the checks, see nft::keeper).

use crate::error::{Error, Result};
use crate::sys::pidfd::Pidfd;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

pub const CAP_NET_ADMIN: u32 = 12;

/// Which object a file is (device and inode): two descriptors of one
/// socket, or two namespace files of one namespace, have the same id.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Id {
    dev: u64,
    ino: u64,
}

/// The id of the file `stat` described as `m`.
pub fn id_of(m: &std::fs::Metadata) -> Id {
    Id { dev: m.dev(), ino: m.ino() }
}

/// The id of the file `fd` is open on (one `fstat`, no duplicate descriptor).
pub fn file_id(fd: &OwnedFd) -> Result<Id> {
    // SAFETY: stat is plain old data; all-zero is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd stays open for the borrow; st is a properly sized out-parameter.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(Error::last_os("stat a descriptor"));
    }
    // dev_t and ino_t are unsigned, of at most 64 bits, on every target.
    Ok(Id { dev: st.st_dev as u64, ino: st.st_ino as u64 })
}

/// The processes holding a `flock` on the file `id` names, as `/proc/locks`
/// lists them: the process that took each lock, in our pid namespace (0 when
/// it is outside it). Waiters (lines marked `->`) are left out.
pub fn flock_holders(id: Id) -> Result<Vec<libc::pid_t>> {
    let text = std::fs::read_to_string("/proc/locks").map_err(|e| Error::from(e).context("/proc/locks"))?;
    Ok(parse_flock_holders(&text, id))
}

/// `/proc/locks` lines look like `1: FLOCK  ADVISORY  WRITE 4242 00:1f:8841 0 EOF`:
/// the device as major:minor in hex, then the inode.
fn parse_flock_holders(text: &str, id: Id) -> Vec<libc::pid_t> {
    let dev = id.dev as libc::dev_t;
    let want = format!("{:02x}:{:02x}:{}", libc::major(dev), libc::minor(dev), id.ino);
    let mut out = Vec::new();
    for line in text.lines() {
        let mut w = line.split_whitespace().skip(1);
        if w.next() != Some("FLOCK") {
            continue;
        }
        let (pid, file) = (w.nth(2), w.next());
        if file == Some(want.as_str()) {
            out.extend(pid.and_then(|p| p.parse::<libc::pid_t>().ok()));
        }
    }
    out
}

/// The file this process was started from: the path it was exec'd by
/// (`AT_EXECFN`, a plain lookup), or `/proc/self/exe` when that path no
/// longer leads to a file. The path is what runs unless root replaced the
/// file since: good enough to decide whether another file is this binary,
/// at a fraction of `/proc/self/exe`'s cost in a new process (the first
/// look into `/proc/<pid>` there builds its entries, and the parent's wait
/// tears them down).
pub fn own_executable() -> Result<Id> {
    // SAFETY: getauxval reads the auxiliary vector the kernel gave us; 0 means absent.
    let p = unsafe { libc::getauxval(libc::AT_EXECFN) } as *const libc::c_char;
    if !p.is_null() {
        // SAFETY: AT_EXECFN points to a NUL-terminated string on our stack that lives as long as the process.
        let path = unsafe { std::ffi::CStr::from_ptr(p) };
        let path = std::path::Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()));
        if let Ok(m) = std::fs::metadata(path) {
            return Ok(id_of(&m));
        }
    }
    std::fs::metadata("/proc/self/exe").map(|m| id_of(&m)).map_err(|e| Error::from(e).context("/proc/self/exe"))
}

/// Whether process `pid` (of our pid namespace) has capability `cap` in its
/// effective set, in its own user namespace (see `same_user_ns`).
pub fn has_cap(pid: libc::pid_t, cap: u32) -> Result<bool> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    if pid <= 0 {
        return Ok(false);
    }
    let mut h = Header { version: VERSION_3, pid };
    let mut d = [Data { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: capget with a version-3 header and room for its two data words.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut h as *mut Header, d.as_mut_ptr()) };
    if r != 0 {
        return Err(Error::last_os(format_args!("read the capabilities of process {pid}")));
    }
    let word = d.get((cap / 32) as usize).map_or(0, |w| w.effective);
    Ok(word & (1 << (cap % 32)) != 0)
}

/// Whether the process `handle` holds (`pid` in our pid namespace) is in
/// our user namespace, so that its capabilities mean over our namespaces
/// what ours do. Pidfds answer it on Linux 6.11 and later, /proc before: a
/// new process's first look into /proc/<pid> builds that directory's
/// entries, which costs more than the pidfd way's system calls together.
pub fn same_user_ns(handle: &Pidfd, pid: libc::pid_t) -> Result<bool> {
    same_user_ns_by_pidfd(handle).or_else(|_| same_user_ns_by_proc(pid))
}

fn same_user_ns_by_pidfd(handle: &Pidfd) -> Result<bool> {
    let ours = Pidfd::open(crate::sys::process::pid())?.user_ns()?;
    Ok(file_id(&handle.user_ns()?)? == file_id(&ours)?)
}

fn same_user_ns_by_proc(pid: libc::pid_t) -> Result<bool> {
    let ns = |p: &str| std::fs::metadata(p).map(|m| id_of(&m)).map_err(|e| Error::from(e).context(p.to_string()));
    Ok(ns(&format!("/proc/{pid}/ns/user"))? == ns("/proc/self/ns/user")?)
}

/// The network namespace this thread is in.
pub fn current_netns() -> Result<Id> {
    let p = "/proc/thread-self/ns/net";
    std::fs::metadata(p).map(|m| id_of(&m)).map_err(|e| Error::from(e).context(p))
}

/// The network namespace socket `sock` belongs to (SIOCGSKNS; needs
/// CAP_NET_ADMIN over that namespace).
pub fn netns_of_socket(sock: &OwnedFd) -> Result<Id> {
    const SIOCGSKNS: libc::c_ulong = 0x894c;
    // SAFETY: the ioctl takes no argument and returns a new descriptor.
    let fd = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCGSKNS as _) };
    if fd < 0 {
        return Err(Error::last_os("find the namespace of a socket"));
    }
    // SAFETY: fresh descriptor owned by nobody else (the kernel opens it close-on-exec).
    file_id(&unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Let any process ptrace this one as far as Yama is concerned (ptrace_scope
/// 1 otherwise limits it to ancestors); the kernel's own checks (same user,
/// capabilities no greater than the tracer's) still apply. EINVAL without
/// Yama is fine: then there is nothing to waive.
pub fn allow_any_ptracer() {
    const PR_SET_PTRACER: i32 = 0x5961_6d61;
    const PR_SET_PTRACER_ANY: libc::c_ulong = libc::c_ulong::MAX;
    // SAFETY: prctl with plain integer arguments.
    unsafe { libc::prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0) };
}

/// An anonymous memory file (memfd) with nothing in it, close-on-exec: an
/// object to lock that no path leads to but /proc/<pid>/fd of its holders.
pub fn lock_object(name: &std::ffi::CStr) -> Result<OwnedFd> {
    // SAFETY: memfd_create takes a NUL-terminated name and flags; it returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_memfd_create, name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::last_os("create a memfd"));
    }
    // SAFETY: fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Take an exclusive POSIX record lock on the whole of the file `fd` is open
/// on, if no other process holds one: false when one does. The lock is this
/// process's: it conflicts with every other process's, whichever descriptor
/// or open file description each locks through (a `flock` is shared by all
/// descriptors of one open file description, so copies of one descriptor
/// taken out of another process would not exclude each other), and it goes
/// when this process closes any descriptor of the file, or exits.
pub fn try_lock_as_process(fd: &OwnedFd) -> Result<bool> {
    // SAFETY: flock is plain old data; all-zero is a valid value.
    let mut l: libc::flock = unsafe { std::mem::zeroed() };
    // Whole file (start 0, length 0), from its start.
    l.l_type = libc::F_WRLCK as _;
    l.l_whence = libc::SEEK_SET as _;
    // SAFETY: fcntl F_SETLK on a valid, owned descriptor with a properly sized flock.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETLK, &l) } == 0 {
        return Ok(true);
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN | libc::EACCES) => Ok(false),
        _ => Err(Error::last_os("lock")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_executable_is_the_running_file_and_no_other() {
        let me = own_executable().unwrap();
        // current_exe reads the /proc/self/exe link, which qemu-user answers for its guest too.
        assert_eq!(me, id_of(&std::fs::metadata(std::env::current_exe().unwrap()).unwrap()));
        assert_ne!(me, id_of(&std::fs::metadata("/proc/self/cwd").unwrap()));
    }

    #[test]
    fn our_own_process_and_sockets() {
        let me = std::process::id() as libc::pid_t;
        assert!(same_user_ns(&Pidfd::open(me).unwrap(), me).unwrap());
        // Each way on its own (the pidfd one needs Linux 6.11; qemu-user may not pass it on).
        assert!(same_user_ns_by_proc(me).unwrap());
        if let Ok(same) = same_user_ns_by_pidfd(&Pidfd::open(me).unwrap()) {
            assert!(same);
        }
        assert_eq!(has_cap(me, CAP_NET_ADMIN).unwrap(), crate::sys::has_cap_net_admin());
        let fd = crate::sys::netlink::open(libc::NETLINK_ROUTE, 0).unwrap();
        assert_eq!(file_id(&fd).unwrap(), file_id(&fd.try_clone().unwrap()).unwrap());
        if crate::sys::has_cap_net_admin() {
            assert_eq!(netns_of_socket(&fd).unwrap(), current_netns().unwrap());
        }
    }

    #[test]
    fn a_process_in_a_user_namespace_of_its_own_is_not_in_ours() {
        let mut p = [-1; 2];
        // SAFETY: pipe2 fills two descriptors, owned below.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: fresh descriptors owned by nobody else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
        // SAFETY: the child only unshares, writes one byte and waits to be killed (async-signal-safe calls).
        let child = unsafe { libc::fork() };
        if child == 0 {
            // SAFETY: as above; the byte says whether the unshare worked.
            unsafe {
                let ok = u8::from(libc::unshare(libc::CLONE_NEWUSER) == 0);
                libc::write(w.as_raw_fd(), (&ok as *const u8).cast(), 1);
                libc::pause();
                libc::_exit(0);
            }
        }
        assert!(child > 0);
        drop(w);
        let mut ok = 0u8;
        // SAFETY: one byte into a valid buffer.
        assert_eq!(unsafe { libc::read(r.as_raw_fd(), (&mut ok as *mut u8).cast(), 1) }, 1);
        let handle = Pidfd::open(child).unwrap();
        let (by_proc, by_pidfd) = (same_user_ns_by_proc(child), same_user_ns_by_pidfd(&handle));
        // SAFETY: our own child, killed and reaped.
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, std::ptr::null_mut(), 0);
        }
        assert_eq!(ok, 1, "the child could not make a user namespace");
        assert!(!by_proc.unwrap());
        if let Ok(same) = by_pidfd {
            assert!(!same);
        }
    }

    #[test]
    fn flock_holders_are_read_by_device_and_inode() {
        let id = Id { dev: libc::makedev(8, 0x1f) as u64, ino: 8841 };
        let text = "1: FLOCK  ADVISORY  WRITE 4242 08:1f:8841 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 4343 08:1f:8841 0 EOF\n\
                    2: POSIX  ADVISORY  WRITE 77 08:1f:8841 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE 99 08:1f:88410 0 EOF\n\
                    4: FLOCK  ADVISORY  READ 5 08:1f:8841 0 EOF\n";
        assert_eq!(parse_flock_holders(text, id), vec![4242, 5]);
        assert!(parse_flock_holders("", id).is_empty());
    }

    #[test]
    fn a_flock_we_hold_lists_us() {
        let m = lock_object(c"cnibox-test-holders").unwrap();
        // SAFETY: flock on a valid, owned descriptor.
        assert_eq!(unsafe { libc::flock(m.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
        let me = std::process::id() as libc::pid_t;
        assert_eq!(flock_holders(file_id(&m).unwrap()).unwrap(), vec![me]);
    }

    #[test]
    fn a_process_lock_excludes_other_processes_through_any_copy() {
        let m = lock_object(c"cnibox-test-turn").unwrap();
        // SAFETY: getpid cannot fail.
        let me = Pidfd::open(unsafe { libc::getpid() }).unwrap();
        let (a, b) = (me.take(m.as_raw_fd()).unwrap(), me.take(m.as_raw_fd()).unwrap());
        assert!(try_lock_as_process(&a).unwrap());
        // Our own lock again, through another copy: still ours.
        assert!(try_lock_as_process(&b).unwrap());
        // SAFETY: the child only locks and exits (async-signal-safe calls).
        let child = unsafe { libc::fork() };
        if child == 0 {
            let code = match try_lock_as_process(&b) {
                Ok(false) => 0,
                _ => 1,
            };
            // SAFETY: leaving the forked child without running the test harness's exit.
            unsafe { libc::_exit(code) };
        }
        assert!(child > 0);
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid out-parameter.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "another process took the turn");
    }
}
