//! What every interface plugin does once its link exists in the container:
//! apply the IPAM result (sysctls, addresses, link up, DAD when it matters,
//! routes), and the IPAM delegation with its undo. Shared so that bridge,
//! ptp, macvlan, ipvlan, vlan, dummy, tap and host-device configure a
//! container the same way.

use crate::cni::args::CniArgs;
use crate::cni::config::Args;
use crate::cni::delegate::delegate;
use crate::cni::json::json_struct;
use crate::cni::result::CniResult;
use crate::cni::{Command, Request};
use crate::error::{Error, Result};
use crate::net::Mac;
use crate::rtnl::addr::{IFA_F_DADFAILED, IFA_F_TENTATIVE};
use crate::rtnl::link::Link;
use crate::rtnl::{route, Rtnl};
use crate::sys::netns::Netns;
use crate::sys::sysctl;

/// How the container interface is configured.
pub struct Configure<'a> {
    /// Extra per-interface sysctls written inside the container first
    /// (`arp_notify`, `accept_dad`...); failures are ignored, as the reference does.
    pub sysctls: &'a [(String, &'a str)],
    /// Wait for IPv6 DAD when an IPv6 gateway is configured (only useful with DAD on).
    pub settle_dad: bool,
    /// Add IPv6 addresses with IFA_F_NODAD: usable at once, never tentative
    /// (where duplicates cannot happen or DAD is turned off anyway).
    pub nodad: bool,
}

/// Apply `r` to `link` (named `ifname`) inside `ns`: every address whose
/// `interface` index names `ifname` (or has no index), link up, routes via
/// the route's gateway or the first gateway of its family.
pub fn configure(ns: &Netns, ctr: &mut Rtnl, ifname: &str, link: &Link, r: &CniResult, how: &Configure) -> Result<()> {
    let mine: Vec<_> = r
        .ips
        .iter()
        .filter(|ip| {
            ip.interface.map(|i| r.interfaces.get(i).map(|f| f.name == ifname).unwrap_or(false)).unwrap_or(true)
        })
        .collect();
    let has_v6 = mine.iter().any(|i| !i.address.is_ipv4());
    ns.run(|| {
        for (k, v) in how.sysctls {
            let _ = sysctl::write(k, v);
        }
        if has_v6 {
            for dev in ["lo", ifname] {
                sysctl::ensure(&format!("net/ipv6/conf/{dev}/disable_ipv6"), "0")?;
            }
            let _ = sysctl::write(&format!("net/ipv6/conf/{ifname}/keep_addr_on_down"), "1");
        }
        Ok(())
    })?;
    let in_ns = |e: Error| e.context(format_args!("in netns \"{}\"", ns.path));
    for ip in &mine {
        let nodad = how.nodad && !ip.address.is_ipv4();
        ctr.add_addr(link.index, ifname, &ip.address, nodad).map_err(in_ns)?;
    }
    ctr.set_up(link.index, ifname, true).map_err(in_ns)?;
    if how.settle_dad && mine.iter().any(|i| i.gateway.map(|g| !g.is_ipv4()).unwrap_or(false)) {
        settle_dad(ctr, link)?;
    }
    for rt in &r.routes {
        let gw = rt.gw.or_else(|| mine.iter().filter_map(|i| i.gateway).find(|g| g.is_ipv4() == rt.dst.is_ipv4()));
        let kr = route::Route {
            gw,
            oif: link.index,
            priority: rt.priority,
            table: rt.table.unwrap_or(0),
            scope: rt.scope.unwrap_or(0),
            ..Default::default()
        };
        ctr.add_route(&kr, &rt.dst, ifname).map_err(in_ns)?;
    }
    Ok(())
}

/// With DAD on, an IPv6 gateway is unreachable until our addresses leave the
/// tentative state; poll briefly (bounded at 5 s like the reference).
fn settle_dad(ctr: &mut Rtnl, l: &Link) -> Result<()> {
    for _ in 0..250 {
        let addrs = ctr.addrs(l.index, libc::AF_INET6 as u8)?;
        if let Some(a) = addrs.iter().find(|a| a.flags & IFA_F_DADFAILED != 0) {
            return Err(Error::msg(format!("duplicate address detection failed for {} on {}", a.net, l.name)));
        }
        if !addrs.iter().any(|a| a.flags & IFA_F_TENTATIVE != 0) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(Error::msg(format!("addresses on {} still tentative after 5s", l.name)))
}

/// Address an interface that is interface 0 of `result`: from IPAM when
/// `ipam_type` is set (`ipam_used` is set first, so that a failure still gets
/// the DEL the spec asks for), else from `given` (a chained plugin's
/// addresses); with neither, the link is only brought up (L2 only).
#[allow(clippy::too_many_arguments)]
pub fn address_only_interface(
    req: &Request,
    ns: &Netns,
    ctr: &mut Rtnl,
    link: &Link,
    result: &mut CniResult,
    ipam_type: &str,
    given: Option<CniResult>,
    how: &Configure,
    ipam_used: &mut bool,
) -> Result<()> {
    let addrs = if !ipam_type.is_empty() {
        *ipam_used = true;
        Some(ipam_add(ipam_type, req)?)
    } else {
        given.filter(|p| !p.ips.is_empty())
    };
    let Some(a) = addrs else { return ctr.set_up(link.index, &req.ifname, true) };
    result.ips = a.ips;
    result.routes = a.routes;
    result.dns = a.dns;
    for ip in &mut result.ips {
        ip.interface = Some(0);
    }
    configure(ns, ctr, &req.ifname, link, result, how)
}

/// IPAM ADD through the delegate. The caller records that a reservation may
/// exist *before* calling, because the spec asks for a DEL of the delegate
/// even when its ADD failed.
pub fn ipam_add(ipam_type: &str, req: &Request) -> Result<CniResult> {
    let r = delegate(ipam_type, Command::Add, req)?.ok_or_else(|| Error::msg("IPAM plugin returned no result"))?;
    if r.ips.is_empty() {
        return Err(Error::msg("IPAM plugin returned missing IP config"));
    }
    Ok(r)
}

pub fn ipam_del(ipam_type: &str, req: &Request) -> Result<()> {
    delegate(ipam_type, Command::Del, req).map(|_| ())
}

/// `ipMasqBackend` as the reference defines it; nftables is cnibox's only backend.
pub fn check_masq_backend(backend: Option<&str>) -> Result<()> {
    match backend {
        None | Some("") | Some("nftables") => Ok(()),
        Some("iptables") => Err(Error::new(
            crate::error::code::UNSUPPORTED_FIELD,
            "ipMasqBackend \"iptables\" is not supported: cnibox masquerades with nftables only",
        )
        .with_details("ipMasqBackend")),
        Some(o) => Err(Error::config(format!("invalid ipMasqBackend \"{o}\" (expected \"nftables\")"))),
    }
}

/// A host-side veth name: `veth` + 8 random hex digits.
pub fn random_veth_name() -> String {
    let mut b = [0u8; 4];
    crate::sys::random_bytes(&mut b);
    format!("veth{:02x}{:02x}{:02x}{:02x}", b[0], b[1], b[2], b[3])
}

/// DEL and GC report every failure together after doing all they could.
pub fn join_errors(mut errs: Vec<Error>) -> Result<()> {
    match errs.len() {
        0 => Ok(()),
        1 => Err(errs.remove(0)),
        _ => {
            let msg = errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ");
            Err(Error::new(errs[0].code, msg))
        }
    }
}

/// CHECK's first steps for a plugin that owns the container's interface:
/// IPAM's own CHECK, the prevResult, and the interface itself (with a socket
/// in the container's namespace for the checks that follow).
pub fn check_start(req: &Request, ipam_type: &str) -> Result<(Link, Rtnl, CniResult)> {
    if !ipam_type.is_empty() {
        delegate(ipam_type, Command::Check, req)?;
    }
    let prev = req.prev_result()?.ok_or_else(|| Error::msg("Required prevResult missing"))?;
    let ns = req.open_netns()?;
    let mut ctr = Rtnl::in_netns(&ns)?;
    let l = ctr
        .link_by_name(&req.ifname)?
        .ok_or_else(|| Error::msg(format!("Interface name {} not found in netns \"{}\"", req.ifname, req.netns)))?;
    Ok((l, ctr, prev))
}

/// Delete `ifname` inside `ns` (as `Request::netns_for_del` gives it) if both still exist.
pub fn delete_in(ns: Option<&Netns>, ifname: &str) -> Result<()> {
    let Some(ns) = ns else { return Ok(()) };
    let mut ctr = Rtnl::in_netns(ns)?;
    match ctr.link_by_name(ifname)? {
        Some(l) => match ctr.delete_link(l.index, ifname) {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        },
        None => Ok(()),
    }
}

/// `cni.dev/valid-attachments` (or its alias `cni.dev/attachments`) as (container id, ifname) pairs.
pub fn valid_attachments(req: &Request) -> Result<Vec<(String, String)>> {
    json_struct! {
        struct Att {
            id: String = req("containerID"),
            ifname: String = get("ifname"),
        }
    }
    let (valid, alias) =
        req.conf_with(|o| Ok((o.opt::<Vec<Att>>("cni.dev/valid-attachments")?, o.opt("cni.dev/attachments")?)))?;
    Ok(valid.or(alias).unwrap_or_default().into_iter().map(|a| (a.id, a.ifname)).collect())
}

/// CHECK's common tail: every prevResult address of `ifname` is on the link,
/// and every prevResult route exists in the container.
pub fn check_addrs_routes(ctr: &mut Rtnl, netns_path: &str, ifname: &str, link: &Link, prev: &CniResult) -> Result<()> {
    let addrs = ctr.addrs(link.index, 0)?;
    let mine = prev.ips.iter().filter(|ip| {
        ip.interface.map(|x| prev.interfaces.get(x).map(|f| f.name == ifname).unwrap_or(false)).unwrap_or(true)
    });
    for ip in mine {
        if !addrs.iter().any(|a| a.net == ip.address) {
            return Err(Error::msg(format!("Failed to match addr {} on interface {ifname}", ip.address)));
        }
    }
    let mut routes = ctr.routes(libc::AF_INET as u8)?;
    routes.extend(ctr.routes(libc::AF_INET6 as u8)?);
    for r in &prev.routes {
        let ok = routes.iter().any(|k| {
            k.dst.map(|d| d.network() == r.dst.network()).unwrap_or(false) && (r.gw.is_none() || k.gw == r.gw)
        });
        if !ok {
            return Err(Error::msg(format!("Failed to match route {} in netns \"{netns_path}\"", r.dst)));
        }
    }
    Ok(())
}

json_struct! {
    /// `runtimeConfig.mac` (capability `mac`) of macvlan, tap and tuning.
    #[derive(Default)]
    pub struct RuntimeMac {
        pub mac: Option<String> = opt("mac"),
    }
}

/// The container MAC: config `mac`, then CNI_ARGS `MAC`, `args.cni.mac`, `runtimeConfig.mac` (later wins).
pub fn pick_mac(req: &Request, base: &str, args: &Args, runtime: &RuntimeMac) -> Result<Option<Mac>> {
    let cargs = CniArgs::parse(&req.args, &["MAC"])?;
    let m = [Some(base.to_string()), cargs.get("MAC").map(str::to_string), args.cni.mac.clone(), runtime.mac.clone()]
        .into_iter()
        .flatten()
        .rfind(|m| !m.is_empty());
    m.map(|m| m.parse::<Mac>().map_err(Error::config)).transpose()
}
