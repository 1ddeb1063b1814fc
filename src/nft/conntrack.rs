//! Deleting conntrack entries over ctnetlink. A UDP "connection" to a host
//! port that existed before the port was mapped keeps its old translation
//! until it times out, so traffic keeps going to the old place; portmap
//! deletes those entries right after mapping the port, as the reference does.

use crate::error::Result;
use crate::netlink::{Attrs, MsgBuf, NLA_F_NESTED, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;
const CTA_FILTER: u16 = 25;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_FILTER_ORIG_FLAGS: u16 = 1;
const CTA_FILTER_F_CTA_PROTO_NUM: u32 = 1 << 3;

/// The dump request: entries of `family` (AF_INET/AF_INET6) and, on kernels
/// that filter dumps (5.8+; older ones ignore the attribute), of `proto` only.
pub fn dump_msg(family: u8, proto: u8) -> MsgBuf {
    let mut m = MsgBuf::new((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP);
    m.push(&[family, 0, 0, 0]);
    let t = m.nest(CTA_TUPLE_ORIG | NLA_F_NESTED);
    let p = m.nest(CTA_TUPLE_PROTO | NLA_F_NESTED);
    m.put_u8(CTA_PROTO_NUM, proto);
    m.end(p);
    m.end(t);
    let f = m.nest(CTA_FILTER | NLA_F_NESTED);
    m.put_u32(CTA_FILTER_ORIG_FLAGS, CTA_FILTER_F_CTA_PROTO_NUM);
    m.end(f);
    m
}

/// The original tuple's protocol and destination port of a dumped entry.
fn orig_proto_dport(entry: &[u8]) -> Option<(u8, u16)> {
    let t = Attrs::new(entry.get(4..)?).get(CTA_TUPLE_ORIG)?;
    let p = t.attrs().get(CTA_TUPLE_PROTO)?.attrs();
    let port = p.get(CTA_PROTO_DST_PORT)?.data;
    Some((p.get(CTA_PROTO_NUM)?.u8(), u16::from_be_bytes([*port.first()?, *port.get(1)?])))
}

/// A delete naming the entry exactly as the kernel described it: its
/// original tuple, zone and id (an entry recreated meanwhile has another id
/// and is left alone).
fn delete_msg(family: u8, entry: &[u8]) -> MsgBuf {
    let mut m = MsgBuf::new((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK);
    m.push(&[family, 0, 0, 0]);
    for a in Attrs::new(entry.get(4..).unwrap_or(&[])) {
        match a.ty {
            CTA_TUPLE_ORIG => {
                m.put(CTA_TUPLE_ORIG | NLA_F_NESTED, a.data);
            }
            CTA_ZONE | CTA_ID => {
                m.put(a.ty, a.data);
            }
            _ => {}
        }
    }
    m
}

/// Delete the entries of `proto` in `family` whose original destination port
/// is one of `ports`; returns how many went. Entries that vanish meanwhile
/// are not an error.
pub fn delete_by_dport(family: u8, proto: u8, ports: &[u16]) -> Result<usize> {
    if ports.is_empty() {
        return Ok(0);
    }
    // ctnetlink shares the netfilter socket (and its keeper) with nftables:
    // releasing a socket of our own would wait for nf_tables just the same.
    let mut nft = super::Nft::open()?;
    let entries = nft.dump(dump_msg(family, proto), format_args!("conntrack: list entries"))?;
    let sock = nft.sock();
    let mut n = 0;
    for e in &entries {
        match orig_proto_dport(e) {
            Some((p, port)) if p == proto && ports.contains(&port) => {}
            _ => continue,
        }
        match sock.request(delete_msg(family, e), format_args!("conntrack: delete entry to port")) {
            Err(err) if !err.is_not_found() => return Err(err),
            _ => n += 1,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::tests::{cat, nla};

    #[test]
    fn dump_request_filters_by_protocol() {
        let b = dump_msg(2, 17).finish(1);
        assert_eq!(&b[4..8], cat(&[&0x0101u16.to_ne_bytes(), &0x0301u16.to_ne_bytes()])); // CT_GET, REQUEST|DUMP
        let want = cat(&[
            &[2, 0, 0, 0],
            &nla(16, 0x8001),
            &nla(12, 0x8002),
            &nla(5, 1),
            &[17, 0, 0, 0],
            &nla(12, 0x8019),
            &nla(8, 1),
            &8u32.to_ne_bytes(),
        ]);
        assert_eq!(&b[16..], want);
    }

    #[test]
    fn delete_copies_tuple_zone_and_id_only() {
        // nfgenmsg, then ORIG { PROTO { NUM=17, DPORT=53 } }, STATUS (skipped), ID
        let entry = cat(&[
            &[2, 0, 0, 0],
            &nla(24, 0x8001),
            &nla(20, 0x8002),
            &nla(5, 1),
            &[17, 0, 0, 0],
            &nla(6, 3),
            &[0, 53, 0, 0],
            &nla(8, 3),
            &[0, 0, 0, 8],
            &nla(8, 12),
            &[0, 0, 0, 7],
        ]);
        assert_eq!(orig_proto_dport(&entry), Some((17, 53)));
        let b = delete_msg(2, &entry).finish(9);
        assert_eq!(&b[4..8], cat(&[&0x0102u16.to_ne_bytes(), &0x0005u16.to_ne_bytes()]));
        assert_eq!(&b[16..20], &[2, 0, 0, 0]);
        assert_eq!(&b[20..44], &entry[4..28]);
        assert_eq!(&b[44..52], cat(&[&nla(8, 12), &[0, 0, 0, 7]]));
        assert_eq!(b.len(), 52);
    }
}
