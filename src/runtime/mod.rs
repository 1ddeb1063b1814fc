//! The runtime side of CNI, cnitool-compatible: named network namespaces,
//! config lists found in NETCONFPATH, plugin chains run with the right order
//! and prevResult, and the result cache in libcni's location and format.
//!
//! Environment, as cnitool reads it: NETCONFPATH (default /etc/cni/net.d),
//! CNI_PATH (default /opt/cni/bin), CNI_IFNAME (default eth0), CNI_ARGS,
//! CAP_ARGS (JSON capability arguments); plus CNI_CACHE_DIR (default
//! /var/lib/cni) to keep the cache elsewhere.

mod cache;
mod chain;
mod conf;
mod netns;
mod run;

use crate::cni::Plugin;
use crate::error::{code, Error, Result};
use crate::json::Map;
use chain::{Attachment, Runtime};

/// Runtime commands `cnibox` answers to besides plugin names.
pub const COMMANDS: &[&str] = &["netns", "add", "check", "del", "gc", "status", "run"];

const USAGE: &str = "usage: cnibox add|check|del NETWORK NETNS [options]
       cnibox gc|status NETWORK [NETNS] [options]
       cnibox netns add|del NAME | list | exec NAME [--] CMD...
       cnibox run [--network NAME] [--name NETNS] [options] [--] CMD...
       <plugin> add|check|del CONTAINERID NETNS [--config FILE] [options]
options: -i|--ifname IFNAME  --id CONTAINERID  --cache-dir DIR
";

/// Command-line options shared by the runtime commands.
#[derive(Default)]
struct Opts {
    pos: Vec<String>,
    ifname: Option<String>,
    id: Option<String>,
    cache_dir: Option<String>,
    config: Option<String>,
    network: Option<String>,
    name: Option<String>,
    /// `run`: the command, everything from the first word that is not an option.
    cmd: Vec<String>,
}

fn parse(args: &[String], run: bool) -> std::result::Result<Opts, String> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let slot = match a.as_str() {
            "-i" | "--ifname" => &mut o.ifname,
            "--id" => &mut o.id,
            "--cache-dir" => &mut o.cache_dir,
            "--config" if !run => &mut o.config,
            "--network" if run => &mut o.network,
            "--name" if run => &mut o.name,
            "--" => {
                let rest = it.by_ref().cloned();
                if run {
                    o.cmd.extend(rest)
                } else {
                    o.pos.extend(rest)
                }
                break;
            }
            s if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown option {s}")),
            _ if run => {
                o.cmd.push(a.clone());
                o.cmd.extend(it.by_ref().cloned());
                break;
            }
            _ => {
                o.pos.push(a.clone());
                continue;
            }
        };
        *slot = Some(it.next().ok_or_else(|| format!("option {a} needs a value"))?.clone());
    }
    Ok(o)
}

/// The names in `dir`, in the lexical order libcni and iproute2 use; none
/// when it does not exist.
fn dir_names(dir: &std::path::Path) -> Result<Vec<String>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::os(format_args!("read directory {}", dir.display()), e.raw_os_error().unwrap_or(0)))
        }
    };
    let mut names: Vec<String> =
        rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    crate::sort::sort(&mut names);
    Ok(names)
}

fn env(key: &str, default: &str) -> String {
    std::env::var(key).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

/// What every attaching command reads from the environment and options.
struct Ctx {
    rt: Runtime,
    ifname: String,
    args: Vec<(String, String)>,
    cap_args: Map,
}

impl Ctx {
    fn new(o: &Opts) -> Result<Ctx> {
        let cache_dir = o.cache_dir.clone().unwrap_or_else(|| env("CNI_CACHE_DIR", cache::DEFAULT_DIR));
        let mut args = Vec::new();
        let raw = env("CNI_ARGS", "");
        for pair in raw.split(';').filter(|_| !raw.is_empty()) {
            match pair.split_once('=') {
                Some((k, v)) if !k.is_empty() && !v.is_empty() && !v.contains('=') => args.push((k.into(), v.into())),
                _ => return Err(Error::new(code::INVALID_ENV, format!("invalid CNI_ARGS pair \"{pair}\""))),
            }
        }
        let caps = env("CAP_ARGS", "");
        let cap_args =
            if caps.is_empty() { Map::new() } else { crate::cni::config::parse(caps.as_bytes(), "CAP_ARGS")? };
        Ok(Ctx {
            rt: Runtime { path: env("CNI_PATH", "/opt/cni/bin"), cache: cache::Cache::new(&cache_dir) },
            ifname: o.ifname.clone().unwrap_or_else(|| env("CNI_IFNAME", "eth0")),
            args,
            cap_args,
        })
    }

    fn attachment(&self, container_id: String, netns: String) -> Attachment {
        Attachment {
            container_id,
            netns,
            ifname: self.ifname.clone(),
            args: self.args.clone(),
            cap_args: self.cap_args.clone(),
        }
    }
}

/// The netns argument as cnitool takes it (made absolute and clean, which
/// matters because the container id is derived from it); a bare name that is
/// not a file here means `/run/netns/NAME`.
fn netns_path(arg: &str) -> String {
    let named = format!("{}/{arg}", netns::RUN_DIR);
    if !arg.contains('/') && !std::path::Path::new(arg).exists() && std::path::Path::new(&named).exists() {
        return named;
    }
    let full = if arg.starts_with('/') {
        arg.to_string()
    } else {
        let cwd = std::env::current_dir().map(|d| d.to_string_lossy().into_owned()).unwrap_or_default();
        format!("{cwd}/{arg}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in full.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// cnitool's container id: "cnitool-" + hex of sha512(netns path)[..10].
fn container_id(netns: &str) -> String {
    format!("cnitool-{}", crate::sha512::hex(netns.as_bytes(), 20))
}

/// add/check/del for one attachment; ADD prints the result in the list's version.
fn attach(verb: &str, ctx: &Ctx, list: Result<conf::NetList>, network: &str, att: &Attachment) -> Result<i32> {
    match verb {
        "add" => {
            let list = list?;
            let r = chain::add(&ctx.rt, &list, att)?;
            println!("{}", r.to_json(&list.cni_version)?);
        }
        "check" => chain::check(&ctx.rt, &list?, att)?,
        _ => chain::del(&ctx.rt, list.as_ref().map_err(Clone::clone), network, att)?,
    }
    Ok(0)
}

fn network_cmd(verb: &str, args: &[String]) -> Result<i32> {
    let o = match parse(args, false) {
        Ok(o) => o,
        Err(e) => return Ok(usage(verb, &e)),
    };
    let needs_netns = matches!(verb, "add" | "check" | "del");
    let (network, ns_arg) = match o.pos.as_slice() {
        [n, ns] => (n, Some(ns)),
        [n] if !needs_netns => (n, None),
        _ => return Ok(usage(verb, "wrong number of arguments")),
    };
    let ctx = Ctx::new(&o)?;
    let list = conf::load(&env("NETCONFPATH", "/etc/cni/net.d"), network);
    match verb {
        "gc" => {
            for gone in chain::gc(&ctx.rt, &list?)? {
                eprintln!("cnibox gc: removed stale attachment {gone}");
            }
            Ok(0)
        }
        "status" => chain::status(&ctx.rt, &list?).map(|_| 0),
        _ => {
            let netns = netns_path(ns_arg.map(String::as_str).unwrap_or_default());
            let id = o.id.clone().unwrap_or_else(|| container_id(&netns));
            attach(verb, &ctx, list, network, &ctx.attachment(id, netns))
        }
    }
}

fn usage(cmd: &str, problem: &str) -> i32 {
    eprint!("cnibox {cmd}: {problem}\n{USAGE}");
    2
}

fn report(cmd: &str, rc: Result<i32>) -> i32 {
    rc.unwrap_or_else(|e| {
        eprintln!("cnibox {cmd}: {e}");
        1
    })
}

/// `cnibox <cmd> ...` for the runtime commands (netns, add, check, del, gc, status, run).
pub fn main(cmd: &str, args: &[String]) -> i32 {
    let rc = match cmd {
        "netns" => netns::main(args),
        "run" => match parse(args, true) {
            Ok(o) if o.cmd.is_empty() => return usage(cmd, "no command to run"),
            Ok(o) => Ctx::new(&o).and_then(|ctx| run::main(&o, &ctx)),
            Err(e) => return usage(cmd, &e),
        },
        _ => network_cmd(cmd, args),
    };
    report(cmd, rc)
}

/// `bridge add <containerid> <netns-path> [--config FILE]` with no CNI_*
/// environment: the plugin attaches that namespace with the embedded default
/// network (or FILE), through the same chain and cache as `cnibox add`.
pub fn short_form(p: &'static Plugin, args: &[String]) -> i32 {
    let o = match parse(args, false) {
        Ok(o) => o,
        Err(e) => return usage(p.name, &e),
    };
    let [verb, id, ns] = o.pos.as_slice() else {
        return usage(p.name, "expected add|check|del CONTAINERID NETNS");
    };
    if !matches!(verb.as_str(), "add" | "check" | "del") {
        return usage(p.name, &format!("unknown verb \"{verb}\""));
    }
    let rc = Ctx::new(&o).and_then(|ctx| {
        let list = match &o.config {
            Some(f) => conf::from_file(std::path::Path::new(f)),
            None if p.name == "bridge" => conf::default_network(&ctx.rt.cache.dir.to_string_lossy()),
            None => Err(Error::config(format!("plugin {} has no default network: give --config FILE", p.name))),
        };
        let network = list.as_ref().map(|l| l.name.clone()).unwrap_or_default();
        attach(verb, &ctx, list, &network, &ctx.attachment(id.clone(), netns_path(ns)))
    });
    report(p.name, rc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_id_is_cnitools() {
        // sha512("/run/netns/test")[:10], as cnitool computes it
        assert_eq!(container_id("/run/netns/test"), format!("cnitool-{}", "8ae22670664f2caaa6b3"));
    }

    #[test]
    fn netns_paths_are_cleaned_like_filepath_abs() {
        assert_eq!(netns_path("/run//netns/./x/"), "/run/netns/x");
        assert_eq!(netns_path("/proc/1/../2/ns/net"), "/proc/2/ns/net");
    }

    #[test]
    fn options() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let o = parse(&a(&["net", "-i", "eth1", "/ns", "--cache-dir", "/c"]), false).unwrap();
        assert_eq!(o.pos, a(&["net", "/ns"]));
        assert_eq!((o.ifname.as_deref(), o.cache_dir.as_deref()), (Some("eth1"), Some("/c")));
        let o = parse(&a(&["--network", "n", "sh", "-c", "x"]), true).unwrap();
        assert_eq!((o.network.as_deref(), o.cmd), (Some("n"), a(&["sh", "-c", "x"])));
        assert!(parse(&a(&["--bogus"]), false).is_err());
        assert!(parse(&a(&["-i"]), false).is_err());
    }
}
