//! Links: create (bridge, veth), look up, change (up, master, MAC, bridge-port
//! flags, bridge VLANs), delete, and wait for a link to forward.

use super::{IfIndex, Rtnl, RTM_DELLINK, RTM_GETLINK, RTM_NEWLINK, RTM_SETLINK};
use crate::error::{Error, Result};
use crate::net::Mac;
use crate::netlink::{
    Attrs, MsgBuf, Msgs, NLA_F_NESTED, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use std::os::fd::RawFd;

pub const IFLA_ADDRESS: u16 = 1;
pub const IFLA_IFNAME: u16 = 3;
pub const IFLA_MTU: u16 = 4;
pub const IFLA_LINK: u16 = 5;
pub const IFLA_MASTER: u16 = 10;
pub const IFLA_PROTINFO: u16 = 12;
pub const IFLA_TXQLEN: u16 = 13;
pub const IFLA_OPERSTATE: u16 = 16;
pub const IFLA_LINKINFO: u16 = 18;
pub const IFLA_IFALIAS: u16 = 20;
pub const IFLA_AF_SPEC: u16 = 26;
pub const IFLA_NET_NS_FD: u16 = 28;
pub const IFLA_LINK_NETNSID: u16 = 37;

pub const IFLA_INFO_KIND: u16 = 1;
pub const IFLA_INFO_DATA: u16 = 2;
pub const VETH_INFO_PEER: u16 = 1;
pub const IFLA_BR_VLAN_FILTERING: u16 = 7;
pub const IFLA_VRF_TABLE: u16 = 1;
pub const IFLA_BRPORT_MODE: u16 = 4;
pub const IFLA_BRPORT_ISOLATED: u16 = 33;
pub const IFLA_BRIDGE_FLAGS: u16 = 0;
pub const IFLA_BRIDGE_VLAN_INFO: u16 = 2;
pub const BRIDGE_FLAGS_MASTER: u16 = 1;
pub const BRIDGE_VLAN_INFO_PVID: u16 = 2;
pub const BRIDGE_VLAN_INFO_UNTAGGED: u16 = 4;
pub const BRIDGE_VLAN_INFO_RANGE_BEGIN: u16 = 8;
pub const BRIDGE_VLAN_INFO_RANGE_END: u16 = 16;
pub const RTEXT_FILTER_BRVLAN: u32 = 2;
/// Leave the counters out of a link's description (a third of it, and
/// work for the kernel to gather); nothing here reads them.
pub const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;
pub const IFLA_EXT_MASK: u16 = 29;

/// In `IFLA_AF_SPEC`: each family's part is a nest of its own type.
const IFLA_INET_CONF: u16 = 1;
const IFLA_INET6_CONF: u16 = 2;
/// `IPV4_DEVCONF_ROUTE_LOCALNET` (linux/ip.h), an index from 1 into IFLA_INET_CONF's u32s.
const IPV4_DEVCONF_ROUTE_LOCALNET: usize = 26;
/// `IPV4_DEVCONF_ARP_NOTIFY` (linux/ip.h): `net.ipv4.conf.<link>.arp_notify`.
pub const IPV4_DEVCONF_ARP_NOTIFY: u16 = 22;
/// `DEVCONF_ACCEPT_RA` (linux/ipv6.h), an index from 0 into IFLA_INET6_CONF's s32s.
const DEVCONF_ACCEPT_RA: usize = 3;

pub const IF_OPER_UP: u8 = 6;
pub const IFF_UP: u32 = libc::IFF_UP as u32;
pub const IFF_PROMISC: u32 = libc::IFF_PROMISC as u32;

/// `struct ifinfomsg`: family, type, index, flags, change (16 bytes).
pub fn ifinfomsg(family: u8, index: IfIndex, flags: u32, change: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = family;
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&change.to_ne_bytes());
    b
}

/// What cnibox reads back about a link.
#[derive(Clone, Default)]
pub struct Link {
    pub index: IfIndex,
    pub name: String,
    pub flags: u32,
    pub mac: Mac,
    pub mtu: u32,
    pub master: IfIndex,
    /// For a veth: the peer's ifindex (in the peer's namespace).
    pub link: IfIndex,
    pub operstate: u8,
    pub txqlen: u32,
    pub kind: String,
    /// For a VRF: its routing table.
    pub vrf_table: u32,
    pub alias: String,
    /// `net.ipv4.conf.<link>.route_localnet`, when the link has IPv4.
    pub route_localnet: Option<u32>,
    /// `net.ipv6.conf.<link>.accept_ra`, when the link has IPv6.
    pub accept_ra: Option<i32>,
}

impl Link {
    pub fn is_up(&self) -> bool {
        self.flags & IFF_UP != 0
    }

    pub fn parse(payload: &[u8]) -> Option<Link> {
        if payload.len() < 16 {
            return None;
        }
        let mut l = Link {
            index: IfIndex::from_ne_bytes(payload[4..8].try_into().ok()?),
            flags: u32::from_ne_bytes(payload[8..12].try_into().ok()?),
            ..Default::default()
        };
        for a in Attrs::new(&payload[16..]) {
            match a.ty {
                IFLA_IFNAME => l.name = a.str().to_string(),
                IFLA_ADDRESS if a.data.len() == 6 => l.mac = Mac(a.data.try_into().ok()?),
                IFLA_MTU => l.mtu = a.u32(),
                IFLA_MASTER => l.master = IfIndex::from_attr(a.u32()),
                IFLA_LINK => l.link = IfIndex::from_attr(a.u32()),
                IFLA_OPERSTATE => l.operstate = a.u8(),
                IFLA_TXQLEN => l.txqlen = a.u32(),
                IFLA_IFALIAS => l.alias = a.str().to_string(),
                IFLA_LINKINFO => {
                    if let Some(k) = a.attrs().get(IFLA_INFO_KIND) {
                        l.kind = k.str().to_string();
                    }
                    if l.kind == "vrf" {
                        let table = a.attrs().get(IFLA_INFO_DATA).and_then(|d| d.attrs().get(IFLA_VRF_TABLE));
                        l.vrf_table = table.map(|t| t.u32()).unwrap_or(0);
                    }
                }
                IFLA_AF_SPEC => {
                    for f in a.attrs() {
                        // Entry `i` of the family's settings array (host order).
                        let conf = |ty: u16, i: usize| -> Option<[u8; 4]> {
                            f.attrs().get(ty)?.data.get(i * 4..i * 4 + 4)?.try_into().ok()
                        };
                        match i32::from(f.ty) {
                            libc::AF_INET => {
                                l.route_localnet =
                                    conf(IFLA_INET_CONF, IPV4_DEVCONF_ROUTE_LOCALNET - 1).map(u32::from_ne_bytes);
                            }
                            libc::AF_INET6 => {
                                l.accept_ra = conf(IFLA_INET6_CONF, DEVCONF_ACCEPT_RA).map(i32::from_ne_bytes);
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        Some(l)
    }
}

const CREATE: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
const CHANGE: u16 = NLM_F_REQUEST | NLM_F_ACK;

// ---- request builders (pure) ----

pub fn get_by_name_msg(name: &str) -> MsgBuf {
    let mut m = MsgBuf::new(RTM_GETLINK, NLM_F_REQUEST);
    m.push(&ifinfomsg(0, IfIndex::NONE, 0, 0));
    m.put_str(IFLA_IFNAME, name);
    m.put_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
    m
}

pub fn get_by_index_msg(index: IfIndex) -> MsgBuf {
    let mut m = MsgBuf::new(RTM_GETLINK, NLM_F_REQUEST);
    m.push(&ifinfomsg(0, index, 0, 0));
    m.put_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
    m
}

/// A new link of any kind that is created by one plain RTM_NEWLINK (bridge,
/// macvlan, ipvlan, vlan, dummy, ifb): the generic request all of them share.
#[derive(Default)]
pub struct NewLink<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub mtu: u32,
    pub txqlen: u32,
    /// The lower device (IFLA_LINK) for macvlan, ipvlan, vlan.
    pub parent: IfIndex,
    pub mac: Option<Mac>,
    /// Create it directly in this namespace (IFLA_NET_NS_FD).
    pub netns: Option<RawFd>,
    pub up: bool,
    /// Kind-specific IFLA_INFO_DATA attributes, already in host byte order.
    pub data: &'a [(u16, &'a [u8])],
}

pub fn new_link_msg(l: &NewLink) -> MsgBuf {
    let mut m = MsgBuf::new(RTM_NEWLINK, CREATE);
    let f = if l.up { IFF_UP } else { 0 };
    m.push(&ifinfomsg(0, IfIndex::NONE, f, f));
    m.put_str(IFLA_IFNAME, l.name);
    if l.mtu > 0 {
        m.put_u32(IFLA_MTU, l.mtu);
    }
    if l.txqlen > 0 {
        m.put_u32(IFLA_TXQLEN, l.txqlen);
    }
    if l.parent.is_some() {
        m.put_u32(IFLA_LINK, l.parent.attr());
    }
    if let Some(mac) = l.mac {
        m.put(IFLA_ADDRESS, &mac.0);
    }
    if let Some(fd) = l.netns {
        m.put_u32(IFLA_NET_NS_FD, fd as u32);
    }
    let li = m.nest(IFLA_LINKINFO);
    m.put_str(IFLA_INFO_KIND, l.kind);
    if !l.data.is_empty() {
        let d = m.nest(IFLA_INFO_DATA);
        for (ty, v) in l.data {
            m.put(*ty, v);
        }
        m.end(d);
    }
    m.end(li);
    m
}

/// A bridge; given a MAC, it keeps that one (the kernel lets a bridge
/// created or set with an address of its own never follow its ports').
pub fn new_bridge_msg(name: &str, mtu: u32, vlan_filtering: bool, mac: Option<Mac>) -> MsgBuf {
    let data: &[(u16, &[u8])] = if vlan_filtering { &[(IFLA_BR_VLAN_FILTERING, &[1])] } else { &[] };
    new_link_msg(&NewLink { name, kind: "bridge", mtu, data, mac, ..Default::default() })
}

/// Both ends of a veth pair in one request, each in its namespace under its
/// final name: `host` here (enslaved to `master` when non-zero), `peer` in the
/// namespace `peer_ns`.
pub struct VethSpec<'a> {
    pub host: &'a str,
    pub master: IfIndex,
    pub mtu: u32,
    pub peer: &'a str,
    pub peer_ns: RawFd,
    pub peer_mac: Option<Mac>,
}

pub fn new_veth_msg(v: &VethSpec) -> MsgBuf {
    let mut m = MsgBuf::new(RTM_NEWLINK, CREATE);
    m.push(&ifinfomsg(0, IfIndex::NONE, 0, 0));
    m.put_str(IFLA_IFNAME, v.host);
    if v.mtu > 0 {
        m.put_u32(IFLA_MTU, v.mtu);
    }
    if v.master.is_some() {
        m.put_u32(IFLA_MASTER, v.master.attr());
    }
    let li = m.nest(IFLA_LINKINFO);
    m.put_str(IFLA_INFO_KIND, "veth");
    let d = m.nest(IFLA_INFO_DATA);
    let p = m.nest(VETH_INFO_PEER);
    m.push(&ifinfomsg(0, IfIndex::NONE, 0, 0));
    m.put_str(IFLA_IFNAME, v.peer);
    if v.mtu > 0 {
        m.put_u32(IFLA_MTU, v.mtu);
    }
    if let Some(mac) = v.peer_mac {
        m.put(IFLA_ADDRESS, &mac.0);
    }
    m.put_u32(IFLA_NET_NS_FD, v.peer_ns as u32);
    m.end(p);
    m.end(d);
    m.end(li);
    m
}

/// Set or clear interface flags (`IFF_UP`, `IFF_PROMISC`) given in `mask`.
pub fn set_flags_msg(index: IfIndex, flags: u32, mask: u32) -> MsgBuf {
    let mut m = MsgBuf::new(RTM_NEWLINK, CHANGE);
    m.push(&ifinfomsg(0, index, flags, mask));
    m
}

pub fn set_u32_msg(index: IfIndex, attr: u16, v: u32) -> MsgBuf {
    let mut m = MsgBuf::new(RTM_NEWLINK, CHANGE);
    m.push(&ifinfomsg(0, index, 0, 0));
    m.put_u32(attr, v);
    m
}

pub fn set_mac_msg(index: IfIndex, mac: Mac) -> MsgBuf {
    let mut m = MsgBuf::new(RTM_NEWLINK, CHANGE);
    m.push(&ifinfomsg(0, index, 0, 0));
    m.put(IFLA_ADDRESS, &mac.0);
    m
}

/// Set IPv4 settings of a link (`net.ipv4.conf.<link>.*`, by their
/// `IPV4_DEVCONF_*` number): written in a nest of one attribute per setting,
/// whereas the kernel reports them as one array.
pub fn set_inet_conf_msg(index: IfIndex, conf: &[(u16, u32)]) -> MsgBuf {
    let mut m = MsgBuf::new(RTM_NEWLINK, CHANGE);
    m.push(&ifinfomsg(0, index, 0, 0));
    let spec = m.nest(IFLA_AF_SPEC);
    let inet = m.nest(libc::AF_INET as u16);
    let c = m.nest(IFLA_INET_CONF);
    for (id, v) in conf {
        m.put_u32(*id, *v);
    }
    m.end(c);
    m.end(inet);
    m.end(spec);
    m
}

pub fn set_name_msg(index: IfIndex, name: &str) -> MsgBuf {
    let mut m = MsgBuf::new(RTM_NEWLINK, CHANGE);
    m.push(&ifinfomsg(0, index, 0, 0));
    m.put_str(IFLA_IFNAME, name);
    m
}

/// Bridge-port flags (hairpin, isolated) through `AF_BRIDGE` + nested
/// `IFLA_PROTINFO`; the bridge only parses PROTINFO as a nest when NLA_F_NESTED is set.
pub fn set_brport_msg(index: IfIndex, hairpin: bool, isolated: bool) -> MsgBuf {
    let mut m = MsgBuf::new(RTM_SETLINK, CHANGE);
    m.push(&ifinfomsg(libc::AF_BRIDGE as u8, index, 0, 0));
    let p = m.nest(IFLA_PROTINFO | NLA_F_NESTED);
    if hairpin {
        m.put_u8(IFLA_BRPORT_MODE, 1);
    }
    if isolated {
        m.put_u8(IFLA_BRPORT_ISOLATED, 1);
    }
    m.end(p);
    m
}

/// Add (`RTM_SETLINK`) or remove (`RTM_DELLINK`) VLANs `lo..=hi` on a bridge port.
pub fn bridge_vlan_msg(add: bool, index: IfIndex, lo: u16, hi: u16, pvid: bool, untagged: bool) -> MsgBuf {
    let mut m = MsgBuf::new(if add { RTM_SETLINK } else { RTM_DELLINK }, CHANGE);
    m.push(&ifinfomsg(libc::AF_BRIDGE as u8, index, 0, 0));
    let s = m.nest(IFLA_AF_SPEC);
    m.put_u16(IFLA_BRIDGE_FLAGS, BRIDGE_FLAGS_MASTER);
    let mut flags = 0;
    if pvid {
        flags |= BRIDGE_VLAN_INFO_PVID;
    }
    if untagged {
        flags |= BRIDGE_VLAN_INFO_UNTAGGED;
    }
    let info = |f: u16, vid: u16| {
        let mut b = [0u8; 4];
        b[0..2].copy_from_slice(&f.to_ne_bytes());
        b[2..4].copy_from_slice(&vid.to_ne_bytes());
        b
    };
    if lo == hi {
        m.put(IFLA_BRIDGE_VLAN_INFO, &info(flags, lo));
    } else {
        m.put(IFLA_BRIDGE_VLAN_INFO, &info(flags | BRIDGE_VLAN_INFO_RANGE_BEGIN, lo));
        m.put(IFLA_BRIDGE_VLAN_INFO, &info(flags | BRIDGE_VLAN_INFO_RANGE_END, hi));
    }
    m.end(s);
    m
}

/// Move a link into another namespace, optionally renaming it on the way.
pub fn move_msg(index: IfIndex, netns: RawFd, name: Option<&str>) -> MsgBuf {
    let mut m = MsgBuf::new(RTM_NEWLINK, CHANGE);
    m.push(&ifinfomsg(0, index, 0, 0));
    m.put_u32(IFLA_NET_NS_FD, netns as u32);
    if let Some(n) = name {
        m.put_str(IFLA_IFNAME, n);
    }
    m
}

pub fn set_alias_msg(index: IfIndex, alias: &str) -> MsgBuf {
    let mut m = MsgBuf::new(RTM_NEWLINK, CHANGE);
    m.push(&ifinfomsg(0, index, 0, 0));
    m.put_str(IFLA_IFALIAS, alias);
    m
}

pub fn del_msg(index: IfIndex) -> MsgBuf {
    let mut m = MsgBuf::new(RTM_DELLINK, CHANGE);
    m.push(&ifinfomsg(0, index, 0, 0));
    m
}

// ---- operations ----

impl Rtnl {
    /// The link called `name`, or None when there is none.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        match self.sock.get_with(get_by_name_msg(name), format_args!("look up link {name}"), Link::parse) {
            Ok(l) => Ok(l.flatten()),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn link_by_index(&mut self, index: IfIndex) -> Result<Option<Link>> {
        match self.sock.get_with(get_by_index_msg(index), format_args!("look up link #{index}"), Link::parse) {
            Ok(l) => Ok(l.flatten()),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn links(&mut self) -> Result<Vec<Link>> {
        let mut m = MsgBuf::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP);
        m.push(&ifinfomsg(0, IfIndex::NONE, 0, 0));
        Ok(self.sock.dump(m, "list links")?.iter().filter_map(|p| Link::parse(p)).collect())
    }

    pub fn create_bridge(&mut self, name: &str, mtu: u32, vlan_filtering: bool) -> Result<()> {
        self.create_bridge_with_mac(name, mtu, vlan_filtering, None)
    }

    /// A bridge that keeps `mac` whatever ports it gets.
    pub fn create_bridge_with_mac(&mut self, name: &str, mtu: u32, filtering: bool, mac: Option<Mac>) -> Result<()> {
        self.sock.request(new_bridge_msg(name, mtu, filtering, mac), format_args!("create bridge {name}"))
    }

    pub fn create_link(&mut self, l: &NewLink) -> Result<()> {
        self.sock.request(new_link_msg(l), format_args!("create {} link {}", l.kind, l.name))
    }

    pub fn create_veth(&mut self, v: &VethSpec) -> Result<()> {
        self.sock.request(new_veth_msg(v), format_args!("create veth pair {}/{}", v.host, v.peer))
    }

    pub fn set_up(&mut self, index: IfIndex, name: &str, up: bool) -> Result<()> {
        let what = if up { "set up" } else { "set down" };
        self.sock.request(set_flags_msg(index, if up { IFF_UP } else { 0 }, IFF_UP), format_args!("{what} {name}"))
    }

    pub fn set_promisc(&mut self, index: IfIndex, name: &str, on: bool) -> Result<()> {
        let f = if on { IFF_PROMISC } else { 0 };
        self.sock.request(set_flags_msg(index, f, IFF_PROMISC), format_args!("set promiscuous mode on {name}"))
    }

    pub fn set_flags(&mut self, index: IfIndex, name: &str, flags: u32, mask: u32) -> Result<()> {
        self.sock.request(set_flags_msg(index, flags, mask), format_args!("set flags {flags:#x}/{mask:#x} on {name}"))
    }

    pub fn set_u32(&mut self, index: IfIndex, name: &str, attr: u16, v: u32, what: &str) -> Result<()> {
        self.sock.request(set_u32_msg(index, attr, v), format_args!("set {what} {v} on {name}"))
    }

    pub fn set_master(&mut self, index: IfIndex, name: &str, master: IfIndex) -> Result<()> {
        self.sock.request(set_u32_msg(index, IFLA_MASTER, master.attr()), format_args!("attach {name} to its bridge"))
    }

    pub fn set_mtu(&mut self, index: IfIndex, name: &str, mtu: u32) -> Result<()> {
        self.sock.request(set_u32_msg(index, IFLA_MTU, mtu), format_args!("set MTU {mtu} on {name}"))
    }

    /// `net.ipv4.conf.<name>.*` over netlink: no walk of /proc/sys, whose
    /// first lookup in a new namespace costs 0.1-0.4 ms where namespaces
    /// come and go (one cached entry per namespace that ever looked).
    pub fn set_inet_conf(&mut self, index: IfIndex, name: &str, conf: &[(u16, u32)]) -> Result<()> {
        self.sock.request(set_inet_conf_msg(index, conf), format_args!("set IPv4 settings of {name}"))
    }

    pub fn set_mac(&mut self, index: IfIndex, name: &str, mac: Mac) -> Result<()> {
        self.sock.request(set_mac_msg(index, mac), format_args!("set MAC {mac} on {name}"))
    }

    pub fn set_brport(&mut self, index: IfIndex, name: &str, hairpin: bool, isolated: bool) -> Result<()> {
        self.sock.request(set_brport_msg(index, hairpin, isolated), format_args!("set bridge port flags on {name}"))
    }

    #[allow(clippy::too_many_arguments)] // mirrors one bridge_vlan_info entry field for field
    pub fn bridge_vlan(
        &mut self,
        add: bool,
        index: IfIndex,
        name: &str,
        lo: u16,
        hi: u16,
        pvid: bool,
        untagged: bool,
    ) -> Result<()> {
        let what = if add { "add" } else { "remove" };
        self.sock.request(
            bridge_vlan_msg(add, index, lo, hi, pvid, untagged),
            format_args!("{what} VLAN {lo}-{hi} on {name}"),
        )
    }

    /// VLAN ids configured on a bridge port, with their (pvid, untagged) flags.
    pub fn bridge_vlans(&mut self, index: IfIndex) -> Result<Vec<(u16, u16)>> {
        let mut m = MsgBuf::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP);
        m.push(&ifinfomsg(libc::AF_BRIDGE as u8, IfIndex::NONE, 0, 0));
        m.put_u32(IFLA_EXT_MASK, RTEXT_FILTER_BRVLAN);
        let mut out = Vec::new();
        for p in self.sock.dump(m, "list bridge VLANs")? {
            if p.len() < 16 || IfIndex::from_ne_bytes(p[4..8].try_into().unwrap_or([0; 4])) != index {
                continue;
            }
            if let Some(spec) = Attrs::new(&p[16..]).get(IFLA_AF_SPEC) {
                for a in spec.attrs().filter(|a| a.ty == IFLA_BRIDGE_VLAN_INFO && a.data.len() >= 4) {
                    out.push((u16::from_ne_bytes([a.data[0], a.data[1]]), u16::from_ne_bytes([a.data[2], a.data[3]])));
                }
            }
        }
        Ok(out)
    }

    pub fn rename(&mut self, index: IfIndex, from: &str, to: &str) -> Result<()> {
        self.sock.request(set_name_msg(index, to), format_args!("rename {from} to {to}"))
    }

    pub fn move_to_netns(&mut self, index: IfIndex, name: &str, netns: RawFd, rename: Option<&str>) -> Result<()> {
        self.sock.request(move_msg(index, netns, rename), format_args!("move {name} to another network namespace"))
    }

    pub fn set_alias(&mut self, index: IfIndex, name: &str, alias: &str) -> Result<()> {
        self.sock.request(set_alias_msg(index, alias), format_args!("set alias of {name}"))
    }

    pub fn delete_link(&mut self, index: IfIndex, name: &str) -> Result<()> {
        self.sock.request(del_msg(index), format_args!("delete link {name}"))
    }

    /// Wait until `index` reports operational state UP, listening for link
    /// notifications rather than sleeping; gives up after `timeout_ms`.
    pub fn wait_oper_up(&mut self, index: IfIndex, name: &str, timeout_ms: i32) -> Result<()> {
        // Usually up already: one look, and a watch only when it is not.
        let mut watch: Option<crate::netlink::Socket> = None;
        let deadline = now_ms() + timeout_ms as i64;
        let mut state;
        loop {
            // Looked at again after subscribing, so that no transition can fall between check and wait.
            let l = self.link_by_index(index)?.ok_or_else(|| Error::msg(format!("{name} vanished")))?;
            state = l.operstate;
            if state == IF_OPER_UP {
                return Ok(());
            }
            let Some(w) = watch.as_mut() else {
                watch = Some(crate::netlink::Socket::open_groups(libc::NETLINK_ROUTE, libc::RTMGRP_LINK as u32)?);
                continue;
            };
            let left = deadline - now_ms();
            if left <= 0 || !w.wait_readable(left as i32)? {
                break;
            }
            let mut seen = false;
            w.drain(|data| {
                for m in Msgs::new(data) {
                    if m.ty == RTM_NEWLINK {
                        if let Some(l) = Link::parse(m.payload) {
                            seen |= l.index == index && l.operstate == IF_OPER_UP;
                        }
                    }
                }
            })?;
            if seen {
                return Ok(());
            }
        }
        Err(Error::msg(format!("bridge port in error state: {}", operstate_name(state))).context(name))
    }
}

pub fn operstate_name(s: u8) -> &'static str {
    ["unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up"]
        .get(s as usize)
        .copied()
        .unwrap_or("unknown")
}

// Monotonic milliseconds since the first call: no time_t width (32 bits on
// armv7 and i686) or overflow to care about.
fn now_ms() -> i64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    i64::try_from(START.get_or_init(std::time::Instant::now).elapsed().as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::tests::{cat, nla};

    fn body(m: MsgBuf) -> Vec<u8> {
        m.finish(1)[16..].to_vec()
    }

    #[test]
    fn veth_pair_matches_reference_vector() {
        // Vector from shared/reference/peers-aesthetics.md §4 (netlink-packet-route
        // test_crate_veth layout, verified against kernel 6.18).
        let v = VethSpec { host: "vethab12", master: IfIndex(5), mtu: 1500, peer: "eth0", peer_ns: 7, peer_mac: None };
        let b = new_veth_msg(&v).finish(1);
        // (the reference's bytes are little-endian; header fields and u32
        // values here are in this machine's order, as the kernel reads them)
        let want = cat(&[
            &132u32.to_ne_bytes(),
            &0x10u16.to_ne_bytes(),
            &0x0605u16.to_ne_bytes(),
            &1u32.to_ne_bytes(),
            &[0; 4],
            &[0; 16], // ifinfomsg
            &nla(0x0d, 3),
            b"vethab12\0\0\0\0",
            &nla(8, 4),
            &1500u32.to_ne_bytes(),
            &nla(8, 0x0a),
            &5u32.to_ne_bytes(),
            &nla(0x44, 0x12), // LINKINFO
            &nla(9, 1),
            b"veth\0\0\0\0",
            &nla(0x34, 2), // INFO_DATA
            &nla(0x30, 1), // VETH_INFO_PEER
            &[0; 16],
            &nla(9, 3),
            b"eth0\0\0\0\0",
            &nla(8, 4),
            &1500u32.to_ne_bytes(),
            &nla(8, 0x1c),
            &7u32.to_ne_bytes(),
        ]);
        assert_eq!(b, want);
    }

    #[test]
    fn bridge_with_vlan_filtering() {
        let b = body(new_bridge_msg("cni0", 0, true, None));
        let mut want = vec![0u8; 16];
        want.extend_from_slice(&cat(&[&nla(9, 3), b"cni0\0\0\0\0"]));
        want.extend_from_slice(&cat(&[&nla(28, 18), &nla(11, 1), b"bridge\0\0"]));
        want.extend_from_slice(&cat(&[&nla(12, 2), &nla(5, 7), &[1, 0, 0, 0]]));
        assert_eq!(b, want);
        // with its own MAC: IFLA_ADDRESS before LINKINFO
        let b = body(new_bridge_msg("cni0", 0, false, Some(Mac([2, 0, 0, 0, 0, 9]))));
        assert_eq!(&b[28..40], &cat(&[&nla(10, 1), &[2, 0, 0, 0, 0, 9, 0, 0]]));
    }

    #[test]
    fn brport_flags_are_a_flagged_nest() {
        let b = body(set_brport_msg(IfIndex(9), true, true));
        assert_eq!(b[0], libc::AF_BRIDGE as u8);
        assert_eq!(&b[4..8], &9i32.to_ne_bytes());
        assert_eq!(&b[16..20], &nla(20, 0x800c));
        assert_eq!(&b[20..28], cat(&[&nla(5, 4), &[1, 0, 0, 0]]));
        assert_eq!(&b[28..36], cat(&[&nla(5, 33), &[1, 0, 0, 0]]));
    }

    #[test]
    fn vlan_range_uses_begin_end_pair() {
        let b = body(bridge_vlan_msg(true, IfIndex(3), 100, 200, false, false));
        // AF_SPEC { FLAGS master, INFO {begin,100}, INFO {end,200} }
        // bridge_vlan_info: flags and vid, u16 each
        assert_eq!(&b[16..20], &nla(28, 26));
        assert_eq!(&b[20..28], cat(&[&nla(6, 0), &1u16.to_ne_bytes(), &[0, 0]]));
        assert_eq!(&b[28..36], cat(&[&nla(8, 2), &8u16.to_ne_bytes(), &100u16.to_ne_bytes()]));
        assert_eq!(&b[36..40], &nla(8, 2));
        assert_eq!(&b[40..44], cat(&[&16u16.to_ne_bytes(), &200u16.to_ne_bytes()]));
        let single = body(bridge_vlan_msg(false, IfIndex(3), 7, 7, true, true));
        assert_eq!(&single[28..36], cat(&[&nla(8, 2), &6u16.to_ne_bytes(), &7u16.to_ne_bytes()]));
    }

    #[test]
    fn vrf_link_bytes_and_table_read_back() {
        let tb = 10u32.to_ne_bytes();
        let data: [(u16, &[u8]); 1] = [(IFLA_VRF_TABLE, &tb)];
        let mut b =
            new_link_msg(&NewLink { name: "vrf0", kind: "vrf", up: true, data: &data, ..Default::default() }).finish(1);
        assert_eq!(&b[16..32], &ifinfomsg(0, IfIndex::NONE, IFF_UP, IFF_UP));
        // LINKINFO { KIND "vrf", DATA { VRF_TABLE 10 } }
        assert_eq!(&b[44..64], cat(&[&nla(24, 18), &nla(8, 1), b"vrf\0", &nla(12, 2), &nla(8, 1)]));
        assert_eq!(&b[64..68], &10u32.to_ne_bytes());
        b[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
        let l = Link::parse(&b[16..]).unwrap();
        assert_eq!((l.name.as_str(), l.kind.as_str(), l.vrf_table), ("vrf0", "vrf", 10));
    }

    #[test]
    fn link_parse_reads_fields_and_skips_unknown() {
        let mut m = MsgBuf::new(RTM_NEWLINK, 0);
        m.push(&ifinfomsg(0, IfIndex(4), IFF_UP, 0));
        m.put(999, &[1, 2, 3]);
        m.put_str(IFLA_IFNAME, "cni0");
        m.put(IFLA_ADDRESS, &[2, 0, 0, 0, 0, 1]);
        m.put_u32(IFLA_MTU, 1450);
        m.put_u8(IFLA_OPERSTATE, IF_OPER_UP);
        let li = m.nest(IFLA_LINKINFO);
        m.put_str(IFLA_INFO_KIND, "bridge");
        m.end(li);
        let b = m.finish(1);
        let l = Link::parse(&b[16..]).unwrap();
        assert_eq!((l.index, l.name.as_str(), l.mtu, l.kind.as_str()), (IfIndex(4), "cni0", 1450, "bridge"));
        assert_eq!(l.mac.to_string(), "02:00:00:00:00:01");
        assert!(l.is_up());
        assert!(Link::parse(&[0; 8]).is_none());
        assert_eq!((l.route_localnet, l.accept_ra), (None, None));
    }

    #[test]
    fn link_parse_reads_route_localnet_and_accept_ra_from_af_spec() {
        let mut m = MsgBuf::new(RTM_NEWLINK, 0);
        m.push(&ifinfomsg(0, IfIndex(4), 0, 0));
        let spec = m.nest(IFLA_AF_SPEC);
        let v4 = m.nest(libc::AF_INET as u16);
        let mut conf = vec![0u8; 4 * 32];
        conf[(IPV4_DEVCONF_ROUTE_LOCALNET - 1) * 4..][..4].copy_from_slice(&1u32.to_ne_bytes());
        m.put(IFLA_INET_CONF, &conf);
        m.end(v4);
        let v6 = m.nest(libc::AF_INET6 as u16);
        m.put_u32(1, 0); // IFLA_INET6_FLAGS, skipped
        let mut conf6 = vec![0u8; 4 * 8];
        conf6[DEVCONF_ACCEPT_RA * 4..][..4].copy_from_slice(&2i32.to_ne_bytes());
        m.put(IFLA_INET6_CONF, &conf6);
        m.end(v6);
        m.end(spec);
        let b = m.finish(1);
        let l = Link::parse(&b[16..]).unwrap();
        assert_eq!((l.route_localnet, l.accept_ra), (Some(1), Some(2)));
        // an array too short to hold the entry says nothing
        let mut m = MsgBuf::new(RTM_NEWLINK, 0);
        m.push(&ifinfomsg(0, IfIndex(4), 0, 0));
        let spec = m.nest(IFLA_AF_SPEC);
        let v6 = m.nest(libc::AF_INET6 as u16);
        m.put(IFLA_INET6_CONF, &[0; 8]);
        m.end(v6);
        m.end(spec);
        let b = m.finish(1);
        assert_eq!(Link::parse(&b[16..]).unwrap().accept_ra, None);
    }

    #[test]
    fn inet_conf_is_a_nest_of_settings() {
        let b = body(set_inet_conf_msg(IfIndex(2), &[(IPV4_DEVCONF_ARP_NOTIFY, 1)]));
        assert_eq!(&b[..16], &ifinfomsg(0, IfIndex(2), 0, 0));
        // AF_SPEC { AF_INET { INET_CONF { ARP_NOTIFY: 1 } } }
        let want = cat(&[&nla(20, IFLA_AF_SPEC), &nla(16, 2), &nla(12, 1), &nla(8, 22), &1u32.to_ne_bytes()]);
        assert_eq!(&b[16..], &want);
    }

    #[test]
    fn lookups_leave_the_counters_out() {
        let b = body(get_by_name_msg("cni0"));
        assert_eq!(&b[16..28], &cat(&[&nla(9, 3), b"cni0\0\0\0\0"]));
        assert_eq!(&b[28..], &cat(&[&nla(8, IFLA_EXT_MASK), &8u32.to_ne_bytes()]));
        let b = body(get_by_index_msg(IfIndex(7)));
        assert_eq!(&b[4..8], &7i32.to_ne_bytes());
        assert_eq!(&b[16..], &cat(&[&nla(8, IFLA_EXT_MASK), &8u32.to_ne_bytes()]));
    }
}
