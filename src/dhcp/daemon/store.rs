//! The leases file (`<socket>.leases`): every held lease, written atomically
//! on each change so that a restarted daemon goes on renewing them, answers
//! CHECK and releases them on DEL.
//!
//! Whoever can replace that file or its directory decides which interfaces
//! in which namespaces the daemon configures, so neither may be anyone's but
//! the daemon's user: the directory (created 0700) must be owned by it and
//! writable by nobody else, every directory above it must belong to root (or
//! the daemon's user) and be writable by others only with the sticky bit,
//! and no symbolic link is followed to the file, which must be a regular
//! file of the daemon's user (opened with O_NOFOLLOW | O_NONBLOCK: a FIFO
//! planted there cannot stall the daemon).

use super::super::rpc::Request;
use super::lease::NsIdent;
use crate::cni::json::{object, FromJson, JResult};
use crate::cni::json_writer::JsonWriter;
use crate::error::{Error, Result};
use crate::json::Value;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// Largest leases file read (a few hundred bytes per lease).
const MAX_FILE: u64 = 16 << 20;

/// What the file keeps of a lease: the ADD that asked for it (with the
/// namespace path as the daemon opens it), which namespace that was, since
/// when the lease runs, and in hex the interface's MAC, the server's MAC and
/// the ACK itself.
pub struct Saved {
    pub add: Request,
    pub ns: NsIdent,
    /// Wall-clock milliseconds of the lease's start.
    pub start: u64,
    pub lease: Vec<u8>,
}

impl Saved {
    fn write_json(&self, w: &mut JsonWriter) {
        w.begin_object().key("add");
        self.add.write_json(w);
        w.key("dev").number(self.ns.0).key("ino").number(self.ns.1).key("start").number(self.start);
        w.key("lease").string(&hex(&self.lease)).end_object();
    }
}

impl FromJson for Saved {
    fn from_json(v: &Value) -> JResult<Saved> {
        object(v, |o| {
            let lease: String = o.req("lease")?;
            Ok(Saved {
                add: o.req("add")?,
                ns: (o.req("dev")?, o.req("ino")?),
                start: o.req("start")?,
                lease: unhex(&lease).unwrap_or_default(),
            })
        })
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

pub fn encode(saved: &[Saved]) -> String {
    let mut w = JsonWriter::new();
    w.begin_array();
    for s in saved {
        s.write_json(&mut w);
    }
    w.end_array();
    w.finish()
}

/// Write the file (atomically: a crash leaves the old or the new one).
pub fn save(path: &Path, saved: &[Saved]) -> Result<()> {
    crate::sys::file::write_atomic(path, encode(saved).as_bytes(), 0o600)
}

/// The leases a previous daemon left, none when there is no file or it is
/// damaged; an error when the file is not one the daemon can trust.
pub fn load(path: &Path) -> Result<Vec<Saved>> {
    let what = || format!("leases file {}", path.display());
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path);
    let f = match f {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(Error::msg(format!("{} is a symbolic link; refusing to follow it", what())))
        }
        Err(e) => return Err(Error::os(format_args!("open {}", what()), e.raw_os_error().unwrap_or(0))),
    };
    let m = f.metadata().map_err(|e| Error::os(format_args!("stat {}", what()), e.raw_os_error().unwrap_or(0)))?;
    if !m.is_file() {
        return Err(Error::msg(format!("{} is not a regular file", what())));
    }
    if m.uid() != crate::sys::process::euid() || m.mode() & 0o022 != 0 {
        return Err(Error::msg(format!(
            "{} belongs to uid {} with mode {:o}: not the daemon's own",
            what(),
            m.uid(),
            m.mode() & 0o7777
        )));
    }
    if m.len() > MAX_FILE {
        return Err(Error::msg(format!("{} is larger than {} MiB", what(), MAX_FILE >> 20)));
    }
    let mut data = Vec::new();
    f.take(MAX_FILE)
        .read_to_end(&mut data)
        .map_err(|e| Error::os(format_args!("read {}", what()), e.raw_os_error().unwrap_or(0)))?;
    // A damaged file (the daemon's own, checked above) loses its leases, not the daemon.
    match crate::cni::config::parse(&data, "saved leases") {
        Ok(saved) => Ok(saved),
        Err(e) => {
            super::log(format_args!("ignoring unreadable {}: {}", what(), e.msg));
            Ok(Vec::new())
        }
    }
}

/// Make the daemon's directory (0700) if it is missing, then check that
/// nobody but root and the daemon's user can change anything on the way to it.
pub fn prepare_dir(dir: &Path) -> Result<()> {
    let dir = match dir.is_absolute() {
        true => dir.to_path_buf(),
        false => std::env::current_dir().unwrap_or_default().join(dir),
    };
    if std::fs::symlink_metadata(&dir).is_err() {
        crate::sys::file::create_dir_all(&dir, 0o700)?;
    }
    check_dir(&dir)
}

fn check_dir(dir: &Path) -> Result<()> {
    let me = crate::sys::process::euid();
    let mut at = PathBuf::from("/");
    let parts: Vec<Component> = dir.components().filter(|c| matches!(c, Component::Normal(_))).collect();
    let stat = |p: &Path| {
        std::fs::symlink_metadata(p)
            .map_err(|e| Error::os(format_args!("stat {}", p.display()), e.raw_os_error().unwrap_or(0)))
    };
    if dir.components().any(|c| c == Component::ParentDir) {
        return Err(Error::msg(format!("DHCP daemon directory {} contains \"..\"", dir.display())));
    }
    for (k, c) in parts.iter().enumerate() {
        at.push(c);
        let m = stat(&at)?;
        let last = k + 1 == parts.len();
        let owner_ok = m.uid() == me || m.uid() == 0;
        if m.file_type().is_symlink() {
            if last || !owner_ok {
                return Err(Error::msg(format!(
                    "{} is a symbolic link{}; the DHCP daemon's directory must not be reached through one",
                    at.display(),
                    if owner_ok { String::new() } else { format!(" of uid {}", m.uid()) }
                )));
            }
            // A link root made, on the way to the directory: check where it leads.
            let target = std::fs::canonicalize(&at)
                .map_err(|e| Error::os(format_args!("resolve {}", at.display()), e.raw_os_error().unwrap_or(0)))?;
            return check_dir(&target.join(parts[k + 1..].iter().collect::<PathBuf>()));
        }
        if !m.is_dir() {
            return Err(Error::msg(format!("{} is not a directory", at.display())));
        }
        let mode = m.mode() & 0o7777;
        let foreign_owner = if last { m.uid() != me } else { !owner_ok };
        let writable = mode & 0o022 != 0 && (last || mode & 0o1000 == 0);
        if foreign_owner || writable {
            return Err(Error::msg(format!(
                "{} belongs to uid {} with mode {mode:o}: another user could replace the DHCP daemon's socket or leases",
                at.display(),
                m.uid()
            ))
            .with_details("the directory of -socketpath must be the daemon's own (0700), below directories only root can change"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_round_trip() {
        let s = Saved {
            add: Request {
                op: "add".into(),
                id: "c/n/eth0".into(),
                netns: "/run/netns/x".into(),
                ..Default::default()
            },
            ns: (4, 4026532000),
            start: 1_700_000_000_000,
            lease: vec![0, 1, 0xab, 0xff],
        };
        let text = encode(&[s]);
        assert!(text.contains(r#""dev":4,"ino":4026532000,"start":1700000000000,"lease":"0001abff""#), "{text}");
        let back: Vec<Saved> = crate::cni::config::parse(text.as_bytes(), "saved").unwrap();
        assert_eq!(
            (back[0].ns, back[0].lease.as_slice(), back[0].add.id.as_str()),
            ((4, 4026532000), &[0, 1, 0xab, 0xff][..], "c/n/eth0")
        );
    }

    #[test]
    fn directories_others_can_change_are_refused() {
        // a sticky, world-writable parent is fine; the directory itself may not be writable by others
        assert!(check_dir(Path::new("/tmp")).is_err());
        let d = std::env::temp_dir().join(format!("cnibox-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        prepare_dir(&d.join("run")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(d.join("run")).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::set_permissions(d.join("run"), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = prepare_dir(&d.join("run")).err().unwrap();
        assert!(e.msg.contains("with mode 777"), "{}", e.msg);
        std::os::unix::fs::symlink(d.join("run"), d.join("link")).unwrap();
        let e = prepare_dir(&d.join("link")).err().unwrap();
        assert!(e.msg.contains("is a symbolic link"), "{}", e.msg);
        let _ = std::fs::remove_dir_all(&d);
    }
}
