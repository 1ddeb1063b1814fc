//! A periodic SIGALRM that interrupts blocking system calls, so a wait the
//! kernel offers no timeout for (flock) can still have a deadline.

use std::time::Duration;

/// SIGALRM every `period` while it lives, handled by a function that does
/// nothing and installed without SA_RESTART, so a blocking call returns
/// EINTR. Drop stops the timer and puts the previous handler back.
pub struct Ticks {
    previous: libc::sigaction,
}

extern "C" fn tick(_: libc::c_int) {}

// suseconds_t is i64 on some targets (where u32 converts without fail) and
// i32 on others: the fallible conversion is the one that builds everywhere.
#[allow(clippy::unnecessary_fallible_conversions)]
fn timeval(d: Duration) -> libc::timeval {
    // Periods are short (milliseconds): both parts fit whatever width the
    // target's time_t and suseconds_t have (the field types, not named here).
    libc::timeval { tv_sec: d.as_secs().try_into().unwrap_or(1), tv_usec: d.subsec_micros().try_into().unwrap_or(0) }
}

fn set_timer(period: Duration) -> std::io::Result<()> {
    let t = libc::itimerval { it_interval: timeval(period), it_value: timeval(period) };
    // SAFETY: setitimer reads a valid itimerval; the old value is not asked for.
    super::cvt(unsafe { libc::setitimer(libc::ITIMER_REAL, &t, std::ptr::null_mut()) }).map(drop)
}

impl Ticks {
    pub fn start(period: Duration) -> std::io::Result<Ticks> {
        // SAFETY: sigaction is plain old data and all-zero is a valid value
        // (empty mask, no flags: no SA_RESTART).
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = tick as *const () as libc::sighandler_t;
        // SAFETY: as above.
        let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: installs a handler that touches nothing; the old one is kept to restore.
        super::cvt(unsafe { libc::sigaction(libc::SIGALRM, &sa, &mut previous) })?;
        let ticks = Ticks { previous };
        set_timer(period)?;
        Ok(ticks)
    }
}

impl Drop for Ticks {
    fn drop(&mut self) {
        let _ = set_timer(Duration::ZERO);
        // SAFETY: puts back the handler that sigaction returned in start.
        unsafe { libc::sigaction(libc::SIGALRM, &self.previous, std::ptr::null_mut()) };
    }
}
