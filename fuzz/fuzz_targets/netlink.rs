//! rtnetlink replies as the kernel (or anything that can talk netlink to
//! us) might send them: the message iterator, error and extended-ack
//! decoding, the attribute iterator (nested, any depth), and the parsers of
//! links, addresses, routes, policy rules and qdiscs.

#![no_main]

use cnibox::netlink::{Attrs, Msgs};
use cnibox::rtnl;
use libfuzzer_sys::fuzz_target;

fn walk(a: Attrs, depth: u32) -> usize {
    let mut n = 0;
    for attr in a {
        n += 1;
        let _ = (attr.u8(), attr.u16(), attr.u32(), attr.be32(), attr.be64(), attr.str());
        if depth < 4 {
            n += walk(attr.attrs(), depth + 1);
        }
    }
    n
}

fuzz_target!(|data: &[u8]| {
    for m in Msgs::new(data) {
        let _ = (m.error_code(), m.error_seq(), m.ext_ack());
        for hdr in [0, 4, 8, 12, 16, 20] {
            walk(m.attrs(hdr), 0);
        }
        let p = m.payload;
        match m.ty {
            16 => drop(rtnl::link::Link::parse(p)),
            20 => drop(rtnl::addr::Addr::parse(p)),
            24 => drop(rtnl::route::Route::parse(p)),
            32 => drop(rtnl::rule::Rule::parse(p)),
            36 => drop(rtnl::tc::Qdisc::parse(p)),
            _ => {
                let _ = rtnl::link::Link::parse(p);
                let _ = rtnl::addr::Addr::parse(p);
                let _ = rtnl::route::Route::parse(p);
                let _ = rtnl::rule::Rule::parse(p);
                let _ = rtnl::tc::Qdisc::parse(p);
            }
        }
    }
    // A payload on its own, as `Socket::dump` hands it to the parsers.
    let _ = rtnl::link::Link::parse(data);
    let _ = rtnl::addr::Addr::parse(data);
    let _ = rtnl::route::Route::parse(data);
});
