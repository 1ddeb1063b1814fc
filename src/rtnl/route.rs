//! Routes.

use super::{family, IfIndex, Rtnl, RTM_DELROUTE, RTM_GETROUTE, RTM_NEWROUTE};
use crate::error::Result;
use crate::net::{ip_from_octets, ip_octets, IpNet};
use crate::netlink::{Attrs, MsgBuf, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST};
use std::net::IpAddr;

pub const RTA_DST: u16 = 1;
pub const RTA_OIF: u16 = 4;
pub const RTA_GATEWAY: u16 = 5;
pub const RTA_PRIORITY: u16 = 6;
pub const RTA_PREFSRC: u16 = 7;
pub const RTA_METRICS: u16 = 8;
pub const RTA_TABLE: u16 = 15;
pub const RTAX_MTU: u16 = 2;
pub const RTAX_ADVMSS: u16 = 8;
pub const RT_TABLE_MAIN: u32 = 254;
pub const RTPROT_BOOT: u8 = 3;
pub const RT_SCOPE_UNIVERSE: u8 = 0;
pub const RT_SCOPE_LINK: u8 = 253;
/// In a delete request: match any scope.
pub const RT_SCOPE_NOWHERE: u8 = 255;
pub const RTN_UNICAST: u8 = 1;

#[derive(Clone, Default)]
pub struct Route {
    pub dst: Option<IpNet>,
    pub gw: Option<IpAddr>,
    pub oif: IfIndex,
    pub priority: u32,
    pub table: u32,
    pub scope: u8,
    pub mtu: u32,
    pub advmss: u32,
    /// Preferred source address (RTA_PREFSRC).
    pub src: Option<IpAddr>,
}

impl Route {
    pub fn parse(p: &[u8]) -> Option<Route> {
        if p.len() < 12 {
            return None;
        }
        let fam = p[0];
        let dst_len = p[1];
        let mut r = Route { table: p[4] as u32, scope: p[6], ..Default::default() };
        let mut dst = None;
        for a in Attrs::new(&p[12..]) {
            match a.ty {
                RTA_DST => dst = ip_from_octets(a.data),
                RTA_GATEWAY => r.gw = ip_from_octets(a.data),
                RTA_OIF => r.oif = IfIndex::from_attr(a.u32()),
                RTA_PRIORITY => r.priority = a.u32(),
                RTA_TABLE => r.table = a.u32(),
                RTA_PREFSRC => r.src = ip_from_octets(a.data),
                _ => {}
            }
        }
        let zero: IpAddr = if fam == libc::AF_INET as u8 { [0u8; 4].into() } else { [0u8; 16].into() };
        r.dst = IpNet::new(dst.unwrap_or(zero), dst_len);
        Some(r)
    }

    /// A default route (0.0.0.0/0 or ::/0).
    pub fn is_default(&self) -> bool {
        self.dst.map(|d| d.prefix == 0).unwrap_or(true)
    }
}

/// `struct rtmsg` (12 bytes).
pub fn rtmsg(fam: u8, dst_len: u8, table: u8, proto: u8, scope: u8, ty: u8) -> [u8; 12] {
    [fam, dst_len, 0, 0, table, proto, scope, ty, 0, 0, 0, 0]
}

/// RTM_NEWROUTE with CREATE but without EXCL: an identical route already
/// there is accepted, as the reference does (`RouteAddEcmp`).
pub fn add_msg(r: &Route, dst: &IpNet) -> MsgBuf {
    route_msg(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE, r, dst, RTPROT_BOOT, scope_of(r))
}

/// The route's own scope, else link scope for a device route and universe for one via a gateway.
fn scope_of(r: &Route) -> u8 {
    if r.scope != 0 {
        r.scope
    } else if r.gw.is_none() {
        RT_SCOPE_LINK
    } else {
        RT_SCOPE_UNIVERSE
    }
}

/// RTM_NEWROUTE that replaces a route with the same destination.
pub fn replace_msg(r: &Route, dst: &IpNet) -> MsgBuf {
    route_msg(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, r, dst, RTPROT_BOOT, scope_of(r))
}

/// RTM_DELROUTE matching any protocol and scope (so that it also finds the
/// routes the kernel adds itself for a connected subnet).
pub fn del_msg(r: &Route, dst: &IpNet) -> MsgBuf {
    route_msg(RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK, r, dst, 0, RT_SCOPE_NOWHERE)
}

/// RTM_GETROUTE for one destination: which route the kernel would use for `dst`.
pub fn get_msg(dst: &IpAddr) -> MsgBuf {
    let mut m = MsgBuf::new(RTM_GETROUTE, NLM_F_REQUEST);
    let octets = ip_octets(dst);
    m.push(&rtmsg(family(dst), if dst.is_ipv4() { 32 } else { 128 }, 0, 0, 0, 0));
    m.put(RTA_DST, &octets);
    m
}

fn route_msg(ty: u16, flags: u16, r: &Route, dst: &IpNet, proto: u8, scope: u8) -> MsgBuf {
    let table = if r.table == 0 { RT_TABLE_MAIN } else { r.table };
    let mut m = MsgBuf::new(ty, flags);
    m.push(&rtmsg(family(&dst.addr), dst.prefix, table.min(255) as u8, proto, scope, RTN_UNICAST));
    if table > 255 {
        m.put_u32(RTA_TABLE, table);
    }
    if dst.prefix > 0 {
        m.put(RTA_DST, &ip_octets(&dst.network().addr));
    }
    if let Some(gw) = r.gw {
        m.put(RTA_GATEWAY, &ip_octets(&gw));
    }
    if let Some(src) = r.src {
        m.put(RTA_PREFSRC, &ip_octets(&src));
    }
    if r.oif.is_some() {
        m.put_u32(RTA_OIF, r.oif.attr());
    }
    if r.priority > 0 {
        m.put_u32(RTA_PRIORITY, r.priority);
    }
    if r.mtu > 0 || r.advmss > 0 {
        let n = m.nest(RTA_METRICS);
        if r.mtu > 0 {
            m.put_u32(RTAX_MTU, r.mtu);
        }
        if r.advmss > 0 {
            m.put_u32(RTAX_ADVMSS, r.advmss);
        }
        m.end(n);
    }
    m
}

impl Rtnl {
    pub fn add_route(&mut self, r: &Route, dst: &IpNet, dev: &str) -> Result<()> {
        let via = r.gw.map(|g| format!(" via {g}")).unwrap_or_default();
        self.sock.request(add_msg(r, dst), format_args!("add route {dst}{via} dev {dev}"))
    }

    pub fn replace_route(&mut self, r: &Route, dst: &IpNet, dev: &str) -> Result<()> {
        self.sock.request(replace_msg(r, dst), format_args!("replace route {dst} dev {dev}"))
    }

    pub fn del_route(&mut self, r: &Route, dst: &IpNet, dev: &str) -> Result<()> {
        self.sock.request(del_msg(r, dst), format_args!("delete route {dst} dev {dev}"))
    }

    /// The route the kernel would take to `dst` (`ip route get`).
    pub fn route_get(&mut self, dst: &IpAddr) -> Result<Route> {
        let reply = self.sock.get(get_msg(dst), format_args!("look up route to {dst}"))?;
        Route::parse(&reply).ok_or_else(|| crate::error::Error::msg(format!("look up route to {dst}: short reply")))
    }

    /// All routes of one family in every table.
    pub fn routes(&mut self, fam: u8) -> Result<Vec<Route>> {
        let mut m = MsgBuf::new(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP);
        m.push(&rtmsg(fam, 0, 0, 0, 0, 0));
        Ok(self.sock.dump(m, "list routes")?.iter().filter_map(|p| Route::parse(p)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::tests::{cat, nla};

    #[test]
    fn default_route_via_gateway() {
        let r = Route { gw: Some("10.1.0.1".parse().unwrap()), oif: IfIndex(2), ..Default::default() };
        let b = add_msg(&r, &"0.0.0.0/0".parse().unwrap()).finish(1);
        assert_eq!(&b[4..8], cat(&[&24u16.to_ne_bytes(), &0x0405u16.to_ne_bytes()]));
        assert_eq!(&b[16..28], &[2, 0, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0]);
        assert_eq!(&b[28..36], cat(&[&nla(8, 5), &[10, 1, 0, 1]]));
        assert_eq!(&b[36..44], cat(&[&nla(8, 4), &2u32.to_ne_bytes()]));
        assert_eq!(b.len(), 44);
    }

    #[test]
    fn delete_matches_any_protocol_and_scope() {
        let r = Route { oif: IfIndex(2), ..Default::default() };
        let b = del_msg(&r, &"10.9.8.0/24".parse().unwrap()).finish(1);
        assert_eq!(&b[4..6], &RTM_DELROUTE.to_ne_bytes());
        assert_eq!(&b[16..24], &[2, 24, 0, 0, 254, 0, RT_SCOPE_NOWHERE, 1]);
    }

    #[test]
    fn route_get_asks_for_one_host() {
        let b = get_msg(&"10.9.8.7".parse().unwrap()).finish(1);
        assert_eq!(&b[4..6], &RTM_GETROUTE.to_ne_bytes());
        assert_eq!(&b[6..8], &NLM_F_REQUEST.to_ne_bytes());
        assert_eq!(&b[16..28], &[2, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[28..32], &[8u16.to_ne_bytes(), RTA_DST.to_ne_bytes()].concat()[..]);
        assert_eq!(&b[32..36], &[10, 9, 8, 7]);
        assert_eq!(b.len(), 36);
        let b = get_msg(&"fd00::1".parse().unwrap()).finish(1);
        assert_eq!(&b[16..18], &[10, 128]);
        assert_eq!(&b[28..32], &[20u16.to_ne_bytes(), RTA_DST.to_ne_bytes()].concat()[..]);
    }

    #[test]
    fn link_route_gets_link_scope_and_masked_dst() {
        let r = Route { oif: IfIndex(2), priority: 100, ..Default::default() };
        let b = add_msg(&r, &"10.9.8.7/24".parse().unwrap()).finish(1);
        assert_eq!(b[16 + 1], 24);
        assert_eq!(b[16 + 6], RT_SCOPE_LINK);
        assert_eq!(&b[28..36], cat(&[&nla(8, 1), &[10, 9, 8, 0]]));
        assert_eq!(&b[44..52], cat(&[&nla(8, 6), &100u32.to_ne_bytes()]));
    }
}
