//! Named network namespaces laid out as iproute2 lays them out, so that
//! `ip netns` sees cnibox's namespaces and cnibox sees iproute2's: a bind mount
//! of the namespace on `/run/netns/NAME`, with `/run/netns` a shared mount so
//! the binding shows in every mount namespace. `exec` enters the namespace
//! the way `ip netns exec` does (its own /sys, `/etc/netns/NAME/*` bound over /etc).

use crate::error::{Error, Result};
use crate::sys::file;
use crate::sys::netns::Netns;
use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::ptr::null;

pub const RUN_DIR: &str = "/run/netns";

fn cstr(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::msg(format!("invalid path \"{s}\"")))
}

/// `/run/netns/NAME`, for names iproute2 also accepts.
pub fn path_of(name: &str) -> Result<String> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(Error::msg(format!("invalid namespace name \"{name}\"")));
    }
    Ok(format!("{RUN_DIR}/{name}"))
}

fn mount(src: &str, target: &str, fstype: &str, flags: libc::c_ulong) -> Result<()> {
    let (s, t, f) = (cstr(src)?, cstr(target)?, cstr(fstype)?);
    // SAFETY: NUL-terminated strings that outlive the call; no data argument.
    if unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, null()) } != 0 {
        return Err(Error::last_os(format_args!("mount {target}")));
    }
    Ok(())
}

/// Make `/run/netns` a shared mount point (binding it onto itself first if
/// it is a plain directory), so that a namespace mounted there is visible
/// from every mount namespace, including the one `ip` runs in.
fn share_run_dir() -> Result<()> {
    file::create_dir_all(std::path::Path::new(RUN_DIR), 0o755)?;
    match mount("none", RUN_DIR, "none", libc::MS_SHARED | libc::MS_REC) {
        Err(e) if e.is_errno(libc::EINVAL) => {
            mount(RUN_DIR, RUN_DIR, "none", libc::MS_BIND | libc::MS_REC)?;
            mount("none", RUN_DIR, "none", libc::MS_SHARED | libc::MS_REC)
        }
        r => r,
    }
}

/// Create namespace NAME; returns its path.
pub fn add(name: &str) -> Result<String> {
    let path = path_of(name)?;
    share_run_dir()?;
    let c = cstr(&path)?;
    // SAFETY: valid path; the descriptor is closed right away.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Error::last_os(format_args!("create namespace file \"{path}\"")));
    }
    // SAFETY: fd was just opened by us.
    unsafe { libc::close(fd) };
    if let Err(e) = bind_new(&path) {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

/// Unshare a fresh network namespace, pin it on `path`, and come back.
fn bind_new(path: &str) -> Result<()> {
    let back = Netns::current()?;
    // SAFETY: plain syscall; cnibox is single-threaded, so the whole process moves.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(Error::last_os("create network namespace"));
    }
    let pinned = mount("/proc/thread-self/ns/net", path, "none", libc::MS_BIND);
    // SAFETY: setns on a namespace descriptor we hold.
    if unsafe { libc::setns(back.fd(), libc::CLONE_NEWNET) } != 0 {
        // Going on in the new namespace would attach things to the wrong place.
        eprintln!("cnibox: cannot return to the original network namespace");
        std::process::abort();
    }
    pinned.map_err(|e| e.context(format_args!("pin namespace on \"{path}\"")))
}

pub fn del(name: &str) -> Result<()> {
    let path = path_of(name)?;
    let c = cstr(&path)?;
    // Lazy unmount: processes still inside keep the namespace alive; the name goes now.
    // SAFETY: valid path.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    std::fs::remove_file(&path)
        .map_err(|e| Error::os(format_args!("remove namespace file \"{path}\""), e.raw_os_error().unwrap_or(0)))
}

pub fn list() -> Result<Vec<String>> {
    super::dir_names(std::path::Path::new(RUN_DIR))
}

/// What a process needs to enter namespace NAME, prepared beforehand so that
/// [`Entry::enter`] makes only system calls (it runs between fork and exec).
pub struct Entry {
    ns: Netns,
    etc: Vec<(CString, CString)>,
}

impl Entry {
    pub fn new(name: &str) -> Result<Entry> {
        let ns = Netns::open(&path_of(name)?)?;
        let mut etc = Vec::new();
        if let Ok(rd) = std::fs::read_dir(format!("/etc/netns/{name}")) {
            for e in rd.filter_map(|e| e.ok()) {
                let f = e.file_name().to_string_lossy().into_owned();
                etc.push((cstr(&format!("/etc/netns/{name}/{f}"))?, cstr(&format!("/etc/{f}"))?));
            }
        }
        Ok(Entry { ns, etc })
    }

    /// setns, then a private mount namespace with a sysfs that shows this
    /// network namespace's devices, as `ip netns exec` does.
    pub fn enter(&self) -> std::io::Result<()> {
        let err = std::io::Error::last_os_error;
        // SAFETY: system calls on descriptors and NUL-terminated strings owned by self.
        unsafe {
            if libc::setns(self.ns.fd(), libc::CLONE_NEWNET) != 0 || libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(err());
            }
            let none = c"none".as_ptr();
            if libc::mount(none, c"/".as_ptr(), none, libc::MS_SLAVE | libc::MS_REC, null()) != 0 {
                return Err(err());
            }
            let mut flags = 0;
            if libc::umount2(c"/sys".as_ptr(), libc::MNT_DETACH) != 0 {
                // Could not take the old sysfs away: cover it; a read-only one
                // can only be covered read-only.
                let mut st: libc::statvfs = std::mem::zeroed();
                if libc::statvfs(c"/sys".as_ptr(), &mut st) == 0 && st.f_flag & libc::ST_RDONLY != 0 {
                    flags = libc::MS_RDONLY;
                }
            }
            if libc::mount(none, c"/sys".as_ptr(), c"sysfs".as_ptr(), flags, null()) != 0 {
                return Err(err());
            }
            for (src, dst) in &self.etc {
                // As iproute2: a file missing under /etc is skipped, not fatal.
                libc::mount(src.as_ptr(), dst.as_ptr(), none, libc::MS_BIND, null());
            }
        }
        Ok(())
    }
}

/// `cnibox netns exec NAME CMD...`: replaces this process with CMD.
fn exec(name: &str, cmd: &[String]) -> Result<i32> {
    let entry = Entry::new(name)?;
    entry.enter().map_err(|e| Error::os(format_args!("enter namespace \"{name}\""), e.raw_os_error().unwrap_or(0)))?;
    let e = std::process::Command::new(&cmd[0]).args(&cmd[1..]).exec();
    eprintln!("cnibox netns exec: {}: {e}", cmd[0]);
    Ok(if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 })
}

pub fn main(args: &[String]) -> Result<i32> {
    let usage = || {
        eprintln!("usage: cnibox netns add|del NAME | list | exec NAME [--] CMD...");
        Ok(2)
    };
    let (Some(sub), rest) = (args.first().map(String::as_str), args.get(1..).unwrap_or(&[])) else {
        return usage();
    };
    match (sub, rest) {
        ("add", [name]) => add(name).map(|_| 0),
        ("del" | "delete", [name]) => del(name).map(|_| 0),
        ("list" | "ls", []) => {
            list()?.iter().for_each(|n| println!("{n}"));
            Ok(0)
        }
        ("exec", [name, cmd @ ..]) => {
            let cmd = if cmd.first().map(String::as_str) == Some("--") { &cmd[1..] } else { cmd };
            if cmd.is_empty() {
                return usage();
            }
            exec(name, cmd)
        }
        _ => usage(),
    }
}
