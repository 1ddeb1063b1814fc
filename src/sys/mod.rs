//! Thin wrappers over the system calls cnibox needs: namespaces, sysctls,
//! file locking and durable file replacement. No policy lives here.

pub mod alarm;
pub mod arena;
pub mod child;
pub mod dir;
pub mod file;
pub mod guarded;
pub mod memmem;
pub mod mount;
pub mod netlink;
pub mod netns;
pub mod packet;
pub mod pidfd;
pub mod process;
pub mod service;
pub mod sysctl;
pub mod trust;
pub mod tun;
pub mod unix;
pub mod unix_path;

/// A system call's return value that says failure by being -1 (the errno is
/// then in `errno`).
pub trait MinusOne: Copy + PartialEq {
    const MINUS_ONE: Self;
}

macro_rules! minus_one {
    ($($t:ty)*) => { $(impl MinusOne for $t { const MINUS_ONE: Self = -1; })* };
}
minus_one!(i32 i64 isize);

/// The result of a libc call that returns -1 on failure, as an `io::Result`
/// carrying the errno. Allocates nothing, so it may be used between fork and exec.
pub fn cvt<T: MinusOne>(r: T) -> std::io::Result<T> {
    if r == T::MINUS_ONE {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// [`cvt`], calling `f` again as long as it is interrupted by a signal (EINTR).
pub fn cvt_r<T: MinusOne>(mut f: impl FnMut() -> T) -> std::io::Result<T> {
    loop {
        match cvt(f()) {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            r => return r,
        }
    }
}

/// An `io::Error` from a system call as a cnibox error saying what was being done.
pub fn os_err(what: impl std::fmt::Display, e: std::io::Error) -> crate::error::Error {
    crate::error::Error::os(what, e.raw_os_error().unwrap_or(0))
}

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
            let _ = cvt_r(|| libc::read(p[0], (&mut b as *mut u8).cast(), 1));
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
    crate::sort::sort(&mut keep);
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

/// Start a detached child process: in a session of its own, at "/", named
/// `name` in `ps`, with stdio on /dev/null and nothing else open but the
/// descriptors `keep`, moved to 3, 4, ... in that order. SIGHUP and SIGPIPE
/// are ignored; SIGTERM and SIGKILL end it as usual. The child runs `start`
/// (given those descriptors, owned), then `serve` with what `start` made, if
/// it made something. Returns whether it did, once it has (or false after
/// DAEMON_START_DEADLINE without an answer): by then the child has closed its copies of
/// everything else, so the runtime's pipes see EOF as soon as this process
/// exits and no file lock of ours outlives it. The child is not waited for:
/// a short-lived plugin exits long before it, and init reaps it then.
pub fn daemon<T>(
    name: &std::ffi::CStr,
    keep: &[std::os::fd::RawFd],
    start: impl FnOnce(Vec<std::os::fd::OwnedFd>) -> Option<T>,
    serve: impl FnOnce(T),
) -> bool {
    let mut p = [-1i32; 2];
    // SAFETY: cnibox is single-threaded, so fork is safe. The child closes
    // what it must not hold before anything else, and ends in _exit so that
    // no destructor or buffered output of this process runs twice. In the
    // child, descriptors 3.. are the copies of `keep` it just put there, each
    // handed to one OwnedFd.
    unsafe {
        if libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return false;
        }
        let child = libc::fork();
        if child != 0 {
            libc::close(p[1]);
            // The child's verdict, or EOF if it died first (or never was).
            let mut b = 0u8;
            let mut pfd = libc::pollfd { fd: p[0], events: libc::POLLIN, revents: 0 };
            let deadline = DAEMON_START_DEADLINE.as_millis() as i32;
            let n = match cvt_r(|| libc::poll(&mut pfd, 1, deadline)) {
                Ok(r) if r > 0 => cvt_r(|| libc::read(p[0], (&mut b as *mut u8).cast(), 1)),
                _ => Ok(0),
            };
            libc::close(p[0]);
            return matches!(n, Ok(1)) && b == 1;
        }
        let mut held = keep.to_vec();
        held.push(p[1]);
        close_all_except(&held);
        // Out of the way first (above any number they are to take), then into place.
        let high: Vec<i32> = held.iter().map(|&f| libc::fcntl(f, libc::F_DUPFD_CLOEXEC, 100)).collect();
        for &f in &held {
            libc::close(f);
        }
        for (i, &f) in high[..keep.len()].iter().enumerate() {
            libc::dup3(f, 3 + i as i32, libc::O_CLOEXEC);
            libc::close(f);
        }
        let verdict = high[keep.len()];
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null >= 0 {
            for std_fd in 0..=2 {
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
        use std::os::fd::FromRawFd;
        let kept = (0..keep.len()).map(|i| std::os::fd::OwnedFd::from_raw_fd(3 + i as i32)).collect();
        let started = start(kept);
        libc::write(verdict, [started.is_some() as u8].as_ptr().cast(), 1);
        libc::close(verdict);
        if let Some(t) = started {
            serve(t);
        }
        libc::_exit(0);
    }
}

/// How long `daemon` waits for its child to say whether it started.
const DAEMON_START_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// Fill `buf` from the kernel's random source (getrandom(2); never blocks after boot).
pub fn random_bytes(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n = cvt_r(|| unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) });
        if let Ok(n @ 1..) = n {
            filled += n.unsigned_abs();
        } else {
            // No entropy source at all: fall back to time and pid, good enough for names.
            let t =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
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
    libc::pid_t::try_from(std::process::id()).is_ok_and(|me| trust::has_cap(me, trust::CAP_NET_ADMIN).unwrap_or(false))
}
