//! loopback: bring `lo` up in the container (CNI_IFNAME is ignored).
//! containerd calls it for every pod with cniVersion 0.3.1.

use crate::cni::result::{CniResult, Interface, IpConfig};
use crate::cni::{Plugin, Request};
use crate::error::{Error, Result};
use crate::rtnl::Rtnl;

pub static PLUGIN: Plugin = Plugin {
    name: "loopback",
    min_version: "0.1.0",
    add,
    del,
    check,
    gc: crate::cni::skel::noop,
    status: crate::cni::skel::noop,
};

fn lo(rt: &mut Rtnl, ns: &str) -> Result<crate::rtnl::link::Link> {
    rt.link_by_name("lo")?.ok_or_else(|| Error::msg(format!("no lo interface in netns \"{ns}\"")))
}

fn add(req: &Request) -> Result<CniResult> {
    let ns = req.open_netns()?;
    let mut rt = Rtnl::in_netns(&ns)?;
    let l = lo(&mut rt, &req.netns)?;
    rt.set_up(l.index, "lo", true)?;
    if let Some(r) = req.prev_result()? {
        return Ok(r);
    }
    let addrs = rt.addrs(l.index, 0)?;
    if let Some(a) = addrs.iter().find(|a| !a.net.addr.is_loopback()) {
        return Err(Error::msg(format!("loopback interface found with non-loopback address {}", a.net)));
    }
    let mut r = CniResult {
        interfaces: vec![Interface {
            name: "lo".into(),
            mac: "00:00:00:00:00:00".into(),
            sandbox: req.netns.clone(),
            ..Default::default()
        }],
        ..Default::default()
    };
    for v4 in [true, false] {
        if let Some(a) = addrs.iter().find(|a| a.net.is_ipv4() == v4) {
            r.ips.push(IpConfig { address: a.net, gateway: None, interface: Some(0) });
        }
    }
    Ok(r)
}

fn del(req: &Request) -> Result<()> {
    let Some(ns) = req.netns_for_del()? else { return Ok(()) };
    let mut rt = Rtnl::in_netns(&ns)?;
    match rt.link_by_name("lo")? {
        Some(l) => rt.set_up(l.index, "lo", false),
        None => Ok(()),
    }
}

fn check(req: &Request) -> Result<()> {
    let ns = req.open_netns()?;
    let mut rt = Rtnl::in_netns(&ns)?;
    let l = lo(&mut rt, &req.netns)?;
    if !l.is_up() {
        return Err(Error::msg("loopback interface is down"));
    }
    Ok(())
}
