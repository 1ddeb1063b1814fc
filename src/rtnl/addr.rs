//! Interface addresses.

use super::{family, IfIndex, Rtnl, RTM_DELADDR, RTM_GETADDR, RTM_NEWADDR};
use crate::error::Result;
use crate::net::{ip_from_octets, ip_octets, IpNet};
use crate::netlink::{Attrs, MsgBuf, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST};

pub const IFA_ADDRESS: u16 = 1;
pub const IFA_LOCAL: u16 = 2;
pub const IFA_BROADCAST: u16 = 4;
pub const IFA_FLAGS: u16 = 8;
pub const IFA_F_NODAD: u32 = 0x02;
pub const IFA_F_DADFAILED: u32 = 0x08;
pub const IFA_F_TENTATIVE: u32 = 0x40;
pub const RT_SCOPE_UNIVERSE: u8 = 0;
pub const RT_SCOPE_HOST: u8 = 254;

/// `struct ifaddrmsg` (8 bytes).
pub fn ifaddrmsg(fam: u8, prefix: u8, scope: u8, index: IfIndex) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = fam;
    b[1] = prefix;
    b[3] = scope;
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b
}

#[derive(Clone)]
pub struct Addr {
    pub index: IfIndex,
    pub net: IpNet,
    pub scope: u8,
    pub flags: u32,
}

impl Addr {
    pub fn parse(p: &[u8]) -> Option<Addr> {
        if p.len() < 8 {
            return None;
        }
        let mut flags = p[2] as u32;
        let (mut local, mut address) = (None, None);
        for a in Attrs::new(&p[8..]) {
            match a.ty {
                IFA_LOCAL => local = ip_from_octets(a.data),
                IFA_ADDRESS => address = ip_from_octets(a.data),
                IFA_FLAGS => flags = a.u32(),
                _ => {}
            }
        }
        let ip = local.or(address)?;
        Some(Addr {
            index: IfIndex::from_ne_bytes(p[4..8].try_into().ok()?),
            net: IpNet::new(ip, p[1])?,
            scope: p[3],
            flags,
        })
    }
}

pub fn add_msg(index: IfIndex, net: &IpNet, nodad: bool) -> MsgBuf {
    let mut m = MsgBuf::new(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
    m.push(&ifaddrmsg(family(&net.addr), net.prefix, RT_SCOPE_UNIVERSE, index));
    let a = ip_octets(&net.addr);
    m.put(IFA_LOCAL, &a);
    m.put(IFA_ADDRESS, &a);
    // /31 and /32 have no broadcast address (RFC 3021).
    if net.addr.is_ipv4() && net.prefix < 31 {
        m.put(IFA_BROADCAST, &ip_octets(&net.last()));
    }
    if nodad {
        m.put_u32(IFA_FLAGS, IFA_F_NODAD);
    }
    m
}

pub fn del_msg(index: IfIndex, net: &IpNet) -> MsgBuf {
    let mut m = MsgBuf::new(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK);
    m.push(&ifaddrmsg(family(&net.addr), net.prefix, 0, index));
    m.put(IFA_LOCAL, &ip_octets(&net.addr));
    m
}

impl Rtnl {
    pub fn add_addr(&mut self, index: IfIndex, ifname: &str, net: &IpNet, nodad: bool) -> Result<()> {
        self.sock.request(add_msg(index, net, nodad), format_args!("add address {net} to {ifname}"))
    }

    pub fn del_addr(&mut self, index: IfIndex, ifname: &str, net: &IpNet) -> Result<()> {
        self.sock.request(del_msg(index, net), format_args!("remove address {net} from {ifname}"))
    }

    /// Addresses of one link (`index` > 0) or of all links, of one family (0 = both).
    pub fn addrs(&mut self, index: IfIndex, fam: u8) -> Result<Vec<Addr>> {
        let mut m = MsgBuf::new(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP);
        m.push(&ifaddrmsg(fam, 0, 0, IfIndex::NONE));
        let all = self.sock.dump(m, "list addresses")?;
        Ok(all.iter().filter_map(|p| Addr::parse(p)).filter(|a| !index.is_some() || a.index == index).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::tests::{cat, nla};

    #[test]
    fn v4_address_has_local_address_and_broadcast() {
        let b = add_msg(IfIndex(3), &"10.1.0.5/16".parse().unwrap(), false).finish(1);
        assert_eq!(&b[4..8], cat(&[&20u16.to_ne_bytes(), &0x0605u16.to_ne_bytes()]));
        assert_eq!(&b[16..24], cat(&[&[2, 16, 0, 0], &3u32.to_ne_bytes()]));
        assert_eq!(&b[24..32], cat(&[&nla(8, 2), &[10, 1, 0, 5]]));
        assert_eq!(&b[32..40], cat(&[&nla(8, 1), &[10, 1, 0, 5]]));
        assert_eq!(&b[40..48], cat(&[&nla(8, 4), &[10, 1, 255, 255]]));
        assert_eq!(b.len(), 48);
    }

    #[test]
    fn v6_address_with_nodad() {
        let b = add_msg(IfIndex(3), &"fd00::5/64".parse().unwrap(), true).finish(1);
        assert_eq!(b[16], libc::AF_INET6 as u8);
        assert_eq!(&b[24..28], &nla(20, 2));
        assert_eq!(&b[64..72], cat(&[&nla(8, 8), &2u32.to_ne_bytes()]));
        assert_eq!(b.len(), 72);
    }

    #[test]
    fn parse_prefers_local_and_reads_flags() {
        let mut m = MsgBuf::new(RTM_NEWADDR, 0);
        m.push(&ifaddrmsg(10, 64, 0, IfIndex(2)));
        m.put(IFA_ADDRESS, &ip_octets(&"fd00::9".parse().unwrap()));
        m.put_u32(IFA_FLAGS, IFA_F_TENTATIVE);
        let b = m.finish(1);
        let a = Addr::parse(&b[16..]).unwrap();
        assert_eq!(a.net.to_string(), "fd00::9/64");
        assert_eq!(a.flags, IFA_F_TENTATIVE);
        assert_eq!(a.index, IfIndex(2));
    }
}
