//! Bridge-family anti-MAC-spoofing rules (`macspoofchk`), in the reference's
//! layout, with `<ref>` = `<container id>-<ifname>`:
//!
//! ```text
//! table bridge nat {
//!     chain PREROUTING {
//!         type filter hook prerouting priority -300; policy accept;
//!         iifname "<host veth>" jump cni-br-iface-<ref> comment "macspoofchk-<ref>"
//!     }
//!     chain cni-br-iface-<ref> {
//!         jump cni-br-iface-<ref>-mac comment "macspoofchk-<ref>"
//!     }
//!     chain cni-br-iface-<ref>-mac {
//!         ether saddr <container mac> return comment "macspoofchk-<ref>"
//!         drop comment "macspoofchk-<ref>"
//!     }
//! }
//! ```

use super::expr::{self, Expr, NFT_CMP_EQ, NFT_JUMP, NFT_RETURN, NF_DROP};
use super::{transact, Base, Batch, Nft, Table, COMMENT_MAX, HOOK_PREROUTING, NFPROTO_BRIDGE};
use crate::error::{Context, Error, Result};
use crate::net::Mac;

pub const TABLE: Table = Table { family: NFPROTO_BRIDGE, name: "nat" };
const PREROUTING: &str = "PREROUTING";

struct Names {
    iface: String,
    mac: String,
    comment: Vec<u8>,
}

fn names(container_id: &str, ifname: &str) -> Names {
    let r = format!("{container_id}-{ifname}");
    let mut comment = format!("macspoofchk-{r}").into_bytes();
    comment.truncate(COMMENT_MAX);
    Names { iface: format!("cni-br-iface-{r}"), mac: format!("cni-br-iface-{r}-mac"), comment }
}

/// The four rules: (chain, expressions), in order.
fn rules<'a>(n: &'a Names, host_veth: &str, mac: Mac) -> [(&'a str, Vec<Expr<'a>>); 4] {
    let mut jump = Vec::with_capacity(3);
    expr::iifname(&mut jump, NFT_CMP_EQ, host_veth);
    jump.push(Expr::Verdict(NFT_JUMP, &n.iface));
    let mut ok = Vec::with_capacity(3);
    expr::ether_saddr(&mut ok, &mac.0);
    ok.push(Expr::Verdict(NFT_RETURN, ""));
    [
        (PREROUTING, jump),
        (&n.iface, vec![Expr::Verdict(NFT_JUMP, &n.mac)]),
        (&n.mac, ok),
        (&n.mac, vec![Expr::Verdict(NF_DROP, "")]),
    ]
}

fn setup_batch(stale: &[super::Rule], n: &Names, host_veth: &str, mac: Mac) -> Batch {
    let mut b = Batch::new();
    b.add_table(&TABLE, "");
    b.add_chain(&TABLE, PREROUTING, Some(Base { ty: "filter", hook: HOOK_PREROUTING, prio: -300 }), "");
    b.add_chain(&TABLE, &n.iface, None, "");
    b.add_chain(&TABLE, &n.mac, None, "");
    b.flush_chain(&TABLE, &n.iface);
    b.flush_chain(&TABLE, &n.mac);
    // A repeated ADD replaces the jump instead of adding a second one.
    for r in stale.iter().filter(|r| r.comment == n.comment) {
        b.del_rule(r);
    }
    for (chain, e) in rules(n, host_veth, mac) {
        b.add_rule(&TABLE, chain, &e, &n.comment);
    }
    b
}

/// Drop frames from `host_veth` whose source MAC is not `mac`.
pub fn setup(container_id: &str, ifname: &str, host_veth: &str, mac: Mac) -> Result<()> {
    let n = names(container_id, ifname);
    transact(|nft| Ok(setup_batch(&nft.rules(TABLE.family, TABLE.name, PREROUTING)?, &n, host_veth, mac)))
        .context(format_args!("macspoofchk: set up for {host_veth}"))
}

/// Remove the jump and both chains (with their rules); nothing there is fine.
pub fn teardown(container_id: &str, ifname: &str) -> Result<()> {
    let n = names(container_id, ifname);
    transact(|nft| {
        let chains = nft.chains(TABLE.family, TABLE.name)?;
        let mut b = Batch::new();
        for r in nft.rules(TABLE.family, TABLE.name, PREROUTING)?.iter().filter(|r| r.comment == n.comment) {
            b.del_rule(r);
        }
        // The chain holding the jump goes first, so the `-mac` chain is unreferenced when deleted.
        for c in [&n.iface, &n.mac] {
            if chains.contains(c) {
                b.del_chain(&TABLE, c);
            }
        }
        Ok(b)
    })
    .context("macspoofchk: remove rules")
}

/// The jump from `host_veth` and the MAC check are in place.
pub fn check(container_id: &str, ifname: &str, host_veth: &str, mac: Mac) -> Result<()> {
    let n = names(container_id, ifname);
    let have = Nft::open()?.rules(TABLE.family, TABLE.name, "")?;
    let name = expr::ifname_bytes(host_veth);
    let ours = |chain: &str| have.iter().filter(|r| r.chain == chain && r.comment == n.comment).collect::<Vec<_>>();
    if !ours(PREROUTING).iter().any(|r| r.compares(&name)) || ours(&n.iface).is_empty() {
        return Err(Error::msg(format!("macspoofchk: no rule sending {host_veth} to chain {} in {TABLE}", n.iface)));
    }
    let mac_rules = ours(&n.mac);
    // the MAC's return and the drop after it
    if mac_rules.len() < 2 || !mac_rules.iter().any(|r| r.compares(&mac.0)) {
        return Err(Error::msg(format!("macspoofchk: chain {} in {TABLE} does not check for {mac}", n.mac)));
    }
    Ok(())
}
