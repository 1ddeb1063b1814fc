//! host-local: one address per range set from the configured ranges, kept per
//! network in `<dataDir>/<name>/` (ipam::store). Behaves as the reference
//! plugin, messages included, and keeps the reservations a reference binary
//! left in the same directory. Adds GC and STATUS, which the reference lacks.

use crate::cni::args::{go_quote, CniArgs};
use crate::cni::config::{parse_ip_maybe_cidr, Args, Dns};
use crate::cni::json::json_struct;
use crate::cni::result::{IpConfig, Route};
use crate::cni::{version, CniResult, Plugin, Request};
use crate::error::{code, Error, Result};
use crate::ipam::alloc::{self, Valid};
use crate::ipam::range::{RangeConf, RangeSet};
use crate::ipam::state::{Edit, State};
use crate::ipam::store::{self, Store};
use crate::net::IpNet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub static PLUGIN: Plugin = Plugin { name: "host-local", min_version: "0.1.0", add, del, check, gc, status };

json_struct! {
    struct NetConf {
        ipam: Option<IpamConf> = opt("ipam"),
        runtime: RuntimeConf = get("runtimeConfig"),
        args: Option<Args> = opt("args"),
        valid: Option<Vec<Attachment>> = opt("cni.dev/valid-attachments"),
        attachments: Option<Vec<Attachment>> = opt("cni.dev/attachments"),
    }
}

json_struct! {
    struct IpamConf {
        // The legacy single range at the top level.
        subnet: Option<IpNet> = opt("subnet"),
        range_start: Option<IpAddr> = opt("rangeStart"),
        range_end: Option<IpAddr> = opt("rangeEnd"),
        gateway: Option<IpAddr> = opt("gateway"),
        ranges: Vec<Vec<RangeConf>> = get("ranges"),
        routes: Vec<Route> = get("routes"),
        data_dir: String = get("dataDir"),
        resolv_conf: String = get("resolvConf"),
    }
}

json_struct! {
    /// `runtimeConfig`: the `ips` and `ipRanges` capabilities.
    #[derive(Default)]
    struct RuntimeConf {
        ips: Vec<String> = get("ips"),
        ip_ranges: Vec<Vec<RangeConf>> = get("ipRanges"),
    }
}

json_struct! {
    struct Attachment {
        id: String = req("containerID"),
        ifname: String = req("ifname"),
    }
}

struct Config {
    sets: Vec<RangeSet>,
    routes: Vec<Route>,
    data_dir: PathBuf,
    name: String,
    resolv_conf: String,
    requested: Vec<IpAddr>,
    /// GC's valid attachments; None when the runtime sent neither key.
    valid: Option<Vec<(String, String)>>,
}

/// Parse and validate the config in the reference's order, with its messages.
fn load(req: &Request) -> Result<Config> {
    let n: NetConf = req.conf()?;
    let ipam = n.ipam.ok_or_else(|| Error::config("IPAM config missing 'ipam' key"))?;
    let mut requested = Vec::new();
    let env = CniArgs::parse(&req.args, &["IP"])?;
    if let Some(v) = env.get("IP").filter(|v| !v.is_empty()) {
        let pair = go_quote(&format!("IP={v}"));
        requested.push(
            requested_ip(v).ok_or_else(|| {
                Error::msg(format!("ARGS: error parsing value of pair {pair}: invalid IP address {v}"))
            })?,
        );
    }
    let from_conf = n.args.iter().flat_map(|a| a.cni.ips.iter().map(|s| ("args.cni.ips", s)));
    for (field, s) in from_conf.chain(n.runtime.ips.iter().map(|s| ("runtimeConfig.ips", s))) {
        requested.push(requested_ip(s).ok_or_else(|| Error::config(format!("{field}: invalid IP address {s}")))?);
    }
    // Runtime ranges first, then the legacy top-level range, then `ranges`.
    let mut confs = n.runtime.ip_ranges;
    if let Some(subnet) = ipam.subnet {
        let (range_start, range_end, gateway) = (ipam.range_start, ipam.range_end, ipam.gateway);
        confs.push(vec![RangeConf { subnet, range_start, range_end, gateway }]);
    }
    confs.extend(ipam.ranges);
    if confs.is_empty() {
        return Err(Error::config("no IP ranges specified"));
    }
    let mut sets = Vec::with_capacity(confs.len());
    for (i, c) in confs.iter().enumerate() {
        sets.push(RangeSet::new(c).map_err(|m| Error::config(format!("invalid range set {i}: {m}")))?);
    }
    let v4 = sets.iter().filter(|s| s.is_ipv4()).count();
    if (v4 > 1 || sets.len() - v4 > 1) && !version::at_least(&req.cni_version, "0.3.0") {
        return Err(Error::config(format!(
            "CNI version {} does not support more than 1 address per family",
            req.cni_version
        )));
    }
    for (i, a) in sets.iter().enumerate() {
        if let Some(j) = sets[i + 1..].iter().position(|b| a.overlaps(b)) {
            return Err(Error::config(format!("range set {i} overlaps with {}", i + 1 + j)));
        }
    }
    let data_dir = Path::new(if ipam.data_dir.is_empty() { store::DEFAULT_DATA_DIR } else { &ipam.data_dir });
    store::network_dir(data_dir, &req.name)?;
    let valid = match (n.valid, n.attachments) {
        (None, None) => None,
        (a, b) => Some(a.into_iter().chain(b).flatten().map(|x| (x.id, x.ifname)).collect()),
    };
    Ok(Config {
        sets,
        routes: ipam.routes,
        data_dir: data_dir.to_path_buf(),
        name: req.name.clone(),
        resolv_conf: ipam.resolv_conf,
        requested,
        valid,
    })
}

/// "10.1.0.9" or "10.1.0.9/24": only the address counts.
fn requested_ip(s: &str) -> Option<IpAddr> {
    parse_ip_maybe_cidr(s).map(|(ip, _)| ip.to_canonical())
}

/// Replace the state file with `state` after `edit`.
fn write(store: &Store, state: &State, edit: &Edit) -> Result<()> {
    let mut header = String::new();
    let pieces = state.render(edit, &mut header);
    store.commit(&pieces)
}

fn add(req: &Request) -> Result<CniResult> {
    let c = load(req)?;
    let dns = if c.resolv_conf.is_empty() { Dns::default() } else { resolv_conf(&c.resolv_conf)? };
    let store =
        Store::open(&c.data_dir, &c.name, true)?.ok_or_else(|| Error::msg("host-local: data directory vanished"))?;
    let snap = store.read(true)?;
    let state = load_state(&store, &snap)?;
    let (leases, edit) = alloc::allocate(&state, &c.sets, &c.requested, &req.container_id, &req.ifname, &store)?;
    write(&store, &state, &edit)?;
    for (idx, ip) in &edit.last {
        if let Err(e) = store.mirror_last_reserved(*idx, ip) {
            eprintln!("host-local: {e}");
        }
    }
    let ips =
        leases.into_iter().map(|l| IpConfig { address: l.addr, gateway: Some(l.gateway), interface: None }).collect();
    Ok(CniResult { ips, routes: c.routes, dns, ..Default::default() })
}

/// Releases every reservation of (container id, ifname); nothing held is success.
fn del(req: &Request) -> Result<()> {
    let c = load(req)?;
    let Some(store) = Store::open(&c.data_dir, &c.name, false)? else { return Ok(()) };
    let snap = store.read(false)?;
    let state = State::parse(&snap);
    let (lines, files) = alloc::attachment(&state, &req.container_id, &req.ifname, || store.legacy_scan())?;
    let edit = Edit { remove: lines.iter().map(|e| e.span.clone()).collect(), ..Edit::default() };
    finish(&store, &state, &edit, &files)
}

/// Apply a release: the state first, then the reference's files; every failure reported.
fn finish(store: &Store, state: &State, edit: &Edit, files: &[store::Legacy]) -> Result<()> {
    let mut errs: Vec<String> = Vec::new();
    if !edit.is_empty() {
        if let Err(e) = write(store, state, edit) {
            errs.push(e.to_string());
        }
    }
    for f in files {
        if let Err(e) = store.legacy_release(f) {
            errs.push(e.to_string());
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Error::msg(errs.join("; ")))
    }
}

fn check(req: &Request) -> Result<()> {
    let c = load(req)?;
    let missing = || Error::msg(format!("host-local: Failed to find address added by container {}", req.container_id));
    let store = Store::open(&c.data_dir, &c.name, false)?.ok_or_else(missing)?;
    let snap = store.read(true)?;
    let state = load_state(&store, &snap)?;
    let (lines, files) = alloc::attachment(&state, &req.container_id, &req.ifname, || store.legacy_scan())?;
    if lines.is_empty() && files.is_empty() {
        return Err(missing());
    }
    Ok(())
}

/// Release every reservation whose attachment the runtime no longer lists.
fn gc(req: &Request) -> Result<()> {
    let c = load(req)?;
    let Some(valid) = c.valid else { return Ok(()) };
    let Some(store) = Store::open(&c.data_dir, &c.name, false)? else { return Ok(()) };
    let snap = store.read(false)?;
    let state = State::parse(&snap);
    let (edit, files) = alloc::collect(&state, store.legacy_scan()?, &Valid(&valid));
    finish(&store, &state, &edit, &files)
}

/// Ready when ADD could write the network's state; cheap, as runtimes poll it.
fn status(req: &Request) -> Result<()> {
    let c = load(req)?;
    store::check_writable(&c.data_dir, &c.name).map_err(|e| e.with_code(code::PLUGIN_NOT_AVAILABLE))
}

/// `nameserver`, `domain`, `search` and `options` from a resolv.conf.
fn resolv_conf(path: &str) -> Result<Dns> {
    let text =
        std::fs::read(path).map_err(|e| Error::os(format_args!("open {path}"), e.raw_os_error().unwrap_or(0)))?;
    Ok(parse_resolv_conf(&String::from_utf8_lossy(&text)))
}

fn parse_resolv_conf(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines().map(str::trim) {
        if line.starts_with(['#', ';']) {
            continue;
        }
        let mut f = line.split_whitespace();
        let (Some(key), rest) = (f.next(), f.map(str::to_string).collect::<Vec<_>>()) else { continue };
        let Some(first) = rest.first().cloned() else { continue };
        match key {
            "nameserver" => dns.nameservers.push(first),
            "domain" => dns.domain = first,
            "search" => dns.search.extend(rest),
            "options" => dns.options.extend(rest),
            _ => {}
        }
    }
    dns
}

/// The network's state for ADD and CHECK, or an error that names the file
/// and what is wrong with it (nothing is changed then: the operator repairs
/// or removes it). DEL and GC read a damaged file leniently instead: they
/// only ever release, and must not be stuck behind damage.
fn load_state<'a>(store: &Store, snap: &'a [u8]) -> Result<State<'a>> {
    State::load(snap).map_err(|why| {
        Error::msg(format!(
            "host-local: state file {}/{} is damaged: {why}; repair or remove it",
            store.path.display(),
            crate::ipam::state::FILE
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::Command;

    fn req(conf: &str, args: &str) -> Request {
        Request {
            command: Command::Add,
            container_id: "c".into(),
            netns: String::new(),
            ifname: "eth0".into(),
            args: args.into(),
            path: String::new(),
            netns_override: false,
            config: conf.as_bytes().to_vec().into(),
            cni_version: "1.0.0".into(),
            name: "net1".into(),
            ns: None,
        }
    }

    #[test]
    fn load_orders_ranges_and_gathers_requests_like_the_reference() {
        let c = load(&req(
            r#"{"ipam": {"subnet": "10.2.0.0/24", "ranges": [[{"subnet": "10.3.0.0/24"}]]},
                "runtimeConfig": {"ipRanges": [[{"subnet": "10.1.0.0/24"}]], "ips": ["10.3.0.9/24"]},
                "args": {"cni": {"ips": ["10.2.0.9"]}},
                "cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}],
                "cni.dev/attachments": [{"containerID": "b", "ifname": "eth1"}]}"#,
            "IgnoreUnknown=1;IP=::ffff:10.1.0.9",
        ))
        .unwrap();
        let sets: Vec<String> = c.sets.iter().map(|s| s.to_string()).collect();
        assert_eq!(sets, ["10.1.0.1-10.1.0.254", "10.2.0.1-10.2.0.254", "10.3.0.1-10.3.0.254"]);
        let wanted: Vec<String> = c.requested.iter().map(|i| i.to_string()).collect();
        assert_eq!(wanted, ["10.1.0.9", "10.2.0.9", "10.3.0.9"]);
        assert_eq!((c.data_dir, c.name.as_str()), (PathBuf::from("/var/lib/cni/networks"), "net1"));
        assert_eq!(c.valid.unwrap(), [("a".to_string(), "eth0".to_string()), ("b".to_string(), "eth1".to_string())]);
        let e =
            load(&req(r#"{"ipam": {"subnet": "10.2.0.0/24"}, "runtimeConfig": {"ips": ["x"]}}"#, "")).err().unwrap();
        assert_eq!((e.code, e.msg.as_str()), (7, "runtimeConfig.ips: invalid IP address x"));
        assert!(load(&req(r#"{"ipam": {"subnet": "10.2.0.0/24"}}"#, "")).unwrap().valid.is_none());
    }

    #[test]
    fn resolv_conf_like_the_reference() {
        let d = parse_resolv_conf(
            "# comment\n; also\nnameserver 10.0.0.1\nnameserver 10.0.0.2 # x\ndomain example.com\n\
             search a.example b.example\noptions ndots:5 edns0\nnameserver\nsortlist 1.2.3.4\n",
        );
        assert_eq!(d.nameservers, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(d.domain, "example.com");
        assert_eq!(d.search, ["a.example", "b.example"]);
        assert_eq!(d.options, ["ndots:5", "edns0"]);
    }
}
