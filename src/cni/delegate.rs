//! Calling another plugin: found by name on CNI_PATH, run with the same
//! parameters and the complete config on stdin. When the plugin found is this
//! very binary (a multi-call symlink), it runs in-process through the same
//! validation and result conversion, so nothing observable differs but the
//! fork and exec that are saved.

use super::json::Obj;
use super::skel::{self, Command, Plugin, Request};
use super::CniResult;
use crate::error::{code, Error, Result};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;

/// How the protocol layer finds a built-in plugin by name; set by `main`,
/// which owns the plugin table (the protocol layer does not know the plugins).
static BUILTINS: OnceLock<fn(&str) -> Option<&'static Plugin>> = OnceLock::new();

pub fn set_builtins(f: fn(&str) -> Option<&'static Plugin>) {
    let _ = BUILTINS.set(f);
}

/// Find `name` in the colon-separated `path` list.
pub fn find_in_path(name: &str, path: &str) -> Result<PathBuf> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(Error::config(format!("invalid plugin name \"{name}\"")));
    }
    let dirs: Vec<&str> = path.split(':').filter(|d| !d.is_empty()).collect();
    for d in &dirs {
        let p = PathBuf::from(d).join(name);
        if let Ok(m) = std::fs::metadata(&p) {
            if m.is_file() && m.mode() & 0o111 != 0 {
                return Ok(p);
            }
        }
    }
    Err(Error::msg(format!("failed to find plugin \"{name}\" in path [{}]", dirs.join(" "))))
}

fn is_self(p: &std::path::Path) -> bool {
    match (std::fs::metadata(p), std::fs::metadata("/proc/self/exe")) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Run plugin `name` for `req` with `command`; ADD returns the delegate's result.
pub fn delegate(name: &str, command: Command, req: &Request) -> Result<Option<CniResult>> {
    let path = find_in_path(name, &req.path)?;
    let req = req.with_command(command);
    if is_self(&path) {
        if let Some(p) = BUILTINS.get().and_then(|f| f(name)) {
            return run_builtin(p, req);
        }
    }
    exec(&path, &req)
}

/// The in-process path: same checks, and the result as the caller would have
/// read it from the delegate's stdout in the config's version.
pub fn run_builtin(p: &Plugin, req: Request) -> Result<Option<CniResult>> {
    let (req, res) = skel::dispatch(p, req)?;
    match res {
        Some(r) => Ok(Some(r.as_seen_in(&req.cni_version)?)),
        None => Ok(None),
    }
}

/// fork+exec the plugin with CNI_* set from `req` and the config on stdin.
pub fn exec(path: &std::path::Path, req: &Request) -> Result<Option<CniResult>> {
    let mut cmd = std::process::Command::new(path);
    cmd.env("CNI_COMMAND", req.command.as_str())
        .env("CNI_CONTAINERID", &req.container_id)
        .env("CNI_NETNS", &req.netns)
        .env("CNI_IFNAME", &req.ifname)
        .env("CNI_ARGS", &req.args)
        .env("CNI_PATH", &req.path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if req.netns_override {
        cmd.env("CNI_NETNS_OVERRIDE", "1");
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::os(format_args!("run plugin {}", path.display()), e.raw_os_error().unwrap_or(0)))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin that exits without reading gives EPIPE; its exit status tells the story.
        let _ = stdin.write_all(&req.config);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::os(format_args!("wait for plugin {}", path.display()), e.raw_os_error().unwrap_or(0)))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("plugin");
    if !out.status.success() {
        return Err(plugin_error(name, &out.stdout));
    }
    if req.command != Command::Add {
        return Ok(None);
    }
    CniResult::from_json(&out.stdout).map(Some).map_err(|e| e.context(format_args!("result of plugin {name}")))
}

/// A failed plugin's error JSON, or its raw output when it printed none.
fn plugin_error(name: &str, stdout: &[u8]) -> Error {
    let wire = serde_json::from_slice::<serde_json::Value>(stdout).ok().and_then(|v| {
        let o = Obj::of(&v).ok()?;
        Some(Error { code: o.get("code").ok()?, msg: o.get("msg").ok()?, details: o.get("details").ok()?, errno: 0 })
    });
    match wire {
        Some(e) => Error { code: if e.code == 0 { code::INTERNAL } else { e.code }, ..e },
        None => Error::msg(format!("plugin {name} failed: {}", String::from_utf8_lossy(stdout).trim())),
    }
}
