//! The host-local data directory, `<dataDir>/<network>/`:
//!
//! ```text
//! lock                  flock target, the same file the reference plugin locks
//! cnibox.state          the reservations (see state.rs)
//! 10.22.0.7             the reference's per-address files: "<id>\r\n<ifname>" (or "<id>")
//! last_reserved_ip.0    the reference's round-robin position per range set
//! ```
//!
//! Nothing here may be changed by anyone but root: the data directory must
//! be owned by root and writable by no one else (the sticky bit aside, which
//! keeps others from replacing what they do not own), and the network's
//! directory must be owned by root and writable by no one else at all, so
//! another user cannot pre-create it and then delete or forge the state.
//! Every access goes through a descriptor of that directory, one name at a
//! time, without following a symbolic link and without blocking on a FIFO;
//! the lock and the state must be regular files owned by root.
//!
//! Durability policy. The new state is written into a new file,
//! `.cnibox.state.spare`, which is exchanged with the current one
//! (`renameat2(RENAME_EXCHANGE)`) and then removed, so a process killed at
//! any instant leaves either the old or the new state: the page cache is
//! shared and the exchange is a single directory operation. The previous
//! state goes with the removal: no file keeps a reservation that was released
//! (a kill in the one system call between exchange and removal, or between
//! writing the new state and the exchange, leaves the other generation in the
//! spare; the next call removes it before reading), and a reader that opened
//! the state file keeps the whole file it opened. (Keeping the spare and
//! emptying it instead would save ext4 an inode allocation and release per
//! call, about 80 us of an ADD's kernel time, but a reader that opened the
//! state without the lock, `cat` or a monitor, would see its file emptied
//! under it.) Nothing is fsync'd.
//! Reservations describe network namespaces, and no namespace outlives the
//! kernel that held it: after a power loss or kernel crash every reservation
//! is stale anyway (what the reference leaks on reboot, plugins#252), so
//! paying a journal commit per ADD buys nothing. What such a crash can leave
//! (an older file, an empty or zero-filled one) is still read safely, because
//! the header's size check sends any such file through the tolerant line
//! parser. Exchanging rather than renaming over the old file matters on ext4:
//! a rename over an existing file starts writeback of the new one
//! (auto_da_alloc), measured here at p90 3 ms against 50 us for the exchange.

use super::state::FILE;
use crate::error::{code, Error, Result};
use crate::sys::dir::{stat_file, Dir};
use crate::sys::file::{FileLock, Mapping};
use std::fs::File;
use std::net::IpAddr;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the next state is written, for as long as the write takes.
const SPARE: &str = ".cnibox.state.spare";
const LOCK: &str = "lock";
const LEGACY_LAST: &str = "last_reserved_ip.";

pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// One network's directory, locked for as long as this lives.
pub struct Store {
    dir: Dir,
    pub path: PathBuf,
    lock: FileLock,
}

/// A reservation file of the reference plugin.
pub struct Legacy {
    pub name: String,
    pub ip: IpAddr,
    pub id: String,
    pub ifname: Option<String>,
}

/// A state file larger than this cannot be ours: a /16 of 64-byte ids is 6 MiB.
const MAX_STATE: u64 = 64 << 20;

/// The network's directory: `data_dir` must be absolute and `name` one path
/// component. (Whether the directories may be trusted is checked on open.)
pub fn network_dir(data_dir: &Path, name: &str) -> Result<PathBuf> {
    if !data_dir.is_absolute() {
        return Err(Error::config(format!("host-local: dataDir \"{}\" must be an absolute path", data_dir.display())));
    }
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(Error::config(format!("host-local: network name \"{name}\" cannot name a directory")));
    }
    Ok(data_dir.join(name))
}

/// A file of ours must be a regular file owned by root: anything else (a
/// FIFO that would stall a read, a file another user could rewrite) is refused.
fn check_own_file(f: &File, shown: impl std::fmt::Display) -> Result<crate::sys::dir::Stat> {
    let st = stat_file(f).map_err(|e| e.context(&shown))?;
    if !st.is_file() {
        return Err(Error::msg(format!("host-local: refusing {shown}: it is {}; remove it", st.kind())));
    }
    if !st.owned_by_us() {
        return Err(Error::msg(format!("host-local: refusing {shown}: it is owned by uid {}, not by root", st.uid)));
    }
    Ok(st)
}

impl Store {
    /// Open and lock the network's directory `<data_dir>/<name>`, creating it
    /// when `create`; None when it does not exist and `create` is false.
    pub fn open(data_dir: &Path, name: &str, create: bool) -> Result<Option<Store>> {
        let path = network_dir(data_dir, name)?;
        let mode = create.then_some(0o755);
        // The data directory is named by the config: refusing it is a config error.
        let data = match Dir::open_trusted(data_dir, mode, true) {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(None),
            Err(e) if e.errno == 0 => return Err(e.with_code(code::INVALID_CONFIG).context("host-local: dataDir")),
            Err(e) => return Err(e),
        };
        let Some(dir) = data.open_trusted_at(name, mode, &path).map_err(|e| e.context("host-local"))? else {
            return Ok(None);
        };
        let shown = format_args!("{}/{LOCK}", path.display());
        let lock = dir.open_file(LOCK, libc::O_RDONLY | libc::O_CREAT, 0o600).map_err(|e| e.context(path.display()))?;
        let st = check_own_file(&lock, shown)?;
        // Anyone who can open the lock file can hold the lock: only root may.
        if st.mode & 0o077 != 0 {
            lock.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Error::from(e).context(format_args!("chmod {}/{LOCK}", path.display())))?;
        }
        let lock = FileLock::take(lock, format_args!("{}/{LOCK}", path.display()), 0)?;
        let store = Store { dir, path, lock };
        // A writer killed between writing the spare and removing it left a
        // generation of the state there: remove it before anyone reads.
        store.remove(SPARE)?;
        Ok(Some(store))
    }

    fn remove(&self, name: &str) -> Result<()> {
        match self.dir.unlink(name) {
            Err(e) if !e.is_not_found() => Err(e.context(self.path.display())),
            _ => Ok(()),
        }
    }

    /// The current state file's bytes, mapped (empty when there is none
    /// yet), for as long as the store is locked. With `strict` (ADD, CHECK), a
    /// file too large to be ours is refused; DEL and GC read it whatever its
    /// size, so that releasing never gets stuck.
    pub fn read(&self, strict: bool) -> Result<Mapping<'_>> {
        let f = match self.dir.open_file(FILE, libc::O_RDONLY, 0) {
            Ok(f) => f,
            Err(e) if e.errno == libc::ENOENT => return Ok(Mapping::empty()),
            Err(e) => return Err(e.context(self.path.display())),
        };
        let st = check_own_file(&f, format_args!("{}/{FILE}", self.path.display()))?;
        if strict && st.size > MAX_STATE {
            return Err(Error::msg(format!(
                "host-local: state file {}/{FILE} is {} bytes, more than a network can need ({MAX_STATE}); repair or remove it",
                self.path.display(),
                st.size
            )));
        }
        let len = usize::try_from(st.size)
            .map_err(|_| Error::msg(format!("host-local: state file {}/{FILE} is too large", self.path.display())))?;
        // A mapping reads only the pages a lookup touches, straight from the
        // page cache. Nothing ever writes a file once it has been the state:
        // writers make a new one, exchange the two and remove the old one.
        self.lock.map(&f, len).map_err(|e| e.context(format_args!("{}/{FILE}", self.path.display())))
    }

    /// Replace the state file with the concatenation of `pieces`.
    pub fn commit(&self, pieces: &[&[u8]]) -> Result<()> {
        let ctx = |e: Error| e.context(format_args!("write state in {}", self.path.display()));
        // A new file: never one someone linked or planted here (open removed any).
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
        let spare = self.dir.open_file(SPARE, flags, 0o600).map_err(ctx)?;
        let mut written = Ok(());
        let mut off = 0u64;
        for p in pieces {
            written = written.and_then(|()| spare.write_all_at(p, off));
            off += p.len() as u64;
        }
        drop(spare);
        let r =
            written.map_err(Error::from).and_then(|()| crate::failpoint::hit("replace state file")).and_then(|()| {
                match self.dir.exchange(SPARE, FILE) {
                    // The previous state, now under the spare's name, goes.
                    Ok(()) => self.dir.unlink(SPARE),
                    // No state file yet, or a file system without exchange: a plain rename is just as atomic.
                    Err(e) if matches!(e.errno, libc::ENOENT | libc::EINVAL | libc::ENOSYS | libc::EPERM) => {
                        self.dir.rename(SPARE, FILE)
                    }
                    Err(e) => Err(e),
                }
            });
        if r.is_err() {
            // Left there, the spare could name an address this call did not get.
            let _ = self.dir.unlink(SPARE);
        }
        r.map_err(ctx)
    }

    /// Whether the reference plugin holds `ip` (a per-address file exists).
    pub fn legacy_held(&self, ip: &IpAddr) -> bool {
        self.dir.stat_at(&ip.to_string()).is_ok()
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
        let f = self.dir.open_file(&name, libc::O_WRONLY | libc::O_CREAT, 0o600)?;
        check_own_file(&f, &name)?;
        let text = ip.to_string();
        f.write_all_at(text.as_bytes(), 0)
            .and_then(|_| f.set_len(text.len() as u64))
            .map_err(|e| Error::from(e).context(format_args!("write {name}")))
    }

    /// Every reservation file of the reference plugin. Reads the directory,
    /// so it is only used when the state file does not already answer.
    pub fn legacy_scan(&self) -> Result<Vec<Legacy>> {
        let names = self.dir.names().map_err(|e| e.context(self.path.display()))?;
        let mut out = Vec::new();
        for name in names {
            let Ok(name) = String::from_utf8(name) else { continue };
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
        self.remove(&l.name)
    }
}

/// STATUS: whether ADD could write the network's state. Touches nothing.
pub fn check_writable(data_dir: &Path, name: &str) -> Result<()> {
    let path = network_dir(data_dir, name)?;
    let not =
        |at: &Path, e: Error| e.context(format_args!("host-local: data directory {} is not writable", at.display()));
    let Some(data) = Dir::open_trusted(data_dir, None, true).map_err(|e| not(data_dir, e))? else {
        // ADD would create it under the nearest ancestor that exists.
        let mut at = data_dir;
        while std::fs::symlink_metadata(at).is_err() {
            at = at.parent().unwrap_or(Path::new("/"));
        }
        return crate::sys::dir::writable_path(at).map_err(|e| not(at, e));
    };
    match data.open_trusted_at(name, None, &path).map_err(|e| not(&path, e))? {
        Some(net) => net.writable().map_err(|e| not(&path, e)),
        None => data.writable().map_err(|e| not(data_dir, e)),
    }
}

/// A small regular file's content (a reference reservation or position), or None.
fn read_small(dir: &Dir, name: &str) -> Option<Vec<u8>> {
    let f = dir.open_file(name, libc::O_RDONLY, 0).ok()?;
    if !stat_file(&f).ok()?.is_file() {
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

    /// Wall time since the test began (run it on a quiet machine).
    fn cpu() -> Duration {
        static T0: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        T0.get_or_init(std::time::Instant::now).elapsed()
    }

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cnibox-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// `<tmp>/cnibox-store-<tag>-<pid>`, as (data directory, network name).
    fn net(tag: &str) -> (PathBuf, &'static str, PathBuf) {
        let base = tmp(tag);
        let dir = base.join("net");
        crate::sys::file::create_dir_all(&dir, 0o755).unwrap();
        (base, "net", dir)
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
        let (base, name, dir) = net("legacy");
        std::fs::write(dir.join("10.1.0.2"), "ctr1\r\neth0").unwrap();
        std::fs::write(dir.join("10.1.0.3"), "ctr2\n").unwrap(); // the oldest format: the id alone
        std::fs::write(dir.join("fd00::3"), " ctr3\r\nnet1 \n").unwrap();
        std::fs::write(dir.join("last_reserved_ip.0"), "10.1.0.3").unwrap();
        std::fs::write(dir.join("notes"), "ctr9\r\neth0").unwrap();
        std::fs::create_dir(dir.join("10.1.0.9")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.join("10.1.0.8")).unwrap();
        let s = Store::open(&base, name, false).unwrap().unwrap();
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
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn symlinked_network_dir_and_leftovers_are_refused_or_removed() {
        let base = tmp("links");
        let real = base.join("real");
        crate::sys::file::create_dir_all(&real, 0o755).unwrap();
        std::os::unix::fs::symlink(&real, base.join("net")).unwrap();
        let e = Store::open(&base, "net", true).err().unwrap();
        assert!(e.msg.contains("symbolic link"), "{}", e.msg);
        assert!(check_writable(&base, "net").is_err());
        assert!(Store::open(&base, "absent", false).unwrap().is_none());
        assert!(!base.join("absent").exists());
        check_writable(&base, "absent").unwrap();
        // a spare linked to a file elsewhere (or a killed writer's) is removed, never written through
        std::fs::write(base.join("victim"), "keep").unwrap();
        std::fs::hard_link(base.join("victim"), real.join(SPARE)).unwrap();
        let s = Store::open(&base, "real", true).unwrap().unwrap();
        assert!(!real.join(SPARE).exists());
        s.commit(&[b"x\n"]).unwrap();
        assert_eq!(std::fs::read_to_string(base.join("victim")).unwrap(), "keep");
        assert_eq!(std::fs::read(real.join(FILE)).unwrap(), b"x\n");
        // a reader of the old state keeps it whole; no other generation stays
        let old = s.read(true).unwrap();
        s.commit(&[b"y\n"]).unwrap();
        assert_eq!(&*old, b"x\n");
        drop(old);
        assert_eq!(&*s.read(true).unwrap(), b"y\n");
        let mut names: Vec<String> =
            std::fs::read_dir(&real).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, [FILE, LOCK], "no other generation is kept");
        drop(s);
        // a FIFO where the state is: refused at once, not waited on
        std::fs::remove_file(real.join(FILE)).unwrap();
        assert!(std::process::Command::new("mkfifo").arg(real.join(FILE)).status().unwrap().success());
        let s = Store::open(&base, "real", false).unwrap().unwrap();
        let e = s.read(false).err().unwrap();
        assert!(e.msg.contains("a FIFO"), "{}", e.msg);
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
            let base = std::env::temp_dir().join(format!("cnibox-bench-{}-{held}", std::process::id()));
            let _ = std::fs::remove_dir_all(&base);
            let dir = base.join("net");
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
                let store = Store::open(&base, "net", true).unwrap().unwrap();
                let snap = store.read(true).unwrap();
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
                let store = Store::open(&base, "net", true).unwrap().unwrap();
                let snap = store.read(true).unwrap();
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
            let _ = std::fs::remove_dir_all(&base);
        }
    }
}
