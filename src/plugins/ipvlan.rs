//! ipvlan: an IP-VLAN on a node device, made directly inside the container.
//! Chained after another plugin with no IPAM, it takes that plugin's
//! addresses (and, without `master`, its single interface as the parent).

use super::vlink::{self, Spec};
use crate::cni::config::{Dns, IpamRef};
use crate::cni::json::json_struct;
use crate::cni::{CniResult, Plugin, Request};
use crate::error::{Error, Result};
use crate::rtnl::link::NewLink;
use crate::rtnl::Rtnl;

pub static PLUGIN: Plugin =
    Plugin { name: "ipvlan", min_version: "0.1.0", add, del, check, gc: vlink::gc, status: vlink::status };

const IFLA_IPVLAN_MODE: u16 = 1;

json_struct! {
    struct Conf {
        master: String = get("master"),
        mode: String = get("mode"),
        mtu: u32 = get("mtu"),
        link_in_container: bool = get("linkInContainer"),
        ipam: IpamRef = get("ipam"),
        dns: Dns = get("dns"),
    }
}

fn mode_value(mode: &str) -> Result<u16> {
    Ok(match mode {
        "" | "l2" => 0,
        "l3" => 1,
        "l3s" => 2,
        m => return Err(Error::config(format!("unknown ipvlan mode: \"{m}\""))),
    })
}

fn add(req: &Request) -> Result<CniResult> {
    let c: Conf = req.conf()?;
    let mode = mode_value(&c.mode)?.to_ne_bytes();
    let prev = req.prev_result()?;
    let ns = req.open_netns()?;
    let mut rt = if c.link_in_container { Rtnl::in_netns(&ns)? } else { Rtnl::here()? };
    let master = match (&prev, c.master.is_empty()) {
        (_, false) => c.master.clone(),
        (None, true) => vlink::default_route_link(&mut rt)?,
        (Some(p), true) => match p.interfaces.as_slice() {
            [one] if !one.name.is_empty() => one.name.clone(),
            _ => return Err(Error::config("chained master failure. PrevResult lacks a single named interface")),
        },
    };
    let m = vlink::parent(&mut rt, &master, c.mtu)?;
    let data: [(u16, &[u8]); 1] = [(IFLA_IPVLAN_MODE, &mode)];
    let link = NewLink { kind: "ipvlan", mtu: c.mtu, parent: m.index, data: &data, ..Default::default() };
    let prev = if c.ipam.plugin_type.is_empty() { prev } else { None };
    vlink::add(
        req,
        Spec { link, parent_in_container: c.link_in_container, ipam_type: &c.ipam.plugin_type, prev, dns: &c.dns },
    )
}

fn del(req: &Request) -> Result<()> {
    let c: Conf = req.conf()?;
    vlink::del(req, &c.ipam.plugin_type)
}

fn check(req: &Request) -> Result<()> {
    let c: Conf = req.conf()?;
    mode_value(&c.mode)?;
    vlink::check(req, &c.ipam.plugin_type, "ipvlan").map(|_| ())
}
