//! static: hands out exactly the addresses, routes and DNS it is given; keeps
//! no state. Addresses come from `ipam.addresses`, plus CNI_ARGS `IP` (with
//! `GATEWAY`); `args.cni.ips`, then `runtimeConfig.ips`, replace the list
//! outright when present, as in the reference.

use crate::cni::args::CniArgs;
use crate::cni::config::{Args, Dns};
use crate::cni::json::{json_struct, Obj};
use crate::cni::result::{IpConfig, Route};
use crate::cni::{version, CniResult, Plugin, Request};
use crate::error::{Error, Result};
use crate::net::IpNet;
use std::net::IpAddr;

pub static PLUGIN: Plugin = Plugin {
    name: "static",
    min_version: "0.1.0",
    add,
    del: crate::cni::skel::noop,
    check,
    gc: crate::cni::skel::noop,
    status: crate::cni::skel::noop,
};

json_struct! {
    struct NetConf {
        ipam: Option<IpamConf> = opt("ipam"),
        /// `runtimeConfig.ips`.
        runtime_ips: Vec<String> = get_with("runtimeConfig", |r| Obj::of(r)?.get("ips")),
        args: Option<Args> = opt("args"),
    }
}

json_struct! {
    struct IpamConf {
        addresses: Vec<Address> = get("addresses"),
        routes: Vec<Route> = get("routes"),
        dns: Dns = get("dns"),
    }
}

json_struct! {
    struct Address {
        address: String = get("address"),
        gateway: Option<IpAddr> = opt("gateway"),
    }
}

fn cidr(s: &str, what: &str) -> Result<IpNet> {
    s.parse().map_err(|_| Error::config(format!("{what}, got: '{s}'")))
}

fn load(req: &Request) -> Result<CniResult> {
    let n: NetConf = req.conf()?;
    let ipam = n.ipam.ok_or_else(|| Error::config("IPAM config missing 'ipam' key"))?;
    // Config entries are parsed last (as in the reference), so GATEWAY below
    // only ever applies to the addresses CNI_ARGS brought.
    let mut list: Vec<(String, Option<IpNet>, Option<IpAddr>)> =
        ipam.addresses.into_iter().map(|a| (a.address, None, a.gateway)).collect();
    let env = CniArgs::parse(&req.args, &["IP", "GATEWAY"])?;
    for item in env.get("IP").unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let net = cidr(item, "the 'ip' field is expected to be in CIDR notation")?;
        list.push((item.to_string(), Some(net), None));
    }
    for item in env.get("GATEWAY").unwrap_or("").split(',').filter(|s| !s.is_empty()) {
        let gw: IpAddr = item.trim().parse().map_err(|_| Error::config(format!("invalid gateway address: {item}")))?;
        for a in list.iter_mut().filter(|a| a.1.is_some_and(|n| n.contains(&gw))) {
            a.2 = Some(gw);
        }
    }
    let from_args = n.args.map(|a| a.cni.ips).unwrap_or_default();
    for ips in [from_args, n.runtime_ips] {
        if !ips.is_empty() {
            list.clear();
            for s in ips {
                let net = cidr(&s, "an entry in the 'ips' field is NOT in CIDR notation")?;
                list.push((s, Some(net), None));
            }
        }
    }
    let mut out = CniResult { routes: ipam.routes, dns: ipam.dns, ..Default::default() };
    for (text, net, gateway) in list {
        let address = match net {
            Some(n) => n,
            None => cidr(&text, "the 'address' field is expected to be in CIDR notation")?,
        };
        out.ips.push(IpConfig { address, gateway, interface: None });
    }
    let v4 = out.ips.iter().filter(|i| i.address.is_ipv4()).count();
    if (v4 > 1 || out.ips.len() - v4 > 1) && !version::at_least(&req.cni_version, "0.3.0") {
        return Err(Error::config(format!(
            "CNI version {} does not support more than 1 address per family",
            req.cni_version
        )));
    }
    Ok(out)
}

fn add(req: &Request) -> Result<CniResult> {
    load(req)
}

/// Each configured address found in prevResult must carry the configured gateway.
fn check(req: &Request) -> Result<()> {
    let want = load(req)?;
    let prev = req.prev_result()?.ok_or_else(|| Error::msg("Required prevResult missing"))?;
    for w in &want.ips {
        if let Some(got) = prev.ips.iter().find(|p| p.address.addr == w.address.addr) {
            if w.gateway.is_some() && w.gateway != got.gateway {
                return Err(Error::msg(format!(
                    "static: Failed to match addr {} on interface {}",
                    got.address.addr, req.ifname
                )));
            }
        }
    }
    Ok(())
}
