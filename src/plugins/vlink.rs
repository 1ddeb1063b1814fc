//! The flow shared by plugins whose interface is one virtual link made on top
//! of a node device (macvlan, ipvlan, vlan) or on its own (dummy): create it
//! directly inside the container under a temporary name (a name that could
//! clash with a node interface is never used in the node), rename it to
//! CNI_IFNAME, then address it. Each plugin only says what link to make.

use super::iface;
use crate::cni::config::Dns;
use crate::cni::result::{CniResult, Interface};
use crate::cni::{Command, Request};
use crate::error::{Error, Result, Rollback};
use crate::rtnl::link::{Link, NewLink};
use crate::rtnl::Rtnl;
use crate::sys::netns::Netns;

/// What one plugin contributes to ADD.
pub struct Spec<'a> {
    /// Kind, MTU, MAC, kind-specific data; name and namespace are filled in here.
    pub link: NewLink<'a>,
    /// Where the parent device lives (and the link is created from): the node,
    /// or the container itself (`linkInContainer`).
    pub parent_in_container: bool,
    /// The IPAM plugin; empty for L2 only (or when `prev` supplies the addresses).
    pub ipam_type: &'a str,
    /// Addresses taken from prevResult instead of IPAM (ipvlan chained mode).
    pub prev: Option<CniResult>,
    pub dns: &'a Dns,
}

/// A temporary name for a link in the making: `tmp` + 8 random hex digits.
pub fn temp_name() -> String {
    let mut b = [0u8; 4];
    crate::sys::random_bytes(&mut b);
    format!("tmp{:02x}{:02x}{:02x}{:02x}", b[0], b[1], b[2], b[3])
}

pub fn add(req: &Request, s: Spec) -> Result<CniResult> {
    let ns = req.open_netns()?;
    let mut ctr = Rtnl::in_netns(&ns)?;
    if ctr.link_by_name(&req.ifname)?.is_some() {
        return Err(Error::msg(format!("interface \"{}\" already exists in netns \"{}\"", req.ifname, req.netns)));
    }
    let tmp = temp_name();
    let Spec { link, parent_in_container, ipam_type, prev, dns } = s;
    if parent_in_container {
        ctr.create_link(&NewLink { name: &tmp, ..link })?;
    } else {
        Rtnl::here()?.create_link(&NewLink { name: &tmp, netns: Some(ns.fd()), ..link })?;
    }
    let created = ctr.link_by_name(&tmp)?.ok_or_else(|| Error::msg(format!("failed to look up new link {tmp}")))?;
    let mut ipam_used = false;
    let r = finish(req, &ns, &mut ctr, &created, &tmp, ipam_type, prev, dns, &mut ipam_used);
    let mut rb = Rollback::default();
    if r.is_err() {
        // Remove the link under whichever name it has now, and the reservation.
        rb.note(ctr.delete_link(created.index, &req.ifname));
        if ipam_used {
            rb.note(iface::ipam_del(ipam_type, req));
        }
    }
    rb.finish(r)
}

#[allow(clippy::too_many_arguments)]
fn finish(
    req: &Request,
    ns: &Netns,
    ctr: &mut Rtnl,
    l: &Link,
    tmp: &str,
    ipam_type: &str,
    prev: Option<CniResult>,
    dns: &Dns,
    ipam_used: &mut bool,
) -> Result<CniResult> {
    ctr.rename(l.index, tmp, &req.ifname)?;
    let link = ctr.link_by_index(l.index)?.ok_or_else(|| Error::msg(format!("{} vanished", req.ifname)))?;
    let mut result = CniResult {
        interfaces: vec![Interface {
            name: req.ifname.clone(),
            mac: link.mac.to_string(),
            sandbox: req.netns.clone(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let ifn = &req.ifname;
    let sysctls =
        [(format!("net/ipv4/conf/{ifn}/arp_notify"), "1"), (format!("net/ipv6/conf/{ifn}/ndisc_notify"), "1")];
    let how = iface::Configure { sysctls: &sysctls, settle_dad: true, nodad: false };
    iface::address_only_interface(req, ns, ctr, &link, &mut result, ipam_type, prev, &how, ipam_used)?;
    if !dns.is_empty() {
        result.dns = dns.clone();
    }
    Ok(result)
}

/// DEL: release the address, delete the link; both tolerate being gone.
pub fn del(req: &Request, ipam_type: &str) -> Result<()> {
    let mut errs = Vec::new();
    if !ipam_type.is_empty() {
        if let Err(e) = iface::ipam_del(ipam_type, req) {
            errs.push(e);
        }
    }
    if let Err(e) = req.netns_for_del().and_then(|ns| iface::delete_in(ns.as_deref(), &req.ifname)) {
        errs.push(e);
    }
    iface::join_errors(errs)
}

/// CHECK: IPAM's check, then the link is there, of `kind`, and carries the
/// prevResult addresses and routes. Returns the link for kind-specific checks.
pub fn check(req: &Request, ipam_type: &str, kind: &str) -> Result<(Link, Rtnl)> {
    let (l, mut ctr, prev) = iface::check_start(req, ipam_type)?;
    if l.kind != kind {
        return Err(Error::msg(format!("Error: Container interface {} not of type {kind}", req.ifname)));
    }
    if let Some(i) = prev.interfaces.iter().find(|i| i.name == req.ifname && !i.mac.is_empty()) {
        if i.mac != l.mac.to_string() {
            return Err(Error::msg(format!(
                "Interface {} Mac {} doesn't match container Mac: {}",
                req.ifname, i.mac, l.mac
            )));
        }
    }
    iface::check_addrs_routes(&mut ctr, &req.netns, &req.ifname, &l, &prev)?;
    Ok((l, ctr))
}

/// The device a default route leaves through, in `rt`'s namespace: where
/// macvlan and ipvlan attach when no master is configured.
pub fn default_route_link(rt: &mut Rtnl) -> Result<String> {
    let routes = rt.routes(libc::AF_INET as u8)?;
    let oif = routes
        .iter()
        .find(|r| r.is_default() && r.table == crate::rtnl::route::RT_TABLE_MAIN && r.oif.is_some())
        .map(|r| r.oif)
        .ok_or_else(|| Error::config("no master given and no default route to find one by"))?;
    Ok(rt.link_by_index(oif)?.map(|l| l.name).unwrap_or_default())
}

/// Look up the parent device (and check an MTU against it).
pub fn parent(rt: &mut Rtnl, name: &str, mtu: u32) -> Result<Link> {
    let m = rt
        .link_by_name(name)?
        .ok_or_else(|| Error::config(format!("failed to lookup master \"{name}\": no such interface")))?;
    if mtu > m.mtu {
        return Err(Error::config(format!("invalid MTU {mtu}, must be [0, master MTU({})]", m.mtu)));
    }
    Ok(m)
}

/// Pass `cmd` on to the IPAM plugin, if there is one.
pub fn delegate_ipam(req: &Request, ipam_type: &str, cmd: Command) -> Result<()> {
    if ipam_type.is_empty() {
        return Ok(());
    }
    crate::cni::delegate::delegate(ipam_type, cmd, req).map(|_| ())
}

/// The `ipam.type` of any interface plugin's config.
fn ipam_type(req: &Request) -> Result<String> {
    Ok(req.conf_with(|o| o.get::<crate::cni::config::IpamRef>("ipam"))?.plugin_type)
}

/// STATUS of an interface plugin: whatever its IPAM says (the reference's rule).
pub fn status(req: &Request) -> Result<()> {
    delegate_ipam(req, &ipam_type(req)?, Command::Status)
}

/// GC of an interface plugin: its links go with their namespaces; IPAM collects the addresses.
pub fn gc(req: &Request) -> Result<()> {
    delegate_ipam(req, &ipam_type(req)?, Command::Gc)
}
