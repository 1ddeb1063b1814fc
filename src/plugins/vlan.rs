//! vlan: an 802.1Q sub-interface of `master`, made directly inside the
//! container. Unlike the reference, DEL never needs the master (it may be gone).

use super::vlink::{self, Spec};
use crate::cni::config::{Dns, IpamRef};
use crate::cni::json::json_struct;
use crate::cni::{CniResult, Plugin, Request};
use crate::error::{Error, Result};
use crate::rtnl::link::NewLink;
use crate::rtnl::Rtnl;

pub static PLUGIN: Plugin =
    Plugin { name: "vlan", min_version: "0.1.0", add, del, check, gc: vlink::gc, status: vlink::status };

const IFLA_VLAN_ID: u16 = 1;

json_struct! {
    struct Conf {
        master: String = get("master"),
        vlan_id: i32 = get("vlanId"),
        mtu: u32 = get("mtu"),
        link_in_container: bool = get("linkInContainer"),
        ipam: IpamRef = get("ipam"),
        dns: Dns = get("dns"),
    }
}

fn load(req: &Request) -> Result<Conf> {
    let c: Conf = req.conf()?;
    if !(0..=4094).contains(&c.vlan_id) {
        return Err(Error::config(format!("invalid VLAN ID {} (must be between 0 and 4094)", c.vlan_id)));
    }
    Ok(c)
}

fn add(req: &Request) -> Result<CniResult> {
    let c = load(req)?;
    if c.master.is_empty() {
        return Err(Error::config(
            "\"master\" field is required. It specifies the host interface name to create the VLAN for.",
        ));
    }
    if c.ipam.plugin_type.is_empty() {
        return Err(Error::config("vlan requires an IPAM configuration (ipam.type)"));
    }
    let ns = req.open_netns()?;
    let mut rt = if c.link_in_container { Rtnl::in_netns(&ns)? } else { Rtnl::here()? };
    let m = vlink::parent(&mut rt, &c.master, c.mtu)?;
    let id = (c.vlan_id as u16).to_ne_bytes();
    let data: [(u16, &[u8]); 1] = [(IFLA_VLAN_ID, &id)];
    let link = NewLink { kind: "vlan", mtu: c.mtu, parent: m.index, data: &data, ..Default::default() };
    vlink::add(
        req,
        Spec {
            link,
            parent_in_container: c.link_in_container,
            ipam_type: &c.ipam.plugin_type,
            prev: None,
            dns: &c.dns,
        },
    )
}

fn del(req: &Request) -> Result<()> {
    let c = load(req)?;
    vlink::del(req, &c.ipam.plugin_type)
}

fn check(req: &Request) -> Result<()> {
    let c = load(req)?;
    vlink::check(req, &c.ipam.plugin_type, "vlan").map(|_| ())
}
