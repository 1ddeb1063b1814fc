//! dummy: a dummy interface inside the container, addressed by IPAM.

use super::vlink::{self, Spec};
use crate::cni::config::{Dns, IpamRef};
use crate::cni::json::json_struct;
use crate::cni::{CniResult, Plugin, Request};
use crate::error::{Error, Result};
use crate::rtnl::link::NewLink;

pub static PLUGIN: Plugin =
    Plugin { name: "dummy", min_version: "0.1.0", add, del, check, gc: vlink::gc, status: vlink::status };

json_struct! {
    struct Conf {
        ipam: IpamRef = get("ipam"),
        dns: Dns = get("dns"),
    }
}

fn load(req: &Request) -> Result<Conf> {
    let c: Conf = req.conf()?;
    if c.ipam.plugin_type.is_empty() {
        return Err(Error::config("dummy interface requires an IPAM configuration"));
    }
    Ok(c)
}

fn add(req: &Request) -> Result<CniResult> {
    let c = load(req)?;
    let link = NewLink { kind: "dummy", ..Default::default() };
    vlink::add(req, Spec { link, parent_in_container: true, ipam_type: &c.ipam.plugin_type, prev: None, dns: &c.dns })
}

fn del(req: &Request) -> Result<()> {
    let c = load(req)?;
    vlink::del(req, &c.ipam.plugin_type)
}

fn check(req: &Request) -> Result<()> {
    let c = load(req)?;
    vlink::check(req, &c.ipam.plugin_type, "dummy").map(|_| ())
}
