//! Thin wrappers over the system calls cnibox needs: namespaces, sysctls,
//! file locking and durable file replacement. No policy lives here.

pub mod file;
pub mod netns;
pub mod sysctl;
pub mod tun;
pub mod unix;

/// Let a child process hold the last reference to `fd` and close it, so that
/// whatever the kernel does when that file is released does not hold up this
/// process's exit, which the runtime waits for. Used for nf_tables sockets
/// that no keeper takes over (see nft::keeper): releasing one waits for an
/// RCU grace period whenever any commit (ours or anyone's) is still being
/// freed, 10-20 ms per call otherwise. The child keeps no other descriptor
/// (the runtime's pipes see EOF at once), is not waited for, and is reaped by
/// init once this process has exited.
pub fn close_detached(fd: std::os::fd::OwnedFd) {
    use std::os::fd::IntoRawFd;
    let raw = fd.into_raw_fd();
    // The child must close its copy last: it waits for EOF on a pipe whose
    // write end this process closes only after closing its own copy.
    let mut p = [-1i32; 2];
    // SAFETY: cnibox is single-threaded, so fork is safe; the child only
    // makes plain system calls before _exit.
    unsafe {
        if libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            libc::close(raw);
            return;
        }
        let child = libc::fork();
        if child == 0 {
            libc::close(p[1]);
            close_all_except(&[raw, p[0]]);
            let mut b = 0u8;
            while libc::read(p[0], (&mut b as *mut u8).cast(), 1) < 0 && *libc::__errno_location() == libc::EINTR {}
            libc::close(p[0]);
            libc::close(raw);
            libc::_exit(0);
        }
        libc::close(raw);
        libc::close(p[0]);
        libc::close(p[1]); // the child may go on now
    }
}

/// Close every descriptor of this process but those in `keep` (stdio included).
fn close_all_except(keep: &[std::os::fd::RawFd]) {
    let mut keep: Vec<u32> = keep.iter().filter(|&&f| f >= 0).map(|&f| f as u32).collect();
    keep.sort_unstable();
    let mut from = 0u32;
    for k in keep.into_iter().chain(std::iter::once(u32::MAX)) {
        if k > from {
            // SAFETY: close_range only closes descriptors; none of those is
            // referenced again by this process.
            unsafe { libc::syscall(libc::SYS_close_range, from, k - 1, 0u32) };
        }
        from = k.saturating_add(1);
    }
}

/// Run `serve` in a detached child process: in a session of its own, at
/// "/", with stdio on /dev/null and no other descriptor than `keep`, named
/// `name` in `ps`. SIGHUP and SIGPIPE are ignored; SIGTERM and SIGKILL end it
/// as usual. Returns once the child is set up and has closed its copies of
/// everything else, so that the runtime's pipes see EOF as soon as this
/// process exits and no file lock of ours outlives it; false if no child
/// could be started.
/// The child is not waited for: a short-lived plugin exits long before it,
/// and init reaps it then.
pub fn daemon(name: &std::ffi::CStr, keep: &[std::os::fd::RawFd], serve: impl FnOnce()) -> bool {
    let mut p = [-1i32; 2];
    // SAFETY: cnibox is single-threaded, so fork is safe. The child closes
    // what it must not hold before anything else, and ends in _exit so that
    // no destructor or buffered output of this process runs twice.
    unsafe {
        if libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return false;
        }
        let child = libc::fork();
        if child != 0 {
            libc::close(p[1]);
            // EOF once the child has closed its copy of the write end, last.
            let mut b = 0u8;
            while libc::read(p[0], (&mut b as *mut u8).cast(), 1) < 0 && *libc::__errno_location() == libc::EINTR {}
            libc::close(p[0]);
            return child > 0;
        }
        let mut held = keep.to_vec();
        held.push(p[1]);
        close_all_except(&held);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null >= 0 {
            for std_fd in (0..=2).filter(|f| !held.contains(f)) {
                libc::dup2(null, std_fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
        libc::setsid();
        libc::chdir(c"/".as_ptr());
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::prctl(libc::PR_SET_NAME, name.as_ptr());
        libc::close(p[1]); // set up: the caller may go on
        serve();
        libc::_exit(0);
    }
}

/// Fill `buf` from the kernel's random source (getrandom(2); never blocks after boot).
pub fn random_bytes(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n > 0 {
            filled += n as usize;
        } else if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            // No entropy source at all: fall back to time and pid, good enough for names.
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
            let mix = t ^ ((std::process::id() as u128) << 64);
            for (i, b) in buf[filled..].iter_mut().enumerate() {
                *b = (mix >> ((i % 16) * 8)) as u8;
            }
            return;
        }
    }
}

/// Whether this process holds CAP_NET_ADMIN in its effective set (in its own
/// user namespace: a rootless runtime's plugins have it there).
pub fn has_cap_net_admin() -> bool {
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
    const CAP_NET_ADMIN: u32 = 12;
    let mut h = Header { version: VERSION_3, pid: 0 };
    let mut d = [Data { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: capget with a version-3 header and room for its two data words.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut h as *mut Header, d.as_mut_ptr()) };
    r == 0 && d[0].effective & (1 << CAP_NET_ADMIN) != 0
}
