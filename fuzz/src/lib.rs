//! What the fuzz targets share: a sandbox for the one target that runs whole
//! plugins (`config`), and the CNI environment as a map.
//!
//! The `config` target feeds crafted configurations to every plugin through
//! `cni::skel::main`, the very entry a runtime drives. A plugin that gets
//! past its config does real work, and as root that work must not reach the
//! machine: before the first input the process moves into a new network
//! namespace and a new mount namespace in which every file system is
//! read-only except a scratch tmpfs on /tmp (emptied after every input) and
//! the fuzz directory libFuzzer writes its corpus and crashes to. Without root
//! it first enters a user namespace of its own, which gives the same picture.

use std::collections::HashMap;
use std::ffi::CString;
use std::sync::Once;

/// The CNI_* variables a target hands to `skel::main`.
pub struct MapEnv(pub HashMap<&'static str, String>);

impl cnibox::cni::skel::Env for MapEnv {
    fn get(&self, key: &str) -> String {
        self.0.get(key).cloned().unwrap_or_default()
    }
}

/// Where the plugins' delegates are found: one link per plugin name to this
/// very binary, so that delegation always runs in-process and never execs.
pub const CNI_PATH: &str = "/tmp/cni-bin";

fn errno(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn c(s: &str) -> CString {
    CString::new(s).expect("no NUL in a path")
}

fn mount(
    src: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), String> {
    let (s, t, f, d) = (src.map(c), c(target), fstype.map(c), data.map(c));
    let p = |x: &Option<CString>| x.as_ref().map_or(std::ptr::null(), |x| x.as_ptr());
    // SAFETY: every pointer is null or a NUL-terminated string that outlives the call.
    let r = unsafe { libc::mount(p(&s), t.as_ptr(), p(&f), flags, p(&d).cast()) };
    if r != 0 {
        return Err(errno(&format!("mount {target}")));
    }
    Ok(())
}

/// Mount points with their per-mount flags, from /proc/self/mountinfo.
fn mounts() -> Vec<(String, libc::c_ulong)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (Some(mp), Some(opts)) = (f.get(4), f.get(5)) else { continue };
        let mut flags = 0;
        for o in opts.split(',') {
            flags |= match o {
                "nosuid" => libc::MS_NOSUID,
                "nodev" => libc::MS_NODEV,
                "noexec" => libc::MS_NOEXEC,
                "noatime" => libc::MS_NOATIME,
                "nodiratime" => libc::MS_NODIRATIME,
                "relatime" => libc::MS_RELATIME,
                "strictatime" => libc::MS_STRICTATIME,
                _ => 0,
            };
        }
        out.push((unescape(mp), flags));
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|d| (b'0'..=b'7').contains(d)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn enter() -> Result<(), String> {
    // SAFETY: plain system calls on this process; nothing else runs yet.
    unsafe {
        let (uid, gid) = (libc::geteuid(), libc::getegid());
        if uid == 0 {
            if libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWNET) != 0 {
                return Err(errno("unshare(mount, net)"));
            }
        } else {
            if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWNET) != 0 {
                return Err(errno("unshare(user, mount, net)"));
            }
            std::fs::write("/proc/self/setgroups", "deny").map_err(|e| format!("setgroups: {e}"))?;
            std::fs::write("/proc/self/uid_map", format!("0 {uid} 1")).map_err(|e| format!("uid_map: {e}"))?;
            std::fs::write("/proc/self/gid_map", format!("0 {gid} 1")).map_err(|e| format!("gid_map: {e}"))?;
        }
    }
    mount(None, "/", None, libc::MS_REC | libc::MS_PRIVATE, None)?;
    // The fuzz directory (corpus, artifacts) stays writable: a mount of its own.
    let keep = env!("CARGO_MANIFEST_DIR");
    mount(Some(keep), keep, None, libc::MS_BIND | libc::MS_REC, None)?;
    mount(Some("tmpfs"), "/tmp", Some("tmpfs"), libc::MS_NOSUID | libc::MS_NODEV, Some("size=64m,mode=1777"))?;
    let mut failed = Vec::new();
    for (mp, flags) in mounts() {
        if mp == "/tmp" || mp.starts_with("/tmp/") || mp == keep || mp.starts_with(&format!("{keep}/")) {
            continue;
        }
        if let Err(e) = mount(None, &mp, None, libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | flags, None) {
            failed.push(e);
        }
    }
    // Prove it: nothing outside the scratch may be writable.
    for probe in ["/cnibox-fuzz-probe", "/var/tmp/cnibox-fuzz-probe", "/etc/cnibox-fuzz-probe"] {
        if std::fs::write(probe, b"x").is_ok() {
            let _ = std::fs::remove_file(probe);
            return Err(format!("{probe} is writable after the read-only remount ({failed:?})"));
        }
    }
    std::fs::create_dir_all(CNI_PATH).map_err(|e| format!("{CNI_PATH}: {e}"))?;
    for p in cnibox::plugins::ALL {
        let _ = std::os::unix::fs::symlink("/proc/self/exe", format!("{CNI_PATH}/{}", p.name));
    }
    cnibox::cni::delegate::set_builtins(cnibox::plugins::find);
    Ok(())
}

/// Enter the sandbox once; a target that cannot have it refuses to run.
pub fn sandbox() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Err(e) = enter() {
            eprintln!("cnibox-fuzz: refusing to run plugins outside a sandbox: {e}");
            std::process::exit(2);
        }
    });
}

/// After each input: the scratch file system emptied (but for the plugin
/// links), and every so often a fresh network namespace, so that one input's
/// leftovers do not pile up for the next thousands.
pub fn reset(iteration: u64) {
    if let Ok(rd) = std::fs::read_dir("/tmp") {
        for e in rd.flatten() {
            let p = e.path();
            if p.as_os_str() != CNI_PATH {
                let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
            }
        }
    }
    if iteration % 256 == 255 {
        // SAFETY: a new, empty network namespace for this process.
        unsafe { libc::unshare(libc::CLONE_NEWNET) };
    }
}
