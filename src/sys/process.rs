//! Processes: who we run as, and passing signals on to a child command
//! (`cnibox run` must tear down its attachment however the command ends, so
//! it catches the signals meant for the command and forwards them).

use std::sync::atomic::{AtomicI32, Ordering};

/// The effective user id of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// This process's id.
pub fn pid() -> libc::pid_t {
    // SAFETY: getpid has no arguments and cannot fail.
    unsafe { libc::getpid() }
}

/// The child that caught signals are passed on to; 0 before it exists.
static CHILD: AtomicI32 = AtomicI32::new(0);
/// The last signal caught while there was no child to pass it on to.
static PENDING: AtomicI32 = AtomicI32::new(0);

/// Pass the signal to the child; before it exists, remember it. A signal from
/// the terminal (Ctrl-C: si_code SI_KERNEL) already reached the child, which
/// shares our process group, so it is not sent a second time.
extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo (or none) to an SA_SIGINFO handler.
    let from_tty = !info.is_null() && unsafe { (*info).si_code } == libc::SI_KERNEL;
    match CHILD.load(Ordering::SeqCst) {
        0 => PENDING.store(sig, Ordering::SeqCst),
        _ if from_tty => {}
        // SAFETY: kill is async-signal-safe and takes no pointer.
        pid => unsafe {
            libc::kill(pid, sig);
        },
    }
}

/// Catch `sigs` from now on: each is passed to the child named by
/// [`forward_to`], or kept for [`pending`] while there is none. exec resets
/// the handlers in the child, which gets the default behaviour.
pub fn forward_signals(sigs: &[libc::c_int]) -> std::io::Result<()> {
    for &sig in sigs {
        // SAFETY: sigaction is plain old data, all-zero is a valid value (empty mask).
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = forward as *const () as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART | libc::SA_SIGINFO;
        // SAFETY: the handler only makes async-signal-safe calls (atomics, kill).
        super::cvt(unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) })?;
    }
    Ok(())
}

/// The signal caught while no child was there to take it, or 0.
pub fn pending() -> libc::c_int {
    PENDING.load(Ordering::SeqCst)
}

/// Pass caught signals to `child` from now on (`None`: keep them again),
/// starting with the one caught while it was being started, if any.
pub fn forward_to(child: Option<&super::child::Child>) {
    let pid = child.map_or(0, |c| c.pid());
    CHILD.store(pid, Ordering::SeqCst);
    let sig = if pid != 0 { PENDING.swap(0, Ordering::SeqCst) } else { 0 };
    if sig != 0 {
        // SAFETY: signalling our own child, which we have not yet waited for.
        unsafe { libc::kill(pid, sig) };
    }
}
