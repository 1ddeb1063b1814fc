//! nf_tables replies: rule listings (the messages, their attributes, the
//! expression list and the `cmp` values cnibox reads to recognise its rules),
//! and batch error answers.

#![no_main]

use cnibox::netlink::{Attrs, Msgs};
use cnibox::nft::expr::cmp_values;
use libfuzzer_sys::fuzz_target;

const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;

fuzz_target!(|data: &[u8]| {
    for m in Msgs::new(data) {
        let _ = (m.error_code(), m.error_seq(), m.ext_ack());
        // The parser cnibox itself uses on rule listings.
        if let Some(r) = cnibox::nft::Rule::parse(m.payload) {
            let _ = r.compares(&[0; 4]);
        }
        // NFT_MSG_NEWRULE replies: nfgenmsg (4 bytes), then the rule's attributes.
        let attrs = Attrs::new(m.payload.get(4..).unwrap_or(&[]));
        for a in attrs {
            let _ = (a.str(), a.be32(), a.be64());
            if a.ty == NFTA_RULE_EXPRESSIONS {
                for v in cmp_values(a.data) {
                    assert!(v.len() <= a.data.len());
                }
            }
            if a.ty == NFTA_RULE_USERDATA {
                // libnftnl TLVs: (type, length, value)...
                let mut u = a.data;
                while u.len() >= 2 {
                    let len = u[1] as usize;
                    let Some(rest) = u.get(2 + len..) else { break };
                    u = rest;
                }
            }
        }
    }
    let _ = cmp_values(data);
});
