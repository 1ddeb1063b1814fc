//! nf_tables over netlink: batches, expressions, and the rule shapes cnibox emits.
//!
//! Every change is one batch (BATCH_BEGIN ... BATCH_END), which the kernel
//! applies atomically or not at all. Rules are found by their comment (rule
//! user data), which is how the reference plugins find them too, and deleted
//! by handle. A change that depends on a listing carries the ruleset
//! generation it was computed from (`NFNL_BATCH_GENID`): if anything changed
//! in between, the kernel refuses the batch with ERESTART and we list again,
//! so a handle can never name a rule that replaced the one we saw.

pub mod conntrack;
pub mod expr;
pub mod keeper;
pub mod masq;
pub mod portmap;
pub mod spoofchk;

use crate::error::{Error, Result};
use crate::netlink::socket::kernel_error;
use crate::netlink::{
    Attrs, MsgBuf, Msgs, Socket, NLA_F_NESTED, NLMSG_ERROR, NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REQUEST,
};
use expr::Expr;

pub const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_BATCH_GENID: u16 = 1;

const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_GETSET: u16 = 10;
const NFT_MSG_DELSET: u16 = 11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFT_MSG_GETGEN: u16 = 16;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_USERDATA: u16 = 6;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_CHAIN_USERDATA: u16 = 12;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
const NFTA_GEN_ID: u16 = 1;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_USERDATA: u16 = 13;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_LIST_SET_ID: u16 = 4;
const NFTA_SET_ELEM_KEY: u16 = 1;

pub const NFPROTO_INET: u8 = 1;
pub const NFPROTO_IPV4: u8 = 2;
pub const NFPROTO_BRIDGE: u8 = 7;
pub const NFPROTO_IPV6: u8 = 10;

pub const HOOK_PREROUTING: u32 = 0;
pub const HOOK_INPUT: u32 = 1;
pub const HOOK_OUTPUT: u32 = 3;
pub const HOOK_POSTROUTING: u32 = 4;

/// Comments longer than this are refused by `nft` and truncated by the
/// reference (knftables' CommentLengthMax), so no rule of either carries more.
pub const COMMENT_MAX: usize = 128;

/// How long a change is recomputed when the ruleset keeps moving under it.
const GENID_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);
const ERESTART: i32 = 85;

/// A table: its family and name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Table {
    pub family: u8,
    pub name: &'static str,
}

fn family_name(f: u8) -> &'static str {
    match f {
        NFPROTO_INET => "inet",
        NFPROTO_IPV4 => "ip",
        NFPROTO_IPV6 => "ip6",
        NFPROTO_BRIDGE => "bridge",
        _ => "unspec",
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", family_name(self.family), self.name)
    }
}

fn hook_name(h: u32) -> &'static str {
    ["prerouting", "input", "forward", "output", "postrouting"].get(h as usize).copied().unwrap_or("?")
}

/// What makes a chain a base chain: `type <ty> hook <hook> priority <prio>; policy accept`.
#[derive(Clone, Copy)]
pub struct Base {
    pub ty: &'static str,
    pub hook: u32,
    pub prio: i32,
}

/// libnftnl user data: TLVs of (type, length, value); type 0 is the comment,
/// stored with its NUL as `nft` does.
fn udata_comment(c: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(c.len().min(COMMENT_MAX) + 3);
    udata_push(&mut v, UDATA_COMMENT, c);
    v
}

const UDATA_COMMENT: u8 = 0;

/// cnibox's own rule user data type: which attachment (network, interface,
/// container) a rule was written for, where the comment must stay what the
/// reference matches on (portmap's bare container id). libnftnl defines
/// types 0 (comment) and 1 (ebtables policy); `nft` and knftables read only
/// the comment and skip every other type; this one is far from theirs.
pub const UDATA_OWNER: u8 = 0xc1;

fn udata_push(v: &mut Vec<u8>, ty: u8, val: &[u8]) {
    let val = &val[..val.len().min(COMMENT_MAX)];
    v.extend_from_slice(&[ty, val.len() as u8 + 1]);
    v.extend_from_slice(val);
    v.push(0);
}

/// The value of user data TLV `want`, up to its NUL; empty when absent.
fn parse_udata(mut u: &[u8], want: u8) -> Vec<u8> {
    while u.len() >= 2 {
        let (ty, len) = (u[0], u[1] as usize);
        let Some(val) = u.get(2..2 + len) else { break };
        if ty == want {
            let end = val.iter().position(|&c| c == 0).unwrap_or(val.len());
            return val[..end].to_vec();
        }
        u = &u[2 + len..];
    }
    Vec::new()
}

/// The key of a set: `nft`'s data type number and the key's length in bytes.
#[derive(Clone, Copy)]
pub struct SetKey {
    pub ty: u32,
    pub len: u32,
}

pub const IPV4_ADDR: SetKey = SetKey { ty: 7, len: 4 };
pub const IPV6_ADDR: SetKey = SetKey { ty: 8, len: 16 };

/// libnftnl's set user data: the key's byte order (type 0, a host-order u32;
/// 2 is big endian), which `nft` writes for every set it creates.
fn udata_key_byteorder() -> [u8; 6] {
    let v = 2u32.to_ne_bytes();
    [0, 4, v[0], v[1], v[2], v[3]]
}

/// The most an `NFTA_SET_ELEM_LIST_ELEMENTS` nest of one message may hold:
/// netlink attribute lengths are 16-bit, so larger lists go in several messages.
const ELEMENTS_MAX: usize = u16::MAX as usize;

/// One atomic change: messages in order, each with a description for errors.
#[derive(Default)]
pub struct Batch {
    msgs: Vec<(MsgBuf, String)>,
    /// The last set id handed out in this batch (`add_set`).
    set_id: u32,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    fn msg(&mut self, ty: u16, flags: u16, t: &Table, what: String) -> &mut MsgBuf {
        let mut m = MsgBuf::new((NFNL_SUBSYS_NFTABLES << 8) | ty, NLM_F_REQUEST | flags);
        m.push(&[t.family, 0, 0, 0]);
        self.msgs.push((m, what));
        &mut self.msgs.last_mut().expect("just pushed").0
    }

    /// Create the table unless it exists. No flags are sent, so an existing
    /// table keeps its own (a table owned by another process stays usable).
    pub fn add_table(&mut self, t: &Table, comment: &str) {
        let m = self.msg(NFT_MSG_NEWTABLE, NLM_F_CREATE, t, format!("add table {t}"));
        m.put_str(NFTA_TABLE_NAME, t.name);
        if !comment.is_empty() {
            m.put(NFTA_TABLE_USERDATA, &udata_comment(comment.as_bytes()));
        }
    }

    /// Delete the table with everything in it.
    pub fn del_table(&mut self, t: &Table) {
        let m = self.msg(NFT_MSG_DELTABLE, 0, t, format!("delete table {t}"));
        m.put_str(NFTA_TABLE_NAME, t.name);
    }

    /// Create the chain unless it exists (an existing one is left as it is).
    pub fn add_chain(&mut self, t: &Table, name: &str, base: Option<Base>, comment: &str) {
        let what = match base {
            Some(b) => format!("add chain {t} {name} (type {} hook {} priority {})", b.ty, hook_name(b.hook), b.prio),
            None => format!("add chain {t} {name}"),
        };
        let m = self.msg(NFT_MSG_NEWCHAIN, NLM_F_CREATE, t, what);
        m.put_str(NFTA_CHAIN_TABLE, t.name).put_str(NFTA_CHAIN_NAME, name);
        if let Some(b) = base {
            m.put_str(NFTA_CHAIN_TYPE, b.ty).put_be32(NFTA_CHAIN_POLICY, expr::NF_ACCEPT as u32);
            let h = m.nest(NFTA_CHAIN_HOOK | NLA_F_NESTED);
            m.put_be32(NFTA_HOOK_HOOKNUM, b.hook).put_be32(NFTA_HOOK_PRIORITY, b.prio as u32);
            m.end(h);
        }
        if !comment.is_empty() {
            m.put(NFTA_CHAIN_USERDATA, &udata_comment(comment.as_bytes()));
        }
    }

    pub fn del_chain(&mut self, t: &Table, name: &str) {
        let m = self.msg(NFT_MSG_DELCHAIN, 0, t, format!("delete chain {t} {name}"));
        m.put_str(NFTA_CHAIN_TABLE, t.name).put_str(NFTA_CHAIN_NAME, name);
    }

    /// Delete every rule of the chain: a DELRULE that names no handle.
    pub fn flush_chain(&mut self, t: &Table, chain: &str) {
        let m = self.msg(NFT_MSG_DELRULE, 0, t, format!("flush chain {t} {chain}"));
        m.put_str(NFTA_RULE_TABLE, t.name).put_str(NFTA_RULE_CHAIN, chain);
    }

    /// Give a fixed chain (one cnibox rewrites, never per-container) exactly
    /// `rules`, unless `current` already shows them. Rewriting on every call
    /// would destroy rules each time, and a destroyed rule makes the release of
    /// this netfilter socket wait for an RCU grace period (nf_tables flushes
    /// its destroy work then): milliseconds added to every ADD.
    pub fn set_chain(
        &mut self,
        t: &Table,
        chain: &str,
        rules: &[&[Expr]],
        current: &[Rule],
        in_place: impl Fn(&[&Rule]) -> bool,
    ) {
        let now: Vec<&Rule> =
            current.iter().filter(|r| r.family == t.family && r.table == t.name && r.chain == chain).collect();
        if now.len() == rules.len() && in_place(&now) {
            return;
        }
        self.flush_chain(t, chain);
        for r in rules {
            self.add_rule(t, chain, r, b"");
        }
    }

    /// Create the set unless it exists (an existing one keeps its elements)
    /// and return its id in this batch, for `Expr::Lookup` and
    /// `add_elements` (the kernel needs one for every new set).
    pub fn add_set(&mut self, t: &Table, name: &str, key: SetKey) -> u32 {
        self.set_id += 1;
        let id = self.set_id;
        let m = self.msg(NFT_MSG_NEWSET, NLM_F_CREATE, t, format!("add set {t} {name}"));
        m.put_str(NFTA_SET_TABLE, t.name).put_str(NFTA_SET_NAME, name).put_be32(NFTA_SET_FLAGS, 0);
        m.put_be32(NFTA_SET_KEY_TYPE, key.ty).put_be32(NFTA_SET_KEY_LEN, key.len).put_be32(NFTA_SET_ID, id);
        m.put(NFTA_SET_USERDATA, &udata_key_byteorder());
        id
    }

    /// Delete the set (no rule may still refer to it once the batch is applied).
    pub fn del_set(&mut self, t: &Table, name: &str) {
        let m = self.msg(NFT_MSG_DELSET, 0, t, format!("delete set {t} {name}"));
        m.put_str(NFTA_SET_TABLE, t.name).put_str(NFTA_SET_NAME, name);
    }

    /// Delete every element of the set: a DELSETELEM that names none.
    pub fn flush_set(&mut self, t: &Table, name: &str) {
        let m = self.msg(NFT_MSG_DELSETELEM, 0, t, format!("flush set {t} {name}"));
        m.put_str(NFTA_SET_ELEM_LIST_SET, name).put_str(NFTA_SET_ELEM_LIST_TABLE, t.name);
    }

    /// Add the keys to the set (`id` as returned by `add_set`, or 0), in as
    /// many messages as the 16-bit attribute lengths require.
    pub fn add_elements(&mut self, t: &Table, name: &str, id: u32, keys: &[&[u8]]) {
        // Each element: LIST_ELEM { KEY { DATA_VALUE <key> } }; a key is at
        // least a byte, so a message holds at most 4095.
        let size = |k: &[u8]| 12 + crate::netlink::align4(k.len());
        let mut rest = keys;
        while !rest.is_empty() {
            let (mut n, mut len) = (0, 4);
            while n < rest.len() && (n == 0 || len + size(rest[n]) <= ELEMENTS_MAX) {
                len += size(rest[n]);
                n += 1;
            }
            let (now, later) = rest.split_at(n);
            rest = later;
            let what = format!("add {} elements to set {t} {name}", now.len());
            let m = self.msg(NFT_MSG_NEWSETELEM, NLM_F_CREATE, t, what);
            m.put_str(NFTA_SET_ELEM_LIST_TABLE, t.name).put_str(NFTA_SET_ELEM_LIST_SET, name);
            if id != 0 {
                m.put_be32(NFTA_SET_ELEM_LIST_SET_ID, id);
            }
            let list = m.nest(NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED);
            // `nft` numbers the elements of a list from 1 where the kernel
            // ignores the type: at most 4095 here, clear of the flag bits.
            for (i, k) in (1u16..).zip(now) {
                let e = m.nest(i | NLA_F_NESTED);
                let key = m.nest(NFTA_SET_ELEM_KEY | NLA_F_NESTED);
                m.put(expr::NFTA_DATA_VALUE, k);
                m.end(key);
                m.end(e);
            }
            m.end(list);
        }
    }

    /// Append a rule to the chain.
    pub fn add_rule(&mut self, t: &Table, chain: &str, exprs: &[Expr], comment: &[u8]) {
        self.add_rule_owned(t, chain, exprs, comment, b"")
    }

    /// Append a rule that also records its `owner` (see UDATA_OWNER).
    pub fn add_rule_owned(&mut self, t: &Table, chain: &str, exprs: &[Expr], comment: &[u8], owner: &[u8]) {
        let m = self.msg(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, t, format!("add rule to {t} {chain}"));
        m.put_str(NFTA_RULE_TABLE, t.name).put_str(NFTA_RULE_CHAIN, chain);
        let l = m.nest(NFTA_RULE_EXPRESSIONS | NLA_F_NESTED);
        for e in exprs {
            expr::put(m, e);
        }
        m.end(l);
        if !comment.is_empty() || !owner.is_empty() {
            let mut u = Vec::with_capacity(comment.len() + owner.len() + 6);
            if !comment.is_empty() {
                udata_push(&mut u, UDATA_COMMENT, comment);
            }
            if !owner.is_empty() {
                udata_push(&mut u, UDATA_OWNER, owner);
            }
            m.put(NFTA_RULE_USERDATA, &u);
        }
    }

    /// Delete one rule. A handle of 0 would make the kernel flush the whole
    /// chain, so it is never sent.
    pub fn del_rule(&mut self, r: &Rule) {
        if r.handle == 0 {
            return;
        }
        let what = format!("delete rule {} of {} {} {}", r.handle, family_name(r.family), r.table, r.chain);
        let m = self.msg(NFT_MSG_DELRULE, 0, &Table { family: r.family, name: "" }, what);
        m.put_str(NFTA_RULE_TABLE, &r.table).put_str(NFTA_RULE_CHAIN, &r.chain).put_be64(NFTA_RULE_HANDLE, r.handle);
    }

    /// The batch on the wire: BEGIN (carrying `genid` unless 0), the messages
    /// numbered from `seq + 1`, END. The markers ask for no ACK: kernels
    /// before 6.10 would answer them with an error.
    pub fn encode(&self, seq: u32, genid: u32) -> Vec<u8> {
        let marker = |ty: u16, genid: u32| {
            let mut m = MsgBuf::new(ty, NLM_F_REQUEST);
            m.push(&[0, 0, 0, NFNL_SUBSYS_NFTABLES as u8]);
            if genid != 0 {
                m.put_be32(NFNL_BATCH_GENID, genid);
            }
            m
        };
        let (begin, end) = (marker(NFNL_MSG_BATCH_BEGIN, genid), marker(NFNL_MSG_BATCH_END, 0));
        // One allocation of the whole size: grown from empty, a large batch
        // was copied about log2(size) times, each through a fresh mapping.
        let len = self.msgs.iter().map(|(m, _)| m.wire_len()).sum::<usize>() + begin.wire_len() + end.wire_len();
        let mut out = Vec::with_capacity(len);
        begin.finish_into(seq, &mut out);
        for (i, (m, _)) in self.msgs.iter().enumerate() {
            m.finish_into(seq + 1 + i as u32, &mut out);
        }
        end.finish_into(seq + 1 + self.msgs.len() as u32, &mut out);
        out
    }
}

/// A rule read back from the kernel.
pub struct Rule {
    pub family: u8,
    pub table: String,
    pub chain: String,
    pub handle: u64,
    pub comment: Vec<u8>,
    /// The attachment it was written for (UDATA_OWNER); empty when not recorded.
    pub owner: Vec<u8>,
    /// The encoded expression list (`NFTA_RULE_EXPRESSIONS` payload).
    pub exprs: Vec<u8>,
}

impl Rule {
    /// A rule from a GETRULE dump message's payload (public for the fuzz target).
    pub fn parse(p: &[u8]) -> Option<Rule> {
        let mut r = Rule {
            family: *p.first()?,
            table: String::new(),
            chain: String::new(),
            handle: 0,
            comment: Vec::new(),
            owner: Vec::new(),
            exprs: Vec::new(),
        };
        for a in Attrs::new(p.get(4..)?) {
            match a.ty {
                NFTA_RULE_TABLE => r.table = a.str().to_string(),
                NFTA_RULE_CHAIN => r.chain = a.str().to_string(),
                NFTA_RULE_HANDLE => r.handle = a.be64(),
                NFTA_RULE_EXPRESSIONS => r.exprs = a.data.to_vec(),
                NFTA_RULE_USERDATA => {
                    r.comment = parse_udata(a.data, UDATA_COMMENT);
                    r.owner = parse_udata(a.data, UDATA_OWNER);
                }
                _ => {}
            }
        }
        Some(r)
    }

    /// Whether some `cmp` of the rule compares against exactly `value`.
    pub fn compares(&self, value: &[u8]) -> bool {
        expr::cmp_values(&self.exprs).contains(&value)
    }
}

/// Append the element keys of a GETSETELEM dump message's payload to `keys`.
fn parse_elements(p: &[u8], keys: &mut Vec<Vec<u8>>) {
    let Some(list) = Attrs::new(p.get(4..).unwrap_or(&[])).get(NFTA_SET_ELEM_LIST_ELEMENTS) else { return };
    for e in list.attrs() {
        if let Some(k) = e.attrs().get(NFTA_SET_ELEM_KEY).and_then(|k| k.attrs().get(expr::NFTA_DATA_VALUE)) {
            keys.push(k.data.to_vec());
        }
    }
}

/// A NETLINK_NETFILTER socket of this call's own, in the current namespace,
/// with the namespace's turn at nftables while a trusted keeper gives one;
/// the socket is handed to the keeper when dropped (see `keeper`).
pub struct Nft {
    /// An Option only so that Drop can hand the descriptor on.
    sock: Option<Socket>,
    visit: Option<keeper::Visit>,
}

impl Drop for Nft {
    fn drop(&mut self) {
        if let Some(s) = self.sock.take() {
            keeper::keep(s.into_fd(), self.visit.take());
        }
    }
}

impl Nft {
    pub fn open() -> Result<Nft> {
        let sock = Socket::open(NETLINK_NETFILTER).map_err(|e| e.context("nftables"))?;
        Ok(Nft { sock: Some(sock), visit: keeper::visit() })
    }

    fn sock(&mut self) -> &mut Socket {
        self.sock.as_mut().expect("the socket is only taken by drop")
    }

    fn dump(&mut self, m: MsgBuf, what: std::fmt::Arguments<'_>) -> Result<Vec<Vec<u8>>> {
        self.sock().dump(m, what)
    }

    /// The ruleset generation, which every committed change increments.
    pub fn genid(&mut self) -> Result<u32> {
        let mut m = MsgBuf::new((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN, NLM_F_REQUEST);
        m.push(&[0, 0, 0, 0]);
        let id = self.sock().get_with(m, "nftables: read ruleset generation", |p| {
            Attrs::new(p.get(4..).unwrap_or(&[])).get(NFTA_GEN_ID).map(|a| a.be32())
        })?;
        Ok(id.flatten().unwrap_or(0))
    }

    /// The rules of `table` of `family`, optionally of one chain. A table or
    /// chain that does not exist has no rules.
    pub fn rules(&mut self, family: u8, table: &str, chain: &str) -> Result<Vec<Rule>> {
        let mut m = MsgBuf::new((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE, NLM_F_REQUEST | NLM_F_DUMP);
        m.push(&[family, 0, 0, 0]);
        m.put_str(NFTA_RULE_TABLE, table);
        if !chain.is_empty() {
            m.put_str(NFTA_RULE_CHAIN, chain);
        }
        match self.dump(m, format_args!("nftables: list rules of table {table}")) {
            Ok(v) => Ok(v.iter().filter_map(|p| Rule::parse(p)).collect()),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The names of the chains of `table` (family `family`).
    pub fn chains(&mut self, family: u8, table: &str) -> Result<Vec<String>> {
        self.names(NFT_MSG_GETCHAIN, NFTA_CHAIN_NAME, family, table)
    }

    /// The names of the sets of `table` (family `family`).
    pub fn sets(&mut self, family: u8, table: &str) -> Result<Vec<String>> {
        self.names(NFT_MSG_GETSET, NFTA_SET_NAME, family, table)
    }

    /// The names (attribute `name`) of the chains or sets (`get`) of `table`.
    /// Both name their table in attribute 1: sent as a filter (which the
    /// kernel applies to sets only) and checked on each reply.
    fn names(&mut self, get: u16, name: u16, family: u8, table: &str) -> Result<Vec<String>> {
        const TABLE: u16 = NFTA_CHAIN_TABLE;
        let mut m = MsgBuf::new((NFNL_SUBSYS_NFTABLES << 8) | get, NLM_F_REQUEST | NLM_F_DUMP);
        m.push(&[family, 0, 0, 0]);
        m.put_str(TABLE, table);
        let what = if get == NFT_MSG_GETSET { "sets" } else { "chains" };
        let v = match self.dump(m, format_args!("nftables: list {what} of table {table}")) {
            Ok(v) => v,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for p in &v {
            let a = Attrs::new(p.get(4..).unwrap_or(&[]));
            if a.get(TABLE).map(|t| t.str()) == Some(table) {
                out.extend(a.get(name).map(|n| n.str().to_string()));
            }
        }
        Ok(out)
    }

    /// The keys of the elements of set `set` of `t`. A set that does not
    /// exist is an error that `is_not_found`.
    pub fn set_elements(&mut self, t: &Table, set: &str) -> Result<Vec<Vec<u8>>> {
        let mut m = MsgBuf::new((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM, NLM_F_REQUEST | NLM_F_DUMP);
        m.push(&[t.family, 0, 0, 0]);
        m.put_str(NFTA_SET_ELEM_LIST_SET, set).put_str(NFTA_SET_ELEM_LIST_TABLE, t.name);
        let v = self.dump(m, format_args!("nftables: list elements of set {t} {set}"))?;
        let mut keys = Vec::new();
        for p in &v {
            parse_elements(p, &mut keys);
        }
        Ok(keys)
    }

    /// Send the batch and collect the kernel's errors. The messages ask for
    /// no ACK, as `nft`'s do: the kernel handles a batch inside the send call
    /// and queues an error for each message that failed (and one against
    /// BEGIN for a failed commit), so once `send` returns, an empty queue
    /// means the batch was applied. Thousands of ACKs would overflow the
    /// receive buffer of a large batch (a few thousand port mappings).
    pub fn commit(&mut self, b: &Batch, genid: u32) -> Result<()> {
        if b.is_empty() {
            return Ok(());
        }
        crate::failpoint::hit("nft batch")?;
        b.send_on(self.sock(), genid)
    }
}

impl Batch {
    /// Send the batch on `sock` and collect the kernel's errors (see `Nft::commit`).
    pub(crate) fn send_on(&self, sock: &mut Socket, genid: u32) -> Result<()> {
        for (m, what) in &self.msgs {
            m.check(what)?;
        }
        let seq = sock.next_seq();
        for _ in 0..=self.msgs.len() {
            sock.next_seq();
        }
        let bytes = self.encode(seq, genid);
        if bytes.len() > 128 * 1024 {
            sock.reserve_send(bytes.len() + 4096);
        }
        sock.send(&bytes).map_err(|e| match e.errno {
            libc::EMSGSIZE => e.context(format_args!(
                "nftables: a batch of {} messages ({} bytes) is more than the socket takes",
                self.msgs.len(),
                bytes.len()
            )),
            _ => e.context("nftables"),
        })?;
        let mut err: Option<Error> = None;
        sock.drain(|data| {
            if err.is_none() {
                err = self.error_in(seq, data);
            }
        })?;
        err.map_or(Ok(()), Err)
    }

    /// The first error in `data` (a datagram read after sending this batch
    /// numbered from `seq`) that is about this batch, named after the
    /// message it answers.
    fn error_in(&self, seq: u32, data: &[u8]) -> Option<Error> {
        let m = Msgs::new(data).find(|m| {
            m.ty == NLMSG_ERROR && m.error_code() != 0 && m.seq.wrapping_sub(seq) as usize <= self.msgs.len() + 1
        })?;
        let what = match m.seq.wrapping_sub(seq) as usize {
            0 => "commit batch",
            i => self.msgs.get(i - 1).map_or("batch", |(_, w)| w.as_str()),
        };
        Some(kernel_error(&format_args!("nftables: {what}"), &m))
    }
}

/// Compute a change from what `build` lists and commit it against the
/// ruleset generation read before the listing; computed again when someone
/// changed the ruleset in between (another cnibox call, nft, kube-proxy).
///
/// cnibox calls take turns where a trusted keeper gives them one (see
/// `keeper`): a dozen pods starting at once would otherwise keep
/// invalidating each other's listings (every commit moves the generation),
/// and under load one could lose the race for seconds. The generation check
/// guards against everything else (nft, kube-proxy, a call that went on
/// without its turn): the pauses between attempts are random, so that calls
/// refused together do not come back together, and grow up to a few
/// milliseconds; after GENID_DEADLINE of refusals the call gives up.
pub fn transact(mut build: impl FnMut(&mut Nft) -> Result<Batch>) -> Result<()> {
    let mut nft = Nft::open()?;
    let start = std::time::Instant::now();
    let mut attempt = 0u32;
    loop {
        let gen = nft.genid()?;
        let b = build(&mut nft)?;
        match nft.commit(&b, gen) {
            Err(e) if e.is_errno(ERESTART) => {}
            other => return other,
        }
        if start.elapsed() >= GENID_DEADLINE {
            return Err(Error::new(
                crate::error::code::TRY_AGAIN_LATER,
                format!(
                    "nftables: the ruleset changed between listing and commit {} times in {} s; \
                     another program keeps rewriting it",
                    attempt + 1,
                    GENID_DEADLINE.as_secs()
                ),
            ));
        }
        let cap = 50u64 << attempt.min(7);
        let mut r = [0u8; 2];
        crate::sys::random_bytes(&mut r);
        let pause = cap / 2 + u64::from(u16::from_ne_bytes(r)) % (cap / 2 + 1);
        std::thread::sleep(std::time::Duration::from_micros(pause));
        attempt += 1;
    }
}

#[cfg(test)]
mod tests;
