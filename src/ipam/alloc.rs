//! What host-local ADD, DEL, CHECK and GC change, decided over a parsed state
//! and the reference's leftover reservations; pure, so every rule is unit-tested
//! without a disk. Messages are the reference's, word for word.

use super::range::RangeSet;
use super::state::{Edit, Entry, State};
use super::store::Legacy as LegacyFile;
use crate::error::{Error, Result};
use crate::net::IpNet;
use std::net::IpAddr;

/// One address handed out, with its range's gateway.
pub struct Lease {
    pub addr: IpNet,
    pub gateway: IpAddr,
}

/// What the reference plugin left in the directory, as far as ADD needs it.
pub trait Legacy {
    /// A per-address file exists for `ip`.
    fn held(&self, ip: &IpAddr) -> bool;
    /// The reference's round-robin position for range set `idx`.
    fn last_reserved(&self, idx: usize) -> Option<IpAddr>;
}

/// ADD: one address from every range set for (`id`, `ifname`), honouring
/// `requested` addresses. All or nothing: on error, nothing is reserved.
pub fn allocate(
    state: &State,
    sets: &[RangeSet],
    requested: &[IpAddr],
    id: &str,
    ifname: &str,
    legacy: &dyn Legacy,
) -> Result<(Vec<Lease>, Edit)> {
    let mut pending: Vec<IpAddr> = Vec::with_capacity(requested.len());
    for ip in requested {
        if !pending.contains(ip) {
            pending.push(*ip);
        }
    }
    let mine = state.lines_of(id, Some(ifname));
    let mut edit = Edit::default();
    let mut leases = Vec::with_capacity(sets.len());
    for (idx, set) in sets.iter().enumerate() {
        let taken = |ip: &IpAddr| state.holder(ip).is_some() || legacy.held(ip) || edit.add.iter().any(|a| a.0 == *ip);
        let wanted = pending.iter().position(|ip| set.contains(ip)).map(|i| pending.remove(i));
        let got = match wanted.and_then(|ip| set.range_for(&ip).map(|r| (ip, r))) {
            Some((ip, r)) if ip == r.gateway => Err(format!("requested ip {ip} is subnet's gateway")),
            Some((ip, _)) if taken(&ip) => {
                Err(format!("requested IP address {ip} is not available in range set {set}"))
            }
            Some((ip, r)) => Ok((ip, r)),
            None => match mine.iter().find(|e| set.contains(&e.ip)) {
                Some(e) => Err(format!("{} has been allocated to {id}, duplicate allocation is not allowed", e.ip)),
                None => {
                    let last = state.last_reserved(idx).or_else(|| legacy.last_reserved(idx));
                    set.walk(last)
                        .find(|(_, ip)| !taken(ip))
                        .and_then(|(ri, ip)| set.0.get(ri).map(|r| (ip, r)))
                        .ok_or_else(|| format!("no IP addresses available in range set: {set}"))
                }
            },
        };
        let (ip, r) = got.map_err(|m| Error::msg(format!("failed to allocate for range {idx}: {m}")))?;
        edit.reserve(ip, id, ifname);
        edit.last.push((idx, ip));
        leases.push(Lease { addr: IpNet { addr: ip, prefix: r.subnet.prefix }, gateway: r.gateway });
    }
    if !pending.is_empty() {
        let ips: Vec<String> = pending.iter().map(|ip| ip.to_string()).collect();
        return Err(Error::msg(format!("failed to allocate all requested IPs: {}", ips.join(" "))));
    }
    Ok((leases, edit))
}

/// The reservations of (`id`, `ifname`) for DEL and CHECK: state lines first;
/// only when there are none, the reference's files (`scan` reads the directory).
/// As in the reference, reservations naming the id alone (its oldest format)
/// count when no exact match exists anywhere.
pub fn attachment<'s>(
    state: &'s State,
    id: &str,
    ifname: &str,
    scan: impl FnOnce() -> Result<Vec<LegacyFile>>,
) -> Result<(Vec<Entry<'s>>, Vec<LegacyFile>)> {
    let lines = state.lines_of(id, Some(ifname));
    if !lines.is_empty() {
        return Ok((lines, Vec::new()));
    }
    let (exact, rest): (Vec<LegacyFile>, Vec<LegacyFile>) =
        scan()?.into_iter().filter(|f| f.id == id).partition(|f| f.ifname.as_deref() == Some(ifname));
    if !exact.is_empty() {
        return Ok((Vec::new(), exact));
    }
    Ok((state.lines_of(id, None), rest.into_iter().filter(|f| f.ifname.is_none()).collect()))
}

/// The attachments a GC keeps.
pub struct Valid<'a>(pub &'a [(String, String)]);

impl Valid<'_> {
    /// An id-only reservation stays while any attachment of that container is valid.
    pub fn keeps(&self, id: &str, ifname: Option<&str>) -> bool {
        self.0.iter().any(|(i, n)| i == id && ifname.is_none_or(|f| f == n))
    }
}

/// GC: every state line and reference file whose attachment is not valid.
pub fn collect(state: &State, files: Vec<LegacyFile>, valid: &Valid) -> (Edit, Vec<LegacyFile>) {
    let remove = state
        .entries()
        .filter(|e| !valid.0.iter().any(|(i, n)| e.is_of(i, e.ifname.map(|_| n.as_str()))))
        .map(|e| e.span)
        .collect();
    let files = files.into_iter().filter(|f| !valid.keeps(&f.id, f.ifname.as_deref())).collect();
    (Edit { remove, ..Edit::default() }, files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::range::RangeConf;
    use crate::ipam::state::tests::apply;

    /// A network held in memory: state bytes and the reference's files.
    #[derive(Default)]
    struct Net {
        data: Vec<u8>,
        files: Vec<(IpAddr, &'static str, Option<&'static str>)>,
        legacy_last: Option<IpAddr>,
    }

    impl Legacy for Net {
        fn held(&self, ip: &IpAddr) -> bool {
            self.files.iter().any(|f| f.0 == *ip)
        }
        fn last_reserved(&self, _: usize) -> Option<IpAddr> {
            self.legacy_last
        }
    }

    impl Net {
        fn add_req(&mut self, sets: &[RangeSet], req: &[&str], id: &str, ifname: &str) -> Result<Vec<String>> {
            let req: Vec<IpAddr> = req.iter().map(|r| r.parse().unwrap()).collect();
            let s = State::parse(&self.data);
            let (leases, edit) = allocate(&s, sets, &req, id, ifname, self)?;
            self.data = apply(&self.data, &edit);
            Ok(leases.iter().map(|l| format!("{} gw {}", l.addr, l.gateway)).collect())
        }
        fn add(&mut self, sets: &[RangeSet], id: &str) -> Result<Vec<String>> {
            self.add_req(sets, &[], id, "eth0")
        }
        fn ip(&mut self, sets: &[RangeSet], id: &str) -> String {
            let r = self.add(sets, id).unwrap();
            r[0].split('/').next().unwrap().to_string()
        }
        fn files(&self) -> Vec<LegacyFile> {
            let f = |x: &(IpAddr, &str, Option<&str>)| LegacyFile {
                name: x.0.to_string(),
                ip: x.0,
                id: x.1.to_string(),
                ifname: x.2.map(str::to_string),
            };
            self.files.iter().map(f).collect()
        }
        /// DEL: returns the addresses released (state lines, then files).
        fn del(&mut self, id: &str, ifname: &str) -> Vec<String> {
            let s = State::parse(&self.data);
            let (lines, files) = attachment(&s, id, ifname, || Ok(self.files())).unwrap();
            let mut out: Vec<String> = lines.iter().map(|l| l.ip.to_string()).collect();
            out.extend(files.iter().map(|f| format!("file {}", f.name)));
            let edit = Edit { remove: lines.into_iter().map(|l| l.span).collect(), ..Edit::default() };
            let d = apply(&self.data, &edit);
            self.data = d;
            self.files.retain(|x| !files.iter().any(|f| f.ip == x.0));
            out
        }
        fn held(&self) -> Vec<String> {
            State::parse(&self.data).entries().map(|e| format!("{} {}", e.ip, String::from_utf8_lossy(e.id))).collect()
        }
    }

    /// (subnet, rangeStart, rangeEnd, gateway)
    type Conf<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);

    fn sets(spec: &[&[Conf]]) -> Vec<RangeSet> {
        spec.iter()
            .map(|set| {
                let confs: Vec<RangeConf> = set
                    .iter()
                    .map(|(n, s, e, g)| RangeConf {
                        subnet: n.parse().unwrap(),
                        range_start: s.map(|x| x.parse().unwrap()),
                        range_end: e.map(|x| x.parse().unwrap()),
                        gateway: g.map(|x| x.parse().unwrap()),
                    })
                    .collect();
                RangeSet::new(&confs).unwrap()
            })
            .collect()
    }

    fn one(subnet: &str) -> Vec<RangeSet> {
        sets(&[&[(subnet, None, None, None)]])
    }

    #[test]
    fn round_robin_wraps_and_exhausts_like_the_reference() {
        let s = one("10.22.0.0/29");
        let mut n = Net::default();
        assert_eq!(n.add(&s, "c1").unwrap(), ["10.22.0.2/29 gw 10.22.0.1"]);
        for (id, want) in [("c2", "10.22.0.3"), ("c3", "10.22.0.4"), ("c4", "10.22.0.5"), ("c5", "10.22.0.6")] {
            assert_eq!(n.ip(&s, id), want);
        }
        let e = n.add(&s, "c6").err().unwrap();
        assert_eq!(e.code, 999);
        assert_eq!(
            e.msg,
            "failed to allocate for range 0: no IP addresses available in range set: 10.22.0.1-10.22.0.6"
        );
        assert_eq!(n.del("c2", "eth0"), ["10.22.0.3"]);
        assert_eq!(n.del("c4", "eth0"), ["10.22.0.5"]);
        // after .6 the walk wraps to the start: first free is .3, then .5
        assert_eq!(n.ip(&s, "c7"), "10.22.0.3");
        assert_eq!(n.ip(&s, "c8"), "10.22.0.5");
        assert_eq!(n.held(), ["10.22.0.2 c1", "10.22.0.3 c7", "10.22.0.4 c3", "10.22.0.5 c8", "10.22.0.6 c5"]);
    }

    #[test]
    fn gateway_is_never_handed_out() {
        let s = sets(&[&[("10.1.0.0/29", Some("10.1.0.2"), Some("10.1.0.4"), Some("10.1.0.3"))]]);
        let mut n = Net::default();
        assert_eq!(n.add(&s, "a").unwrap(), ["10.1.0.2/29 gw 10.1.0.3"]);
        assert_eq!(n.ip(&s, "b"), "10.1.0.4");
        assert!(n.add(&s, "c").is_err());
        let e = n.add_req(&s, &["10.1.0.3"], "d", "eth0").err().unwrap();
        assert_eq!(e.msg, "failed to allocate for range 0: requested ip 10.1.0.3 is subnet's gateway");
    }

    #[test]
    fn several_ranges_in_one_set() {
        let s = sets(&[&[
            ("10.1.0.0/24", Some("10.1.0.10"), Some("10.1.0.11"), None),
            ("10.2.0.0/24", Some("10.2.0.10"), Some("10.2.0.10"), None),
        ]]);
        let mut n = Net::default();
        assert_eq!(n.add(&s, "a").unwrap(), ["10.1.0.10/24 gw 10.1.0.1"]);
        assert_eq!(n.ip(&s, "b"), "10.1.0.11");
        assert_eq!(n.add(&s, "c").unwrap(), ["10.2.0.10/24 gw 10.2.0.1"]);
        assert_eq!(
            n.add(&s, "d").err().unwrap().msg,
            "failed to allocate for range 0: no IP addresses available in range set: 10.1.0.10-10.1.0.11,10.2.0.10-10.2.0.10"
        );
    }

    #[test]
    fn dual_stack_is_all_or_nothing() {
        let s = sets(&[&[("10.1.0.0/30", None, None, None)], &[("fd00::/120", None, None, None)]]);
        let mut n = Net::default();
        assert_eq!(n.add(&s, "a").unwrap(), ["10.1.0.2/30 gw 10.1.0.1", "fd00::2/120 gw fd00::1"]);
        // the v4 set is full now: nothing of the v6 set may be taken either
        let before = n.data.clone();
        assert!(n.add(&s, "b").is_err());
        assert_eq!(n.data, before);
        assert_eq!(n.del("a", "eth0"), ["10.1.0.2", "fd00::2"]);
        assert!(n.held().is_empty());
    }

    #[test]
    fn requested_addresses() {
        let s = sets(&[&[("10.1.0.0/24", None, None, None)], &[("fd00::/64", None, None, None)]]);
        let mut n = Net::default();
        assert_eq!(
            n.add_req(&s, &["10.1.0.7", "fd00::7", "10.1.0.7"], "a", "eth0").unwrap(),
            ["10.1.0.7/24 gw 10.1.0.1", "fd00::7/64 gw fd00::1"]
        );
        let e = n.add_req(&s, &["10.1.0.7"], "b", "eth0").err().unwrap();
        assert_eq!(e.msg, "failed to allocate for range 0: requested IP address 10.1.0.7 is not available in range set 10.1.0.1-10.1.0.254");
        let e = n.add_req(&s, &["10.9.0.1"], "c", "eth0").err().unwrap();
        assert_eq!(e.msg, "failed to allocate all requested IPs: 10.9.0.1");
        let e = n.add_req(&s, &["10.1.0.8", "10.1.0.9"], "c", "eth0").err().unwrap();
        assert_eq!(e.msg, "failed to allocate all requested IPs: 10.1.0.9");
        assert_eq!(n.held(), ["10.1.0.7 a", "fd00::7 a"]);
        // the round-robin continues after the requested address
        assert_eq!(n.ip(&s, "d"), "10.1.0.8");
    }

    #[test]
    fn one_allocation_per_attachment_and_set() {
        let s = one("10.1.0.0/24");
        let mut n = Net::default();
        n.add(&s, "a").unwrap();
        let e = n.add(&s, "a").err().unwrap();
        assert_eq!(
            e.msg,
            "failed to allocate for range 0: 10.1.0.2 has been allocated to a, duplicate allocation is not allowed"
        );
        // another interface of the same container is another attachment
        assert_eq!(n.add_req(&s, &[], "a", "net1").unwrap(), ["10.1.0.3/24 gw 10.1.0.1"]);
        assert_eq!(n.del("a", "eth0"), ["10.1.0.2"]);
        assert!(n.del("a", "eth0").is_empty(), "DEL twice releases nothing more");
        assert_eq!(n.held(), ["10.1.0.3 a"]);
    }

    #[test]
    fn reference_reservations_are_honoured_and_released() {
        let s = one("10.1.0.0/24");
        let mut n = Net {
            files: vec![
                ("10.1.0.2".parse().unwrap(), "old1", Some("eth0")),
                ("10.1.0.3".parse().unwrap(), "old2", None),
                ("10.1.0.5".parse().unwrap(), "old3", Some("eth0")),
            ],
            legacy_last: Some("10.1.0.3".parse().unwrap()),
            ..Net::default()
        };
        // continues after the reference's last reservation, skipping its files
        assert_eq!(n.ip(&s, "a"), "10.1.0.4");
        assert_eq!(n.ip(&s, "b"), "10.1.0.6");
        assert!(n.add_req(&s, &["10.1.0.5"], "c", "eth0").is_err());
        // exact match first; an id-only file answers when nothing else does
        assert_eq!(n.del("old1", "eth0"), ["file 10.1.0.2"]);
        assert_eq!(n.del("old2", "eth0"), ["file 10.1.0.3"]);
        assert!(n.del("old3", "eth1").is_empty());
        assert_eq!(n.del("a", "eth0"), ["10.1.0.4"]);
        assert_eq!(n.files.len(), 1);
    }

    #[test]
    fn gc_keeps_only_valid_attachments() {
        let s = one("10.1.0.0/24");
        let mut n = Net {
            files: vec![
                ("10.1.0.100".parse().unwrap(), "old", None),
                ("10.1.0.101".parse().unwrap(), "gone", Some("eth0")),
            ],
            ..Net::default()
        };
        for id in ["a", "b", "c"] {
            n.add(&s, id).unwrap();
        }
        let valid = vec![
            ("a".to_string(), "eth0".to_string()),
            ("old".to_string(), "eth1".to_string()),
            ("c".to_string(), "net1".to_string()),
        ];
        let st = State::parse(&n.data);
        let (edit, files) = collect(&st, n.files(), &Valid(&valid));
        let gone: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
        assert_eq!(gone, ["10.1.0.101"]);
        n.data = apply(&n.data, &edit);
        assert_eq!(n.held(), ["10.1.0.2 a"]);
        // an empty list is meaningful: everything goes
        let st = State::parse(&n.data);
        let (edit, files) = collect(&st, n.files(), &Valid(&[]));
        assert_eq!(files.len(), 2);
        assert!(State::parse(&apply(&n.data, &edit)).entries().next().is_none());
    }
}
