//! Reading files and taking turns where someone else may have planted a
//! FIFO, a device or a huge file, or may hold a lock forever.

use crate::error::{Error, Result};
use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// The whole of a regular file of at most `max` bytes; None when it does not
/// exist. O_NONBLOCK: opening a FIFO must not wait for a writer; anything but
/// a regular file (FIFO, device, directory) is refused before reading, so
/// `/dev/zero` or a pipe cannot hang the call or fill its memory.
pub fn read_regular(path: &Path, max: u64, follow: bool) -> Result<Option<Vec<u8>>> {
    let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
    let mut f = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY | nofollow)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(super::os_err(format_args!("open {}", path.display()), e)),
    };
    let m = f.metadata().map_err(|e| super::os_err(format_args!("stat {}", path.display()), e))?;
    if !m.is_file() {
        return Err(Error::msg(format!("{} is not a regular file", path.display())));
    }
    if m.len() > max {
        return Err(Error::msg(format!("{} is larger than {max} bytes", path.display())));
    }
    let mut buf = Vec::new();
    // The size may grow after fstat: never read more than max + 1 bytes.
    (&mut f)
        .take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| super::os_err(format_args!("read {}", path.display()), e))?;
    if buf.len() as u64 > max {
        return Err(Error::msg(format!("{} is larger than {max} bytes", path.display())));
    }
    Ok(Some(buf))
}

/// Node-wide private locks live here: root's, 0700, so that no other user can
/// open (and so hold) them, and invisible from a pod's mount namespace.
const LOCK_DIR: &str = "/run/cnibox";

/// An exclusive `flock` on `/run/cnibox/<name>.lock`, held until drop.
pub struct PrivateLock {
    _lock: super::file::FileLock,
}

impl PrivateLock {
    /// Waits at most `file::LOCK_WAIT`: then a "try again later" error naming `what`.
    pub fn acquire(name: &str, what: &str) -> Result<PrivateLock> {
        let dir = Path::new(LOCK_DIR);
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(super::os_err(format_args!("create {LOCK_DIR}"), e))
            }
            _ => {}
        }
        let d = std::fs::symlink_metadata(dir).map_err(|e| super::os_err(format_args!("stat {LOCK_DIR}"), e))?;
        if !d.is_dir() || d.uid() != 0 || d.mode() & 0o022 != 0 {
            return Err(Error::msg(format!(
                "{LOCK_DIR} must be a directory owned by root that others cannot write to"
            )));
        }
        let path = dir.join(format!("{name}.lock"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&path)
            .map_err(|e| super::os_err(format_args!("open lock file {}", path.display()), e))?;
        let m = file.metadata().map_err(|e| super::os_err(format_args!("stat {}", path.display()), e))?;
        if !m.is_file() || m.uid() != 0 {
            return Err(Error::msg(format!("{} must be a regular file owned by root", path.display())));
        }
        let lock = super::file::FileLock::take(file, format_args!("{what}: {}", path.display()), 0)?;
        Ok(PrivateLock { _lock: lock })
    }
}

/// A directory only root can change: itself and every directory above it
/// owned by root (symbolic links on the way too), the directory writable by
/// no one else, each one above writable by others only when sticky (so no
/// other user can rename or replace what root made there). A config names
/// the directory; refusing an untrusted one keeps another user from planting
/// or swapping the files cnibox reads back as root.
pub fn check_private_dir(dir: &Path) -> Result<()> {
    let bad = |p: &Path, why: &str| {
        Err(Error::config(format!(
            "{}: {why}; cnibox keeps state only where no user but root can change it",
            p.display()
        )))
    };
    let mut prefix = std::path::PathBuf::new();
    let comps: Vec<_> = dir.components().collect();
    for (i, c) in comps.iter().enumerate() {
        prefix.push(c);
        let l = std::fs::symlink_metadata(&prefix)
            .map_err(|e| super::os_err(format_args!("stat {}", prefix.display()), e))?;
        if l.file_type().is_symlink() && l.uid() != 0 {
            return bad(&prefix, "a symbolic link not owned by root");
        }
        let m = std::fs::metadata(&prefix).map_err(|e| super::os_err(format_args!("stat {}", prefix.display()), e))?;
        if !m.is_dir() {
            return bad(&prefix, "not a directory");
        }
        if m.uid() != 0 {
            return bad(&prefix, "not owned by root");
        }
        let last = i + 1 == comps.len();
        if m.mode() & 0o022 != 0 && (last || m.mode() & 0o1000 == 0) {
            return bad(&prefix, "others may write to it");
        }
    }
    Ok(())
}
