//! ptp: a veth pair routed point to point. The container reaches everything,
//! its own subnet included, through the gateway, which lives as a /32 (/128)
//! on the host end; the node reaches the container by a host route.

use super::iface;
use crate::cni::config::{Dns, IpamRef};
use crate::cni::json::json_struct;
use crate::cni::result::Interface;
use crate::cni::{CniResult, Command, Plugin, Request};
use crate::error::{Error, Result, Rollback};
use crate::net::IpNet;
use crate::nft::masq;
use crate::rtnl::link::{Link, VethSpec};
use crate::rtnl::{route, IfIndex, Rtnl};
use crate::sys::netns::Netns;
use crate::sys::sysctl;

pub static PLUGIN: Plugin = Plugin { name: "ptp", min_version: "0.1.0", add, del, check, gc, status };

json_struct! {
    struct Conf {
        ip_masq: bool = get("ipMasq"),
        ip_masq_backend: Option<String> = opt("ipMasqBackend"),
        mtu: u32 = get("mtu"),
        ipam: IpamRef = get("ipam"),
        dns: Dns = get("dns"),
    }
}

fn load(req: &Request) -> Result<Conf> {
    let c: Conf = req.conf()?;
    iface::check_masq_backend(c.ip_masq_backend.as_deref())?;
    if c.ipam.plugin_type.is_empty() {
        return Err(Error::config("ptp requires an IPAM configuration (ipam.type)"));
    }
    Ok(c)
}

#[derive(Default)]
struct Undo {
    ipam: bool,
    host_veth: Option<(IfIndex, String)>,
    masq: bool,
}

fn add(req: &Request) -> Result<CniResult> {
    let c = load(req)?;
    let ns = req.open_netns()?;
    let mut host = Rtnl::here()?;
    let mut ctr = Rtnl::in_netns(&ns)?;
    let mut undo = Undo::default();
    let r = add_steps(req, &c, &ns, &mut host, &mut ctr, &mut undo);
    let mut rb = Rollback::default();
    if r.is_err() {
        if undo.masq {
            rb.note(masq::teardown(&req.name, &req.ifname, &req.container_id));
        }
        if let Some((i, n)) = undo.host_veth {
            rb.note(host.delete_link(i, &n));
        }
        if undo.ipam {
            rb.note(iface::ipam_del(&c.ipam.plugin_type, req));
        }
    }
    rb.finish(r)
}

fn add_steps(
    req: &Request,
    c: &Conf,
    ns: &Netns,
    host: &mut Rtnl,
    ctr: &mut Rtnl,
    undo: &mut Undo,
) -> Result<CniResult> {
    if ctr.link_by_name(&req.ifname)?.is_some() {
        return Err(Error::msg(format!("interface \"{}\" already exists in netns \"{}\"", req.ifname, req.netns)));
    }
    undo.ipam = true;
    let mut result = iface::ipam_add(&c.ipam.plugin_type, req)?;
    let mut gws = Vec::new();
    for ip in &result.ips {
        let gw = ip.gateway.ok_or_else(|| {
            Error::msg(format!("ptp: IPAM gave no gateway for {}; one is needed as the next hop", ip.address))
        })?;
        gws.push(gw);
    }
    if result.ips.iter().any(|i| i.address.is_ipv4()) {
        sysctl::ensure("net/ipv4/ip_forward", "1")?;
    }
    if result.ips.iter().any(|i| !i.address.is_ipv4()) {
        sysctl::ensure("net/ipv6/conf/all/forwarding", "1")?;
    }
    let (h, cv) = create_veth(host, ctr, ns, req, c.mtu, undo)?;
    for ip in &mut result.ips {
        ip.interface = Some(1);
    }
    result.interfaces = vec![
        Interface { name: h.name.clone(), mac: h.mac.to_string(), ..Default::default() },
        Interface { name: cv.name.clone(), mac: cv.mac.to_string(), sandbox: req.netns.clone(), ..Default::default() },
    ];
    // The node end routes for the container from the first packet: its
    // link-local address must not sit tentative for the DAD second or two.
    let _ = sysctl::write(&format!("net/ipv6/conf/{}/accept_dad", h.name), "0");
    host.set_up(h.index, &h.name, true)?;
    // DAD on a point-to-point veth could only ever find the node's own gateway
    // address, which IPAM never hands out: skip it rather than wait a second or two.
    let sysctls = [(format!("net/ipv6/conf/{}/accept_dad", req.ifname), "0")];
    iface::configure(
        ns,
        ctr,
        &req.ifname,
        &cv,
        &result,
        &iface::Configure { sysctls: &sysctls, settle_dad: false, nodad: true },
    )?;
    // Replace the connected-subnet route by "gateway/32 dev" + "subnet via gateway",
    // so that even neighbours in the subnet are reached through the gateway.
    for (ip, gw) in result.ips.iter().zip(&gws) {
        let subnet = ip.address.network();
        let host_len = crate::net::max_prefix(&ip.address.addr);
        let _ = ctr.del_route(&route::Route { oif: cv.index, ..Default::default() }, &subnet, &req.ifname);
        let to_gw = route::Route {
            oif: cv.index,
            src: Some(ip.address.addr),
            scope: route::RT_SCOPE_LINK,
            ..Default::default()
        };
        ctr.add_route(&to_gw, &IpNet { addr: *gw, prefix: host_len }, &req.ifname)?;
        let via = route::Route { oif: cv.index, gw: Some(*gw), src: Some(ip.address.addr), ..Default::default() };
        ctr.add_route(&via, &subnet, &req.ifname)?;
    }
    // Node side: the gateway address on the host end, a host route to the container.
    for (ip, gw) in result.ips.iter().zip(&gws) {
        let host_len = crate::net::max_prefix(&ip.address.addr);
        match host.add_addr(h.index, &h.name, &IpNet { addr: *gw, prefix: host_len }, !gw.is_ipv4()) {
            Err(e) if !e.is_errno(libc::EEXIST) => return Err(e),
            _ => {}
        }
        let to_ctr = route::Route { oif: h.index, ..Default::default() };
        match host.add_route(&to_ctr, &IpNet { addr: ip.address.addr, prefix: host_len }, &h.name) {
            Err(e) if !e.is_errno(libc::EEXIST) => return Err(e),
            _ => {}
        }
    }
    if c.ip_masq {
        undo.masq = true;
        let addrs: Vec<IpNet> = result.ips.iter().map(|i| i.address).collect();
        masq::setup(&req.name, &req.ifname, &req.container_id, &addrs)?;
    }
    if !c.dns.is_empty() {
        result.dns = c.dns.clone();
    }
    Ok(result)
}

fn create_veth(
    host: &mut Rtnl,
    ctr: &mut Rtnl,
    ns: &Netns,
    req: &Request,
    mtu: u32,
    undo: &mut Undo,
) -> Result<(Link, Link)> {
    for _ in 0..10 {
        let name = iface::random_veth_name();
        let spec =
            VethSpec { host: &name, master: IfIndex::NONE, mtu, peer: &req.ifname, peer_ns: ns.fd(), peer_mac: None };
        match host.create_veth(&spec) {
            Ok(()) => {
                let h = host
                    .link_by_name(&name)?
                    .ok_or_else(|| Error::msg(format!("failed to look up new veth {name}")))?;
                undo.host_veth = Some((h.index, name));
                let c = ctr
                    .link_by_name(&req.ifname)?
                    .ok_or_else(|| Error::msg(format!("failed to look up {}", req.ifname)))?;
                return Ok((h, c));
            }
            Err(e) if e.is_errno(libc::EEXIST) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::msg("failed to find a unique veth name"))
}

fn del(req: &Request) -> Result<()> {
    let c = load(req)?;
    let mut errs = Vec::new();
    if let Err(e) = iface::ipam_del(&c.ipam.plugin_type, req) {
        errs.push(e);
    }
    if let Err(e) = req.netns_for_del().and_then(|ns| iface::delete_in(ns.as_deref(), &req.ifname)) {
        errs.push(e);
    }
    if c.ip_masq {
        if let Err(e) = masq::teardown(&req.name, &req.ifname, &req.container_id) {
            errs.push(e);
        }
    }
    iface::join_errors(errs)
}

fn check(req: &Request) -> Result<()> {
    let c = load(req)?;
    super::vlink::check(req, &c.ipam.plugin_type, "veth")?;
    if c.ip_masq {
        let prev = req.prev_result()?.unwrap_or_default();
        let addrs: Vec<IpNet> = prev.ips.iter().map(|i| i.address).collect();
        masq::check(&req.name, &req.ifname, &req.container_id, &addrs)?;
    }
    Ok(())
}

fn status(req: &Request) -> Result<()> {
    let c = load(req)?;
    super::vlink::delegate_ipam(req, &c.ipam.plugin_type, Command::Status)
}

fn gc(req: &Request) -> Result<()> {
    let c = load(req)?;
    let mut errs = Vec::new();
    if let Err(e) = super::vlink::delegate_ipam(req, &c.ipam.plugin_type, Command::Gc) {
        errs.push(e);
    }
    if c.ip_masq {
        if let Err(e) = iface::valid_attachments(req).and_then(|v| masq::gc(&req.name, &v)) {
            errs.push(e);
        }
    }
    iface::join_errors(errs)
}
