//! Policy routing rules (`ip rule`): the source-based rules of the sbr plugin.

use super::{family, Rtnl};
use crate::error::Result;
use crate::net::{ip_from_octets, ip_octets, IpNet};
use crate::netlink::{Attrs, MsgBuf, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST};

pub const RTM_NEWRULE: u16 = 32;
pub const RTM_DELRULE: u16 = 33;
pub const RTM_GETRULE: u16 = 34;
const FRA_SRC: u16 = 2;
const FRA_PRIORITY: u16 = 6;
const FRA_TABLE: u16 = 15;
const FR_ACT_TO_TBL: u8 = 1;

#[derive(Clone)]
pub struct Rule {
    pub family: u8,
    pub src: Option<IpNet>,
    pub table: u32,
    pub priority: u32,
}

impl Rule {
    pub fn parse(p: &[u8]) -> Option<Rule> {
        let h = p.get(0..12)?;
        let mut r = Rule { family: h[0], src: None, table: h[4] as u32, priority: 0 };
        let src_len = h[2];
        for a in Attrs::new(&p[12..]) {
            match a.ty {
                FRA_SRC => r.src = ip_from_octets(a.data).and_then(|ip| IpNet::new(ip, src_len)),
                FRA_TABLE => r.table = a.u32(),
                FRA_PRIORITY => r.priority = a.u32(),
                _ => {}
            }
        }
        Some(r)
    }
}

/// `struct fib_rule_hdr` (12 bytes) for "lookup table" rules.
fn hdr(fam: u8, src_len: u8, table: u32) -> [u8; 12] {
    [fam, 0, src_len, 0, table.min(255) as u8, 0, 0, FR_ACT_TO_TBL, 0, 0, 0, 0]
}

/// `from <src> lookup <table>` (the kernel picks the priority).
pub fn add_msg(src: &IpNet, table: u32) -> MsgBuf {
    let mut m = MsgBuf::new(RTM_NEWRULE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
    m.push(&hdr(family(&src.addr), src.prefix, table));
    m.put(FRA_SRC, &ip_octets(&src.addr));
    m.put_u32(FRA_TABLE, table);
    m
}

pub fn del_msg(r: &Rule) -> MsgBuf {
    let mut m = MsgBuf::new(RTM_DELRULE, NLM_F_REQUEST | NLM_F_ACK);
    m.push(&hdr(r.family, r.src.map(|s| s.prefix).unwrap_or(0), r.table));
    if let Some(s) = r.src {
        m.put(FRA_SRC, &ip_octets(&s.addr));
    }
    m.put_u32(FRA_TABLE, r.table);
    if r.priority > 0 {
        m.put_u32(FRA_PRIORITY, r.priority);
    }
    m
}

impl Rtnl {
    pub fn add_rule(&mut self, src: &IpNet, table: u32) -> Result<()> {
        self.sock.request(add_msg(src, table), format_args!("add rule from {src} lookup {table}"))
    }

    pub fn del_rule(&mut self, r: &Rule) -> Result<()> {
        let from = r.src.map(|s| s.to_string()).unwrap_or_else(|| "all".into());
        self.sock.request(del_msg(r), format_args!("delete rule from {from} lookup {}", r.table))
    }

    /// Rules of both families.
    pub fn rules(&mut self) -> Result<Vec<Rule>> {
        let mut out = Vec::new();
        for fam in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
            let mut m = MsgBuf::new(RTM_GETRULE, NLM_F_REQUEST | NLM_F_DUMP);
            m.push(&hdr(fam, 0, 0));
            out.extend(self.sock.dump(m, "list rules")?.iter().filter_map(|p| Rule::parse(p)));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::tests::{cat, nla};

    #[test]
    fn rule_bytes_and_round_trip() {
        let b = add_msg(&"10.1.2.3/32".parse().unwrap(), 100).finish(1);
        assert_eq!(&b[4..8], cat(&[&32u16.to_ne_bytes(), &0x0605u16.to_ne_bytes()]));
        assert_eq!(&b[16..28], &[2, 0, 32, 0, 100, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(&b[28..36], cat(&[&nla(8, 2), &[10, 1, 2, 3]]));
        assert_eq!(&b[36..44], cat(&[&nla(8, 15), &100u32.to_ne_bytes()]));
        let r = Rule::parse(&b[16..]).unwrap();
        assert_eq!((r.src.unwrap().to_string(), r.table), ("10.1.2.3/32".to_string(), 100));
        let big = add_msg(&"fd00::1/128".parse().unwrap(), 1000).finish(1);
        assert_eq!(big[16 + 4], 255);
        assert_eq!(Rule::parse(&big[16..]).unwrap().table, 1000);
    }
}
