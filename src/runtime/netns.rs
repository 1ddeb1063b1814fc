//! Named network namespaces laid out as iproute2 lays them out, so that
//! `ip netns` sees cnibox's namespaces and cnibox sees iproute2's: a bind mount
//! of the namespace on `/run/netns/NAME`, with `/run/netns` a shared mount so
//! the binding shows in every mount namespace. `exec` enters the namespace
//! the way `ip netns exec` does (its own /sys, `/etc/netns/NAME/*` bound over /etc).

use crate::error::{Error, Result};
use crate::sys::netns::{self, Netns};
use crate::sys::{file, mount, os_err};
use std::ffi::CString;
use std::os::unix::fs::OpenOptionsExt;

pub const RUN_DIR: &str = "/run/netns";

fn cstr(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::msg(format!("invalid path \"{s}\"")))
}

/// A command line for exec (arguments come from our own argv: no NUL inside).
pub fn argv(cmd: &[String]) -> Result<Vec<CString>> {
    cmd.iter().map(|a| CString::new(a.as_str()).map_err(|_| Error::msg(format!("invalid argument \"{a}\"")))).collect()
}

/// `/run/netns/NAME`, for names iproute2 also accepts.
pub fn path_of(name: &str) -> Result<String> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(Error::msg(format!("invalid namespace name \"{name}\"")));
    }
    Ok(format!("{RUN_DIR}/{name}"))
}

/// Make `/run/netns` a shared mount point (binding it onto itself first if
/// it is a plain directory), so that a namespace mounted there is visible
/// from every mount namespace, including the one `ip` runs in.
fn share_run_dir() -> Result<()> {
    file::create_dir_all(std::path::Path::new(RUN_DIR), 0o755)?;
    let dir = c"/run/netns";
    let share = || mount::propagation(dir, libc::MS_SHARED | libc::MS_REC);
    match share() {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => mount::bind(dir, dir, libc::MS_REC).and_then(|_| share()),
        r => r,
    }
    .map_err(|e| os_err(format_args!("mount {RUN_DIR}"), e))
}

/// Create namespace NAME; returns its path.
pub fn add(name: &str) -> Result<String> {
    let path = path_of(name)?;
    share_run_dir()?;
    let c = cstr(&path)?;
    // The mount point: an empty file no one may open (as iproute2 makes it).
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| os_err(format_args!("create namespace file \"{path}\""), e))?;
    if let Err(e) = netns::create_pinned(&c) {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

pub fn del(name: &str) -> Result<()> {
    let path = path_of(name)?;
    let c = cstr(&path)?;
    // Lazy unmount: processes still inside keep the namespace alive; the name
    // goes now. Not mounted (a leftover file) is fine: the file goes all the same.
    let _ = mount::detach(&c);
    std::fs::remove_file(&path)
        .map_err(|e| Error::os(format_args!("remove namespace file \"{path}\""), e.raw_os_error().unwrap_or(0)))
}

pub fn list() -> Result<Vec<String>> {
    super::dir_names(std::path::Path::new(RUN_DIR))
}

/// What a command needs to start inside namespace NAME as `ip netns exec`
/// starts it: the namespace, and `/etc/netns/NAME/*` to bind over `/etc`.
pub fn exec_entry(name: &str) -> Result<netns::Exec> {
    let ns = Netns::open(&path_of(name)?)?;
    let mut etc = Vec::new();
    if let Ok(rd) = std::fs::read_dir(format!("/etc/netns/{name}")) {
        for e in rd.filter_map(|e| e.ok()) {
            let f = e.file_name().to_string_lossy().into_owned();
            etc.push((cstr(&format!("/etc/netns/{name}/{f}"))?, cstr(&format!("/etc/{f}"))?));
        }
    }
    Ok(netns::Exec::new(ns, etc))
}

/// `cnibox netns exec NAME CMD...`: replaces this process with CMD.
fn exec(name: &str, cmd: &[String]) -> Result<i32> {
    let argv = argv(cmd)?;
    exec_entry(name)?.enter().map_err(|e| os_err(format_args!("enter namespace \"{name}\""), e))?;
    let e = crate::sys::child::exec(&argv);
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
