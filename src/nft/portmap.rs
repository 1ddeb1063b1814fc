//! Port-mapping rules in the reference's nftables layout (one table per
//! family, `ip cni_hostport` and `ip6 cni_hostport`), every per-container rule
//! commented with the bare container id, as the reference's DEL matches it.
//! A container id alone does not say which network a rule is for, so cnibox
//! also records the attachment's key (`masq::instance_key`: network,
//! interface, container) in the rule's user data (`nft::UDATA_OWNER`, which
//! `nft` does not show): GC of one network removes only rules of that
//! network, never another network's live port mappings:
//!
//! ```text
//! table ip cni_hostport {
//!     comment "CNI portmap plugin"
//!     chain hostports {
//!         tcp dport 8080 dnat to 10.22.0.5:80 comment "<id>"
//!         ip daddr 192.168.1.10 udp dport 53 dnat to 10.22.0.5:5353 comment "<id>"
//!     }
//!     chain hostip_hostports { }      (kept for rules written by older references)
//!     chain hostports_all { jump hostip_hostports; jump hostports }
//!     chain prerouting {
//!         type nat hook prerouting priority dstnat; policy accept;
//!         fib daddr type local jump hostports_all
//!     }
//!     chain output {
//!         type nat hook output priority -100; policy accept;
//!         fib daddr type local jump hostports_all
//!     }
//!     chain masquerading {                                   (with snat)
//!         type nat hook postrouting priority srcnat; policy accept;
//!         ip saddr 10.22.0.5 ip daddr 10.22.0.5 masquerade comment "<id>"    (hairpin; 0.0.0.0/0 with masqAll)
//!         ip saddr 127.0.0.1 ip daddr 10.22.0.5 masquerade comment "<id>"    (localhost, IPv4 without masqAll)
//!     }
//!     chain localnet_guard {                                 (IPv4 with snat; not in the reference)
//!         type filter hook input priority filter; policy accept;
//!         iifname != "lo" ip daddr 127.0.0.0/8 ct state ! established,related ct status ! dnat drop
//!             comment "block incoming localnet connections"
//!     }
//! }
//! ```
//!
//! The localhost rule needs `route_localnet` on the interface towards the
//! container, which also lets anything behind that interface reach services
//! bound to 127.0.0.1 on the node (CVE-2020-8558). `localnet_guard` closes
//! that as kube-proxy does: a packet for 127/8 from outside `lo` may only be
//! part of a connection that exists already (the localhost mapping's answers)
//! or one translated to there.

use super::expr::{
    self, Expr, CT_ESTABLISHED_RELATED, IPS_DST_NAT, NFT_CMP_EQ, NFT_CMP_NEQ, NFT_CT_STATE, NFT_CT_STATUS, NFT_JUMP,
    NF_DROP,
};
use super::{
    transact, Base, Batch, Nft, Rule, Table, COMMENT_MAX, HOOK_INPUT, HOOK_OUTPUT, HOOK_POSTROUTING, HOOK_PREROUTING,
    NFPROTO_IPV4, NFPROTO_IPV6,
};
use crate::error::{Context, Error, Result};
use crate::net::{max_prefix, IpNet};
use std::net::{IpAddr, Ipv4Addr};

const NAME: &str = "cni_hostport";
const HOSTPORTS: &str = "hostports";
const HOSTIP_HOSTPORTS: &str = "hostip_hostports";
const HOSTPORTS_ALL: &str = "hostports_all";
const MASQUERADING: &str = "masquerading";
const LOCALNET_GUARD: &str = "localnet_guard";
const PER_CONTAINER: [&str; 3] = [HOSTPORTS, HOSTIP_HOSTPORTS, MASQUERADING];
const GUARD_COMMENT: &[u8] = b"block incoming localnet connections";

pub fn table(v4: bool) -> Table {
    Table { family: if v4 { NFPROTO_IPV4 } else { NFPROTO_IPV6 }, name: NAME }
}

/// One `portMappings` entry, validated.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub host_port: u16,
    pub container_port: u16,
    /// IPPROTO_TCP, IPPROTO_UDP or IPPROTO_SCTP.
    pub proto: u8,
    pub host_ip: Option<IpAddr>,
}

impl Mapping {
    /// Whether the mapping applies to the container address of this family
    /// (a host IP of the other family does not).
    pub fn applies(&self, v4: bool) -> bool {
        self.host_ip.is_none_or(|h| h.is_ipv4() == v4)
    }
}

/// What to map for one container.
pub struct Spec<'a> {
    pub container_id: &'a str,
    /// The container's first IPv4 and/or IPv6 address.
    pub ips: &'a [IpAddr],
    pub mappings: &'a [Mapping],
    pub snat: bool,
    pub masq_all: bool,
    /// The attachment's key (`owner_key`), recorded in every rule.
    pub owner: &'a [u8],
}

/// The key recorded in the rules of one attachment: `masq::instance_key`.
pub fn owner_key(network: &str, ifname: &str, container_id: &str) -> String {
    super::masq::instance_key(network, ifname, container_id)
}

fn comment(id: &str) -> &[u8] {
    &id.as_bytes()[..id.len().min(COMMENT_MAX)]
}

/// `[ip daddr <host ip>] <proto> dport <host port> dnat to <ip>:<container port>`
pub fn dnat_rule(m: &Mapping, to: &IpAddr) -> Vec<Expr<'static>> {
    let mut v = Vec::with_capacity(9);
    if let Some(h) = m.host_ip.filter(|h| !h.is_unspecified()) {
        expr::addr(&mut v, false, false, &IpNet { addr: h, prefix: max_prefix(&h) }, NFT_CMP_EQ);
    }
    expr::dport(&mut v, m.proto, m.host_port);
    expr::dnat(&mut v, to, m.container_port);
    v
}

/// `ip saddr <from> ip daddr <to> masquerade`
pub fn masq_rule(from: &IpNet, to: &IpAddr) -> Vec<Expr<'static>> {
    let mut v = Vec::with_capacity(7);
    expr::addr(&mut v, false, true, from, NFT_CMP_EQ);
    expr::addr(&mut v, false, false, &IpNet { addr: *to, prefix: max_prefix(to) }, NFT_CMP_EQ);
    v.push(Expr::Masq);
    v
}

/// The masquerade rules for connections the container would otherwise answer
/// past the NAT: from itself (hairpin), from the node's localhost, or from
/// anywhere with `masqAll`.
pub fn masq_rules(ip: &IpAddr, masq_all: bool) -> Vec<Vec<Expr<'static>>> {
    let v4 = ip.is_ipv4();
    let from = if masq_all {
        IpNet { addr: crate::net::from_u128(ip, 0), prefix: 0 }
    } else {
        IpNet { addr: *ip, prefix: max_prefix(ip) }
    };
    let mut out = vec![masq_rule(&from, ip)];
    if v4 && !masq_all {
        out.push(masq_rule(&IpNet { addr: Ipv4Addr::LOCALHOST.into(), prefix: 32 }, ip));
    }
    out
}

/// A rule of some container (commented, in a per-container chain of our tables).
fn per_container(r: &Rule) -> bool {
    matches!(r.family, NFPROTO_IPV4 | NFPROTO_IPV6)
        && PER_CONTAINER.contains(&r.chain.as_str())
        && !r.comment.is_empty()
}

/// `iifname != "lo" ip daddr 127.0.0.0/8 ct state ! established,related ct status ! dnat drop`
pub fn localnet_guard_rule() -> Vec<Expr<'static>> {
    let mut v = Vec::with_capacity(11);
    expr::iifname(&mut v, NFT_CMP_NEQ, "lo");
    expr::addr(&mut v, false, false, &IpNet { addr: Ipv4Addr::new(127, 0, 0, 0).into(), prefix: 8 }, NFT_CMP_EQ);
    expr::ct_none_of(&mut v, NFT_CT_STATE, CT_ESTABLISHED_RELATED);
    expr::ct_none_of(&mut v, NFT_CT_STATUS, IPS_DST_NAT);
    v.push(Expr::Verdict(NF_DROP, ""));
    v
}

fn is_ours(r: &Rule, id: &[u8]) -> bool {
    per_container(r) && r.comment == id
}

/// The batch of an ADD: the shared structure of each family's table, this
/// container's earlier rules (`stale`, from any family) replaced by the new ones.
pub fn setup_batch(current: &[Rule], s: &Spec) -> Batch {
    let mut b = Batch::new();
    let c = comment(s.container_id);
    for r in current.iter().filter(|r| is_ours(r, c)) {
        b.del_rule(r);
    }
    for ip in s.ips {
        let v4 = ip.is_ipv4();
        let t = table(v4);
        b.add_table(&t, "CNI portmap plugin");
        b.add_chain(&t, HOSTPORTS, None, "");
        b.add_chain(&t, HOSTIP_HOSTPORTS, None, "");
        b.add_chain(&t, HOSTPORTS_ALL, None, "");
        // The fixed chains are rewritten only when not as expected (see Batch::set_chain).
        let all: [&[Expr]; 2] = [&[Expr::Verdict(NFT_JUMP, HOSTIP_HOSTPORTS)], &[Expr::Verdict(NFT_JUMP, HOSTPORTS)]];
        b.set_chain(&t, HOSTPORTS_ALL, &all, current, |_| true);
        let mut entry = Vec::with_capacity(3);
        expr::fib_daddr_local(&mut entry);
        entry.push(Expr::Verdict(NFT_JUMP, HOSTPORTS_ALL));
        for (chain, hook) in [("prerouting", HOOK_PREROUTING), ("output", HOOK_OUTPUT)] {
            b.add_chain(&t, chain, Some(Base { ty: "nat", hook, prio: -100 }), "");
            b.set_chain(&t, chain, &[&entry], current, |_| true);
        }
        for m in s.mappings.iter().filter(|m| m.applies(v4)) {
            b.add_rule_owned(&t, HOSTPORTS, &dnat_rule(m, ip), c, s.owner);
        }
        if s.snat {
            b.add_chain(&t, MASQUERADING, Some(Base { ty: "nat", hook: HOOK_POSTROUTING, prio: 100 }), "");
            for r in masq_rules(ip, s.masq_all) {
                b.add_rule_owned(&t, MASQUERADING, &r, c, s.owner);
            }
            if v4 {
                b.add_chain(&t, LOCALNET_GUARD, Some(Base { ty: "filter", hook: HOOK_INPUT, prio: 0 }), "");
                let guard = current
                    .iter()
                    .any(|r| r.family == t.family && r.chain == LOCALNET_GUARD && r.comment == GUARD_COMMENT);
                if !guard {
                    b.flush_chain(&t, LOCALNET_GUARD);
                    b.add_rule(&t, LOCALNET_GUARD, &localnet_guard_rule(), GUARD_COMMENT);
                }
            }
        }
    }
    b
}

/// The rules of both families' tables (a dump filtered by table name stops
/// after the first table of that name, so each family is listed on its own).
fn list(nft: &mut Nft) -> Result<Vec<Rule>> {
    let mut v = nft.rules(NFPROTO_IPV4, NAME, "")?;
    v.extend(nft.rules(NFPROTO_IPV6, NAME, "")?);
    Ok(v)
}

pub fn setup(s: &Spec) -> Result<()> {
    transact(|nft| Ok(setup_batch(&list(nft)?, s))).context("portmap: set up port mappings")
}

/// Remove every rule of this container, in both families.
pub fn teardown(container_id: &str) -> Result<()> {
    let c = comment(container_id);
    transact(|nft| {
        let mut b = Batch::new();
        for r in list(nft)?.iter().filter(|r| is_ours(r, c)) {
            b.del_rule(r);
        }
        Ok(b)
    })
    .context("portmap: remove port mappings")
}

/// Remove the rules of `network`'s attachments that are not in `valid`
/// (container id, interface). Rules recorded for other networks are not
/// touched, nor rules without a record (the reference's, or older
/// cnibox's): nothing says which network those belong to.
pub fn gc(network: &str, valid: &[(String, String)]) -> Result<()> {
    let prefix = format!("{}-", super::masq::network_hash(network));
    let mut keep: Vec<Vec<u8>> = valid.iter().map(|(id, ifname)| owner_key(network, ifname, id).into_bytes()).collect();
    crate::sort::sort(&mut keep);
    transact(|nft| {
        let mut b = Batch::new();
        for r in list(nft)?.iter().filter(|r| {
            per_container(r) && r.owner.starts_with(prefix.as_bytes()) && keep.binary_search(&r.owner).is_err()
        }) {
            b.del_rule(r);
        }
        Ok(b)
    })
    .context("portmap: garbage-collect port mappings")
}

/// Every mapping has its DNAT rule (matched by protocol and host port), and
/// the masquerade rules are there when `snat` is on.
pub fn check(s: &Spec) -> Result<()> {
    let rules = list(&mut Nft::open()?)?;
    let c = comment(s.container_id);
    for ip in s.ips {
        let t = table(ip.is_ipv4());
        let ours = |chain: &'static str| {
            rules.iter().filter(move |r| r.family == t.family && r.chain == chain && r.comment == c)
        };
        for m in s.mappings.iter().filter(|m| m.applies(ip.is_ipv4())) {
            if !ours(HOSTPORTS).any(|r| r.compares(&[m.proto]) && r.compares(&m.host_port.to_be_bytes())) {
                return Err(Error::msg(format!("portmap: no rule for host port {} in {t} {HOSTPORTS}", m.host_port)));
            }
        }
        if s.snat && ours(MASQUERADING).count() < masq_rules(ip, s.masq_all).len() {
            return Err(Error::msg(format!("portmap: missing masquerade rules for {ip} in {t} {MASQUERADING}")));
        }
    }
    Ok(())
}
