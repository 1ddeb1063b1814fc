//! Thin wrappers over the system calls cnibox needs: namespaces, sysctls,
//! file locking and durable file replacement. No policy lives here.

pub mod file;
pub mod netns;
pub mod sysctl;
pub mod tun;

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
