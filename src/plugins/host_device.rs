//! host-device: move an existing node device into the container (renamed to
//! CNI_IFNAME, its original name kept in the interface alias) and back on DEL.
//! The move and the rename are one request, so a clash leaves the device
//! where it was. Unlike the reference, DEL releases the address even when the
//! namespace is gone.

use super::iface;
use crate::cni::config::{Dns, IpamRef};
use crate::cni::json::json_struct;
use crate::cni::result::Interface;
use crate::cni::{CniResult, Plugin, Request};
use crate::error::{Error, Result, Rollback};
use crate::net::Mac;
use crate::rtnl::link::Link;
use crate::rtnl::Rtnl;
use crate::sys::netns::Netns;

pub static PLUGIN: Plugin = Plugin {
    name: "host-device",
    min_version: "0.1.0",
    add,
    del,
    check,
    gc: super::vlink::gc,
    status: super::vlink::status,
};

/// Drivers that mean "userspace owns this NIC" (DPDK): nothing to move.
const DPDK_DRIVERS: &[&str] = &["vfio-pci", "uio_pci_generic", "igb_uio"];

json_struct! {
    struct Conf {
        device: String = get("device"),
        hwaddr: String = get("hwaddr"),
        kernel_path: String = get("kernelpath"),
        pci_bus_id: String = get("pciBusID"),
        runtime_config: RuntimeConfig = get("runtimeConfig"),
        ipam: IpamRef = get("ipam"),
        dns: Dns = get("dns"),
    }
}

json_struct! {
    #[derive(Default)]
    struct RuntimeConfig {
        device_id: String = get("deviceID"),
    }
}

/// Where the device is to be found.
enum Find {
    Name(String),
    Mac(Mac),
    /// A sysfs device directory whose `net/` holds the interface name.
    Sysfs(String),
}

fn load(req: &Request) -> Result<Conf> {
    let c: Conf = req.conf()?;
    // ".." would lead out of /sys into a directory anyone may fill with the name of the link to take.
    if !c.kernel_path.is_empty() && (!c.kernel_path.starts_with("/sys/devices/") || c.kernel_path.contains("/..")) {
        return Err(Error::config(format!("kernelpath \"{}\" must start with /sys/devices/", c.kernel_path)));
    }
    for (what, v) in [("pciBusID", &c.pci_bus_id), ("deviceID", &c.runtime_config.device_id)] {
        if v.contains('/') || v == "." || v == ".." {
            return Err(Error::config(format!("invalid {what} \"{v}\"")));
        }
    }
    Ok(c)
}

fn locate(c: &Conf) -> Result<Find> {
    Ok(if !c.device.is_empty() {
        Find::Name(c.device.clone())
    } else if !c.hwaddr.is_empty() {
        Find::Mac(c.hwaddr.parse().map_err(Error::config)?)
    } else if !c.kernel_path.is_empty() {
        Find::Sysfs(c.kernel_path.clone())
    } else if !c.pci_bus_id.is_empty() {
        Find::Sysfs(format!("/sys/bus/pci/devices/{}", c.pci_bus_id))
    } else if !c.runtime_config.device_id.is_empty() {
        let id = &c.runtime_config.device_id;
        let pci = format!("/sys/bus/pci/devices/{id}");
        Find::Sysfs(if std::path::Path::new(&pci).exists() { pci } else { format!("/sys/bus/auxiliary/devices/{id}") })
    } else {
        return Err(Error::config("specify either \"device\", \"hwaddr\", \"kernelpath\" or \"pciBusID\""));
    })
}

/// The driver a sysfs device is bound to, if any.
fn driver(sysfs: &str) -> Option<String> {
    std::fs::read_link(format!("{sysfs}/driver")).ok()?.file_name().map(|n| n.to_string_lossy().into_owned())
}

fn find_link(host: &mut Rtnl, f: &Find) -> Result<Link> {
    let name = match f {
        Find::Name(n) => n.clone(),
        Find::Mac(m) => {
            return host
                .links()?
                .into_iter()
                .find(|l| l.mac == *m)
                .ok_or_else(|| Error::msg(format!("failed to find device with MAC {m}")))
        }
        Find::Sysfs(dir) => {
            let entries = std::fs::read_dir(format!("{dir}/net"))
                .map_err(|e| Error::os(format_args!("read {dir}/net"), e.raw_os_error().unwrap_or(0)))?;
            let names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            match names.as_slice() {
                [one] => one.clone(),
                [] => return Err(Error::msg(format!("no network device found under {dir}/net"))),
                _ => {
                    return Err(Error::msg(format!(
                        "more than one network device under {dir}/net: {}",
                        names.join(", ")
                    )))
                }
            }
        }
    };
    host.link_by_name(&name)?.ok_or_else(|| Error::msg(format!("failed to find host device \"{name}\"")))
}

fn add(req: &Request) -> Result<CniResult> {
    let c = load(req)?;
    let found = locate(&c)?;
    if let Find::Sysfs(dir) = &found {
        if driver(dir).map(|d| DPDK_DRIVERS.contains(&d.as_str())).unwrap_or(false) {
            // The NIC belongs to a userspace driver: nothing to move or address.
            return Ok(CniResult::default());
        }
    }
    let ns = req.open_netns()?;
    let mut host = Rtnl::here()?;
    let mut ctr = Rtnl::in_netns(&ns)?;
    if ctr.link_by_name(&req.ifname)?.is_some() {
        return Err(Error::msg(format!("interface \"{}\" already exists in netns \"{}\"", req.ifname, req.netns)));
    }
    let dev = find_link(&mut host, &found)?;
    host.set_alias(dev.index, &dev.name, &dev.name)?;
    host.set_up(dev.index, &dev.name, false)?;
    host.move_to_netns(dev.index, &dev.name, ns.fd(), Some(&req.ifname))?;
    let mut ipam_used = false;
    let r = configure(req, &c, &ns, &mut ctr, &mut ipam_used);
    let mut rb = Rollback::default();
    if r.is_err() {
        if ipam_used {
            rb.note(iface::ipam_del(&c.ipam.plugin_type, req));
        }
        rb.note(move_back(&mut ctr, &req.ifname));
    }
    rb.finish(r)
}

fn configure(req: &Request, c: &Conf, ns: &Netns, ctr: &mut Rtnl, ipam_used: &mut bool) -> Result<CniResult> {
    let ifn = &req.ifname;
    let l =
        ctr.link_by_name(ifn)?.ok_or_else(|| Error::msg(format!("{ifn} did not arrive in netns \"{}\"", req.netns)))?;
    let mut result = CniResult {
        interfaces: vec![Interface {
            name: ifn.clone(),
            mac: l.mac.to_string(),
            sandbox: req.netns.clone(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let how = iface::Configure { sysctls: &[], settle_dad: true, nodad: false };
    iface::address_only_interface(req, ns, ctr, &l, &mut result, &c.ipam.plugin_type, None, &how, ipam_used)?;
    if !c.dns.is_empty() {
        result.dns = c.dns.clone();
    }
    Ok(result)
}

/// Return the device to the node under its original name (kept in the alias).
fn move_back(ctr: &mut Rtnl, ifname: &str) -> Result<()> {
    let Some(l) = ctr.link_by_name(ifname)? else { return Ok(()) };
    let orig = if l.alias.is_empty() { ifname.to_string() } else { l.alias.clone() };
    let node = Netns::current()?;
    ctr.set_up(l.index, ifname, false)?;
    ctr.move_to_netns(l.index, ifname, node.fd(), Some(&orig))
        .map_err(|e| e.context(format_args!("return {ifname} to the node as {orig}")))
}

fn del(req: &Request) -> Result<()> {
    let c = load(req)?;
    let mut errs = Vec::new();
    if !req.netns.is_empty() {
        match req.open_netns() {
            Ok(ns) => {
                if let Err(e) = Rtnl::in_netns(&ns).and_then(|mut ctr| move_back(&mut ctr, &req.ifname)) {
                    errs.push(e);
                }
            }
            // A destroyed namespace hands physical devices back to the initial one itself.
            Err(e) if e.is_not_found() => {}
            Err(e) => errs.push(e),
        }
    }
    if !c.ipam.plugin_type.is_empty() {
        if let Err(e) = iface::ipam_del(&c.ipam.plugin_type, req) {
            errs.push(e);
        }
    }
    iface::join_errors(errs)
}

fn check(req: &Request) -> Result<()> {
    let c = load(req)?;
    let (l, mut ctr, prev) = iface::check_start(req, &c.ipam.plugin_type)?;
    iface::check_addrs_routes(&mut ctr, &req.netns, &req.ifname, &l, &prev)
}
