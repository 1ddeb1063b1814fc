//! rtnetlink operations. Each request is built by a pure function (unit-tested
//! on its exact bytes) and sent by one small method of [`Rtnl`], a NETLINK_ROUTE
//! socket bound to one namespace.

pub mod addr;
pub mod link;
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

/// Address family byte of an IP address.
pub fn family(ip: &std::net::IpAddr) -> u8 {
    if ip.is_ipv4() {
        libc::AF_INET as u8
    } else {
        libc::AF_INET6 as u8
    }
}
