//! sbr (chained): source-based routing. Traffic from each of the interface's
//! addresses looks up its own routing table, which holds the interface's
//! routes and a default route via the gateway; so replies leave through the
//! interface they came in on even when another interface has the default route.

use super::iface;
use crate::cni::json::json_struct;
use crate::cni::{CniResult, Plugin, Request};
use crate::error::{Error, Result};
use crate::net::IpNet;
use crate::rtnl::route::{Route, RT_SCOPE_LINK, RT_TABLE_MAIN};
use crate::rtnl::rule::Rule;
use crate::rtnl::Rtnl;
use crate::sys::guarded::PrivateLock;
use std::net::IpAddr;

pub static PLUGIN: Plugin = Plugin {
    name: "sbr",
    min_version: "0.1.0",
    add,
    del,
    check: crate::cni::skel::noop,
    gc: crate::cni::skel::noop,
    status: crate::cni::skel::noop,
};

/// The first table number sbr takes, as the reference.
const FIRST_TABLE: u32 = 100;

json_struct! {
    struct Conf {
        /// Only add `from <ip> lookup <table>` rules to this existing table.
        table: Option<u32> = opt("table"),
        /// Gateways to use where prevResult gives none (one per family).
        gateways: Vec<IpAddr> = get("gateways"),
        add_source_hints: bool = get("addSourceHints"),
    }
}

/// The addresses of `ifname` in prevResult (an address without an interface index counts).
fn addresses<'a>(prev: &'a CniResult, ifname: &str) -> Vec<&'a crate::cni::result::IpConfig> {
    prev.ips
        .iter()
        .filter(|ip| {
            ip.interface.map(|i| prev.interfaces.get(i).map(|f| f.name == ifname).unwrap_or(true)).unwrap_or(true)
        })
        .collect()
}

fn host(ip: &IpAddr) -> IpNet {
    IpNet { addr: *ip, prefix: crate::net::max_prefix(ip) }
}

/// Serialize sbr calls: table numbers are picked by looking. Not a lock on
/// the namespace's nsfs inode: every process in the namespace can open
/// `/proc/self/ns/net` and hold that one forever. Node-wide (calls take
/// milliseconds), so no lock file is left behind per namespace.
fn lock_sbr() -> Result<PrivateLock> {
    PrivateLock::acquire("sbr", "sbr")
}

fn add(req: &Request) -> Result<CniResult> {
    let c: Conf = req.conf()?;
    let prev = req.prev_result()?.ok_or_else(|| Error::msg("This plugin must be called as chained plugin"))?;
    let ips = addresses(&prev, &req.ifname);
    if ips.is_empty() {
        return Err(Error::msg(format!("No IP addresses supplied on interface: {}", req.ifname)));
    }
    let v4 = c.gateways.iter().filter(|g| g.is_ipv4()).count();
    if v4 > 1 || c.gateways.len() - v4 > 1 {
        return Err(Error::config("gateways: at most one IPv4 and one IPv6 gateway"));
    }
    let ns = req.open_netns()?;
    let _lock = lock_sbr()?;
    let mut rt = Rtnl::in_netns(&ns)?;
    let link = rt.link_by_name(&req.ifname)?.ok_or_else(|| {
        Error::msg(format!("Cannot find network interface {} in netns \"{}\"", req.ifname, req.netns))
    })?;

    if let Some(table) = c.table {
        for ip in &ips {
            rt.add_rule(&host(&ip.address.addr), table)?;
        }
        return Ok(prev);
    }

    let rules = rt.rules()?;
    let mut routes = rt.routes(libc::AF_INET as u8)?;
    routes.extend(rt.routes(libc::AF_INET6 as u8)?);
    let used = |t: u32| rules.iter().any(|r| r.table == t) || routes.iter().any(|r| r.table == t);
    let mut table = FIRST_TABLE;
    let mine: Vec<Route> = routes.iter().filter(|r| r.oif == link.index && r.table == RT_TABLE_MAIN).cloned().collect();
    for ip in &ips {
        while used(table) {
            table += 1;
        }
        let v4 = ip.address.is_ipv4();
        rt.add_rule(&host(&ip.address.addr), table)?;
        let gw = ip.gateway.or_else(|| c.gateways.iter().copied().find(|g| g.is_ipv4() == v4));
        if let Some(gw) = gw {
            let any = IpNet { addr: crate::net::from_u128(&gw, 0), prefix: 0 };
            rt.replace_route(&Route { gw: Some(gw), oif: link.index, table, ..Default::default() }, &any, &req.ifname)?;
        }
        for r in mine.iter().filter(|r| r.dst.map(|d| d.is_ipv4() == v4).unwrap_or(false)) {
            let Some(dst) = r.dst else { continue };
            let copy = Route { table, ..r.clone() };
            rt.replace_route(&copy, &dst, &req.ifname)?;
        }
        table += 1;
    }
    // The routes now live in the per-address tables; take them out of main,
    // or, with addSourceHints, keep the link routes there with a source hint.
    for r in &mine {
        let Some(dst) = r.dst else { continue };
        let _ = rt.del_route(r, &dst, &req.ifname);
        if c.add_source_hints && r.gw.is_none() && r.scope == RT_SCOPE_LINK {
            if let Some(ip) = ips.iter().find(|i| i.address.is_ipv4() == dst.is_ipv4() && dst.contains(&i.address.addr))
            {
                let hinted = Route { src: Some(ip.address.addr), ..r.clone() };
                rt.replace_route(&hinted, &dst, &req.ifname)?;
            }
        }
    }
    Ok(prev)
}

/// DEL removes the rules whose source is one of the interface's addresses
/// (from the link, or from prevResult when the link is already gone), or
/// every rule of `table` when one was configured.
fn del(req: &Request) -> Result<()> {
    let c: Conf = req.conf()?;
    // A namespace that is gone took its rules with it.
    let Some(ns) = req.netns_for_del()? else { return Ok(()) };
    let _lock = lock_sbr()?;
    let mut rt = Rtnl::in_netns(&ns)?;
    let mut srcs: Vec<IpAddr> = Vec::new();
    if let Some(l) = rt.link_by_name(&req.ifname)? {
        srcs.extend(rt.addrs(l.index, 0)?.iter().map(|a| a.net.addr));
    }
    if let Some(prev) = req.prev_result().unwrap_or(None) {
        srcs.extend(addresses(&prev, &req.ifname).iter().map(|i| i.address.addr));
    }
    let doomed: Vec<Rule> = rt
        .rules()?
        .into_iter()
        .filter(|r| match c.table {
            Some(t) => r.table == t && r.src.map(|s| srcs.contains(&s.addr)).unwrap_or(false),
            None => r.src.map(|s| srcs.contains(&s.addr)).unwrap_or(false),
        })
        .collect();
    let mut errs = Vec::new();
    for r in &doomed {
        if let Err(e) = rt.del_rule(r) {
            if !e.is_not_found() {
                errs.push(e);
            }
        }
    }
    iface::join_errors(errs)
}
