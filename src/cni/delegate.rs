//! Calling another plugin: found by name on CNI_PATH, run with the same
//! parameters and the complete config on stdin. When the plugin found is this
//! very binary (a multi-call symlink), it runs in-process through the same
//! validation and result conversion, so nothing observable differs but the
//! fork and exec that are saved.
//!
//! A config can make a plugin delegate to itself (`"ipam":{"type":"bridge"}`)
//! or to a plugin that delegates back (bridge -> flannel -> bridge). Each
//! process therefore knows its chain of delegations: the plugins it runs in
//! (the one `main` started, then each in-process delegate) after those of the
//! processes that exec'd it, passed down in `CNIBOX_DELEGATION`. A plugin
//! already in the chain, or a chain longer than [`MAX_DEPTH`], is refused
//! with code 7 naming the chain, before anything is done for it.

use super::json::Obj;
use super::skel::{self, Command, Plugin, Request};
use super::CniResult;
use crate::error::{code, Error, Result};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// Most plugins in one chain of delegations (the deepest real one, a runtime
/// calling flannel calling bridge calling host-local, has four).
pub const MAX_DEPTH: usize = 8;
/// The chain of the processes above this one, names separated by commas.
const CHAIN_ENV: &str = "CNIBOX_DELEGATION";

/// The plugins this call runs in, outermost first, separated by commas
/// (None until first used, then seeded from the environment).
static CHAIN: Mutex<Option<String>> = Mutex::new(None);

fn with_chain<T>(f: impl FnOnce(&mut String) -> T) -> T {
    let mut c = CHAIN.lock().unwrap_or_else(|p| p.into_inner());
    f(c.get_or_insert_with(|| std::env::var(CHAIN_ENV).unwrap_or_default()))
}

fn push(chain: &mut String, name: &str) {
    if !chain.is_empty() {
        chain.push(',');
    }
    chain.push_str(name);
}

/// Record that this process runs plugin `name` (called once, by `main`).
pub fn set_running(name: &str) {
    with_chain(|c| push(c, name));
}

/// Whether `name` may be called from here: not already in the chain, and the chain not too deep.
fn check_chain(name: &str) -> Result<()> {
    with_chain(|c| {
        let looped = c.split(',').any(|n| n == name);
        let depth = c.split(',').filter(|n| !n.is_empty()).count();
        if !looped && depth < MAX_DEPTH {
            return Ok(());
        }
        let path = c.split(',').filter(|n| !n.is_empty()).chain([name]).collect::<Vec<_>>().join(" -> ");
        Err(Error::config(match looped {
            true => format!("plugin delegation loops: {path}"),
            false => format!("plugin delegation deeper than {MAX_DEPTH} plugins: {path}"),
        })
        .with_details(
            "a plugin cannot delegate, directly or through others, to itself: check the ipam and delegate types",
        ))
    })
}

/// Pops the in-process delegate's name from the chain, however it returns.
struct InChain;

impl InChain {
    fn enter(name: &str) -> InChain {
        with_chain(|c| push(c, name));
        InChain
    }
}

impl Drop for InChain {
    fn drop(&mut self) {
        with_chain(|c| c.truncate(c.rfind(',').unwrap_or(0)));
    }
}

/// How the protocol layer finds a built-in plugin by name; set by `main`,
/// which owns the plugin table (the protocol layer does not know the plugins).
static BUILTINS: OnceLock<fn(&str) -> Option<&'static Plugin>> = OnceLock::new();

pub fn set_builtins(f: fn(&str) -> Option<&'static Plugin>) {
    let _ = BUILTINS.set(f);
}

/// Find `name` in the colon-separated `path` list.
pub fn find_in_path(name: &str, path: &str) -> Result<PathBuf> {
    find(name, path).map(|(p, _)| p)
}

/// [`find_in_path`], with what `stat` said about the file found.
fn find(name: &str, path: &str) -> Result<(PathBuf, std::fs::Metadata)> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(Error::config(format!("invalid plugin name \"{name}\"")));
    }
    let dirs: Vec<&str> = path.split(':').filter(|d| !d.is_empty()).collect();
    for d in &dirs {
        let p = PathBuf::from(d).join(name);
        if let Ok(m) = std::fs::metadata(&p) {
            if m.is_file() && m.mode() & 0o111 != 0 {
                return Ok((p, m));
            }
        }
    }
    Err(Error::msg(format!("failed to find plugin \"{name}\" in path [{}]", dirs.join(" "))))
}

/// Whether the file `stat` described as `m` is this very binary.
fn is_self(m: &std::fs::Metadata) -> bool {
    crate::sys::trust::own_executable().is_ok_and(|me| me == crate::sys::trust::id_of(m))
}

/// Run plugin `name` for `req` with `command`; ADD returns the delegate's result.
pub fn delegate(name: &str, command: Command, req: &Request) -> Result<Option<CniResult>> {
    check_chain(name)?;
    let (path, meta) = find(name, &req.path)?;
    let req = req.with_command(command);
    if is_self(&meta) {
        if let Some(p) = BUILTINS.get().and_then(|f| f(name)) {
            let _in = InChain::enter(name);
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

/// Run the plugin (posix_spawn) in this process's environment with CNI_*
/// set from `req`, the config on its stdin and its stdout read meanwhile.
pub fn exec(path: &std::path::Path, req: &Request) -> Result<Option<CniResult>> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let run_err =
        |e: std::io::Error| Error::os(format_args!("run plugin {}", path.display()), e.raw_os_error().unwrap_or(0));
    let invalid = || run_err(std::io::Error::from_raw_os_error(libc::EINVAL));
    let chain = with_chain(|c| c.clone());
    let mut set = vec![
        ("CNI_COMMAND", req.command.as_str()),
        ("CNI_CONTAINERID", &req.container_id),
        ("CNI_NETNS", &req.netns),
        ("CNI_IFNAME", &req.ifname),
        ("CNI_ARGS", &req.args),
        ("CNI_PATH", &req.path),
        (CHAIN_ENV, &chain),
    ];
    if req.netns_override {
        set.push(("CNI_NETNS_OVERRIDE", "1"));
    }
    let set = set.iter().map(|(k, v)| CString::new(format!("{k}={v}"))).collect::<std::result::Result<Vec<_>, _>>();
    let exe = CString::new(path.as_os_str().as_bytes()).map_err(|_| invalid())?;
    let env = crate::sys::child::env_with(&set.map_err(|_| invalid())?);
    let child = crate::sys::child::Filter::spawn(&exe, &env).map_err(run_err)?;
    let (status, stdout) = child
        .run(&req.config)
        .map_err(|e| Error::os(format_args!("wait for plugin {}", path.display()), e.raw_os_error().unwrap_or(0)))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("plugin");
    if status != crate::sys::child::Status::Exited(0) {
        return Err(plugin_error(name, &stdout));
    }
    if req.command != Command::Add {
        return Ok(None);
    }
    CniResult::from_json(&stdout).map(Some).map_err(|e| e.context(format_args!("result of plugin {name}")))
}

/// A failed plugin's error JSON, or its raw output when it printed none.
fn plugin_error(name: &str, stdout: &[u8]) -> Error {
    let wire = crate::json::parse(stdout).ok().and_then(|v| {
        let o = Obj::of(&v).ok()?;
        let code: u32 = o.get("code").ok()?;
        let code = if code == 0 { code::INTERNAL } else { code };
        Some(Error::new(code, o.get::<String>("msg").ok()?).with_details(o.get::<String>("details").ok()?))
    });
    match wire {
        Some(e) => e,
        None => Error::msg(format!("plugin {name} failed: {}", String::from_utf8_lossy(stdout).trim())),
    }
}
