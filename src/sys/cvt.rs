//! The one place a libc return value becomes a `Result`: -1 means "see
//! errno", and a call interrupted by a signal is simply made again.

/// The calling thread's errno.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Return types whose -1 means failure (`int`, `long`, `ssize_t`).
pub trait MinusOne: Copy + PartialEq {
    const FAIL: Self;
}

impl MinusOne for i32 {
    const FAIL: Self = -1;
}

impl MinusOne for i64 {
    const FAIL: Self = -1;
}

impl MinusOne for isize {
    const FAIL: Self = -1;
}

/// `r`, or errno when it is -1.
pub fn cvt<T: MinusOne>(r: T) -> Result<T, i32> {
    if r == T::FAIL {
        Err(errno())
    } else {
        Ok(r)
    }
}

/// Make the call until it is not interrupted by a signal (EINTR).
pub fn retry<T: MinusOne>(mut call: impl FnMut() -> T) -> Result<T, i32> {
    loop {
        match cvt(call()) {
            Err(libc::EINTR) => continue,
            r => return r,
        }
    }
}
