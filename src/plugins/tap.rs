//! tap: a persistent tap device inside the container (for VMs in pods),
//! optionally on a bridge that already exists there. Created with the tun
//! ioctls from inside the container's namespace; never by running `ip`.

use super::iface;
use super::iface::{pick_mac, RuntimeMac};
use crate::cni::config::{Args, Dns, IpamRef};
use crate::cni::json::json_struct;
use crate::cni::result::Interface;
use crate::cni::{CniResult, Plugin, Request};
use crate::error::{code, Error, Result, Rollback};
use crate::rtnl::Rtnl;
use crate::sys::netns::Netns;
use crate::sys::tun;

pub static PLUGIN: Plugin =
    Plugin { name: "tap", min_version: "0.1.0", add, del, check, gc: super::vlink::gc, status: super::vlink::status };

json_struct! {
    struct Conf {
        mac: String = get("mac"),
        mtu: u32 = get("mtu"),
        multi_queue: bool = get("multiQueue"),
        owner: Option<u32> = opt("owner"),
        group: Option<u32> = opt("group"),
        selinux_context: String = get("selinuxContext"),
        bridge: String = get("bridge"),
        ipam: IpamRef = get("ipam"),
        dns: Dns = get("dns"),
        args: Args = get("args"),
        runtime_config: RuntimeMac = get("runtimeConfig"),
    }
}

fn load(req: &Request) -> Result<Conf> {
    let c: Conf = req.conf()?;
    if !c.selinux_context.is_empty() {
        // The reference labels the `ip` process it runs; cnibox runs no process to label.
        return Err(Error::new(code::UNSUPPORTED_FIELD, "selinuxContext is not supported by cnibox's tap plugin")
            .with_details("selinuxContext"));
    }
    Ok(c)
}

fn add(req: &Request) -> Result<CniResult> {
    let c = load(req)?;
    let mac = pick_mac(req, &c.mac, &c.args, &c.runtime_config)?;
    let ns = req.open_netns()?;
    let mut ctr = Rtnl::in_netns(&ns)?;
    if ctr.link_by_name(&req.ifname)?.is_some() {
        return Err(Error::msg(format!("interface \"{}\" already exists in netns \"{}\"", req.ifname, req.netns)));
    }
    ns.run(|| tun::create_tap(&req.ifname, c.multi_queue, c.owner, c.group))?;
    let mut ipam_used = false;
    let r = configure(req, &c, &ns, &mut ctr, mac, &mut ipam_used);
    let mut rb = Rollback::default();
    if r.is_err() {
        match ctr.link_by_name(&req.ifname) {
            Ok(Some(l)) => rb.note(ctr.delete_link(l.index, &req.ifname)),
            Ok(None) => {}
            Err(e) => rb.note(Err::<(), _>(e)),
        }
        if ipam_used {
            rb.note(iface::ipam_del(&c.ipam.plugin_type, req));
        }
    }
    rb.finish(r)
}

fn configure(
    req: &Request,
    c: &Conf,
    ns: &Netns,
    ctr: &mut Rtnl,
    mac: Option<crate::net::Mac>,
    ipam_used: &mut bool,
) -> Result<CniResult> {
    let ifn = &req.ifname;
    let l = ctr.link_by_name(ifn)?.ok_or_else(|| Error::msg(format!("tap {ifn} vanished")))?;
    if c.mtu > 0 {
        ctr.set_mtu(l.index, ifn, c.mtu)?;
    }
    if let Some(m) = mac {
        ctr.set_mac(l.index, ifn, m)?;
    }
    if !c.bridge.is_empty() {
        let br = ctr
            .link_by_name(&c.bridge)?
            .ok_or_else(|| Error::config(format!("bridge \"{}\" not found in netns \"{}\"", c.bridge, req.netns)))?;
        ctr.set_master(l.index, ifn, br.index)?;
    }
    let l = ctr.link_by_index(l.index)?.ok_or_else(|| Error::msg(format!("tap {ifn} vanished")))?;
    let mut result = CniResult {
        interfaces: vec![Interface {
            name: ifn.clone(),
            mac: l.mac.to_string(),
            mtu: l.mtu,
            sandbox: req.netns.clone(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let sysctls = [(format!("net/ipv4/conf/{ifn}/arp_notify"), "1")];
    let how = iface::Configure { sysctls: &sysctls, settle_dad: false, nodad: true };
    iface::address_only_interface(req, ns, ctr, &l, &mut result, &c.ipam.plugin_type, None, &how, ipam_used)?;
    if !c.dns.is_empty() {
        result.dns = c.dns.clone();
    }
    Ok(result)
}

fn del(req: &Request) -> Result<()> {
    let c = load(req)?;
    super::vlink::del(req, &c.ipam.plugin_type)
}

fn check(req: &Request) -> Result<()> {
    let c = load(req)?;
    super::vlink::check(req, &c.ipam.plugin_type, "tun").map(|_| ())
}
