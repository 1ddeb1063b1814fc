//! Golden bytes: every message shape cnibox sends, compared after the 16-byte
//! netlink header with what `nft` 1.0.6 sends for the same command. The
//! vectors were taken in a throwaway namespace with
//! `strace -f -e trace=sendmsg -e write=all nft -f <commands>` (one command
//! per vector; the command is next to each comparison below). `nft` sends
//! no ACK flag and adds `NFTA_TABLE_FLAGS` to tables; everything else must
//! match to the byte.

use super::expr::*;
use super::*;
use crate::net::{IpNet, Mac};

const MASQ_V4: &str =
    "010000001b000100636e695f706c7567696e735f6d6173717565726164650000100002006d6173715f636865636b73002801048024000180090001006d6574610000000014000280080002000000000f08000100000000012c00018008000100636d700020000280080001000000000108000200000000000c0003800500010002000000340001800c0001007061796c6f6164002400028008000100000000010800020000000001080003000000000c08000400000000042c00018008000100636d700020000280080001000000000108000200000000000c000380080001000a580005340001800c0001007061796c6f6164002400028008000100000000010800020000000001080003000000001008000400000000022c00018008000100636d700020000280080001000000000108000200000000010c000380060001000a58000014000180090001006d617371000000000400028011000700000b6374722d61626331323300000000";
const MASQ_V4_12: &str =
    "010000001b000100636e695f706c7567696e735f6d6173717565726164650000100002006d6173715f636865636b73006c01048024000180090001006d6574610000000014000280080002000000000f08000100000000012c00018008000100636d700020000280080001000000000108000200000000000c0003800500010002000000340001800c0001007061796c6f6164002400028008000100000000010800020000000001080003000000000c08000400000000042c00018008000100636d700020000280080001000000000108000200000000000c000380080001000a580005340001800c0001007061796c6f616400240002800800010000000001080002000000000108000300000000100800040000000004440001800c0001006269747769736500340002800800010000000001080002000000000108000300000000040c00048008000100fff000000c00058008000100000000002c00018008000100636d700020000280080001000000000108000200000000010c000380080001000a50000014000180090001006d617371000000000400028011000700000b6374722d61626331323300000000";
const MASQ_V6: &str =
    "010000001b000100636e695f706c7567696e735f6d6173717565726164650000100002006d6173715f636865636b73003801048024000180090001006d6574610000000014000280080002000000000f08000100000000012c00018008000100636d700020000280080001000000000108000200000000000c000380050001000a000000340001800c0001007061796c6f6164002400028008000100000000010800020000000001080003000000000808000400000000103800018008000100636d70002c000280080001000000000108000200000000001800038014000100fd000000000000000000000000000005340001800c0001007061796c6f6164002400028008000100000000010800020000000001080003000000001808000400000000083000018008000100636d70002400028008000100000000010800020000000001100003800c000100fd0000000000000014000180090001006d617371000000000400028011000700000b6374722d61626331323300000000";
const MCAST_V4: &str =
    "010000001b000100636e695f706c7567696e735f6d617371756572616465000010000200706f7374726f7574696e67002801048024000180090001006d6574610000000014000280080002000000000f08000100000000012c00018008000100636d700020000280080001000000000108000200000000000c0003800500010002000000340001800c0001007061796c6f616400240002800800010000000001080002000000000108000300000000100800040000000004440001800c0001006269747769736500340002800800010000000001080002000000000108000300000000040c00048008000100f00000000c00058008000100000000002c00018008000100636d700020000280080001000000000108000200000000000c00038008000100e0000000300001800e000100696d6d6564696174650000001c0002800800010000000000100002800c00028008000100fffffffb";
const MCAST_V6: &str =
    "010000001b000100636e695f706c7567696e735f6d617371756572616465000010000200706f7374726f7574696e6700e400048024000180090001006d6574610000000014000280080002000000000f08000100000000012c00018008000100636d700020000280080001000000000108000200000000000c000380050001000a000000340001800c0001007061796c6f6164002400028008000100000000010800020000000001080003000000001808000400000000012c00018008000100636d700020000280080001000000000108000200000000000c00038005000100ff000000300001800e000100696d6d6564696174650000001c0002800800010000000000100002800c00028008000100fffffffb";
const GOTO: &str =
    "010000001b000100636e695f706c7567696e735f6d617371756572616465000010000200706f7374726f7574696e670044000480400001800e000100696d6d6564696174650000002c0002800800010000000000200002801c00028008000100fffffffc100002006d6173715f636865636b7300";
const CHAIN_COMMENT: &str =
    "010000001b000100636e695f706c7567696e735f6d6173717565726164650000100003006d6173715f636865636b730059000c0000534d61737175657261646520747261666669632066726f6d206365727461696e2049507320746f20616e7920286e6f6e2d6d756c74696361737429204950206f757473696465207468656972207375626e657400000000";
const CHAIN_POSTROUTING: &str =
    "010000001b000100636e695f706c7567696e735f6d617371756572616465000010000300706f7374726f7574696e6700080007006e61740008000500000000011400048008000100000000040800020000000064";
const DNAT_TCP: &str =
    "0200000011000100636e695f686f7374706f7274000000000e000200686f7374706f7274730000004401048024000180090001006d6574610000000014000280080002000000001008000100000000012c00018008000100636d700020000280080001000000000108000200000000000c0003800500010006000000340001800c0001007061796c6f6164002400028008000100000000010800020000000002080003000000000208000400000000022c00018008000100636d700020000280080001000000000108000200000000000c000380060001001f9000002c0001800e000100696d6d6564696174650000001800028008000100000000010c000280080001000a5800052c0001800e000100696d6d6564696174650000001800028008000100000000020c000280060001000050000038000180080001006e6174002c000280080001000000000108000200000000020800030000000001080005000000000208000700000000020b0007000005637472310000";
const DNAT_HOSTIP_UDP: &str =
    "0200000011000100636e695f686f7374706f7274000000000e000200686f7374706f727473000000a4010480340001800c0001007061796c6f6164002400028008000100000000010800020000000001080003000000001008000400000000042c00018008000100636d700020000280080001000000000108000200000000000c00038008000100c0a8010124000180090001006d6574610000000014000280080002000000001008000100000000012c00018008000100636d700020000280080001000000000108000200000000000c0003800500010011000000340001800c0001007061796c6f6164002400028008000100000000010800020000000002080003000000000208000400000000022c00018008000100636d700020000280080001000000000108000200000000000c00038006000100003500002c0001800e000100696d6d6564696174650000001800028008000100000000010c000280080001000a5800052c0001800e000100696d6d6564696174650000001800028008000100000000020c0002800600010014e9000038000180080001006e6174002c000280080001000000000108000200000000020800030000000001080005000000000208000700000000020b0007000005637472310000";
const DNAT_V6_SCTP: &str =
    "0a00000011000100636e695f686f7374706f7274000000000e000200686f7374706f7274730000005001048024000180090001006d6574610000000014000280080002000000001008000100000000012c00018008000100636d700020000280080001000000000108000200000000000c0003800500010084000000340001800c0001007061796c6f6164002400028008000100000000010800020000000002080003000000000208000400000000022c00018008000100636d700020000280080001000000000108000200000000000c0003800600010023280000380001800e000100696d6d6564696174650000002400028008000100000000011800028014000100fd0000000000000000000000000000052c0001800e000100696d6d6564696174650000001800028008000100000000020c00028006000100005a000038000180080001006e6174002c0002800800010000000001080002000000000a0800030000000001080005000000000208000700000000020b0007000005637472310000";
const DNAT_V6_HOSTIP: &str =
    "0a00000011000100636e695f686f7374706f7274000000000e000200686f7374706f727473000000bc010480340001800c0001007061796c6f6164002400028008000100000000010800020000000001080003000000001808000400000000103800018008000100636d70002c000280080001000000000108000200000000001800038014000100fd00000000000000000000000000000124000180090001006d6574610000000014000280080002000000001008000100000000012c00018008000100636d700020000280080001000000000108000200000000000c0003800500010006000000340001800c0001007061796c6f6164002400028008000100000000010800020000000002080003000000000208000400000000022c00018008000100636d700020000280080001000000000108000200000000000c000380060001001f900000380001800e000100696d6d6564696174650000002400028008000100000000011800028014000100fd0000000000000000000000000000052c0001800e000100696d6d6564696174650000001800028008000100000000020c000280060001000050000038000180080001006e6174002c0002800800010000000001080002000000000a0800030000000001080005000000000208000700000000020b0007000005637472310000";
const HAIRPIN: &str =
    "0200000011000100636e695f686f7374706f727400000000110002006d6173717565726164696e6700000000d8000480340001800c0001007061796c6f6164002400028008000100000000010800020000000001080003000000000c08000400000000042c00018008000100636d700020000280080001000000000108000200000000000c000380080001000a580005340001800c0001007061796c6f6164002400028008000100000000010800020000000001080003000000001008000400000000042c00018008000100636d700020000280080001000000000108000200000000000c000380080001000a58000514000180090001006d61737100000000040002800b0007000005637472310000";
const LOCALHOST: &str =
    "0200000011000100636e695f686f7374706f727400000000110002006d6173717565726164696e6700000000d8000480340001800c0001007061796c6f6164002400028008000100000000010800020000000001080003000000000c08000400000000042c00018008000100636d700020000280080001000000000108000200000000000c000380080001007f000001340001800c0001007061796c6f6164002400028008000100000000010800020000000001080003000000001008000400000000042c00018008000100636d700020000280080001000000000108000200000000000c000380080001000a58000514000180090001006d61737100000000040002800b0007000005637472310000";
const MASQALL_V4: &str =
    "0200000011000100636e695f686f7374706f727400000000110002006d6173717565726164696e67000000001c010480340001800c0001007061796c6f6164002400028008000100000000010800020000000001080003000000000c0800040000000004440001800c0001006269747769736500340002800800010000000001080002000000000108000300000000040c00048008000100000000000c00058008000100000000002c00018008000100636d700020000280080001000000000108000200000000000c0003800800010000000000340001800c0001007061796c6f6164002400028008000100000000010800020000000001080003000000001008000400000000042c00018008000100636d700020000280080001000000000108000200000000000c000380080001000a58000514000180090001006d61737100000000040002800b0007000005637472310000";
const MASQALL_V6: &str =
    "0a00000011000100636e695f686f7374706f727400000000110002006d6173717565726164696e67000000004c010480340001800c0001007061796c6f6164002400028008000100000000010800020000000001080003000000000808000400000000105c0001800c00010062697477697365004c0002800800010000000001080002000000000108000300000000101800048014000100000000000000000000000000000000001800058014000100000000000000000000000000000000003800018008000100636d70002c00028008000100000000010800020000000000180003801400010000000000000000000000000000000000340001800c0001007061796c6f6164002400028008000100000000010800020000000001080003000000001808000400000000103800018008000100636d70002c000280080001000000000108000200000000001800038014000100fd00000000000000000000000000000514000180090001006d61737100000000040002800b0007000005637472310000";
const FIB_JUMP: &str =
    "0200000011000100636e695f686f7374706f7274000000000f000200707265726f7574696e6700009c0004802800018008000100666962001c0002800800030000000002080002000000000308000100000000012c00018008000100636d700020000280080001000000000108000200000000000c0003800800010002000000440001800e000100696d6d656469617465000000300002800800010000000000240002802000028008000100fffffffd12000200686f7374706f7274735f616c6c000000";
const JUMP_HOSTIP: &str =
    "0200000011000100636e695f686f7374706f72740000000012000200686f7374706f7274735f616c6c0000004c000480480001800e000100696d6d656469617465000000340002800800010000000000280002802400028008000100fffffffd15000200686f737469705f686f7374706f72747300000000";
const CHAIN_OUTPUT: &str =
    "0200000011000100636e695f686f7374706f7274000000000b0003006f75747075740000080007006e617400080005000000000114000480080001000000000308000200ffffff9c";
const TABLE_COMMENT: &str =
    "0200000011000100636e695f686f7374706f7274000000000800020000000000190006000013434e4920706f72746d617020706c7567696e00000000";
const SPOOF_JUMP: &str =
    "07000000080001006e6174000f000200505245524f5554494e470000ac00048024000180090001006d6574610000000014000280080002000000000608000100000000013800018008000100636d70002c000280080001000000000108000200000000001800038014000100766574683132333400000000000000004c0001800e000100696d6d6564696174650000003800028008000100000000002c0002802800028008000100fffffffd1a000200636e692d62722d69666163652d6162632d657468300000001b00070000156d616373706f6f6663686b2d6162632d657468300000";
const SPOOF_JUMP_MAC: &str =
    "07000000080001006e6174001a000200636e692d62722d69666163652d6162632d6574683000000054000480500001800e000100696d6d6564696174650000003c0002800800010000000000300002802c00028008000100fffffffd1e000200636e692d62722d69666163652d6162632d657468302d6d61630000001b00070000156d616373706f6f6663686b2d6162632d657468300000";
const SPOOF_RETURN: &str =
    "07000000080001006e6174001e000200636e692d62722d69666163652d6162632d657468302d6d616300000098000480340001800c0001007061796c6f6164002400028008000100000000010800020000000000080003000000000608000400000000063000018008000100636d70002400028008000100000000010800020000000000100003800a0001000a580a0100050000300001800e000100696d6d6564696174650000001c0002800800010000000000100002800c00028008000100fffffffb1b00070000156d616373706f6f6663686b2d6162632d657468300000";
const SPOOF_DROP: &str =
    "07000000080001006e6174001e000200636e692d62722d69666163652d6162632d657468302d6d616300000034000480300001800e000100696d6d6564696174650000001c0002800800010000000000100002800c00028008000100000000001b00070000156d616373706f6f6663686b2d6162632d657468300000";
const CHAIN_BRIDGE: &str =
    "07000000080001006e6174000f000300505245524f5554494e4700000b00070066696c7465720000080005000000000114000480080001000000000008000200fffffed4";
const FLUSH: &str = "0200000011000100636e695f686f7374706f7274000000000f000200707265726f7574696e670000";
const DELRULE: &str = "07000000080001006e6174000f000200505245524f5554494e4700000c0003000000000000000005";
const DELCHAIN: &str = "07000000080001006e6174001a000300636e692d62722d69666163652d6162632d65746830000000";
const LOCALNET_GUARD: &str =
    "02000000060001007400000006000200630000002002048024000180090001006d6574610000000014000280080002000000000608000100000000013800018008000100636d70002c0002800800010000000001080002000000000118000380140001006c6f0000000000000000000000000000340001800c0001007061796c6f6164002400028008000100000000010800020000000001080003000000001008000400000000012c00018008000100636d700020000280080001000000000108000200000000000c000380050001007f00000020000180070001006374000014000280080002000000000008000100000000014c0001800c00010062697477697365003c00028008000100000000010800020000000001080006000000000008000300000000040c00048008000100060000000c00058008000100000000002c00018008000100636d700020000280080001000000000108000200000000000c000380080001000000000020000180070001006374000014000280080002000000000208000100000000014c0001800c00010062697477697365003c00028008000100000000010800020000000001080006000000000008000300000000040c00048008000100200000000c00058008000100000000002c00018008000100636d700020000280080001000000000108000200000000000c0003800800010000000000300001800e000100696d6d6564696174650000001c0002800800010000000000100002800c00028008000100000000002a0007000024626c6f636b20696e636f6d696e67206c6f63616c6e657420636f6e6e656374696f6e73000000";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A payload captured on a little-endian machine (the vectors above), as this
/// machine's `nft` would send it: netlink attribute headers are in host byte
/// order, attribute values of nf_tables in network order (or strings), so
/// only the headers change, walking into nested attributes.
fn ne(captured: &str) -> String {
    fn walk(b: &mut [u8]) {
        let mut at = 0;
        while at + 4 <= b.len() {
            let len = u16::from_le_bytes([b[at], b[at + 1]]);
            let ty = u16::from_le_bytes([b[at + 2], b[at + 3]]);
            b[at..at + 2].copy_from_slice(&len.to_ne_bytes());
            b[at + 2..at + 4].copy_from_slice(&ty.to_ne_bytes());
            let end = (at + usize::from(len)).min(b.len());
            if ty & 0x8000 != 0 {
                walk(&mut b[at + 4..end]);
            }
            at += (usize::from(len) + 3) & !3;
            if len < 4 {
                break;
            }
        }
    }
    let mut b: Vec<u8> =
        (0..captured.len() / 2).map(|i| u8::from_str_radix(&captured[2 * i..2 * i + 2], 16).unwrap()).collect();
    // nfgenmsg: family, version, res_id (network order)
    walk(&mut b[4..]);
    hex(&b)
}

/// `captured` with the host-order u32 `v` that follows the attribute bytes
/// `attr` (a register value nft writes in host order: `ct state`, `fib ...
/// type`) in this machine's order.
fn host_u32(captured: &str, attr: &str, v: u32) -> String {
    let le = format!("{attr}{}", hex(&v.to_le_bytes()));
    assert!(captured.contains(&le), "{le} not in the vector");
    captured.replace(&le, &format!("{attr}{}", hex(&v.to_ne_bytes())))
}

/// The payloads after the netlink header of every message between BEGIN and END.
fn payloads(b: &Batch) -> Vec<String> {
    let bytes = b.encode(100, 0);
    crate::netlink::Msgs::new(&bytes).filter(|m| m.ty >> 8 == 10).map(|m| hex(m.payload)).collect()
}

fn one(b: &Batch) -> String {
    let p = payloads(b);
    assert_eq!(p.len(), 1);
    p[0].clone()
}

const MT: Table = masq::TABLE;
const P4: Table = Table { family: NFPROTO_IPV4, name: "cni_hostport" };
const P6: Table = Table { family: NFPROTO_IPV6, name: "cni_hostport" };
const BR: Table = spoofchk::TABLE;

fn rule(t: &Table, chain: &str, e: &[Expr], comment: &str) -> String {
    let mut b = Batch::new();
    b.add_rule(t, chain, e, comment.as_bytes());
    one(&b)
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn masquerade_rules_match_nft() {
    // add rule inet cni_plugins_masquerade masq_checks ip saddr 10.88.0.5 ip daddr != 10.88.0.0/16 masquerade comment "ctr-abc123"
    assert_eq!(rule(&MT, "masq_checks", &masq::masq_rule(&net("10.88.0.5/16")), "ctr-abc123"), ne(MASQ_V4));
    // ... ip daddr != 10.80.0.0/12 (not on a byte boundary: full load and bitwise)
    assert_eq!(rule(&MT, "masq_checks", &masq::masq_rule(&net("10.88.0.5/12")), "ctr-abc123"), ne(MASQ_V4_12));
    // ... ip6 saddr fd00::5 ip6 daddr != fd00::/64
    assert_eq!(rule(&MT, "masq_checks", &masq::masq_rule(&net("fd00::5/64")), "ctr-abc123"), ne(MASQ_V6));
    // ip daddr 224.0.0.0/4 return; ip6 daddr ff00::/8 return; goto masq_checks
    let [a, b, c] = masq::postrouting_rules();
    assert_eq!(rule(&MT, "postrouting", &a, ""), ne(MCAST_V4));
    assert_eq!(rule(&MT, "postrouting", &b, ""), ne(MCAST_V6));
    assert_eq!(rule(&MT, "postrouting", &c, ""), ne(GOTO));
}

#[test]
fn chains_and_tables_match_nft() {
    let mut b = Batch::new();
    // add chain inet cni_plugins_masquerade masq_checks { comment "..." }
    b.add_chain(
        &MT,
        "masq_checks",
        None,
        "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet",
    );
    // add chain inet cni_plugins_masquerade postrouting { type nat hook postrouting priority srcnat; policy accept; }
    b.add_chain(&MT, "postrouting", Some(Base { ty: "nat", hook: HOOK_POSTROUTING, prio: 100 }), "");
    // add chain ip cni_hostport output { type nat hook output priority -100; policy accept; }
    b.add_chain(&P4, "output", Some(Base { ty: "nat", hook: HOOK_OUTPUT, prio: -100 }), "");
    // add chain bridge nat PREROUTING { type filter hook prerouting priority -300; policy accept; }
    b.add_chain(&BR, "PREROUTING", Some(Base { ty: "filter", hook: HOOK_PREROUTING, prio: -300 }), "");
    // add table ip cni_hostport { comment "CNI portmap plugin"; }  (without nft's flags attribute)
    b.add_table(&P4, "CNI portmap plugin");
    // flush chain ip cni_hostport prerouting
    b.flush_chain(&P4, "prerouting");
    // delete rule bridge nat PREROUTING handle 5
    b.del_rule(&Rule {
        family: NFPROTO_BRIDGE,
        table: "nat".into(),
        chain: "PREROUTING".into(),
        handle: 5,
        comment: vec![],
        owner: vec![],
        exprs: vec![],
    });
    // delete chain bridge nat cni-br-iface-abc-eth0
    b.del_chain(&BR, "cni-br-iface-abc-eth0");
    let p = payloads(&b);
    let want = [
        CHAIN_COMMENT,
        CHAIN_POSTROUTING,
        CHAIN_OUTPUT,
        CHAIN_BRIDGE,
        &TABLE_COMMENT.replace("0800020000000000", ""),
        FLUSH,
        DELRULE,
        DELCHAIN,
    ]
    .map(ne);
    assert_eq!(p, want);
}

#[test]
fn portmap_rules_match_nft() {
    use portmap::{dnat_rule, masq_rules, Mapping};
    let c4: std::net::IpAddr = "10.88.0.5".parse().unwrap();
    let c6: std::net::IpAddr = "fd00::5".parse().unwrap();
    let m = |hp, cp, proto, host: Option<&str>| Mapping {
        host_port: hp,
        container_port: cp,
        proto,
        host_ip: host.map(|h| h.parse().unwrap()),
    };
    // tcp dport 8080 dnat to 10.88.0.5:80
    assert_eq!(rule(&P4, "hostports", &dnat_rule(&m(8080, 80, IPPROTO_TCP, None), &c4), "ctr1"), ne(DNAT_TCP));
    // an unspecified host IP is no match at all
    assert_eq!(
        rule(&P4, "hostports", &dnat_rule(&m(8080, 80, IPPROTO_TCP, Some("0.0.0.0")), &c4), "ctr1"),
        ne(DNAT_TCP)
    );
    // ip daddr 192.168.1.1 udp dport 53 dnat to 10.88.0.5:5353
    assert_eq!(
        rule(&P4, "hostports", &dnat_rule(&m(53, 5353, IPPROTO_UDP, Some("192.168.1.1")), &c4), "ctr1"),
        ne(DNAT_HOSTIP_UDP)
    );
    // sctp dport 9000 dnat to [fd00::5]:90
    assert_eq!(rule(&P6, "hostports", &dnat_rule(&m(9000, 90, IPPROTO_SCTP, None), &c6), "ctr1"), ne(DNAT_V6_SCTP));
    // ip6 daddr fd00::1 tcp dport 8080 dnat to [fd00::5]:80
    assert_eq!(
        rule(&P6, "hostports", &dnat_rule(&m(8080, 80, IPPROTO_TCP, Some("fd00::1")), &c6), "ctr1"),
        ne(DNAT_V6_HOSTIP)
    );
    // ip saddr 10.88.0.5 ip daddr 10.88.0.5 masquerade; ip saddr 127.0.0.1 ip daddr 10.88.0.5 masquerade
    let r = masq_rules(&c4, false);
    assert_eq!(r.len(), 2);
    assert_eq!(rule(&P4, "masquerading", &r[0], "ctr1"), ne(HAIRPIN));
    assert_eq!(rule(&P4, "masquerading", &r[1], "ctr1"), ne(LOCALHOST));
    // masqAll: ip saddr 0.0.0.0/0 ip daddr 10.88.0.5 masquerade (and no localhost rule)
    let r = masq_rules(&c4, true);
    assert_eq!(r.len(), 1);
    assert_eq!(rule(&P4, "masquerading", &r[0], "ctr1"), ne(MASQALL_V4));
    let r = masq_rules(&c6, true);
    assert_eq!(rule(&P6, "masquerading", &r[0], "ctr1"), ne(MASQALL_V6));
    assert_eq!(masq_rules(&c6, false).len(), 1);
    // fib daddr type local jump hostports_all; jump hostip_hostports
    let mut e = Vec::new();
    fib_daddr_local(&mut e);
    e.push(Expr::Verdict(NFT_JUMP, "hostports_all"));
    assert_eq!(rule(&P4, "prerouting", &e, ""), ne(&host_u32(FIB_JUMP, "0c00038008000100", 2)));
    assert_eq!(rule(&P4, "hostports_all", &[Expr::Verdict(NFT_JUMP, "hostip_hostports")], ""), ne(JUMP_HOSTIP));
    // add rule ip t c iifname != "lo" ip daddr 127.0.0.0/8 ct state & (established | related) == 0
    //     ct status & dnat == 0 drop comment "block incoming localnet connections"
    // nft 1.0.6 gives these two bitwise expressions an NFTA_BITWISE_OP of 0 (boolean, the
    // kernel's default), which cnibox leaves out here as nft itself does for prefixes.
    let with_op = "4c0001800c00010062697477697365003c000280080001000000000108000200000000010800060000000000";
    let without = "440001800c00010062697477697365003400028008000100000000010800020000000001";
    let want = LOCALNET_GUARD.replace(with_op, without).replace("20020480", "10020480");
    // the ct state and status masks are host-order u32s
    let want = host_u32(&host_u32(&want, "0c00048008000100", 6), "0c00048008000100", 0x20);
    let t = Table { family: NFPROTO_IPV4, name: "t" };
    assert_eq!(rule(&t, "c", &portmap::localnet_guard_rule(), "block incoming localnet connections"), ne(&want));
}

#[test]
fn spoofcheck_rules_match_nft() {
    let mac: Mac = "0a:58:0a:01:00:05".parse().unwrap();
    let mut e = Vec::new();
    // iifname "veth1234" jump cni-br-iface-abc-eth0
    iifname(&mut e, NFT_CMP_EQ, "veth1234");
    e.push(Expr::Verdict(NFT_JUMP, "cni-br-iface-abc-eth0"));
    let c = "macspoofchk-abc-eth0";
    assert_eq!(rule(&BR, "PREROUTING", &e, c), ne(SPOOF_JUMP));
    assert_eq!(
        rule(&BR, "cni-br-iface-abc-eth0", &[Expr::Verdict(NFT_JUMP, "cni-br-iface-abc-eth0-mac")], c),
        ne(SPOOF_JUMP_MAC)
    );
    // ether saddr 0a:58:0a:01:00:05 return; drop
    let mut e = Vec::new();
    ether_saddr(&mut e, &mac.0);
    e.push(Expr::Verdict(NFT_RETURN, ""));
    assert_eq!(rule(&BR, "cni-br-iface-abc-eth0-mac", &e, c), ne(SPOOF_RETURN));
    assert_eq!(rule(&BR, "cni-br-iface-abc-eth0-mac", &[Expr::Verdict(NF_DROP, "")], c), ne(SPOOF_DROP));
}

#[test]
fn masquerade_comment_is_the_references() {
    // Expected values computed independently: python3 hashlib.sha512(...).hexdigest()[:16]
    assert_eq!(
        masq::comment("cbr0", "eth0", "abc"),
        b"cb6e746fae1a4d6c-e65086f8a75535c6, net: cbr0, if: eth0, id: abc"
    );
    assert_eq!(masq::instance_key("cbr0", "eth0", "abc"), "cb6e746fae1a4d6c-e65086f8a75535c6");
    // quotes are dropped from the readable part only, and the whole is cut at 128 bytes
    let id = "f".repeat(100);
    let c = masq::comment("my\"net", "eth0", &id);
    assert_eq!(c.len(), 128);
    assert!(c.starts_with(b"b591271a779eb12b-9212d417e08da685, net: mynet, if: eth0, id: fff"));
}

#[test]
fn batch_framing() {
    let mut b = Batch::new();
    b.add_table(&P4, "");
    b.del_chain(&P4, "x");
    let bytes = b.encode(7, 0x01020304);
    let msgs: Vec<_> = crate::netlink::Msgs::new(&bytes).collect();
    assert_eq!(msgs.len(), 4);
    // BEGIN: type 0x10, REQUEST only, nfgenmsg res_id = htons(10), then the generation
    assert_eq!((msgs[0].ty, msgs[0].flags, msgs[0].seq), (0x10, 1, 7));
    assert_eq!(hex(msgs[0].payload), ne("0000000a0800010001020304"));
    // messages are numbered after BEGIN and ask for no ACK (errors come anyway)
    assert_eq!((msgs[1].ty, msgs[1].flags, msgs[1].seq), (0x0a00, 0x401, 8));
    assert_eq!((msgs[2].ty, msgs[2].flags, msgs[2].seq), (0x0a05, 0x001, 9));
    assert_eq!((msgs[3].ty, msgs[3].flags, msgs[3].seq), (0x11, 1, 10));
    assert_eq!(msgs[3].payload, &[0, 0, 0, 10]);
    // a handle of 0 would flush the chain: never sent
    let mut b = Batch::new();
    b.del_rule(&Rule {
        family: NFPROTO_IPV4,
        table: "t".into(),
        chain: "c".into(),
        handle: 0,
        comment: vec![],
        owner: vec![],
        exprs: vec![],
    });
    assert!(b.is_empty());
}

#[test]
fn keeper_table_delete() {
    let mut b = Batch::new();
    b.del_table(&keeper::HOLD);
    let bytes = b.encode(7, 0);
    let m = crate::netlink::Msgs::new(&bytes).nth(1).unwrap();
    // DELTABLE, REQUEST only; inet, name "cnibox_keeper"
    assert_eq!((m.ty, m.flags), (0x0a02, 0x001));
    assert_eq!(hex(m.payload), ne("0100000012000100636e69626f785f6b6565706572000000"));
}

#[test]
fn rules_read_back_with_comment_and_values() {
    // A rule as the kernel dumps it: nfgenmsg, TABLE, CHAIN, HANDLE, EXPRESSIONS, USERDATA.
    let mut b = Batch::new();
    b.add_rule(
        &P4,
        "hostports",
        &portmap::dnat_rule(
            &portmap::Mapping { host_port: 8080, container_port: 80, proto: IPPROTO_TCP, host_ip: None },
            &"10.88.0.5".parse().unwrap(),
        ),
        b"ctr1",
    );
    let mut wire = b.encode(1, 0);
    let mut m = crate::netlink::MsgBuf::new(0, 0);
    m.put_be64(3, 42);
    wire.extend_from_slice(&m.finish(0)[16..]);
    let msg = crate::netlink::Msgs::new(&wire).nth(1).unwrap();
    let mut p = msg.payload.to_vec();
    p.extend_from_slice(&wire[wire.len() - 12..]);
    let r = Rule::parse(&p).unwrap();
    assert_eq!(
        (r.family, r.table.as_str(), r.chain.as_str(), r.handle),
        (NFPROTO_IPV4, "cni_hostport", "hostports", 42)
    );
    assert_eq!(r.comment, b"ctr1");
    assert!(r.compares(&[IPPROTO_TCP]) && r.compares(&8080u16.to_be_bytes()));
    assert!(!r.compares(&80u16.to_be_bytes()), "the DNAT target is no comparison");
    // user data with another TLV before the comment, and without the NUL
    assert_eq!(parse_udata(&[1, 2, 9, 9, 0, 3, b'a', b'b', b'c'], UDATA_COMMENT), b"abc");
    assert_eq!(parse_udata(&[0, 9, b'a'], UDATA_COMMENT), b"");
}

#[test]
fn an_owned_rule_carries_its_comment_first_and_its_owner_after() {
    let mut b = Batch::new();
    b.add_rule_owned(&Table { family: NFPROTO_IPV4, name: "t" }, "c", &[], b"ctr1", b"k1");
    let bytes = b.encode(1, 0);
    let want = [0u8, 5, b'c', b't', b'r', b'1', 0, UDATA_OWNER, 3, b'k', b'1', 0];
    assert!(bytes.windows(want.len()).any(|w| w == want), "{bytes:?}");
    assert_eq!(parse_udata(&want, UDATA_COMMENT), b"ctr1");
    assert_eq!(parse_udata(&want, UDATA_OWNER), b"k1");
}

fn rule_at(family: u8, table: &str, chain: &str, handle: u64, comment: &[u8]) -> Rule {
    Rule {
        family,
        table: table.into(),
        chain: chain.into(),
        handle,
        comment: comment.to_vec(),
        owner: vec![],
        exprs: vec![],
    }
}

#[test]
fn masquerade_add_replaces_only_its_own_rules() {
    let mine = masq::comment("cbr0", "eth0", "abc");
    let other = masq::comment("cbr0", "eth0", "xyz");
    let stale = [
        rule_at(NFPROTO_INET, "cni_plugins_masquerade", "masq_checks", 7, &mine),
        rule_at(NFPROTO_INET, "cni_plugins_masquerade", "masq_checks", 8, &other),
    ];
    let b = masq::setup_batch(&stale, "cbr0", "eth0", "abc", &[net("10.88.0.5/16"), net("fd00::5/64")]);
    let what: Vec<&str> = b.msgs.iter().map(|(_, w)| w.as_str()).collect();
    assert_eq!(
        what,
        [
            "add table inet cni_plugins_masquerade",
            "add chain inet cni_plugins_masquerade masq_checks",
            "add chain inet cni_plugins_masquerade postrouting (type nat hook postrouting priority 100)",
            "flush chain inet cni_plugins_masquerade postrouting",
            "add rule to inet cni_plugins_masquerade postrouting",
            "add rule to inet cni_plugins_masquerade postrouting",
            "add rule to inet cni_plugins_masquerade postrouting",
            "delete rule 7 of inet cni_plugins_masquerade masq_checks",
            "add rule to inet cni_plugins_masquerade masq_checks",
            "add rule to inet cni_plugins_masquerade masq_checks",
        ]
    );
    let p = payloads(&b);
    // the same rule as the golden one, under the attachment's comment
    let body = &MASQ_V4[..MASQ_V4.len() - 40]; // minus the 20-byte user data of "ctr-abc123"
    assert_eq!(
        p[8],
        ne(&format!(
            "{body}{:02x}00070000{:02x}{}00{}",
            mine.len() + 7,
            mine.len() + 1,
            hex(&mine),
            "00".repeat(3 - (mine.len() + 6) % 4)
        ))
    );
}

/// An NLMSG_ERROR datagram answering `seq` with `-errno`.
fn nlmsg_error(seq: u32, errno: i32) -> Vec<u8> {
    let mut m = crate::netlink::MsgBuf::new(crate::netlink::NLMSG_ERROR, 0);
    m.push(&(-errno).to_ne_bytes());
    m.push(&crate::netlink::MsgBuf::new(0, 0).finish(seq)); // the request's header, echoed
    m.finish(seq)
}

#[test]
fn commit_counts_only_errors_about_its_own_batch() {
    let mut b = Batch::new();
    b.add_table(&P4, "");
    b.add_chain(&P4, "c", None, "");
    // The batch is numbered 100 (BEGIN), 101, 102, 103 (END).
    let seq = 100;
    // An earlier user's error on a shared socket: another sequence number.
    assert!(b.error_in(seq, &nlmsg_error(7, libc::ENOENT)).is_none());
    assert!(b.error_in(seq, &nlmsg_error(seq + 4, libc::ENOENT)).is_none());
    assert!(b.error_in(seq, &nlmsg_error(seq.wrapping_sub(1), libc::ENOENT)).is_none());
    // Ours, named after the message it answers.
    let e = b.error_in(seq, &nlmsg_error(seq + 2, libc::EEXIST)).expect("our error");
    assert!(e.is_errno(libc::EEXIST) && e.msg.contains("add chain ip cni_hostport c"), "{e}");
    let e = b.error_in(seq, &nlmsg_error(seq, ERESTART)).expect("the commit's error");
    assert!(e.msg.contains("commit batch"), "{e}");
    // A stale error first in the same datagram does not hide ours.
    let mut both = nlmsg_error(5, libc::ENOENT);
    both.extend(nlmsg_error(seq + 1, libc::EPERM));
    assert!(b.error_in(seq, &both).expect("ours").is_errno(libc::EPERM));
    // Sequence numbers that wrap around are still ours.
    assert!(b.error_in(u32::MAX, &nlmsg_error(1, libc::EPERM)).is_some());
}
