//! bridge: a Linux bridge on the node, a veth pair per container (one end in
//! the container under CNI_IFNAME, the other enslaved to the bridge), addresses
//! from the IPAM plugin, the gateway on the bridge, and optional masquerade.
//!
//! ADD, in the order the kernel sees it: `ensure_bridge`, `pin_bridge_mac`,
//! `create_veth_pair`, `configure_port`, `ipam ADD`, `configure_container`,
//! `set_gateways`, `masquerade`, `wait_port_forwarding`, then the result.
//! Everything ADD creates is recorded in [`Undo`] and removed again if a later
//! step fails, so a failed ADD leaves nothing behind.

use super::iface;
use crate::cni::args::CniArgs;
use crate::cni::config::{Dns, IpamRef};
use crate::cni::delegate::delegate;
use crate::cni::json::json_struct;
use crate::cni::result::{CniResult, Interface, Route};
use crate::cni::{Command, Plugin, Request};
use crate::error::{Error, Result, Rollback};
use crate::net::{IpNet, Mac};
use crate::nft::{masq, spoofchk};
use crate::rtnl::link::{Link, VethSpec, IPV4_DEVCONF_ARP_NOTIFY};
use crate::rtnl::{IfIndex, Rtnl};
use crate::sys::netns::Netns;
use crate::sys::sysctl;
use std::net::IpAddr;

pub static PLUGIN: Plugin = Plugin { name: "bridge", min_version: "0.1.0", add, del, check, gc, status };

json_struct! {
    #[derive(Default)]
    struct Conf {
        bridge: String = get_or("bridge", "cni0".into()),
        is_gateway: bool = get("isGateway"),
        is_default_gateway: bool = get("isDefaultGateway"),
        force_address: bool = get("forceAddress"),
        ip_masq: bool = get("ipMasq"),
        ip_masq_backend: Option<String> = opt("ipMasqBackend"),
        mtu: u32 = get("mtu"),
        hairpin_mode: bool = get("hairpinMode"),
        promisc_mode: bool = get("promiscMode"),
        vlan: i32 = get("vlan"),
        vlan_trunk: Vec<Trunk> = get("vlanTrunk"),
        preserve_default_vlan: bool = get("preserveDefaultVlan"),
        enable_dad: bool = get("enabledad"),
        macspoofchk: bool = get("macspoofchk"),
        disable_container_interface: bool = get("disableContainerInterface"),
        port_isolation: bool = get("portIsolation"),
        ipam: IpamRef = get("ipam"),
        dns: Dns = get("dns"),
        args: crate::cni::config::Args = get("args"),
        runtime_config: RuntimeConfig = get("runtimeConfig"),
    }
}

json_struct! {
    #[derive(Default)]
    struct RuntimeConfig {
        mac: Option<String> = opt("mac"),
    }
}

json_struct! {
    #[derive(Default)]
    struct Trunk {
        min_id: Option<i32> = opt("minID"),
        max_id: Option<i32> = opt("maxID"),
        id: Option<i32> = opt("id"),
    }
}

/// The configuration after validation, with derived values.
struct Net {
    c: Conf,
    /// Tagged VLAN ids from `vlanTrunk`, sorted and without duplicates.
    trunk: Vec<u16>,
    mac: Option<Mac>,
    l3: bool,
}

fn load(req: &Request) -> Result<Net> {
    let mut c: Conf = req.conf()?;
    let cargs = CniArgs::parse(&req.args, &["MAC"])?;
    if c.vlan < 0 || c.vlan > 4094 {
        return Err(Error::config(format!("invalid VLAN ID {} (must be between 0 and 4094)", c.vlan)));
    }
    let trunk = collect_trunk(&c.vlan_trunk).map_err(|m| Error::config(format!("failed to parse vlan trunks: {m}")))?;
    iface::check_masq_backend(c.ip_masq_backend.as_deref())?;
    // Later sources win, as in the reference: CNI_ARGS, args.cni.mac, runtimeConfig.mac.
    let mac_src = [cargs.get("MAC").map(str::to_string), c.args.cni.mac.clone(), c.runtime_config.mac.clone()]
        .into_iter()
        .flatten()
        .rfind(|m| !m.is_empty());
    let mac = match mac_src {
        Some(m) => Some(m.parse::<Mac>().map_err(Error::config)?),
        None => None,
    };
    let l3 = !c.ipam.plugin_type.is_empty();
    if l3 && c.disable_container_interface {
        return Err(Error::config("cannot use IPAM when DisableContainerInterface flag is set"));
    }
    if c.is_default_gateway {
        c.is_gateway = true;
    }
    if c.hairpin_mode && c.promisc_mode {
        return Err(Error::config("cannot set hairpin mode and promiscuous mode at the same time"));
    }
    if c.bridge.is_empty() || c.bridge.len() > 15 || c.bridge.contains(['/', ' ', ':']) {
        return Err(Error::config(format!("invalid bridge name \"{}\"", c.bridge)));
    }
    Ok(Net { c, trunk, mac, l3 })
}

fn collect_trunk(items: &[Trunk]) -> std::result::Result<Vec<u16>, &'static str> {
    let mut v = Vec::new();
    let ok = |x: i32| (1..=4094).contains(&x);
    for t in items {
        match (t.min_id, t.max_id) {
            (Some(lo), Some(hi)) => {
                if !ok(lo) {
                    return Err("incorrect trunk minID parameter");
                }
                if !ok(hi) {
                    return Err("incorrect trunk maxID parameter");
                }
                if hi < lo {
                    return Err("minID is greater than maxID in trunk parameter");
                }
                v.extend(lo as u16..=hi as u16);
            }
            (None, Some(_)) => return Err("minID and maxID should be configured simultaneously, minID is missing"),
            (Some(_), None) => return Err("minID and maxID should be configured simultaneously, maxID is missing"),
            (None, None) => {}
        }
        if let Some(id) = t.id {
            if !ok(id) {
                return Err("incorrect trunk id parameter");
            }
            v.push(id as u16);
        }
    }
    crate::sort::sort(&mut v);
    v.dedup();
    Ok(v)
}

/// What this ADD created, removed in reverse if a later step fails.
#[derive(Default)]
struct Undo {
    bridge: Option<(IfIndex, String)>,
    host_veth: Option<(IfIndex, String)>,
    vlan_gw: Option<(IfIndex, String)>,
    ipam: bool,
    spoofchk: bool,
    masq: bool,
}

fn add(req: &Request) -> Result<CniResult> {
    let n = load(req)?;
    let ns = req.open_netns().map_err(|e| e.context("bridge"))?;
    let mut host = Rtnl::here()?;
    let mut ctr = Rtnl::in_netns(&ns)?;
    let mut undo = Undo::default();
    match add_steps(req, &n, &ns, &mut host, &mut ctr, &mut undo) {
        Ok(r) => Ok(r),
        Err(e) => Err(rollback(req, &n, &mut host, undo).into_error(e)),
    }
}

fn add_steps(
    req: &Request,
    n: &Net,
    ns: &Netns,
    host: &mut Rtnl,
    ctr: &mut Rtnl,
    undo: &mut Undo,
) -> Result<CniResult> {
    let c = &n.c;
    let (br, mac_set) = ensure_bridge(host, n, undo)?;
    // Pinned before its new port comes, the bridge's MAC cannot follow it.
    let br_mac = pin_bridge_mac(host, &br, mac_set)?;
    let (hveth, cveth) = create_veth_pair(host, ctr, ns, req, n, br.index, undo)?;
    configure_port(host, n, &hveth)?;
    if c.macspoofchk {
        spoofchk::setup(&req.container_id, &req.ifname, &hveth.name, cveth.mac)?;
        undo.spoofchk = true;
    }
    let mut result = CniResult {
        interfaces: vec![
            Interface { name: br.name.clone(), mac: br_mac.to_string(), ..Default::default() },
            Interface { name: hveth.name.clone(), mac: hveth.mac.to_string(), ..Default::default() },
            Interface {
                name: cveth.name.clone(),
                mac: cveth.mac.to_string(),
                sandbox: req.netns.clone(),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    if n.l3 {
        undo.ipam = true;
        let ipam = iface::ipam_add(&c.ipam.plugin_type, req)?;
        result.ips = ipam.ips;
        result.routes = ipam.routes;
        result.dns = ipam.dns;
        let gws = calc_gateways(&mut result, c);
        let ifn = &req.ifname;
        let dad = if c.enable_dad { "1" } else { "0" };
        // arp_notify before the link goes up (it then announces itself), over
        // netlink; accept_dad has no netlink setter and stays a sysctl.
        let _ = ctr.set_inet_conf(cveth.index, ifn, &[(IPV4_DEVCONF_ARP_NOTIFY, 1)]);
        let mut sysctls = vec![(format!("net/ipv6/conf/{ifn}/accept_dad"), dad)];
        if c.enable_dad {
            sysctls.push((format!("net/ipv6/conf/{ifn}/enhanced_dad"), "1"));
        }
        iface::configure(
            ns,
            ctr,
            ifn,
            &cveth,
            &result,
            &iface::Configure { sysctls: &sysctls, settle_dad: c.enable_dad, nodad: !c.enable_dad },
        )?;
        if c.is_gateway {
            set_gateways(host, req, n, &br, &gws, &mut result, undo)?;
        }
        if c.ip_masq {
            let addrs: Vec<IpNet> = result.ips.iter().map(|i| i.address).collect();
            undo.masq = true;
            masq::setup(&req.name, &req.ifname, &req.container_id, &addrs)?;
        }
    } else if !c.disable_container_interface {
        ctr.set_up(cveth.index, &cveth.name, true)?;
    }
    if !c.disable_container_interface {
        host.wait_oper_up(hveth.index, &hveth.name, 5000)?;
    }
    if !c.dns.is_empty() {
        result.dns = c.dns.clone();
    }
    Ok(result)
}

/// Find or create the bridge, make sure it is one, and bring it up; true
/// when this call created it (with a MAC of its own).
fn ensure_bridge(host: &mut Rtnl, n: &Net, undo: &mut Undo) -> Result<(Link, bool)> {
    let c = &n.c;
    let name = &c.bridge;
    let mut br = host.link_by_name(name)?;
    let mut created = false;
    if br.is_none() {
        let filtering = c.vlan != 0 || !n.trunk.is_empty();
        // Created with a MAC of its own, the bridge keeps it: pinned from the start.
        created = match host.create_bridge_with_mac(name, c.mtu, filtering, Some(Mac::random_local())) {
            Ok(()) => true,
            Err(e) if e.is_errno(libc::EEXIST) => false, // another ADD created it meanwhile
            Err(e) => return Err(e),
        };
        br = host.link_by_name(name)?;
        if let Some(b) = &br {
            undo.bridge = Some((b.index, name.clone()));
        }
    }
    let br = br.ok_or_else(|| Error::msg(format!("bridge \"{name}\" vanished while being set up")))?;
    if br.kind != "bridge" {
        return Err(Error::msg(format!("\"{name}\" already exists but is not a bridge")));
    }
    if c.promisc_mode && br.flags & crate::rtnl::link::IFF_PROMISC == 0 {
        host.set_promisc(br.index, name, true)?;
    }
    // We own the routes of this interface: router advertisements must not
    // add any. (The lookup above read it; None: the bridge has no IPv6.)
    if br.accept_ra != Some(0) {
        let _ = sysctl::write(&format!("net/ipv6/conf/{name}/accept_ra"), "0");
    }
    if !br.is_up() {
        host.set_up(br.index, name, true)?;
    }
    Ok((br, created))
}

/// One request creates both ends, each in its namespace under its final
/// name, the host end already on the bridge. A name collision on the host
/// side (EEXIST) is retried with a new random name.
fn create_veth_pair(
    host: &mut Rtnl,
    ctr: &mut Rtnl,
    ns: &Netns,
    req: &Request,
    n: &Net,
    master: IfIndex,
    undo: &mut Undo,
) -> Result<(Link, Link)> {
    // A taken container name fails the request with EEXIST, as a taken host
    // name does; only then is it worth a lookup to tell the two apart.
    let taken = |ctr: &mut Rtnl| -> Result<bool> { Ok(ctr.link_by_name(&req.ifname)?.is_some()) };
    let mut last = None;
    for _ in 0..10 {
        let name = iface::random_veth_name();
        let spec = VethSpec { host: &name, master, mtu: n.c.mtu, peer: &req.ifname, peer_ns: ns.fd(), peer_mac: n.mac };
        match host.create_veth(&spec) {
            Ok(()) => {
                let h = host
                    .link_by_name(&name)?
                    .ok_or_else(|| Error::msg(format!("failed to look up new veth {name}")))?;
                undo.host_veth = Some((h.index, name.clone()));
                let c = ctr.link_by_name(&req.ifname)?.ok_or_else(|| {
                    Error::msg(format!("failed to look up {} in netns \"{}\"", req.ifname, req.netns))
                })?;
                return Ok((h, c));
            }
            Err(e) if e.is_errno(libc::EEXIST) && taken(ctr)? => {
                return Err(Error::msg(format!(
                    "container veth name \"{}\" already exists in netns \"{}\"",
                    req.ifname, req.netns
                )));
            }
            Err(e) if e.is_errno(libc::EEXIST) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last
        .unwrap_or_else(|| Error::msg("failed to find a unique veth name"))
        .context("failed to find a unique veth name"))
}

/// Bridge-port settings of the host end: hairpin, isolation, VLANs, then up.
fn configure_port(host: &mut Rtnl, n: &Net, h: &Link) -> Result<()> {
    let c = &n.c;
    if c.hairpin_mode || c.port_isolation {
        host.set_brport(h.index, &h.name, c.hairpin_mode, c.port_isolation)?;
    }
    set_port_vlans(host, h, c.vlan as u16, &n.trunk, c.preserve_default_vlan)?;
    // A new port: accept_ra is at its default (1 on most nodes), so write without reading first.
    let _ = sysctl::write(&format!("net/ipv6/conf/{}/accept_ra", h.name), "0");
    host.set_up(h.index, &h.name, true)
}

/// Access VLAN (pvid, untagged) and trunk VLANs (tagged) on a bridge port;
/// unless asked to keep them, the port's existing VLANs (default 1) go first.
fn set_port_vlans(host: &mut Rtnl, h: &Link, access: u16, trunk: &[u16], preserve: bool) -> Result<()> {
    if access == 0 && trunk.is_empty() {
        return Ok(());
    }
    if !preserve {
        for (_, vid) in host.bridge_vlans(h.index)? {
            host.bridge_vlan(false, h.index, &h.name, vid, vid, false, false)?;
        }
    }
    if access != 0 {
        host.bridge_vlan(true, h.index, &h.name, access, access, true, true)?;
    }
    for &v in trunk {
        host.bridge_vlan(true, h.index, &h.name, v, v, false, false)?;
    }
    Ok(())
}

/// Gateway per family: IPAM's, else (with isGateway) the subnet's first host;
/// with isDefaultGateway, a default route via it unless IPAM gave one.
/// Returns the gateway addresses with their subnet prefix, for the bridge.
fn calc_gateways(result: &mut CniResult, c: &Conf) -> Vec<IpNet> {
    let mut gws: Vec<IpNet> = Vec::new();
    let mut default_done = [false, false];
    for i in 0..result.ips.len() {
        let ip = &mut result.ips[i];
        ip.interface = Some(2);
        if ip.gateway.is_none() && c.is_gateway {
            ip.gateway = Some(ip.address.nth(1));
        }
        let Some(gw) = ip.gateway else { continue };
        let fam = usize::from(!gw.is_ipv4());
        let gw_net = IpNet { addr: gw, prefix: ip.address.prefix };
        if !gws.contains(&gw_net) {
            gws.push(gw_net);
        }
        if c.is_default_gateway && !default_done[fam] {
            let any = if gw.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
            let dst: IpNet = any.parse().unwrap_or(IpNet { addr: gw, prefix: 0 });
            let have = result.routes.iter().any(|r| r.gw.is_some() && r.dst == dst);
            if !have {
                result.routes.push(Route::new(dst, Some(gw)));
            }
            default_done[fam] = true;
        }
    }
    gws
}

/// Put each gateway address on the bridge (or, with an access VLAN, on a
/// `<bridge>.<vlan>` veth in that VLAN) and turn forwarding on.
fn set_gateways(
    host: &mut Rtnl,
    req: &Request,
    n: &Net,
    br: &Link,
    gws: &[IpNet],
    result: &mut CniResult,
    undo: &mut Undo,
) -> Result<()> {
    let c = &n.c;
    let target = if c.vlan != 0 {
        let l = ensure_vlan_interface(host, req, n, br, undo)?;
        result.interfaces.push(Interface { name: l.name.clone(), mac: l.mac.to_string(), ..Default::default() });
        l
    } else {
        br.clone()
    };
    for gw in gws {
        ensure_addr(host, &target, gw, c.force_address)?;
    }
    if gws.iter().any(|g| g.is_ipv4()) {
        ensure_forwarding(host, libc::AF_INET as u8, "net/ipv4/ip_forward")?;
    }
    if gws.iter().any(|g| !g.is_ipv4()) {
        ensure_forwarding(host, libc::AF_INET6 as u8, "net/ipv6/conf/all/forwarding")?;
    }
    Ok(())
}

/// Turn forwarding on unless it is: asked over netlink (the socket is
/// open; opening the sysctl file walks /proc/sys, slower), written through
/// the sysctl `key` (which also switches it on for every interface).
fn ensure_forwarding(host: &mut Rtnl, family: u8, key: &str) -> Result<()> {
    match host.forwarding(family) {
        Ok(Some(true)) => Ok(()),
        Ok(Some(false)) => sysctl::write(key, "1"),
        _ => sysctl::ensure(key, "1"),
    }
}

/// The gateway interface for an access VLAN: a veth whose named end stays on
/// the node and whose other end is a bridge port in that VLAN.
fn ensure_vlan_interface(host: &mut Rtnl, _req: &Request, n: &Net, br: &Link, undo: &mut Undo) -> Result<Link> {
    let name = format!("{}.{}", br.name, n.c.vlan);
    if let Some(l) = host.link_by_name(&name)? {
        return Ok(l);
    }
    let here = Netns::current()?;
    let port = iface::random_veth_name();
    // The bridge-side end is the "host" end of the spec; the named end is its peer, also here.
    let spec = VethSpec { host: &port, master: br.index, mtu: br.mtu, peer: &name, peer_ns: here.fd(), peer_mac: None };
    host.create_veth(&spec).map_err(|e| e.context(format_args!("failed to create vlan gateway \"{name}\"")))?;
    let p = host.link_by_name(&port)?.ok_or_else(|| Error::msg(format!("failed to look up {port}")))?;
    undo.vlan_gw = Some((p.index, port.clone()));
    set_port_vlans(host, &p, n.c.vlan as u16, &[], n.c.preserve_default_vlan)?;
    host.set_up(p.index, &port, true)?;
    let l = host.link_by_name(&name)?.ok_or_else(|| Error::msg(format!("failed to look up {name}")))?;
    host.set_up(l.index, &name, true)?;
    Ok(l)
}

/// Add `gw` to `dev` unless present. Another IPv4 address, or an overlapping
/// IPv6 one, is an error unless forceAddress replaces it (reference semantics).
fn ensure_addr(host: &mut Rtnl, dev: &Link, gw: &IpNet, force: bool) -> Result<()> {
    let fam = crate::rtnl::family(&gw.addr);
    for a in host.addrs(dev.index, fam)? {
        if a.net == *gw {
            return Ok(());
        }
        let clash = gw.is_ipv4() || a.net.contains(&gw.addr) || gw.contains(&a.net.addr);
        if clash && !is_link_local(&a.net.addr) {
            if !force {
                return Err(Error::msg(format!("\"{}\" already has an IP address different from {gw}", dev.name)));
            }
            host.del_addr(dev.index, &dev.name, &a.net)?;
        }
    }
    match host.add_addr(dev.index, &dev.name, gw, !gw.is_ipv4()) {
        Err(e) if !e.is_errno(libc::EEXIST) => {
            Err(e.context(format_args!("could not add IP address to \"{}\"", dev.name)))
        }
        _ => Ok(()),
    }
}

/// IPv6 link-local (fe80::/10): the kernel's own address on every bridge, never a clash.
fn is_link_local(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80)
}

/// Fix the bridge's MAC so it stops following its lowest-numbered port (which
/// changes as pods come and go and disrupts ARP caches); a zero MAC, which the
/// kernel shows once the last port left, is replaced by a random local one.
/// Done before the new port is added, with the MAC `ensure_bridge` read; a
/// bridge this ADD created has its own MAC from the start (`created`). The
/// kernel does not say whether a bridge's MAC was set, so a bridge found
/// (made by an older cnibox, the reference plugin or by hand) is pinned again.
fn pin_bridge_mac(host: &mut Rtnl, br: &Link, created: bool) -> Result<Mac> {
    if created && !br.mac.is_zero() {
        return Ok(br.mac);
    }
    let mac = if br.mac.is_zero() { Mac::random_local() } else { br.mac };
    host.set_mac(br.index, &br.name, mac)?;
    Ok(mac)
}

fn rollback(req: &Request, n: &Net, host: &mut Rtnl, undo: Undo) -> Rollback {
    let mut rb = Rollback::default();
    if undo.masq {
        rb.note(masq::teardown(&req.name, &req.ifname, &req.container_id));
    }
    if undo.ipam {
        rb.note(delegate(&n.c.ipam.plugin_type, Command::Del, req));
    }
    if undo.spoofchk {
        rb.note(spoofchk::teardown(&req.container_id, &req.ifname));
    }
    // Deleting the host end also removes the container end.
    for (index, name) in [undo.host_veth, undo.vlan_gw].into_iter().flatten() {
        rb.note(host.delete_link(index, &name));
    }
    // A bridge this ADD created goes too, unless another ADD attached a port meanwhile.
    if let Some((index, name)) = undo.bridge {
        let ports = host.links().map(|ls| ls.iter().any(|l| l.master == index)).unwrap_or(true);
        if !ports {
            rb.note(host.delete_link(index, &name));
        }
    }
    rb
}

fn del(req: &Request) -> Result<()> {
    let n = load(req)?;
    let mut errs: Vec<Error> = Vec::new();
    // A namespace that is gone took its veth (and so the host end) with it.
    if let Err(e) = req.netns_for_del().and_then(|ns| iface::delete_in(ns.as_deref(), &req.ifname)) {
        errs.push(e);
    }
    if n.l3 {
        if let Err(e) = delegate(&n.c.ipam.plugin_type, Command::Del, req) {
            errs.push(e);
        }
    }
    if n.c.macspoofchk {
        if let Err(e) = spoofchk::teardown(&req.container_id, &req.ifname) {
            errs.push(e);
        }
    }
    // Keyed by (network, ifname, container): needs neither the addresses nor the netns.
    if n.c.ip_masq {
        if let Err(e) = masq::teardown(&req.name, &req.ifname, &req.container_id) {
            errs.push(e);
        }
    }
    iface::join_errors(errs)
}

fn check(req: &Request) -> Result<()> {
    let n = load(req)?;
    let c = &n.c;
    let ns = req.open_netns()?;
    if n.l3 {
        delegate(&c.ipam.plugin_type, Command::Check, req)?;
    }
    let prev = req.prev_result()?.ok_or_else(|| Error::msg("Required prevResult missing"))?;
    let mut host = Rtnl::here()?;
    let mut ctr = Rtnl::in_netns(&ns)?;

    let br_if = prev
        .interfaces
        .iter()
        .find(|i| i.name == c.bridge && i.sandbox.is_empty())
        .ok_or_else(|| Error::msg(format!("bridge {} not found in prevResult", c.bridge)))?;
    let br = host
        .link_by_name(&br_if.name)?
        .ok_or_else(|| Error::msg(format!("Interface name {} not found", br_if.name)))?;
    if br.kind != "bridge" {
        return Err(Error::msg(format!("Interface {} does not have link type of bridge", br.name)));
    }
    if !br_if.mac.is_empty() && br_if.mac != br.mac.to_string() {
        return Err(Error::msg(format!("Bridge interface {} Mac doesn't match: {}", br.name, br_if.mac)));
    }
    let promisc = br.flags & crate::rtnl::link::IFF_PROMISC != 0;
    if promisc != c.promisc_mode {
        return Err(Error::msg(format!(
            "Bridge interface {} configured Promisc Mode {} doesn't match current state: {}",
            br.name, c.promisc_mode, promisc
        )));
    }

    let ct_if = prev
        .interfaces
        .iter()
        .find(|i| i.name == req.ifname && i.sandbox == req.netns)
        .ok_or_else(|| Error::msg(format!("container interface {} not found in prevResult", req.ifname)))?;
    let ct =
        ctr.link_by_name(&ct_if.name)?.ok_or_else(|| Error::msg(format!("Interface name {} not found", ct_if.name)))?;
    if ct.kind != "veth" {
        return Err(Error::msg(format!("Error: Container interface {} not of type veth", ct.name)));
    }
    if !ct_if.mac.is_empty() && ct_if.mac != ct.mac.to_string() {
        return Err(Error::msg(format!(
            "Interface {} Mac {} doesn't match container Mac: {}",
            ct.name, ct_if.mac, ct.mac
        )));
    }

    // The host end: a non-sandbox veth in prevResult that is the container end's peer and a port of the bridge.
    let mut found = None;
    for i in prev.interfaces.iter().filter(|i| i.sandbox.is_empty() && i.name != c.bridge) {
        let Some(h) = host.link_by_name(&i.name)? else { continue };
        if h.kind == "veth" && h.index == ct.link && h.master == br.index {
            if !i.mac.is_empty() && i.mac != h.mac.to_string() {
                return Err(Error::msg(format!("Interface {} Mac doesn't match: {} not found", h.name, i.mac)));
            }
            found = Some(h);
        }
    }
    let hveth = found.ok_or_else(|| {
        Error::msg(format!("CNI veth peer of {} not found on bridge {} (or not in prevResult)", req.ifname, c.bridge))
    })?;

    iface::check_addrs_routes(&mut ctr, &req.netns, &req.ifname, &ct, &prev)?;
    if c.macspoofchk {
        spoofchk::check(&req.container_id, &req.ifname, &hveth.name, ct.mac)?;
    }
    if n.l3 && c.ip_masq {
        let addrs: Vec<IpNet> = prev.ips.iter().map(|i| i.address).collect();
        masq::check(&req.name, &req.ifname, &req.container_id, &addrs)?;
    }
    Ok(())
}

fn status(req: &Request) -> Result<()> {
    let n = load(req)?;
    if n.l3 {
        delegate(&n.c.ipam.plugin_type, Command::Status, req)?;
    }
    Ok(())
}

/// GC: IPAM releases stale reservations; masquerade rules of attachments
/// not in the valid set go too (the reference has the helper but never calls it).
fn gc(req: &Request) -> Result<()> {
    let n = load(req)?;
    let mut errs = Vec::new();
    if n.l3 {
        if let Err(e) = delegate(&n.c.ipam.plugin_type, Command::Gc, req) {
            errs.push(e);
        }
    }
    if n.c.ip_masq {
        match iface::valid_attachments(req) {
            Ok(valid) => {
                if let Err(e) = masq::gc(&req.name, &valid) {
                    errs.push(e);
                }
            }
            Err(e) => errs.push(e),
        }
    }
    iface::join_errors(errs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(min: Option<i32>, max: Option<i32>, id: Option<i32>) -> Trunk {
        Trunk { min_id: min, max_id: max, id }
    }

    #[test]
    fn trunk_collection_and_errors() {
        assert_eq!(
            collect_trunk(&[t(Some(10), Some(12), None), t(None, None, Some(11)), t(None, None, Some(5))]),
            Ok(vec![5, 10, 11, 12])
        );
        assert_eq!(collect_trunk(&[t(Some(0), Some(3), None)]), Err("incorrect trunk minID parameter"));
        assert_eq!(collect_trunk(&[t(Some(3), Some(4095), None)]), Err("incorrect trunk maxID parameter"));
        assert_eq!(collect_trunk(&[t(Some(5), Some(3), None)]), Err("minID is greater than maxID in trunk parameter"));
        assert!(collect_trunk(&[t(None, Some(3), None)]).unwrap_err().contains("minID is missing"));
        assert!(collect_trunk(&[t(Some(3), None, None)]).unwrap_err().contains("maxID is missing"));
        assert_eq!(collect_trunk(&[t(None, None, Some(4095))]), Err("incorrect trunk id parameter"));
    }

    #[test]
    fn gateways_default_to_first_host_and_add_default_routes_once_per_family() {
        let mut r = CniResult::from_json(
            br#"{"cniVersion":"1.0.0","ips":[{"address":"10.1.2.3/16"},{"address":"10.1.2.4/16"},{"address":"fd00::5/64","gateway":"fd00::9"}],
            "routes":[{"dst":"::/0","gw":"fd00::9"}]}"#,
        )
        .unwrap();
        let c = Conf { is_gateway: true, is_default_gateway: true, ..Default::default() };
        let gws = calc_gateways(&mut r, &c);
        assert_eq!(gws.iter().map(|g| g.to_string()).collect::<Vec<_>>(), ["10.1.0.1/16", "fd00::9/64"]);
        assert!(r.ips.iter().all(|i| i.interface == Some(2)));
        let routes: Vec<String> =
            r.routes.iter().map(|r| format!("{} {}", r.dst, r.gw.map(|g| g.to_string()).unwrap_or_default())).collect();
        assert_eq!(routes, ["::/0 fd00::9", "0.0.0.0/0 10.1.0.1"]);
    }

    #[test]
    fn no_gateway_without_is_gateway() {
        let mut r = CniResult::from_json(br#"{"cniVersion":"1.0.0","ips":[{"address":"10.1.2.3/16"}]}"#).unwrap();
        let gws = calc_gateways(&mut r, &Conf::default());
        assert!(gws.is_empty());
        assert!(r.ips[0].gateway.is_none());
        assert!(r.routes.is_empty());
    }
}
