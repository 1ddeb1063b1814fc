//! Address value types shared by every layer: an IP prefix and a MAC address.
//! Both print and parse in the forms CNI JSON uses ("10.1.0.5/16", "0a:58:0a:01:00:05").

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address with a prefix length: an interface address ("10.1.0.5/16") or a
/// subnet ("10.1.0.0/16"); the host bits are kept as given.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        (prefix <= max_prefix(&addr)).then_some(IpNet { addr, prefix })
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// The subnet with host bits cleared.
    pub fn network(&self) -> IpNet {
        IpNet { addr: from_u128(&self.addr, to_u128(&self.addr) & self.mask()), prefix: self.prefix }
    }

    pub fn mask(&self) -> u128 {
        let bits = max_prefix(&self.addr) as u32;
        let host = bits - self.prefix as u32;
        let all = if bits == 32 { u32::MAX as u128 } else { u128::MAX };
        if host >= 128 {
            0
        } else {
            all & !((1u128 << host) - 1)
        }
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && to_u128(ip) & self.mask() == to_u128(&self.addr) & self.mask()
    }

    /// Whether two subnets share any address.
    pub fn overlaps(&self, other: &IpNet) -> bool {
        self.contains(&other.addr) || other.contains(&self.addr)
    }

    /// The last address of the subnet (the IPv4 broadcast).
    pub fn last(&self) -> IpAddr {
        from_u128(&self.addr, to_u128(&self.addr) | !self.mask() & full(&self.addr))
    }

    /// `n`-th address of the subnet (0 = network address).
    pub fn nth(&self, n: u128) -> IpAddr {
        from_u128(&self.addr, (to_u128(&self.addr) & self.mask()) + n)
    }
}

pub fn max_prefix(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn full(ip: &IpAddr) -> u128 {
    if ip.is_ipv4() {
        u32::MAX as u128
    } else {
        u128::MAX
    }
}

pub fn to_u128(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(*a) as u128,
        IpAddr::V6(a) => u128::from(*a),
    }
}

/// An address of the same family as `like` with the numeric value `v`.
pub fn from_u128(like: &IpAddr, v: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(v as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

/// The address after `ip`, wrapping within its family.
pub fn next_ip(ip: &IpAddr) -> IpAddr {
    from_u128(ip, to_u128(ip).wrapping_add(1) & full(ip))
}

/// Network-order bytes of an address, as netlink and nftables carry it.
pub fn ip_octets(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

pub fn ip_from_octets(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            Some(IpAddr::V6(Ipv6Addr::from(a)))
        }
        _ => None,
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Debug for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid CIDR address: {s}");
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        IpNet::new(addr, prefix).ok_or_else(bad)
    }
}

/// A 6-byte Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }

    /// A random locally administered unicast address.
    pub fn random_local() -> Mac {
        let mut b = [0u8; 6];
        crate::sys::random_bytes(&mut b);
        b[0] = (b[0] & 0xfe) | 0x02;
        Mac(b)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid MAC address: {s}");
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for b in out.iter_mut() {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipnet_math() {
        let n: IpNet = "10.22.0.5/24".parse().unwrap();
        assert_eq!(n.network().to_string(), "10.22.0.0/24");
        assert_eq!(n.last().to_string(), "10.22.0.255");
        assert_eq!(n.nth(1).to_string(), "10.22.0.1");
        assert!(n.contains(&"10.22.0.200".parse().unwrap()));
        assert!(!n.contains(&"10.22.1.1".parse().unwrap()));
        let v6: IpNet = "fd00:22::4/64".parse().unwrap();
        assert_eq!(v6.network().to_string(), "fd00:22::/64");
        assert_eq!(v6.last().to_string(), "fd00:22::ffff:ffff:ffff:ffff");
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(&"8.8.8.8".parse().unwrap()));
        assert!(!all.contains(&"::1".parse().unwrap()));
        let host: IpNet = "::1/128".parse().unwrap();
        assert!(host.contains(&"::1".parse().unwrap()));
    }

    #[test]
    fn ipnet_rejects_garbage() {
        for s in ["10.0.0.0", "10.0.0.0/33", "10.0.0.0/", "x/8", "::/129", "10.0.0.0/+8"] {
            assert!(s.parse::<IpNet>().is_err(), "{s}");
        }
    }

    #[test]
    fn mac_round_trip() {
        let m: Mac = "0A:58:0a:01:00:05".parse().unwrap();
        assert_eq!(m.to_string(), "0a:58:0a:01:00:05");
        assert!("0a:58:0a:01:00".parse::<Mac>().is_err());
        assert!("0a:58:0a:01:00:05:06".parse::<Mac>().is_err());
        let r = Mac::random_local();
        assert_eq!(r.0[0] & 0x03, 0x02);
    }
}
