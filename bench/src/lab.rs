//! The throwaway world a run happens in: a "node" network namespace that the
//! benchmark process itself enters (so every plugin it starts runs there, as
//! on a node, and the machine's own namespace is never touched), container
//! namespaces prepared ahead of the timed region, and a temporary directory
//! for configs and IPAM state. Dropping the Lab removes all of it; leftovers
//! of a run that was killed outright are removed by the next run.
//!
//! The temporary directory is a tmpfs of its own, so that what a file
//! system remembers does not decide the figures: on an ext4 without a
//! journal (this machine's root) an inode freed in the last minute is not
//! handed out again, and every file a plugin created after a run had
//! removed thousands (the allocations scenario) walked past them, 1-1.5 ms
//! per ADD for every plugin set, in whichever scenario came first.

use cnibox::sys::netns::{Netns, NetnsGuard};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const PREFIX: &str = "cnbench-";

pub struct Lab {
    pub tmp: PathBuf,
    pub node: String,
    /// In the node namespace while this is held; dropping it returns to the machine's.
    entered: Option<NetnsGuard>,
    /// Every namespace name this run created (node excluded), for the cleanup.
    created: BTreeSet<String>,
}

/// `ip ARGS...` outside the timed region; Err carries ip's own message.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output().map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// `ip -batch -` with these lines (one process for many namespaces).
fn ip_batch(lines: &[String], force: bool) -> Result<(), String> {
    if lines.is_empty() {
        return Ok(());
    }
    use std::io::Write;
    let mut args = vec!["-batch", "-"];
    if force {
        args.insert(0, "-force");
    }
    let mut child = Command::new("ip")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(lines.join("\n").as_bytes());
        let _ = i.write_all(b"\n");
    }
    let out = child.wait_with_output().map_err(|e| format!("ip -batch: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip -batch: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Lab {
    /// Make the temp dir and the node namespace, and move this process into it.
    /// Must be called before any thread is started (threads inherit the namespace).
    pub fn new() -> Result<Lab, String> {
        remove_stale();
        let pid = std::process::id();
        let tmp = std::env::temp_dir().join(format!("cnibox-bench-{pid}"));
        std::fs::create_dir_all(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        mount_tmpfs(&tmp)?;
        let mut lab = Lab { tmp, node: format!("{PREFIX}{pid}-node"), entered: None, created: BTreeSet::new() };
        ip(&["netns", "add", &lab.node])?;
        ip(&["-n", &lab.node, "link", "set", "lo", "up"])?;
        let ns = Netns::open(&Lab::netns_path(&lab.node)).map_err(|e| e.to_string())?;
        lab.entered = Some(ns.enter().map_err(|e| format!("cannot enter the node namespace: {e}"))?);
        Ok(lab)
    }

    pub fn netns_path(name: &str) -> String {
        format!("/run/netns/{name}")
    }

    /// Create these container namespaces (those not made yet). Like a
    /// runtime's, they start with lo down: bringing it up is loopback's job.
    pub fn ensure_netns(&mut self, names: &[String]) -> Result<(), String> {
        let new: Vec<&String> = names.iter().filter(|n| !self.created.contains(*n)).collect();
        if new.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = new.iter().map(|n| format!("netns add {n}")).collect();
        for n in &new {
            self.created.insert((*n).clone());
        }
        ip_batch(&lines, false)
    }

    pub fn dir(&self, sub: &str) -> Result<PathBuf, String> {
        let p = self.tmp.join(sub);
        std::fs::create_dir_all(&p).map_err(|e| format!("cannot create {}: {e}", p.display()))?;
        Ok(p)
    }

    fn cleanup(&mut self) {
        self.entered = None;
        let mut lines: Vec<String> = self.created.iter().map(|n| format!("netns del {n}")).collect();
        lines.push(format!("netns del {}", self.node));
        if ip_batch(&lines, true).is_err() {
            for n in self.created.iter().chain(std::iter::once(&self.node)) {
                let _ = ip(&["netns", "del", n]);
            }
        }
        self.created.clear();
        unmount_and_remove(&self.tmp);
    }
}

/// A tmpfs at `dir` (root's, 0755, as a data directory must be).
fn mount_tmpfs(dir: &Path) -> Result<(), String> {
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "mode=0755,size=1g", "cnibox-bench"])
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("mount a tmpfs at {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn unmount_and_remove(dir: &Path) {
    let _ = Command::new("umount").arg("-l").arg(dir).stdin(Stdio::null()).stderr(Stdio::null()).status();
    let _ = std::fs::remove_dir_all(dir);
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Namespaces and temp dirs of earlier runs whose process is gone (killed
/// with SIGKILL, machine-wide crash of the tool): remove them.
fn remove_stale() {
    let mut lines = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/run/netns") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(PREFIX) else { continue };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
            if !alive(pid) {
                lines.push(format!("netns del {name}"));
            }
        }
    }
    if !lines.is_empty() {
        eprintln!("cnibox-bench: removing {} namespaces left by an earlier run", lines.len());
        let _ = ip_batch(&lines, true);
    }
    if let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix("cnibox-bench-").and_then(|p| p.parse::<u32>().ok()) else { continue };
            if !alive(pid) {
                unmount_and_remove(&e.path());
            }
        }
    }
}
