//! The floor: what an ADD or DEL costs the kernel alone. The tool itself
//! issues, in-process, with no exec, no config parsing and no IPAM, the same
//! requests cnibox's bridge plugin makes (listed from `strace -f -e
//! trace=sendto,sendmsg,openat,write` of a real ADD), built by cnibox's own
//! rtnetlink and nf_tables code, so a plugin's time above it is the plugin's.
//!
//! bridge ADD, per pod: open the container namespace; a netlink socket here
//! and one in the container; a lookup of the bridge and its MAC set again
//! (cnibox pins the MAC of a bridge it did not create in this call, as the
//! kernel does not say whether it was set); one RTM_NEWLINK creating the
//! veth pair with the host end on the bridge and the peer in the container
//! under its final name; a lookup of the host end (its index); the
//! bridge-port setting (hairpin); accept_ra=0 on the host end; the host end
//! up; in the container accept_dad=0 and arp_notify=1 (entering it to write
//! them), a lookup of eth0, its address, eth0 up, the default route via the
//! gateway; then on the node the bridge's addresses (is the gateway there),
//! whether forwarding is on, and, last, a look at the host end until it is
//! up (the kernel makes it so once the container end is up). Those lookups and
//! checks are timed apart as well (`checks`), for the report to show.
//! bridge DEL: open the namespace, a socket in it, look up eth0, delete it
//! (its peer, address and routes go with it).
//! ipMasq adds cnibox's nftables listing and one batch (the masquerade rule
//! of the address) to ADD and its removal (a listing and one batch) to DEL.
//! portmap: the rules of two mappings (a listing and one batch) and
//! route_localnet on the bridge; DEL removes them.
//! The bridge itself and its gateway address exist before the timed region,
//! as on any node after its first pod.

use cnibox::net::IpNet;
use cnibox::rtnl::link::VethSpec;
use cnibox::rtnl::route::Route;
use cnibox::rtnl::{IfIndex, Rtnl};
use cnibox::sys::netns::Netns;
use cnibox::sys::sysctl;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::Instant;

/// The floor's subnets are 10.<FLOOR_OCTET + n>.0.0/16, above the sets' (see invoke::subnet).
pub const FLOOR_OCTET: u8 = 240;

/// portmap ADD's kernel requests for a container at `ip` behind `dev`: the
/// nftables rules of two TCP mappings (cnibox's own listing and batch, with
/// SNAT of hairpin traffic) and route_localnet on `dev`; nanoseconds.
pub fn portmap_add(id: &str, ip: IpAddr, dev: &str) -> Result<u64, String> {
    use cnibox::nft::portmap::{owner_key, setup, Mapping, Spec};
    let t0 = Instant::now();
    let tcp = libc::IPPROTO_TCP as u8;
    let maps = [
        Mapping { host_port: 58080, container_port: 80, proto: tcp, host_ip: None },
        Mapping { host_port: 58443, container_port: 443, proto: tcp, host_ip: None },
    ];
    let owner = owner_key("cnibox-floor", "eth0", id);
    let spec =
        Spec { container_id: id, ips: &[ip], mappings: &maps, snat: true, masq_all: false, owner: owner.as_bytes() };
    setup(&spec).map_err(|e| err("portmap rules", e))?;
    sysctl::write(&format!("net/ipv4/conf/{dev}/route_localnet"), "1").map_err(|e| err("route_localnet", e))?;
    Ok(t0.elapsed().as_nanos() as u64)
}

/// portmap DEL's: the removal of those rules; nanoseconds.
pub fn portmap_del(id: &str) -> Result<u64, String> {
    let t0 = Instant::now();
    cnibox::nft::portmap::teardown(id).map_err(|e| err("portmap rules", e))?;
    Ok(t0.elapsed().as_nanos() as u64)
}

/// A bridge for the floor's pods, in the node namespace (where the tool runs).
pub struct BridgeFloor {
    bridge: String,
    index: IfIndex,
    /// The subnet's second octet: pods get 10.<octet>.<hi>.<lo>/16.
    octet: u8,
    pub masq: bool,
    /// Per ADD, the nanoseconds of its lookups and checks (see the module's list).
    pub checks: Mutex<Vec<u64>>,
}

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("floor: {what}: {e}")
}

impl BridgeFloor {
    pub fn new(bridge: &str, octet: u8, masq: bool) -> Result<BridgeFloor, String> {
        let mut rt = Rtnl::here().map_err(|e| err("netlink socket", e))?;
        if rt.link_by_name(bridge).map_err(|e| err("look up bridge", e))?.is_none() {
            rt.create_bridge(bridge, 0, false).map_err(|e| err("create bridge", e))?;
        }
        let br = rt
            .link_by_name(bridge)
            .map_err(|e| err("look up bridge", e))?
            .ok_or_else(|| err("look up bridge", "gone"))?;
        let gw = IpNet { addr: IpAddr::V4(Ipv4Addr::new(10, octet, 0, 1)), prefix: 16 };
        // EEXIST on a second floor of the same bridge is fine.
        let _ = rt.add_addr(br.index, bridge, &gw, true);
        rt.set_up(br.index, bridge, true).map_err(|e| err("bridge up", e))?;
        let _ = sysctl::write("net/ipv4/ip_forward", "1");
        Ok(BridgeFloor { bridge: bridge.to_string(), index: br.index, octet, masq, checks: Mutex::new(Vec::new()) })
    }

    pub fn name(&self) -> &str {
        &self.bridge
    }

    fn addr(&self, pod: u32) -> IpNet {
        let host = pod % 65000 + 2;
        IpNet { addr: IpAddr::V4(Ipv4Addr::new(10, self.octet, (host >> 8) as u8, host as u8)), prefix: 16 }
    }

    /// The ADD's kernel requests for pod number `pod` in `netns`; nanoseconds.
    pub fn add(&self, netns: &str, pod: u32) -> Result<u64, String> {
        let t0 = Instant::now();
        let ns = Netns::open(netns).map_err(|e| err("open netns", e))?;
        let mut host = Rtnl::here().map_err(|e| err("netlink socket", e))?;
        let mut ctr = Rtnl::in_netns(&ns).map_err(|e| err("netlink socket in the container", e))?;
        let t = Instant::now();
        let br = host
            .link_by_name(&self.bridge)
            .map_err(|e| err("look up bridge", e))?
            .ok_or_else(|| err("look up bridge", "gone"))?;
        host.set_mac(br.index, &self.bridge, br.mac).map_err(|e| err("bridge MAC", e))?;
        let mut checks = t.elapsed().as_nanos() as u64;
        let name = format!("vfl{}{pod:x}", self.octet);
        let spec = VethSpec { host: &name, master: self.index, mtu: 0, peer: "eth0", peer_ns: ns.fd(), peer_mac: None };
        host.create_veth(&spec).map_err(|e| err("create veth", e))?;
        let h = host.link_by_name(&name).map_err(|e| err("look up veth", e))?.ok_or_else(|| err("veth", "gone"))?;
        host.set_brport(h.index, &name, true, false).map_err(|e| err("hairpin", e))?;
        sysctl::write(&format!("net/ipv6/conf/{name}/accept_ra"), "0").map_err(|e| err("accept_ra", e))?;
        host.set_up(h.index, &name, true).map_err(|e| err("veth up", e))?;
        ns.run(|| {
            sysctl::write("net/ipv6/conf/eth0/accept_dad", "0")?;
            sysctl::write("net/ipv4/conf/eth0/arp_notify", "1")
        })
        .map_err(|e| err("container sysctls", e))?;
        let c = ctr.link_by_name("eth0").map_err(|e| err("look up eth0", e))?.ok_or_else(|| err("eth0", "gone"))?;
        let addr = self.addr(pod);
        ctr.add_addr(c.index, "eth0", &addr, true).map_err(|e| err("address", e))?;
        ctr.set_up(c.index, "eth0", true).map_err(|e| err("eth0 up", e))?;
        let gw = IpAddr::V4(Ipv4Addr::new(10, self.octet, 0, 1));
        let r = Route { gw: Some(gw), oif: c.index, ..Route::default() };
        let dflt = IpNet { addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED), prefix: 0 };
        ctr.add_route(&r, &dflt, "eth0").map_err(|e| err("default route", e))?;
        let t = Instant::now();
        host.addrs(self.index, libc::AF_INET as u8).map_err(|e| err("bridge addresses", e))?;
        host.forwarding(libc::AF_INET as u8).map_err(|e| err("forwarding", e))?;
        checks += t.elapsed().as_nanos() as u64;
        if self.masq {
            let net = IpNet { addr: addr.addr, prefix: 16 };
            cnibox::nft::masq::setup(&self.bridge, "eth0", &format!("floor-{pod}"), &[net])
                .map_err(|e| err("ipMasq", e))?;
        }
        let t = Instant::now();
        host.wait_oper_up(h.index, &name, 5000).map_err(|e| err("host end up", e))?;
        checks += t.elapsed().as_nanos() as u64;
        self.checks.lock().unwrap_or_else(|p| p.into_inner()).push(checks);
        Ok(t0.elapsed().as_nanos() as u64)
    }

    /// The DEL's kernel requests; nanoseconds.
    pub fn del(&self, netns: &str, pod: u32) -> Result<u64, String> {
        let t0 = Instant::now();
        let ns = Netns::open(netns).map_err(|e| err("open netns", e))?;
        let mut ctr = Rtnl::in_netns(&ns).map_err(|e| err("netlink socket in the container", e))?;
        if let Some(c) = ctr.link_by_name("eth0").map_err(|e| err("look up eth0", e))? {
            ctr.delete_link(c.index, "eth0").map_err(|e| err("delete eth0", e))?;
        }
        if self.masq {
            cnibox::nft::masq::teardown(&self.bridge, "eth0", &format!("floor-{pod}")).map_err(|e| err("ipMasq", e))?;
        }
        Ok(t0.elapsed().as_nanos() as u64)
    }
}
