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
//!     chain cni-fw-<H(key)> { ip daddr <ip> ct state established,related accept comment "<key>"
//!                             ip saddr <ip> accept comment "<key>" }      (per address)
//!     chain cni_admin { }                      (the operator's; cnibox never touches its rules)
//!     chain isolation_stage_1 { iifname <br> oifname != <br> jump isolation_stage_2 comment "isolation <br>"
//!                               [iifname <br> oifname <br> drop]              (ingressPolicy isolated) }
//!     chain isolation_stage_2 { oifname <br> drop comment "isolation <br>" }
//! }
//! ```
//!
//! Each attachment's rules are a chain of their own: the kernel finds a rule
//! to delete by walking its chain, so deleting thousands of rules one by one
//! from a shared chain was quadratic (20,000 addresses: a minute of kernel
//! time), where deleting a chain with its rules is linear. DEL removes the
//! jump and the chain (and rules an older cnibox put straight into
//! `cni_forward`, found by key); isolation rules stay, as in the
//! reference. GC removes the rules of this network's attachments that are not
//! among the valid ones (the key begins with the network's hash), and no others.

use crate::cni::json::json_struct;
use crate::cni::{CniResult, Plugin, Request};
use crate::error::{code, Context, Error, Result};
use crate::net::{ip_octets, max_prefix, IpNet};
use crate::nft::expr::{
    self, Data, Expr, CT_ESTABLISHED_RELATED, NFT_CMP_EQ, NFT_CMP_NEQ, NFT_CT_STATE, NFT_JUMP, NF_ACCEPT, NF_DROP,
};
use crate::nft::{transact, Base, Batch, Nft, Rule, Table, NFPROTO_INET};

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

/// `ip daddr <ip> ct state established,related accept` and `ip saddr <ip> accept`.
fn container_rules(ip: &IpNet) -> [Vec<Expr<'static>>; 2] {
    let host = IpNet { addr: ip.addr, prefix: max_prefix(&ip.addr) };
    let mut to = Vec::new();
    expr::addr(&mut to, true, false, &host, NFT_CMP_EQ);
    to.push(Expr::Ct(NFT_CT_STATE));
    to.push(Expr::Bitwise(Data::new(&CT_ESTABLISHED_RELATED.to_ne_bytes())));
    to.push(Expr::Cmp(NFT_CMP_NEQ, Data::new(&[0; 4])));
    to.push(Expr::Verdict(NF_ACCEPT, ""));
    let mut from = Vec::new();
    expr::addr(&mut from, true, true, &host, NFT_CMP_EQ);
    from.push(Expr::Verdict(NF_ACCEPT, ""));
    [to, from]
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
        for ip in &prev.ips {
            for r in container_rules(&ip.address) {
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
        remove(nft, &mut b, |c| c == k.as_slice())?;
        Ok(b)
    })
    .context("firewall: remove rules")
}

/// Add to `b` the removal of every attachment whose key `pick` chooses:
/// its jump and its chain (the kernel deletes the chain's rules with it),
/// and rules under its key left in cni_forward by an older cnibox.
fn remove(nft: &mut Nft, b: &mut Batch, pick: impl Fn(&[u8]) -> bool) -> Result<()> {
    // Sorted byte strings, as everywhere here: lookups stay logarithmic
    // however many attachments GC removes.
    let mut chains: Vec<Vec<u8>> = nft.chains(TABLE.family, TABLE.name)?.into_iter().map(String::into_bytes).collect();
    chains.sort_unstable();
    let mut gone: Vec<Vec<u8>> = Vec::new();
    for r in rules_of(nft, CNI_FORWARD)?.iter().filter(|r| r.comment.starts_with(b"cni-fw ") && pick(&r.comment)) {
        b.del_rule(r);
        gone.push(chain_of(&r.comment).into_bytes());
    }
    gone.sort_unstable();
    gone.dedup();
    for c in gone.iter().filter(|c| chains.binary_search(c).is_ok()) {
        b.del_chain(&TABLE, &String::from_utf8_lossy(c));
    }
    Ok(())
}

/// Remove this network's attachments that are not among the valid ones.
fn gc(req: &Request) -> Result<()> {
    load(req)?;
    let valid = crate::plugins::iface::valid_attachments(req)?;
    let mut keep: Vec<Vec<u8>> = valid.iter().map(|(id, ifname)| key(&req.name, ifname, id)).collect();
    keep.sort_unstable();
    let prefix = key(&req.name, "", "");
    let prefix = &prefix[..prefix.len() - 16];
    transact(|nft| {
        let mut b = Batch::new();
        remove(nft, &mut b, |c| c.starts_with(prefix) && keep.binary_search_by(|k| k.as_slice().cmp(c)).is_err())?;
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
    let rules = if jumps { rules_of(&mut nft, &chain)? } else { mine };
    // Every address needs both of its rules. Each rule of the attachment is
    // indexed once by the values it compares against (sorted, so that a
    // lookup is a binary search): linear in rules and addresses together,
    // where matching every address against every rule was quadratic.
    let mut seen: Vec<Vec<u8>> = Vec::new();
    for r in rules.iter().filter(|r| r.comment == k) {
        let vals = expr::cmp_values(&r.exprs);
        for (i, v) in vals.iter().enumerate() {
            if !vals[..i].contains(v) {
                seen.push(v.to_vec());
            }
        }
    }
    seen.sort_unstable();
    for ip in &prev.ips {
        let a = ip_octets(&ip.address.addr);
        let n = seen.partition_point(|v| *v < a);
        let found = seen[n..].iter().take_while(|v| **v == a).count();
        if found < 2 {
            return Err(Error::msg(format!(
                "firewall: missing accept rules for {} in {TABLE} {chain}",
                ip.address.addr
            )));
        }
    }
    Ok(())
}
