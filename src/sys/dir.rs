//! A directory handle for the openat family. Every name is one path
//! component resolved from the handle without following a symbolic link, so
//! whatever a path is swapped to after the directory was opened is never read
//! or written. Files are opened non-blocking, so a FIFO planted under a name
//! cannot make an open wait for a writer or a reader.

use super::MinusOne;
use crate::error::{Error, Result};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// An open directory.
pub struct Dir {
    fd: OwnedFd,
}

/// What `stat` says about a file, in the terms cnibox checks.
#[derive(Clone, Copy)]
pub struct Stat {
    pub mode: u32,
    pub uid: u32,
    pub size: u64,
}

impl Stat {
    fn of(st: &libc::stat) -> Stat {
        Stat {
            mode: st.st_mode,
            uid: st.st_uid,
            // off_t is 64 bits on every target musl supports, and never negative for a file.
            size: u64::try_from(st.st_size).unwrap_or(0),
        }
    }

    fn kind_bits(&self) -> u32 {
        self.mode & libc::S_IFMT
    }

    pub fn is_dir(&self) -> bool {
        self.kind_bits() == libc::S_IFDIR
    }

    pub fn is_file(&self) -> bool {
        self.kind_bits() == libc::S_IFREG
    }

    /// The kind of file, for messages: "a FIFO", "a directory", ...
    pub fn kind(&self) -> &'static str {
        match self.kind_bits() {
            libc::S_IFREG => "a regular file",
            libc::S_IFDIR => "a directory",
            libc::S_IFIFO => "a FIFO",
            libc::S_IFSOCK => "a socket",
            libc::S_IFLNK => "a symbolic link",
            libc::S_IFCHR => "a character device",
            libc::S_IFBLK => "a block device",
            _ => "an unknown kind of file",
        }
    }

    /// Owned by root or by this process's effective user.
    pub fn owned_by_us(&self) -> bool {
        self.uid == 0 || self.uid == super::process::euid()
    }

    /// Why no one but its owner could have changed a directory's entries:
    /// None when that holds (or when `sticky_ok`, the sticky bit, keeps others
    /// from replacing entries they do not own), else the reason it does not.
    pub fn untrusted_reason(&self, sticky_ok: bool) -> Option<String> {
        if !self.owned_by_us() {
            return Some(format!("it is owned by uid {}, not by root", self.uid));
        }
        let perm = self.mode & 0o7777;
        if perm & 0o022 != 0 && !(sticky_ok && perm & libc::S_ISVTX != 0) {
            return Some(format!("others may write to it (mode {perm:o})"));
        }
        None
    }
}

/// `sys::cvt` with the errno alone, which `Error::os` names.
fn cvt<T: MinusOne>(r: T) -> std::result::Result<T, i32> {
    super::cvt(r).map_err(|e| e.raw_os_error().unwrap_or(0))
}

/// `sys::cvt_r` (EINTR retried) with the errno alone.
fn retry<T: MinusOne>(f: impl FnMut() -> T) -> std::result::Result<T, i32> {
    super::cvt_r(f).map_err(|e| e.raw_os_error().unwrap_or(0))
}

fn c_name(name: &str) -> Result<CString> {
    CString::new(name).map_err(|_| Error::msg(format!("invalid file name \"{}\"", name.escape_default())))
}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::config(format!("path {} contains a NUL byte", path.display())))
}

/// Take ownership of a descriptor a system call just returned.
fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

const DIR_FLAGS: i32 = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

impl Dir {
    /// Open the directory at `path`, whose last component must not be a symbolic link.
    pub fn open(path: &Path) -> Result<Dir> {
        let c = c_path(path)?;
        // SAFETY: a NUL-terminated path; the result is owned at once.
        let fd = retry(|| unsafe { libc::open(c.as_ptr(), DIR_FLAGS) })
            .map_err(|e| Error::os(format_args!("open {}", path.display()), e))?;
        Ok(Dir { fd: own(fd) })
    }

    /// Open the directory `name` inside this one (not through a symbolic link).
    pub fn open_dir(&self, name: &str) -> Result<Dir> {
        let c = c_name(name)?;
        // SAFETY: a NUL-terminated name relative to a descriptor we own; the result is owned at once.
        let fd = retry(|| unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), DIR_FLAGS) })
            .map_err(|e| Error::os(format_args!("open {name}"), e))?;
        Ok(Dir { fd: own(fd) })
    }

    /// Create the directory `name` inside this one.
    pub fn mkdir(&self, name: &str, mode: u32) -> Result<()> {
        let c = c_name(name)?;
        // SAFETY: as in open_dir.
        cvt(unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), mode) })
            .map_err(|e| Error::os(format_args!("create directory {name}"), e))?;
        Ok(())
    }

    /// Open the file `name` with `flags`, never through a symbolic link and
    /// never blocking (a FIFO opens at once, or fails with ENXIO for writing).
    pub fn open_file(&self, name: &str, flags: i32, mode: u32) -> Result<File> {
        let c = c_name(name)?;
        let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
        // SAFETY: as in open_dir.
        let fd = retry(|| unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags, mode) })
            .map_err(|e| Error::os(format_args!("open {name}"), e))?;
        Ok(File::from(own(fd)))
    }

    /// Replace the file `name` here with `data` (mode `mode`), so that a kill
    /// at any instant leaves the old or the new content: write `.<name>.new`,
    /// flush it, rename it over.
    pub fn replace(&self, name: &str, data: &[u8], mode: u32) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let scratch = format!(".{name}.new");
        match self.unlink(&scratch) {
            Err(e) if !e.is_not_found() => return Err(e),
            _ => {}
        }
        let f = self.open_file(&scratch, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, mode)?;
        let r = f
            .write_all_at(data, 0)
            .and_then(|()| f.sync_data())
            .map_err(|e| Error::from(e).context(format_args!("write {scratch}")))
            .and_then(|()| crate::failpoint::hit("replace state file"))
            .and_then(|()| self.rename(&scratch, name));
        if r.is_err() {
            let _ = self.unlink(&scratch);
        }
        r
    }

    /// Swap the names `a` and `b` inside this directory atomically
    /// (`renameat2(RENAME_EXCHANGE)`); both must exist.
    pub fn exchange(&self, a: &str, b: &str) -> Result<()> {
        // syscall(2) reads every argument as a long; the flag (2) fits any width of it.
        const RENAME_EXCHANGE: libc::c_long = libc::RENAME_EXCHANGE as libc::c_long;
        let (ca, cb) = (c_name(a)?, c_name(b)?);
        let d = self.fd.as_raw_fd();
        // SAFETY: NUL-terminated names relative to a descriptor we own; the
        // syscall number comes from libc for this target.
        cvt(unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::c_long::from(d),
                ca.as_ptr(),
                libc::c_long::from(d),
                cb.as_ptr(),
                RENAME_EXCHANGE,
            )
        })
        .map_err(|e| Error::os(format_args!("exchange {a} and {b}"), e))?;
        Ok(())
    }

    /// Rename `from` to `to` inside this directory, replacing `to` atomically.
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (f, t) = (c_name(from)?, c_name(to)?);
        let d = self.fd.as_raw_fd();
        // SAFETY: NUL-terminated names relative to a descriptor we own.
        cvt(unsafe { libc::renameat(d, f.as_ptr(), d, t.as_ptr()) })
            .map_err(|e| Error::os(format_args!("rename {from} to {to}"), e))?;
        Ok(())
    }

    /// Remove the entry `name` (not a directory).
    pub fn unlink(&self, name: &str) -> Result<()> {
        let c = c_name(name)?;
        // SAFETY: a NUL-terminated name relative to a descriptor we own.
        cvt(unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) })
            .map_err(|e| Error::os(format_args!("remove {name}"), e))?;
        Ok(())
    }

    /// The directory's own status.
    pub fn stat(&self) -> Result<Stat> {
        fstat(self.fd.as_raw_fd()).map_err(|e| Error::os("stat directory", e))
    }

    /// The status of `name` here, not following a symbolic link.
    pub fn stat_at(&self, name: &str) -> Result<Stat> {
        let c = c_name(name)?;
        // SAFETY: a zeroed stat buffer that the kernel fills; the name is NUL-terminated.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        cvt(unsafe { libc::fstatat(self.fd.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })
            .map_err(|e| Error::os(format_args!("stat {name}"), e))?;
        Ok(Stat::of(&st))
    }

    /// Whether this process may create and remove entries here (a read-only
    /// mount, or no permission, say no), as `access(2)` judges.
    pub fn writable(&self) -> Result<()> {
        // The system call itself (the C library's wrapper adds code for flags
        // we do not pass); integers widened, as syscall(2) reads longs.
        let (fd, mode) = (libc::c_long::from(self.fd.as_raw_fd()), libc::c_long::from(libc::W_OK | libc::X_OK));
        // SAFETY: a static NUL-terminated name relative to a descriptor we own.
        cvt(unsafe { libc::syscall(libc::SYS_faccessat, fd, c".".as_ptr(), mode) })
            .map(drop)
            .map_err(|e| Error::os("write", e))
    }

    /// The names of the entries here, "." and ".." left out.
    pub fn names(&self) -> Result<Vec<Vec<u8>>> {
        // readdir consumes the descriptor it is given: give it a copy.
        // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own returns a new one (owned below).
        let dup = cvt(unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })
            .map_err(|e| Error::os("read directory", e))?;
        let dup = own(dup);
        // SAFETY: fdopendir takes over the descriptor, which we give up here.
        let d = unsafe { libc::fdopendir(std::os::fd::IntoRawFd::into_raw_fd(dup)) };
        if d.is_null() {
            return Err(Error::last_os("read directory"));
        }
        struct Closer(*mut libc::DIR);
        impl Drop for Closer {
            fn drop(&mut self) {
                // SAFETY: a stream from fdopendir, closed once.
                unsafe { libc::closedir(self.0) };
            }
        }
        let d = Closer(d);
        // fdopendir does not rewind a copy of a descriptor that was read before.
        // SAFETY: a valid directory stream.
        unsafe { libc::rewinddir(d.0) };
        let mut out = Vec::new();
        loop {
            // SAFETY: a valid directory stream; the entry stays valid until the next readdir.
            let ent = unsafe { libc::readdir(d.0) };
            if ent.is_null() {
                break;
            }
            // SAFETY: d_name is a NUL-terminated array inside the entry.
            let name = unsafe { std::ffi::CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
            if name != b"." && name != b".." {
                out.push(name.to_vec());
            }
        }
        Ok(out)
    }

    /// Open a directory that only root (or this user) can change: `path`
    /// itself must not be a symbolic link, must be owned by root or us, and
    /// must not be writable by others (unless `sticky_ok` and it has the
    /// sticky bit, as /tmp does). With `create`, it is made (with missing
    /// parents, mode `create`) when absent; without, absence is None.
    pub fn open_trusted(path: &Path, create: Option<u32>, sticky_ok: bool) -> Result<Option<Dir>> {
        let d = match Dir::open(path) {
            Ok(d) => d,
            Err(e) if e.is_errno(libc::ENOENT) => match create {
                None => return Ok(None),
                Some(mode) => {
                    super::file::create_dir_all(path, mode)?;
                    Dir::open(path)?
                }
            },
            Err(e) if e.is_errno(libc::ELOOP) || is_symlink(path) => {
                return Err(Error::msg(format!("refusing {}: it is a symbolic link", path.display())))
            }
            Err(e) => return Err(e),
        };
        d.check_trusted(path, sticky_ok)?;
        Ok(Some(d))
    }

    /// The directory `name` inside this one (`shown` names it in errors),
    /// held to the same rules as `open_trusted` without the sticky
    /// exemption, created with mode `create` when absent.
    pub fn open_trusted_at(&self, name: &str, create: Option<u32>, shown: &Path) -> Result<Option<Dir>> {
        let mut r = self.open_dir(name);
        if let (Err(e), Some(mode)) = (&r, create) {
            if e.is_errno(libc::ENOENT) {
                match self.mkdir(name, mode) {
                    Err(e) if !e.is_errno(libc::EEXIST) => return Err(e.context(shown.display())),
                    _ => r = self.open_dir(name),
                }
            }
        }
        let d = match r {
            Ok(d) => d,
            Err(e) if e.is_errno(libc::ENOENT) => return Ok(None),
            Err(e) if e.is_errno(libc::ELOOP) || e.is_errno(libc::ENOTDIR) => {
                let kind = self.stat_at(name).map_or("not a directory", |s| s.kind());
                return Err(Error::msg(format!("refusing {}: it is {kind}, not a directory", shown.display())));
            }
            Err(e) => return Err(e.context(shown.display())),
        };
        d.check_trusted(shown, false)?;
        Ok(Some(d))
    }

    fn check_trusted(&self, shown: &Path, sticky_ok: bool) -> Result<()> {
        let st = self.stat().map_err(|e| e.context(shown.display()))?;
        match st.untrusted_reason(sticky_ok) {
            None => Ok(()),
            Some(why) => Err(Error::msg(format!(
                "refusing {}: {why}; what cnibox keeps there must be changeable by root alone",
                shown.display()
            ))),
        }
    }
}

/// Whether this process may create entries in the directory at `path` (followed), as `access(2)` judges.
pub fn writable_path(path: &Path) -> Result<()> {
    let c = c_path(path)?;
    // SAFETY: a NUL-terminated path.
    cvt(unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) }).map(drop).map_err(|e| Error::os("write", e))
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

fn fstat(fd: RawFd) -> std::result::Result<Stat, i32> {
    // SAFETY: a zeroed stat buffer that the kernel fills, for a descriptor the caller owns.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    cvt(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(Stat::of(&st))
}

/// The status of an open file.
pub fn stat_file(f: &File) -> Result<Stat> {
    fstat(f.as_raw_fd()).map_err(|e| Error::os("stat", e))
}
