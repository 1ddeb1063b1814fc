//! Per-attachment masquerade rules, in the reference's nftables layout so that
//! either implementation finds and removes the other's rules:
//!
//! ```text
//! table inet cni_plugins_masquerade {
//!     comment "Masquerading for plugins from github.com/containernetworking/plugins"
//!     chain masq_checks {
//!         comment "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet"
//!         ip saddr 10.22.0.5 ip daddr != 10.22.0.0/24 masquerade comment "<H(net)>-<H(if:id)>, net: <net>, if: <if>, id: <id>"
//!     }
//!     chain postrouting {
//!         type nat hook postrouting priority srcnat; policy accept;
//!         ip daddr 224.0.0.0/4 return
//!         ip6 daddr ff00::/8 return
//!         goto masq_checks
//!     }
//! }
//! ```
//!
//! `H(x)` is the first 16 hex digits of sha512(x). The comment begins with the
//! attachment's key, so DEL finds the rules without the addresses or the netns.

use super::expr::{self, Expr, NFT_CMP_EQ, NFT_CMP_NEQ, NFT_GOTO, NFT_RETURN};
use super::{transact, Base, Batch, Nft, Table, COMMENT_MAX, HOOK_POSTROUTING, NFPROTO_INET};
use crate::error::{Context, Error, Result};
use crate::net::{ip_octets, max_prefix, IpNet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const TABLE: Table = Table { family: NFPROTO_INET, name: "cni_plugins_masquerade" };
const CHAIN: &str = "masq_checks";
const POSTROUTING: &str = "postrouting";
const TABLE_COMMENT: &str = "Masquerading for plugins from github.com/containernetworking/plugins";
const CHAIN_COMMENT: &str = "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet";

pub fn network_hash(network: &str) -> String {
    crate::sha512::hex(network.as_bytes(), 16)
}

/// The length of an attachment's key (`instance_key`).
const KEY_LEN: usize = 16 + 1 + 16;

/// The key of one attachment: the prefix of its rules' comments.
pub fn instance_key(network: &str, ifname: &str, container_id: &str) -> String {
    format!("{}-{}", network_hash(network), crate::sha512::hex(format!("{ifname}:{container_id}").as_bytes(), 16))
}

/// The full comment, quotes removed and cut at 128 bytes as the reference does.
pub fn comment(network: &str, ifname: &str, container_id: &str) -> Vec<u8> {
    let q = |s: &str| s.replace('"', "");
    let mut c = format!(
        "{}, net: {}, if: {}, id: {}",
        instance_key(network, ifname, container_id),
        q(network),
        q(ifname),
        q(container_id)
    )
    .into_bytes();
    c.truncate(COMMENT_MAX);
    c
}

/// `ip saddr <addr> ip daddr != <addr's subnet> masquerade`
pub fn masq_rule(addr: &IpNet) -> Vec<Expr<'static>> {
    let mut v = Vec::with_capacity(7);
    let host = IpNet { addr: addr.addr, prefix: max_prefix(&addr.addr) };
    expr::addr(&mut v, true, true, &host, NFT_CMP_EQ);
    expr::addr(&mut v, false, false, addr, NFT_CMP_NEQ);
    v.push(Expr::Masq);
    v
}

/// The fixed rules of `postrouting`: multicast is never masqueraded.
pub fn postrouting_rules() -> [Vec<Expr<'static>>; 3] {
    let mcast = |addr: IpAddr, prefix| {
        let mut v = Vec::new();
        expr::addr(&mut v, true, false, &IpNet { addr, prefix }, NFT_CMP_EQ);
        v.push(Expr::Verdict(NFT_RETURN, ""));
        v
    };
    [
        mcast(Ipv4Addr::new(224, 0, 0, 0).into(), 4),
        mcast(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0).into(), 8),
        vec![Expr::Verdict(NFT_GOTO, CHAIN)],
    ]
}

/// The batch of an ADD: ensure table and chains, rewrite `postrouting`,
/// replace this attachment's rules (`stale`) with one per address.
pub fn setup_batch(current: &[super::Rule], network: &str, ifname: &str, container_id: &str, addrs: &[IpNet]) -> Batch {
    let mut b = Batch::new();
    b.add_table(&TABLE, TABLE_COMMENT);
    b.add_chain(&TABLE, CHAIN, None, CHAIN_COMMENT);
    b.add_chain(&TABLE, POSTROUTING, Some(Base { ty: "nat", hook: HOOK_POSTROUTING, prio: 100 }), "");
    let fixed = postrouting_rules();
    let fixed: Vec<&[Expr]> = fixed.iter().map(|r| r.as_slice()).collect();
    // The reference rewrites postrouting on every ADD; its three rules are
    // recognised by their multicast prefixes and left alone when in place.
    b.set_chain(&TABLE, POSTROUTING, &fixed, current, |now| {
        now[0].compares(&[224, 0, 0, 0]) && now[1].compares(&[0xff])
    });
    // The comment begins with the attachment's key (hashing is a good part
    // of what an ADD spends here: each hash once).
    let c = comment(network, ifname, container_id);
    let key = &c[..KEY_LEN];
    for r in current.iter().filter(|r| r.chain == CHAIN && r.comment.starts_with(key)) {
        b.del_rule(r);
    }
    for a in addrs {
        b.add_rule(&TABLE, CHAIN, &masq_rule(a), &c);
    }
    b
}

fn list(nft: &mut Nft) -> Result<Vec<super::Rule>> {
    nft.rules(TABLE.family, TABLE.name, CHAIN)
}

/// Both chains: setup also looks at postrouting.
fn list_all(nft: &mut Nft) -> Result<Vec<super::Rule>> {
    nft.rules(TABLE.family, TABLE.name, "")
}

/// Masquerade traffic from each of `addrs` leaving its own subnet (`addrs` carry their prefix).
pub fn setup(network: &str, ifname: &str, container_id: &str, addrs: &[IpNet]) -> Result<()> {
    transact(|nft| Ok(setup_batch(&list_all(nft)?, network, ifname, container_id, addrs)))
        .context("ipMasq: set up masquerading")
}

/// Remove this attachment's rules; needs neither the addresses nor the netns.
pub fn teardown(network: &str, ifname: &str, container_id: &str) -> Result<()> {
    let key = instance_key(network, ifname, container_id);
    transact(|nft| {
        let mut b = Batch::new();
        for r in list(nft)?.iter().filter(|r| r.comment.starts_with(key.as_bytes())) {
            b.del_rule(r);
        }
        Ok(b)
    })
    .context("ipMasq: remove masquerade rules")
}

/// Every address has its rule, under this attachment's comment.
pub fn check(network: &str, ifname: &str, container_id: &str, addrs: &[IpNet]) -> Result<()> {
    let rules = list(&mut Nft::open()?)?;
    let c = comment(network, ifname, container_id);
    for a in addrs {
        if !rules.iter().any(|r| r.comment == c && r.compares(&ip_octets(&a.addr))) {
            return Err(Error::msg(format!("ipMasq: no masquerade rule for {} in {TABLE} {CHAIN}", a.addr)));
        }
    }
    Ok(())
}

/// Remove rules of this network whose (container id, ifname) is not in `valid`.
pub fn gc(network: &str, valid: &[(String, String)]) -> Result<()> {
    let net = network_hash(network);
    let mut keep: Vec<Vec<u8>> = valid.iter().map(|(id, ifname)| comment(network, ifname, id)).collect();
    crate::sort::sort(&mut keep);
    transact(|nft| {
        let mut b = Batch::new();
        for r in list(nft)?
            .iter()
            .filter(|r| r.comment.starts_with(net.as_bytes()) && keep.binary_search(&r.comment).is_err())
        {
            b.del_rule(r);
        }
        Ok(b)
    })
    .context("ipMasq: garbage-collect masquerade rules")
}
