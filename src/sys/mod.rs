//! Thin wrappers over the system calls cnibox needs: namespaces, sysctls,
//! file locking and durable file replacement. No policy lives here.

pub mod file;
pub mod netns;
pub mod sysctl;
pub mod tun;

/// Let a child process hold the last reference to `fd` and close it, so that
/// whatever the kernel does when that file is released does not hold up this
/// process's exit, which the runtime waits for. Used for nf_tables sockets:
/// releasing one waits for an RCU grace period whenever any commit (ours or
/// anyone's) is still being freed, 10-20 ms per call otherwise. The child
/// keeps no other descriptor (the runtime's pipes see EOF at once), is not
/// waited for, and is reaped by init once this process has exited.
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
            for std_fd in 0..=2 {
                if std_fd != raw && std_fd != p[0] {
                    libc::close(std_fd);
                }
            }
            let mut b = 0u8;
            while libc::read(p[0], (&mut b as *mut u8).cast(), 1) < 0 && *libc::__errno_location() == libc::EINTR {}
            let (lo, hi) = if raw < p[0] { (raw, p[0]) } else { (p[0], raw) };
            libc::syscall(libc::SYS_close_range, 3u32, (lo - 1).max(2) as u32, 0u32);
            libc::syscall(libc::SYS_close_range, (lo + 1) as u32, (hi - 1) as u32, 0u32);
            libc::syscall(libc::SYS_close_range, (hi + 1) as u32, u32::MAX, 0u32);
            libc::close(p[0]);
            libc::close(raw);
            libc::_exit(0);
        }
        libc::close(raw);
        libc::close(p[0]);
        libc::close(p[1]); // the child may go on now
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
