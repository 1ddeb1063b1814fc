//! Address ranges and range sets as host-local reads them: validation with
//! the reference's messages, membership, and the round-robin walk.

use crate::cni::json::json_struct;
use crate::net::{from_u128, to_u128, IpNet};
use std::fmt;
use std::net::IpAddr;

json_struct! {
    /// A range as written in the config (`ranges[i][j]`, `ipRanges`, or the legacy top level).
    #[derive(Clone)]
    pub struct RangeConf {
        pub subnet: IpNet = req("subnet"),
        pub range_start: Option<IpAddr> = opt("rangeStart"),
        pub range_end: Option<IpAddr> = opt("rangeEnd"),
        pub gateway: Option<IpAddr> = opt("gateway"),
    }
}

/// A validated range: every bound filled in, all of one family.
#[derive(Clone, PartialEq, Eq)]
pub struct Range {
    pub subnet: IpNet,
    pub start: IpAddr,
    pub end: IpAddr,
    /// Never handed out; may lie outside the range (or the subnet) as in the reference.
    pub gateway: IpAddr,
}

/// One address per range set is handed out; its ranges share a family and never overlap.
#[derive(Clone)]
pub struct RangeSet(pub Vec<Range>);

/// Go's `net.IP.To4()` view: an IPv4-mapped IPv6 address is an IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl Range {
    pub fn new(c: &RangeConf) -> Result<Range, String> {
        let subnet = c.subnet;
        let bits = crate::net::max_prefix(&subnet.addr);
        if subnet.prefix > bits - 2 {
            return Err(format!("Network {subnet} too small to allocate from"));
        }
        if canonical(subnet.addr) != subnet.addr {
            return Err("IPNet IP and Mask version mismatch".into());
        }
        let net = subnet.network();
        if net.addr != subnet.addr {
            return Err(format!(
                "Network has host bits set. For a subnet mask of length {} the network address is {}",
                subnet.prefix, net.addr
            ));
        }
        let first = from_u128(&net.addr, to_u128(&net.addr) + 1);
        let gateway = c.gateway.map(canonical).unwrap_or(first);
        let end_given = c.range_end.map(canonical);
        // As in the reference, a start past the given end is "not in network" too.
        let start = match c.range_start.map(canonical) {
            Some(s)
                if !subnet.contains(&s)
                    || end_given.is_some_and(|e| e.is_ipv4() == s.is_ipv4() && to_u128(&s) > to_u128(&e)) =>
            {
                return Err(format!("RangeStart {s} not in network {subnet}"));
            }
            Some(s) => s,
            None => first,
        };
        let end = match end_given {
            Some(e) if !subnet.contains(&e) || to_u128(&e) < to_u128(&start) => {
                return Err(format!("RangeEnd {e} not in network {subnet}"));
            }
            Some(e) => e,
            // The reference leaves the IPv4 broadcast out but not the last IPv6 address.
            None => {
                let last = subnet.last();
                if last.is_ipv4() {
                    from_u128(&last, to_u128(&last) - 1)
                } else {
                    last
                }
            }
        };
        Ok(Range { subnet, start, end, gateway })
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        let v = to_u128(ip);
        self.subnet.contains(ip) && v >= to_u128(&self.start) && v <= to_u128(&self.end)
    }

    fn overlaps(&self, o: &Range) -> bool {
        self.start.is_ipv4() == o.start.is_ipv4()
            && (self.contains(&o.start) || self.contains(&o.end) || o.contains(&self.start) || o.contains(&self.end))
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl RangeSet {
    pub fn new(confs: &[RangeConf]) -> Result<RangeSet, String> {
        if confs.is_empty() {
            return Err("empty range set".into());
        }
        let mut set = Vec::with_capacity(confs.len());
        for c in confs {
            let r = Range::new(c)?;
            if set.first().is_some_and(|f: &Range| f.start.is_ipv4() != r.start.is_ipv4()) {
                return Err("mixed address families".into());
            }
            set.push(r);
        }
        for (i, a) in set.iter().enumerate() {
            if let Some(b) = set[i + 1..].iter().find(|b| a.overlaps(b)) {
                return Err(format!("subnets {a} and {b} overlap"));
            }
        }
        Ok(RangeSet(set))
    }

    pub fn is_ipv4(&self) -> bool {
        self.0.first().is_some_and(|r| r.start.is_ipv4())
    }

    pub fn range_for(&self, ip: &IpAddr) -> Option<&Range> {
        self.0.iter().find(|r| r.contains(ip))
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    pub fn overlaps(&self, o: &RangeSet) -> bool {
        self.0.iter().any(|a| o.0.iter().any(|b| a.overlaps(b)))
    }

    /// Every allocatable address once, round-robin: from the one after `last`
    /// when `last` lies in the set (so `last` itself comes at the very end),
    /// else from the first range's start; ranges in order, wrapping; gateways skipped.
    pub fn walk(&self, last: Option<IpAddr>) -> Walk<'_> {
        let at = last.and_then(|ip| self.0.iter().position(|r| r.contains(&ip)).map(|i| (i, to_u128(&ip))));
        let first = (0, self.0.first().map(|r| to_u128(&r.start)).unwrap_or(0));
        let origin = at.unwrap_or(first);
        Walk { set: &self.0, pos: origin, origin, origin_last: at.is_some(), started: false, done: self.0.is_empty() }
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// The round-robin candidate sequence of [`RangeSet::walk`]: (range index, address).
pub struct Walk<'a> {
    set: &'a [Range],
    pos: (usize, u128),
    origin: (usize, u128),
    /// The origin is the last reserved address: visited at the end, not first.
    origin_last: bool,
    started: bool,
    done: bool,
}

impl Iterator for Walk<'_> {
    type Item = (usize, IpAddr);

    fn next(&mut self) -> Option<(usize, IpAddr)> {
        while !self.done {
            if !self.started {
                self.started = true;
                if self.origin_last {
                    continue;
                }
            } else {
                let (ri, cur) = self.pos;
                let r = self.set.get(ri)?;
                self.pos = if cur >= to_u128(&r.end) {
                    let ni = (ri + 1) % self.set.len();
                    (ni, to_u128(&self.set.get(ni)?.start))
                } else {
                    (ri, cur + 1)
                };
                if self.pos == self.origin {
                    self.done = true;
                    if !self.origin_last {
                        return None;
                    }
                }
            }
            let (ri, cur) = self.pos;
            let r = self.set.get(ri)?;
            let ip = from_u128(&r.start, cur);
            if ip != r.gateway {
                return Some((ri, ip));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(subnet: &str, start: Option<&str>, end: Option<&str>, gw: Option<&str>) -> RangeConf {
        RangeConf {
            subnet: subnet.parse().unwrap(),
            range_start: start.map(|s| s.parse().unwrap()),
            range_end: end.map(|s| s.parse().unwrap()),
            gateway: gw.map(|s| s.parse().unwrap()),
        }
    }

    fn set(confs: &[RangeConf]) -> RangeSet {
        RangeSet::new(confs).unwrap()
    }

    fn err(confs: &[RangeConf]) -> String {
        RangeSet::new(confs).err().unwrap()
    }

    fn walk(s: &RangeSet, last: Option<&str>) -> Vec<String> {
        s.walk(last.map(|l| l.parse().unwrap())).map(|(_, ip)| ip.to_string()).collect()
    }

    #[test]
    fn defaults_like_the_reference() {
        let s = set(&[conf("10.1.0.0/24", None, None, None)]);
        let r = &s.0[0];
        assert_eq!(
            (r.start.to_string(), r.end.to_string(), r.gateway.to_string()),
            ("10.1.0.1".into(), "10.1.0.254".into(), "10.1.0.1".into())
        );
        assert_eq!(s.to_string(), "10.1.0.1-10.1.0.254");
        // IPv6 keeps the last address of the subnet
        let s = set(&[conf("fd00::/120", None, None, None)]);
        assert_eq!(s.to_string(), "fd00::1-fd00::ff");
        // an IPv4-mapped subnet has an IPv6 mask on an IPv4 address
        assert_eq!(err(&[conf("::ffff:10.2.0.0/120", None, None, None)]), "IPNet IP and Mask version mismatch");
        // but IPv4-mapped bounds are IPv4 addresses
        let s = set(&[conf("10.2.0.0/24", Some("::ffff:10.2.0.5"), None, None)]);
        assert_eq!(s.0[0].start.to_string(), "10.2.0.5");
    }

    #[test]
    fn validation_messages_are_the_reference_ones() {
        assert_eq!(err(&[conf("10.1.0.0/31", None, None, None)]), "Network 10.1.0.0/31 too small to allocate from");
        assert_eq!(err(&[conf("fd00::/127", None, None, None)]), "Network fd00::/127 too small to allocate from");
        assert_eq!(
            err(&[conf("10.1.0.1/24", None, None, None)]),
            "Network has host bits set. For a subnet mask of length 24 the network address is 10.1.0.0"
        );
        assert_eq!(
            err(&[conf("10.1.0.0/24", Some("10.2.0.1"), None, None)]),
            "RangeStart 10.2.0.1 not in network 10.1.0.0/24"
        );
        assert_eq!(
            err(&[conf("10.1.0.0/24", None, Some("10.2.0.1"), None)]),
            "RangeEnd 10.2.0.1 not in network 10.1.0.0/24"
        );
        assert_eq!(
            err(&[conf("10.1.0.0/24", Some("fd00::1"), None, None)]),
            "RangeStart fd00::1 not in network 10.1.0.0/24"
        );
        assert_eq!(
            err(&[conf("10.1.0.0/24", Some("10.1.0.9"), Some("10.1.0.5"), None)]),
            "RangeStart 10.1.0.9 not in network 10.1.0.0/24"
        );
        assert_eq!(err(&[]), "empty range set");
        assert_eq!(
            err(&[conf("10.1.0.0/24", None, None, None), conf("fd00::/64", None, None, None)]),
            "mixed address families"
        );
        assert_eq!(
            err(&[conf("10.1.0.0/24", None, None, None), conf("10.1.0.0/25", None, None, None)]),
            "subnets 10.1.0.1-10.1.0.254 and 10.1.0.1-10.1.0.126 overlap"
        );
        // disjoint slices of one subnet are fine, and a gateway outside the subnet is allowed
        set(&[
            conf("10.1.0.0/24", Some("10.1.0.10"), Some("10.1.0.19"), None),
            conf("10.1.0.0/24", Some("10.1.0.20"), Some("10.1.0.29"), Some("192.168.0.1")),
        ]);
    }

    #[test]
    fn sets_overlap_only_within_a_family() {
        let a = set(&[conf("10.1.0.0/24", None, None, None)]);
        let b = set(&[conf("10.1.0.128/25", None, None, None)]);
        let c = set(&[conf("fd00::/64", None, None, None)]);
        assert!(a.overlaps(&b));
        assert!(!a.overlaps(&c));
    }

    #[test]
    fn walk_skips_the_gateway_and_wraps_after_last() {
        let s = set(&[conf("10.1.0.0/29", None, None, None)]);
        assert_eq!(walk(&s, None), ["10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"]);
        assert_eq!(walk(&s, Some("10.1.0.4")), ["10.1.0.5", "10.1.0.6", "10.1.0.2", "10.1.0.3", "10.1.0.4"]);
        // last outside the set (ranges changed): start over
        assert_eq!(walk(&s, Some("10.9.0.4")).first().map(String::as_str), Some("10.1.0.2"));
        // a gateway in the middle of the range
        let s = set(&[conf("10.1.0.0/29", Some("10.1.0.2"), Some("10.1.0.5"), Some("10.1.0.3"))]);
        assert_eq!(walk(&s, Some("10.1.0.5")), ["10.1.0.2", "10.1.0.4", "10.1.0.5"]);
    }

    #[test]
    fn walk_crosses_ranges_of_a_set() {
        let s = set(&[
            conf("10.1.0.0/24", Some("10.1.0.10"), Some("10.1.0.11"), None),
            conf("10.2.0.0/24", Some("10.2.0.10"), Some("10.2.0.11"), None),
        ]);
        assert_eq!(walk(&s, None), ["10.1.0.10", "10.1.0.11", "10.2.0.10", "10.2.0.11"]);
        assert_eq!(walk(&s, Some("10.2.0.10")), ["10.2.0.11", "10.1.0.10", "10.1.0.11", "10.2.0.10"]);
        let w: Vec<usize> = s.walk(None).map(|(i, _)| i).collect();
        assert_eq!(w, [0, 0, 1, 1]);
    }

    #[test]
    fn walk_ipv6_and_a_set_of_only_a_gateway() {
        let s = set(&[conf("fd00::/126", None, None, None)]);
        assert_eq!(walk(&s, None), ["fd00::2", "fd00::3"]);
        let s = set(&[conf("10.1.0.0/30", Some("10.1.0.1"), Some("10.1.0.1"), None)]);
        assert!(walk(&s, None).is_empty());
        assert!(walk(&s, Some("10.1.0.1")).is_empty());
    }
}
