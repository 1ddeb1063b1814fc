//! rtnetlink operations. Each request is built by a pure function (unit-tested
//! on its exact bytes) and sent by one small method of [`Rtnl`], a NETLINK_ROUTE
//! socket bound to one namespace.

pub mod addr;
pub mod link;
pub mod netconf;
pub mod route;
pub mod rule;
pub mod tc;

use crate::error::Result;
use crate::netlink::Socket;
use crate::sys::netns::Netns;

pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_GETLINK: u16 = 18;
pub const RTM_SETLINK: u16 = 19;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_DELADDR: u16 = 21;
pub const RTM_GETADDR: u16 = 22;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_DELROUTE: u16 = 25;
pub const RTM_GETROUTE: u16 = 26;

/// A NETLINK_ROUTE socket talking to one namespace.
pub struct Rtnl {
    sock: Socket,
}

impl Rtnl {
    /// A socket for the namespace the process is in now.
    pub fn here() -> Result<Rtnl> {
        Ok(Rtnl { sock: Socket::open(libc::NETLINK_ROUTE)? })
    }

    /// A socket for `ns`, usable after the process has left it.
    pub fn in_netns(ns: &Netns) -> Result<Rtnl> {
        Ok(Rtnl { sock: Socket::open_in(libc::NETLINK_ROUTE, ns)? })
    }
}

/// An interface index, as the kernel numbers interfaces (`ifi_index`, a C
/// `int`; 0 names none). The headers carry it as that `int`, attributes
/// (IFLA_MASTER, IFLA_LINK, RTA_OIF) as a `u32`: both conversions live here,
/// so that no index passes through a cast anywhere else.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IfIndex(pub i32);

impl IfIndex {
    /// No interface (an unset IFLA_MASTER, a route without RTA_OIF).
    pub const NONE: IfIndex = IfIndex(0);

    /// From the 4 bytes of a header field (host order).
    pub fn from_ne_bytes(b: [u8; 4]) -> IfIndex {
        IfIndex(i32::from_ne_bytes(b))
    }

    /// The header field's 4 bytes (host order).
    pub fn to_ne_bytes(self) -> [u8; 4] {
        self.0.to_ne_bytes()
    }

    /// From a u32 attribute; a value no `int` can hold names no interface.
    pub fn from_attr(v: u32) -> IfIndex {
        IfIndex(i32::try_from(v).unwrap_or(0))
    }

    /// As a u32 attribute (indexes the kernel hands out are positive).
    pub fn attr(self) -> u32 {
        u32::try_from(self.0).unwrap_or(0)
    }

    /// Whether this names an interface at all.
    pub fn is_some(self) -> bool {
        self.0 > 0
    }
}

// Debug shows the number too: the tiny build empties derived Debug.
impl std::fmt::Debug for IfIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::fmt::Display for IfIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Address family byte of an IP address.
pub fn family(ip: &std::net::IpAddr) -> u8 {
    if ip.is_ipv4() {
        libc::AF_INET as u8
    } else {
        libc::AF_INET6 as u8
    }
}
