//! The host-local data directory, `<dataDir>/<network>/`:
//!
//! ```text
//! lock                  flock target, the same file the reference plugin locks
//! cnibox.state          the reservations (see state.rs)
//! .cnibox.state.spare   the previous generation, rewritten into the next one
//! 10.22.0.7             the reference's per-address files: "<id>\r\n<ifname>" (or "<id>")
//! last_reserved_ip.0    the reference's round-robin position per range set
//! ```
//!
//! Every access goes through a descriptor of the directory opened without
//! following a symlink, so nothing a path component is swapped to is ever written.
//!
//! Durability policy. The state is replaced atomically by writing the spare
//! file and exchanging it with the current one (`renameat2(RENAME_EXCHANGE)`),
//! so a process killed at any instant leaves either the old or the new file:
//! the page cache is shared and the exchange is a single directory operation.
//! Nothing is fsync'd. Reservations describe network namespaces, and no
//! namespace outlives the kernel that held it: after a power loss or kernel
//! crash every reservation is stale anyway (what the reference leaks on
//! reboot, plugins#252), so paying a journal commit per ADD buys nothing. What
//! such a crash can leave (an older file, an empty or zero-filled one, a mix
//! of two generations) is still read safely, because the header's size check
//! sends any such file through the tolerant line parser. Overwriting the spare
//! in place instead of creating a new file keeps a write at 10,000
//! reservations near a memcpy: no block allocation, and no forced writeback,
//! which ext4 starts when a new file is renamed over an old one.

use super::state::FILE;
use crate::error::{Error, Result};
use std::ffi::CString;
use std::fs::File;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const SPARE: &str = ".cnibox.state.spare";
const LOCK: &str = "lock";
const LEGACY_LAST: &str = "last_reserved_ip.";

pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// One network's directory, locked for as long as this lives.
pub struct Store {
    dir: File,
    pub path: PathBuf,
    _lock: File,
}

/// A reservation file of the reference plugin.
pub struct Legacy {
    pub name: String,
    pub ip: IpAddr,
    pub id: String,
    pub ifname: Option<String>,
}

fn cstr(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::msg(format!("invalid file name \"{}\"", s.escape_default())))
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn lstat(path: &Path) -> Option<std::fs::Metadata> {
    std::fs::symlink_metadata(path).ok()
}

fn refuse_symlink(path: &Path) -> Error {
    Error::msg(format!("host-local: refusing data directory {}: it is a symbolic link", path.display()))
}

/// A state file larger than this cannot be ours: a /16 of 64-byte ids is 6 MiB.
const MAX_STATE: u64 = 64 << 20;

/// The network's directory: `data_dir` must be absolute, not a symbolic link
/// and not writable by others (a sticky directory such as /tmp aside), and
/// `name` one path component.
pub fn network_dir(data_dir: &Path, name: &str) -> Result<PathBuf> {
    if !data_dir.is_absolute() {
        return Err(Error::config(format!("host-local: dataDir \"{}\" must be an absolute path", data_dir.display())));
    }
    if let Some(m) = lstat(data_dir) {
        use std::os::unix::fs::PermissionsExt;
        if m.file_type().is_symlink() {
            return Err(Error::config(format!(
                "host-local: refusing dataDir {}: it is a symbolic link",
                data_dir.display()
            )));
        }
        let mode = m.permissions().mode();
        if mode & 0o002 != 0 && mode & 0o1000 == 0 {
            return Err(Error::config(format!(
                "host-local: refusing dataDir {}: anyone may write to it (mode {:o}); reservations must not be forgeable",
                data_dir.display(),
                mode & 0o7777
            )));
        }
    }
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(Error::config(format!("host-local: network name \"{name}\" cannot name a directory")));
    }
    Ok(data_dir.join(name))
}

impl Store {
    /// Open and lock the network's directory, creating it when `create`;
    /// None when it does not exist and `create` is false.
    pub fn open(path: PathBuf, create: bool) -> Result<Option<Store>> {
        match lstat(&path) {
            Some(m) if m.file_type().is_symlink() => return Err(refuse_symlink(&path)),
            Some(_) => {}
            None if !create => return Ok(None),
            None => crate::sys::file::create_dir_all(&path, 0o755)?,
        }
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| Error::config("host-local: dataDir contains a NUL byte"))?;
        // SAFETY: a NUL-terminated path; the descriptor is owned by the File below.
        let fd =
            unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
        if fd < 0 {
            let e = errno();
            return Err(if e == libc::ELOOP {
                refuse_symlink(&path)
            } else {
                Error::os(format_args!("open {}", path.display()), e)
            });
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let dir = unsafe { File::from_raw_fd(fd) };
        let lock = openat(&dir, LOCK, libc::O_RDONLY | libc::O_CREAT, 0o600).map_err(|e| e.context(path.display()))?;
        loop {
            // SAFETY: flock on a valid, owned descriptor.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } == 0 {
                break;
            }
            let e = errno();
            if e != libc::EINTR {
                return Err(Error::os(format_args!("lock {}/{LOCK}", path.display()), e));
            }
        }
        Ok(Some(Store { dir, path, _lock: lock }))
    }

    /// The current state file's bytes, mapped (empty when there is none yet).
    pub fn read(&self) -> Result<Snapshot> {
        let f = match openat(&self.dir, FILE, libc::O_RDONLY, 0) {
            Ok(f) => f,
            Err(e) if e.errno == libc::ENOENT => return Ok(Snapshot { ptr: std::ptr::null_mut(), len: 0 }),
            Err(e) => return Err(e.context(self.path.display())),
        };
        let m =
            f.metadata().map_err(|e| Error::from(e).context(format_args!("stat {}/{FILE}", self.path.display())))?;
        if !m.is_file() {
            return Err(Error::msg(format!("{}/{FILE} is not a regular file", self.path.display())));
        }
        if m.len() > MAX_STATE {
            return Err(Error::msg(format!(
                "host-local: state file {}/{FILE} is {} bytes, more than a network can need ({MAX_STATE}); repair or remove it",
                self.path.display(),
                m.len()
            )));
        }
        let len = m.len() as usize;
        if len == 0 {
            return Ok(Snapshot { ptr: std::ptr::null_mut(), len: 0 });
        }
        // A mapping reads only the pages a lookup touches, straight from the
        // page cache; writers never truncate the current file (they write the
        // spare and exchange), so the mapping stays whole while we hold the lock.
        // SAFETY: mapping a regular file read-only and private; unmapped in Drop.
        let ptr =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, f.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(Error::os(format_args!("map {}/{FILE}", self.path.display()), errno()));
        }
        Ok(Snapshot { ptr, len })
    }

    /// Replace the state file with the concatenation of `pieces`.
    pub fn commit(&self, pieces: &[&[u8]]) -> Result<()> {
        let ctx = |e: Error| e.context(format_args!("write state in {}", self.path.display()));
        let mut spare = openat(&self.dir, SPARE, libc::O_WRONLY | libc::O_CREAT, 0o600).map_err(ctx)?;
        let m = spare.metadata().map_err(|e| ctx(e.into()))?;
        if !m.is_file() || std::os::unix::fs::MetadataExt::nlink(&m) != 1 {
            // Someone linked a file of theirs here: never write through it.
            unlinkat(&self.dir, SPARE).map_err(ctx)?;
            spare = openat(&self.dir, SPARE, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o600).map_err(ctx)?;
        }
        let mut off = 0u64;
        for p in pieces {
            spare.write_all_at(p, off).map_err(|e| ctx(e.into()))?;
            off += p.len() as u64;
        }
        spare.set_len(off).map_err(|e| ctx(e.into()))?;
        drop(spare);
        crate::failpoint::hit("replace state file")?;
        let (s, f) = (cstr(SPARE)?, cstr(FILE)?);
        let d = self.dir.as_raw_fd();
        // SAFETY: both names are NUL-terminated and relative to our directory descriptor.
        let r = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                d as libc::c_long,
                s.as_ptr(),
                d as libc::c_long,
                f.as_ptr(),
                libc::RENAME_EXCHANGE as libc::c_long,
            )
        };
        if r == 0 {
            return Ok(());
        }
        // No state file yet, or a file system without exchange: a plain rename is just as atomic.
        match errno() {
            libc::ENOENT | libc::EINVAL | libc::ENOSYS | libc::EPERM => {}
            e => return Err(ctx(Error::os("exchange state file", e))),
        }
        // SAFETY: as above.
        if unsafe { libc::renameat(d, s.as_ptr(), d, f.as_ptr()) } != 0 {
            return Err(ctx(Error::os("rename state file", errno())));
        }
        Ok(())
    }

    /// Whether the reference plugin holds `ip` (a per-address file exists).
    pub fn legacy_held(&self, ip: &IpAddr) -> bool {
        let Ok(name) = cstr(&ip.to_string()) else { return false };
        // SAFETY: a zeroed stat buffer filled by the kernel; name is NUL-terminated.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        unsafe { libc::fstatat(self.dir.as_raw_fd(), name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) == 0 }
    }

    /// The reference's round-robin position for range set `idx`, to continue from after an upgrade.
    pub fn legacy_last_reserved(&self, idx: usize) -> Option<IpAddr> {
        let text = read_small(&self.dir, &format!("{LEGACY_LAST}{idx}"))?;
        let ip: IpAddr = std::str::from_utf8(&text).ok()?.trim().parse().ok()?;
        Some(ip.to_canonical())
    }

    /// Record where the round-robin stands in the reference's own file too, so
    /// that a reference binary still running during an upgrade continues after
    /// cnibox's addresses instead of walking into them. Best effort: the state
    /// file is the truth, and the reference treats an unreadable file as "start
    /// at the beginning".
    pub fn mirror_last_reserved(&self, idx: usize, ip: &IpAddr) -> Result<()> {
        crate::failpoint::hit("write last_reserved_ip")?;
        let name = format!("{LEGACY_LAST}{idx}");
        // Overwrite and cut to length rather than O_TRUNC: on ext4 a file
        // truncated to zero is flushed to disk when closed (auto_da_alloc),
        // which cost one ADD in ten a stall of tens of milliseconds.
        let f = openat(&self.dir, &name, libc::O_WRONLY | libc::O_CREAT, 0o600)?;
        let text = ip.to_string();
        f.write_all_at(text.as_bytes(), 0)
            .and_then(|_| f.set_len(text.len() as u64))
            .map_err(|e| Error::from(e).context(format_args!("write {name}")))
    }

    /// Every reservation file of the reference plugin. Reads the directory,
    /// so it is only used when the state file does not already answer.
    pub fn legacy_scan(&self) -> Result<Vec<Legacy>> {
        let rd = std::fs::read_dir(&self.path)
            .map_err(|e| Error::from(e).context(format_args!("read {}", self.path.display())))?;
        let mut out = Vec::new();
        for ent in rd.flatten() {
            let Some(name) = ent.file_name().to_str().map(str::to_string) else { continue };
            let Ok(ip) = name.parse::<IpAddr>() else { continue };
            let Some(text) = read_small(&self.dir, &name) else { continue };
            let Ok(text) = std::str::from_utf8(&text) else { continue };
            let text = text.trim();
            let (id, ifname) = match text.split_once("\r\n") {
                Some((id, i)) => (id, Some(i.to_string())),
                None => (text, None),
            };
            out.push(Legacy { name, ip: ip.to_canonical(), id: id.to_string(), ifname });
        }
        Ok(out)
    }

    /// Release a reference reservation by removing its file.
    pub fn legacy_release(&self, l: &Legacy) -> Result<()> {
        crate::failpoint::hit("remove legacy reservation file")?;
        match unlinkat(&self.dir, &l.name) {
            Err(e) if !e.is_not_found() => Err(e.context(self.path.display())),
            _ => Ok(()),
        }
    }
}

/// STATUS: whether ADD could write the network's state. Touches nothing.
pub fn check_writable(path: &Path) -> Result<()> {
    if lstat(path).is_some_and(|m| m.file_type().is_symlink()) {
        return Err(refuse_symlink(path));
    }
    // The directory, or the nearest ancestor ADD would create it under.
    let mut at = path;
    while lstat(at).is_none() {
        at = at.parent().unwrap_or(Path::new("/"));
    }
    let c = CString::new(at.as_os_str().as_bytes())
        .map_err(|_| Error::config("host-local: dataDir contains a NUL byte"))?;
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(Error::os(format_args!("host-local: data directory {} is not writable", at.display()), errno()));
    }
    Ok(())
}

/// A read-only mapping of the state file.
pub struct Snapshot {
    ptr: *mut libc::c_void,
    len: usize,
}

impl std::ops::Deref for Snapshot {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: ptr maps len readable bytes until Drop.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmapping exactly what mmap returned.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}

fn openat(dir: &File, name: &str, flags: i32, mode: libc::mode_t) -> Result<File> {
    let c = cstr(name)?;
    // SAFETY: a NUL-terminated name relative to a directory descriptor we own.
    let fd = unsafe {
        libc::openat(dir.as_raw_fd(), c.as_ptr(), flags | libc::O_NOFOLLOW | libc::O_CLOEXEC, mode as libc::c_uint)
    };
    if fd < 0 {
        return Err(Error::os(format_args!("open {name}"), errno()));
    }
    // SAFETY: fd is fresh and owned by the File.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn unlinkat(dir: &File, name: &str) -> Result<()> {
    let c = cstr(name)?;
    // SAFETY: as in openat.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) } != 0 {
        return Err(Error::os(format_args!("remove {name}"), errno()));
    }
    Ok(())
}

/// A small regular file's content (a reference reservation or position), or None.
fn read_small(dir: &File, name: &str) -> Option<Vec<u8>> {
    let f = openat(dir, name, libc::O_RDONLY | libc::O_NONBLOCK, 0).ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut buf = vec![0u8; 512];
    let n = f.read_at(&mut buf, 0).ok()?;
    buf.truncate(n);
    Some(buf)
}

impl super::alloc::Legacy for Store {
    fn held(&self, ip: &IpAddr) -> bool {
        self.legacy_held(ip)
    }
    fn last_reserved(&self, idx: usize) -> Option<IpAddr> {
        self.legacy_last_reserved(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::alloc::allocate;
    use crate::ipam::range::{RangeConf, RangeSet};
    use crate::ipam::state::{Edit, State};
    use std::time::Duration;

    /// This thread's CPU time: on a shared machine, wall time measures the neighbours.
    fn cpu() -> Duration {
        let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: a valid timespec to fill.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    }

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cnibox-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn network_dir_is_one_component_under_an_absolute_data_dir() {
        assert_eq!(
            network_dir(Path::new("/var/lib/cni/networks"), "cbr0").unwrap(),
            PathBuf::from("/var/lib/cni/networks/cbr0")
        );
        let e = network_dir(Path::new("var/lib"), "cbr0").err().unwrap();
        assert_eq!(e.code, crate::error::code::INVALID_CONFIG);
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(network_dir(Path::new("/x"), bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reference_files_are_read_as_the_reference_writes_them() {
        let dir = tmp("legacy");
        crate::sys::file::create_dir_all(&dir, 0o755).unwrap();
        std::fs::write(dir.join("10.1.0.2"), "ctr1\r\neth0").unwrap();
        std::fs::write(dir.join("10.1.0.3"), "ctr2\n").unwrap(); // the oldest format: the id alone
        std::fs::write(dir.join("fd00::3"), " ctr3\r\nnet1 \n").unwrap();
        std::fs::write(dir.join("last_reserved_ip.0"), "10.1.0.3").unwrap();
        std::fs::write(dir.join("notes"), "ctr9\r\neth0").unwrap();
        std::fs::create_dir(dir.join("10.1.0.9")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.join("10.1.0.8")).unwrap();
        let s = Store::open(dir.clone(), false).unwrap().unwrap();
        let mut got: Vec<String> = s
            .legacy_scan()
            .unwrap()
            .iter()
            .map(|l| format!("{} {} {}", l.ip, l.id, l.ifname.as_deref().unwrap_or("-")))
            .collect();
        got.sort();
        assert_eq!(got, ["10.1.0.2 ctr1 eth0", "10.1.0.3 ctr2 -", "fd00::3 ctr3 net1"]);
        assert!(s.legacy_held(&"10.1.0.2".parse().unwrap()));
        assert!(!s.legacy_held(&"10.1.0.4".parse().unwrap()));
        assert_eq!(s.legacy_last_reserved(0), Some("10.1.0.3".parse().unwrap()));
        assert_eq!(s.legacy_last_reserved(1), None);
        let l = s.legacy_scan().unwrap().into_iter().find(|l| l.id == "ctr1").unwrap();
        s.legacy_release(&l).unwrap();
        s.legacy_release(&l).unwrap(); // already gone is fine
        assert!(!dir.join("10.1.0.2").exists());
        assert!(dir.join("lock").exists(), "the reference's lock file is the one locked");
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn symlinked_network_dir_and_linked_spare_are_refused() {
        let base = tmp("links");
        let real = base.join("real");
        crate::sys::file::create_dir_all(&real, 0o755).unwrap();
        std::os::unix::fs::symlink(&real, base.join("net")).unwrap();
        let e = Store::open(base.join("net"), true).err().unwrap();
        assert!(e.msg.contains("symbolic link"), "{}", e.msg);
        assert!(check_writable(&base.join("net")).is_err());
        assert!(Store::open(base.join("absent"), false).unwrap().is_none());
        assert!(!base.join("absent").exists());
        check_writable(&base.join("absent")).unwrap();
        // a spare hard-linked to a file elsewhere is replaced, never written through
        let s = Store::open(real.clone(), true).unwrap().unwrap();
        std::fs::write(base.join("victim"), "keep").unwrap();
        std::fs::hard_link(base.join("victim"), real.join(SPARE)).unwrap();
        s.commit(&[b"x\n"]).unwrap();
        assert_eq!(std::fs::read_to_string(base.join("victim")).unwrap(), "keep");
        assert_eq!(std::fs::read(real.join(FILE)).unwrap(), b"x\n");
        s.commit(&[b"y\n"]).unwrap();
        assert_eq!(&*s.read().unwrap(), b"y\n");
        drop(s);
        let _ = std::fs::remove_dir_all(&base);
    }

    /// A container id shaped like the runtime's: 64 hex digits that look random.
    fn fake_id(n: u64) -> String {
        let mut x = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut s = String::with_capacity(64);
        for _ in 0..4 {
            x ^= x >> 30;
            x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x ^= x >> 27;
            x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^= x >> 31;
            s.push_str(&format!("{x:016x}"));
        }
        s
    }

    /// Not a pass/fail test: the CPU time of each step of an ADD, in-process,
    /// with 10 and 10,000 reservations held (`cargo test --release --bin cnibox
    /// ipam::store -- --ignored --nocapture`).
    #[test]
    #[ignore = "benchmark; prints timings"]
    fn bench_add_steps() {
        let sets = vec![RangeSet::new(&[RangeConf {
            subnet: "10.42.0.0/16".parse().unwrap(),
            range_start: None,
            range_end: None,
            gateway: None,
        }])
        .unwrap()];
        for held in [10usize, 10_000] {
            let dir = std::env::temp_dir().join(format!("cnibox-bench-{}-{held}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let mut text = String::new();
            for i in 0..held {
                text.push_str(&format!("10.42.{}.{} {} eth0\n", (i + 2) >> 8, (i + 2) & 255, fake_id(i as u64)));
            }
            crate::sys::file::create_dir_all(&dir, 0o755).unwrap();
            std::fs::write(dir.join(FILE), text).unwrap();
            let mut t = [Duration::ZERO; 5];
            let rounds = 200u32;
            for i in 0..rounds + 1 {
                let id = fake_id(0xbe4c_0000 + i as u64);
                let t0 = cpu();
                let store = Store::open(dir.clone(), true).unwrap().unwrap();
                let snap = store.read().unwrap();
                let t1 = cpu();
                let state = State::parse(&snap);
                let t2 = cpu();
                let (_, edit) = allocate(&state, &sets, &[], &id, "eth0", &store).unwrap();
                let t3 = cpu();
                let mut h = String::new();
                let pieces = state.render(&edit, &mut h);
                store.commit(&pieces).unwrap();
                let t4 = cpu();
                drop(pieces);
                drop(snap);
                drop(store);
                // release again so that every round sees the same size
                let store = Store::open(dir.clone(), true).unwrap().unwrap();
                let snap = store.read().unwrap();
                let state = State::parse(&snap);
                let lines = state.lines_of(&id, Some("eth0"));
                let edit = Edit { remove: lines.iter().map(|l| l.span.clone()).collect(), ..Edit::default() };
                let mut h = String::new();
                store.commit(&state.render(&edit, &mut h)).unwrap();
                let t5 = cpu();
                if i > 0 {
                    for (acc, d) in t.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4]) {
                        *acc += d;
                    }
                }
            }
            let [open, parse, alloc, write, del] = t.map(|d| d / rounds);
            eprintln!("{held:>5} held: open+lock+map {open:?}, parse {parse:?}, allocate {alloc:?}, render+commit {write:?}; DEL {del:?}");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
