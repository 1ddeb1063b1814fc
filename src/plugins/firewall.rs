//! firewall (chained, cniVersion >= 0.4.0): the reference plugin's policy
//! (accept the container's traffic in FORWARD, an admin chain for overrides,
//! optional isolation between bridges) in cnibox's own nftables table instead
//! of iptables chains:
//!
//! ```text
//! table inet cni_firewall {
//!     chain forward { type filter hook forward priority filter; policy accept;
//!                     jump isolation_stage_1; jump cni_forward }
//!     chain cni_forward { jump cni_admin
//!                         jump cni-fw-<H(key)> comment "<key>"            (one per attachment) }
//!     set cni-fw-<H(key)>-4 { type ipv4_addr; elements = { <the attachment's IPv4 addresses> } }
//!     set cni-fw-<H(key)>-6 { type ipv6_addr; elements = { <its IPv6 addresses> } }   (per family in use)
//!     chain cni-fw-<H(key)> { ip daddr @cni-fw-<H(key)>-4 ct state established,related accept comment "<key>"
//!                             ip saddr @cni-fw-<H(key)>-4 accept comment "<key>"
//!                             ip6 daddr @cni-fw-<H(key)>-6 ... and ip6 saddr ... (the same for IPv6) }
//!     chain cni_admin { }                      (the operator's; cnibox never touches its rules)
//!     chain isolation_stage_1 { iifname <br> oifname != <br> jump isolation_stage_2 comment "isolation <br>"
//!                               [iifname <br> oifname <br> drop]              (ingressPolicy isolated) }
//!     chain isolation_stage_2 { oifname <br> drop comment "isolation <br>" }
//! }
//! ```
//!
//! Each attachment's rules are a chain of their own, and its addresses are in
//! sets of its own, however many there are: a packet costs one hash lookup per
//! family instead of a walk over two rules per address; the kernel walks a
//! chain from its start again for each part of a dump, and a part holds about a
//! hundred rules but over a thousand elements, so listing thousands of rules
//! was quadratic where listing as many elements takes milliseconds; and a chain
//! goes with its rules in one step, where deleting rules one by one from a
//! shared chain was quadratic too. ADD creates or keeps the sets and refills
//! them and the chain; DEL removes the jump, the chain (with its rules) and
//! then the sets, and rules an older cnibox put straight into `cni_forward`,
//! found by key; isolation rules stay, as in the reference. CHECK looks each
//! prevResult address up in the set's elements; chains an older cnibox filled
//! with a rule per address are still checked and deleted (nodes upgrade with
//! live pods). GC removes the attachments of this network that are not among
//! the valid ones (the key begins with the network's hash), and no others.

use crate::cni::json::json_struct;
use crate::cni::{CniResult, Plugin, Request};
use crate::error::{code, Context, Error, Result};
use crate::net::ip_octets;
use crate::nft::expr::{
    self, Data, Expr, CT_ESTABLISHED_RELATED, NFT_CMP_EQ, NFT_CMP_NEQ, NFT_CT_STATE, NFT_JUMP, NF_ACCEPT, NF_DROP,
};
use crate::nft::{transact, Base, Batch, Nft, Rule, Table, IPV4_ADDR, IPV6_ADDR, NFPROTO_INET};
use std::net::IpAddr;

pub static PLUGIN: Plugin =
    Plugin { name: "firewall", min_version: "0.4.0", add, del, check, gc, status: crate::cni::skel::noop };

const TABLE: Table = Table { family: NFPROTO_INET, name: "cni_firewall" };
const FORWARD: &str = "forward";
const CNI_FORWARD: &str = "cni_forward";
const STAGE1: &str = "isolation_stage_1";
const STAGE2: &str = "isolation_stage_2";
const HOOK_FORWARD: u32 = 2;
const NFT_META_OIFNAME: u32 = 7;

json_struct! {
    struct Conf {
        backend: String = get("backend"),
        iptables_admin_chain_name: String = get("iptablesAdminChainName"),
        ingress_policy: String = get("ingressPolicy"),
    }
}

#[derive(PartialEq)]
enum Ingress {
    Open,
    SameBridge,
    Isolated,
}

fn load(req: &Request) -> Result<(Conf, Ingress)> {
    let c: Conf = req.conf()?;
    match c.backend.as_str() {
        "" | "nftables" | "iptables" => {}
        "firewalld" => {
            return Err(Error::new(
                code::UNSUPPORTED_FIELD,
                "backend \"firewalld\" is not supported: cnibox's firewall plugin writes nftables rules",
            )
            .with_details("backend"))
        }
        b => return Err(Error::config(format!("invalid backend \"{b}\" (expected \"nftables\")"))),
    }
    let ing = match c.ingress_policy.as_str() {
        "" | "open" => Ingress::Open,
        "same-bridge" => Ingress::SameBridge,
        "isolated" => Ingress::Isolated,
        p => {
            return Err(Error::config(format!(
                "unknown ingressPolicy \"{p}\" (expected open, same-bridge or isolated)"
            )))
        }
    };
    let n = &c.iptables_admin_chain_name;
    if n.len() > 64 || n.contains(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')) {
        return Err(Error::config(format!("invalid iptablesAdminChainName \"{n}\"")));
    }
    Ok((c, ing))
}

fn admin_chain(c: &Conf) -> String {
    if c.iptables_admin_chain_name.is_empty() {
        "cni_admin".into()
    } else {
        c.iptables_admin_chain_name.clone()
    }
}

/// The comment shared by one attachment's rules.
fn key(network: &str, ifname: &str, container_id: &str) -> Vec<u8> {
    let mut k = format!(
        "cni-fw {}-{}",
        crate::sha512::hex(network.as_bytes(), 16),
        crate::sha512::hex(format!("{ifname}:{container_id}").as_bytes(), 16)
    )
    .into_bytes();
    k.truncate(crate::nft::COMMENT_MAX);
    k
}

/// The chain of one attachment's accept rules, named by a hash of its key
/// (23 bytes: within the 31 that old kernels allow).
fn chain_of(key: &[u8]) -> String {
    format!("cni-fw-{}", crate::sha512::hex(key, 16))
}

fn ifname_cmp(v: &mut Vec<Expr>, key: u32, op: u32, name: &str) {
    v.push(Expr::Meta(key));
    v.push(Expr::Cmp(op, Data::new(&expr::ifname_bytes(name))));
}

/// The set of one family's addresses of the attachment whose chain is
/// `chain` (25 bytes: within the 31 that old kernels allow).
fn set_of(chain: &str, v4: bool) -> String {
    format!("{chain}-{}", if v4 { 4 } else { 6 })
}

/// `ip daddr @<set> ct state established,related accept` and `ip saddr @<set> accept`
/// (`ip6` for IPv6).
pub(crate) fn container_rules(v4: bool, set: &str, id: u32) -> [Vec<Expr<'_>>; 2] {
    let mut to = Vec::new();
    expr::addr_in_set(&mut to, true, v4, false, set, id);
    to.push(Expr::Ct(NFT_CT_STATE));
    to.push(Expr::Bitwise(Data::new(&CT_ESTABLISHED_RELATED.to_ne_bytes())));
    to.push(Expr::Cmp(NFT_CMP_NEQ, Data::new(&[0; 4])));
    to.push(Expr::Verdict(NF_ACCEPT, ""));
    let mut from = Vec::new();
    expr::addr_in_set(&mut from, true, v4, true, set, id);
    from.push(Expr::Verdict(NF_ACCEPT, ""));
    [to, from]
}

/// Byte strings sorted and without repeats, as everywhere here: lookups
/// stay logarithmic however many addresses or attachments there are.
fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    crate::sort::sort(&mut v);
    v.dedup();
    v
}

fn has(sorted: &[Vec<u8>], name: &str) -> bool {
    sorted.binary_search_by(|x| x.as_slice().cmp(name.as_bytes())).is_ok()
}

/// The attachment's addresses of one family (network-order bytes).
fn addresses(prev: &CniResult, v4: bool) -> Vec<Vec<u8>> {
    sorted(prev.ips.iter().filter(|ip| ip.address.addr.is_ipv4() == v4).map(|ip| ip_octets(&ip.address.addr)).collect())
}

/// An address from its network-order bytes.
fn show(a: &[u8]) -> IpAddr {
    match <[u8; 4]>::try_from(a) {
        Ok(b) => b.into(),
        Err(_) => <[u8; 16]>::try_from(a).unwrap_or([0; 16]).into(),
    }
}

fn names(v: Vec<String>) -> Vec<Vec<u8>> {
    sorted(v.into_iter().map(String::into_bytes).collect())
}

fn rules_of(nft: &mut Nft, chain: &str) -> Result<Vec<Rule>> {
    nft.rules(TABLE.family, TABLE.name, chain)
}

fn add(req: &Request) -> Result<CniResult> {
    let (c, ing) = load(req)?;
    let prev = req.prev_result()?.ok_or_else(|| Error::msg("must be called as chained plugin"))?;
    let admin = admin_chain(&c);
    let k = key(&req.name, &req.ifname, &req.container_id);
    let bridge = prev.interfaces.first().map(|i| i.name.clone()).unwrap_or_default();
    if ing != Ingress::Open && bridge.is_empty() {
        return Err(Error::msg("ingressPolicy needs the bridge as the first interface of prevResult"));
    }
    let iso = format!("isolation {bridge}").into_bytes();
    let chain = chain_of(&k);
    let (v4, v6) = (addresses(&prev, true), addresses(&prev, false));
    transact(|nft| {
        let mut b = Batch::new();
        b.add_table(&TABLE, "CNI firewall plugin rules (cnibox)");
        for ch in [CNI_FORWARD, admin.as_str(), STAGE1, STAGE2] {
            b.add_chain(&TABLE, ch, None, "");
        }
        b.add_chain(&TABLE, FORWARD, Some(Base { ty: "filter", hook: HOOK_FORWARD, prio: 0 }), "");
        b.flush_chain(&TABLE, FORWARD);
        b.add_rule(&TABLE, FORWARD, &[Expr::Verdict(NFT_JUMP, STAGE1)], b"");
        b.add_rule(&TABLE, FORWARD, &[Expr::Verdict(NFT_JUMP, CNI_FORWARD)], b"");
        let existing = rules_of(nft, CNI_FORWARD)?;
        if !existing.iter().any(|r| r.comment == b"CNI firewall plugin admin overrides") {
            b.add_rule(&TABLE, CNI_FORWARD, &[Expr::Verdict(NFT_JUMP, &admin)], b"CNI firewall plugin admin overrides");
        }
        // A re-ADD replaces its rules: the jump (added again below) and
        // any an older cnibox put into cni_forward itself.
        for r in existing.iter().filter(|r| r.comment == k) {
            b.del_rule(r);
        }
        b.add_chain(&TABLE, &chain, None, "");
        b.flush_chain(&TABLE, &chain);
        b.add_rule(&TABLE, CNI_FORWARD, &[Expr::Verdict(NFT_JUMP, &chain)], &k);
        // Each family's addresses in a set of the attachment's own, filled
        // afresh. A family without addresses loses its set of an earlier
        // ADD, which the flush above has left unreferenced.
        let sets = names(nft.sets(TABLE.family, TABLE.name)?);
        for (v4, addrs) in [(true, &v4), (false, &v6)] {
            let set = set_of(&chain, v4);
            let exists = has(&sets, &set);
            if addrs.is_empty() {
                if exists {
                    b.del_set(&TABLE, &set);
                }
                continue;
            }
            let id = b.add_set(&TABLE, &set, if v4 { IPV4_ADDR } else { IPV6_ADDR });
            if exists {
                b.flush_set(&TABLE, &set);
            }
            let keys: Vec<&[u8]> = addrs.iter().map(Vec::as_slice).collect();
            b.add_elements(&TABLE, &set, id, &keys);
            for r in container_rules(v4, &set, id) {
                b.add_rule(&TABLE, &chain, &r, &k);
            }
        }
        if ing != Ingress::Open && !rules_of(nft, STAGE1)?.iter().any(|r| r.comment == iso) {
            let mut leave = Vec::new();
            ifname_cmp(&mut leave, expr::NFT_META_IIFNAME, NFT_CMP_EQ, &bridge);
            ifname_cmp(&mut leave, NFT_META_OIFNAME, NFT_CMP_NEQ, &bridge);
            leave.push(Expr::Verdict(NFT_JUMP, STAGE2));
            b.add_rule(&TABLE, STAGE1, &leave, &iso);
            if ing == Ingress::Isolated {
                let mut within = Vec::new();
                ifname_cmp(&mut within, expr::NFT_META_IIFNAME, NFT_CMP_EQ, &bridge);
                ifname_cmp(&mut within, NFT_META_OIFNAME, NFT_CMP_EQ, &bridge);
                within.push(Expr::Verdict(NF_DROP, ""));
                b.add_rule(&TABLE, STAGE1, &within, &iso);
            }
            let mut enter = Vec::new();
            ifname_cmp(&mut enter, NFT_META_OIFNAME, NFT_CMP_EQ, &bridge);
            enter.push(Expr::Verdict(NF_DROP, ""));
            b.add_rule(&TABLE, STAGE2, &enter, &iso);
        }
        Ok(b)
    })
    .context("firewall: add rules")?;
    Ok(prev)
}

fn del(req: &Request) -> Result<()> {
    load(req)?;
    let k = key(&req.name, &req.ifname, &req.container_id);
    transact(|nft| {
        let mut b = Batch::new();
        remove(nft, &mut b, &|c| c == k.as_slice())?;
        Ok(b)
    })
    .context("firewall: remove rules")
}

/// Add to `b` the removal of every attachment whose key `pick` chooses:
/// its jump, its chain (the kernel deletes the chain's rules with it) and
/// then its sets, and rules under its key left in cni_forward by an older
/// cnibox. Only objects that exist are named: one missing object would fail
/// the whole batch. (`pick` is `dyn`: DEL and GC share one copy of this.)
fn remove(nft: &mut Nft, b: &mut Batch, pick: &dyn Fn(&[u8]) -> bool) -> Result<()> {
    let chains = names(nft.chains(TABLE.family, TABLE.name)?);
    let sets = names(nft.sets(TABLE.family, TABLE.name)?);
    let mut gone = Vec::new();
    for r in rules_of(nft, CNI_FORWARD)?.iter().filter(|r| r.comment.starts_with(b"cni-fw ") && pick(&r.comment)) {
        b.del_rule(r);
        gone.push(chain_of(&r.comment).into_bytes());
    }
    for c in sorted(gone) {
        let c = String::from_utf8_lossy(&c);
        if has(&chains, &c) {
            b.del_chain(&TABLE, &c);
        }
        for set in [set_of(&c, true), set_of(&c, false)] {
            if has(&sets, &set) {
                b.del_set(&TABLE, &set);
            }
        }
    }
    Ok(())
}

/// Remove this network's attachments that are not among the valid ones.
fn gc(req: &Request) -> Result<()> {
    load(req)?;
    let valid = crate::plugins::iface::valid_attachments(req)?;
    let mut keep: Vec<Vec<u8>> = valid.iter().map(|(id, ifname)| key(&req.name, ifname, id)).collect();
    crate::sort::sort(&mut keep);
    let prefix = key(&req.name, "", "");
    let prefix = &prefix[..prefix.len() - 16];
    transact(|nft| {
        let mut b = Batch::new();
        remove(nft, &mut b, &|c| c.starts_with(prefix) && keep.binary_search_by(|k| k.as_slice().cmp(c)).is_err())?;
        Ok(b)
    })
    .context("firewall: garbage-collect rules")
}

fn check(req: &Request) -> Result<()> {
    let (c, _) = load(req)?;
    let prev = req.prev_result()?.ok_or_else(|| Error::msg("must be called as chained plugin"))?;
    let mut nft = Nft::open()?;
    let forward = rules_of(&mut nft, CNI_FORWARD)?;
    let k = key(&req.name, &req.ifname, &req.container_id);
    if !forward.iter().any(|r| r.comment == b"CNI firewall plugin admin overrides") {
        return Err(Error::msg(format!("firewall: no jump to {} in {TABLE} {CNI_FORWARD}", admin_chain(&c))));
    }
    // The attachment's chain, if cni_forward jumps there; else the rules
    // an older cnibox put into cni_forward itself.
    let chain = chain_of(&k);
    let mine: Vec<Rule> = forward.into_iter().filter(|r| r.comment == k).collect();
    let jumps = mine.iter().any(|r| r.exprs.windows(chain.len()).any(|w| w == chain.as_bytes()));
    let (rules, place) = if jumps { (rules_of(&mut nft, &chain)?, chain.as_str()) } else { (mine, CNI_FORWARD) };
    let rules: Vec<&Rule> = rules.iter().filter(|r| r.comment == k).collect();
    let mut lookups: Vec<(u32, &str)> = Vec::new();
    for r in &rules {
        lookups.extend(expr::lookups(&r.exprs));
    }
    let mut old = Vec::new();
    for v4 in [true, false] {
        let addrs = addresses(&prev, v4);
        if addrs.is_empty() {
            continue;
        }
        let set = set_of(&chain, v4);
        let [to, from] = [false, true].map(|src| lookups.contains(&(expr::addr_field(v4, src).0, set.as_str())));
        if !to && !from {
            // No set: the rule per address an older cnibox wrote.
            old.extend(addrs);
            continue;
        }
        let ip = if v4 { "ip" } else { "ip6" };
        if !to || !from {
            let (dir, what) = if to { ("saddr", "accept") } else { ("daddr", "ct state established,related accept") };
            return Err(Error::msg(format!("firewall: no rule \"{ip} {dir} @{set} {what}\" in {TABLE} {place}")));
        }
        let elems = nft.set_elements(&TABLE, &set).map_err(|e| {
            if e.is_not_found() {
                Error::msg(format!("firewall: set {set} is missing from {TABLE}"))
            } else {
                e
            }
        })?;
        let elems = sorted(elems);
        if let Some(a) = addrs.iter().find(|a| elems.binary_search(a).is_err()) {
            return Err(Error::msg(format!("firewall: {} missing from set {set} in {TABLE}", show(a))));
        }
    }
    if old.is_empty() {
        return Ok(());
    }
    // Every address needs both of its rules. Each rule of the attachment is
    // indexed once by the values it compares against (sorted, so that a
    // lookup is a binary search): linear in rules and addresses together,
    // where matching every address against every rule was quadratic.
    let mut seen: Vec<Vec<u8>> = Vec::new();
    for r in &rules {
        let vals = expr::cmp_values(&r.exprs);
        for (i, v) in vals.iter().enumerate() {
            if !vals[..i].contains(v) {
                seen.push(v.to_vec());
            }
        }
    }
    crate::sort::sort(&mut seen);
    for a in &old {
        let n = seen.partition_point(|v| v < a);
        if seen[n..].iter().take_while(|v| *v == a).count() < 2 {
            return Err(Error::msg(format!("firewall: missing accept rules for {} in {TABLE} {place}", show(a))));
        }
    }
    Ok(())
}
