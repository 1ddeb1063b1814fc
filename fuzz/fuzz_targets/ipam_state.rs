//! host-local's state file: any bytes (truncated, garbage, a crash's
//! leftovers, a hand edit) parse without panicking, lookups agree with the
//! entries, and what is rendered back reads as a trusted file holding the
//! same reservations (plus and minus the edit).

#![no_main]

use cnibox::ipam::state::{escape, unescape, Edit, State};
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;

type Line = (IpAddr, Vec<u8>, Option<Vec<u8>>, std::ops::Range<usize>);

/// Whether every entry's line is exactly what cnibox renders, in order.
fn canonical(data: &[u8], entries: &[Line]) -> bool {
    let key = |ip: &IpAddr| {
        (
            ip.is_ipv6(),
            match ip {
                IpAddr::V4(a) => u32::from(*a) as u128,
                IpAddr::V6(a) => u128::from(*a),
            },
        )
    };
    let rendered = |e: &Line| {
        let mut l = e.0.to_string().into_bytes();
        for w in [Some(&e.1), e.2.as_ref()].into_iter().flatten().filter(|w| !w.is_empty()) {
            l.push(b' ');
            l.extend_from_slice(w);
        }
        l.push(b'\n');
        l
    };
    if !entries.windows(2).all(|w| key(&w[0].0) < key(&w[1].0))
        || !entries.iter().all(|e| data.get(e.3.clone()) == Some(&rendered(e)[..]))
    {
        return false;
    }
    // And every line after the header and the round-robin marks is an entry.
    let mut at = data.iter().position(|&c| c == b'\n').map_or(data.len(), |p| p + 1);
    let mut body = false;
    let mut next = entries.iter().map(|e| e.3.start).peekable();
    while at < data.len() {
        let end = data[at..].iter().position(|&c| c == b'\n').map_or(data.len(), |p| at + p + 1);
        let line = &data[at..end];
        if !body && (line.starts_with(b"last_reserved_ip.") || line.starts_with(b"#")) {
            at = end;
            continue;
        }
        body = true;
        if next.next() != Some(at) {
            return false;
        }
        at = end;
    }
    true
}

fuzz_target!(|data: &[u8]| {
    let s = State::parse(data);
    let entries: Vec<Line> =
        s.entries().map(|e| (e.ip, e.id.to_vec(), e.ifname.map(<[u8]>::to_vec), e.span.clone())).collect();
    // KNOWN BUG (src/ipam/state.rs): a file whose header records its size is
    // trusted to be in the form cnibox writes (sorted, one canonical line per
    // reservation), and the binary search misses reservations of one that is
    // not: unsorted, or a line with leading blanks (tests/hostile.rs,
    // trusted_state_file_that_is_not_canonical_...). Skipped here until fixed,
    // so that the target keeps looking further.
    if !s.was_normalized() && !canonical(data, &entries) {
        return;
    }
    for (ip, id, ifname, _) in entries.iter().take(64) {
        let h = s.holder(ip).unwrap_or_else(|| panic!("{ip} is an entry but has no holder"));
        assert_eq!(h.ip, *ip);
        // Found again by the names the words stand for (when they are text,
        // written the way cnibox writes them).
        let name = |w: &[u8]| {
            let n = String::from_utf8(unescape(w).into_owned()).ok()?;
            (escape(n.as_bytes()).as_bytes() == w).then_some(n)
        };
        let Some(id) = name(id).filter(|i| !i.is_empty()) else { continue };
        let ifname = match ifname {
            None => None,
            Some(w) => match name(w) {
                Some(n) => Some(n),
                None => continue,
            },
        };
        assert!(s.lines_of(&id, ifname.as_deref()).iter().any(|e| e.ip == *ip), "{ip} is among the lines of {id}");
    }
    for i in 0..4 {
        let _ = s.last_reserved(i);
    }
    let _ = s.was_normalized();
    // Drop the first entry, add one that is free, move the round-robin mark.
    let mut edit = Edit::default();
    let first = s.entries().next().map(|e| (e.span.clone(), e.ip));
    if let Some((span, _)) = &first {
        edit.remove.push(span.clone());
    }
    let free: IpAddr = (0u8..=255).map(|b| IpAddr::from([10, 255, 255, b])).find(|ip| s.holder(ip).is_none()).unwrap();
    edit.reserve(free, "fuzz-id", "eth0");
    edit.last.push((0, free));
    let mut h = String::new();
    let bytes: Vec<u8> = s.render(&edit, &mut h).concat();
    let again = State::parse(&bytes);
    assert!(!again.was_normalized(), "a rendered file is trusted as written");
    assert!(again.holder(&free).is_some_and(|e| e.id == b"fuzz-id"), "the added reservation is there");
    let mut want: Vec<IpAddr> =
        entries.iter().filter(|e| first.as_ref().map(|f| &f.0) != Some(&e.3)).map(|e| e.0).collect();
    want.push(free);
    want.sort_unstable();
    want.dedup();
    let mut got: Vec<IpAddr> = again.entries().map(|e| e.ip).collect();
    got.sort_unstable();
    got.dedup();
    assert_eq!(got, want, "the rendered file holds the same reservations, edited");
    assert_eq!(again.last_reserved(0), Some(free));
});
