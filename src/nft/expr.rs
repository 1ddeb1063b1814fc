//! nf_tables expressions: one enum, one encoder, and the few matches cnibox
//! composes from them. Every load goes to register 1 (the only exception is
//! the DNAT port, register 2), so the enum carries no register numbers.
//!
//! The encodings follow `nft` 1.0.6 byte for byte (attribute order included,
//! checked by the golden tests in `nft::tests`), so `nft list` prints our rules
//! exactly as if they had been typed, e.g. a prefix that ends on a byte
//! boundary is a shorter payload load, others are a full load and a bitwise mask.

use crate::net::{ip_octets, IpNet};
use crate::netlink::{MsgBuf, NLA_F_NESTED};

const N: u16 = NLA_F_NESTED;

const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
pub const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_LOOKUP_SET: u16 = 1;
const NFTA_LOOKUP_SREG: u16 = 2;
const NFTA_LOOKUP_SET_ID: u16 = 4;

pub const NFT_CMP_EQ: u32 = 0;
pub const NFT_CMP_NEQ: u32 = 1;

pub const NFT_PAYLOAD_LL_HEADER: u32 = 0;
pub const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
pub const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;

pub const NFT_META_IIFNAME: u32 = 6;
pub const NFT_META_NFPROTO: u32 = 15;
pub const NFT_META_L4PROTO: u32 = 16;

pub const NFT_CT_STATE: u32 = 0;
pub const NFT_CT_STATUS: u32 = 2;
/// `ct state` bits: established, related.
pub const CT_ESTABLISHED_RELATED: u32 = (1 << 1) | (1 << 2);
/// `ct status` bit: the connection's destination was translated.
pub const IPS_DST_NAT: u32 = 1 << 5;
pub const NFTA_FIB_F_DADDR: u32 = 2;
pub const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const RTN_LOCAL: u32 = 2;

pub const NF_DROP: i32 = 0;
pub const NF_ACCEPT: i32 = 1;
pub const NFT_JUMP: i32 = -3;
pub const NFT_GOTO: i32 = -4;
pub const NFT_RETURN: i32 = -5;

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_SCTP: u8 = 132;

const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;

/// Register contents of up to 16 bytes (an IPv6 address is the longest value
/// cnibox compares), kept inline so that rule shapes need no allocation per value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Data {
    len: u8,
    b: [u8; 16],
}

impl Data {
    pub fn new(bytes: &[u8]) -> Data {
        let mut b = [0; 16];
        let len = bytes.len().min(16);
        b[..len].copy_from_slice(&bytes[..len]);
        Data { len: len as u8, b }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.b[..self.len as usize]
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Expr<'a> {
    /// `meta load <key> => reg 1`
    Meta(u32),
    /// `payload load <len>b @ <base> + <offset> => reg 1`
    Payload(u32, u32, u32),
    /// `bitwise reg 1 = (reg 1 & mask) ^ 0`
    Bitwise(Data),
    /// `cmp <op> reg 1 <data>`
    Cmp(u32, Data),
    /// `fib <flags> <result> => reg 1`
    Fib(u32, u32),
    /// `ct load <key> => reg 1`
    Ct(u32),
    /// `immediate reg <n> <data>`
    Imm(u32, Data),
    /// A verdict; the chain is "" except for jump and goto.
    Verdict(i32, &'a str),
    Masq,
    /// `nat dnat ip|ip6 addr_min reg 1 proto_min reg 2`; true for IPv6.
    Dnat(bool),
    /// `lookup reg 1 set <name>`, with the set's batch id (`Batch::add_set`;
    /// 0 sends none): the kernel finds the set by name, or by the id while
    /// the set is still being created in the same batch.
    Lookup(&'a str, u32),
}

impl Expr<'_> {
    fn name(&self) -> &'static str {
        match self {
            Expr::Meta(_) => "meta",
            Expr::Payload(..) => "payload",
            Expr::Bitwise(_) => "bitwise",
            Expr::Cmp(..) => "cmp",
            Expr::Fib(..) => "fib",
            Expr::Ct(_) => "ct",
            Expr::Imm(..) | Expr::Verdict(..) => "immediate",
            Expr::Masq => "masq",
            Expr::Dnat(_) => "nat",
            Expr::Lookup(..) => "lookup",
        }
    }
}

fn put_data(m: &mut MsgBuf, ty: u16, d: &[u8]) {
    let n = m.nest(ty | N);
    m.put(NFTA_DATA_VALUE, d);
    m.end(n);
}

/// Append one expression as an `NFTA_LIST_ELEM` of a rule's expression list.
pub fn put(m: &mut MsgBuf, e: &Expr) {
    let elem = m.nest(NFTA_LIST_ELEM | N);
    m.put_str(NFTA_EXPR_NAME, e.name());
    let data = m.nest(NFTA_EXPR_DATA | N);
    match *e {
        Expr::Meta(key) => {
            m.put_be32(2, key).put_be32(1, 1); // KEY, DREG
        }
        Expr::Payload(base, off, len) => {
            m.put_be32(1, 1).put_be32(2, base).put_be32(3, off).put_be32(4, len);
            // DREG BASE OFFSET LEN
        }
        Expr::Bitwise(mask) => {
            let len = mask.len as u32;
            m.put_be32(1, 1).put_be32(2, 1).put_be32(3, len); // SREG DREG LEN
            put_data(m, 4, mask.bytes());
            put_data(m, 5, &[0; 16][..len as usize]); // XOR
        }
        Expr::Cmp(op, d) => {
            m.put_be32(1, 1).put_be32(2, op); // SREG OP
            put_data(m, 3, d.bytes());
        }
        Expr::Fib(flags, result) => {
            m.put_be32(3, flags).put_be32(2, result).put_be32(1, 1); // FLAGS RESULT DREG
        }
        Expr::Ct(key) => {
            m.put_be32(2, key).put_be32(1, 1); // KEY DREG
        }
        Expr::Imm(reg, d) => {
            m.put_be32(1, reg);
            put_data(m, 2, d.bytes());
        }
        Expr::Verdict(code, chain) => {
            m.put_be32(1, 0); // DREG = verdict register
            let d = m.nest(2 | N);
            let v = m.nest(NFTA_DATA_VERDICT | N);
            m.put_be32(NFTA_VERDICT_CODE, code as u32);
            if !chain.is_empty() {
                m.put_str(NFTA_VERDICT_CHAIN, chain);
            }
            m.end(v);
            m.end(d);
        }
        Expr::Masq => {}
        Expr::Dnat(v6) => {
            let fam = if v6 { NFPROTO_IPV6 } else { NFPROTO_IPV4 };
            // TYPE=dnat FAMILY ADDR_MIN=reg1 PROTO_MIN=reg2 FLAGS=PROTO_SPECIFIED
            m.put_be32(1, 1).put_be32(2, fam as u32).put_be32(3, 1).put_be32(5, 2).put_be32(7, 2);
        }
        Expr::Lookup(set, id) => {
            m.put_be32(NFTA_LOOKUP_SREG, 1).put_str(NFTA_LOOKUP_SET, set);
            if id != 0 {
                m.put_be32(NFTA_LOOKUP_SET_ID, id);
            }
        }
    }
    m.end(data);
    m.end(elem);
}

/// The first bytes of every `cmp` in an encoded expression list (a rule read
/// back from the kernel): enough to tell which addresses and ports it matches.
pub fn cmp_values(exprs: &[u8]) -> Vec<&[u8]> {
    use crate::netlink::Attrs;
    let mut out = Vec::new();
    for elem in Attrs::new(exprs) {
        let a = elem.attrs();
        if a.get(NFTA_EXPR_NAME).map(|n| n.str()) != Some("cmp") {
            continue;
        }
        if let Some(v) =
            a.get(NFTA_EXPR_DATA).and_then(|d| d.attrs().get(3)).and_then(|d| d.attrs().get(NFTA_DATA_VALUE))
        {
            out.push(v.data);
        }
    }
    out
}

/// Each set an encoded expression list (a rule read back) looks up, with
/// the offset of the payload load before it: `(16, "s")` is `ip daddr @s`
/// (`(24, "s")` its IPv6 form), `(12, "s")` is `ip saddr @s`.
pub fn lookups(exprs: &[u8]) -> Vec<(u32, &str)> {
    use crate::netlink::Attrs;
    let mut out = Vec::new();
    let mut off = None;
    for elem in Attrs::new(exprs) {
        let a = elem.attrs();
        let data = a.get(NFTA_EXPR_DATA).map(|d| d.attrs());
        match (a.get(NFTA_EXPR_NAME).map(|n| n.str()), data) {
            (Some("payload"), Some(d)) => off = d.get(NFTA_PAYLOAD_OFFSET).map(|o| o.be32()),
            (Some("lookup"), Some(d)) => out.extend(off.zip(d.get(NFTA_LOOKUP_SET).map(|s| s.str()))),
            _ => {}
        }
    }
    out
}

// ---- matches, each appending the expressions `nft` would generate ----

/// `ip|ip6 saddr|daddr ==|!= <net>`. In an inet table nft first matches the
/// family (`meta nfproto`), which `inet` must say.
pub fn addr(v: &mut Vec<Expr>, inet: bool, src: bool, net: &IpNet, op: u32) {
    let v4 = net.is_ipv4();
    if inet {
        nfproto(v, v4);
    }
    let (off, len) = addr_field(v4, src);
    let len = len as usize;
    let bytes = ip_octets(&net.network().addr);
    let p = net.prefix as usize;
    if p == len * 8 {
        v.push(Expr::Payload(NFT_PAYLOAD_NETWORK_HEADER, off, len as u32));
        v.push(Expr::Cmp(op, Data::new(&bytes)));
    } else if p.is_multiple_of(8) && p > 0 {
        v.push(Expr::Payload(NFT_PAYLOAD_NETWORK_HEADER, off, (p / 8) as u32));
        v.push(Expr::Cmp(op, Data::new(&bytes[..p / 8])));
    } else {
        let mask = (net.mask() << (128 - len * 8)).to_be_bytes();
        v.push(Expr::Payload(NFT_PAYLOAD_NETWORK_HEADER, off, len as u32));
        v.push(Expr::Bitwise(Data::new(&mask[..len])));
        v.push(Expr::Cmp(op, Data::new(&bytes)));
    }
}

/// Offset and length of the IPv4 or IPv6 source or destination address in its header.
pub fn addr_field(v4: bool, src: bool) -> (u32, u32) {
    match (v4, src) {
        (true, true) => (12, 4),
        (true, false) => (16, 4),
        (false, true) => (8, 16),
        (false, false) => (24, 16),
    }
}

/// `ip|ip6 saddr|daddr @<set>` (`id` as in `Expr::Lookup`), after `meta
/// nfproto` in an inet table.
pub fn addr_in_set<'a>(v: &mut Vec<Expr<'a>>, inet: bool, v4: bool, src: bool, set: &'a str, id: u32) {
    if inet {
        nfproto(v, v4);
    }
    let (off, len) = addr_field(v4, src);
    v.push(Expr::Payload(NFT_PAYLOAD_NETWORK_HEADER, off, len));
    v.push(Expr::Lookup(set, id));
}

pub fn nfproto(v: &mut Vec<Expr>, v4: bool) {
    v.push(Expr::Meta(NFT_META_NFPROTO));
    v.push(Expr::Cmp(NFT_CMP_EQ, Data::new(&[if v4 { NFPROTO_IPV4 } else { NFPROTO_IPV6 }])));
}

/// `tcp|udp|sctp dport <port>`
pub fn dport(v: &mut Vec<Expr>, proto: u8, port: u16) {
    v.push(Expr::Meta(NFT_META_L4PROTO));
    v.push(Expr::Cmp(NFT_CMP_EQ, Data::new(&[proto])));
    v.push(Expr::Payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2));
    v.push(Expr::Cmp(NFT_CMP_EQ, Data::new(&port.to_be_bytes())));
}

/// The kernel's NUL-padded 16-byte form of an interface name, so that a
/// comparison never matches a longer name by its prefix.
pub fn ifname_bytes(name: &str) -> [u8; 16] {
    let mut b = [0u8; 16];
    let n = name.len().min(15);
    b[..n].copy_from_slice(&name.as_bytes()[..n]);
    b
}

/// `iifname ==|!= "<name>"`
pub fn iifname(v: &mut Vec<Expr>, op: u32, name: &str) {
    v.push(Expr::Meta(NFT_META_IIFNAME));
    v.push(Expr::Cmp(op, Data::new(&ifname_bytes(name))));
}

/// `ct <key> & <bits> == 0` (none of the bits set; the register holds a host-order u32).
pub fn ct_none_of(v: &mut Vec<Expr>, key: u32, bits: u32) {
    v.push(Expr::Ct(key));
    v.push(Expr::Bitwise(Data::new(&bits.to_ne_bytes())));
    v.push(Expr::Cmp(NFT_CMP_EQ, Data::new(&[0; 4])));
}

/// `ether saddr <mac>`
pub fn ether_saddr(v: &mut Vec<Expr>, mac: &[u8; 6]) {
    v.push(Expr::Payload(NFT_PAYLOAD_LL_HEADER, 6, 6));
    v.push(Expr::Cmp(NFT_CMP_EQ, Data::new(mac)));
}

/// `fib daddr type local`: the address type is a host-order u32 in the register.
pub fn fib_daddr_local(v: &mut Vec<Expr>) {
    v.push(Expr::Fib(NFTA_FIB_F_DADDR, NFT_FIB_RESULT_ADDRTYPE));
    v.push(Expr::Cmp(NFT_CMP_EQ, Data::new(&RTN_LOCAL.to_ne_bytes())));
}

/// `dnat to <addr>:<port>` (the family follows the address).
pub fn dnat(v: &mut Vec<Expr>, to: &std::net::IpAddr, port: u16) {
    v.push(Expr::Imm(1, Data::new(&ip_octets(to))));
    v.push(Expr::Imm(2, Data::new(&port.to_be_bytes())));
    v.push(Expr::Dnat(to.is_ipv6()));
}
