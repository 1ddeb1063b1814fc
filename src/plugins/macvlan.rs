//! macvlan: a MAC-VLAN on a node device (the default route's, unless `master`
//! is given), made directly inside the container.

use super::iface::{pick_mac, RuntimeMac};
use super::vlink::{self, Spec};
use crate::cni::config::{Args, Dns, IpamRef};
use crate::cni::json::json_struct;
use crate::cni::{CniResult, Plugin, Request};
use crate::error::{Error, Result};
use crate::rtnl::link::NewLink;
use crate::rtnl::Rtnl;

pub static PLUGIN: Plugin =
    Plugin { name: "macvlan", min_version: "0.1.0", add, del, check, gc: vlink::gc, status: vlink::status };

const IFLA_MACVLAN_MODE: u16 = 1;
const IFLA_MACVLAN_BC_QUEUE_LEN: u16 = 7;

json_struct! {
    struct Conf {
        master: String = get("master"),
        mode: String = get("mode"),
        mtu: u32 = get("mtu"),
        mac: String = get("mac"),
        link_in_container: bool = get("linkInContainer"),
        bc_queue_len: Option<u32> = opt("bcqueuelen"),
        ipam: IpamRef = get("ipam"),
        dns: Dns = get("dns"),
        args: Args = get("args"),
        runtime_config: RuntimeMac = get("runtimeConfig"),
    }
}

/// The kernel's MACVLAN_MODE_* value of a mode name.
pub fn mode_value(mode: &str) -> Result<u32> {
    Ok(match mode {
        "" | "bridge" => 4,
        "private" => 1,
        "vepa" => 2,
        "passthru" => 8,
        m => return Err(Error::config(format!("unknown macvlan mode: \"{m}\""))),
    })
}

fn add(req: &Request) -> Result<CniResult> {
    let c: Conf = req.conf()?;
    let mode = mode_value(&c.mode)?;
    let mac = pick_mac(req, &c.mac, &c.args, &c.runtime_config)?;
    let ns = req.open_netns()?;
    let mut rt = if c.link_in_container { Rtnl::in_netns(&ns)? } else { Rtnl::here()? };
    let master = if c.master.is_empty() { vlink::default_route_link(&mut rt)? } else { c.master.clone() };
    let m = vlink::parent(&mut rt, &master, c.mtu)?;
    let mode_b = mode.to_ne_bytes();
    let q = c.bc_queue_len.unwrap_or(0).to_ne_bytes();
    let mut data: Vec<(u16, &[u8])> = vec![(IFLA_MACVLAN_MODE, &mode_b)];
    if c.bc_queue_len.is_some() {
        data.push((IFLA_MACVLAN_BC_QUEUE_LEN, &q));
    }
    let link = NewLink { kind: "macvlan", mtu: c.mtu, parent: m.index, mac, data: &data, ..Default::default() };
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
    let c: Conf = req.conf()?;
    vlink::del(req, &c.ipam.plugin_type)
}

fn check(req: &Request) -> Result<()> {
    let c: Conf = req.conf()?;
    mode_value(&c.mode)?;
    vlink::check(req, &c.ipam.plugin_type, "macvlan").map(|_| ())
}
