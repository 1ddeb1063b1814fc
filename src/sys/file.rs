//! File locking and crash-safe replacement, for state that must survive a
//! plugin killed at any instant.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a call waits for a file lock another trusted process holds. A
/// holder that is another cnibox call keeps it for milliseconds; anyone who
/// can open the file can hold it for ever (uid 0 without capabilities can
/// open root's 0600 files, and nothing in the permission bits keeps it out),
/// so the wait ends in a "try again later" error (code 11) instead of a call
/// that never returns.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// After this long, and each time as long again, a waiter looks at who holds
/// the lock, and stops waiting for a holder it does not trust.
const HOLDER_LOOK: Duration = Duration::from_secs(1);

/// Why a lock was not taken.
enum Refused {
    TimedOut,
    /// Held by this process, which is not one cnibox waits for.
    Untrusted(libc::pid_t),
    Os(std::io::Error),
}

/// Wait for an exclusive flock on `fd` for at most `wait`: a blocking flock
/// that a SIGALRM every TICK interrupts, so the deadline is checked while
/// the kernel still queues us as a waiter. Every HOLDER_LOOK the holders are
/// judged (`untrusted_holder`): a call waits for its peers, not for a process
/// that cannot change the network, so such a holder delays it by about a
/// second, not by the whole deadline.
fn flock_within(fd: std::os::fd::BorrowedFd<'_>, wait: Duration) -> std::result::Result<(), Refused> {
    const TICK: Duration = Duration::from_millis(100);
    let start = Instant::now();
    let mut look = start + HOLDER_LOOK;
    let _ticks = super::alarm::Ticks::start(TICK).map_err(Refused::Os)?;
    loop {
        // SAFETY: flock on a descriptor the caller owns.
        match super::cvt(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) }) {
            Ok(_) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {
                let now = Instant::now();
                if now >= start + wait {
                    return Err(Refused::TimedOut);
                }
                if now >= look {
                    look = now + HOLDER_LOOK;
                    if let Some(pid) = untrusted_holder(fd) {
                        return Err(Refused::Untrusted(pid));
                    }
                }
            }
            Err(e) => return Err(Refused::Os(e)),
        }
    }
}

/// A holder of the flock on `fd`'s file that cnibox does not wait for: one
/// without CAP_NET_ADMIN in our user namespace (another user, uid 0 without
/// capabilities), or whose locking process is gone (a child kept the
/// descriptor: nothing trusted leaves a lock behind that way). None when any
/// holder is trusted, when a holder is outside our pid namespace (it cannot
/// be judged, so the deadline decides), or when the holders cannot be read.
fn untrusted_holder(fd: std::os::fd::BorrowedFd<'_>) -> Option<libc::pid_t> {
    use super::{pidfd::Pidfd, trust};
    let id = trust::file_id(&fd.try_clone_to_owned().ok()?).ok()?;
    let holders = trust::flock_holders(id).ok()?;
    let judge = |pid: libc::pid_t| -> Option<bool> {
        if pid <= 0 {
            return None;
        }
        match trust::has_cap(pid, trust::CAP_NET_ADMIN) {
            Ok(cap) => Some(cap && Pidfd::open(pid).and_then(|h| trust::same_user_ns(&h, pid)).unwrap_or(false)),
            Err(e) if e.errno == libc::ESRCH => Some(false),
            Err(_) => None,
        }
    };
    let mut untrusted = None;
    for &pid in &holders {
        match judge(pid) {
            Some(false) => untrusted = untrusted.or(Some(pid)),
            _ => return None,
        }
    }
    untrusted
}

/// An exclusive `flock` held until drop (the kernel also drops it if we die).
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Lock `path`, creating it as an empty 0600 file when missing.
    pub fn exclusive(path: &Path) -> Result<FileLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| Error::os(format_args!("open lock file {}", path.display()), e.raw_os_error().unwrap_or(0)))?;
        Self::lock(file, path, 0)
    }

    fn lock(file: File, path: &Path, flags: i32) -> Result<FileLock> {
        Self::take(file, path.display(), flags)
    }

    /// Lock a file the caller opened (and checked); `what` names it in errors.
    /// `flags` is 0 to wait for the lock, at most [`LOCK_WAIT`], or `LOCK_NB`
    /// to fail at once.
    pub fn take(file: File, what: impl std::fmt::Display, flags: i32) -> Result<FileLock> {
        let fd = file.as_raw_fd();
        // SAFETY: flock on a valid, owned descriptor.
        let r = match super::cvt_r(|| unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) }) {
            Err(e) if flags & libc::LOCK_NB == 0 && e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
                flock_within(file.as_fd(), LOCK_WAIT)
            }
            r => r.map(drop).map_err(Refused::Os),
        };
        r.map_err(|e| match e {
            Refused::TimedOut => Error::os(
                format_args!("lock {what}: another process has held it for more than {} s", LOCK_WAIT.as_secs()),
                libc::EAGAIN,
            ),
            Refused::Untrusted(pid) => Error::os(
                format_args!(
                    "lock {what}: held by process {pid}, which cannot change the network (no CAP_NET_ADMIN); \
                     not waiting for it"
                ),
                libc::EAGAIN,
            ),
            Refused::Os(e) => Error::os(format_args!("lock {what}"), e.raw_os_error().unwrap_or(0)),
        })?;
        Ok(FileLock { _file: file })
    }

    /// Map the first `len` bytes of `file` read-only, for as long as this
    /// lock is held. The bytes must not change while they are mapped, so
    /// `file` must be one that no holder of this lock writes in place: cnibox
    /// replaces such files whole (a new inode renamed over the old one), and
    /// the mapping keeps the inode it was made from.
    pub fn map<'l>(&'l self, file: &File, len: usize) -> Result<Mapping<'l>> {
        if len == 0 {
            return Ok(Mapping::empty());
        }
        // SAFETY: a private read-only mapping of a descriptor the caller
        // owns; the kernel picks the address; unmapped in Drop.
        let ptr =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(Error::last_os("map"));
        }
        Ok(Mapping { ptr, len, _held: PhantomData })
    }
}

/// Bytes of a file mapped read-only, valid while the lock they came with is held.
pub struct Mapping<'l> {
    ptr: *mut libc::c_void,
    len: usize,
    _held: PhantomData<&'l FileLock>,
}

impl Mapping<'static> {
    /// No bytes (a file that does not exist yet).
    pub fn empty() -> Mapping<'static> {
        Mapping { ptr: std::ptr::null_mut(), len: 0, _held: PhantomData }
    }
}

impl std::ops::Deref for Mapping<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: ptr maps len readable bytes until Drop, and (FileLock::map)
        // nobody holding the lock changes them meanwhile.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapping<'_> {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmapping exactly what mmap returned, once.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}

/// Replace `path` with `data` so that a crash leaves either the old or the new
/// content: write a temporary file beside it, fsync, rename over, fsync the directory.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let fail = |what: &str, e: std::io::Error| {
        Error::os(format_args!("{what} {}", tmp.display()), e.raw_os_error().unwrap_or(0))
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(|e| fail("create", e))?;
    let written = f.write_all(data).and_then(|_| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("write", e));
    }
    drop(f);
    if let Err(e) = crate::failpoint::hit("replace state file") {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::os(format_args!("rename to {}", path.display()), e.raw_os_error().unwrap_or(0)));
    }
    sync_dir(dir);
    Ok(())
}

/// Make a rename durable. Failure here is not an error of the operation: the
/// data is already consistent, only its durability across power loss is weaker.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// `mkdir -p` with a mode for the directories it creates.
pub fn create_dir_all(dir: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|e| Error::os(format_args!("create directory {}", dir.display()), e.raw_os_error().unwrap_or(0)))
}
