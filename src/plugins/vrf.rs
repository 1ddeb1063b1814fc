//! vrf (chained): put the container interface into a VRF inside the
//! container (created on first use), so that its traffic uses the VRF's own
//! routing table. DEL takes the interface out and removes the VRF when it
//! holds nothing else.

use super::iface;
use crate::cni::json::json_struct;
use crate::cni::{CniResult, Plugin, Request};
use crate::error::{Error, Result};
use crate::net::IpNet;
use crate::rtnl::link::{Link, NewLink};
use crate::rtnl::route::{Route, RT_SCOPE_UNIVERSE, RT_TABLE_MAIN};
use crate::rtnl::Rtnl;

pub static PLUGIN: Plugin = Plugin {
    name: "vrf",
    min_version: "0.3.1",
    add,
    del,
    check,
    gc: crate::cni::skel::noop,
    status: crate::cni::skel::noop,
};

pub const IFLA_VRF_TABLE: u16 = 1;

json_struct! {
    struct Conf {
        vrfname: String = get("vrfname"),
        table: Option<u32> = opt("table"),
    }
}

fn load(req: &Request) -> Result<Conf> {
    let c: Conf = req.conf()?;
    if c.vrfname.is_empty() || c.vrfname.len() > 15 || c.vrfname.contains(['/', ' ', ':']) {
        return Err(Error::config(format!("invalid vrfname \"{}\": a VRF device name is required", c.vrfname)));
    }
    Ok(c)
}

/// Tables used by the VRFs already in the namespace.
fn vrf_tables(rt: &mut Rtnl) -> Result<Vec<(String, u32)>> {
    let mut out = Vec::new();
    for l in rt.links()?.into_iter().filter(|l| l.kind == "vrf") {
        out.push((l.name.clone(), l.vrf_table));
    }
    Ok(out)
}

fn ensure_vrf(rt: &mut Rtnl, c: &Conf) -> Result<Link> {
    let existing = vrf_tables(rt)?;
    if let Some(l) = rt.link_by_name(&c.vrfname)? {
        if l.kind != "vrf" {
            return Err(Error::msg(format!("\"{}\" already exists and is not a VRF", c.vrfname)));
        }
        if let Some(t) = c.table {
            if t != l.vrf_table {
                return Err(Error::msg(format!(
                    "VRF {} already exists with a different table {}",
                    c.vrfname, l.vrf_table
                )));
            }
        }
        return Ok(l);
    }
    let table = match c.table {
        Some(t) => t,
        // The lowest table no VRF here uses; 253-255 are the kernel's default, main and local.
        None => (1..).find(|t| !(253..=255).contains(t) && !existing.iter().any(|(_, x)| x == t)).unwrap_or(1000),
    };
    let tb = table.to_ne_bytes();
    let data: [(u16, &[u8]); 1] = [(IFLA_VRF_TABLE, &tb)];
    rt.create_link(&NewLink { name: &c.vrfname, kind: "vrf", up: true, data: &data, ..Default::default() })?;
    rt.link_by_name(&c.vrfname)?.ok_or_else(|| Error::msg(format!("VRF {} vanished", c.vrfname)))
}

fn add(req: &Request) -> Result<CniResult> {
    let c = load(req)?;
    let prev =
        req.prev_result()?.ok_or_else(|| Error::msg("missing prevResult: vrf must be called as a chained plugin"))?;
    let ns = req.open_netns()?;
    let mut rt = Rtnl::in_netns(&ns)?;
    let l =
        rt.link_by_name(&req.ifname)?.ok_or_else(|| Error::msg(format!("failed to find interface {}", req.ifname)))?;
    if l.master.is_some() {
        return Err(Error::msg(format!("interface {} already has a master", req.ifname)));
    }
    let vrf = ensure_vrf(&mut rt, &c)?;
    // Enslaving flushes the interface's IPv6 addresses (and moves its routes
    // to the VRF table): note what is there to put it back.
    let v6: Vec<IpNet> =
        rt.addrs(l.index, libc::AF_INET6 as u8)?.into_iter().map(|a| a.net).filter(|n| !is_link_local(n)).collect();
    let mut routes: Vec<Route> = rt.routes(libc::AF_INET as u8)?;
    routes.extend(rt.routes(libc::AF_INET6 as u8)?);
    let routes: Vec<Route> = routes
        .into_iter()
        .filter(|r| r.oif == l.index && r.table == RT_TABLE_MAIN && r.scope == RT_SCOPE_UNIVERSE)
        .collect();
    rt.set_master(l.index, &req.ifname, vrf.index)?;
    let now: Vec<IpNet> = rt.addrs(l.index, libc::AF_INET6 as u8)?.into_iter().map(|a| a.net).collect();
    for a in v6.iter().filter(|a| !now.contains(a)) {
        rt.add_addr(l.index, &req.ifname, a, true)?;
    }
    for r in &routes {
        let Some(dst) = r.dst else { continue };
        let moved = Route { table: vrf.vrf_table, ..r.clone() };
        match rt.add_route(&moved, &dst, &req.ifname) {
            Err(e) if !e.is_errno(libc::EEXIST) => return Err(e),
            _ => {}
        }
    }
    Ok(prev)
}

fn is_link_local(n: &IpNet) -> bool {
    matches!(n.addr, std::net::IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80)
}

fn del(req: &Request) -> Result<()> {
    let c = load(req)?;
    let Some(ns) = req.netns_for_del()? else { return Ok(()) };
    let mut rt = Rtnl::in_netns(&ns)?;
    let Some(vrf) = rt.link_by_name(&c.vrfname)? else { return Ok(()) };
    let mut errs = Vec::new();
    if let Some(l) = rt.link_by_name(&req.ifname)? {
        if l.master == vrf.index {
            if let Err(e) = rt.set_master(l.index, &req.ifname, crate::rtnl::IfIndex::NONE) {
                if !e.is_not_found() {
                    errs.push(e);
                }
            }
        }
    }
    let members = rt.links()?.iter().filter(|l| l.master == vrf.index).count();
    if members == 0 {
        if let Err(e) = rt.delete_link(vrf.index, &c.vrfname) {
            if !e.is_not_found() {
                errs.push(e);
            }
        }
    }
    iface::join_errors(errs)
}

fn check(req: &Request) -> Result<()> {
    let c = load(req)?;
    req.prev_result()?.ok_or_else(|| Error::msg("missing prevResult: vrf must be called as a chained plugin"))?;
    let ns = req.open_netns()?;
    let mut rt = Rtnl::in_netns(&ns)?;
    let vrf = rt
        .link_by_name(&c.vrfname)?
        .filter(|l| l.kind == "vrf")
        .ok_or_else(|| Error::msg(format!("VRF {} not found", c.vrfname)))?;
    if let Some(t) = c.table {
        if t != vrf.vrf_table {
            return Err(Error::msg(format!("VRF {} has table {}, configured {t}", c.vrfname, vrf.vrf_table)));
        }
    }
    let l =
        rt.link_by_name(&req.ifname)?.ok_or_else(|| Error::msg(format!("failed to find interface {}", req.ifname)))?;
    if l.master != vrf.index {
        return Err(Error::msg(format!("interface {} is not a member of VRF {}", req.ifname, c.vrfname)));
    }
    Ok(())
}
